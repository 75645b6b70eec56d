package processor

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/doraflow/doraflow/pkg/bus"
	"github.com/doraflow/doraflow/pkg/telemetry"
	"github.com/doraflow/doraflow/processor/correlate"
)

// Manager runs the workers this process owns. Processes running a Manager
// against one bus share the workers — one per partition of repositories,
// and the attribution worker — through a membership group (leases in a
// key-value bucket): each worker runs in one of them at a time, and a
// process that dies hands its workers over within seconds. A Manager alone
// runs every worker.
type Manager struct {
	js      jetstream.JetStream
	store   Store
	opts    Options // a template: Partition is set per worker
	metrics *telemetry.Metrics
	logger  *slog.Logger

	mu       sync.Mutex
	workers  map[int]*worker
	ready    chan struct{}
	readyOne sync.Once
	owned    []int
	// membership, once joined: whether it owns all it is due.
	membership *bus.Membership
	// retired: the workers stopped, by partition, for Current.
	retired map[int]*Processor
}

type worker struct {
	proc   *Processor
	cancel context.CancelCauseFunc
	done   chan struct{}
}

// NewManager returns a manager; Run starts it.
func NewManager(js jetstream.JetStream, store Store, opts Options, metrics *telemetry.Metrics, logger *slog.Logger) *Manager {
	opts.Partitions = max(opts.Partitions, 1)
	return &Manager{js: js, store: store, opts: opts, metrics: metrics, logger: logger.With("component", "processor"),
		workers: map[int]*worker{}, ready: make(chan struct{}), retired: map[int]*Processor{}}
}

// Ready is closed once the workers first assigned to this process are
// rebuilt and consuming.
func (m *Manager) Ready() <-chan struct{} { return m.ready }

// Rebuilding reports whether this process cannot yet do its share: it has
// not joined, a worker it is due is still held by another process (a dead
// one's lease, say), or a worker it owns is still rebuilding its state.
// What /readyz answers.
func (m *Manager) Rebuilding() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.membership == nil || !m.membership.Settled() {
		return true
	}
	for _, w := range m.workers {
		select {
		case <-w.proc.Ready():
		default:
			return true
		}
	}
	return false
}

// Run works until ctx is done, then hands its workers back.
func (m *Manager) Run(ctx context.Context) error {
	if err := RefreshTeams(ctx, m.store, m.opts.Correlate); err != nil {
		return err
	}
	// Leases 0..Partitions-1 are the repository stages, Partitions the
	// attribution stage.
	membership, err := bus.Join(ctx, m.js, bus.MembershipOptions{Group: "processor", Partitions: m.opts.Partitions + 1,
		TTL: m.opts.LeaseTTL, Replicas: m.opts.Replicas, Logger: m.logger},
		func(owned []int) { m.assign(ctx, owned) })
	if err != nil {
		return fmt.Errorf("processor: join: %w", err)
	}
	m.mu.Lock()
	m.membership = membership
	m.mu.Unlock()
	<-ctx.Done()
	// Leaving waits for the workers' snapshots at shutdown before it
	// releases the leases.
	leaveCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownSnapshot+10*time.Second)
	defer cancel()
	if err := membership.Leave(leaveCtx); err != nil {
		m.logger.Warn("leaving the processor group", "err", err)
	}
	m.assign(ctx, nil)
	return nil
}

// assign stops the workers no longer owned (before the membership releases
// them) and starts those newly owned.
func (m *Manager) assign(ctx context.Context, owned []int) {
	m.mu.Lock()
	stopping := map[int]*worker{}
	for p, w := range m.workers {
		if !slices.Contains(owned, p) {
			w.cancel(ErrHandedOver)
			stopping[p] = w
			delete(m.workers, p)
		}
	}
	var started []*worker
	for _, p := range owned {
		if m.workers[p] == nil {
			w := m.start(ctx, p)
			m.workers[p] = w
			started = append(started, w)
		}
	}
	m.owned = slices.Clone(owned)
	m.mu.Unlock()
	for _, w := range stopping {
		<-w.done
	}
	m.mu.Lock()
	for p, w := range stopping {
		m.retired[p] = w.proc
	}
	m.mu.Unlock()
	go func() {
		for _, w := range started {
			select {
			case <-w.proc.Ready():
			case <-w.done:
			case <-ctx.Done():
				return
			}
		}
		m.readyOne.Do(func() { close(m.ready) })
	}()
	m.logger.Info("workers assigned", "owned", owned)
}

// start runs a worker, starting it afresh after a failure for as long as
// it is owned.
func (m *Manager) start(ctx context.Context, partition int) *worker {
	wctx, cancel := context.WithCancelCause(ctx)
	opts := m.opts
	opts.Partition = partition
	w := &worker{proc: New(m.js, m.store, opts, m.metrics, m.logger), cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(w.done)
		for proc := w.proc; ; {
			err := proc.Run(wctx)
			if wctx.Err() != nil {
				return
			}
			m.metrics.Errors.WithLabelValues("processor", "partition").Inc()
			m.logger.Error("worker stopped; restarting", "partition", partition, "err", err)
			sleep(wctx, 2*time.Second)
			proc = New(m.js, m.store, opts, m.metrics, m.logger)
			m.mu.Lock()
			w.proc = proc
			m.mu.Unlock()
		}
	}()
	return w
}

// Owned are the leases this process works on now (Partitions is the
// attribution worker).
func (m *Manager) Owned() []int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.owned)
}

// Idle reports whether every worker of the installation has processed and
// acknowledged everything on its streams.
func (m *Manager) Idle(ctx context.Context) (bool, error) { return Idle(ctx, m.js, m.opts.Partitions) }

// Idle reports whether every worker of an installation of partitions has
// processed and acknowledged everything on its streams, and nothing was
// published while it looked: the stages hand each other records, so one
// idle look is not enough.
func Idle(ctx context.Context, js jetstream.JetStream, partitions int) (bool, error) {
	before, err := lastSequences(ctx, js)
	if err != nil {
		return false, err
	}
	for _, name := range Workers(partitions) {
		if idle, err := consumersIdle(ctx, js, name); err != nil || !idle {
			return false, err
		}
	}
	after, err := lastSequences(ctx, js)
	if err != nil {
		return false, err
	}
	return before == after, nil
}

func lastSequences(ctx context.Context, js jetstream.JetStream) ([2]uint64, error) {
	var out [2]uint64
	for i, name := range []string{bus.EventStream, bus.LinkStream} {
		s, err := js.Stream(ctx, name)
		if err != nil {
			return out, err
		}
		info, err := s.Info(ctx)
		if err != nil {
			return out, err
		}
		out[i] = info.State.LastSeq
	}
	return out, nil
}

// Rebuilt sums what the start-up rebuilds of this process's workers did.
func (m *Manager) Rebuilt() RebuildStats {
	m.mu.Lock()
	defer m.mu.Unlock()
	var sum RebuildStats
	for _, w := range m.workers {
		r := w.proc.Rebuilt()
		sum.FromSnapshot = sum.FromSnapshot || r.FromSnapshot
		sum.Events += r.Events
		sum.Remembered += r.Remembered
		sum.Written += r.Written
		sum.Took = max(sum.Took, r.Took)
	}
	return sum
}

// Current is every fact the workers this manager ran last held, once Run
// has returned: what the store holds after their writes (replay retracts
// the rest).
func (m *Manager) Current() correlate.Facts {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out correlate.Facts
	for _, proc := range m.retired {
		f := proc.Current()
		out.Deployments = append(out.Deployments, f.Deployments...)
		out.Changes = append(out.Changes, f.Changes...)
		out.Incidents = append(out.Incidents, f.Incidents...)
	}
	return out
}
