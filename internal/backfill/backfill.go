// Package backfill fetches history from Git hosts and incident tools
// through their APIs and publishes it as the same canonical events their
// webhooks produce, with the same ids: a fact reported both ways counts
// once. Each vendor file turns its API into Targets (a repository, a
// project, an incident tool account) made of Phases; Run fetches targets
// concurrently, publishes each target's events oldest first, and records a
// checkpoint on the bus per target, so that an interrupted backfill
// resumes without fetching again what it finished.
package backfill

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/doraflow/doraflow/pkg/event"
)

// Config is what every backfill shares.
type Config struct {
	// Since and Until bound the history fetched: [Since, Until).
	Since, Until time.Time
	// Keep is the processor's retention (processor.retention.keep): facts
	// older than Now-Keep are frozen, so events about them would be
	// accepted and produce nothing.
	Keep time.Duration
	// Now is the time the retention is measured from.
	Now time.Time
	// Concurrency is how many targets are fetched at once.
	Concurrency int
}

// DefaultConcurrency is the number of targets fetched at once when Config
// names none: enough to hide the API's latency, few enough to stay far
// from GitHub's secondary limit on concurrent requests (100).
const DefaultConcurrency = 8

// Validate explains every problem of the configuration at once.
func (c Config) Validate() error {
	var errs []error
	if c.Since.IsZero() {
		errs = append(errs, errors.New("backfill: --since is required (a duration back from now such as 90d, or an RFC 3339 time)"))
	}
	if !c.Until.After(c.Since) {
		errs = append(errs, fmt.Errorf("backfill: --since %s is not before the end of the window %s", c.Since.Format(time.RFC3339), c.Until.Format(time.RFC3339)))
	}
	if c.Concurrency < 1 {
		errs = append(errs, fmt.Errorf("backfill: --concurrency %d; must be at least 1", c.Concurrency))
	}
	if c.Keep > 0 && !c.Since.IsZero() && c.Since.Before(c.RetentionStart()) {
		errs = append(errs, fmt.Errorf("backfill: --since %s reaches %d days back, beyond processor.retention.keep (%s, %d days): the processor would accept that history and derive no fact from it; raise processor.retention.keep in the configuration file, or backfill from %s on",
			c.Since.Format(time.DateOnly), int(c.Now.Sub(c.Since).Hours()/24), c.Keep, int(c.Keep.Hours()/24), c.RetentionStart().Format(time.DateOnly)))
	}
	return errors.Join(errs...)
}

// RetentionStart is the oldest time the processor still derives facts for:
// as the processor computes it, from the start of today.
func (c Config) RetentionStart() time.Time {
	if c.Keep <= 0 {
		return time.Time{}
	}
	return c.Now.UTC().Truncate(24 * time.Hour).Add(-c.Keep)
}

// Window is the time range a target's phases fetch.
type Window struct {
	Since, Until time.Time
}

// Contains reports whether t is in [Since, Until).
func (w Window) Contains(t time.Time) bool { return !t.Before(w.Since) && t.Before(w.Until) }

// Target is one unit of history: a repository, a project, an account.
type Target struct {
	// Key names the target's checkpoint: source/name.
	Key string
	// Name is how progress names it.
	Name   string
	Phases []Phase
}

// Phase fetches one kind of history of a target and hands its events to
// emit.
type Phase struct {
	Name string
	Run  func(ctx context.Context, w Window, emit func(...event.Event)) error
}

// Sink is where the events go: the bus, or a listing (--dry-run).
type Sink interface {
	Publish(ctx context.Context, events []event.Event) error
}

// Result counts what Run did.
type Result struct {
	Targets int // targets fetched
	Resumed int // of which an interrupted run had started
	Skipped int // targets a finished checkpoint already covers
	Failed  int // targets that failed (the others go on; a rerun retries them)
	Events  int // events published
	// TooOld counts events older than the retention, left out.
	TooOld int
}

// Runner fetches targets and publishes their events.
type Runner struct {
	Config      Config
	Sink        Sink
	Checkpoints Checkpoints
	Progress    Progress
	Logger      *slog.Logger
	// Fresh ignores the checkpoints: every target is fetched again
	// (--restart), its events deduplicated by id as always.
	Fresh bool
}

// publishBatch is how many events go to the sink at once.
const publishBatch = 1000

// Run fetches every target, Concurrency at a time. A target that fails
// (a repository gone, an API error that outlasts the retries) is logged
// and left unfinished, and the others go on: a rerun retries it. Run
// returns every failure.
func (r *Runner) Run(ctx context.Context, targets []Target) (Result, error) {
	if err := r.Config.Validate(); err != nil {
		return Result{}, err
	}
	r.Progress.Start(len(targets))
	defer r.Progress.Finish()
	var (
		mu  sync.Mutex
		res Result
		wg  sync.WaitGroup
	)
	work := make(chan Target)
	var errs []error
	for range min(r.Config.Concurrency, max(len(targets), 1)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for t := range work {
				tr, err := r.target(ctx, t)
				mu.Lock()
				if err == nil {
					res.Targets += tr.Targets
				}
				res.Resumed += tr.Resumed
				res.Skipped += tr.Skipped
				res.Events += tr.Events
				res.TooOld += tr.TooOld
				if err != nil && ctx.Err() == nil {
					res.Failed++
					errs = append(errs, err)
					r.Logger.Error("target failed; the others go on, a rerun retries it", "target", t.Name, "err", err)
				}
				mu.Unlock()
				r.Progress.Done(t.Name, tr.Events)
			}
		}()
	}
feed:
	for _, t := range targets {
		select {
		case work <- t:
		case <-ctx.Done():
			break feed
		}
	}
	close(work)
	wg.Wait()
	if err := context.Cause(ctx); err != nil {
		return res, fmt.Errorf("backfill interrupted (run it again to resume): %w", err)
	}
	if len(errs) > 0 {
		return res, fmt.Errorf("%d of %d targets failed (run it again to retry them): %w", len(errs), len(targets), errors.Join(errs...))
	}
	return res, nil
}

// target fetches every phase of t, then publishes their events oldest
// first, and records t as done, unless its checkpoint says it is.
//
// The order matters: the processor keeps a repository's history whole only
// as far back as processor.retention.margin behind the latest event it
// saw of that repository, and settles what is older, so history must not
// arrive after newer history of the same repository. A webhook reports
// each fact as it happens, in that order; a backfill, which reads
// deployments, compares and pull requests in separate lists, has to sort.
// Hence a target is published whole at the end, and checkpointed whole: an
// interrupted backfill fetches again the targets it was in the middle of,
// not the ones it finished.
func (r *Runner) target(ctx context.Context, t Target) (Result, error) {
	var res Result
	w := Window{Since: r.Config.Since, Until: r.Config.Until}
	cp, found, err := r.Checkpoints.Load(ctx, t.Key)
	if err != nil {
		return res, err
	}
	found = found && !r.Fresh
	switch {
	case found && cp.Finished && !cp.Since.After(w.Since):
		r.Logger.Info("already backfilled; skipped", "target", t.Name, "since", cp.Since.Format(time.RFC3339), "until", cp.Until.Format(time.RFC3339))
		res.Skipped++
		return res, nil
	case found && !cp.Finished && !cp.Since.After(w.Since):
		// Resume the same window, so that the events published before
		// the interruption are the same ones (and dropped as duplicates).
		w = Window{Since: cp.Since, Until: cp.Until}
		res.Resumed++
		r.Logger.Info("resuming an interrupted target", "target", t.Name)
	default:
		cp = Checkpoint{Since: w.Since, Until: w.Until}
	}
	res.Targets++
	// Recorded before publishing: a run stopped while publishing resumes
	// this window.
	if err := r.save(ctx, t.Key, cp); err != nil {
		return res, err
	}
	oldest := r.Config.RetentionStart()
	var events []event.Event
	for _, ph := range t.Phases {
		n := len(events)
		emit := func(es ...event.Event) {
			for _, e := range es {
				if e.OccurredAt.Before(oldest) {
					res.TooOld++
					continue
				}
				events = append(events, e)
			}
		}
		if err := ph.Run(ctx, w, emit); err != nil {
			return res, fmt.Errorf("backfill %s: %s: %w", t.Name, ph.Name, err)
		}
		r.Progress.Phase(t.Name, ph.Name, len(events)-n)
	}
	slices.SortStableFunc(events, func(a, b event.Event) int { return a.OccurredAt.Compare(b.OccurredAt) })
	for start := 0; start < len(events); start += publishBatch {
		if err := r.Sink.Publish(ctx, events[start:min(start+publishBatch, len(events))]); err != nil {
			return res, fmt.Errorf("backfill %s: %w", t.Name, err)
		}
	}
	res.Events += len(events)
	cp.Finished, cp.Events = true, len(events)
	// Recorded even when the run is being interrupted (Ctrl-C): what was
	// acknowledged need not be fetched again.
	if err := r.save(ctx, t.Key, cp); err != nil {
		return res, err
	}
	return res, nil
}

// save records cp, also while ctx is being cancelled, within 10 s.
func (r *Runner) save(ctx context.Context, key string, cp Checkpoint) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	return r.Checkpoints.Save(ctx, key, cp)
}
