// Package processor runs the correlation against the bus. A worker runs
// one stage — a partition's repository stage, or the attribution stage —
// and loops: fetch canonical events and the links other stages handed it,
// fold them, write the facts that changed in one batch per table, publish
// its own links, checkpoint, and only then acknowledge. A Manager runs the
// workers this process owns.
package processor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"strconv"
	"strings"
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
	// Entities are every repository and service the stored facts mention.
	Entities(ctx context.Context) ([]string, error)
	// FactsOf are the live stored facts of the repositories and incidents
	// named: what a rebuild remembers of what it folded again.
	FactsOf(ctx context.Context, repos, incidents []string) (correlate.Facts, error)
	// WrittenSince are, of the repositories named, every fact with a row
	// written at a version above since, with all its rows (live or not):
	// what a rebuild from a snapshot taken at that version remembers.
	WrittenSince(ctx context.Context, repos []string, since uint64) (correlate.Facts, error)
}

// Options tune the processor.
type Options struct {
	Correlate     correlate.Config
	BatchSize     int
	FlushInterval time.Duration
	// Partition this worker works on, of Partitions; Partitions itself is
	// the attribution stage.
	Partition int
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
	// Replicas of the lease bucket, as of every stream (nats.replicas).
	Replicas int
	// Clock is where row versions start from (nil: time.Now). Versions go
	// on from the predecessor's whatever it says, so a clock behind its
	// predecessor's changes nothing: the fencing test runs one an hour slow.
	Clock func() time.Time
	// MaxDeliveries: a message delivered this often without being
	// acknowledged (it crashed the processor each time, say) is moved to the
	// dead-letter stream.
	MaxDeliveries int
}

// Processor is one worker.
type Processor struct {
	js      jetstream.JetStream
	store   Store
	opts    Options
	stage   stage
	repos   *repoStage // when the stage is a partition's repositories
	metrics *telemetry.Metrics
	logger  *slog.Logger

	pos         position // the stream positions the state has folded
	lastVersion uint64
	// checkpointRev is the revision of the checkpoint this worker last
	// wrote: saveCheckpoint succeeds only while it is the latest.
	checkpointRev uint64
	mapped        map[string]bool // entities whose team is written
	ready         chan struct{}
	snapshotAt    time.Time
	snapshotDur   time.Duration // what the last snapshot took
	// head and objects: the committed snapshot's head and the objects it
	// names (repository stage), as the next snapshot starts from.
	head        string
	snapshotPos position
	objects     map[string]string
	// consumers of events and links, once Run has them: their
	// acknowledgement floors bound what a snapshot covers.
	consumers [2]jetstream.Consumer
	// runID and linkSeq name the links this run publishes.
	runID   string
	linkSeq uint64
	// stale: a flush handed out rows that were never written (the write was
	// cut short by a stop): the state is ahead of the store, so it must
	// not be snapshotted nor go on; the worker starts again from its
	// snapshot.
	stale   bool
	rebuilt RebuildStats
	gaps    *gapFiller
	// pipeline counts what the batches took, for the store (pipeline.go).
	pipeline telemetry.Tally
}

// position is how far a worker has folded each of its streams, and the
// version of the last rows it wrote (or, in a checkpoint, is writing).
type position struct {
	Events  uint64 `json:"events"`
	Links   uint64 `json:"links"`
	Version uint64 `json:"version,omitempty"`
}

func (p position) max(o position) position {
	return position{Events: max(p.Events, o.Events), Links: max(p.Links, o.Links), Version: max(p.Version, o.Version)}
}

// New returns the worker of opts.Partition; Run starts it.
func New(js jetstream.JetStream, store Store, opts Options, metrics *telemetry.Metrics, logger *slog.Logger) *Processor {
	opts.Partitions = max(opts.Partitions, 1)
	if opts.MaxDeliveries <= 0 {
		opts.MaxDeliveries = 5
	}
	if opts.AckWait <= 0 {
		opts.AckWait = 30 * time.Second
	}
	if opts.SnapshotInterval <= 0 {
		opts.SnapshotInterval = 30 * time.Second
	}
	p := &Processor{js: js, store: store, opts: opts, metrics: metrics, mapped: map[string]bool{}, ready: make(chan struct{}),
		runID: strconv.FormatInt(time.Now().UnixNano(), 36) + "-" + strconv.FormatUint(rand.Uint64(), 36)}
	if opts.Partition == opts.Partitions {
		p.stage = &attributionStage{attribution: correlate.NewAttribution(opts.Correlate)}
	} else {
		cfg := opts.Correlate
		partition, partitions := opts.Partition, opts.Partitions
		cfg.OwnsRepo = func(repo string) bool { return event.Partition("repo:"+repo, partitions) == partition }
		p.repos = &repoStage{partition: opts.Partition, repos: correlate.NewRepos(cfg)}
		p.stage = p.repos
	}
	p.logger = logger.With("component", "processor", "worker", p.stage.name())
	p.gaps = newGapFiller(opts.Comparers, js, opts.Partitions, metrics, p.logger)
	return p
}

// ConsumerName is the durable consumer of a worker's events ("p3",
// "attribution"); its links consumer adds "-links".
func ConsumerName(worker string) string { return "doraflow-processor-" + worker }

// Workers are the names of every worker of an installation.
func Workers(partitions int) []string {
	var out []string
	for p := range max(partitions, 1) {
		out = append(out, PartitionWorker(p))
	}
	return append(out, "attribution")
}

// Rebuilt says what the start-up rebuild did; valid once Ready is closed.
func (p *Processor) Rebuilt() RebuildStats { return p.rebuilt }

// Ready is closed once the worker has rebuilt its state and consumes.
func (p *Processor) Ready() <-chan struct{} { return p.ready }

// RebuildStats says what a rebuild did.
type RebuildStats struct {
	FromSnapshot bool          // a snapshot was restored
	Events       int           // messages folded after it, up to the checkpoint
	Remembered   int           // stored facts read for what was folded again
	Written      int           // rows written by the rebuild
	Took         time.Duration // time to rebuild
}

// Rebuild restores the worker's state as it was when its last facts were
// written: the snapshot, then exactly the messages up to the checkpoint.
// It reads of the stored facts only those written since the snapshot.
// Every step gives way to a stop: the lease is handed over only once the
// worker is gone.
func (p *Processor) Rebuild(ctx context.Context) (RebuildStats, error) {
	start := time.Now()
	var stats RebuildStats
	committed, rev, err := p.loadCheckpoint(ctx)
	if err != nil {
		return stats, err
	}
	cp := committed.position
	// Writing the checkpoint back at once makes it this worker's: a
	// predecessor still running fails its next checkpoint or snapshot
	// commit (ErrFenced), so the snapshot named now stays the one to use.
	p.checkpointRev, p.head = rev, committed.Head
	if err := p.saveCheckpoint(ctx, cp); err != nil {
		return stats, err
	}
	snapPos, found, err := p.loadSnapshot(ctx, committed.Head)
	if err != nil {
		return stats, err
	}
	stats.FromSnapshot = found
	// Objects no committed head names go beside the work, not before it.
	go p.dropOrphans(ctx, p.committedObjects())
	if stats.Events, err = p.refold(ctx, snapPos, cp); err != nil {
		return stats, err
	}
	p.pos = snapPos.max(cp)
	// Versions go on from the predecessor's, whatever this clock says: its
	// rows must never outrank this worker's.
	p.lastVersion = max(p.lastVersion, p.pos.Version)
	// The store may hold rows the snapshot does not know of (written after
	// it), and lack rows the checkpoint covers (a write cut short): what
	// was written since the snapshot (or, without one, all of what was
	// folded again) is compared with what the state says, so the flush
	// writes exactly the difference.
	var stored correlate.Facts
	if repos, incidents := p.stage.touched(); len(repos)+len(incidents) > 0 {
		since := uint64(0)
		if found {
			since = snapPos.Version
		}
		err := p.retry(ctx, "read", func() error {
			var err error
			stored, err = p.remembered(ctx, repos, incidents, since)
			return err
		})
		if err != nil {
			return stats, err
		}
		if err := ctx.Err(); err != nil {
			return stats, err
		}
		p.stage.remember(stored, since > 0)
		stats.Remembered = stored.Len()
	}
	facts, links, err := p.stage.flush()
	if err != nil {
		return stats, err
	}
	if err := ctx.Err(); err != nil {
		return stats, err
	}
	// Checkpoint first, as for a batch: a successor's versions then start
	// above this write's.
	p.pos.Version = p.nextVersion()
	if err := p.saveCheckpoint(ctx, p.pos); err != nil {
		return stats, err
	}
	// The team mapping of what was stored too: the write that stored it may
	// have been cut short before the mapping's.
	teams := p.newEntities(facts)
	maps.Copy(teams, p.newEntities(stored))
	if err := p.writeTeams(ctx, facts, teams, p.pos.Version); err != nil {
		return stats, err
	}
	p.linkIDs(links)
	if err := p.publish(ctx, links); err != nil {
		return stats, err
	}
	// No snapshot here: consuming again comes first, and the first batch
	// takes one once snapshot_interval has passed since the one restored.
	stats.Written, stats.Took = facts.Len(), time.Since(start)
	return stats, nil
}

// remembered reads what a rebuild compares with its state: the facts
// written since the snapshot's version, or (since 0: no snapshot, or one
// from before versions were recorded) every live fact of what was folded.
func (p *Processor) remembered(ctx context.Context, repos, incidents []string, since uint64) (correlate.Facts, error) {
	if since == 0 {
		return p.store.FactsOf(ctx, repos, incidents)
	}
	out, err := p.store.WrittenSince(ctx, repos, since)
	if err != nil || len(incidents) == 0 {
		return out, err
	}
	stored, err := p.store.FactsOf(ctx, nil, incidents)
	out.Incidents = stored.Incidents
	return out, err
}

// Run processes until ctx is done.
func (p *Processor) Run(ctx context.Context) error {
	stats, err := p.Rebuild(ctx)
	if err != nil {
		return err
	}
	p.rebuilt = stats
	if len(p.opts.Comparers) > 0 && p.repos != nil {
		go p.gaps.run(ctx)
		p.gaps.offer(p.repos.repos.Gaps())
	}
	p.logger.Info("state rebuilt", "from_snapshot", stats.FromSnapshot, "folded", stats.Events,
		"remembered", stats.Remembered, "rows_written", stats.Written, "took", stats.Took.Round(time.Millisecond))
	events, err := p.consumer(ctx, bus.EventStream, ConsumerName(p.stage.name()), p.stage.eventSubjects())
	if err != nil {
		return err
	}
	links, err := p.linkConsumer(ctx)
	if err != nil {
		return err
	}
	p.consumers = [2]jetstream.Consumer{events, links}
	close(p.ready)
	for ctx.Err() == nil {
		if err := p.batch(ctx, events, links); err != nil {
			if p.stale {
				return err // no snapshot of a state ahead of the store
			}
			if ctx.Err() != nil {
				break
			}
			p.metrics.Errors.WithLabelValues("processor", "fetch").Inc()
			p.logger.Warn("batch failed", "err", err)
			sleep(ctx, time.Second)
		}
	}
	// Handing a lease over, no snapshot: the stop must be quick (the lease
	// goes as soon as it returns), and the next owner refolds from the last
	// one up to the checkpoint. Shutting down, a snapshot of the state as
	// written spares the successor that refold (after a backfill, the
	// whole burst).
	if !p.stale && !errors.Is(context.Cause(ctx), ErrHandedOver) {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownSnapshot)
		defer cancel()
		if err := p.saveSnapshot(sctx); err != nil {
			p.logger.Warn("snapshot at shutdown failed; the next start folds more of the stream", "err", err)
		}
	}
	return nil
}

// ErrHandedOver is the cause a worker is stopped with when its lease
// moves to another process.
var ErrHandedOver = errors.New("processor: lease handed over")

// shutdownSnapshot bounds the snapshot a worker takes when the process
// shuts down (within a container's usual 30 s grace period).
const shutdownSnapshot = 20 * time.Second

func (p *Processor) consumer(ctx context.Context, stream, name string, subjects []string) (jetstream.Consumer, error) {
	cons, err := p.js.CreateOrUpdateConsumer(ctx, stream, jetstream.ConsumerConfig{
		Durable:        name,
		AckPolicy:      jetstream.AckExplicitPolicy,
		AckWait:        p.opts.AckWait,
		MaxAckPending:  max(p.opts.BatchSize*2, 1000),
		FilterSubjects: subjects,
		DeliverPolicy:  jetstream.DeliverAllPolicy,
	})
	if err != nil {
		return nil, fmt.Errorf("processor: consumer %s: %w", name, err)
	}
	return cons, nil
}

// linkConsumer starts the worker's consumer of links right after the
// last link its state folded. A link is the latest record of its key, so
// links must fold in stream order: a predecessor's unacknowledged links,
// which the durable consumer would redeliver after newer ones, come again
// in their place.
func (p *Processor) linkConsumer(ctx context.Context) (jetstream.Consumer, error) {
	name := ConsumerName(p.stage.name()) + "-links"
	if err := p.js.DeleteConsumer(ctx, bus.LinkStream, name); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
		return nil, fmt.Errorf("processor: consumer %s: %w", name, err)
	}
	cons, err := p.js.CreateConsumer(ctx, bus.LinkStream, jetstream.ConsumerConfig{
		Durable:        name,
		AckPolicy:      jetstream.AckExplicitPolicy,
		AckWait:        p.opts.AckWait,
		MaxAckPending:  max(p.opts.BatchSize*2, 1000),
		FilterSubjects: p.stage.linkSubjects(),
		DeliverPolicy:  jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:    p.pos.Links + 1,
	})
	if err != nil {
		return nil, fmt.Errorf("processor: consumer %s: %w", name, err)
	}
	return cons, nil
}

// batch fetches what the other stages handed on and up to BatchSize events
// (waiting at most FlushInterval), folds them, writes what changed,
// publishes the links, checkpoints and acknowledges.
func (p *Processor) batch(ctx context.Context, events, links jetstream.Consumer) error {
	pos := p.pos
	linkBatch, err := links.FetchNoWait(p.opts.BatchSize)
	if err != nil {
		return err
	}
	got, last, _, _ := p.take(ctx, linkBatch, bus.LinkStream, p.foldLink)
	pos.Links = max(pos.Links, last)
	wait := p.opts.FlushInterval
	if len(got) > 0 {
		wait = time.Millisecond
	}
	fetchErrs := []error{linkBatch.Error()}
	// Behind (a backlog, a backfill), a fetch returns what the server
	// delivers within the wait, a fraction of a batch: the batch is filled
	// for a little longer, so that its write and checkpoint are shared by
	// more events. Live, nothing is pending and the batch goes at once.
	var newest time.Time
	fill := time.Now().Add(min(4*p.opts.FlushInterval, p.opts.AckWait/4))
	for taken := 0; ; {
		eventBatch, err := events.Fetch(p.opts.BatchSize-taken, jetstream.FetchMaxWait(wait))
		if err != nil {
			if len(got) == 0 {
				return err
			}
			fetchErrs = append(fetchErrs, err)
			break
		}
		folded, last, latest, pending := p.take(ctx, eventBatch, bus.EventStream, p.foldEvent)
		got = append(got, folded...)
		taken += len(folded)
		pos.Events = max(pos.Events, last)
		if latest.After(newest) {
			newest = latest
		}
		fetchErrs = append(fetchErrs, eventBatch.Error())
		if pending == 0 || taken >= p.opts.BatchSize || time.Now().After(fill) || ctx.Err() != nil {
			break
		}
		wait = p.opts.FlushInterval
	}
	for _, err := range fetchErrs {
		if err != nil && !errors.Is(err, jetstream.ErrNoMessages) && !errors.Is(err, context.DeadlineExceeded) {
			p.logger.Warn("fetch ended early", "err", err)
		}
	}
	if len(got) == 0 {
		return p.maybeSnapshot(ctx)
	}
	stopBeat := heartbeat(got, p.opts.AckWait/3)
	// The checkpoint comes first: whatever of the batch reaches the store
	// or the other stage is then covered by it, so a successor folds the
	// batch again and compares with what was stored (Rebuild).
	facts, out, err := p.stage.flush()
	if err == nil {
		pos.Version = p.nextVersion()
		err = p.saveCheckpoint(ctx, pos)
	}
	if err == nil {
		err = p.write(ctx, facts, pos.Version)
	}
	if err == nil {
		p.linkIDs(out)
		err = p.publish(ctx, out)
	}
	stopBeat()
	if err != nil {
		// Not acknowledged: redelivered, and folded again by a worker
		// rebuilt from its snapshot.
		p.stale = true
		return err
	}
	p.pos = pos
	if p.repos != nil {
		p.metrics.Approximate.WithLabelValues(strconv.Itoa(p.opts.Partition)).Set(float64(p.repos.repos.Approximate()))
		if len(p.opts.Comparers) > 0 {
			p.gaps.offer(p.repos.gaps)
		}
	}
	for _, m := range got {
		if err := m.Ack(); err != nil {
			p.logger.Warn("ack failed; the message will be redelivered and fold again harmlessly", "err", err)
		}
	}
	p.recordPipeline(ctx, got)
	if !newest.IsZero() {
		p.metrics.ProcessingLag.Set(time.Since(newest).Seconds())
	}
	return p.maybeSnapshot(ctx)
}

// maybeSnapshot saves a snapshot once snapshot_interval has passed since
// the last, after a batch or while idle (the streams moved on past what the
// worker consumes, and its snapshot is what the link stream is trimmed by).
// At most a tenth of the time goes to snapshots: in a burst (a backfill
// changes every repository between two) they come less often. A snapshot
// that finds the worker fenced out stops it (the error, and stale: nothing
// more of it may be saved); any other failure only costs a longer refold.
func (p *Processor) maybeSnapshot(ctx context.Context) error {
	if time.Since(p.snapshotAt) < max(p.opts.SnapshotInterval, 10*p.snapshotDur) {
		return nil
	}
	err := p.saveSnapshot(ctx)
	switch {
	case errors.Is(err, ErrFenced):
		p.stale = true
		return err
	case err != nil && ctx.Err() == nil:
		p.metrics.Errors.WithLabelValues("processor", "snapshot").Inc()
		p.logger.Warn("snapshot failed; a restart folds more of the stream", "err", err)
	}
	return nil
}

// take folds the usable messages of a fetch, setting aside those that will
// never fold, and returns those to acknowledge, the last stream sequence
// folded, the newest message's time, and how many messages the consumer
// has yet to deliver.
func (p *Processor) take(ctx context.Context, batch jetstream.MessageBatch, stream string,
	fold func(m jetstream.Msg, data []byte) error) (got []jetstream.Msg, last uint64, newest time.Time, pending uint64) {
	for m := range batch.Messages() {
		meta, ok := p.usable(ctx, m)
		if !ok {
			continue
		}
		pending = meta.NumPending
		if stream == bus.LinkStream && meta.Sequence.Stream <= p.pos.Links {
			// Folded already (its acknowledgement was lost): folding it
			// again after newer links would undo them.
			_ = m.Ack()
			continue
		}
		data, ok := p.data(ctx, m, meta, stream)
		if !ok {
			continue
		}
		if err := fold(m, data); err != nil {
			// Collectors and stages validate before publishing, so this
			// message comes from elsewhere and will never fold.
			p.deadLetter(ctx, m, meta, stream, "undecodable", err.Error())
			continue
		}
		got = append(got, m)
		last = max(last, meta.Sequence.Stream)
		if meta.Timestamp.After(newest) {
			newest = meta.Timestamp
		}
	}
	return got, last, newest, pending
}

// foldLink folds a link another stage handed on; an error means it never
// will.
func (p *Processor) foldLink(m jetstream.Msg, data []byte) error {
	return p.stage.applyLink(&nats.Msg{Subject: m.Subject(), Header: m.Headers(), Data: data})
}

// foldEvent folds a canonical event; an error means it never will.
func (p *Processor) foldEvent(_ jetstream.Msg, data []byte) error {
	e, err := decode(data)
	if err != nil {
		return err
	}
	p.stage.apply(e)
	p.metrics.Processed.WithLabelValues(string(e.Type)).Inc()
	return nil
}

// usable sets aside a message delivered too often without being processed.
func (p *Processor) usable(ctx context.Context, m jetstream.Msg) (*jetstream.MsgMetadata, bool) {
	meta, err := m.Metadata()
	if err != nil {
		p.logger.Warn("message without metadata; left for redelivery", "subject", m.Subject(), "err", err)
		return nil, false
	}
	if int(meta.NumDelivered) > p.opts.MaxDeliveries {
		p.deadLetter(ctx, m, meta, meta.Stream, "redelivered", fmt.Sprintf("delivered %d times without being processed", meta.NumDelivered))
		return nil, false
	}
	return meta, true
}

// data is a message's data, inline or by reference (bus.Data). A missing
// reference is dead-lettered; a payload store that does not answer leaves
// the message to come again.
func (p *Processor) data(ctx context.Context, m jetstream.Msg, meta *jetstream.MsgMetadata, stream string) ([]byte, bool) {
	data, err := bus.Data(ctx, p.js, m)
	switch {
	case errors.Is(err, bus.ErrPayloadMissing):
		p.deadLetter(ctx, m, meta, stream, "undecodable", err.Error())
		return nil, false
	case err != nil:
		p.logger.Warn("reading a message's payload failed; it will be redelivered", "subject", m.Subject(), "err", err)
		_ = m.NakWithDelay(time.Second)
		return nil, false
	}
	return data, true
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
func (p *Processor) deadLetter(ctx context.Context, m jetstream.Msg, meta *jetstream.MsgMetadata, stream, kind, reason string) {
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
	// Out of its stream too, or a restart would fold it again.
	if s, err := p.js.Stream(ctx, stream); err == nil {
		if err := s.DeleteMsg(ctx, meta.Sequence.Stream); err != nil {
			p.logger.Warn("dead letter left in its stream", "stream", stream, "seq", meta.Sequence.Stream, "err", err)
		}
	}
	_ = m.Term()
	p.pipeline.Add(m.Headers().Get(bus.HeaderSource), telemetry.OutcomeDeadLettered, time.Now(), 0)
	p.metrics.DeadLettered.WithLabelValues(kind).Inc()
	p.logger.Error("message dead-lettered", "subject", m.Subject(), "seq", meta.Sequence.Stream, "reason", reason)
}

// retry runs op with backoff until it succeeds or ctx ends: while the store
// or the bus is down, messages stay unacknowledged (kept alive by the
// heartbeat) and nothing is lost.
func (p *Processor) retry(ctx context.Context, kind string, op func() error) error {
	_, err := backoff.Retry(ctx, func() (struct{}, error) {
		if err := op(); err != nil {
			p.metrics.Errors.WithLabelValues("processor", kind).Inc()
			if perm := (*backoff.PermanentError)(nil); !errors.As(err, &perm) {
				p.logger.Warn(kind+" failed; retrying", "err", err)
			}
			return struct{}{}, err
		}
		return struct{}{}, nil
	}, backoff.WithBackOff(retryBackOff()), backoff.WithMaxElapsedTime(0))
	if err != nil {
		return fmt.Errorf("processor: %s: %w", kind, err)
	}
	return nil
}

// retryBackOff retries from 100 ms up to every 5 s: a returning ClickHouse
// is noticed within seconds.
func retryBackOff() *backoff.ExponentialBackOff {
	b := backoff.NewExponentialBackOff()
	b.InitialInterval = 100 * time.Millisecond
	b.MaxInterval = 5 * time.Second
	return b
}

// write stores the facts and the teams of new entities.
func (p *Processor) write(ctx context.Context, f correlate.Facts, version uint64) error {
	return p.writeTeams(ctx, f, p.newEntities(f), version)
}

// writeTeams is write with the team mapping of these entities besides.
// Rollup days go even without a fact row: a rebuild that finds every fact
// stored may still owe the days a write cut short.
func (p *Processor) writeTeams(ctx context.Context, f correlate.Facts, teams map[string]string, version uint64) error {
	if f.Len() == 0 && len(f.Days) == 0 && len(teams) == 0 {
		return nil
	}
	err := p.retry(ctx, "write", func() error {
		if err := p.store.Write(ctx, f, version); err != nil {
			return err
		}
		return p.store.WriteTeams(ctx, teams, version)
	})
	if err != nil {
		return err
	}
	for e := range teams {
		p.mapped[e] = true
	}
	p.metrics.FactsWritten.WithLabelValues("deployments").Add(float64(len(f.Deployments)))
	p.metrics.FactsWritten.WithLabelValues("changes").Add(float64(len(f.Changes)))
	p.metrics.FactsWritten.WithLabelValues("incidents").Add(float64(len(f.Incidents)))
	return nil
}

// publish hands the links to the other stage and waits for JetStream.
func (p *Processor) publish(ctx context.Context, msgs []*nats.Msg) error {
	if len(msgs) == 0 {
		return nil
	}
	return p.retry(ctx, "link", func() error { return bus.PublishAll(ctx, p.js, msgs) })
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
	now := time.Now
	if p.opts.Clock != nil {
		now = p.opts.Clock
	}
	v := uint64(now().UnixNano())
	if v <= p.lastVersion {
		v = p.lastVersion + 1
	}
	p.lastVersion = v
	return v
}

// Current is every fact the worker's stage last handed out; only while the
// worker is not running.
func (p *Processor) Current() correlate.Facts {
	switch s := p.stage.(type) {
	case *repoStage:
		return s.repos.Current()
	case *attributionStage:
		return correlate.Facts{Incidents: s.attribution.Current()}
	}
	return correlate.Facts{}
}

// Idle reports whether both of the worker's consumers have nothing
// pending or unacknowledged.
func (p *Processor) Idle(ctx context.Context) (bool, error) {
	return consumersIdle(ctx, p.js, p.stage.name())
}

func consumersIdle(ctx context.Context, js jetstream.JetStream, worker string) (bool, error) {
	for _, c := range []struct{ stream, name string }{
		{bus.EventStream, ConsumerName(worker)},
		{bus.LinkStream, ConsumerName(worker) + "-links"},
	} {
		cons, err := js.Consumer(ctx, c.stream, c.name)
		if errors.Is(err, jetstream.ErrConsumerNotFound) {
			return false, nil
		}
		if err != nil {
			return false, err
		}
		info, err := cons.Info(ctx)
		if err != nil {
			return false, err
		}
		if info.NumPending > 0 || info.NumAckPending > 0 {
			return false, nil
		}
	}
	return true, nil
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
