// Package processor runs the correlation against the bus: it fetches
// canonical events from JetStream in batches, folds them into the
// correlation state, writes the facts that changed in one batch per table,
// and only then acknowledges the messages.
package processor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/doraflow/doraflow/pkg/bus"
	"github.com/doraflow/doraflow/pkg/event"
	"github.com/doraflow/doraflow/pkg/telemetry"
	"github.com/doraflow/doraflow/processor/correlate"
)

// Store is where facts go.
type Store interface {
	// Write inserts fact rows at a version, idempotently.
	Write(ctx context.Context, f correlate.Facts, version uint64) error
	// WriteTeams records the team of each entity ("repo:…", "service:…").
	WriteTeams(ctx context.Context, teams map[string]string, version uint64) error
	// Facts are the facts stored now (latest live versions).
	Facts(ctx context.Context) (correlate.Facts, error)
	// Entities are every repository and service the stored facts mention.
	Entities(ctx context.Context) ([]string, error)
}

// Options tune the processor.
type Options struct {
	Correlate     correlate.Config
	BatchSize     int
	FlushInterval time.Duration
	// Partition this processor works on, of Partitions. Its consumer takes
	// the partition's pushes, merges and deployments, and every partition's
	// incidents (attribution needs them all).
	Partition int
	// Consumer is the durable consumer's name; default per partition.
	Consumer string
	// AckWait is how long a delivered message may stay unacknowledged
	// before JetStream delivers it again (after a crash, say). Long writes
	// keep their messages alive with progress signals.
	AckWait time.Duration
	// SnapshotInterval is how often the state is snapshotted to the bus, so
	// a restart folds only what came after.
	SnapshotInterval time.Duration
	// Comparers fill gaps in push chains, by source (github, gitlab); none
	// leaves gapped deployments approximate.
	Comparers map[string]Comparer
	// Partitions of the event subjects.
	Partitions int
	// LeaseTTL: how long a dead processor's partitions stay leased.
	LeaseTTL time.Duration
	// Retention bounds the state; zero keeps everything.
	Retention correlate.Retention
	// MaxDeliveries: a message delivered this often without being
	// acknowledged (it crashed the processor each time, say) is moved to the
	// dead-letter stream.
	MaxDeliveries int
}

// Processor is the stream processor.
type Processor struct {
	js      jetstream.JetStream
	store   Store
	opts    Options
	state   *correlate.State
	metrics *telemetry.Metrics
	logger  *slog.Logger

	lastVersion uint64
	mapped      map[string]bool // entities whose team is written
	ready       chan struct{}
	journaled   uint64    // the last journal sequence the state holds
	snapshotAt  time.Time // when the state was last snapshotted
	rebuilt     RebuildStats
	index       jetstream.KeyValue // production deployments of every partition
	published   map[string]correlate.ProductionDeployment
	indexStale  bool // production deployments changed since last published
	// foreign: other partitions' production deployments as last offered by
	// the manager, and the version of them the state has adopted.
	foreign        atomic.Pointer[foreignSet]
	foreignApplied atomic.Uint64
	gaps           *gapFiller
}

// New returns a processor; Run starts it.
func New(js jetstream.JetStream, store Store, opts Options, metrics *telemetry.Metrics, logger *slog.Logger) *Processor {
	opts.Partitions = max(opts.Partitions, 1)
	if opts.Consumer == "" {
		opts.Consumer = ConsumerName(opts.Partition)
	}
	partition, partitions := opts.Partition, opts.Partitions
	opts.Correlate.OwnsIncident = func(key string) bool { return event.Partition(key, partitions) == partition }
	if opts.MaxDeliveries <= 0 {
		opts.MaxDeliveries = 5
	}
	if opts.AckWait <= 0 {
		opts.AckWait = 30 * time.Second
	}
	if opts.SnapshotInterval <= 0 {
		opts.SnapshotInterval = 30 * time.Second
	}
	logger = logger.With("component", "processor", "partition", opts.Partition)
	return &Processor{js: js, store: store, opts: opts, state: correlate.New(opts.Correlate), metrics: metrics,
		logger: logger, mapped: map[string]bool{}, ready: make(chan struct{}), published: map[string]correlate.ProductionDeployment{},
		gaps: newGapFiller(opts.Comparers, js, opts.Partitions, metrics, logger)}
}

// Rebuilt says what the start-up rebuild did; valid once Ready is closed.
func (p *Processor) Rebuilt() RebuildStats { return p.rebuilt }

// Ready is closed once the processor has rebuilt its state and consumes.
func (p *Processor) Ready() <-chan struct{} { return p.ready }

// Rebuild makes the stored facts match the event stream: it reads what is
// stored, folds every event on the stream, and writes the difference (new
// facts, changed ones, tombstones for those that no longer hold). Run does
// it at start; replay does it after re-deriving the stream.
func (p *Processor) Rebuild(ctx context.Context) (RebuildStats, error) {
	start := time.Now()
	stats := RebuildStats{}
	// What is stored comes from the store itself: a snapshot may be older
	// than the last writes.
	stored, err := p.store.Facts(ctx)
	if err != nil {
		return stats, fmt.Errorf("processor: load stored facts: %w", err)
	}
	stored = p.own(stored)
	p.state.Remember(stored)
	stats.Stored = stored.Len()
	snap, err := p.loadSnapshot(ctx)
	if err != nil {
		return stats, err
	}
	if snap != nil {
		p.state.Restore(snap.State)
		p.journaled = snap.JournalSeq
		stats.FromSnapshot = len(snap.State.Events)
	}
	folded, err := p.foldJournal(ctx)
	if err != nil {
		return stats, err
	}
	p.adoptForeign()
	// Facts of events folded but not yet written when the last run stopped.
	changed := p.state.Flush()
	if err := p.write(ctx, changed); err != nil {
		return stats, err
	}
	if err := p.publishIndex(ctx); err != nil {
		return stats, err
	}
	if err := p.saveSnapshot(ctx); err != nil {
		return stats, err
	}
	stats.Events, stats.Written, stats.Took = folded, changed.Len(), time.Since(start)
	return stats, nil
}

// RebuildStats says what a Rebuild did.
type RebuildStats struct {
	FromSnapshot int // events restored from the snapshot
	Events       int // events folded from the journal after it
	Stored       int // facts known to be stored
	Written      int // rows written to bring the store in line
	Took         time.Duration
}

// Run processes events until ctx is done.
func (p *Processor) Run(ctx context.Context) error {
	stats, err := p.Rebuild(ctx)
	if err != nil {
		return err
	}
	p.rebuilt = stats
	if len(p.opts.Comparers) > 0 {
		go p.gaps.run(ctx)
		p.gaps.offer(p.state.Gaps())
	}
	p.logger.Info("state rebuilt", "from_snapshot", stats.FromSnapshot, "from_stream", stats.Events,
		"stored_facts", stats.Stored, "rows_written", stats.Written, "took", stats.Took.Round(time.Millisecond))

	cons, err := p.js.CreateOrUpdateConsumer(ctx, bus.EventStream, jetstream.ConsumerConfig{
		Durable:        p.opts.Consumer,
		AckPolicy:      jetstream.AckExplicitPolicy,
		AckWait:        p.opts.AckWait,
		MaxAckPending:  max(p.opts.BatchSize*2, 1000),
		FilterSubjects: PartitionSubjects(p.opts.Partition),
		DeliverPolicy:  jetstream.DeliverAllPolicy,
	})
	if err != nil {
		return fmt.Errorf("processor: consumer: %w", err)
	}
	close(p.ready)
	for ctx.Err() == nil {
		if err := p.batch(ctx, cons); err != nil {
			if ctx.Err() != nil {
				break
			}
			p.metrics.Errors.WithLabelValues("processor", "fetch").Inc()
			p.logger.Warn("fetch failed", "err", err)
			sleep(ctx, time.Second)
		}
	}
	stopCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if err := p.saveSnapshot(stopCtx); err != nil {
		p.logger.Warn("snapshot at stop skipped", "err", err)
	}
	return nil
}

// batch fetches up to BatchSize messages (waiting at most FlushInterval),
// folds them, writes what changed and acknowledges them.
func (p *Processor) batch(ctx context.Context, cons jetstream.Consumer) error {
	msgs, err := cons.Fetch(p.opts.BatchSize, jetstream.FetchMaxWait(p.opts.FlushInterval))
	if err != nil {
		return err
	}
	var got []jetstream.Msg
	var applied []event.Event
	var newest time.Time
	for m := range msgs.Messages() {
		meta, err := m.Metadata()
		if err != nil {
			return fmt.Errorf("processor: message metadata: %w", err)
		}
		if int(meta.NumDelivered) > p.opts.MaxDeliveries {
			p.deadLetter(ctx, m, meta, "redelivered", fmt.Sprintf("delivered %d times without being processed", meta.NumDelivered))
			continue
		}
		data, err := bus.Data(ctx, p.js, m)
		switch {
		case errors.Is(err, bus.ErrPayloadMissing):
			p.deadLetter(ctx, m, meta, "undecodable", err.Error())
			continue
		case err != nil:
			// The payload bucket did not answer: the message comes again.
			p.logger.Warn("reading a message's payload failed; it will be redelivered", "subject", m.Subject(), "err", err)
			_ = m.NakWithDelay(time.Second)
			continue
		}
		e, err := decode(data)
		if err != nil {
			// Collectors validate before publishing, so this message comes
			// from elsewhere and will never parse: set it aside.
			p.deadLetter(ctx, m, meta, "undecodable", err.Error())
			continue
		}
		got = append(got, m)
		if p.state.Apply(e) {
			applied = append(applied, e)
			p.metrics.Processed.WithLabelValues(string(e.Type)).Inc()
		}
		if meta.Timestamp.After(newest) {
			newest = meta.Timestamp
		}
	}
	if err := msgs.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) && !errors.Is(err, context.DeadlineExceeded) {
		p.logger.Debug("fetch ended", "err", err)
	}
	if !p.adoptForeign() && len(got) == 0 {
		return nil
	}
	stopBeat := heartbeat(got, p.opts.AckWait/3)
	facts := p.state.Flush()
	err = p.write(ctx, facts)
	stopBeat()
	if err != nil {
		return err // not acknowledged: redelivered after the ack wait
	}
	if err := p.appendJournal(ctx, applied); err != nil {
		return err // not acknowledged: folded again on redelivery or restart
	}
	// The production deployments change only with deployment facts.
	p.indexStale = p.indexStale || len(facts.Deployments) > 0
	if p.indexStale {
		if err := p.publishIndex(ctx); err != nil {
			// Other partitions attribute incidents with a stale view until
			// a later batch publishes again.
			p.metrics.Errors.WithLabelValues("processor", "index").Inc()
			p.logger.Warn("publishing production deployments failed", "err", err)
		} else {
			p.indexStale = false
		}
	}
	p.metrics.Approximate.WithLabelValues(strconv.Itoa(p.opts.Partition)).Set(float64(p.state.Approximate()))
	if len(p.opts.Comparers) > 0 {
		p.gaps.offer(p.state.Gaps())
	}
	for _, m := range got {
		if err := m.Ack(); err != nil {
			p.logger.Warn("ack failed; the event will be redelivered and dropped as a duplicate", "err", err)
		}
	}
	if !newest.IsZero() {
		p.metrics.ProcessingLag.Set(time.Since(newest).Seconds())
	}
	if time.Since(p.snapshotAt) >= p.opts.SnapshotInterval {
		if err := p.saveSnapshot(ctx); err != nil {
			p.metrics.Errors.WithLabelValues("processor", "snapshot").Inc()
			p.logger.Warn("snapshot failed; a restart folds more of the stream", "err", err)
		}
	}
	return nil
}

// heartbeat tells JetStream, every interval, that msgs are still being
// worked on (a write retrying while ClickHouse is down), so they are not
// redelivered meanwhile. The returned func stops it.
func heartbeat(msgs []jetstream.Msg, interval time.Duration) func() {
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(max(interval, 100*time.Millisecond))
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				for _, m := range msgs {
					_ = m.InProgress()
				}
			}
		}
	}()
	return func() { close(done) }
}

// deadLetter moves a message the processor cannot use to the dead-letter
// stream, with the reason, and terminates its delivery. If the dead-letter
// stream does not take it, the message stays unacknowledged and comes back.
func (p *Processor) deadLetter(ctx context.Context, m jetstream.Msg, meta *jetstream.MsgMetadata, kind, reason string) {
	dl := nats.NewMsg("doraflow.dlq." + strings.TrimPrefix(m.Subject(), "doraflow."))
	dl.Data = m.Data()
	for k, v := range m.Headers() {
		dl.Header[k] = v
	}
	dl.Header.Del(nats.MsgIdHdr)
	dl.Header.Set(bus.HeaderReason, reason)
	dl.Header.Set(bus.HeaderOriginalSubject, m.Subject())
	dl.Header.Set(bus.HeaderOriginalSeq, strconv.FormatUint(meta.Sequence.Stream, 10))
	if _, err := p.js.PublishMsg(ctx, dl); err != nil {
		p.logger.Error("dead-letter publish failed; message left for redelivery", "subject", m.Subject(), "err", err)
		return
	}
	// Out of the event stream too, or every rebuild would fold it again.
	if stream, err := p.js.Stream(ctx, bus.EventStream); err == nil {
		if err := stream.DeleteMsg(ctx, meta.Sequence.Stream); err != nil {
			p.logger.Warn("dead letter left in the event stream", "seq", meta.Sequence.Stream, "err", err)
		}
	}
	_ = m.Term()
	p.metrics.DeadLettered.WithLabelValues(kind).Inc()
	p.logger.Error("message dead-lettered", "subject", m.Subject(), "seq", meta.Sequence.Stream, "reason", reason)
}

// write stores the facts and the teams of new entities, retrying with
// backoff while the store is down (the messages stay unacknowledged).
func (p *Processor) write(ctx context.Context, f correlate.Facts) error {
	if f.Len() == 0 {
		return nil
	}
	version := p.nextVersion()
	teams := p.newEntities(f)
	_, err := backoff.Retry(ctx, func() (struct{}, error) {
		if err := p.store.Write(ctx, f, version); err != nil {
			p.metrics.Errors.WithLabelValues("processor", "write").Inc()
			p.logger.Warn("write failed; retrying", "rows", f.Len(), "err", err)
			return struct{}{}, err
		}
		if err := p.store.WriteTeams(ctx, teams, version); err != nil {
			p.metrics.Errors.WithLabelValues("processor", "write").Inc()
			return struct{}{}, err
		}
		return struct{}{}, nil
	}, backoff.WithBackOff(writeBackOff()), backoff.WithMaxElapsedTime(0))
	if err != nil {
		return fmt.Errorf("processor: write: %w", err)
	}
	for e := range teams {
		p.mapped[e] = true
	}
	p.metrics.FactsWritten.WithLabelValues("deployments").Add(float64(len(f.Deployments)))
	p.metrics.FactsWritten.WithLabelValues("changes").Add(float64(len(f.Changes)))
	p.metrics.FactsWritten.WithLabelValues("incidents").Add(float64(len(f.Incidents)))
	return nil
}

// writeBackOff retries a failed write from 100 ms up to every 5 s: a
// returning ClickHouse is noticed within seconds.
func writeBackOff() *backoff.ExponentialBackOff {
	b := backoff.NewExponentialBackOff()
	b.InitialInterval = 100 * time.Millisecond
	b.MaxInterval = 5 * time.Second
	return b
}

func (p *Processor) newEntities(f correlate.Facts) map[string]string {
	repos, services := f.Entities()
	out := map[string]string{}
	for _, r := range repos {
		if e := "repo:" + r; !p.mapped[e] {
			out[e] = p.opts.Correlate.TeamOfRepo(r)
		}
	}
	for _, s := range services {
		if e := "service:" + s; !p.mapped[e] {
			out[e] = p.opts.Correlate.TeamOfService(s)
		}
	}
	return out
}

// RefreshTeams rewrites the team of every stored entity from the current
// configuration: a changed team mapping re-attributes all history.
func RefreshTeams(ctx context.Context, store Store, cfg correlate.Config) error {
	entities, err := store.Entities(ctx)
	if err != nil {
		return fmt.Errorf("processor: %w", err)
	}
	teams := map[string]string{}
	for _, e := range entities {
		if repo, ok := strings.CutPrefix(e, "repo:"); ok {
			teams[e] = cfg.TeamOfRepo(repo)
		} else if service, ok := strings.CutPrefix(e, "service:"); ok {
			teams[e] = cfg.TeamOfService(service)
		}
	}
	if err := store.WriteTeams(ctx, teams, uint64(time.Now().UnixNano())); err != nil {
		return fmt.Errorf("processor: %w", err)
	}
	return nil
}

// nextVersion is a wall-clock version, strictly increasing in this process,
// so a restarted processor's rows replace its predecessor's.
func (p *Processor) nextVersion() uint64 {
	v := uint64(time.Now().UnixNano())
	if v <= p.lastVersion {
		v = p.lastVersion + 1
	}
	p.lastVersion = v
	return v
}

// Idle reports whether every event on the bus has been processed and
// acknowledged.
func (p *Processor) Idle(ctx context.Context) (bool, error) {
	cons, err := p.js.Consumer(ctx, bus.EventStream, p.opts.Consumer)
	if err != nil {
		return false, err
	}
	info, err := cons.Info(ctx)
	if err != nil {
		return false, err
	}
	offered := p.foreign.Load()
	settled := offered == nil || p.foreignApplied.Load() == offered.version
	return settled && info.NumPending == 0 && info.NumAckPending == 0, nil
}

func decode(data []byte) (event.Event, error) {
	var e event.Event
	if err := json.Unmarshal(data, &e); err != nil {
		return e, fmt.Errorf("decode event: %w", err)
	}
	if err := e.Validate(); err != nil {
		return e, err
	}
	return e, nil
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
