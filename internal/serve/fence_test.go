package serve_test

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/doraflow/doraflow/internal/serve"
	"github.com/doraflow/doraflow/internal/testenv"
	"github.com/doraflow/doraflow/pkg/bus"
	"github.com/doraflow/doraflow/pkg/telemetry"
	"github.com/doraflow/doraflow/processor"
	"github.com/doraflow/doraflow/sinks/clickhouse"
)

// A worker that another has taken over from (its lease lapsed while it
// still ran, say) writes nothing more: the successor's first checkpoint
// fences it out, its next batch fails before its write. Here the successor
// runs with a clock an hour behind, processes deliveries, and is fenced out
// in turn when the first process's worker starts again: the facts end
// exactly as a clean run's, so neither the clock nor who wrote last decides
// which rows win.
func TestTakenOverWorkerIsFenced(t *testing.T) {
	ctx := context.Background()
	nats := externalNATS(t)
	cfg := testConfig(t, testenv.ClickHouse(t))
	cfg.NATSURL = nats.ClientURL()
	cfg.Processor.Partitions = 1
	cfg.Processor.AckWait = time.Second
	cfg.Processor.SnapshotInterval = 200 * time.Millisecond
	logs := testenv.FailureLog(t)
	logger := slog.New(slog.NewTextHandler(logs, nil))
	srv, err := serve.Start(ctx, cfg, serve.RoleAll, logger)
	if err != nil {
		t.Fatal(err)
	}
	defer stop(srv)
	deliveries := scenario()
	for _, d := range deliveries[:6] {
		post(t, srv, d)
	}
	settle(t, srv)

	// Another worker for partition 0, an hour slow, takes over: it claims
	// the checkpoint and works, rewriting facts the first wrote (a
	// rollback fails the deployment before it).
	opts, err := serve.ProcessorOptions(cfg)
	if err != nil {
		t.Fatal(err)
	}
	opts.Partition = 0
	opts.Clock = func() time.Time { return time.Now().Add(-time.Hour) }
	successor := processor.New(nats.JS, srv.Store(), opts, telemetry.New(), logger.With("process", "successor"))
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	ran := make(chan error, 1)
	go func() { ran <- successor.Run(runCtx) }()
	<-successor.Ready()
	for _, d := range deliveries[6:13] {
		post(t, srv, d)
	}
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(logs.String(), processor.ErrFenced.Error()) {
		if time.Now().After(deadline) {
			t.Fatalf("the running worker was not fenced out; its log:\n%s", logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	// The first process's worker starts again and takes the partition back.
	select {
	case err := <-ran:
		if !errors.Is(err, processor.ErrFenced) {
			t.Fatalf("the slow successor stopped with %v; want it fenced out", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the slow successor was not fenced out when the partition's owner came back")
	}
	for _, d := range deliveries[13:] {
		post(t, srv, d)
	}
	assertReport(t, reportOf(t, srv, cfg), expected())
}

// The link stream is trimmed to what the workers' committed snapshots do
// not cover yet, and a restart from those snapshots gives the same facts.
func TestLinkStreamTrimmedBySnapshots(t *testing.T) {
	ctx := context.Background()
	nats := externalNATS(t)
	cfg := testConfig(t, testenv.ClickHouse(t))
	cfg.NATSURL = nats.ClientURL()
	cfg.Processor.SnapshotInterval = 20 * time.Millisecond
	srv := start(t, cfg)
	deliveries := scenario()
	for _, d := range deliveries[:12] {
		post(t, srv, d)
	}
	settle(t, srv)
	links, err := nats.JS.Stream(ctx, bus.LinkStream)
	if err != nil {
		t.Fatal(err)
	}
	published := links.CachedInfo().State.LastSeq
	if published == 0 {
		t.Fatal("no links were published: the scenario must hand records between the stages")
	}
	// Trimming follows the last worker's snapshot: more events give every
	// worker a reason to take one.
	for _, d := range deliveries[12:14] {
		post(t, srv, d)
	}
	settle(t, srv)
	deadline := time.Now().Add(15 * time.Second)
	for {
		info, err := links.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if info.State.FirstSeq > 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("link stream not trimmed: %+v", info.State)
		}
		time.Sleep(50 * time.Millisecond)
	}
	stop(srv)
	srv = start(t, cfg)
	defer stop(srv)
	for _, d := range deliveries[14:] {
		post(t, srv, d)
	}
	assertReport(t, reportOf(t, srv, cfg), expected())
}

// Two processors share the work through the membership, the first with a
// clock an hour behind. It stops while cut off from the bus, so its stop
// (the shutdown snapshot) takes longer than its leases live: the second
// takes every worker over while the first still stops, and the first's
// writes, once the bus is back, are refused. The facts end as a clean run's.
func TestSlowStopPastTheLeaseIsFenced(t *testing.T) {
	ctx := context.Background()
	nats := externalNATS(t)
	dsn := testenv.ClickHouse(t)
	cfg := testConfig(t, dsn)
	cfg.NATSURL = nats.ClientURL()
	cfg.Processor.Partitions = 2
	cfg.Processor.LeaseTTL = time.Second
	cfg.Processor.AckWait = time.Second
	collector, err := serve.Start(ctx, cfg, serve.RoleCollector, quiet())
	if err != nil {
		t.Fatal(err)
	}
	defer stop(collector)

	// The slow one reaches the bus through a proxy the test cuts.
	proxy := testenv.NewProxy(t, strings.TrimPrefix(nats.ClientURL(), "nats://"))
	slowCfg := cfg
	slowCfg.NATSURL = "nats://" + proxy.Addr()
	slowBus, err := bus.Open(ctx, serve.BusOptions(slowCfg, quiet()))
	if err != nil {
		t.Fatal(err)
	}
	defer slowBus.Close()
	store, err := clickhouse.Open(ctx, dsn, quiet())
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	if err := serve.Migrate(ctx, slowBus, store, 1); err != nil {
		t.Fatal(err)
	}
	opts, err := serve.ProcessorOptions(slowCfg)
	if err != nil {
		t.Fatal(err)
	}
	opts.Clock = func() time.Time { return time.Now().Add(-time.Hour) }
	var logs testenv.LogBuffer
	slow := processor.NewManager(slowBus.JS, store, opts, telemetry.New(), slog.New(slog.NewTextHandler(&logs, nil)))
	slowCtx, stopSlow := context.WithCancel(ctx)
	defer stopSlow()
	slowDone := make(chan error, 1)
	go func() { slowDone <- slow.Run(slowCtx) }()
	<-slow.Ready()

	deliveries := scenario()
	for _, d := range deliveries[:6] {
		post(t, collector, d)
	}
	waitIdle(t, nats.JS, cfg.Processor.Partitions)
	for _, d := range deliveries[6:9] {
		post(t, collector, d)
	}
	proxy.Cut()
	cut := time.Now()
	stopSlow()

	successor := start(t, cfg)
	defer stop(successor)
	for deadline := time.Now().Add(20 * time.Second); len(successor.Processor().Owned()) < cfg.Processor.Partitions+1; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the successor owns %v: the stopping process kept its leases", successor.Processor().Owned())
		}
	}
	select {
	case err := <-slowDone:
		t.Fatalf("the slow process stopped (%v) before its leases lapsed: its stop was not slow", err)
	default:
	}
	time.Sleep(3*cfg.Processor.LeaseTTL - time.Since(cut))
	proxy.Restore()
	select {
	case <-slowDone:
	case <-time.After(40 * time.Second):
		t.Fatal("the slow process did not finish stopping once the bus was back")
	}
	for _, d := range deliveries[9:] {
		post(t, successor, d)
	}
	assertReport(t, reportOf(t, successor, cfg), expected())
	t.Logf("the slow process's log after the cut:\n%s", logs.String())
}

// waitIdle waits until every worker has processed everything.
func waitIdle(t *testing.T, js jetstream.JetStream, partitions int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for {
		if idle, err := processor.Idle(ctx, js, partitions); err == nil && idle {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatal("the processor did not finish")
		case <-time.After(50 * time.Millisecond):
		}
	}
}
