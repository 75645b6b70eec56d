package processor

import (
	"context"
	"encoding/json"
	"errors"
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

// Manager runs the partitions this process owns. Processes running a
// Manager against one bus share the partitions through a membership group
// (leases in a key-value bucket): each partition is processed by one of them
// at a time, and a process that dies hands its partitions over within
// seconds. A Manager alone owns every partition.
type Manager struct {
	js      jetstream.JetStream
	store   Store
	opts    Options // a template: Partition and Consumer are set per worker
	metrics *telemetry.Metrics
	logger  *slog.Logger

	mu       sync.Mutex
	workers  map[int]*worker
	index    map[string]correlate.ProductionDeployment // every partition's, by index key
	indexVer uint64                                    // bumped on every change
	indexRev uint64                                    // last bucket revision seen
	ready    chan struct{}
	readyOne sync.Once
	owned    []int
}

type worker struct {
	proc   *Processor
	cancel context.CancelFunc
	done   chan struct{}
}

// NewManager returns a manager; Run starts it.
func NewManager(js jetstream.JetStream, store Store, opts Options, metrics *telemetry.Metrics, logger *slog.Logger) *Manager {
	opts.Partitions = max(opts.Partitions, 1)
	return &Manager{js: js, store: store, opts: opts, metrics: metrics, logger: logger.With("component", "processor"),
		workers: map[int]*worker{}, index: map[string]correlate.ProductionDeployment{}, ready: make(chan struct{})}
}

// Ready is closed once the partitions first assigned to this process are
// rebuilt and consuming.
func (m *Manager) Ready() <-chan struct{} { return m.ready }

// Run works until ctx is done, then hands its partitions back.
func (m *Manager) Run(ctx context.Context) error {
	if err := RefreshTeams(ctx, m.store, m.opts.Correlate); err != nil {
		return err
	}
	kv, err := m.js.KeyValue(ctx, bus.DeploymentIndexBucket)
	if err != nil {
		return fmt.Errorf("processor: deployment index: %w", err)
	}
	watcher, err := kv.WatchAll(ctx)
	if err != nil {
		return fmt.Errorf("processor: watch deployment index: %w", err)
	}
	defer watcher.Stop()
	// The index as it is now, before any partition starts.
	for entry := range watcher.Updates() {
		if entry == nil {
			break
		}
		m.applyIndex(entry)
	}
	go func() {
		for entry := range watcher.Updates() {
			if entry != nil {
				m.applyIndex(entry)
				m.offerIndex()
			}
		}
	}()
	membership, err := bus.Join(ctx, m.js, bus.MembershipOptions{Group: "processor", Partitions: m.opts.Partitions,
		TTL: m.opts.LeaseTTL, Logger: m.logger},
		func(owned []int) { m.assign(ctx, owned) })
	if err != nil {
		return fmt.Errorf("processor: join: %w", err)
	}
	<-ctx.Done()
	leaveCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if err := membership.Leave(leaveCtx); err != nil {
		m.logger.Warn("leaving the processor group", "err", err)
	}
	m.assign(ctx, nil)
	return nil
}

func (m *Manager) applyIndex(entry jetstream.KeyValueEntry) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.indexRev = max(m.indexRev, entry.Revision())
	if entry.Operation() != jetstream.KeyValuePut {
		delete(m.index, entry.Key())
		m.indexVer++
		return
	}
	var d correlate.ProductionDeployment
	if err := json.Unmarshal(entry.Value(), &d); err != nil {
		m.logger.Warn("bad entry in the deployment index", "key", entry.Key(), "err", err)
		return
	}
	m.index[entry.Key()] = d
	m.indexVer++
}

// offerIndex hands the current index to every running worker.
func (m *Manager) offerIndex() {
	m.mu.Lock()
	defer m.mu.Unlock()
	deps := make([]correlate.ProductionDeployment, 0, len(m.index))
	for _, d := range m.index {
		deps = append(deps, d)
	}
	for _, w := range m.workers {
		w.proc.SetForeign(deps, m.indexVer)
	}
}

// assign stops the workers of partitions no longer owned (before the
// membership releases them) and starts those newly owned.
func (m *Manager) assign(ctx context.Context, owned []int) {
	m.mu.Lock()
	var stopping []*worker
	for p, w := range m.workers {
		if !slices.Contains(owned, p) {
			w.cancel()
			stopping = append(stopping, w)
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
	m.offerIndex()
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
	m.logger.Info("partitions assigned", "owned", owned)
}

// start runs a partition's processor, starting it afresh after a failure
// for as long as the partition is owned.
func (m *Manager) start(ctx context.Context, partition int) *worker {
	wctx, cancel := context.WithCancel(ctx)
	opts := m.opts
	opts.Partition, opts.Consumer = partition, ""
	w := &worker{proc: New(m.js, m.store, opts, m.metrics, m.logger), cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(w.done)
		for proc := w.proc; ; {
			err := proc.Run(wctx)
			if wctx.Err() != nil {
				return
			}
			m.metrics.Errors.WithLabelValues("processor", "partition").Inc()
			m.logger.Error("partition stopped; restarting", "partition", partition, "err", err)
			sleep(wctx, 2*time.Second)
			proc = New(m.js, m.store, opts, m.metrics, m.logger)
			m.mu.Lock()
			w.proc = proc
			m.mu.Unlock()
			m.offerIndex()
		}
	}()
	return w
}

// Owned are the partitions this process works on now.
func (m *Manager) Owned() []int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.owned)
}

// Idle reports whether every partition's events are processed and
// acknowledged, and this process's partitions have taken in the latest
// deployment index.
func (m *Manager) Idle(ctx context.Context) (bool, error) {
	for p := range m.opts.Partitions {
		cons, err := m.js.Consumer(ctx, bus.EventStream, ConsumerName(p))
		if errors.Is(err, jetstream.ErrConsumerNotFound) {
			return false, nil
		}
		if err != nil {
			return false, err
		}
		info, err := cons.Info(ctx)
		if err != nil {
			return false, err
		}
		if info.NumPending > 0 || info.NumAckPending > 0 {
			return false, nil
		}
	}
	kv, err := m.js.KeyValue(ctx, bus.DeploymentIndexBucket)
	if err != nil {
		return false, err
	}
	status, err := kv.Status(ctx)
	if err != nil {
		return false, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if bs, ok := status.(*jetstream.KeyValueBucketStatus); ok && bs.StreamInfo().State.LastSeq > m.indexRev {
		return false, nil
	}
	for _, w := range m.workers {
		if idle, err := w.proc.Idle(ctx); err != nil || !idle {
			return false, err
		}
	}
	return true, nil
}

// Rebuilt sums what the start-up rebuilds of this process's partitions did.
func (m *Manager) Rebuilt() RebuildStats {
	m.mu.Lock()
	defer m.mu.Unlock()
	var sum RebuildStats
	for _, w := range m.workers {
		r := w.proc.Rebuilt()
		sum.FromSnapshot += r.FromSnapshot
		sum.Events += r.Events
		sum.Stored += r.Stored
		sum.Written += r.Written
		sum.Took = max(sum.Took, r.Took)
	}
	return sum
}
