// Package replay re-derives doraflow's facts from the raw archive: every
// archived delivery is parsed again with the current parsers and
// configuration, the event stream is replaced by the result, and the stored
// facts are brought in line with it (tombstones included). Run it after a
// parser fix or a parser-relevant configuration change, with the processors
// stopped; collectors may keep running.
package replay

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/schollz/progressbar/v3"

	"github.com/doraflow/doraflow/collectors/webhook"
	"github.com/doraflow/doraflow/internal/serve"
	"github.com/doraflow/doraflow/pkg/bus"
	"github.com/doraflow/doraflow/pkg/event"
	"github.com/doraflow/doraflow/pkg/telemetry"
	"github.com/doraflow/doraflow/processor"
	"github.com/doraflow/doraflow/processor/correlate"
)

// Result counts what a replay did.
type Result struct {
	Deliveries int            // raw deliveries read
	Events     int            // canonical events derived
	Skipped    map[string]int // deliveries not re-derived, by reason
	// Written is every fact row the replay wrote to the store: the facts
	// the processors derived from the new stream, and the retractions.
	Written int
	// Retracted is, of Written, the rows retracting stale facts.
	Retracted int
	Rebuild   processor.RebuildStats
}

// countingStore counts the fact rows written through it: the processors
// write as they consume, after their rebuild, so their own statistics do
// not hold what a replay wrote.
type countingStore struct {
	Store
	rows atomic.Int64
}

// WritePipeline passes the processors' pipeline counts on to a store that
// keeps them (sinks/clickhouse's does), as if it were not wrapped.
func (s *countingStore) WritePipeline(ctx context.Context, counts []telemetry.PipelineCount) error {
	if w, ok := s.Store.(interface {
		WritePipeline(ctx context.Context, counts []telemetry.PipelineCount) error
	}); ok {
		return w.WritePipeline(ctx, counts)
	}
	return nil
}

func (s *countingStore) Write(ctx context.Context, f correlate.Facts, version uint64) error {
	if err := s.Store.Write(ctx, f, version); err != nil {
		return err
	}
	s.rows.Add(int64(f.Len()))
	return nil
}

// Run replays the raw archive under opts.Partitions partitions. That must
// be the count the bus is laid out with unless repartition is set: then
// the replay moves the bus to it (see planLayout).
func Run(ctx context.Context, js jetstream.JetStream, store Store, routes []serve.Route,
	opts processor.Options, repartition bool, progress io.Writer, logger *slog.Logger) (Result, error) {
	res := Result{Skipped: map[string]int{}}
	partitions := max(opts.Partitions, 1)
	layout, err := planLayout(ctx, js, partitions, repartition)
	if err != nil {
		return res, err
	}
	if err := ensureNoProcessor(ctx, js, layout.span); err != nil {
		return res, err
	}
	if err := layout.begin(ctx, js); err != nil {
		return res, err
	}
	events, err := js.Stream(ctx, bus.EventStream)
	if err != nil {
		return res, fmt.Errorf("replay: %w", err)
	}
	raw, err := js.Stream(ctx, bus.RawStream)
	if err != nil {
		return res, fmt.Errorf("replay: %w", err)
	}
	// Read the event stream's end before the archive's: every event at or
	// before it came from a delivery archived at or before the archive's
	// end (collectors publish the raw body first), so purging up to it
	// loses nothing the replay does not re-derive.
	evInfo, err := events.Info(ctx)
	if err != nil {
		return res, fmt.Errorf("replay: %w", err)
	}
	rawInfo, err := raw.Info(ctx)
	if err != nil {
		return res, fmt.Errorf("replay: %w", err)
	}
	derived, err := derive(ctx, js, raw, rawInfo.State, routes, &res, progress)
	if err != nil {
		return res, err
	}
	if evInfo.State.LastSeq > 0 {
		if err := events.Purge(ctx, jetstream.WithPurgeSequence(evInfo.State.LastSeq+1)); err != nil {
			return res, fmt.Errorf("replay: purge events: %w", err)
		}
	}
	if err := publish(ctx, js, derived, partitions); err != nil {
		return res, err
	}
	if layout.moving {
		if err := onlyDerived(ctx, events, len(derived)); err != nil {
			return res, err
		}
	}
	// The processors' consumers would redeliver the whole stream as new,
	// and their snapshots, checkpoints and links are of the old stream:
	// processors start afresh from the new one. After a change of count
	// that includes the old partitions beyond the new count.
	if err := reset(ctx, js, layout.span); err != nil {
		return res, err
	}
	counted := &countingStore{Store: store}
	res.Rebuild, res.Retracted, err = rederive(ctx, js, counted, opts, logger)
	res.Written = int(counted.rows.Load())
	if err != nil {
		return res, err
	}
	return res, layout.finish(ctx, js)
}

// reset drops the processors' consumers, snapshots, checkpoints and links.
func reset(ctx context.Context, js jetstream.JetStream, partitions int) error {
	for _, name := range processor.Workers(partitions) {
		for _, c := range []struct{ stream, name string }{
			{bus.EventStream, processor.ConsumerName(name)},
			{bus.LinkStream, processor.ConsumerName(name) + "-links"},
		} {
			if err := js.DeleteConsumer(ctx, c.stream, c.name); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
				return fmt.Errorf("replay: reset consumer %s: %w", c.name, err)
			}
		}
	}
	if err := processor.DeleteSnapshots(ctx, js); err != nil {
		return err
	}
	if err := processor.DeleteCheckpoints(ctx, js); err != nil {
		return err
	}
	links, err := js.Stream(ctx, bus.LinkStream)
	if err != nil {
		return fmt.Errorf("replay: %w", err)
	}
	if err := links.Purge(ctx); err != nil {
		return fmt.Errorf("replay: purge links: %w", err)
	}
	return nil
}

// Store is where replay brings the facts in line: the processor's store,
// and what it holds now.
type Store interface {
	processor.Store
	Facts(ctx context.Context) (correlate.Facts, error)
}

// rederive runs every worker over the new stream until all are idle, then
// retracts the stored facts the new stream no longer gives (a parser fix
// that drops a deployment, say), except those retention has frozen; it
// returns the workers' rebuild statistics and the rows retracted.
func rederive(ctx context.Context, js jetstream.JetStream, store Store, opts processor.Options, logger *slog.Logger) (processor.RebuildStats, int, error) {
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	m := processor.NewManager(js, store, opts, telemetry.New(), logger)
	done := make(chan error, 1)
	go func() { done <- m.Run(runCtx) }()
	select {
	case <-m.Ready():
	case err := <-done:
		return processor.RebuildStats{}, 0, err
	}
	for {
		idle, err := m.Idle(ctx)
		if err != nil {
			return processor.RebuildStats{}, 0, err
		}
		if idle {
			break
		}
		select {
		case <-ctx.Done():
			return processor.RebuildStats{}, 0, ctx.Err()
		case err := <-done:
			return processor.RebuildStats{}, 0, fmt.Errorf("replay: processors stopped: %w", err)
		case <-time.After(50 * time.Millisecond):
		}
	}
	stats := m.Rebuilt()
	cancel()
	if err := <-done; err != nil {
		return stats, 0, err
	}
	stored, err := store.Facts(ctx)
	if err != nil {
		return stats, 0, fmt.Errorf("replay: %w", err)
	}
	var frozen time.Time
	if keep := opts.Correlate.Retention.Keep; keep > 0 {
		frozen = time.Now().UTC().Truncate(24 * time.Hour).Add(-keep)
	}
	stale := correlate.Stale(stored, m.Current(), frozen)
	if stale.Len() > 0 {
		if err := store.Write(ctx, stale, uint64(time.Now().UnixNano())); err != nil {
			return stats, 0, fmt.Errorf("replay: retract stale facts: %w", err)
		}
	}
	return stats, stale.Len(), nil
}

// ensureNoProcessor refuses to replay while a processor pulls events: it
// would keep writing facts from its old state.
func ensureNoProcessor(ctx context.Context, js jetstream.JetStream, partitions int) error {
	for range 3 {
		for p := range max(partitions, 1) {
			cons, err := js.Consumer(ctx, bus.EventStream, processor.ConsumerName(processor.PartitionWorker(p)))
			if errors.Is(err, jetstream.ErrConsumerNotFound) {
				continue
			}
			if err != nil {
				return fmt.Errorf("replay: %w", err)
			}
			info, err := cons.Info(ctx)
			if err != nil {
				return fmt.Errorf("replay: %w", err)
			}
			if info.NumWaiting > 0 {
				return errors.New("replay: a processor is consuming events; stop the processors (serve --role processor or all) first")
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	return nil
}

// derive parses every archived delivery again.
func derive(ctx context.Context, js jetstream.JetStream, raw jetstream.Stream, state jetstream.StreamState, routes []serve.Route,
	res *Result, progress io.Writer) ([]event.Event, error) {
	if state.Msgs == 0 {
		return nil, nil
	}
	bar := progressbar.NewOptions64(int64(state.Msgs), progressbar.OptionSetWriter(progress),
		progressbar.OptionSetDescription("re-deriving deliveries"), progressbar.OptionShowCount(), progressbar.OptionThrottle(100*time.Millisecond))
	defer fmt.Fprintln(progress)
	cons, err := raw.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
	if err != nil {
		return nil, fmt.Errorf("replay: %w", err)
	}
	seen := map[string]bool{}
	var out []event.Event
	for seq, pending := uint64(0), uint64(1); seq < state.LastSeq && pending > 0; {
		batch, err := cons.Fetch(1000, jetstream.FetchMaxWait(50*time.Millisecond))
		if err != nil {
			return nil, fmt.Errorf("replay: read archive: %w", err)
		}
		n := 0
		for m := range batch.Messages() {
			meta, err := m.Metadata()
			if err != nil {
				return nil, fmt.Errorf("replay: read archive: %w", err)
			}
			seq, pending = meta.Sequence.Stream, meta.NumPending
			n++
			res.Deliveries++
			_ = bar.Add(1)
			body, err := bus.Data(ctx, js, m)
			if err != nil {
				return nil, fmt.Errorf("replay: read archive: %w", err)
			}
			events, reason := parse(m, body, routes)
			if reason != "" {
				res.Skipped[reason]++
				continue
			}
			for _, e := range events {
				if !seen[e.ID] {
					seen[e.ID] = true
					out = append(out, e)
				}
			}
		}
		// The channel also closes when the fetch fails; nothing is purged
		// yet, so stopping here loses nothing.
		if err := batch.Error(); err != nil {
			return nil, fmt.Errorf("replay: read archive after sequence %d: %w", seq, err)
		}
		if n == 0 && ctx.Err() != nil {
			return nil, ctx.Err()
		}
	}
	res.Events = len(out)
	return out, nil
}

// parse re-parses one archived delivery, whose body is body; reason says
// why it gave nothing.
func parse(m jetstream.Msg, body []byte, routes []serve.Route) ([]event.Event, string) {
	h := m.Headers()
	source, typ := h.Get(bus.HeaderSource), h.Get(bus.HeaderEvent)
	if source == webhook.ArchiveSource {
		// A backfilled event: no vendor payload to parse again.
		e, err := webhook.ParseArchivedEvent(body)
		if err != nil {
			return nil, "parse error"
		}
		return []event.Event{e}, ""
	}
	var src webhook.Source
	for _, r := range routes {
		if r.Source.Name() == source && (r.Event == "" || r.Event == typ) {
			src = r.Source
			break
		}
	}
	if src == nil {
		return nil, "source " + source + " not configured"
	}
	received, _ := time.Parse(time.RFC3339Nano, h.Get(bus.HeaderReceivedAt))
	d := webhook.Delivery{Source: source, Event: typ, ID: h.Get(bus.HeaderDelivery), Header: http.Header(h),
		Body: body, ReceivedAt: received}
	events, err := src.Parse(d)
	if errors.Is(err, webhook.ErrIgnored) {
		return nil, "ignored by the parser"
	}
	if err != nil {
		return nil, "parse error"
	}
	return events, ""
}

// publish puts the derived events on the event stream, in batches.
func publish(ctx context.Context, js jetstream.JetStream, events []event.Event, partitions int) error {
	const batch = 500
	for start := 0; start < len(events); start += batch {
		var msgs []*nats.Msg
		for _, e := range events[start:min(start+batch, len(events))] {
			m, err := webhook.EventMessage(e, "replay", time.Now().UTC(), partitions)
			if err != nil {
				return err
			}
			// No Nats-Msg-Id: the duplicate window still holds the ids of
			// the purged originals. The processor dedupes by event id.
			m.Header.Del(nats.MsgIdHdr)
			msgs = append(msgs, m)
		}
		if err := bus.PublishAll(ctx, js, msgs); err != nil {
			return fmt.Errorf("replay: publish events: %w", err)
		}
	}
	return nil
}
