package serve_test

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/doraflow/doraflow/internal/serve"
	"github.com/doraflow/doraflow/internal/testenv"
	"github.com/doraflow/doraflow/pkg/bus"
	"github.com/doraflow/doraflow/pkg/telemetry"
	"github.com/doraflow/doraflow/processor"
)

// A worker that another has taken over from (its lease lapsed while it
// still ran, say) writes nothing more: the successor's first checkpoint
// fences it out, its next batch fails before its write, and the facts end
// exactly as a clean run's once its process owns the partition again.
func TestTakenOverWorkerIsFenced(t *testing.T) {
	ctx := context.Background()
	nats := externalNATS(t)
	cfg := testConfig(t, testenv.ClickHouse(t))
	cfg.NATSURL = nats.ClientURL()
	cfg.Processor.Partitions = 1
	cfg.Processor.AckWait = time.Second
	var logs testenv.LogBuffer
	logger := slog.New(slog.NewTextHandler(&logs, nil))
	srv, err := serve.Start(ctx, cfg, serve.RoleAll, logger)
	if err != nil {
		t.Fatal(err)
	}
	defer stop(srv)
	deliveries := scenario()
	for _, d := range deliveries[:8] {
		post(t, srv, d)
	}
	settle(t, srv)

	// Another worker for partition 0 rebuilds: it claims the checkpoint.
	opts, err := serve.ProcessorOptions(cfg)
	if err != nil {
		t.Fatal(err)
	}
	opts.Partition = 0
	successor := processor.New(nats.JS, srv.Store, opts, telemetry.New(), quiet())
	if _, err := successor.Rebuild(ctx); err != nil {
		t.Fatal(err)
	}
	for _, d := range deliveries[8:] {
		post(t, srv, d)
	}
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(logs.String(), processor.ErrFenced.Error()) {
		if time.Now().After(deadline) {
			t.Fatalf("the running worker was not fenced out; its log:\n%s", logs.String())
		}
		time.Sleep(50 * time.Millisecond)
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
