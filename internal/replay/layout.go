package replay

import (
	"context"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/doraflow/doraflow/internal/serve"
	"github.com/doraflow/doraflow/pkg/bus"
)

// layoutPlan is what a replay does to the bus's layout. A plain replay
// keeps the recorded partition count. A re-partitioning one marks the bus
// as moving to the new count before it touches the event stream — running
// processes stop, and nothing else starts until it is done — and records
// the new count once every fact is re-derived under it.
type layoutPlan struct {
	// span covers every partition the bus may hold processor state of:
	// the recorded count's, the new one's, and a half-done move's.
	span   int
	moving bool
	from   bus.Layout
	to     int
	rev    uint64
}

func planLayout(ctx context.Context, js jetstream.JetStream, partitions int, repartition bool) (*layoutPlan, error) {
	l, rev, _, err := serve.EnsureLayout(ctx, js, partitions)
	if err != nil {
		return nil, err
	}
	// A plain replay keeps the count; it may finish one that stopped.
	if !repartition && (l.Partitions != partitions || (l.Repartitioning != 0 && l.Repartitioning != partitions)) {
		return nil, serve.CheckPartitions(ctx, js, partitions)
	}
	return &layoutPlan{
		span:   max(partitions, l.Partitions, l.Repartitioning),
		moving: l.Partitions != partitions || l.Repartitioning != 0 && l.Repartitioning != partitions,
		from:   l, to: partitions, rev: rev,
	}, nil
}

// begin marks the bus as being replayed (into the new count, when that
// changes) before the replay touches the event stream: until it finishes,
// nothing but a replay starts — a replay stopped half-way leaves an event
// stream that holds neither the old derivation nor the new one whole.
func (p *layoutPlan) begin(ctx context.Context, js jetstream.JetStream) error {
	rev, err := bus.UpdateLayout(ctx, js, bus.Layout{Partitions: p.from.Partitions, Repartitioning: p.to}, p.rev)
	if err != nil {
		return fmt.Errorf("replay: mark the bus as being replayed (is another replay running?): %w", err)
	}
	p.rev = rev
	return nil
}

func (p *layoutPlan) finish(ctx context.Context, js jetstream.JetStream) error {
	if _, err := bus.UpdateLayout(ctx, js, bus.Layout{Partitions: p.to}, p.rev); err != nil {
		return fmt.Errorf("replay: record %d partitions: %w", p.to, err)
	}
	return nil
}

// onlyDerived makes sure the event stream holds only what the replay
// derived. A collector left running while the bus is re-partitioned
// publishes under the old count, into partitions that no longer hold its
// repositories.
func onlyDerived(ctx context.Context, events jetstream.Stream, derived int) error {
	info, err := events.Info(ctx)
	if err != nil {
		return fmt.Errorf("replay: %w", err)
	}
	if extra := int64(info.State.Msgs) - int64(derived); extra != 0 {
		return fmt.Errorf("replay: %d events were published while the bus was re-partitioned (a collector still "+
			"running?); stop every doraflow process and run the replay again", extra)
	}
	return nil
}
