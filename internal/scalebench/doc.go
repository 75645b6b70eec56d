package scalebench

import (
	"context"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/doraflow/doraflow/pkg/bus"
	"github.com/doraflow/doraflow/pkg/config"
)

// The document's figures, derived from a Result.

// totalEvents is the number of events of the replayed history.
func (r *Result) totalEvents() int {
	if len(r.Days) == 0 {
		return 0
	}
	return int(r.Days[len(r.Days)-1].LastSeq)
}

func (r *Result) rate(d time.Duration) float64 { return float64(r.totalEvents()) / d.Seconds() }

// The whole history's rates, in events of the history per second: the
// processor's, and the bare baselines' over the same messages and rows.
func (r *Result) processorRate() float64 { return r.rate(r.Year.Took) }
func (r *Result) consumeRate() float64   { return r.rate(r.Consume.Took) }
func (r *Result) insertRate() float64    { return r.rate(r.Insert.TotalTook) }
func (r *Result) baselineRate() float64  { return min(r.consumeRate(), r.insertRate()) }

// peaks are the highest VmHWM seen of the processor and the NATS server
// during the history's processing.
func (r *Result) peaks() (proc, nats int64) {
	for _, s := range r.Year.Samples {
		proc, nats = max(proc, s.ProcPeak), max(nats, s.NATSPeak)
	}
	return proc, nats
}

// batchCycles are, per worker, the times between consecutive checkpoints
// during the history's processing: one batch's fetch, fold, flush, write,
// link publish and acknowledgements.
func (r *Result) batchCycles() []time.Duration {
	last := map[string]time.Time{}
	var out []time.Duration
	for _, c := range r.Year.Checkpoints {
		if at, ok := last[c.Worker]; ok {
			out = append(out, c.At.Sub(at))
		}
		last[c.Worker] = c.At
	}
	return out
}

// profileTop is `go tool pprof -top` of a profile (Go's profiles carry
// their symbols: the binary is not needed).
func profileTop(ctx context.Context, profile string, args ...string) string {
	goBin, err := exec.LookPath("go")
	if err != nil {
		return "(no profile summary: " + err.Error() + ")"
	}
	cmd := exec.CommandContext(ctx, goBin, append(append([]string{"tool", "pprof"}, args...), profile)...)
	// Its complaints about the binary being gone go to stderr.
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return fmt.Sprintf("(go tool pprof failed: %v)\n%s", err, stderr.String())
	}
	return strings.TrimSpace(string(out))
}

// handWritten is the part of an existing document a person wrote: from
// its "## Reading it" heading on, kept when the figures are written again.
func handWritten(path string) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	if i := strings.Index(string(data), "\n## Reading it"); i >= 0 {
		return string(data[i+1:])
	}
	return ""
}

// WriteDoc writes the run's figures to path (Markdown) and its charts
// beside it.
func WriteDoc(ctx context.Context, r *Result, path string) error {
	prefix := strings.TrimSuffix(filepath.Base(path), filepath.Ext(path))
	charts, err := writeCharts(r, filepath.Dir(path), prefix)
	if err != nil {
		return err
	}
	kept := handWritten(path)
	var w strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&w, format, args...) }
	size := r.Size
	last := r.Days[len(r.Days)-1].Date
	p("# Scale benchmark: the organisation's history through the real path\n\n")
	p("Written by `make bench-scale` (internal/scalebench, BenchmarkScale) on %s, size %q. Every figure below comes from this one run; the baselines were measured in it, on the same messages and rows.\n\n",
		time.Now().UTC().Format(time.DateOnly), size.Name)

	p("## Machine\n\n- %d cores (`nproc`), %s memory, GOMAXPROCS %d, %s\n- ClickHouse %s (a throwaway server, internal/testenv)\n- NATS server: embedded (nats-server/v2 as pinned), file storage, in its own process\n\n",
		r.Machine.CPUs, r.Machine.Memory, runtime.GOMAXPROCS(0), r.Machine.Go, r.Machine.ClickHouse)

	p("## What ran\n\n")
	o := size.Org
	p("- History: internal/orgsim, %d repositories (%d teams of %d), %d pushes, %d production deployments and %d incidents a day drawn; %d days, %s – %s.\n",
		o.Repos, o.Repos/reposPerTeam, reposPerTeam, o.PushesPerDay, o.DeploymentsPerDay, o.IncidentsPerDay, len(r.Days), r.Start.Format(time.DateOnly), last.Format(time.DateOnly))
	p("- Events: %d (%s), published as the collectors publish them (`webhook.EventMessage`, `bus.PublishAll` of %d messages, on `doraflow.events.<partition>.<type>`, %d partitions) in %s (%.0f events/s), all before the processor started.\n",
		r.totalEvents(), byType(r.ByType), publishChunk, partitions, secs(r.PublishTook), r.rate(r.PublishTook))
	p("- Processor: `serve --role processor` (serve.Start, the default configuration but for the teams), one process owning the %d partition workers and the attribution worker, against ClickHouse, started on the full stream and run until every worker was idle. Processes measured: the processor (its VmRSS/VmHWM from /proc) and the NATS server (its own process: the sum is what one `serve --role all` would hold); the benchmark itself (generator, baselines) is a third.\n",
		partitions)
	if size.AckWait > 0 {
		p("- Processor configuration changed: processor.ack_wait %s (default %s), so that the restarts after SIGKILL do not wait for the default.\n",
			size.AckWait, config.Default().Processor.AckWait)
	}
	p("- Rows the processor wrote for the history: %s. The pure correlation, in eighths of a day, handed out %d rows.\n\n", byType(r.Rows), r.Fold.Rows)

	first, lastM := r.Year.Months[0], r.Year.Months[len(r.Year.Months)-1]
	procPeak, natsPeak := r.peaks()
	p("## Targets (issue 12)\n\n| target | measured | |\n| --- | --- | --- |\n")
	p("| last month's rate ≥ 80 %% of the first's | %.0f vs %.0f events/s: **%.0f %%** | %s |\n",
		lastM.rate(), first.rate(), 100*lastM.rate()/first.rate(), verdict(lastM.rate() >= 0.8*first.rate()))
	p("| whole history ≥ 50 %% of the slower bare baseline | %.0f events/s vs %.0f (%s): **%.0f %%** | %s |\n",
		r.processorRate(), r.baselineRate(), slowerName(r), 100*r.processorRate()/r.baselineRate(), verdict(r.processorRate() >= 0.5*r.baselineRate()))
	p("| processor under 2 GB RSS | peak %s while processing the history; %s over the restarts; NATS server %s | %s |\n",
		mib(procPeak), mib(restartPeak(r)), mib(natsPeak), verdict(max(procPeak, restartPeak(r)) < 2<<30))
	for _, rs := range r.Restarts {
		if rs.NotRun {
			p("| %s: consuming again within 30 s | not run: the restart before it did not catch up | **not measured** |\n", rs.Name)
			continue
		}
		p("| %s: consuming again within 30 s | /readyz %s, first batch %s, caught up %s | %s |\n",
			rs.Name, when(rs.Ready), when(rs.FirstBatch), caughtUp(rs), verdict(rs.FirstBatch > 0 && rs.FirstBatch < 30*time.Second))
	}
	early := 0
	for _, rs := range r.Restarts {
		early += rs.NotReadyAfterReady
	}
	p("| /readyz ready only when the partitions are rebuilt | %s | %s |\n\n", readyzSummary(r), verdict(early == 0 && readyBeforeOwned(r) == 0))

	p("## Processing rate\n\nEvents are published in time order, so a stream sequence is a point in the history. Each twelfth of the history is timed from when the partition workers' acknowledgement floors had on average passed the previous twelfth's last event (the first: from /readyz answering 200) to when they had passed its own (the last: until every worker was idle); sampled every 250 ms. The average, because the workers run side by side and some are ahead of others.\n\n")
	p("| twelfth | days | events | took | events/s | × first |\n| --- | --- | ---: | ---: | ---: | ---: |\n")
	for i, m := range r.Year.Months {
		p("| %d | %s – %s | %d | %s | %.0f | %.2f |\n", i+1, m.First.Format("Jan 2"), m.Last.Format("Jan 2"), m.Events,
			secs(m.Took), m.rate(), m.rate()/first.rate())
	}
	p("\nWhole history: %d events in %s after /readyz (%s from the process's start to /readyz): **%.0f events/s**.\n\n",
		r.totalEvents(), secs(r.Year.Took), secs(r.Year.Ready), r.processorRate())

	c := r.Year.CPU
	p("CPU time over the same stretch (%s of wall time on %d cores, %s of CPU time available): processor %s, NATS server %s, ClickHouse server %s, the benchmark (sampling) %s.\n\n",
		secs(r.Year.Took+r.Year.Ready), r.Machine.CPUs, secs(time.Duration(r.Machine.CPUs)*(r.Year.Took+r.Year.Ready)),
		secs(c.Processor), secs(c.NATS), cpuOrUnknown(c.ClickHouse), secs(c.Bench))
	p("## Bare baselines (same run)\n\n")
	p("- JetStream consume of the same messages: %d deliveries (the processor's consumer shapes: %d partition consumers, each with its partition's subjects and every incident, and one for incidents; batches of %d, an acknowledgement per message) in %s: %.0f messages/s, **%.0f events of the history/s**.\n",
		r.Consume.Messages, partitions, r.Consume.Batch, secs(r.Consume.Took), float64(r.Consume.Messages)/r.Consume.Took.Seconds(), r.consumeRate())
	p("- The same messages through one consumer of every subject (the rest as above): %d deliveries in %s, %.0f messages/s: the processor ran at %.0f %% of it.\n",
		r.ConsumeOne.Messages, secs(r.ConsumeOne.Took), float64(r.ConsumeOne.Messages)/r.ConsumeOne.Took.Seconds(), 100*r.processorRate()/r.rate(r.ConsumeOne.Took))
	p("- ClickHouse insert of the processor's rows (read back from its database, inserted into another with PrepareBatch/Append/Send, %d rows an insert, one connection): %d rows in %s, %.0f rows/s, **%.0f events of the history/s**.\n\n",
		insertRows, r.Insert.Total, secs(r.Insert.TotalTook), float64(r.Insert.Total)/r.Insert.TotalTook.Seconds(), r.insertRate())
	p("| table | rows | took | rows/s |\n| --- | ---: | ---: | ---: |\n")
	for _, t := range factTables() {
		if n := r.Insert.Rows[t.name]; n > 0 {
			p("| %s | %d | %s | %.0f |\n", t.name, n, secs(r.Insert.Took[t.name]), float64(n)/r.Insert.Took[t.name].Seconds())
		}
	}
	p("\nThe slower baseline is the %s; the processor ran at **%.0f %%** of it.\n\n", slowerName(r), 100*r.processorRate()/r.baselineRate())

	cycles := r.batchCycles()
	p("## Per batch\n\n")
	p("- Processor: %d batches committed (checkpoints written) over the history, about %.0f events each; time between a worker's consecutive checkpoints (fetch, fold, flush, checkpoint, write, link publish, acknowledgements): p50 %s, p95 %s, max %s.\n",
		len(r.Year.Checkpoints), float64(r.totalEvents())/float64(max(len(r.Year.Checkpoints), 1)),
		msStr(quantile(cycles, 0.5)), msStr(quantile(cycles, 0.95)), msStr(quantile(cycles, 1)))
	var costs []time.Duration
	for _, b := range r.Fold.Batches {
		costs = append(costs, b.Took)
	}
	tenth := max(len(costs)/10, 1)
	p("- Pure correlation (correlate.State, both stages in one goroutine, no I/O): %d batches of an eighth of a day (about %.0f events), %s in all (%.0f events/s on one core); per batch p50 %s, p95 %s; over the first tenth of the history p50 %s, over the last tenth p50 %s (**× %.2f**).\n\n",
		len(costs), float64(r.totalEvents())/float64(max(len(costs), 1)), secs(r.Fold.Took), r.rate(r.Fold.Took),
		msStr(quantile(costs, 0.5)), msStr(quantile(costs, 0.95)), msStr(quantile(costs[:tenth], 0.5)), msStr(quantile(costs[len(costs)-tenth:], 0.5)),
		ms(quantile(costs[len(costs)-tenth:], 0.5))/ms(quantile(costs[:tenth], 0.5)))

	p("## Memory\n\n")
	p("- Processor process: peak (VmHWM) %s while processing the history, %s at its end (VmRSS).\n", mib(procPeak), mib(lastSample(r).ProcRSS))
	p("- NATS server process: peak %s (not profiled here; a backfill puts every event's id into the %s duplicate window at once).\n",
		mib(natsPeak), bus.DuplicateWindow)
	snaps := r.Year.Log.Snapshots
	if len(snaps) > 0 {
		total := 0
		for _, s := range snaps {
			total += s.Bytes
		}
		p("- Snapshots: %d written (at most every %s per worker, after a batch), %s in all; the snapshot store held %s at the end. First snapshot %s, last %s.\n",
			len(snaps), config.Default().Processor.SnapshotInterval, mib(int64(total)), mib(int64(lastSample(r).StateBytes)), mib(int64(snaps[0].Bytes)), mib(int64(snaps[len(snaps)-1].Bytes)))
	}
	p("\n")

	p("## Restarts\n\nThe store held %s when they began (the history's own rows plus another organisation's: benchscale's %q generator, %d days, written straight to ClickHouse in %s). Each new process is timed from its start (fork) to /readyz answering 200, to its first batch of events fetched from the consumers being committed (checkpointed; the write and acknowledgements follow within the batch), and to every worker being idle.\n\n",
		byType(r.Stored), size.PreloadName, size.Preload.Days, secs(r.Preload.Took))
	p("| start | /readyz 200 | first owned workers | first batch | caught up | new events | peak RSS | /readyz not 200 after 200 | rebuilds: slowest, events refolded, stored facts read |\n| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |\n")
	for _, rs := range r.Restarts {
		if rs.NotRun {
			p("| %s | not run | | | | | | | |\n", rs.Name)
			continue
		}
		slowest, folded, remembered := time.Duration(0), 0, 0
		for _, rb := range rs.Log.Rebuilds {
			slowest = max(slowest, rb.Took)
			folded += rb.Folded
			remembered += rb.Remembered
		}
		p("| %s | %s | %s | %s | %s | %d | %s | %d | %s, %d, %d |\n", rs.Name, when(rs.Ready), when(rs.FirstOwned), when(rs.FirstBatch), caughtUp(rs),
			rs.Published, mib(rs.Peak), rs.NotReadyAfterReady, secs(slowest), folded, remembered)
	}
	p("\n")
	for _, rs := range r.Restarts {
		if rs.NotRun {
			continue
		}
		p("- %s: %s.", rs.Name, rs.How)
		if rs.GaveUp != "" {
			p(" The benchmark gave up on it (%s) and killed it.", rs.GaveUp)
		}
		if len(rs.Log.Warnings) > 0 {
			p(" It logged: %s.", warnings(rs.Log.Warnings))
		}
		p("\n")
	}
	p("\nA worker's rebuild restores its snapshot, folds the streams again from the snapshot's positions to its checkpoint (\"events refolded\") and reads the stored facts written since the snapshot, and those of the incidents the refold touched (\"stored facts read\"); a clean stop snapshots first, so its successor refolds nothing; after SIGKILL the new process first waits for the dead one's leases to expire (lease TTL %s), and what the dead one had fetched but not acknowledged is delivered again only after the ack wait (%s).\n\n",
		config.Default().Processor.LeaseTTL, ackWait(size))

	p("## Queries over what the processor stored\n\nWindows end at %s; 10 samples each; `--team` is %s. Rows: deployment and change rows of the window, every version.\n\n",
		r.Days[len(r.Days)-1].Date.Add(14*time.Hour+37*time.Minute).Format(time.RFC3339), teamOf(r))
	p("| window | rows | changes | report p50 / p95 ms | --team p50 / p95 ms | bare p50 / p95 ms | report p95 × bare |\n| --- | ---: | ---: | ---: | ---: | ---: | ---: |\n")
	for _, q := range r.Queries {
		p("| %dd | %d | %d | %.1f / %.1f | %.1f / %.1f | %.1f / %.1f | %.2f |\n", q.Days, q.Rows, q.Changes,
			ms(quantile(q.Report, 0.5)), ms(quantile(q.Report, 0.95)), ms(quantile(q.ReportTeam, 0.5)), ms(quantile(q.ReportTeam, 0.95)),
			ms(quantile(q.Bare, 0.5)), ms(quantile(q.Bare, 0.95)), ms(quantile(q.Report, 0.95))/ms(quantile(q.Bare, 0.95)))
	}
	p("\nAt the organisation's 10 M changes over three years, see docs/benchmarks-queries.md (`make bench-queries`).\n\n")

	p("## Charts\n\n")
	for _, c := range charts {
		p("![%s](%s)\n\n", c.Title, c.File)
	}

	p("## Where the processor's time goes\n\nCPU profile of the processor process over the history's processing (`go tool pprof -top -cum`, then `-top`), %s:\n\n```\n%s\n```\n\n```\n%s\n```\n\n",
		filepath.Base(r.CPUProfile), profileTop(ctx, r.CPUProfile, "-top", "-cum", "-nodecount=40"),
		profileTop(ctx, r.CPUProfile, "-top", "-nodecount=25"))
	p("Heap in use when the processor stopped, after the history (`-sample_index=inuse_space -top`):\n\n```\n%s\n```\n\n",
		profileTop(ctx, r.HeapProfile, "-sample_index=inuse_space", "-top", "-nodecount=20"))
	if len(r.Year.Log.Warnings) > 0 {
		p("Warnings the processor logged while processing the history: %s.\n\n", warnings(r.Year.Log.Warnings))
	}
	if kept != "" {
		w.WriteString(kept)
	}
	if err := os.WriteFile(path, []byte(w.String()), 0o644); err != nil {
		return fmt.Errorf("scalebench: %w", err)
	}
	return nil
}

func cpuOrUnknown(d time.Duration) string {
	if d <= 0 {
		return "(not found)"
	}
	return secs(d)
}

// when is a time from a start, or "never" for none.
func when(d time.Duration) string {
	if d <= 0 {
		return "never"
	}
	return secs(d)
}

func caughtUp(rs restartRun) string {
	if rs.GaveUp != "" {
		return "not (given up)"
	}
	return secs(rs.CaughtUp)
}

func ackWait(size Size) time.Duration {
	if size.AckWait > 0 {
		return size.AckWait
	}
	return config.Default().Processor.AckWait
}

func warnings(m map[string]int) string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, fmt.Sprintf("%s × %d", k, m[k]))
	}
	return strings.Join(parts, "; ")
}

func verdict(ok bool) string {
	if ok {
		return "holds"
	}
	return "**missed**"
}

func slowerName(r *Result) string {
	if r.consumeRate() <= r.insertRate() {
		return "bare JetStream consume"
	}
	return "bare ClickHouse insert"
}

func restartPeak(r *Result) int64 {
	var peak int64
	for _, rs := range r.Restarts {
		peak = max(peak, rs.Peak)
	}
	return peak
}

// readyBeforeOwned counts the restarts whose /readyz answered 200 before
// the process owned any worker.
func readyBeforeOwned(r *Result) int {
	n := 0
	for _, rs := range r.Restarts {
		if !rs.NotRun && rs.Ready > 0 && (rs.FirstOwned == 0 || rs.Ready < rs.FirstOwned) {
			n++
		}
	}
	return n
}

func readyzSummary(r *Result) string {
	var parts []string
	for _, rs := range r.Restarts {
		if rs.NotRun {
			continue
		}
		s := fmt.Sprintf("%s: 200 at %s, first workers owned at %s", rs.Name, when(rs.Ready), when(rs.FirstOwned))
		if rs.NotReadyAfterReady > 0 {
			s += fmt.Sprintf(", then %d answers not 200", rs.NotReadyAfterReady)
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, "; ")
}

func lastSample(r *Result) sample {
	if len(r.Year.Samples) == 0 {
		return sample{}
	}
	return r.Year.Samples[len(r.Year.Samples)-1]
}

func teamOf(r *Result) string {
	if len(r.Queries) == 0 {
		return ""
	}
	return r.Queries[0].Team
}

func byType[V int | uint64](m map[string]V) string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, fmt.Sprintf("%s %d", k, m[k]))
	}
	return strings.Join(parts, ", ")
}

func mib(b int64) string {
	if b < 10<<20 {
		return fmt.Sprintf("%.0f KiB", float64(b)/(1<<10))
	}
	return fmt.Sprintf("%.0f MiB", float64(b)/(1<<20))
}

func secs(d time.Duration) string {
	if d < 10*time.Second {
		return fmt.Sprintf("%.2f s", d.Seconds())
	}
	return fmt.Sprintf("%.1f s", d.Seconds())
}

func msStr(d time.Duration) string { return fmt.Sprintf("%.1f ms", ms(d)) }
