package serve_test

import (
	"context"
	"testing"

	"github.com/doraflow/doraflow/internal/replay"
	"github.com/doraflow/doraflow/internal/serve"
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
	t.Logf("replay without the incident label: %+v", res)
	if res.Retracted != 1 {
		t.Errorf("retracted %d facts, want 1 (the incident)", res.Retracted)
	}
	srv = start(t, cfg)
	r := reportOf(t, srv, cfg)
	wroteEveryFact(t, srv, res)
	if r.Total.Incidents != 0 || r.Total.FailedDeployments != 1 || r.Total.Deployments != 6 {
		t.Errorf("after replay without the incident label: %+v", r.Total)
	}
	stop(srv)

	cfg.GitHub.IncidentLabels = nil
	res = run()
	t.Logf("replay with it again: %+v", res)
	srv = start(t, cfg)
	defer stop(srv)
	assertReport(t, reportOf(t, srv, cfg), expected())
	wroteEveryFact(t, srv, res)
}

// wroteEveryFact checks a replay's count of rows written against the
// store: the processors start afresh, so every live fact was written by
// the replay, and the count holds at least those and the retractions.
func wroteEveryFact(t *testing.T, srv *serve.Server, res replay.Result) {
	t.Helper()
	facts, err := srv.Store().Facts(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	live := 0
	for _, d := range facts.Deployments {
		if d.Live {
			live++
		}
	}
	for _, c := range facts.Changes {
		if c.Live {
			live++
		}
	}
	for _, i := range facts.Incidents {
		if i.Live {
			live++
		}
	}
	if res.Written < live+res.Retracted || live == 0 {
		t.Errorf("replay counts %d rows written (%d retracting), but %d live facts are stored, each written by it", res.Written, res.Retracted, live)
	}
}
