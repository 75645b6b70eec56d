package serve_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/doraflow/doraflow/internal/replay"
	"github.com/doraflow/doraflow/internal/serve"
	"github.com/doraflow/doraflow/internal/testenv"
	"github.com/doraflow/doraflow/pkg/bus"
	"github.com/doraflow/doraflow/pkg/config"
	"github.com/doraflow/doraflow/processor"
	"github.com/doraflow/doraflow/sinks/clickhouse"
)

// runReplay runs `doraflow replay` (with --repartition if asked) against
// cfg's bus and store.
func runReplay(t *testing.T, cfg config.Config, repartition bool) (replay.Result, error) {
	t.Helper()
	ctx := context.Background()
	b, err := bus.Open(ctx, bus.Options{URL: cfg.NATSURL, DataDir: cfg.DataDir, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	store, err := clickhouse.Open(ctx, cfg.ClickHouseDSN, quiet())
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
	return replay.Run(ctx, b.JS, store, routes, popts, repartition, io.Discard, quiet())
}

// stored describes what a refused start must leave as it found it: the
// facts, the event stream, the processors' consumers and saved states, and
// the recorded layout.
func stored(t *testing.T, js jetstream.JetStream, dsn string) string {
	t.Helper()
	ctx := context.Background()
	store, err := clickhouse.Open(ctx, dsn, quiet())
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	facts, err := store.Facts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, r := range facts.Deployments {
		out = append(out, fmt.Sprintf("deployment %+v", r.Fact))
	}
	for _, r := range facts.Changes {
		out = append(out, fmt.Sprintf("change %+v", r.Fact))
	}
	for _, r := range facts.Incidents {
		out = append(out, fmt.Sprintf("incident %+v", r.Fact))
	}
	stream, err := js.Stream(ctx, bus.EventStream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := stream.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	out = append(out, fmt.Sprintf("events %d..%d", info.State.FirstSeq, info.State.LastSeq))
	consumers := stream.ListConsumers(ctx)
	for c := range consumers.Info() {
		out = append(out, fmt.Sprintf("consumer %s delivered %d acked %d", c.Name, c.Delivered.Stream, c.AckFloor.Stream))
	}
	if err := consumers.Err(); err != nil {
		t.Fatal(err)
	}
	obs, err := js.ObjectStore(ctx, bus.StateBucket)
	if err != nil {
		t.Fatal(err)
	}
	states, err := obs.List(ctx)
	if err != nil && !errors.Is(err, jetstream.ErrNoObjectsFound) {
		t.Fatal(err)
	}
	for _, o := range states {
		out = append(out, fmt.Sprintf("state %s %s", o.Name, o.Digest))
	}
	l, rev, _, err := bus.ReadLayout(ctx, js)
	if err != nil {
		t.Fatal(err)
	}
	out = append(out, fmt.Sprintf("layout %+v at %d", l, rev))
	slices.Sort(out)
	return strings.Join(out, "\n")
}

func wantPartitionsError(t *testing.T, err error, recorded, configured int, says ...string) {
	t.Helper()
	var pe *serve.PartitionsError
	if !errors.As(err, &pe) {
		t.Fatalf("got %v, want a refusal for the partition count", err)
	}
	if pe.Recorded != recorded || pe.Configured != configured {
		t.Errorf("refusal says recorded %d, configured %d; want %d and %d", pe.Recorded, pe.Configured, recorded, configured)
	}
	for _, s := range says {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("the refusal does not say %q:\n%v", s, err)
		}
	}
}

// A bus set up with 8 partitions refuses every process configured with 4
// — collector, processor, both, and a replay — says what was recorded,
// what is configured and how to change it, and nothing is written; with 8
// again everything is as before.
func TestPartitionCountIsFixedAtSetUp(t *testing.T) {
	ctx := context.Background()
	nats := externalNATS(t)
	cfg := testConfig(t, testenv.ClickHouse(t))
	cfg.NATSURL = nats.ClientURL()
	cfg.Processor.Partitions = 8
	srv := start(t, cfg)
	for _, d := range scenario() {
		post(t, srv, d)
	}
	assertReport(t, reportOf(t, srv, cfg), expected())
	stop(srv)
	before := stored(t, nats.JS, cfg.ClickHouseDSN)

	four := cfg
	four.Processor.Partitions = 4
	says := []string{"set up with 8 partitions (recorded on the bus)", "DORAFLOW_PARTITIONS (processor.partitions) is 4",
		"Keep DORAFLOW_PARTITIONS=8", "doraflow replay --repartition"}
	for _, role := range []serve.Role{serve.RoleAll, serve.RoleCollector, serve.RoleProcessor} {
		t.Run(string(role), func(t *testing.T) {
			srv, err := serve.Start(ctx, four, role, quiet())
			if err == nil {
				stop(srv)
			}
			wantPartitionsError(t, err, 8, 4, says...)
		})
	}
	t.Run("replay", func(t *testing.T) {
		_, err := runReplay(t, four, false)
		wantPartitionsError(t, err, 8, 4, says...)
	})
	if after := stored(t, nats.JS, cfg.ClickHouseDSN); after != before {
		t.Errorf("a refused start changed what is stored\nbefore:\n%s\nafter:\n%s", before, after)
	}

	// A bus set up before the count was recorded: its processors'
	// consumers tell.
	kv, err := nats.JS.KeyValue(ctx, bus.LayoutBucket)
	if err != nil {
		t.Fatal(err)
	}
	if err := kv.Purge(ctx, "layout"); err != nil {
		t.Fatal(err)
	}
	_, err = serve.Start(ctx, four, serve.RoleAll, quiet())
	wantPartitionsError(t, err, 8, 4, "set up with 8 partitions (found from its processors' consumers)")

	srv = start(t, cfg)
	defer stop(srv)
	assertReport(t, reportOf(t, srv, cfg), expected())
}

// The documented way to change the count: stop the processors, replay with
// --repartition and the new count, start everything with it. The facts are
// those of the same history processed under the new count (the rollback
// is still one), the old partitions' consumers are gone, processes still
// running under the old count stop, and the old count is refused from then
// on.
func TestRepartitionByReplay(t *testing.T) {
	ctx := context.Background()
	nats := externalNATS(t)
	cfg := testConfig(t, testenv.ClickHouse(t))
	cfg.NATSURL = nats.ClientURL()
	cfg.Processor.Partitions = 8
	srv := start(t, cfg)
	deliveries := scenario()
	for _, d := range deliveries[:12] {
		post(t, srv, d)
	}
	reportOf(t, srv, cfg)
	stop(srv)
	// A collector forgotten under the old count.
	collector, err := serve.Start(ctx, cfg, serve.RoleCollector, quiet())
	if err != nil {
		t.Fatal(err)
	}
	defer stop(collector)

	four := cfg
	four.Processor.Partitions = 4
	if _, err := runReplay(t, four, true); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-collector.Err():
		wantPartitionsError(t, err, 8, 8, "re-partitioning the bus from 8 to 4")
	case <-time.After(10 * time.Second):
		t.Error("a collector under the old count kept running after the bus was re-partitioned")
	}
	if l, _, _, err := bus.ReadLayout(ctx, nats.JS); err != nil || l != (bus.Layout{Partitions: 4}) {
		t.Errorf("recorded layout %+v (%v), want 4 partitions", l, err)
	}
	for p := 4; p < 8; p++ {
		if _, err := nats.JS.Consumer(ctx, bus.EventStream, processor.ConsumerName(processor.PartitionWorker(p))); !errors.Is(err, jetstream.ErrConsumerNotFound) {
			t.Errorf("partition %d's consumer is left: %v", p, err)
		}
	}

	_, err = serve.Start(ctx, cfg, serve.RoleAll, quiet())
	wantPartitionsError(t, err, 4, 8, "set up with 4 partitions")

	srv = start(t, four)
	defer stop(srv)
	for _, d := range deliveries[12:] {
		post(t, srv, d)
	}
	assertReport(t, reportOf(t, srv, four), expected())
}

// A replay that stopped half-way through a re-partitioning leaves the bus
// marked: nothing but another replay starts, under either count.
func TestUnfinishedRepartitionRefusesEverything(t *testing.T) {
	ctx := context.Background()
	nats := externalNATS(t)
	cfg := testConfig(t, testenv.ClickHouse(t))
	cfg.NATSURL = nats.ClientURL()
	cfg.Processor.Partitions = 8
	srv := start(t, cfg)
	for _, d := range scenario() {
		post(t, srv, d)
	}
	reportOf(t, srv, cfg)
	stop(srv)
	// What a replay to 4 partitions records before it touches the stream.
	l, rev, _, err := bus.ReadLayout(ctx, nats.JS)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bus.UpdateLayout(ctx, nats.JS, bus.Layout{Partitions: l.Partitions, Repartitioning: 4}, rev); err != nil {
		t.Fatal(err)
	}
	four := cfg
	four.Processor.Partitions = 4
	for _, c := range []config.Config{cfg, four} {
		_, err := serve.Start(ctx, c, serve.RoleAll, quiet())
		wantPartitionsError(t, err, 8, c.Processor.Partitions, "from 8 to 4 partitions", "doraflow replay --repartition")
		_, err = runReplay(t, c, false)
		wantPartitionsError(t, err, 8, c.Processor.Partitions, "from 8 to 4 partitions")
	}
	if _, err := runReplay(t, four, true); err != nil {
		t.Fatal(err)
	}
	srv = start(t, four)
	defer stop(srv)
	assertReport(t, reportOf(t, srv, four), expected())
}
