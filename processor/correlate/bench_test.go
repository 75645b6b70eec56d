package correlate

import (
	"fmt"
	"runtime/metrics"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/doraflow/doraflow/internal/orgsim"
	"github.com/doraflow/doraflow/pkg/event"
)

// history is a correlation state that has folded an organisation's history,
// kept across the calls of one sub-benchmark so that it is built once.
type benchHistory struct {
	org     *orgsim.Org
	state   *State
	pending []event.Event
	size    int // events per batch: an eighth of the day
	folded  int
	now     time.Time
}

func benchConfig() Config {
	cfg := testConfig()
	cfg.TeamOfRepo = func(repo string) string { return "team-" + repo[len(repo)-2:] }
	cfg.TeamOfService = func(s string) string {
		if strings.HasPrefix(s, "org/") {
			return "team-" + s[len(s)-2:]
		}
		return "unassigned"
	}
	cfg.Retention = Retention{Keep: 9600 * time.Hour, Margin: 720 * time.Hour}
	return cfg
}

const batchesPerDay = 8

// batch is the next eighth of a day of the organisation's events: what the
// processor folds between two flushes at the design's sizing.
func (h *benchHistory) batch() []event.Event {
	for len(h.pending) == 0 {
		h.pending = h.org.Day()
		h.size = max(1, len(h.pending)/batchesPerDay)
		h.now = h.pending[len(h.pending)-1].OccurredAt
		h.state.Compact(h.now.Truncate(24 * time.Hour))
	}
	n := min(len(h.pending), h.size)
	b := h.pending[:n]
	h.pending = h.pending[n:]
	return b
}

func (h *benchHistory) fold(events []event.Event) {
	for _, e := range events {
		h.state.Apply(e)
	}
	h.state.Flush()
	h.folded += len(events)
}

// BenchmarkFlush folds one batch (an eighth of a day of a 2,000-repository
// organisation: ~1,800 events) after 10 k … 10 M events of history: the
// cost of a batch must not grow with the history held.
func BenchmarkFlush(b *testing.B) {
	for _, retained := range []int{10_000, 100_000, 1_000_000, 10_000_000} {
		var h *benchHistory
		b.Run(fmt.Sprintf("history=%d", retained), func(b *testing.B) {
			if testing.Short() && retained > 1_000_000 {
				b.Skip("-short")
			}
			if h == nil {
				h = &benchHistory{org: orgsim.New(orgsim.Large(time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC))), state: New(benchConfig())}
				for h.folded < retained {
					h.fold(h.batch())
				}
			}
			events := 0
			var cpu time.Duration
			b.ResetTimer()
			for range b.N {
				b.StopTimer()
				batch := h.batch()
				events += len(batch)
				b.StartTimer()
				before := processCPU()
				h.fold(batch)
				cpu += processCPU() - before
			}
			b.ReportMetric(float64(events)/float64(b.N), "events/batch")
			b.ReportMetric(liveHeapMB(), "live-MB")
			b.ReportMetric(float64(cpu.Microseconds())/1e3/float64(b.N), "cpu-ms/batch")
		})
	}
}

// processCPU is the CPU time the process has used, every thread (the
// garbage collector's too): a batch's cost on a machine that other work
// shares, where its wall time is not.
func processCPU() time.Duration {
	var u syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &u)
	return time.Duration(u.Utime.Nano() + u.Stime.Nano())
}

// liveHeapMB is the heap the last garbage collection found live: what the
// history retained costs in memory. Read from the runtime's metrics, since
// forcing a collection here made the batches timed after it twice as slow.
func liveHeapMB() float64 {
	sample := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	metrics.Read(sample)
	return float64(sample[0].Value.Uint64()) / 1e6
}

// BenchmarkSnapshot encodes the hot part of every repository of a state
// that has folded 100 k / 1 M events (what a snapshot writes when every
// repository changed, as in a full-speed replay) and the cold part of the
// month history is settling into, and reports the bytes.
func BenchmarkSnapshot(b *testing.B) {
	for _, retained := range []int{100_000, 1_000_000} {
		var h *benchHistory
		b.Run(fmt.Sprintf("history=%d", retained), func(b *testing.B) {
			if h == nil {
				h = &benchHistory{org: orgsim.New(orgsim.Large(time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC))), state: New(benchConfig())}
				for h.folded < retained {
					h.fold(h.batch())
				}
			}
			names := sortedKeys(h.state.Repos.repos)
			b.ResetTimer()
			size := 0
			for range b.N {
				size = 0
				for _, name := range names {
					data, _, err := h.state.Repos.EncodeRepo(name)
					if err != nil {
						b.Fatal(err)
					}
					size += len(data)
				}
				if months := h.state.Repos.coldMonths(); len(months) > 0 {
					data, err := h.state.Repos.EncodeCold(months[len(months)-1])
					if err != nil {
						b.Fatal(err)
					}
					size += len(data)
				}
			}
			b.ReportMetric(float64(size)/1e6, "MB")
		})
	}
}
