package backfill_test

import (
	"context"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/doraflow/doraflow/internal/backfill"
	"github.com/doraflow/doraflow/internal/githubtest"
	"github.com/doraflow/doraflow/pkg/bus"
	"github.com/doraflow/doraflow/pkg/config"
)

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
				r := githubtest.Quarter(fmt.Sprintf("acme/svc-%03d", i), end)
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
