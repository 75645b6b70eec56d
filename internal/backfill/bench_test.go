package backfill_test

import (
	"context"
	"crypto/sha1"
	"encoding/hex"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/doraflow/doraflow/internal/backfill"
	"github.com/doraflow/doraflow/internal/githubtest"
	"github.com/doraflow/doraflow/pkg/bus"
	"github.com/doraflow/doraflow/pkg/config"
)

// benchRepo is a 90-day history: a deployment before the window, then one
// every 10 commits (20 in the window), 200 commits on main of which 5 are
// squash merges of two-commit pull requests, 2 incidents.
func benchRepo(name string, end time.Time) *githubtest.Repo {
	const mainCommits, every = 200, 10
	start := end.Add(-90 * 24 * time.Hour)
	step := 90 * 24 * time.Hour / mainCommits
	r := &githubtest.Repo{FullName: name, PushedAt: end, Commits: map[string]githubtest.APICommit{}}
	s := func(kind string, i int) string {
		sum := sha1.Sum(fmt.Appendf(nil, "%s-%s-%d", name, kind, i))
		return hex.EncodeToString(sum[:])
	}
	prev := s("root", 0)
	r.Commits[prev] = githubtest.APICommit{SHA: prev, Time: start.Add(-48 * time.Hour)}
	dep := int64(1)
	deploy := func(sha string, at time.Time) {
		r.Deployments = append(r.Deployments, githubtest.APIDeployment{ID: dep, SHA: sha, Env: "production", CreatedAt: at.Add(-5 * time.Minute),
			Statuses: []githubtest.APIStatus{{ID: dep * 10, State: "pending", At: at.Add(-4 * time.Minute)}, {ID: dep*10 + 1, State: "success", At: at}}})
		dep++
	}
	deploy(prev, start.Add(-47*time.Hour))
	for i := range mainCommits {
		at := start.Add(time.Duration(i) * step)
		sha := s("main", i)
		r.Commits[sha] = githubtest.APICommit{SHA: sha, Time: at, Parents: []string{prev}}
		if i%40 == 20 {
			// A squash merge of a branch of two commits.
			b1, b2 := s("branch1", i), s("branch2", i)
			r.Commits[b1] = githubtest.APICommit{SHA: b1, Time: at.Add(-6 * time.Hour), Parents: []string{prev}}
			r.Commits[b2] = githubtest.APICommit{SHA: b2, Time: at.Add(-3 * time.Hour), Parents: []string{b1}}
			r.Pulls = append(r.Pulls, githubtest.APIPull{Number: i, MergedAt: at, Updated: at, MergeSHA: sha, Base: "main", Commits: []string{b1, b2}})
		}
		prev = sha
		if i%every == every-1 {
			deploy(sha, at.Add(2*time.Hour))
		}
	}
	r.Issues = []githubtest.APIIssue{
		{Number: 1, Labels: []string{"incident"}, Created: start.Add(30 * 24 * time.Hour), Updated: start.Add(30*24*time.Hour + time.Hour), Closed: start.Add(30*24*time.Hour + time.Hour)},
		{Number: 2, Labels: []string{"incident"}, Created: start.Add(60 * 24 * time.Hour), Updated: start.Add(60*24*time.Hour + 2*time.Hour), Closed: start.Add(60*24*time.Hour + 2*time.Hour)},
	}
	return r
}

// BenchmarkGitHubBackfill is a 90-day backfill of 100 repositories
// (~20,000 commits, 2,000 deployments) against the fake API, published on
// an embedded JetStream, with 0 and 20 ms of simulated API latency: what
// doraflow costs itself, and what the API's round trips add. Run with
// -benchtime=1x: one backfill is the unit.
func BenchmarkGitHubBackfill(b *testing.B) {
	end := time.Now().UTC()
	cfg := config.Default()
	for _, latency := range []time.Duration{0, 20 * time.Millisecond} {
		b.Run(fmt.Sprintf("latency=%s", latency), func(b *testing.B) {
			api := githubtest.NewAPI(ghToken)
			defer api.Close()
			api.Latency = latency
			var repos []string
			commits := 0
			for i := range 100 {
				r := benchRepo(fmt.Sprintf("acme/svc-%03d", i), end)
				commits += len(r.Commits)
				api.AddRepo(r)
				repos = append(repos, r.FullName)
			}
			ctx := context.Background()
			for b.Loop() {
				b.StopTimer()
				bb, err := bus.Open(ctx, bus.Options{DataDir: b.TempDir(), Logger: quiet()})
				if err != nil {
					b.Fatal(err)
				}
				calls := api.Calls.Load()
				b.StartTimer()
				bcfg := backfill.Config{Since: end.Add(-90 * 24 * time.Hour), Until: end, Keep: cfg.Processor.Retention.Keep, Now: end,
					Concurrency: backfill.DefaultConcurrency}
				s, err := backfill.NewSession(ctx, bcfg, backfill.SessionOptions{JS: bb.JS, Partitions: 8, Replicas: 1,
					Progress: io.Discard, Label: "backfill:github"}, quiet())
				if err != nil {
					b.Fatal(err)
				}
				g, err := backfill.NewGitHub(backfill.GitHubConfig{Token: ghToken, APIURL: api.URL, Repos: repos, IsProduction: cfg.IsProduction}, s.Transport)
				if err != nil {
					b.Fatal(err)
				}
				targets, err := g.Targets(ctx, bcfg.Since)
				if err != nil {
					b.Fatal(err)
				}
				res, err := s.Run(ctx, targets)
				if err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				b.ReportMetric(float64(res.Events), "events")
				b.ReportMetric(float64(api.Calls.Load()-calls), "requests")
				b.ReportMetric(float64(commits), "commits")
				bb.Close()
				b.StartTimer()
			}
		})
	}
}
