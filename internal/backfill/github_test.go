package backfill_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/doraflow/doraflow/internal/backfill"
	"github.com/doraflow/doraflow/internal/githubtest"
	"github.com/doraflow/doraflow/internal/report"
	"github.com/doraflow/doraflow/internal/serve"
	"github.com/doraflow/doraflow/internal/testenv"
	"github.com/doraflow/doraflow/pkg/bus"
	"github.com/doraflow/doraflow/pkg/config"
	"github.com/doraflow/doraflow/pkg/dora"
	"github.com/doraflow/doraflow/pkg/event"
)

func TestMain(m *testing.M) { os.Exit(testenv.RunClickHouse(m)) }

const (
	secret  = "hook-secret"
	ghToken = "gh-token"
	repo    = "acme/pay-api"
)

// day0 is a month ago: well inside the retention, whenever the test runs.
var day0 = time.Now().UTC().Truncate(24 * time.Hour).Add(-30 * 24 * time.Hour)

func at(day, hour, minute int) time.Time {
	return day0.Add(time.Duration(day-1)*24*time.Hour + time.Duration(hour)*time.Hour + time.Duration(minute)*time.Minute)
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

var sha = githubtest.SHA

// history is one repository's quarter as GitHub's API holds it, with its
// metrics computed by hand in wantMetrics:
//
//	D0 (before the window) shipped a0. D1 ships a1 (lead 2h). A pull
//	request of f1, f2 is squash-merged as a2; a3 follows; D3 ships a3
//	(2h), and through the squash f2 (6h) and f1 (16h), not a2. A staging
//	deployment and a failed attempt are not deployments; D4 rolls back to
//	a1, so D3 failed; incident #7 (2h) is blamed on it too. Every
//	successful deployment's latest status is an automatic inactive one.
//	A closed unmerged pull request, a pull request labelled incident
//	(listed by /issues) and an issue labelled otherwise are noise.
func history() *githubtest.Repo {
	c := func(name string, t time.Time, parents ...string) githubtest.APICommit {
		ps := make([]string, 0, len(parents))
		for _, p := range parents {
			ps = append(ps, sha(p))
		}
		return githubtest.APICommit{SHA: sha(name), Time: t, Parents: ps}
	}
	commits := map[string]githubtest.APICommit{}
	for _, cm := range []githubtest.APICommit{
		c("a0", at(-4, 10, 0)),
		c("a1", at(1, 10, 0), "a0"),
		c("f1", at(1, 20, 0), "a1"),
		c("f2", at(2, 6, 0), "f1"),
		c("a2", at(2, 8, 0), "a1"),
		c("a3", at(2, 10, 0), "a2"),
	} {
		commits[cm.SHA] = cm
	}
	st := func(id int64, state string, t time.Time) githubtest.APIStatus {
		return githubtest.APIStatus{ID: id, State: state, At: t}
	}
	dep := func(id int64, name, env string, created time.Time, sts ...githubtest.APIStatus) githubtest.APIDeployment {
		return githubtest.APIDeployment{ID: id, SHA: sha(name), Env: env, CreatedAt: created, Statuses: sts}
	}
	return &githubtest.Repo{
		FullName: repo,
		PushedAt: at(2, 10, 0),
		Commits:  commits,
		Deployments: []githubtest.APIDeployment{
			dep(100, "a0", "production", at(-4, 11, 55), st(1000, "success", at(-4, 12, 0)), st(1001, "inactive", at(1, 12, 5))),
			dep(101, "a1", "production", at(1, 11, 55), st(1010, "pending", at(1, 11, 56)), st(1011, "success", at(1, 12, 0)), st(1012, "inactive", at(2, 12, 5))),
			dep(102, "a3", "staging", at(2, 10, 55), st(1020, "success", at(2, 11, 0))),
			dep(103, "a3", "production", at(2, 11, 55), st(1030, "success", at(2, 12, 0)), st(1031, "inactive", at(3, 12, 5))),
			dep(104, "a1", "production", at(3, 11, 55), st(1040, "success", at(3, 12, 0))),
			dep(105, "a3", "production", at(3, 12, 55), st(1050, "failure", at(3, 13, 0))),
		},
		Pulls: []githubtest.APIPull{
			{Number: 5, MergedAt: at(2, 8, 0), Updated: at(2, 8, 0), MergeSHA: sha("a2"), Base: "main", Commits: []string{sha("f1"), sha("f2")}},
			{Number: 6, Updated: at(2, 9, 0), MergeSHA: sha("x6"), Base: "main", Commits: []string{sha("a3")}},
		},
		Issues: []githubtest.APIIssue{
			{Number: 7, Labels: []string{"incident"}, Created: at(2, 13, 0), Updated: at(2, 15, 0), Closed: at(2, 15, 0)},
			{Number: 8, Labels: []string{"incident"}, Created: at(2, 14, 0), Updated: at(2, 14, 0), PullRequest: true},
			{Number: 9, Labels: []string{"bug"}, Created: at(2, 14, 0), Updated: at(2, 14, 0)},
		},
	}
}

// webhooks are the same facts as history, as GitHub's webhooks report them.
func webhooks() []githubtest.Delivery {
	zero := event.ZeroSHA
	c := func(name string, t time.Time) githubtest.Commit { return githubtest.Commit{SHA: sha(name), Time: t} }
	ds := func(id string, dep, status int64, name, env, state string, t time.Time) githubtest.Delivery {
		return githubtest.DeploymentStatus(id, repo, dep, status, sha(name), env, state, t)
	}
	return []githubtest.Delivery{
		githubtest.Push("p0", repo, zero, sha("a0"), c("a0", at(-4, 10, 0))),
		ds("w1000", 100, 1000, "a0", "production", "success", at(-4, 12, 0)),
		githubtest.Push("p1", repo, sha("a0"), sha("a1"), c("a1", at(1, 10, 0))),
		ds("w1011", 101, 1011, "a1", "production", "success", at(1, 12, 0)),
		githubtest.PushTo("pf", repo, "refs/heads/feature-5", zero, sha("f2"), c("f1", at(1, 20, 0)), c("f2", at(2, 6, 0))),
		githubtest.Push("p2", repo, sha("a1"), sha("a2"), c("a2", at(2, 8, 0))),
		githubtest.PullRequestMerged("pr5", repo, 5, sha("a2"), sha("f2"), 2, at(2, 8, 0)),
		githubtest.Push("p3", repo, sha("a2"), sha("a3"), c("a3", at(2, 10, 0))),
		ds("w1020", 102, 1020, "a3", "staging", "success", at(2, 11, 0)),
		ds("w1030", 103, 1030, "a3", "production", "success", at(2, 12, 0)),
		githubtest.Issue("i7o", repo, "opened", 7, at(2, 13, 0), time.Time{}),
		githubtest.Issue("i7c", repo, "closed", 7, at(2, 13, 0), at(2, 15, 0)),
		ds("w1040", 104, 1040, "a1", "production", "success", at(3, 12, 0)),
		ds("w1050", 105, 1050, "a3", "production", "failure", at(3, 13, 0)),
	}
}

// checkMetrics checks the hand-computed metrics of history.
func checkMetrics(t *testing.T, r report.Report) {
	t.Helper()
	var pay dora.TeamMetrics
	for _, m := range r.Teams {
		if m.Team == "payments" {
			pay = m
		}
	}
	// D1, D3, D4; changes a1 2h, a3 2h, f2 6h, f1 16h: sorted
	// [2h 2h 6h 16h], median (upper middle) 6h, p90 16h.
	if pay.Deployments != 3 || pay.Changes != 4 {
		t.Fatalf("payments: %d deployments, %d changes; want 3, 4", pay.Deployments, pay.Changes)
	}
	if *pay.LeadTimeMedianSeconds != 6*3600 || *pay.LeadTimeP90Seconds != 16*3600 {
		t.Errorf("lead time median %v p90 %v; want 6h, 16h", *pay.LeadTimeMedianSeconds, *pay.LeadTimeP90Seconds)
	}
	if pay.FailedDeployments != 1 || *pay.ChangeFailureRate != 0.3333 {
		t.Errorf("failed %d, CFR %v; want 1, 0.3333", pay.FailedDeployments, *pay.ChangeFailureRate)
	}
	if pay.Incidents != 1 || *pay.TimeToRestoreMedian != 2*3600 {
		t.Errorf("incidents %d, TTR %v; want 1, 2h", pay.Incidents, pay.TimeToRestoreMedian)
	}
	if pay.DeploymentsPerDay != 0.3 {
		t.Errorf("deployments per day %v; want 0.3", pay.DeploymentsPerDay)
	}
}

func testConfig(t *testing.T) config.Config {
	cfg := config.Default()
	cfg.Listen = "127.0.0.1:0"
	cfg.DataDir = t.TempDir()
	cfg.ClickHouseDSN = testenv.ClickHouse(t)
	cfg.GitHub.WebhookSecret = secret
	cfg.GitHub.Token = ghToken
	cfg.Processor.FlushInterval = 20 * time.Millisecond
	cfg.Teams = []config.Team{{Name: "payments", Repos: []string{"acme/pay-*"}}}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	return cfg
}

func start(t *testing.T, cfg config.Config) *serve.Server {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	srv, err := serve.Start(ctx, cfg, serve.RoleAll, quiet())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		srv.Stop(ctx)
	})
	return srv
}

func post(t *testing.T, srv *serve.Server, ds ...githubtest.Delivery) {
	t.Helper()
	for _, d := range ds {
		resp, err := http.DefaultClient.Do(githubtest.Request("http://"+srv.Addr()+"/webhooks/github", secret, d))
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode/100 != 2 {
			t.Fatalf("%s %s: %d %s", d.Event, d.ID, resp.StatusCode, body)
		}
	}
}

func reportOf(t *testing.T, srv *serve.Server) report.Report {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := srv.WaitIdle(ctx); err != nil {
		t.Fatal(err)
	}
	r, err := report.Build(ctx, srv.Store(), dora.Benchmark2023, at(1, 0, 0), at(11, 0, 0), []string{"payments"}, "")
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func reportJSON(t *testing.T, r report.Report) string {
	var b strings.Builder
	if err := r.WriteJSON(&b); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// run is a backfill of repo from day 1 on, on js (nil: a dry run).
type run struct {
	js    jetstream.JetStream
	cfg   config.Config
	api   *githubtest.API
	sink  func(backfill.Sink) backfill.Sink
	fresh bool
	list  io.Writer
	repos []string // default: repo
}

func (r run) do(ctx context.Context, t *testing.T) (backfill.Result, error) {
	t.Helper()
	now := time.Now().UTC()
	bcfg := backfill.Config{Since: at(1, 0, 0), Until: now, Keep: r.cfg.Processor.Retention.Keep, Now: now, Concurrency: 1}
	s, err := backfill.NewSession(ctx, bcfg, backfill.SessionOptions{JS: r.js, Partitions: r.cfg.Processor.Partitions, Replicas: 1,
		List: r.list, Progress: io.Discard, Label: "backfill:github"}, quiet())
	if err != nil {
		t.Fatal(err)
	}
	if r.sink != nil {
		s.Sink = r.sink(s.Sink)
	}
	s.Fresh = r.fresh
	repos := r.repos
	if len(repos) == 0 {
		repos = []string{repo}
	}
	g, err := backfill.NewGitHub(backfill.GitHubConfig{Token: ghToken, APIURL: r.api.URL, Repos: repos,
		IncidentLabels: r.cfg.GitHub.IncidentLabels, IsProduction: r.cfg.IsProduction}, s.Transport)
	if err != nil {
		t.Fatal(err)
	}
	targets, err := g.Targets(ctx, bcfg.Since)
	if err != nil {
		t.Fatal(err)
	}
	return s.Run(ctx, targets)
}

// fakeAPI serves history two items a page, with a secondary limit answer
// every 9th request and a 502 every 13th.
func fakeAPI(t *testing.T) *githubtest.API {
	api := githubtest.NewAPI(ghToken)
	t.Cleanup(api.Close)
	api.PerPage = 2
	api.SecondaryEvery = 9
	api.FailEvery = 13
	api.AddRepo(history())
	return api
}

// The backfill publishes what the API holds, through the pitfalls of
// GitHub's API: the whole status list (not the latest, inactive, status),
// no unmerged pull request, no pull request listed among the issues, no
// staging outcome filtered out (it is a fact, not a deployment), and the
// same ids as the webhooks.
func TestGitHubDryRunEvents(t *testing.T) {
	for _, ghes := range []bool{false, true} {
		t.Run(fmt.Sprintf("no rate-limit headers=%v", ghes), func(t *testing.T) {
			api := fakeAPI(t)
			// GitHub Enterprise Server with rate limiting off.
			api.NoRateHeaders = ghes
			var out bytes.Buffer
			res, err := run{cfg: testConfigNoStore(t), api: api, list: &out}.do(context.Background(), t)
			if err != nil {
				t.Fatal(err)
			}
			var ids []string
			sc := bufio.NewScanner(&out)
			for sc.Scan() {
				var e event.Event
				if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
					t.Fatal(err)
				}
				ids = append(ids, e.ID)
			}
			slices.Sort(ids)
			want := []string{
				"github:compare:" + repo + ":" + event.ZeroSHA + "..." + sha("a0"), // what D0 shipped, the history's start
				"github:compare:" + repo + ":" + sha("a0") + "..." + sha("a1"),
				"github:compare:" + repo + ":" + sha("a1") + "..." + sha("a3"),
				"github:compare:" + repo + ":" + sha("a1") + "..." + sha("f2"), // pull request #5's own commits
				"github:deployment:100", "github:deployment:101", "github:deployment:103", "github:deployment:104", "github:deployment:105",
				"github:deployment_status:1000", "github:deployment_status:1010", "github:deployment_status:1011",
				"github:deployment_status:1030", "github:deployment_status:1040", "github:deployment_status:1050",
				// The webhook's id: the issue's last update closed it.
				"github:issue:" + repo + "#7:closed:" + at(2, 15, 0).Format(time.RFC3339),
				"github:merge:" + repo + "#5",
			}
			slices.Sort(want)
			if !slices.Equal(ids, want) {
				t.Errorf("events\n got %q\nwant %q", ids, want)
			}
			if res.Events != len(want) || res.Targets != 1 {
				t.Errorf("result %+v", res)
			}
			if api.Secondary.Load() == 0 || api.Failed.Load() == 0 {
				t.Errorf("the fake answered %d secondary limits and %d failures: the test does not exercise them", api.Secondary.Load(), api.Failed.Load())
			}
		})
	}
}

// Several repositories fetched at once share the token's primary limit:
// the transport holds every request once the window's last one is used,
// so the API refuses almost nothing (only requests already in flight when
// the window ran out), and everything is fetched.
func TestGitHubReposShareThePrimaryLimit(t *testing.T) {
	api := githubtest.NewAPI(ghToken)
	defer api.Close()
	api.Limit, api.Window = 40, time.Second
	var repos []string
	end := time.Now().UTC()
	for i := range 3 {
		r := githubtest.Quarter(fmt.Sprintf("acme/svc-%d", i), end)
		api.AddRepo(r)
		repos = append(repos, r.FullName)
	}
	cfg := testConfigNoStore(t)
	bcfg := backfill.Config{Since: end.Add(-90 * 24 * time.Hour), Until: end, Keep: cfg.Processor.Retention.Keep, Now: end, Concurrency: 4}
	ctx := context.Background()
	s, err := backfill.NewSession(ctx, bcfg, backfill.SessionOptions{List: io.Discard, Progress: io.Discard, Label: "backfill:github"}, quiet())
	if err != nil {
		t.Fatal(err)
	}
	var waits atomic.Int32
	s.Transport.OnWait = func(backfill.Wait) { waits.Add(1) }
	g, err := backfill.NewGitHub(backfill.GitHubConfig{Token: ghToken, APIURL: api.URL, Repos: repos, IsProduction: cfg.IsProduction}, s.Transport)
	if err != nil {
		t.Fatal(err)
	}
	targets, err := g.Targets(ctx, bcfg.Since)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	res, err := s.Run(ctx, targets)
	if err != nil {
		t.Fatal(err)
	}
	requests := api.Calls.Load()
	if res.Events != 3*96 {
		t.Errorf("%d events; want 288", res.Events)
	}
	if minimum := time.Duration(requests/40-1) * time.Second; time.Since(start) < minimum {
		t.Errorf("%d requests in %s at 40 a second: the limit was not kept", requests, time.Since(start))
	}
	if waits.Load() == 0 {
		t.Error("the transport never waited for the limit")
	}
	t.Logf("%d requests in %s, %d refused by the primary limit, %d waits", requests, time.Since(start).Round(time.Millisecond), api.Primary.Load(), waits.Load())
	if refused := api.Primary.Load(); refused > int64(bcfg.Concurrency)*(requests/40+1) {
		t.Errorf("the API refused %d of %d requests: the transport did not hold them at the limit", refused, requests)
	}
}

func testConfigNoStore(t *testing.T) config.Config {
	cfg := config.Default()
	cfg.Teams = []config.Team{{Name: "payments", Repos: []string{"acme/pay-*"}}}
	return cfg
}

// A backfill ends in ClickHouse with the metrics the history has; the same
// facts sent as webhooks before or after it count once, and give the same
// report as the webhooks alone.
func TestGitHubBackfillAndWebhooksCountOnce(t *testing.T) {
	var reports []string
	for _, order := range []string{"backfill", "backfill then webhooks", "webhooks then backfill", "webhooks", "backfill on an external NATS"} {
		t.Run(order, func(t *testing.T) {
			cfg := testConfig(t)
			if order == "backfill on an external NATS" {
				ext, err := bus.Open(context.Background(), bus.Options{DataDir: t.TempDir(), Port: -1, Logger: quiet()})
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(ext.Close)
				cfg.NATSURL = ext.ClientURL()
			}
			srv := start(t, cfg)
			// Through serve's loopback listener (or the external NATS), as
			// the command does.
			b, err := serve.Dial(context.Background(), cfg, quiet())
			if err != nil {
				t.Fatal(err)
			}
			defer b.Close()
			api := fakeAPI(t)
			backfillOnce := func() {
				if _, err := (run{js: b.JS, cfg: cfg, api: api}).do(context.Background(), t); err != nil {
					t.Fatal(err)
				}
			}
			switch order {
			case "backfill", "backfill on an external NATS":
				backfillOnce()
			case "backfill then webhooks":
				backfillOnce()
				reportOf(t, srv)
				post(t, srv, webhooks()...)
			case "webhooks then backfill":
				post(t, srv, webhooks()...)
				reportOf(t, srv)
				backfillOnce()
			case "webhooks":
				post(t, srv, webhooks()...)
			}
			r := reportOf(t, srv)
			checkMetrics(t, r)
			reports = append(reports, reportJSON(t, r))
		})
	}
	for i := 1; i < len(reports); i++ {
		if reports[i] != reports[0] {
			t.Errorf("report %d differs from the backfill's\n got %s\nwant %s", i, reports[i], reports[0])
		}
	}
}

// cancelAfter publishes the first batch, then interrupts the run (as
// Ctrl-C does).
type cancelAfter struct {
	backfill.Sink
	cancel context.CancelFunc
}

func (c cancelAfter) Publish(ctx context.Context, events []event.Event) error {
	err := c.Sink.Publish(ctx, events)
	c.cancel()
	return err
}

// An interrupted backfill (Ctrl-C), run again, does not fetch again the
// repository it had finished, and gives the facts an uninterrupted one
// gives; one fetched again from scratch counts nothing twice.
func TestGitHubBackfillResumes(t *testing.T) {
	cfg := testConfig(t)
	srv := start(t, cfg)
	api := fakeAPI(t)
	other := githubtest.Quarter("acme/other", time.Now().UTC())
	api.AddRepo(other)
	repos := []string{repo, other.FullName}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	_, err := run{js: srv.Bus.JS, cfg: cfg, api: api, repos: repos, sink: func(s backfill.Sink) backfill.Sink { return cancelAfter{s, cancel} }}.do(ctx, t)
	if err == nil || !strings.Contains(err.Error(), "interrupted") {
		t.Fatalf("interrupted run: %v", err)
	}
	first := api.Calls.Load()
	res, err := run{js: srv.Bus.JS, cfg: cfg, api: api, repos: repos}.do(context.Background(), t)
	if err != nil {
		t.Fatal(err)
	}
	resumed := api.Calls.Load() - first
	if res.Skipped != 1 || res.Targets != 1 {
		t.Errorf("result %+v; want the finished repository skipped, the other fetched", res)
	}
	r := reportOf(t, srv)
	checkMetrics(t, r)

	// A third run finds both done.
	before := api.Calls.Load()
	if res, err = (run{js: srv.Bus.JS, cfg: cfg, api: api, repos: repos}).do(context.Background(), t); err != nil || res.Skipped != 2 {
		t.Fatalf("rerun: %+v, %v; want both skipped", res, err)
	}
	if api.Calls.Load() != before {
		t.Errorf("a finished target was fetched again")
	}
	// From scratch: every event again, none counted twice.
	before = api.Calls.Load()
	if _, err := (run{js: srv.Bus.JS, cfg: cfg, api: api, repos: repos, fresh: true}).do(context.Background(), t); err != nil {
		t.Fatal(err)
	}
	whole := api.Calls.Load() - before
	if resumed >= whole {
		t.Errorf("the resumed run made %d requests, a whole one %d: it started over", resumed, whole)
	}
	if got := reportJSON(t, reportOf(t, srv)); got != reportJSON(t, r) {
		t.Errorf("a second whole backfill changed the report\n got %s\nwant %s", got, reportJSON(t, r))
	}
}

// A quarter of history is kept whole, however the processor batches it and
// whatever arrived before: the processor settles a repository's history
// older than processor.retention.margin (30 days) behind the latest event
// it saw, so the backfill publishes each repository oldest first. Every
// repository of githubtest.Quarter has 206 changes (its 200 commits on
// main, less 5 squash merges, plus their 10 branch commits, plus the
// commit the deployment before the window shipped), 21 deployments (with
// the one before the window), one of them failed.
func TestGitHubQuarterKeptWhole(t *testing.T) {
	end := time.Now().UTC()
	api := githubtest.NewAPI(ghToken)
	defer api.Close()
	var repos []string
	for i := range 4 {
		r := githubtest.Quarter(fmt.Sprintf("acme/pay-%d", i), end)
		api.AddRepo(r)
		repos = append(repos, r.FullName)
	}
	for _, webhookFirst := range []bool{false, true} {
		t.Run(fmt.Sprintf("webhook first=%v", webhookFirst), func(t *testing.T) {
			cfg := testConfig(t)
			// Small batches: the processor folds a repository's history in
			// many steps, settling as it goes.
			cfg.Processor.BatchSize = 20
			srv := start(t, cfg)
			if webhookFirst {
				// Today's push of each repository arrives first.
				for _, r := range repos {
					tip := githubtest.Quarter(r, end).Commits
					var last githubtest.APICommit
					for _, c := range tip {
						if c.Time.After(last.Time) {
							last = c
						}
					}
					post(t, srv, githubtest.Push("now-"+r, r, last.SHA, sha("now-"+r), githubtest.Commit{SHA: sha("now-" + r), Time: end}))
				}
				reportOf(t, srv)
			}
			ctx := context.Background()
			bcfg := backfill.Config{Since: end.Add(-90 * 24 * time.Hour), Until: end, Keep: cfg.Processor.Retention.Keep, Now: end, Concurrency: 2}
			s, err := backfill.NewSession(ctx, bcfg, backfill.SessionOptions{JS: srv.Bus.JS, Partitions: cfg.Processor.Partitions, Replicas: 1,
				Progress: io.Discard, Label: "backfill:github"}, quiet())
			if err != nil {
				t.Fatal(err)
			}
			g, err := backfill.NewGitHub(backfill.GitHubConfig{Token: ghToken, APIURL: api.URL, Repos: repos, IsProduction: cfg.IsProduction}, s.Transport)
			if err != nil {
				t.Fatal(err)
			}
			targets, err := g.Targets(ctx, bcfg.Since)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := s.Run(ctx, targets); err != nil {
				t.Fatal(err)
			}
			reportOf(t, srv)
			facts, err := srv.Store().Facts(ctx)
			if err != nil {
				t.Fatal(err)
			}
			changes, deployments, failed := map[string]int{}, map[string]int{}, map[string]int{}
			for _, c := range facts.Changes {
				if c.Live {
					changes[c.Fact.Repo]++
				}
			}
			for _, d := range facts.Deployments {
				if d.Live {
					deployments[d.Fact.Repo]++
					if d.Fact.Failed {
						failed[d.Fact.Repo]++
					}
				}
			}
			for _, r := range repos {
				// One of the two incidents opens within the look-back of a
				// deployment.
				if changes[r] != 206 || deployments[r] != 21 || failed[r] != 1 {
					t.Errorf("%s: %d changes, %d deployments, %d failed; want 206, 21, 1", r, changes[r], deployments[r], failed[r])
				}
			}
		})
	}
}

// --org takes the organisation's repositories pushed to in the window,
// listed by push, newest first, over pages.
func TestGitHubOrgTargets(t *testing.T) {
	api := githubtest.NewAPI(ghToken)
	defer api.Close()
	api.PerPage = 1
	for name, pushed := range map[string]time.Time{"acme/a": at(5, 0, 0), "acme/b": at(2, 0, 0), "acme/old": at(-10, 0, 0), "other/c": at(5, 0, 0)} {
		api.AddRepo(&githubtest.Repo{FullName: name, PushedAt: pushed, Commits: map[string]githubtest.APICommit{}})
	}
	cfg := testConfigNoStore(t)
	g, err := backfill.NewGitHub(backfill.GitHubConfig{Token: ghToken, APIURL: api.URL, Org: "acme", IsProduction: cfg.IsProduction}, &backfill.Transport{})
	if err != nil {
		t.Fatal(err)
	}
	targets, err := g.Targets(context.Background(), at(1, 0, 0))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, tg := range targets {
		names = append(names, tg.Name)
	}
	if !slices.Equal(names, []string{"acme/a", "acme/b"}) {
		t.Errorf("targets %v; want acme/a, acme/b", names)
	}
}

// A repository that fails (here: gone, 404) does not stop the others; the
// run says which failed, and a rerun would retry it.
func TestGitHubFailedRepoDoesNotStopTheOthers(t *testing.T) {
	api := fakeAPI(t)
	var out bytes.Buffer
	res, err := run{cfg: testConfigNoStore(t), api: api, list: &out, repos: []string{"acme/gone", repo}}.do(context.Background(), t)
	if err == nil || !strings.Contains(err.Error(), "1 of 2 targets failed") || !strings.Contains(err.Error(), "acme/gone") {
		t.Fatalf("error %v; want the gone repository named", err)
	}
	if res.Failed != 1 || res.Targets != 1 || res.Events != 17 {
		t.Errorf("result %+v; want %s's 17 events despite the other's failure", res, repo)
	}
}
