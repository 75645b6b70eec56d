package telemetry

import (
	"sort"
	"time"
)

// Outcomes of an event a processor took from the bus.
const (
	OutcomeProcessed    = "processed"
	OutcomeDeadLettered = "dead_lettered"
)

// PipelineCount is how many events of a source a processor took with one
// outcome within a UTC minute, and the sum of their processing lags (from
// the collector's receipt to the processor's acknowledgement). The store
// keeps these beside the facts for the pipeline-health dashboard.
type PipelineCount struct {
	Minute          time.Time
	Source, Outcome string
	Events          uint64
	LagSecondsSum   float64
}

// Tally adds up PipelineCounts between two writes. The zero Tally is empty
// and ready.
type Tally struct {
	counts map[tallyKey]*PipelineCount
}

type tallyKey struct {
	minute          int64
	source, outcome string
}

// Add counts one event of source with an outcome at time at, lag after it
// was received (zero where unknown).
func (t *Tally) Add(source, outcome string, at time.Time, lag time.Duration) {
	if t.counts == nil {
		t.counts = map[tallyKey]*PipelineCount{}
	}
	minute := at.UTC().Truncate(time.Minute)
	k := tallyKey{minute.Unix(), source, outcome}
	c := t.counts[k]
	if c == nil {
		c = &PipelineCount{Minute: minute, Source: source, Outcome: outcome}
		t.counts[k] = c
	}
	c.Events++
	c.LagSecondsSum += max(lag, 0).Seconds()
}

// Empty reports whether nothing was counted since the last Reset.
func (t *Tally) Empty() bool { return len(t.counts) == 0 }

// Counts are the counts so far, in minute, source and outcome order.
func (t *Tally) Counts() []PipelineCount {
	out := make([]PipelineCount, 0, len(t.counts))
	for _, c := range t.counts {
		out = append(out, *c)
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if !a.Minute.Equal(b.Minute) {
			return a.Minute.Before(b.Minute)
		}
		if a.Source != b.Source {
			return a.Source < b.Source
		}
		return a.Outcome < b.Outcome
	})
	return out
}

// Reset empties the tally, once its counts are written.
func (t *Tally) Reset() { t.counts = nil }
