package serve_test

import (
	"context"
	"io"
	"log/slog"
	"testing"

	"github.com/doraflow/doraflow/internal/replay"
	"github.com/doraflow/doraflow/internal/serve"
	"github.com/doraflow/doraflow/internal/testenv"
	"github.com/doraflow/doraflow/pkg/bus"
	"github.com/doraflow/doraflow/sinks/clickhouse"
)

// After a change to how deliveries are parsed (here: which issue label
// marks an incident), replay re-derives every fact from the raw archive,
// retracting those that no longer hold; parsing as before restores them.
func TestReplayRederivesFromTheArchive(t *testing.T) {
	ctx := context.Background()
	cfg := testConfig(t, testenv.ClickHouse(t))
	srv := start(t, cfg)
	for _, d := range scenario() {
		post(t, srv, d)
	}
	assertReport(t, reportOf(t, srv, cfg), expected())
	stop(srv)

	run := func() replay.Result {
		t.Helper()
		b, err := bus.Open(ctx, bus.Options{DataDir: cfg.DataDir})
		if err != nil {
			t.Fatal(err)
		}
		defer b.Close()
		store, err := clickhouse.Open(ctx, cfg.ClickHouseDSN, slog.Default())
		if err != nil {
			t.Fatal(err)
		}
		defer store.Close()
		routes, _, err := serve.Sources(cfg)
		if err != nil {
			t.Fatal(err)
		}
		popts, err := serve.ProcessorOptions(cfg)
		if err != nil {
			t.Fatal(err)
		}
		res, err := replay.Run(ctx, b.JS, store, routes, popts, cfg.Processor.Partitions, io.Discard,
			quiet())
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
