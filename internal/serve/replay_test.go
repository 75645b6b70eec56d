package serve_test

import (
	"testing"

	"github.com/doraflow/doraflow/internal/replay"
	"github.com/doraflow/doraflow/internal/testenv"
)

// After a change to how deliveries are parsed (here: which issue label
// marks an incident), replay re-derives every fact from the raw archive,
// retracting those that no longer hold; parsing as before restores them.
func TestReplayRederivesFromTheArchive(t *testing.T) {
	cfg := testConfig(t, testenv.ClickHouse(t))
	srv := start(t, cfg)
	for _, d := range scenario() {
		post(t, srv, d)
	}
	assertReport(t, reportOf(t, srv, cfg), expected())
	stop(srv)

	run := func() replay.Result {
		t.Helper()
		res, err := runReplay(t, cfg, false)
		if err != nil {
			t.Fatal(err)
		}
		return res
	}

	cfg.GitHub.IncidentLabels = []string{"sev1"}
	res := run()
	if res.Deliveries != len(scenario())-1 { // the redelivery was dropped at the edge
		t.Errorf("replayed %d deliveries", res.Deliveries)
	}
	srv = start(t, cfg)
	r := reportOf(t, srv, cfg)
	if r.Total.Incidents != 0 || r.Total.FailedDeployments != 1 || r.Total.Deployments != 6 {
		t.Errorf("after replay without the incident label: %+v", r.Total)
	}
	stop(srv)

	cfg.GitHub.IncidentLabels = nil
	run()
	srv = start(t, cfg)
	defer stop(srv)
	assertReport(t, reportOf(t, srv, cfg), expected())
}
