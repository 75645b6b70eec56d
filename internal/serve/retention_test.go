package serve_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/doraflow/doraflow/internal/githubtest"
	"github.com/doraflow/doraflow/internal/serve"
	"github.com/doraflow/doraflow/internal/testenv"
)

// A delivery whose events all happened before the processor's retention
// yields no fact: it is answered as ignored with the reason, counted in
// doraflow_webhook_ignored_total{reason="older than retention"}, and
// logged once per source and hour, not once per delivery.
func TestDeliveriesOlderThanRetentionAreCounted(t *testing.T) {
	cfg := testConfig(t, testenv.ClickHouse(t))
	cfg.Processor.Retention.Keep = 30 * 24 * time.Hour
	var log testenv.LogBuffer
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	srv, err := serve.Start(ctx, cfg, serve.RoleAll, slog.New(slog.NewTextHandler(&log, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer stop(srv)
	sha := githubtest.SHA
	long := time.Now().UTC().Add(-60 * 24 * time.Hour)
	old := []githubtest.Delivery{
		githubtest.DeploymentStatus("old-1", "acme/pay-api", 901, 9001, sha("o1"), "production", "success", long),
		githubtest.DeploymentStatus("old-2", "acme/pay-api", 902, 9002, sha("o2"), "production", "success", long.Add(time.Hour)),
		githubtest.DeploymentStatus("old-3", "acme/checkout", 903, 9003, sha("o3"), "production", "success", long.Add(2*time.Hour)),
	}
	for _, d := range old {
		resp, err := http.DefaultClient.Do(githubtest.Request("http://"+srv.Addr()+"/webhooks/github", secret, d))
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `"status":"ignored"`) || !strings.Contains(string(body), "older than retention") {
			t.Errorf("%s: %d %s; want 200 ignored, older than retention", d.ID, resp.StatusCode, body)
		}
	}
	recent := githubtest.DeploymentStatus("recent", "acme/pay-api", 904, 9004, sha("r1"), "production", "success", time.Now().UTC().Add(-time.Hour))
	if code := post(t, srv, recent); code != http.StatusAccepted {
		t.Errorf("a recent deployment: %d, want 202", code)
	}
	if err := srv.WaitIdle(ctx); err != nil {
		t.Fatal(err)
	}
	facts, err := srv.Store().Facts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(facts.Deployments) != 1 || facts.Deployments[0].Fact.SHA != sha("r1") {
		t.Errorf("deployment facts: %+v; want the recent one alone", facts.Deployments)
	}
	counted := regexp.MustCompile(`doraflow_webhook_ignored_total\{event="deployment_status",reason="older than retention",source="github"\} (\d+)`).
		FindStringSubmatch(metricsText(t, srv.Addr()))
	if counted == nil || counted[1] != "3" {
		t.Errorf("ignored counter: %v, want 3", counted)
	}
	if n := strings.Count(log.String(), "delivery older than the processor's retention"); n != 1 {
		t.Errorf("logged %d times, want once for the source within the hour:\n%s", n, log.String())
	}
}
