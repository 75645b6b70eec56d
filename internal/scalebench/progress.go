package scalebench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/doraflow/doraflow/pkg/bus"
	"github.com/doraflow/doraflow/processor"
)

// sample is the state of the run at one moment.
type sample struct {
	At time.Time
	// AckFloor is, per worker (Workers order), the stream sequence up to
	// which its event consumer has every message acknowledged.
	AckFloor []uint64
	// Memory of the processor process and of the NATS process (bytes):
	// resident now, and the peak so far.
	ProcRSS, ProcPeak, NATSRSS, NATSPeak int64
	// StateBytes is what the snapshot object store holds.
	StateBytes uint64
}

// meanPartitionFloor is the mean of the partition workers' ack floors
// (Workers lists them first, attribution last).
func (s sample) meanPartitionFloor() float64 {
	sum := 0.0
	for _, f := range s.AckFloor[:partitions] {
		sum += float64(f)
	}
	return sum / partitions
}

// sampler records samples every interval until its context ends.
type sampler struct {
	js       jetstream.JetStream
	workers  []string
	proc     *process
	nats     *process
	interval time.Duration

	mu      sync.Mutex
	samples []sample
	err     error // the first failure to sample
}

func newSampler(js jetstream.JetStream, partitions int, proc, nats *process, interval time.Duration) *sampler {
	return &sampler{js: js, workers: processor.Workers(partitions), proc: proc, nats: nats, interval: interval}
}

func (s *sampler) run(ctx context.Context) {
	t := time.NewTicker(s.interval)
	defer t.Stop()
	for {
		smp, err := s.take(ctx)
		s.mu.Lock()
		if err == nil {
			s.samples = append(s.samples, smp)
		} else if s.err == nil && ctx.Err() == nil {
			s.err = err
		}
		s.mu.Unlock()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (s *sampler) take(ctx context.Context) (sample, error) {
	smp := sample{At: time.Now(), AckFloor: make([]uint64, len(s.workers))}
	for i, w := range s.workers {
		floor, err := ackFloor(ctx, s.js, w)
		if err != nil {
			return smp, err
		}
		smp.AckFloor[i] = floor
	}
	var err error
	if s.proc != nil && !s.proc.exited() {
		if smp.ProcRSS, smp.ProcPeak, err = s.proc.memory(); err != nil {
			return smp, err
		}
	}
	if smp.NATSRSS, smp.NATSPeak, err = s.nats.memory(); err != nil {
		return smp, err
	}
	obs, err := s.js.Stream(ctx, "OBJ_"+bus.StateBucket)
	if err != nil {
		return smp, fmt.Errorf("scalebench: state store: %w", err)
	}
	info, err := obs.Info(ctx)
	if err != nil {
		return smp, fmt.Errorf("scalebench: state store: %w", err)
	}
	smp.StateBytes = info.State.Bytes
	return smp, nil
}

// ackFloor is the stream sequence up to which a worker's event consumer has
// every message acknowledged; 0 before the worker first created it.
func ackFloor(ctx context.Context, js jetstream.JetStream, worker string) (uint64, error) {
	c, err := js.Consumer(ctx, bus.EventStream, processor.ConsumerName(worker))
	if errors.Is(err, jetstream.ErrConsumerNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("scalebench: consumer %s: %w", worker, err)
	}
	info, err := c.Info(ctx)
	if err != nil {
		return 0, fmt.Errorf("scalebench: consumer %s: %w", worker, err)
	}
	return info.AckFloor.Stream, nil
}

func (s *sampler) result() ([]sample, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.samples), s.err
}

// checkpoint is one checkpoint a worker wrote: one batch of it committed.
type checkpoint struct {
	At     time.Time
	Worker string
	Events uint64 // the event stream position the batch ends at
}

// checkpointWatch records every checkpoint written from now on.
type checkpointWatch struct {
	mu   sync.Mutex
	seen []checkpoint
	stop func() error
}

func watchCheckpoints(ctx context.Context, js jetstream.JetStream) (*checkpointWatch, error) {
	kv, err := js.KeyValue(ctx, bus.CheckpointBucket)
	if err != nil {
		return nil, fmt.Errorf("scalebench: checkpoints: %w", err)
	}
	w, err := kv.WatchAll(ctx, jetstream.UpdatesOnly())
	if err != nil {
		return nil, fmt.Errorf("scalebench: checkpoints: %w", err)
	}
	cw := &checkpointWatch{stop: w.Stop}
	go func() {
		for e := range w.Updates() {
			if e == nil || e.Operation() != jetstream.KeyValuePut {
				continue
			}
			// The processor's checkpoint record: {"events": …, "links": …}.
			var pos struct {
				Events uint64 `json:"events"`
			}
			if json.Unmarshal(e.Value(), &pos) != nil {
				continue
			}
			cw.mu.Lock()
			cw.seen = append(cw.seen, checkpoint{At: time.Now(), Worker: e.Key(), Events: pos.Events})
			cw.mu.Unlock()
		}
	}()
	return cw, nil
}

func (cw *checkpointWatch) checkpoints() []checkpoint {
	cw.mu.Lock()
	defer cw.mu.Unlock()
	return slices.Clone(cw.seen)
}

func (cw *checkpointWatch) close() { _ = cw.stop() }

// waitIdle waits until every worker has processed everything on its
// streams (processor.Idle), looking every interval.
func waitIdle(ctx context.Context, js jetstream.JetStream, partitions int, proc *process) error {
	for {
		idle, err := processor.Idle(ctx, js, partitions)
		if err == nil && idle {
			return nil
		}
		if proc.exited() {
			return fmt.Errorf("scalebench: the processor exited: %v\n%s", proc.err, proc.logTail())
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("scalebench: waiting for the processor: %w", ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}
