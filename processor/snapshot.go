package processor

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/doraflow/doraflow/pkg/bus"
	"github.com/doraflow/doraflow/processor/correlate"
)

// Snapshots live in the object store doraflow_state: for a partition's
// repository stage, one object per repository ("p3/r/<hash>", saved again
// only when the repository changed) and a head ("p3") with the stream
// positions the state covers; for attribution, one object ("attribution").
// A head is written after the objects it covers, so a crash in between
// leaves objects newer than their head, which the restart's refold folds
// again harmlessly.

// snapshotHead is a worker's snapshot head.
type snapshotHead struct {
	Position position  `json:"position"`
	Taken    time.Time `json:"taken"`
	// State is the stage's state (attribution), or what the repository
	// stage holds besides its repositories.
	State []byte `json:"state"`
}

func repoObject(worker, repo string) string {
	sum := sha256.Sum256([]byte(repo))
	return worker + "/r/" + hex.EncodeToString(sum[:12])
}

func coldObject(worker string, month int32) string { return fmt.Sprintf("%s/cold/%d", worker, month) }

// dropCold deletes the cold parts of months retention keeps nothing of.
func (p *Processor) dropCold(ctx context.Context, obs jetstream.ObjectStore, before int32) error {
	if before == 0 || before == p.coldDropped {
		return nil
	}
	infos, err := obs.List(ctx)
	if errors.Is(err, jetstream.ErrNoObjectsFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("processor: list snapshot: %w", err)
	}
	prefix := p.stage.name() + "/cold/"
	for _, info := range infos {
		month, err := strconv.Atoi(strings.TrimPrefix(info.Name, prefix))
		if !strings.HasPrefix(info.Name, prefix) || err != nil || int32(month) >= before {
			continue
		}
		if err := obs.Delete(ctx, info.Name); err != nil && !errors.Is(err, jetstream.ErrObjectNotFound) {
			return fmt.Errorf("processor: delete snapshot %s: %w", info.Name, err)
		}
	}
	p.coldDropped = before
	return nil
}

func (p *Processor) objectStore(ctx context.Context) (jetstream.ObjectStore, error) {
	obs, err := p.js.ObjectStore(ctx, bus.StateBucket)
	if err != nil {
		return nil, fmt.Errorf("processor: state store: %w", err)
	}
	return obs, nil
}

// saveSnapshot stores what changed since the last snapshot, as of the last
// written batch.
func (p *Processor) saveSnapshot(ctx context.Context) error {
	start := time.Now()
	defer func() { p.snapshotDur = time.Since(start) }()
	obs, err := p.objectStore(ctx)
	if err != nil {
		return err
	}
	// The retention horizon moves a day at a time.
	today := time.Now().UTC().Truncate(24 * time.Hour)
	head := snapshotHead{Position: p.pos, Taken: time.Now().UTC()}
	head.Position.Version = p.lastVersion
	saved := 0
	switch s := p.stage.(type) {
	case *repoStage:
		s.repos.Compact(today)
		for _, repo := range s.repos.Changed() {
			data, ok, err := s.repos.EncodeRepo(repo)
			if err != nil {
				return err
			}
			if !ok {
				continue
			}
			if _, err := obs.PutBytes(ctx, repoObject(s.name(), repo), data); err != nil {
				return fmt.Errorf("processor: save %s: %w", repo, err)
			}
			saved += len(data)
		}
		for _, month := range s.repos.ColdChanged() {
			data, err := s.repos.EncodeCold(month)
			if err != nil {
				return err
			}
			if _, err := obs.PutBytes(ctx, coldObject(s.name(), month), data); err != nil {
				return fmt.Errorf("processor: save month %d: %w", month, err)
			}
			saved += len(data)
		}
		if err := p.dropCold(ctx, obs, s.repos.ColdBefore()); err != nil {
			return err
		}
		if head.State, err = s.repos.EncodeMeta(); err != nil {
			return err
		}
	case *attributionStage:
		s.attribution.Compact(today)
		if !s.attribution.Changed() && !p.snapshotAt.IsZero() {
			p.snapshotAt = time.Now()
			return nil
		}
		if head.State, err = s.attribution.Encode(); err != nil {
			return err
		}
	}
	data, err := json.Marshal(head)
	if err != nil {
		return fmt.Errorf("processor: encode snapshot: %w", err)
	}
	if _, err := obs.PutBytes(ctx, p.stage.name(), data); err != nil {
		return fmt.Errorf("processor: write snapshot: %w", err)
	}
	switch s := p.stage.(type) {
	case *repoStage:
		s.repos.Saved()
	case *attributionStage:
		s.attribution.Saved()
	}
	p.snapshotAt = time.Now()
	p.logger.Debug("state snapshot written", "position", p.pos, "bytes", saved+len(data))
	return nil
}

// loadSnapshot restores the worker's snapshot, if it has one, and returns
// the positions it covers.
func (p *Processor) loadSnapshot(ctx context.Context) (position, bool, error) {
	obs, err := p.objectStore(ctx)
	if err != nil {
		return position{}, false, err
	}
	data, err := obs.GetBytes(ctx, p.stage.name())
	if errors.Is(err, jetstream.ErrObjectNotFound) {
		return position{}, false, nil
	}
	if err != nil {
		return position{}, false, fmt.Errorf("processor: read snapshot: %w", err)
	}
	var head snapshotHead
	if err := json.Unmarshal(data, &head); err != nil {
		return position{}, false, fmt.Errorf("processor: decode snapshot: %w", err)
	}
	switch s := p.stage.(type) {
	case *repoStage:
		if err := s.repos.DecodeMeta(head.State); err != nil {
			return position{}, false, err
		}
		infos, err := obs.List(ctx)
		if err != nil && !errors.Is(err, jetstream.ErrNoObjectsFound) {
			return position{}, false, fmt.Errorf("processor: list snapshot: %w", err)
		}
		// Hot parts first: a repository's cold months add to it.
		for _, part := range []struct {
			prefix string
			decode func([]byte) error
		}{{s.name() + "/r/", s.repos.DecodeRepo}, {s.name() + "/cold/", s.repos.DecodeCold}} {
			for _, info := range infos {
				if !strings.HasPrefix(info.Name, part.prefix) {
					continue
				}
				if err := ctx.Err(); err != nil {
					return position{}, false, err
				}
				data, err := obs.GetBytes(ctx, info.Name)
				if err != nil {
					return position{}, false, fmt.Errorf("processor: read snapshot %s: %w", info.Name, err)
				}
				if err := part.decode(data); err != nil {
					return position{}, false, err
				}
			}
		}
		s.repos.Restored()
		s.repos.Saved() // what was just read is saved
	case *attributionStage:
		a, err := correlate.DecodeAttribution(p.opts.Correlate, head.State)
		if err != nil {
			return position{}, false, err
		}
		s.attribution = a
	}
	p.snapshotAt = time.Now()
	return head.Position, true, nil
}

// DeleteSnapshots drops every worker's stored state (replay re-derives it).
func DeleteSnapshots(ctx context.Context, js jetstream.JetStream) error {
	obs, err := js.ObjectStore(ctx, bus.StateBucket)
	if err != nil {
		return fmt.Errorf("processor: state store: %w", err)
	}
	infos, err := obs.List(ctx)
	if errors.Is(err, jetstream.ErrNoObjectsFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("processor: list snapshots: %w", err)
	}
	for _, info := range infos {
		if err := obs.Delete(ctx, info.Name); err != nil && !errors.Is(err, jetstream.ErrObjectNotFound) {
			return fmt.Errorf("processor: delete snapshot %s: %w", info.Name, err)
		}
	}
	return nil
}

// checkpoints

func (p *Processor) checkpoints(ctx context.Context) (jetstream.KeyValue, error) {
	kv, err := p.js.KeyValue(ctx, bus.CheckpointBucket)
	if err != nil {
		return nil, fmt.Errorf("processor: checkpoints: %w", err)
	}
	return kv, nil
}

// checkpoint is a worker's position as stored, with the run that wrote it:
// a retry whose first answer was lost knows its own write by it.
type checkpoint struct {
	position
	Owner string `json:"owner,omitempty"`
}

// ErrFenced: another worker has taken the partition over, so this one must
// write nothing more.
var ErrFenced = errors.New("processor: another worker took the partition over")

// saveCheckpoint records, before a batch's facts are written, how far the
// worker has folded, if the checkpoint is still the one this worker last
// wrote: a successor's first act is to write it (Rebuild), so from then on
// a predecessor still running (its lease lapsed while a write hung, say)
// fails here and writes nothing — whatever the clocks and timings say.
func (p *Processor) saveCheckpoint(ctx context.Context, pos position) error {
	kv, err := p.checkpoints(ctx)
	if err != nil {
		return err
	}
	data, err := json.Marshal(checkpoint{position: pos, Owner: p.runID})
	if err != nil {
		return err
	}
	key := p.stage.name()
	return p.retry(ctx, "checkpoint", func() error {
		var rev uint64
		var err error
		if p.checkpointRev == 0 {
			rev, err = kv.Create(ctx, key, data)
		} else {
			rev, err = kv.Update(ctx, key, data, p.checkpointRev)
		}
		if errors.Is(err, jetstream.ErrKeyRevisionMismatch) || errors.Is(err, jetstream.ErrKeyExists) {
			if entry, gerr := kv.Get(ctx, key); gerr == nil && bytes.Equal(entry.Value(), data) {
				p.checkpointRev = entry.Revision()
				return nil
			}
			return backoff.Permanent(fmt.Errorf("%w (%s)", ErrFenced, key))
		}
		if err != nil {
			return err
		}
		p.checkpointRev = rev
		return nil
	})
}

// loadCheckpoint is the worker's stored position and the revision it is at
// (0: none).
func (p *Processor) loadCheckpoint(ctx context.Context) (position, uint64, error) {
	kv, err := p.checkpoints(ctx)
	if err != nil {
		return position{}, 0, err
	}
	entry, err := kv.Get(ctx, p.stage.name())
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return position{}, 0, nil
	}
	if err != nil {
		return position{}, 0, fmt.Errorf("processor: read checkpoint: %w", err)
	}
	var cp checkpoint
	if err := json.Unmarshal(bytes.TrimSpace(entry.Value()), &cp); err != nil {
		return position{}, 0, fmt.Errorf("processor: decode checkpoint: %w", err)
	}
	return cp.position, entry.Revision(), nil
}

// DeleteCheckpoints drops every worker's checkpoint (replay).
func DeleteCheckpoints(ctx context.Context, js jetstream.JetStream) error {
	kv, err := js.KeyValue(ctx, bus.CheckpointBucket)
	if err != nil {
		return fmt.Errorf("processor: checkpoints: %w", err)
	}
	keys, err := kv.ListKeys(ctx)
	if err != nil {
		return fmt.Errorf("processor: checkpoints: %w", err)
	}
	for k := range keys.Keys() {
		if err := kv.Purge(ctx, k); err != nil {
			return fmt.Errorf("processor: purge checkpoint %s: %w", k, err)
		}
	}
	return nil
}
