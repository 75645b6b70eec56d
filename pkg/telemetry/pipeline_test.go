package telemetry

import (
	"reflect"
	"testing"
	"time"
)

// A tally sums events and lags per UTC minute, source and outcome, lists
// them in that order, ignores negative lags (clocks apart) and is empty
// again after Reset.
func TestTally(t *testing.T) {
	t0 := time.Date(2026, 5, 1, 10, 0, 59, 0, time.UTC)
	var tl Tally
	if !tl.Empty() || len(tl.Counts()) != 0 {
		t.Fatal("a new tally is not empty")
	}
	adds := []struct {
		source, outcome string
		at              time.Time
		lag             time.Duration
	}{
		{"github", OutcomeProcessed, t0, 2 * time.Second},
		{"gitlab", OutcomeProcessed, t0, time.Second},
		{"github", OutcomeProcessed, t0.Add(-30 * time.Second), 500 * time.Millisecond},
		{"github", OutcomeDeadLettered, t0, 0},
		{"github", OutcomeProcessed, t0.Add(time.Second), -time.Second},
	}
	for _, a := range adds {
		tl.Add(a.source, a.outcome, a.at, a.lag)
	}
	m0, m1 := t0.Truncate(time.Minute), t0.Add(time.Second).Truncate(time.Minute)
	want := []PipelineCount{
		{m0, "github", OutcomeDeadLettered, 1, 0},
		{m0, "github", OutcomeProcessed, 2, 2.5},
		{m0, "gitlab", OutcomeProcessed, 1, 1},
		{m1, "github", OutcomeProcessed, 1, 0},
	}
	if got := tl.Counts(); !reflect.DeepEqual(got, want) {
		t.Errorf("counts\n%+v\nwant\n%+v", got, want)
	}
	tl.Reset()
	if !tl.Empty() {
		t.Error("not empty after Reset")
	}
}
