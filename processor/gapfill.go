package processor

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/doraflow/doraflow/collectors/webhook"
	"github.com/doraflow/doraflow/pkg/bus"
	"github.com/doraflow/doraflow/pkg/event"
	"github.com/doraflow/doraflow/pkg/telemetry"
	"github.com/doraflow/doraflow/processor/correlate"
)

// Comparer lists the commits between two shas of a repository through its
// Git host's API, as a push event.
type Comparer interface {
	Compare(ctx context.Context, repo, base, head string) (event.Event, error)
}

// gapFiller fills gaps in push chains through the hosts' compare APIs, one
// request at a time, and publishes the results on the bus, where the
// processor folds them like any push (durably, and deduplicated by id).
// Failed requests are retried with backoff, up to maxTries.
type gapFiller struct {
	comparers  map[string]Comparer // by source (github, gitlab)
	js         jetstream.JetStream
	partitions int
	metrics    *telemetry.Metrics
	logger     *slog.Logger

	mu    sync.Mutex
	gaps  map[correlate.Gap]*gapTry
	queue chan correlate.Gap
}

type gapTry struct {
	tries    int
	next     time.Time
	inFlight bool
	done     bool
}

const gapMaxTries = 6

func newGapFiller(comparers map[string]Comparer, js jetstream.JetStream, partitions int, metrics *telemetry.Metrics, logger *slog.Logger) *gapFiller {
	return &gapFiller{comparers: comparers, js: js, partitions: max(partitions, 1), metrics: metrics,
		logger: logger, gaps: map[correlate.Gap]*gapTry{}, queue: make(chan correlate.Gap, 1024)}
}

// offer queues the gaps that are due; it never blocks the processor.
func (g *gapFiller) offer(gaps []correlate.Gap) {
	now := time.Now()
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, gap := range gaps {
		if g.comparers[gap.Host] == nil {
			continue
		}
		t := g.gaps[gap]
		if t == nil {
			t = &gapTry{}
			g.gaps[gap] = t
		}
		if t.done || t.inFlight || now.Before(t.next) {
			continue
		}
		select {
		case g.queue <- gap:
			t.inFlight = true
		default: // full: offered again with the next batch
		}
	}
}

// run works the queue until ctx is done.
func (g *gapFiller) run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case gap := <-g.queue:
			g.fill(ctx, gap)
		}
	}
}

func (g *gapFiller) fill(ctx context.Context, gap correlate.Gap) {
	e, err := g.comparers[gap.Host].Compare(ctx, gap.Repo, gap.Base, gap.Head)
	if err == nil {
		var m *nats.Msg
		if m, err = webhook.EventMessage(e, "compare", time.Now().UTC(), g.partitions); err == nil {
			err = bus.PublishAll(ctx, g.js, []*nats.Msg{m})
		}
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	t := g.gaps[gap]
	t.inFlight = false
	t.tries++
	switch {
	case err == nil:
		t.done = true
		g.metrics.GapFills.WithLabelValues(gap.Host, "filled").Inc()
		g.logger.Info("gap in push chain filled", "repo", gap.Repo, "base", gap.Base, "head", gap.Head, "commits", len(e.Push.Commits))
	case errors.Is(err, event.ErrNotComparable) || t.tries >= gapMaxTries:
		t.done = true
		g.metrics.GapFills.WithLabelValues(gap.Host, "given_up").Inc()
		g.logger.Warn("gap in push chain left open; the deployment stays approximate", "repo", gap.Repo, "err", err)
	default:
		t.next = time.Now().Add(time.Duration(1<<t.tries) * 5 * time.Second)
		g.metrics.GapFills.WithLabelValues(gap.Host, "retry").Inc()
		g.logger.Warn("gap fill failed; will retry", "repo", gap.Repo, "err", err, "next", t.next)
	}
}
