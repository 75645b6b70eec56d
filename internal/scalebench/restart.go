package scalebench

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/doraflow/doraflow/internal/orgsim"
	"github.com/doraflow/doraflow/pkg/bus"
	"github.com/doraflow/doraflow/processor"
)

// restartRun is one start of a processor over the stored history.
type restartRun struct {
	Name, How string
	// Published: new events published right after the start, which the
	// process must fetch and process.
	Published int
	// From the process's start: /readyz first answered 200; the first batch
	// of events fetched from the consumers was committed (a checkpoint);
	// every worker was idle (everything published, and anything a killed
	// predecessor had in flight, processed).
	Ready, FirstBatch, CaughtUp time.Duration
	// NotReadyAfterReady counts /readyz answers other than 200 after the
	// first 200, until caught up: a readiness that came too early.
	NotReadyAfterReady int
	// FirstOwned: from the start to the first time the process owned
	// workers (its log).
	FirstOwned time.Duration
	// Peak is the process's VmHWM once caught up (or given up on).
	Peak int64
	// GaveUp says why the benchmark stopped waiting for the process to
	// catch up, if it did: it took longer than the scenario's limit, or its
	// memory grew past what the machine can spare.
	GaveUp string
	// NotRun: the scenario needs its predecessor's processor caught up,
	// and it was not.
	NotRun bool
	Log    logSummary
}

// restarts starts processors over the stored history one after the
// other, each after its predecessor ended one way or another, each with new
// events of org's next days:
//
//   - clean, right after the backfill: the history's processor was stopped
//     with SIGTERM once idle, its snapshot up to one snapshot interval of
//     full-speed processing behind its checkpoint;
//   - clean after live traffic: events one at a time for a while, then
//     SIGTERM (the snapshot is now at most an interval of live traffic
//     behind);
//   - SIGKILL during live traffic;
//   - SIGKILL in the middle of a burst of three days.
//
// A scenario whose processor did not catch up ends the series: the next
// needs it running.
func (run *runner) restarts(ctx context.Context, org *orgsim.Org) ([]restartRun, error) {
	oneDay := func() (int, error) { return publishCount(ctx, run, org, 1) }
	liveFor := 40 * time.Second
	if run.o.Size.Days < 365 {
		liveFor = 3 * time.Second
	}
	const perSecond = 5
	// live publishes the start of a new day one event at a time and returns
	// the rest of it, to publish after the restart.
	live := func() (string, func() (int, error), error) {
		events := org.Day()
		n := min(len(events), int(liveFor.Seconds())*perSecond)
		if err := trickle(ctx, run.js, events[:n], partitions, perSecond); err != nil {
			return "", nil, err
		}
		rest := events[n:]
		how := fmt.Sprintf("%d events published one at a time at %d/s for %s", n, perSecond, liveFor)
		return how, func() (int, error) {
			msgs, err := eventMessages(rest, partitions)
			if err != nil {
				return 0, err
			}
			for len(msgs) > 0 {
				c := msgs[:min(publishChunk, len(msgs))]
				msgs = msgs[len(c):]
				if err := bus.PublishAll(ctx, run.js, c); err != nil {
					return 0, fmt.Errorf("scalebench: publish: %w", err)
				}
			}
			return len(rest), nil
		}, nil
	}
	scenarios := []struct {
		name string
		// end ends the running processor (none for the first) and says
		// how; publish is what is published right after the new start.
		end func(proc *process) (how string, publish func() (int, error), err error)
	}{
		{"clean after the backfill", func(*process) (string, func() (int, error), error) {
			return "the history's processor stopped with SIGTERM once idle; one more day published right after the new process starts", oneDay, nil
		}},
		{"clean after live traffic", func(proc *process) (string, func() (int, error), error) {
			how, rest, err := live()
			if err != nil {
				return "", nil, err
			}
			if err := waitIdle(ctx, run.js, partitions, proc); err != nil {
				return "", nil, err
			}
			if err := proc.stop(time.Minute); err != nil {
				return "", nil, err
			}
			return how + "; SIGTERM once processed; the day's other events published right after the new process starts", rest, nil
		}},
		{"SIGKILL during live traffic", func(proc *process) (string, func() (int, error), error) {
			how, rest, err := live()
			if err != nil {
				return "", nil, err
			}
			proc.kill()
			return how + "; SIGKILL right after the last; the day's other events published right after the new process starts", rest, nil
		}},
		{"SIGKILL mid-burst", func(proc *process) (string, func() (int, error), error) {
			stream, err := run.js.Stream(ctx, bus.EventStream)
			if err != nil {
				return "", nil, fmt.Errorf("scalebench: %w", err)
			}
			info, err := stream.Info(ctx)
			if err != nil {
				return "", nil, fmt.Errorf("scalebench: %w", err)
			}
			from := info.State.LastSeq
			burst, err := publishDays(ctx, run.js, org, 3, partitions)
			if err != nil {
				return "", nil, err
			}
			to := burst[len(burst)-1].LastSeq
			floor, err := waitAckFloor(ctx, run, proc, from+(to-from)/2)
			if err != nil {
				return "", nil, err
			}
			proc.kill()
			return fmt.Sprintf("3 days (%d events) published at full speed; SIGKILL once every worker had acknowledged at least half (all past sequence %d, of %d–%d); one more day published right after the new process starts",
				to-from, floor, from+1, to), oneDay, nil
		}},
	}
	var out []restartRun
	var proc *process
	for i, sc := range scenarios {
		how, publish, err := sc.end(proc)
		if err != nil {
			return out, err
		}
		r, next, err := run.measureStart(ctx, sc.name, how, publish)
		if err != nil {
			return out, err
		}
		out = append(out, r)
		if proc = next; proc == nil {
			for _, skipped := range scenarios[i+1:] {
				out = append(out, restartRun{Name: skipped.name, NotRun: true})
			}
			return out, nil
		}
	}
	return out, proc.stop(time.Minute)
}

// measureStart starts a processor, calls publish right after, and times
// the start; the process is returned running, or nil if the benchmark gave
// up on it (r.GaveUp says why; it is killed).
func (run *runner) measureStart(ctx context.Context, name, how string, publish func() (int, error)) (restartRun, *process, error) {
	r := restartRun{Name: name, How: how}
	cw, err := watchCheckpoints(ctx, run.js)
	if err != nil {
		return r, nil, err
	}
	defer cw.close()
	proc, addr, err := run.startProcessor("", "")
	if err != nil {
		return r, nil, err
	}
	ok := false
	defer func() {
		if !ok {
			proc.kill()
		}
	}()
	published := make(chan publishedCount, 1)
	go func() {
		n, err := publish()
		published <- publishedCount{n, err}
	}()
	// The waits below end when the process caught up, or when the guard
	// gives up on it.
	wctx, giveUp := context.WithCancelCause(ctx)
	defer giveUp(nil)
	var guarded sync.WaitGroup
	guarded.Go(func() { guard(wctx, proc, run.o.Size.restartLimit(), run.memLimit, giveUp) })

	// /readyz from the start until caught up.
	pctx, stopPolling := context.WithCancel(ctx)
	var mu sync.Mutex
	var readyAt time.Time
	notReady := 0
	var polled sync.WaitGroup
	polled.Go(func() {
		for pctx.Err() == nil {
			code := readyz(pctx, addr)
			mu.Lock()
			switch {
			case code == http.StatusOK && readyAt.IsZero():
				readyAt = time.Now()
			case code != http.StatusOK && !readyAt.IsZero() && pctx.Err() == nil:
				notReady++
			}
			mu.Unlock()
			select {
			case <-pctx.Done():
			case <-time.After(20 * time.Millisecond):
			}
		}
	})
	stop := func() { stopPolling(); polled.Wait() }

	err = run.waitCaughtUp(wctx, proc, cw, published, &r)
	stop()
	if cause := context.Cause(wctx); err != nil && errors.Is(cause, errGaveUp) {
		r.GaveUp, err = cause.Error(), nil
	}
	if err != nil {
		return r, nil, fmt.Errorf("scalebench: %s: %w", name, err)
	}
	if !readyAt.IsZero() {
		r.Ready = readyAt.Sub(proc.started)
	}
	r.NotReadyAfterReady = notReady
	if _, r.Peak, err = proc.memory(); err != nil {
		return r, nil, err
	}
	giveUp(nil)
	guarded.Wait()
	lines, err := readLog(run.log, proc.started)
	if err != nil {
		return r, nil, err
	}
	r.Log = summarise(lines)
	for _, a := range r.Log.Assignments {
		if a.Owned != "[]" {
			r.FirstOwned = a.At.Sub(proc.started)
			break
		}
	}
	if r.GaveUp != "" {
		return r, nil, nil // killed by the deferred func
	}
	if readyAt.IsZero() {
		return r, nil, fmt.Errorf("scalebench: %s: /readyz never answered 200", name)
	}
	ok = true
	return r, proc, nil
}

// waitCaughtUp waits for the process's first batch (a checkpoint written
// after its start), for the publishing, then until every worker is idle.
func (run *runner) waitCaughtUp(ctx context.Context, proc *process, cw *checkpointWatch, published <-chan publishedCount, r *restartRun) error {
	for r.FirstBatch == 0 {
		for _, c := range cw.checkpoints() {
			if c.At.After(proc.started) {
				r.FirstBatch = c.At.Sub(proc.started)
				break
			}
		}
		if proc.exited() {
			return fmt.Errorf("the processor exited: %v\n%s", proc.err, proc.logTail())
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
	select {
	case p := <-published:
		if p.err != nil {
			return p.err
		}
		r.Published = p.n
	case <-ctx.Done():
		return ctx.Err()
	}
	if err := waitIdle(ctx, run.js, partitions, proc); err != nil {
		return err
	}
	r.CaughtUp = time.Since(proc.started)
	return nil
}

// publishedCount is what a scenario's publishing did.
type publishedCount struct {
	n   int
	err error
}

// errGaveUp marks the guard's reasons.
var errGaveUp = errors.New("gave up")

// guard gives up on proc (cancels with a cause wrapping errGaveUp) once it
// has run for longer than limit, or once its memory passes memLimit; it
// returns when ctx ends.
func guard(ctx context.Context, proc *process, limit time.Duration, memLimit int64, giveUp context.CancelCauseFunc) {
	deadline := time.NewTimer(limit)
	defer deadline.Stop()
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-deadline.C:
			giveUp(fmt.Errorf("%w: not caught up %s after the start", errGaveUp, limit))
			return
		case <-tick.C:
			if rss, _, err := proc.memory(); err == nil && rss > memLimit {
				giveUp(fmt.Errorf("%w: resident memory %s, past the %s the benchmark lets a processor take on this machine", errGaveUp, mib(rss), mib(memLimit)))
				return
			}
		}
	}
}

// publishCount publishes org's next n days and returns how many events.
func publishCount(ctx context.Context, run *runner, org *orgsim.Org, n int) (int, error) {
	days, err := publishDays(ctx, run.js, org, n, partitions)
	total := 0
	for _, d := range days {
		total += d.Events
	}
	return total, err
}

// waitAckFloor waits until every worker has acknowledged past seq and
// returns the lowest of their floors then.
func waitAckFloor(ctx context.Context, run *runner, proc *process, seq uint64) (uint64, error) {
	for {
		lowest := uint64(0)
		for i, w := range processor.Workers(partitions) {
			f, err := ackFloor(ctx, run.js, w)
			if err != nil {
				return 0, err
			}
			if i == 0 || f < lowest {
				lowest = f
			}
		}
		if lowest >= seq {
			return lowest, nil
		}
		if proc.exited() {
			return 0, fmt.Errorf("scalebench: the processor exited: %v\n%s", proc.err, proc.logTail())
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
}
