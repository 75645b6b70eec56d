package backfill

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"
)

// Progress is told what a backfill does.
type Progress interface {
	Start(targets int)
	Phase(target, phase string, events int)
	Done(target string, events int)
	Wait(w Wait)
	Finish()
}

// NewProgress is a progress bar (targets done, rate, ETA, events and the
// current rate-limit wait) when out is a terminal, else log lines.
func NewProgress(out io.Writer, label string, logger *slog.Logger) Progress {
	if f, ok := out.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		return &barProgress{out: out, label: label}
	}
	return &logProgress{logger: logger, label: label}
}

type barProgress struct {
	out    io.Writer
	label  string
	mu     sync.Mutex
	bar    *progressbar.ProgressBar
	events int
	wait   string
}

func (p *barProgress) Start(targets int) {
	p.bar = progressbar.NewOptions(targets, progressbar.OptionSetWriter(p.out),
		progressbar.OptionSetDescription(p.label), progressbar.OptionShowCount(), progressbar.OptionShowIts(),
		progressbar.OptionSetItsString("targets"), progressbar.OptionSetPredictTime(true),
		progressbar.OptionThrottle(200*time.Millisecond), progressbar.OptionFullWidth())
}

func (p *barProgress) describe() {
	d := fmt.Sprintf("%s: %d events", p.label, p.events)
	if p.wait != "" {
		d += " — " + p.wait
	}
	p.bar.Describe(d)
}

func (p *barProgress) Phase(_, _ string, events int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.events += events
	p.wait = ""
	p.describe()
}

func (p *barProgress) Done(string, int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	_ = p.bar.Add(1)
}

func (p *barProgress) Wait(w Wait) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.wait = w.String()
	p.describe()
}

func (p *barProgress) Finish() {
	p.mu.Lock()
	defer p.mu.Unlock()
	_ = p.bar.Finish()
	fmt.Fprintln(p.out)
}

// logProgress writes a log line per phase and per wait.
type logProgress struct {
	logger *slog.Logger
	label  string
	mu     sync.Mutex
	total  int
	done   int
	events int
	start  time.Time
}

func (p *logProgress) Start(targets int) {
	p.total, p.start = targets, time.Now()
	p.logger.Info(p.label+": starting", "targets", targets)
}

func (p *logProgress) Phase(target, phase string, events int) {
	p.mu.Lock()
	p.events += events
	p.mu.Unlock()
	p.logger.Info(p.label+": fetched", "target", target, "phase", phase, "events", events)
}

func (p *logProgress) Done(target string, events int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.done++
	elapsed := time.Since(p.start)
	rate := float64(p.done) / max(elapsed.Seconds(), 1e-3)
	eta := time.Duration(float64(p.total-p.done)/rate) * time.Second
	p.logger.Info(p.label+": target done", "target", target, "done", p.done, "of", p.total,
		"events", p.events, "targets_per_s", fmt.Sprintf("%.2f", rate), "eta", eta.Round(time.Second))
}

func (p *logProgress) Wait(w Wait) {
	p.logger.Warn(p.label+": waiting for the API", "host", w.Host, "reason", w.Reason, "for", w.For.Round(time.Second), "until", w.Until.UTC().Format(time.RFC3339))
}

func (p *logProgress) Finish() {
	p.logger.Info(p.label+": finished", "targets", p.done, "events", p.events, "elapsed", time.Since(p.start).Round(time.Millisecond))
}
