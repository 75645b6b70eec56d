package serve_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/doraflow/doraflow/internal/githubtest"
	"github.com/doraflow/doraflow/internal/testenv"
)

// A commit timestamped after the deployment that shipped it (its author's
// clock ahead) is a change of lead time 0, and is counted in
// doraflow_changes_committed_after_deployment_total, once.
func TestCommitAfterItsDeploymentIsCounted(t *testing.T) {
	cfg := testConfig(t, testenv.ClickHouse(t))
	srv := start(t, cfg)
	defer stop(srv)
	sha := githubtest.SHA
	zero := strings.Repeat("0", 40)
	deployed := at(3, 12, 0)
	deliveries := []githubtest.Delivery{
		githubtest.Push("skew-p1", "acme/pay-api", zero, sha("k2"),
			githubtest.Commit{SHA: sha("k1"), Time: deployed.Add(-2 * time.Hour)},
			githubtest.Commit{SHA: sha("k2"), Time: deployed.Add(3 * time.Hour)}), // clock ahead
		githubtest.DeploymentStatus("skew-d1", "acme/pay-api", 701, 7001, sha("k2"), "production", "success", deployed),
	}
	for _, d := range deliveries {
		post(t, srv, d)
	}
	post(t, srv, deliveries[1]) // a redelivery counts nothing more
	if pay := teamOf(t, reportOf(t, srv, cfg), "payments"); pay.Changes != 2 {
		t.Errorf("payments: %d changes, want 2", pay.Changes)
	}
	facts, err := srv.Store().Facts(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	lead := map[string]uint64{}
	for _, c := range facts.Changes {
		lead[c.Fact.SHA] = c.Fact.LeadTimeSeconds()
	}
	if lead[sha("k1")] != 2*3600 || lead[sha("k2")] != 0 {
		t.Errorf("lead times: %v; want k1 2h, k2 (committed after) 0", lead)
	}
	if !strings.Contains(metricsText(t, srv.Addr()), "doraflow_changes_committed_after_deployment_total 1\n") {
		t.Errorf("the change committed after its deployment is not counted once:\n%s", grep(metricsText(t, srv.Addr()), "committed_after"))
	}
}

// grep is the lines of text that hold s.
func grep(text, s string) string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		if strings.Contains(l, s) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
