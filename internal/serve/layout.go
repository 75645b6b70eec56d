package serve

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/doraflow/doraflow/pkg/bus"
	"github.com/doraflow/doraflow/processor"
)

// PartitionsError says the configured partition count is not the one the
// bus is laid out with, and how to change it safely.
type PartitionsError struct {
	Recorded   int // the count the bus was set up with
	Configured int
	// Inferred: the bus predates the recorded count; Recorded comes from
	// its processors' consumers.
	Inferred bool
	// Repartitioning is the count a replay was moving the bus to when it
	// stopped; nothing but a replay may start until one finishes.
	Repartitioning int
}

func (e *PartitionsError) Error() string {
	if e.Repartitioning != 0 && e.Repartitioning == e.Recorded {
		return fmt.Sprintf("bus layout: a replay is re-deriving the event stream, or one that did stopped "+
			"half-way: the stream does not hold every event. Let the replay finish; if it stopped, stop every "+
			"doraflow process and run `doraflow replay` again (with DORAFLOW_PARTITIONS=%d)", e.Recorded)
	}
	if e.Repartitioning != 0 {
		return fmt.Sprintf("bus layout: a replay is re-partitioning the bus from %d to %d partitions, or one that did "+
			"stopped half-way: the event stream holds neither layout whole. Let the replay finish, then start "+
			"everything with DORAFLOW_PARTITIONS=%d; if it stopped, stop every doraflow process and run "+
			"`doraflow replay --repartition` again with DORAFLOW_PARTITIONS=%d (or =%d to go back)",
			e.Recorded, e.Repartitioning, e.Repartitioning, e.Repartitioning, e.Recorded)
	}
	how := "recorded on the bus"
	if e.Inferred {
		how = "found from its processors' consumers"
	}
	return fmt.Sprintf("bus layout: the bus was set up with %d partitions (%s), but DORAFLOW_PARTITIONS "+
		"(processor.partitions) is %d. Events go to a partition by repository and each partition's processor "+
		"holds the history of its repositories, so another count would retract facts. Keep "+
		"DORAFLOW_PARTITIONS=%d, or change the count deliberately: stop every doraflow process (collectors "+
		"and processors), run `doraflow replay --repartition` with DORAFLOW_PARTITIONS=%d (it re-derives the "+
		"event stream and every fact from the raw archive under the new count, and records it), then start "+
		"everything with %d",
		e.Recorded, how, e.Configured, e.Recorded, e.Configured, e.Configured)
}

// CheckPartitions refuses a configured partition count different from the
// one the bus is laid out with, and records the configured one on a bus
// that has none yet. Every process that publishes events (their subject
// carries the partition) or processes them calls it before doing so.
func CheckPartitions(ctx context.Context, js jetstream.JetStream, configured int) error {
	return checkLayout(ctx, js, configured, RoleAll)
}

// checkLayout is CheckPartitions for a process of role (see fits).
func checkLayout(ctx context.Context, js jetstream.JetStream, configured int, role Role) error {
	l, _, inferred, err := EnsureLayout(ctx, js, configured)
	if err != nil {
		return err
	}
	if !fits(l, configured, role) {
		return &PartitionsError{Recorded: l.Partitions, Configured: configured, Inferred: inferred, Repartitioning: l.Repartitioning}
	}
	return nil
}

// EnsureLayout returns the bus's recorded layout and the record's
// revision, recording one if there is none: on a bus set up before the
// count was recorded, the count its processors' consumers show (inferred
// is then true); on a new bus, configured.
func EnsureLayout(ctx context.Context, js jetstream.JetStream, configured int) (l bus.Layout, rev uint64, inferred bool, err error) {
	l, rev, found, err := bus.ReadLayout(ctx, js)
	if err != nil || found {
		return l, rev, false, err
	}
	partitions, err := consumedPartitions(ctx, js)
	if err != nil {
		return bus.Layout{}, 0, false, err
	}
	inferred = partitions > 0
	if !inferred {
		partitions = configured
	}
	l, rev, err = bus.InitLayout(ctx, js, bus.Layout{Partitions: partitions})
	return l, rev, inferred, err
}

// consumedPartitions is the partition count of the processors that
// consumed the event stream — one durable consumer per partition — or 0
// if none did.
func consumedPartitions(ctx context.Context, js jetstream.JetStream) (int, error) {
	stream, err := js.Stream(ctx, bus.EventStream)
	if err != nil {
		return 0, fmt.Errorf("bus layout: %w", err)
	}
	prefix := strings.TrimSuffix(processor.ConsumerName(processor.PartitionWorker(0)), "0")
	names := stream.ConsumerNames(ctx)
	n := 0
	for name := range names.Name() {
		p, err := strconv.Atoi(strings.TrimPrefix(name, prefix))
		if err == nil && processor.ConsumerName(processor.PartitionWorker(p)) == name {
			n = max(n, p+1)
		}
	}
	// The channel also closes when listing fails: a count from part of the
	// list could be wrong.
	if err := names.Err(); err != nil {
		return 0, fmt.Errorf("bus layout: list consumers: %w", err)
	}
	return n, nil
}
