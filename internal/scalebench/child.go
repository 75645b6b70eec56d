package scalebench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/doraflow/doraflow/internal/serve"
	"github.com/doraflow/doraflow/pkg/bus"
	"github.com/doraflow/doraflow/pkg/config"
)

// The benchmark's processes: the benchmark binary re-executed with childEnv
// set runs one of them instead of the benchmark. The processor child is
// `doraflow serve --role processor` — the same configuration loading and
// serve.Start — run from this binary only so that it can write a CPU
// profile (cmd/doraflow has no profiling flag, and should not need one).
const (
	childEnv       = "DORAFLOW_SCALEBENCH_CHILD"
	cpuProfileEnv  = "DORAFLOW_SCALEBENCH_CPUPROFILE"
	heapProfileEnv = "DORAFLOW_SCALEBENCH_HEAPPROFILE"
	natsDirEnv     = "DORAFLOW_SCALEBENCH_NATS_DIR"

	roleNATS      = "nats"
	roleProcessor = "processor"

	// natsURLPrefix starts the line on which the NATS child says where it
	// listens.
	natsURLPrefix = "nats-url "
)

// Child runs this process as one of the benchmark's child processes when
// the environment says so, and returns its exit code; ok is false in the
// benchmark itself. Call it first thing in TestMain.
func Child() (code int, ok bool) {
	switch os.Getenv(childEnv) {
	case roleNATS:
		return exitCode(runNATS()), true
	case roleProcessor:
		return exitCode(runProcessor()), true
	}
	return 0, false
}

func exitCode(err error) int {
	if err != nil {
		fmt.Fprintln(os.Stderr, "scalebench child:", err)
		return 1
	}
	return 0
}

// runNATS is the embedded JetStream server of `serve`, listening on a
// loopback port so that the other processes connect to it, until SIGTERM.
func runNATS() error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	cfg := config.Default()
	cfg.DataDir = os.Getenv(natsDirEnv)
	opts := serve.BusOptions(cfg, slog.New(slog.NewTextHandler(os.Stderr, nil)))
	opts.Port = -1
	b, err := bus.Open(ctx, opts)
	if err != nil {
		return err
	}
	defer b.Close()
	fmt.Println(natsURLPrefix + b.ClientURL())
	<-ctx.Done()
	return nil
}

// runProcessor is `doraflow serve --role processor` (cmd/doraflow's serve
// and main, without cobra), with profiles when asked for.
func runProcessor() (err error) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if path := os.Getenv(cpuProfileEnv); path != "" {
		f, err := os.Create(path)
		if err != nil {
			return fmt.Errorf("cpu profile: %w", err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			return fmt.Errorf("cpu profile: %w", err)
		}
		defer func() {
			pprof.StopCPUProfile()
			err = errors.Join(err, f.Close())
		}()
	}
	cfg, err := config.Load(os.Getenv(config.FileEnv), os.Getenv)
	if err != nil {
		return err
	}
	if err := cfg.Validate(); err != nil {
		return err
	}
	// Debug: the processor logs each snapshot it writes, with its size.
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	err = serve.Run(ctx, cfg, serve.RoleProcessor, logger)
	if path := os.Getenv(heapProfileEnv); path != "" {
		err = errors.Join(err, writeHeapProfile(path))
	}
	return err
}

func writeHeapProfile(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("heap profile: %w", err)
	}
	if err := pprof.WriteHeapProfile(f); err != nil {
		f.Close()
		return fmt.Errorf("heap profile: %w", err)
	}
	return f.Close()
}

// process is a child process of the benchmark.
type process struct {
	name    string
	cmd     *exec.Cmd
	started time.Time
	logPath string
	done    chan struct{}
	err     error // once done is closed
}

// startChild starts exe as a child of role, its stderr (and stdout, but
// for the lines read by onStdout) to logPath.
func startChild(exe, name, role string, env []string, logPath string, onStdout func(line string)) (*process, error) {
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("scalebench: %s log: %w", name, err)
	}
	p := &process{name: name, logPath: logPath, done: make(chan struct{})}
	p.cmd = exec.Command(exe, "-test.run=^$")
	p.cmd.Env = append(append(os.Environ(), childEnv+"="+role), env...)
	p.cmd.Stderr = logFile
	// A benchmark that dies must not leave a server running.
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stdout, err := p.cmd.StdoutPipe()
	if err != nil {
		logFile.Close()
		return nil, fmt.Errorf("scalebench: %s: %w", name, err)
	}
	p.started = time.Now()
	if err := p.cmd.Start(); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("scalebench: start %s: %w", name, err)
	}
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if onStdout != nil {
				onStdout(sc.Text())
			}
			fmt.Fprintln(logFile, sc.Text())
		}
		// A line too long for the scanner ends it: the rest still goes to
		// the log, so that the child never blocks on a full pipe.
		_, _ = io.Copy(logFile, stdout)
		p.err = p.cmd.Wait()
		logFile.Close()
		close(p.done)
	}()
	return p, nil
}

// startNATS starts the embedded JetStream server in a child process with
// its store in dir, and returns it with its client URL.
func startNATS(exe, dir, logPath string) (*process, string, error) {
	urls := make(chan string, 1)
	p, err := startChild(exe, "nats", roleNATS, []string{natsDirEnv + "=" + dir}, logPath, func(line string) {
		if url, ok := strings.CutPrefix(line, natsURLPrefix); ok {
			urls <- url
		}
	})
	if err != nil {
		return nil, "", err
	}
	select {
	case url := <-urls:
		return p, url, nil
	case <-p.done:
		return nil, "", fmt.Errorf("scalebench: nats exited before listening: %v\n%s", p.err, p.logTail())
	case <-time.After(60 * time.Second):
		p.kill()
		return nil, "", fmt.Errorf("scalebench: nats not listening after 60s\n%s", p.logTail())
	}
}

// stop ends the process with SIGTERM and waits for it, killing it after
// timeout.
func (p *process) stop(timeout time.Duration) error {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(timeout):
		p.kill()
		return fmt.Errorf("scalebench: %s ignored SIGTERM for %s; killed", p.name, timeout)
	}
	var exit *exec.ExitError
	if p.err != nil && !errors.As(p.err, &exit) {
		return fmt.Errorf("scalebench: %s: %w", p.name, p.err)
	}
	if p.err != nil {
		return fmt.Errorf("scalebench: %s exited: %w\n%s", p.name, p.err, p.logTail())
	}
	return nil
}

// kill ends the process with SIGKILL and waits for it.
func (p *process) kill() {
	_ = p.cmd.Process.Kill()
	<-p.done
}

// exited reports whether the process has ended.
func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// memory is the process's resident set now and its peak, in bytes, from
// /proc/<pid>/status (VmRSS, VmHWM).
func (p *process) memory() (rss, peak int64, err error) {
	status, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(p.cmd.Process.Pid), "status"))
	if err != nil {
		return 0, 0, fmt.Errorf("scalebench: %s memory: %w", p.name, err)
	}
	for line := range strings.SplitSeq(string(status), "\n") {
		for _, f := range []struct {
			prefix string
			dst    *int64
		}{{"VmRSS:", &rss}, {"VmHWM:", &peak}} {
			if rest, ok := strings.CutPrefix(line, f.prefix); ok {
				kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
				if err != nil {
					return 0, 0, fmt.Errorf("scalebench: %s memory: %q: %w", p.name, line, err)
				}
				*f.dst = kb << 10
			}
		}
	}
	return rss, peak, nil
}

// logTail is the end of the process's log, for error messages.
func (p *process) logTail() string {
	data, err := os.ReadFile(p.logPath)
	if err != nil {
		return "(no log: " + err.Error() + ")"
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > 30 {
		lines = lines[len(lines)-30:]
	}
	return "--- " + p.logPath + " (tail) ---\n" + strings.Join(lines, "\n")
}

// freeAddr is a loopback address free a moment ago, for a child to listen
// on: the benchmark must know it before the child starts, to time /readyz
// from the start.
func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("scalebench: free port: %w", err)
	}
	defer l.Close()
	return l.Addr().String(), nil
}
