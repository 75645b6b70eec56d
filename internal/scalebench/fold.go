package scalebench

import (
	"time"

	"github.com/doraflow/doraflow/internal/orgsim"
	"github.com/doraflow/doraflow/processor/correlate"
)

// batchCost is one batch of the pure correlation.
type batchCost struct {
	Held   int // events folded before the batch
	Events int
	Took   time.Duration // folding the batch's events and flushing
}

// foldResult is the pure correlation of the whole history.
type foldResult struct {
	Batches []batchCost
	Took    time.Duration // every batch, generation excluded
	Rows    int           // fact and rollup rows the flushes handed out
}

// batchesPerDay is BenchmarkFlush's batch: an eighth of a day.
const batchesPerDay = 8

// pureFold is BenchmarkFlush's measurement over the replayed history: the
// organisation's days folded through correlate.State (both stages in one
// process, no I/O) an eighth of a day at a time, compacted daily, each
// batch timed.
func pureFold(cfg correlate.Config, org *orgsim.Org, days int) foldResult {
	state := correlate.New(cfg)
	var out foldResult
	held := 0
	for range days {
		events := org.Day()
		if len(events) == 0 {
			continue
		}
		state.Compact(events[len(events)-1].OccurredAt.Truncate(24 * time.Hour))
		size := (len(events) + batchesPerDay - 1) / batchesPerDay
		for len(events) > 0 {
			batch := events[:min(size, len(events))]
			events = events[len(batch):]
			start := time.Now()
			for _, e := range batch {
				state.Apply(e)
			}
			f := state.Flush()
			took := time.Since(start)
			out.Batches = append(out.Batches, batchCost{Held: held, Events: len(batch), Took: took})
			out.Took += took
			out.Rows += f.Len() + len(f.Days)
			held += len(batch)
		}
	}
	return out
}
