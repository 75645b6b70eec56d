package serve_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/doraflow/doraflow/internal/githubtest"
	"github.com/doraflow/doraflow/internal/report"
	"github.com/doraflow/doraflow/internal/serve"
	"github.com/doraflow/doraflow/internal/testenv"
	"github.com/doraflow/doraflow/pkg/bus"
	"github.com/doraflow/doraflow/pkg/config"
	"github.com/doraflow/doraflow/pkg/dora"
)

func TestMain(m *testing.M) { os.Exit(testenv.RunClickHouse(m)) }

const secret = "s3cret"

var day0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func at(day, hour, minute int) time.Time {
	return day0.Add(time.Duration(day-1)*24*time.Hour + time.Duration(hour)*time.Hour + time.Duration(minute)*time.Minute)
}

func testConfig(t *testing.T, dsn string) config.Config {
	cfg := config.Default()
	cfg.Listen = "127.0.0.1:0"
	cfg.DataDir = t.TempDir()
	cfg.ClickHouseDSN = dsn
	cfg.GitHub.WebhookSecret = secret
	cfg.Processor.FlushInterval = 20 * time.Millisecond
	cfg.Collector.MaxBodyBytes = 1 << 20
	cfg.Teams = []config.Team{
		{Name: "payments", Repos: []string{"acme/pay-*"}},
		{Name: "checkout", Repos: []string{"acme/checkout"}},
		{Name: "platform", Repos: []string{"acme/infra"}},
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	return cfg
}

// quiet is a logger for parts whose logs a test does not read.
func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// failureLog is a logger whose lines the test prints if it fails.
func failureLog(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(testenv.FailureLog(t), nil))
}

// externalNATS is a JetStream server on a loopback port, as an external
// NATS the parts under test connect to; it stops with the test.
func externalNATS(t *testing.T) *bus.Bus {
	t.Helper()
	b, err := bus.Open(context.Background(), bus.Options{DataDir: t.TempDir(), Port: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	return b
}

func start(t *testing.T, cfg config.Config) *serve.Server {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	srv, err := serve.Start(ctx, cfg, serve.RoleAll, quiet())
	if err != nil {
		t.Fatal(err)
	}
	return srv
}

func stop(srv *serve.Server) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	srv.Stop(ctx)
}

func post(t *testing.T, srv *serve.Server, d githubtest.Delivery) int {
	t.Helper()
	resp, err := http.DefaultClient.Do(githubtest.Request("http://"+srv.Addr()+"/webhooks/github", secret, d))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode/100 != 2 {
		t.Fatalf("%s %s: %d %s", d.Event, d.ID, resp.StatusCode, body)
	}
	return resp.StatusCode
}

// scenario is a small history whose metrics are computed by hand below:
// two teams and an unassigned repo, staging noise, a failed attempt, a
// rollback, an incident with a fix-forward, a duplicate delivery and a push
// that arrives after the deployment that shipped it.
func scenario() []githubtest.Delivery {
	sha := githubtest.SHA
	zero := strings.Repeat("0", 40)
	c := func(name string, t time.Time) githubtest.Commit { return githubtest.Commit{SHA: sha(name), Time: t} }
	return []githubtest.Delivery{
		// acme/pay-api (payments)
		githubtest.Push("p1", "acme/pay-api", zero, sha("a1"), c("a1", at(1, 10, 0))),
		githubtest.DeploymentStatus("d1", "acme/pay-api", 101, 1001, sha("a1"), "production", "success", at(1, 12, 0)),
		githubtest.Push("p2", "acme/pay-api", sha("a1"), sha("a3"), c("a2", at(2, 8, 0)), c("a3", at(2, 10, 0))),
		githubtest.DeploymentStatus("d2", "acme/pay-api", 102, 1002, sha("a3"), "staging", "success", at(2, 11, 0)),
		githubtest.DeploymentStatus("d3", "acme/pay-api", 103, 1003, sha("a3"), "production", "success", at(2, 12, 0)),
		githubtest.DeploymentStatus("d3", "acme/pay-api", 103, 1003, sha("a3"), "production", "success", at(2, 12, 0)), // redelivery
		githubtest.DeploymentStatus("d4", "acme/pay-api", 104, 1004, sha("a1"), "Production", "success", at(3, 12, 0)), // rollback
		githubtest.DeploymentStatus("d5", "acme/pay-api", 105, 1005, sha("a3"), "production", "failure", at(3, 13, 0)),
		// acme/checkout (checkout): the second push arrives after its deployment.
		githubtest.Push("c1", "acme/checkout", zero, sha("c1"), c("c1", at(4, 0, 0))),
		githubtest.DeploymentStatus("d6", "acme/checkout", 201, 2001, sha("c2"), "prod", "success", at(5, 6, 0)),
		githubtest.Push("c2", "acme/checkout", sha("c1"), sha("c2"), c("c2", at(5, 0, 0))),
		githubtest.Issue("i1", "acme/checkout", "opened", 7, at(5, 7, 0), time.Time{}),
		githubtest.Push("c3", "acme/checkout", sha("c2"), sha("c3"), c("c3", at(5, 7, 30))),
		githubtest.DeploymentStatus("d7", "acme/checkout", 202, 2002, sha("c3"), "production", "success", at(5, 8, 0)),
		githubtest.Issue("i2", "acme/checkout", "closed", 7, at(5, 7, 0), at(5, 9, 0)),
		// acme/sandbox: no team claims it.
		githubtest.Push("s1", "acme/sandbox", zero, sha("s1"), c("s1", at(6, 0, 0))),
		githubtest.DeploymentStatus("d8", "acme/sandbox", 301, 3001, sha("s1"), "live", "success", at(6, 1, 0)),
	}
}

// expected metrics over [day 1, day 11), computed by hand:
//
//	payments: D1 a1 (lead 2h), D3 a2+a3 (4h, 2h), D4 rollback to a1 → D3
//	  failed (recovered by D4 after 24h), D4 rework; D5 failed attempt and
//	  D2 staging are not deployments. Leads [2h 2h 4h]: median 2h, p90 4h.
//	checkout: D6 c1+c2 (30h, 6h), incident #7 opened 1h after D6 (blamed
//	  on it, restored in 2h), D7 c3 (30m) while it was open → rework.
//	  Leads [30m 6h 30h]: median 6h, p90 30h.
//	unassigned: D8 s1 (1h).
func expected() report.Report {
	b := dora.Benchmark2023
	window := 10 * 24 * time.Hour
	return report.Report{
		Since: at(1, 0, 0), Until: at(11, 0, 0), Benchmark: "2023",
		Teams: []dora.TeamMetrics{
			b.Metrics("checkout", dora.Aggregates{Deployments: 2, Failed: 1, Rework: 1, Recovered: 1, RecoveryMedianSeconds: 3 * 3600,
				Changes: 3, LeadTimeMedianSeconds: 6 * 3600, LeadTimeP90: 30 * 3600, Incidents: 1, Resolved: 1, TimeToRestoreMedianSeconds: 7200}, window),
			b.Metrics("payments", dora.Aggregates{Deployments: 3, Failed: 1, Rework: 1, Recovered: 1, RecoveryMedianSeconds: 24 * 3600,
				Changes: 3, LeadTimeMedianSeconds: 7200, LeadTimeP90: 4 * 3600}, window),
			b.Metrics("platform", dora.Aggregates{}, window),
			b.Metrics("unassigned", dora.Aggregates{Deployments: 1, Changes: 1, LeadTimeMedianSeconds: 3600, LeadTimeP90: 3600}, window),
		},
		Total: b.Metrics("*", dora.Aggregates{Deployments: 6, Failed: 2, Rework: 2, Recovered: 2, RecoveryMedianSeconds: 24 * 3600,
			Changes: 7, LeadTimeMedianSeconds: 7200, LeadTimeP90: 30 * 3600, Incidents: 1, Resolved: 1, TimeToRestoreMedianSeconds: 7200}, window),
	}
}

func reportOf(t *testing.T, srv *serve.Server, cfg config.Config) report.Report {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := srv.WaitIdle(ctx); err != nil {
		t.Fatal(err)
	}
	var teams []string
	for _, tm := range cfg.Teams {
		teams = append(teams, tm.Name)
	}
	r, err := report.Build(ctx, srv.Store(), dora.Benchmark2023, at(1, 0, 0), at(11, 0, 0), teams, "")
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func assertReport(t *testing.T, got, want report.Report) {
	t.Helper()
	if !sameReport(got, want) {
		t.Fatalf("report differs\n got: %s\nwant: %s", reportJSON(got), reportJSON(want))
	}
}

func sameReport(got, want report.Report) bool { return reportJSON(got) == reportJSON(want) }

func reportJSON(r report.Report) string {
	var b strings.Builder
	_ = r.WriteJSON(&b)
	return b.String()
}

func TestEndToEnd(t *testing.T) {
	cfg := testConfig(t, testenv.ClickHouse(t))
	srv := start(t, cfg)
	defer stop(srv)
	for _, d := range scenario() {
		post(t, srv, d)
	}
	got := reportOf(t, srv, cfg)
	assertReport(t, got, expected())

	// A few values spelled out, so the expectation does not rest on
	// dora.Metrics alone.
	total := got.Total
	if total.Deployments != 6 || total.DeploymentsPerDay != 0.6 || *total.ChangeFailureRate != 0.3333 ||
		*total.LeadTimeMedianSeconds != 7200 || *total.TimeToRestoreMedian != 7200 || *total.Tiers.ChangeFailureRate != dora.Low {
		t.Errorf("total: %+v", total)
	}
	pay := got.Teams[1]
	if pay.Team != "payments" || pay.Tiers.DeploymentFrequency != dora.High || *pay.Tiers.LeadTime != dora.Elite {
		t.Errorf("payments: %+v", pay)
	}
}

// Any arrival order and any number of deliveries give the same metrics.
func TestOrderAndDuplicatesDoNotMatter(t *testing.T) {
	cfg := testConfig(t, testenv.ClickHouse(t))
	srv := start(t, cfg)
	defer stop(srv)
	deliveries := scenario()
	for i := len(deliveries) - 1; i >= 0; i-- {
		post(t, srv, deliveries[i])
	}
	for _, d := range deliveries {
		// The same facts again under new delivery ids (a backfill, or a
		// redelivery outside JetStream's duplicate window).
		d.ID = "again-" + d.ID
		post(t, srv, d)
	}
	assertReport(t, reportOf(t, srv, cfg), expected())
}

// A processor stopped half-way and started again on the same bus and store
// converges to the same numbers.
func TestRestartConverges(t *testing.T) {
	cfg := testConfig(t, testenv.ClickHouse(t))
	cfg.Processor.SnapshotInterval = time.Hour // none but the first and the one at stop
	deliveries := scenario()
	srv := start(t, cfg)
	for _, part := range [][]githubtest.Delivery{deliveries[:4], deliveries[4:9]} {
		for _, d := range part {
			post(t, srv, d)
		}
		reportOf(t, srv, cfg) // processed and written
	}
	stop(srv)

	srv = start(t, cfg)
	defer stop(srv)
	// A clean stop snapshots the state as written: the restart folds
	// nothing again and reads no stored fact.
	if st := srv.Processor().Rebuilt(); !st.FromSnapshot || st.Events != 0 || st.Remembered != 0 {
		t.Errorf("restart rebuilt %+v; want it from a snapshot, nothing refolded or read", st)
	}
	for _, d := range deliveries[9:] {
		post(t, srv, d)
	}
	assertReport(t, reportOf(t, srv, cfg), expected())
}

// Bad input gets a clear error and changes nothing.
func TestBadInputChangesNothing(t *testing.T) {
	cfg := testConfig(t, testenv.ClickHouse(t))
	srv := start(t, cfg)
	defer stop(srv)
	url := "http://" + srv.Addr() + "/webhooks/github"
	good := scenario()[1]
	withHeader := func(d githubtest.Delivery, key, value string) *http.Request {
		r := githubtest.Request(url, secret, d)
		r.Header.Set(key, value)
		return r
	}
	noSig := githubtest.Request(url, secret, good)
	noSig.Header.Del("X-Hub-Signature-256")
	malformed := githubtest.Delivery{Event: "push", ID: "m1", Body: []byte(`{"ref": "refs/heads/main", "commits": [`)}
	wrongShape := githubtest.Delivery{Event: "push", ID: "m2", Body: []byte(`{"ref": "refs/heads/main", "after": "x", "repository": {"full_name": "acme/pay-api"}, "commits": [{"id": "abc"}]}`)}
	future := githubtest.Push("f1", "acme/pay-api", strings.Repeat("0", 40), githubtest.SHA("f1"),
		githubtest.Commit{SHA: githubtest.SHA("f1"), Time: time.Date(2200, 1, 1, 0, 0, 0, 0, time.UTC)})
	huge := githubtest.Delivery{Event: "push", ID: "h1", Body: []byte(`{"pad": "` + strings.Repeat("x", 2<<20) + `"}`)}
	get, _ := http.NewRequest(http.MethodGet, url, nil)
	cases := []struct {
		name   string
		req    *http.Request
		code   int
		reason string
	}{
		{"bad signature", withHeader(good, "X-Hub-Signature-256", githubtest.Sign("wrong", good.Body)), 401, "signature"},
		{"missing signature", noSig, 401, "X-Hub-Signature-256"},
		{"malformed JSON", githubtest.Request(url, secret, malformed), 400, "malformed JSON"},
		{"commit without timestamp", githubtest.Request(url, secret, wrongShape), 400, "timestamp"},
		{"time the store cannot hold", githubtest.Request(url, secret, future), 400, "outside 1971-2100"},
		{"oversized", githubtest.Request(url, secret, huge), 413, "limit"},
		{"missing event type", withHeader(good, "X-GitHub-Event", ""), 400, "X-Github-Event"},
		{"unknown event type", withHeader(good, "X-GitHub-Event", "star"), 200, "ignored"},
		{"ping", githubtest.Request(url, secret, githubtest.Delivery{Event: "ping", ID: "pg", Body: []byte(`{"zen": "hi"}`)}), 200, "ping"},
		{"not POST", get, 405, "POST"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := http.DefaultClient.Do(tc.req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.code || !strings.Contains(string(body), tc.reason) {
				t.Errorf("got %d %s, want %d with %q", resp.StatusCode, body, tc.code, tc.reason)
			}
		})
	}
	r := reportOf(t, srv, cfg)
	if r.Total.Deployments != 0 || r.Total.Changes != 0 {
		t.Errorf("bad input changed the metrics: %+v", r.Total)
	}
	resp, err := http.Get("http://" + srv.Addr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{
		`doraflow_webhook_ignored_total{event="star",reason="event type not used",source="github"} 1`,
		`doraflow_webhook_requests_total{code="401",event="unknown",source="github"} 2`,
		`doraflow_webhook_requests_total{code="413",event="unknown",source="github"} 1`,
	} {
		if !strings.Contains(string(metrics), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

// Collectors and processor as separate parts, sharing an external NATS.
func TestSplitRoles(t *testing.T) {
	ctx := context.Background()
	nats := externalNATS(t)
	cfg := testConfig(t, testenv.ClickHouse(t))
	cfg.NATSURL = nats.ClientURL()
	logger := quiet()
	collector, err := serve.Start(ctx, cfg, serve.RoleCollector, logger)
	if err != nil {
		t.Fatal(err)
	}
	defer stop(collector)
	proc, err := serve.Start(ctx, cfg, serve.RoleProcessor, logger)
	if err != nil {
		t.Fatal(err)
	}
	defer stop(proc)
	for _, d := range scenario() {
		post(t, collector, d)
	}
	// The processor serves no webhooks.
	resp, err := http.Post("http://"+proc.Addr()+"/webhooks/github", "application/json", strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("processor role answered a webhook: %d", resp.StatusCode)
	}
	assertReport(t, reportOf(t, proc, cfg), expected())
}
