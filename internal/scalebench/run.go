package scalebench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/doraflow/doraflow/internal/benchscale"
	"github.com/doraflow/doraflow/internal/orgsim"
	"github.com/doraflow/doraflow/internal/serve"
	"github.com/doraflow/doraflow/pkg/bus"
	"github.com/doraflow/doraflow/pkg/config"
	"github.com/doraflow/doraflow/sinks/clickhouse"
)

// Options say what to run where.
type Options struct {
	Size Size
	// Exe is this binary: the children are it, re-executed.
	Exe string
	// Dir holds the run's files: the NATS store, the children's logs, the
	// configuration, the profiles.
	Dir string
	// ClickHouseDSN is the processor's database and BaselineDSN another,
	// for the bare insert: both empty, on the same server.
	ClickHouseDSN, BaselineDSN string
	Logger                     *slog.Logger
}

// Result is everything a run measured.
type Result struct {
	Size    Size
	Start   time.Time // the first day of the history
	Machine machine

	Fold foldResult

	Days        []day // as published
	PublishTook time.Duration
	ByType      map[string]uint64 // events by type, as the stream holds them

	// Consume is the bare consume shaped as the processor's consumers;
	// ConsumeOne the same messages through one consumer of every subject.
	Consume, ConsumeOne consumeBaseline
	Year                yearRun
	Rows                map[string]uint64 // the processor's rows once the history was processed
	Insert              insertBaseline
	Queries             []queryPoint

	Preload     preload
	Stored      map[string]uint64 // rows stored when the restarts began
	Restarts    []restartRun
	CPUProfile  string // the year's processor CPU profile (file)
	HeapProfile string // its heap at the end of the year
}

type machine struct {
	CPUs       int
	Memory     string
	ClickHouse string
	Go         string
}

// yearRun is the processing of the whole history.
type yearRun struct {
	Ready       time.Duration // process start → /readyz 200
	Took        time.Duration // /readyz 200 → every worker idle
	Months      []monthRate
	Samples     []sample
	Checkpoints []checkpoint
	Log         logSummary
	// CPU is what each process used from the processor's start until it
	// was idle; ClickHouse's is 0 if its server was not found.
	CPU cpuUse
}

// monthRate is the processing of a twelfth of the history.
type monthRate struct {
	First, Last time.Time // its first and last day
	Events      int
	Took        time.Duration
}

// rate is the twelfth's events per second; 0 when it took less than the
// sampling could see (a small history).
func (m monthRate) rate() float64 {
	if m.Took <= 0 {
		return 0
	}
	return float64(m.Events) / m.Took.Seconds()
}

// preload is the other organisation's facts stored before the restarts.
type preload struct {
	Batches int
	Took    time.Duration
}

// Run runs every step (see the package documentation).
func Run(ctx context.Context, o Options) (*Result, error) {
	r := &Result{Size: o.Size}
	today := time.Now().UTC().Truncate(24 * time.Hour)
	r.Start = today.AddDate(0, 0, -(o.Size.Days + extraDays - 1))
	orgOpts := o.Size.Org
	orgOpts.Start = r.Start
	cfgPath := filepath.Join(o.Dir, "doraflow.yaml")
	if err := os.WriteFile(cfgPath, []byte(configYAML(orgOpts.Repos, o.Size.AckWait)), 0o644); err != nil {
		return nil, fmt.Errorf("scalebench: %w", err)
	}
	cfg, err := config.Load(cfgPath, func(string) string { return "" })
	if err != nil {
		return nil, err
	}
	popts, err := serve.ProcessorOptions(cfg)
	if err != nil {
		return nil, err
	}

	o.Logger.Info("pure correlation", "days", o.Size.Days)
	r.Fold = pureFold(popts.Correlate, orgsim.New(orgOpts), o.Size.Days)
	// The state is dropped: the harness holds little while the processor runs.
	runtime.GC()
	debug.FreeOSMemory()

	natsDir := filepath.Join(o.Dir, "nats")
	natsProc, url, err := startNATS(o.Exe, natsDir, filepath.Join(o.Dir, "nats.log"))
	if err != nil {
		return nil, err
	}
	// The store is a few GB of throwaway history.
	defer func() { _ = natsProc.stop(time.Minute); _ = os.RemoveAll(natsDir) }()
	b, err := bus.Open(ctx, bus.Options{URL: url, Logger: o.Logger})
	if err != nil {
		return nil, err
	}
	defer b.Close()
	if err := serve.CheckPartitions(ctx, b.JS, partitions); err != nil {
		return nil, err
	}

	o.Logger.Info("publishing", "days", o.Size.Days)
	org := orgsim.New(orgOpts) // the same seed: the history folded above
	start := time.Now()
	if r.Days, err = publishDays(ctx, b.JS, org, o.Size.Days, partitions); err != nil {
		return nil, err
	}
	r.PublishTook = time.Since(start)
	if r.ByType, err = eventsByType(ctx, b.JS); err != nil {
		return nil, err
	}

	o.Logger.Info("bare consume")
	if r.Consume, err = bareConsume(ctx, b.JS, processorFilters(partitions), cfg.Processor.BatchSize); err != nil {
		return nil, err
	}
	if r.ConsumeOne, err = bareConsume(ctx, b.JS, map[string][]string{"all": {bus.EventSubjects}}, cfg.Processor.BatchSize); err != nil {
		return nil, err
	}

	conn, err := rawConn(o.ClickHouseDSN)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	if err := conn.QueryRow(ctx, "SELECT version()").Scan(&r.Machine.ClickHouse); err != nil {
		return nil, fmt.Errorf("scalebench: clickhouse version: %w", err)
	}
	r.Machine.CPUs, r.Machine.Memory, r.Machine.Go = runtime.NumCPU(), memTotal(), runtime.Version()

	run := &runner{o: o, js: b.JS, nats: natsProc, cfgPath: cfgPath, url: url, log: filepath.Join(o.Dir, "processor.log"),
		memLimit: memLimit()}
	o.Logger.Info("processing the history")
	r.CPUProfile = filepath.Join(o.Dir, "processor.cpu.pprof")
	r.HeapProfile = filepath.Join(o.Dir, "processor.heap.pprof")
	if r.Year, err = run.year(ctx, r.Days, r.CPUProfile, r.HeapProfile); err != nil {
		return nil, err
	}
	if r.Rows, err = tableRows(ctx, conn, database(o.ClickHouseDSN)); err != nil {
		return nil, err
	}

	store, err := clickhouse.Open(ctx, o.ClickHouseDSN, o.Logger)
	if err != nil {
		return nil, err
	}
	defer store.Close()
	o.Logger.Info("queries")
	until := r.Days[len(r.Days)-1].Date.Add(14*time.Hour + 37*time.Minute) // not midnight, as `--since 90d` gives
	var teams []string
	for i := range orgOpts.Repos / reposPerTeam {
		teams = append(teams, teamName(i))
	}
	windows := []int{7, 30, 90, 180, 365}
	if o.Size.Days < 365 {
		windows = []int{1, 3, 7, 14}
	}
	if r.Queries, err = measureQueries(ctx, store, conn, until, windows, teams, 10); err != nil {
		return nil, err
	}

	o.Logger.Info("bare insert")
	if err := waitForMerges(ctx, conn, 5*time.Minute); err != nil {
		return nil, err
	}
	baseline, err := clickhouse.Open(ctx, o.BaselineDSN, o.Logger)
	if err != nil {
		return nil, err
	}
	defer baseline.Close()
	if _, err := baseline.Migrate(ctx); err != nil {
		return nil, err
	}
	if r.Insert, err = bareInsert(ctx, o.ClickHouseDSN, o.BaselineDSN, insertRows); err != nil {
		return nil, err
	}
	// The copy is not needed any more; its merges would slow what follows.
	if err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+database(o.BaselineDSN)); err != nil {
		return nil, fmt.Errorf("scalebench: %w", err)
	}

	o.Logger.Info("preload", "days", o.Size.Preload.Days)
	if r.Preload, err = preloadFacts(ctx, store, o.Size.Preload); err != nil {
		return nil, err
	}
	if err := waitForMerges(ctx, conn, 5*time.Minute); err != nil {
		return nil, err
	}
	if r.Stored, err = tableRows(ctx, conn, database(o.ClickHouseDSN)); err != nil {
		return nil, err
	}

	o.Logger.Info("restarts")
	if r.Restarts, err = run.restarts(ctx, org); err != nil {
		return nil, err
	}
	// Every sample and checkpoint, for a closer look than the document's,
	// and to write the document again (ReadResult).
	data, err := json.Marshal(r)
	if err != nil {
		return nil, fmt.Errorf("scalebench: %w", err)
	}
	if err := os.WriteFile(filepath.Join(o.Dir, ResultFile), data, 0o644); err != nil {
		return nil, fmt.Errorf("scalebench: %w", err)
	}
	return r, nil
}

// ResultFile is the name of a run's results in its directory.
const ResultFile = "result.json"

// ReadResult reads the results a run saved.
func ReadResult(path string) (*Result, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("scalebench: %w", err)
	}
	var r Result
	if err := json.Unmarshal(data, &r); err != nil {
		return nil, fmt.Errorf("scalebench: %s: %w", path, err)
	}
	return &r, nil
}

// configYAML is the processor's configuration: the defaults, teams of
// reposPerTeam repositories, and ackWait if not zero.
func configYAML(repos int, ackWait time.Duration) string {
	var b strings.Builder
	if ackWait > 0 {
		fmt.Fprintf(&b, "processor:\n  ack_wait: %s\n", ackWait)
	}
	b.WriteString("teams:\n")
	for i := range repos / reposPerTeam {
		fmt.Fprintf(&b, "  - name: %s\n    repos: [\"org/svc-%03d?\"]\n", teamName(i), i)
	}
	return b.String()
}

func teamName(i int) string { return fmt.Sprintf("team-%03d", i) }

// eventsByType counts the event stream's messages by type (the subject's
// last token).
func eventsByType(ctx context.Context, js jetstream.JetStream) (map[string]uint64, error) {
	s, err := js.Stream(ctx, bus.EventStream)
	if err != nil {
		return nil, fmt.Errorf("scalebench: %w", err)
	}
	info, err := s.Info(ctx, jetstream.WithSubjectFilter(bus.EventSubjects))
	if err != nil {
		return nil, fmt.Errorf("scalebench: %w", err)
	}
	out := map[string]uint64{}
	for subject, n := range info.State.Subjects {
		out[subject[strings.LastIndexByte(subject, '.')+1:]] += n
	}
	return out, nil
}

// preloadFacts stores the facts of size's history (another organisation's
// repositories) with their teams, 100k rows an insert.
func preloadFacts(ctx context.Context, store *clickhouse.Store, size benchscale.Size) (preload, error) {
	start := time.Now()
	if err := store.WriteTeams(ctx, size.Mapping(), 1); err != nil {
		return preload{}, err
	}
	n := 0
	err := benchscale.Chunks(size, 1, 100_000, func(bs []benchscale.Batch) error {
		n += len(bs)
		return benchscale.Write(ctx, store, bs)
	})
	if err != nil {
		return preload{}, fmt.Errorf("scalebench: preload: %w", err)
	}
	return preload{Batches: n, Took: time.Since(start)}, nil
}

// runner starts and watches the processor children.
type runner struct {
	o       Options
	js      jetstream.JetStream
	nats    *process
	cfgPath string
	url     string
	log     string // every processor child logs here, one after the other
	// memLimit is the resident memory past which the benchmark stops a
	// processor: the machine must not run out.
	memLimit int64
}

// startProcessor starts `serve --role processor`.
func (run *runner) startProcessor(cpuProfile, heapProfile string) (*process, string, error) {
	addr, err := freeAddr()
	if err != nil {
		return nil, "", err
	}
	env := []string{
		"DORAFLOW_CONFIG=" + run.cfgPath,
		"DORAFLOW_NATS_URL=" + run.url,
		"DORAFLOW_CLICKHOUSE_DSN=" + run.o.ClickHouseDSN,
		"DORAFLOW_LISTEN=" + addr,
		"DORAFLOW_DATA_DIR=" + filepath.Join(run.o.Dir, "processor"),
		fmt.Sprintf("DORAFLOW_PARTITIONS=%d", partitions),
	}
	if cpuProfile != "" {
		env = append(env, cpuProfileEnv+"="+cpuProfile)
	}
	if heapProfile != "" {
		env = append(env, heapProfileEnv+"="+heapProfile)
	}
	p, err := startChild(run.o.Exe, "processor", roleProcessor, env, run.log, nil)
	return p, addr, err
}

// year processes the whole published history with one processor, from an
// empty state, and stops it cleanly once it is idle.
func (run *runner) year(ctx context.Context, days []day, cpuProfile, heapProfile string) (yearRun, error) {
	var y yearRun
	cw, err := watchCheckpoints(ctx, run.js)
	if err != nil {
		return y, err
	}
	defer cw.close()
	meter := newCPUMeter(run.nats)
	proc, addr, err := run.startProcessor(cpuProfile, heapProfile)
	if err != nil {
		return y, err
	}
	defer proc.kill()
	sctx, stopSampling := context.WithCancel(ctx)
	smp := newSampler(run.js, partitions, proc, run.nats, 250*time.Millisecond)
	sampled := make(chan struct{})
	go func() { defer close(sampled); smp.run(sctx) }()
	defer func() { stopSampling(); <-sampled }()

	wctx, giveUp := context.WithCancelCause(ctx)
	defer giveUp(nil)
	go guard(wctx, proc, 3*time.Hour, run.memLimit, giveUp)
	ready, err := waitReady(wctx, proc, addr)
	if err == nil {
		err = waitIdle(wctx, run.js, partitions, proc)
	}
	if cause := context.Cause(wctx); err != nil && errors.Is(cause, errGaveUp) {
		err = cause
	}
	if err != nil {
		return y, fmt.Errorf("scalebench: processing the history: %w", err)
	}
	end := time.Now()
	y.CPU = meter.since(proc.cmd.Process.Pid)
	y.Ready, y.Took = ready.Sub(proc.started), end.Sub(ready)
	stopSampling()
	<-sampled
	if y.Samples, err = smp.result(); err != nil {
		return y, err
	}
	if err := proc.stop(time.Minute); err != nil {
		return y, err
	}
	y.Checkpoints = cw.checkpoints()
	y.Months = months(days, y.Samples, ready, end)
	lines, err := readLog(run.log, proc.started)
	if err != nil {
		return y, err
	}
	y.Log = summarise(lines)
	return y, nil
}

// months splits the history into twelfths and times each: from when the
// partition workers' acknowledgements had on average passed the previous
// twelfth's last event (the first: from /readyz answering 200) to when they
// had passed this one's (the last: until every worker was idle). The
// average, not the slowest: workers run side by side, some ahead of
// others, and the rate of a stretch of the history is that of all of them.
func months(days []day, samples []sample, ready, end time.Time) []monthRate {
	var out []monthRate
	prevAt, prevSeq := ready, uint64(0)
	for i := range 12 {
		first, last := i*len(days)/12, (i+1)*len(days)/12-1
		if last < first {
			continue
		}
		m := monthRate{First: days[first].Date, Last: days[last].Date, Events: int(days[last].LastSeq - prevSeq)}
		at := end
		if i < 11 {
			for _, s := range samples {
				if s.meanPartitionFloor() >= float64(days[last].LastSeq) {
					at = s.At
					break
				}
			}
		}
		m.Took = at.Sub(prevAt)
		out = append(out, m)
		prevAt, prevSeq = at, days[last].LastSeq
	}
	return out
}

// waitReady polls /readyz until it answers 200 and returns when it did.
func waitReady(ctx context.Context, proc *process, addr string) (time.Time, error) {
	for {
		if readyz(ctx, addr) == http.StatusOK {
			return time.Now(), nil
		}
		if proc.exited() {
			return time.Time{}, fmt.Errorf("scalebench: the processor exited before it was ready: %v\n%s", proc.err, proc.logTail())
		}
		select {
		case <-ctx.Done():
			return time.Time{}, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// readyz is /readyz's status code; 0 when nothing answers.
func readyz(ctx context.Context, addr string) int {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/readyz", nil)
	if err != nil {
		return 0
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// memTotal is the machine's memory as /proc/meminfo says.
func memTotal() string {
	if b := memBytes(); b > 0 {
		return fmt.Sprintf("%.1f GiB", float64(b)/(1<<30))
	}
	return "unknown"
}

// memLimit is 60 % of the machine's memory (8 GiB if unknown): the
// NATS server, ClickHouse and the benchmark need the rest.
func memLimit() int64 {
	if b := memBytes(); b > 0 {
		return b * 6 / 10
	}
	return 8 << 30
}

func memBytes() int64 {
	data, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0
	}
	for line := range strings.SplitSeq(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, "MemTotal:"); ok {
			var kb int64
			if _, err := fmt.Sscanf(strings.TrimSpace(rest), "%d kB", &kb); err == nil {
				return kb << 10
			}
		}
	}
	return 0
}
