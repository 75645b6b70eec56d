package backfill

import (
	"context"
	"io"
	"log/slog"

	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/time/rate"
)

// Session is what one backfill command sets up: the Runner (sink,
// checkpoints, progress) and the Transport its API clients share.
type Session struct {
	Runner
	Transport *Transport
}

// SessionOptions say where a session publishes.
type SessionOptions struct {
	// JS is the bus; nil for a dry run, which lists the events on List
	// instead and records no checkpoint.
	JS         jetstream.JetStream
	Partitions int
	Replicas   int
	List       io.Writer
	// Progress is where progress goes (a bar when it is a terminal).
	Progress io.Writer
	// Label names the backfill in progress and in each event's
	// Doraflow-Delivery header (backfill:github, ...).
	Label string
	// MaxRate bounds the requests per second to the API, over all
	// targets; 0 does not.
	MaxRate float64
}

// DefaultMaxRate keeps a backfill under the per-minute limits of GitHub
// (900 requests), GitLab.com (2,000) and PagerDuty (960).
const DefaultMaxRate = 14

// NewSession sets up a session for cfg.
func NewSession(ctx context.Context, cfg Config, opts SessionOptions, logger *slog.Logger) (*Session, error) {
	progress := NewProgress(opts.Progress, opts.Label, logger)
	s := &Session{
		Runner:    Runner{Config: cfg, Progress: progress, Logger: logger},
		Transport: &Transport{OnWait: progress.Wait},
	}
	if opts.MaxRate > 0 {
		s.Transport.Pace = rate.NewLimiter(rate.Limit(opts.MaxRate), 1)
	}
	if opts.JS == nil {
		s.Sink, s.Checkpoints = &ListSink{Out: opts.List}, &MemCheckpoints{}
		return s, nil
	}
	cps, err := OpenCheckpoints(ctx, opts.JS, opts.Replicas)
	if err != nil {
		return nil, err
	}
	s.Sink = &BusSink{JS: opts.JS, Partitions: opts.Partitions, Delivery: opts.Label}
	s.Checkpoints = cps
	return s, nil
}
