package serve_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/doraflow/doraflow/internal/githubtest"
	"github.com/doraflow/doraflow/internal/report"
	"github.com/doraflow/doraflow/internal/serve"
	"github.com/doraflow/doraflow/internal/testenv"
	"github.com/doraflow/doraflow/pkg/bus"
	"github.com/doraflow/doraflow/pkg/config"
	"github.com/doraflow/doraflow/pkg/dora"
	"github.com/doraflow/doraflow/pkg/event"
	"github.com/doraflow/doraflow/pkg/telemetry"
	"github.com/doraflow/doraflow/processor"
	"github.com/doraflow/doraflow/processor/correlate"
	"github.com/doraflow/doraflow/sinks/clickhouse"
)

func metricsText(t *testing.T, addr string) string {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// ClickHouse goes away while webhooks keep coming: the collectors still
// accept them (the bus holds them), the processor acknowledges nothing it
// could not write, and when ClickHouse returns it catches up to the same
// numbers.
func TestClickHouseOutageLosesNothing(t *testing.T) {
	dsn := testenv.ClickHouse(t)
	d, err := config.ParseClickHouseDSN(dsn)
	if err != nil {
		t.Fatal(err)
	}
	proxy := testenv.NewProxy(t, d.Addr)
	cfg := testConfig(t, fmt.Sprintf("clickhouse://%s/%s", proxy.Addr(), d.Database))
	srv := start(t, cfg)
	defer stop(srv)
	deliveries := scenario()
	for _, dl := range deliveries[:8] {
		post(t, srv, dl)
	}
	reportOf(t, srv, cfg)

	proxy.Cut()
	for _, dl := range deliveries[8:] {
		post(t, srv, dl) // 2xx: the bus took them
	}
	resp, err := http.Get("http://" + srv.Addr() + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("/readyz with ClickHouse down: %d", resp.StatusCode)
	}
	time.Sleep(500 * time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if idle, err := srv.Processor().Idle(ctx); err != nil || idle {
		t.Fatalf("processor idle (%v, %v) although it could not write", idle, err)
	}
	if !strings.Contains(metricsText(t, srv.Addr()), `doraflow_errors_total{component="processor",kind="write"}`) {
		t.Error("write failures not counted")
	}

	proxy.Restore()
	assertReport(t, reportOf(t, srv, cfg), expected())
}

// A message the processor cannot use goes to the dead-letter stream with
// the reason; the events around it are processed as usual.
func TestPoisonMessageIsDeadLettered(t *testing.T) {
	cfg := testConfig(t, testenv.ClickHouse(t))
	srv := start(t, cfg)
	defer stop(srv)
	deliveries := scenario()
	for _, dl := range deliveries[:5] {
		post(t, srv, dl)
	}
	ctx := context.Background()
	poison := nats.NewMsg(bus.EventSubject(0, "deployment"))
	poison.Data = []byte(`{"id": "x", "type": "deployment"`)
	if _, err := srv.Bus.JS.PublishMsg(ctx, poison); err != nil {
		t.Fatal(err)
	}
	for _, dl := range deliveries[5:] {
		post(t, srv, dl)
	}
	assertReport(t, reportOf(t, srv, cfg), expected())

	dlq, err := srv.Bus.JS.Stream(ctx, bus.DeadLetterStream)
	if err != nil {
		t.Fatal(err)
	}
	msg, err := dlq.GetMsg(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	if string(msg.Data) != string(poison.Data) || !strings.Contains(msg.Header.Get(bus.HeaderReason), "decode event") ||
		msg.Header.Get(bus.HeaderOriginalSubject) != poison.Subject {
		t.Errorf("dead letter: %s %v", msg.Data, msg.Header)
	}
	if !strings.Contains(metricsText(t, srv.Addr()), `doraflow_dead_lettered_total{reason="undecodable"} 1`) {
		t.Error("dead letter not counted in /metrics")
	}
}

// Moving a repository to another team re-attributes its whole history
// without reprocessing: the team is joined at query time.
func TestTeamRemapReattributesHistory(t *testing.T) {
	cfg := testConfig(t, testenv.ClickHouse(t))
	srv := start(t, cfg)
	for _, dl := range scenario() {
		post(t, srv, dl)
	}
	before := reportOf(t, srv, cfg)
	stop(srv)

	cfg.Teams[0].Repos = append(cfg.Teams[0].Repos, "acme/checkout") // payments takes checkout over
	cfg.Teams = append(cfg.Teams[:1], cfg.Teams[2:]...)
	srv = start(t, cfg)
	defer stop(srv)
	after := reportOf(t, srv, cfg)
	pay := after.Teams[0]
	if pay.Team != "payments" || pay.Deployments != 5 || pay.Changes != 6 || pay.Incidents != 1 || pay.FailedDeployments != 2 {
		t.Errorf("payments after the remap: %+v", pay)
	}
	if after.Total.Deployments != before.Total.Deployments || *after.Total.LeadTimeMedianSeconds != *before.Total.LeadTimeMedianSeconds {
		t.Errorf("totals changed: %+v vs %+v", after.Total, before.Total)
	}
}

// Shortening the retention drops old history from the processors' state
// but leaves the facts already stored as they are.
func TestRetentionFreezesOldFacts(t *testing.T) {
	cfg := testConfig(t, testenv.ClickHouse(t))
	srv := start(t, cfg)
	for _, dl := range scenario() {
		post(t, srv, dl)
	}
	assertReport(t, reportOf(t, srv, cfg), expected())
	stop(srv)

	cfg.Processor.Retention.Keep = 30 * 24 * time.Hour // the scenario is older
	srv = start(t, cfg)
	r := reportOf(t, srv, cfg)
	stop(srv) // snapshots the compacted state
	srv = start(t, cfg)
	defer stop(srv)
	assertReport(t, r, expected())
	assertReport(t, reportOf(t, srv, cfg), expected())
}

// An event that keeps failing (here: delivered again and again without
// being acknowledged, as when it crashes the processor) goes to the
// dead-letter stream with the reason, out of the event stream, and counts
// for nothing.
func TestRedeliveredEventIsDeadLettered(t *testing.T) {
	ctx := context.Background()
	cfg := testConfig(t, testenv.ClickHouse(t))
	cfg.Processor.AckWait = time.Second
	poison := githubtest.DeploymentStatus("x", "acme/pay-api", 9, 99, githubtest.SHA("x1"), "production", "success", at(2, 0, 0))
	partition := event.Partition("repo:acme/pay-api", cfg.Processor.Partitions)
	func() { // a processor that dies on the event, six times over
		srv, err := serve.Start(ctx, cfg, serve.RoleCollector, quiet())
		if err != nil {
			t.Fatal(err)
		}
		defer stop(srv)
		post(t, srv, poison)
		cons, err := srv.Bus.JS.CreateOrUpdateConsumer(ctx, bus.EventStream, jetstream.ConsumerConfig{
			Durable: processor.ConsumerName(processor.PartitionWorker(partition)), AckPolicy: jetstream.AckExplicitPolicy, AckWait: time.Second,
			FilterSubjects: processor.PartitionSubjects(partition),
		})
		if err != nil {
			t.Fatal(err)
		}
		for range 6 {
			if _, err := cons.Next(jetstream.FetchMaxWait(3 * time.Second)); err != nil {
				t.Fatal(err)
			}
		}
	}()
	srv := start(t, cfg)
	defer stop(srv)
	r := reportOf(t, srv, cfg)
	if r.Total.Deployments != 0 {
		t.Errorf("the dead-lettered deployment counts: %+v", r.Total)
	}
	dlq, err := srv.Bus.JS.Stream(ctx, bus.DeadLetterStream)
	if err != nil {
		t.Fatal(err)
	}
	msg, err := dlq.GetLastMsgForSubject(ctx, "doraflow.dlq.>")
	if err != nil {
		t.Fatal(err)
	}
	if reason := msg.Header.Get(bus.HeaderReason); !strings.Contains(reason, "delivered 7 times") {
		t.Errorf("dead-letter reason %q", reason)
	}
	if !strings.Contains(metricsText(t, srv.Addr()), `doraflow_dead_lettered_total{reason="redelivered"} 1`) {
		t.Error("not counted in /metrics")
	}
	stop(srv)
	srv = start(t, cfg) // a rebuild does not fold it either
	if r := reportOf(t, srv, cfg); r.Total.Deployments != 0 {
		t.Errorf("after a restart the dead-lettered deployment counts: %+v", r.Total)
	}
}

// cutStore stores the first batch that has rollups without them (and
// without its team mapping), then fails it for good: a write cut short
// between the fact tables and the rest, as a stop or a crash can.
type cutStore struct {
	processor.Store
	cut atomic.Bool
}

func (s *cutStore) Write(ctx context.Context, f correlate.Facts, version uint64) error {
	if len(f.Days) == 0 || s.cut.Swap(true) {
		return s.Store.Write(ctx, f, version)
	}
	f.Days = nil
	if err := s.Store.Write(ctx, f, version); err != nil {
		return err
	}
	return backoff.Permanent(errors.New("cut short before the rollups"))
}

// A worker whose write stored the facts but not their rollups and team
// mapping stops; its successor finds every fact stored and must still
// write what the cut left out, or the report lacks those facts for good.
func TestWriteCutBeforeTheRollupsIsRepaired(t *testing.T) {
	ctx := context.Background()
	nats := externalNATS(t)
	dsn := testenv.ClickHouse(t)
	cfg := testConfig(t, dsn)
	cfg.NATSURL = nats.ClientURL()
	cfg.Processor.Partitions = 1
	cfg.Processor.AckWait = time.Second // the cut batch comes again after it
	collector, err := serve.Start(ctx, cfg, serve.RoleCollector, quiet())
	if err != nil {
		t.Fatal(err)
	}
	defer stop(collector)
	store, err := clickhouse.Open(ctx, dsn, quiet())
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	if err := serve.Migrate(ctx, collector.Bus, store, 1); err != nil {
		t.Fatal(err)
	}
	opts, err := serve.ProcessorOptions(cfg)
	if err != nil {
		t.Fatal(err)
	}
	cut := &cutStore{Store: store}
	manager := processor.NewManager(nats.JS, cut, opts, telemetry.New(), failureLog(t))
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- manager.Run(runCtx) }()
	defer func() { cancel(); <-done }()
	<-manager.Ready()
	for _, d := range scenario() {
		post(t, collector, d)
	}
	waitIdle(t, nats.JS, cfg.Processor.Partitions)
	if !cut.cut.Load() {
		t.Fatal("no write was cut short")
	}
	var teams []string
	for _, tm := range cfg.Teams {
		teams = append(teams, tm.Name)
	}
	got, err := report.Build(ctx, store, dora.Benchmark2023, at(1, 0, 0), at(11, 0, 0), teams, "")
	if err != nil {
		t.Fatal(err)
	}
	assertReport(t, got, expected())
}
