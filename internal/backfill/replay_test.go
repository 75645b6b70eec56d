package backfill_test

import (
	"context"
	"io"
	"testing"
	"time"

	"github.com/doraflow/doraflow/internal/replay"
	"github.com/doraflow/doraflow/internal/serve"
	"github.com/doraflow/doraflow/pkg/bus"
	"github.com/doraflow/doraflow/sinks/clickhouse"
)

// A replay rebuilds the event stream from the raw archive: the backfilled
// events are archived too, so their facts survive it.
func TestBackfilledFactsSurviveReplay(t *testing.T) {
	cfg := testConfig(t)
	ctx := context.Background()
	srv, err := serve.Start(ctx, cfg, serve.RoleAll, quiet())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := (run{js: srv.Bus.JS, cfg: cfg, api: fakeAPI(t)}).do(ctx, t); err != nil {
		t.Fatal(err)
	}
	before := reportJSON(t, reportOf(t, srv))
	stopCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	srv.Stop(stopCtx)
	cancel()

	b, err := bus.Open(ctx, serve.BusOptions(cfg, quiet()))
	if err != nil {
		t.Fatal(err)
	}
	store, err := clickhouse.Open(ctx, cfg.ClickHouseDSN, quiet())
	if err != nil {
		t.Fatal(err)
	}
	routes, _, err := serve.Sources(cfg)
	if err != nil {
		t.Fatal(err)
	}
	popts, err := serve.ProcessorOptions(cfg)
	if err != nil {
		t.Fatal(err)
	}
	res, err := replay.Run(ctx, b.JS, store, routes, popts, false, io.Discard, quiet())
	store.Close()
	b.Close()
	if err != nil {
		t.Fatal(err)
	}
	if res.Events == 0 || len(res.Skipped) != 0 {
		t.Errorf("replay %+v: the backfilled events were not re-derived", res)
	}
	srv = start(t, cfg)
	if after := reportJSON(t, reportOf(t, srv)); after != before {
		t.Errorf("replay changed the backfilled facts\n got %s\nwant %s", after, before)
	}
}
