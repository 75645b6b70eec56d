// Package scalebench measures doraflow at organisation scale through the
// real path, with the bare baselines measured in the same run:
//
//   - the pure correlation (correlate.State) folds the history an eighth of
//     a day at a time, each batch timed against the history held
//     (BenchmarkFlush's measurement, over the whole history);
//   - the history — internal/orgsim's organisation, day by day — is
//     published to an embedded JetStream (in a child process, listening on
//     loopback) as the collectors publish it;
//   - a bare JetStream consume of the same messages (pull, ack), shaped as
//     the processor's consumers;
//   - `serve --role processor`, in a child process, processes it all at
//     full speed against ClickHouse, with a CPU profile; progress (each
//     worker's acknowledged stream sequence), memory (/proc VmRSS, VmHWM)
//     and checkpoints are sampled throughout;
//   - the rows the processor wrote are read back and inserted bare
//     (10k-row batches) into another database;
//   - the report's latency over windows of what the processor stored,
//     against the bare aggregate scan;
//   - with the facts of another organisation stored beside (so that the
//     store holds over 10 M changes), the processor is restarted cleanly,
//     after SIGKILL in the middle of a burst, and after SIGKILL during
//     live-rate traffic, each timed from process start to /readyz, to its
//     first batch of new events and to having caught up.
//
// WriteDoc turns the result into docs/benchmarks-scale.md and its charts.
// BenchmarkScale (`make bench-scale`) runs it; its small size keeps
// `make bench` quick.
package scalebench

import (
	"time"

	"github.com/doraflow/doraflow/internal/benchscale"
	"github.com/doraflow/doraflow/internal/orgsim"
)

// Size is what a run replays.
type Size struct {
	Name string
	// Org is the organisation (Start is set by Run). Its repositories
	// belong to teams of reposPerTeam.
	Org orgsim.Options
	// Days of history replayed through the processor; the restarts
	// publish extraDays more.
	Days int
	// Preload is the history of another organisation whose facts are
	// stored (benchscale's generator, written straight to ClickHouse)
	// before the restarts: the store then holds what an installation of
	// a few years holds.
	Preload     benchscale.Size
	PreloadName string
	// AckWait, if not zero, replaces the processor's: how long what a
	// killed processor had in flight waits to be delivered again.
	AckWait time.Duration
}

// Large is the organisation: a year of a 2,000-engineer
// organisation (orgsim.Large), restarted over 10 M stored changes besides
// its own.
func Large() Size {
	return Size{Name: "large", Org: orgsim.Large(time.Time{}), Days: 365,
		Preload: benchscale.Organisation, PreloadName: "organisation"}
}

// Small is a few weeks of a small organisation: every step of a run, in a
// minute or two.
func Small() Size {
	return Size{Name: "small",
		Org:  orgsim.Options{Repos: 40, PushesPerDay: 400, DeploymentsPerDay: 40, IncidentsPerDay: 2, Seed: 1},
		Days: 24,
		Preload: benchscale.Size{Teams: 4, ReposPerTeam: 2, Days: 60, DeploymentsPerDay: 10, ChangesPerDeployment: 3,
			BatchesPerDay: 2, Churn: 1},
		PreloadName: "small",
		// Not the default 30 s: the two restarts after SIGKILL would wait
		// for it, and `make bench` must stay quick.
		AckWait: 5 * time.Second,
	}
}

// restartLimit is how long the benchmark waits for a restarted processor
// to catch up before it gives up on it.
func (s Size) restartLimit() time.Duration {
	if s.Days < 365 {
		return time.Minute
	}
	return 5 * time.Minute
}

const (
	// partitions of the event subjects: the default.
	partitions = 8
	// reposPerTeam: team i owns org/svc-<i>0 … org/svc-<i>9.
	reposPerTeam = 10
	// extraDays are published after the replayed history, by the restarts.
	extraDays = 6
	// insertRows is the bare insert's batch.
	insertRows = 10_000
)
