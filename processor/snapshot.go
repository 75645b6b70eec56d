package processor

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/doraflow/doraflow/pkg/bus"
	"github.com/doraflow/doraflow/processor/correlate"
)

// Snapshots live in the object store doraflow_state: for a partition's
// repository stage, one object per repository (saved again only when the
// repository changed) and per cold month; for both stages a head with the
// stream positions the state covers (and, for attribution, the state). Every
// object is named by the run that wrote it ("p3/r/<hash>/<run>",
// "p3/head/<run>"), the head lists the objects it covers, and a head counts
// only once the worker's checkpoint names it (a checkpoint update at the
// worker's revision, so fenced like a batch). A worker taken over (its lease
// lapsed while it still ran) can then neither overwrite its successor's
// objects nor make its own head the one restored: a restore reads exactly
// the objects of the head the checkpoint names.

// snapshotHead is a worker's snapshot head.
type snapshotHead struct {
	Position position  `json:"position"`
	Taken    time.Time `json:"taken"`
	// State is the stage's state (attribution), or what the repository
	// stage holds besides its repositories.
	State []byte `json:"state"`
	// Objects holds the repository stage's parts: "r/<hash>" and
	// "cold/<month>" to the name of the object holding it.
	Objects map[string]string `json:"objects,omitempty"`
}

func repoPart(repo string) string {
	sum := sha256.Sum256([]byte(repo))
	return "r/" + hex.EncodeToString(sum[:12])
}

func coldPart(month int32) string { return fmt.Sprintf("cold/%d", month) }

// object is the name this run stores a part of its snapshot under.
func (p *Processor) object(part string) string { return p.stage.name() + "/" + part + "/" + p.runID }

func (p *Processor) objectStore(ctx context.Context) (jetstream.ObjectStore, error) {
	obs, err := p.js.ObjectStore(ctx, bus.StateBucket)
	if err != nil {
		return nil, fmt.Errorf("processor: state store: %w", err)
	}
	return obs, nil
}

// saveSnapshot stores what changed since the last snapshot, as of the last
// written batch, and commits it by naming its head in the checkpoint.
func (p *Processor) saveSnapshot(ctx context.Context) error {
	start := time.Now()
	defer func() { p.snapshotDur = time.Since(start) }()
	obs, err := p.objectStore(ctx)
	if err != nil {
		return err
	}
	// The retention horizon moves a day at a time.
	today := time.Now().UTC().Truncate(24 * time.Hour)
	covered, err := p.covered(ctx)
	if err != nil {
		return err
	}
	head := snapshotHead{Position: covered, Taken: time.Now().UTC()}
	head.Position.Version = p.lastVersion
	saved := 0
	var replaced []string // objects the new head no longer names
	switch s := p.stage.(type) {
	case *repoStage:
		s.repos.Compact(today)
		if len(s.repos.Changed()) == 0 && len(s.repos.ColdChanged()) == 0 && p.head != "" && head.Position == p.snapshotPos {
			p.snapshotAt = time.Now()
			return p.stillOwner(ctx)
		}
		head.Objects = maps.Clone(p.objects)
		if head.Objects == nil {
			head.Objects = map[string]string{}
		}
		put := func(part string, data []byte) error {
			name := p.object(part)
			if _, err := obs.PutBytes(ctx, name, data); err != nil {
				return fmt.Errorf("processor: save %s: %w", name, err)
			}
			if old, ok := head.Objects[part]; ok && old != name {
				replaced = append(replaced, old)
			}
			head.Objects[part] = name
			saved += len(data)
			return nil
		}
		for _, repo := range s.repos.Changed() {
			data, ok, err := s.repos.EncodeRepo(repo)
			if err != nil {
				return err
			}
			if !ok {
				continue
			}
			if err := put(repoPart(repo), data); err != nil {
				return err
			}
		}
		for _, month := range s.repos.ColdChanged() {
			data, err := s.repos.EncodeCold(month)
			if err != nil {
				return err
			}
			if err := put(coldPart(month), data); err != nil {
				return err
			}
		}
		// Months retention keeps nothing of leave the snapshot.
		if before := s.repos.ColdBefore(); before != 0 {
			for part, name := range head.Objects {
				if month, ok := strings.CutPrefix(part, "cold/"); ok {
					if m, err := strconv.Atoi(month); err == nil && int32(m) < before {
						delete(head.Objects, part)
						replaced = append(replaced, name)
					}
				}
			}
		}
		if head.State, err = s.repos.EncodeMeta(); err != nil {
			return err
		}
	case *attributionStage:
		s.attribution.Compact(today)
		if !s.attribution.Changed() && p.head != "" && head.Position == p.snapshotPos {
			p.snapshotAt = time.Now()
			return p.stillOwner(ctx)
		}
		if head.State, err = s.attribution.Encode(); err != nil {
			return err
		}
	}
	data, err := json.Marshal(head)
	if err != nil {
		return fmt.Errorf("processor: encode snapshot: %w", err)
	}
	name := p.object("head")
	if _, err := obs.PutBytes(ctx, name, data); err != nil {
		return fmt.Errorf("processor: write snapshot: %w", err)
	}
	if p.head != name {
		replaced = append(replaced, p.head)
	}
	previous, previousPos := p.head, p.snapshotPos
	p.head, p.snapshotPos = name, head.Position
	if err := p.saveCheckpoint(ctx, p.pos); err != nil {
		p.head, p.snapshotPos = previous, previousPos
		return err
	}
	p.objects = head.Objects
	switch s := p.stage.(type) {
	case *repoStage:
		s.repos.Saved()
	case *attributionStage:
		s.attribution.Saved()
	}
	p.snapshotAt = time.Now()
	// What no committed head names any more; a failed delete leaves an
	// object the next rebuild removes.
	for _, old := range replaced {
		if old != "" {
			_ = obs.Delete(ctx, old)
		}
	}
	if err := p.trimLinks(ctx); err != nil {
		p.logger.Warn("trimming the link stream failed; the next snapshot tries again", "err", err)
	}
	p.logger.Debug("state snapshot written", "position", p.pos, "bytes", saved+len(data))
	return nil
}

// trimLinks purges the links every worker's committed snapshot covers:
// no restore folds them again, and the consumers are past them. Until
// every worker has a snapshot, nothing goes.
func (p *Processor) trimLinks(ctx context.Context) error {
	kv, err := p.checkpoints(ctx)
	if err != nil {
		return err
	}
	var floor uint64
	for i, name := range Workers(p.opts.Partitions) {
		entry, err := kv.Get(ctx, name)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("processor: read checkpoint %s: %w", name, err)
		}
		var cp checkpoint
		if err := json.Unmarshal(bytes.TrimSpace(entry.Value()), &cp); err != nil {
			return fmt.Errorf("processor: decode checkpoint %s: %w", name, err)
		}
		if cp.Snapshot == nil {
			return nil
		}
		if i == 0 || cp.Snapshot.Links < floor {
			floor = cp.Snapshot.Links
		}
	}
	if floor == 0 {
		return nil
	}
	stream, err := p.js.Stream(ctx, bus.LinkStream)
	if err != nil {
		return fmt.Errorf("processor: link stream: %w", err)
	}
	if stream.CachedInfo().State.FirstSeq > floor {
		return nil
	}
	if err := stream.Purge(ctx, jetstream.WithPurgeSequence(floor+1)); err != nil {
		return fmt.Errorf("processor: trim link stream below %d: %w", floor+1, err)
	}
	return nil
}

// covered is the positions up to which the state has folded every message
// of its streams. Positions say the highest sequence folded, but a message
// can come after higher ones: a predecessor's unacknowledged messages are
// redelivered once their ack wait is over, after newer ones. A snapshot
// that covered up to the highest would, restored, never fold them. Every
// message up to a consumer's acknowledgement floor is folded (acknowledged
// only once folded, or folded again from the checkpoint a successor
// claims), so a snapshot covers up to the floors; a restore folds again
// from there.
//
// A link consumer with nothing pending or unacknowledged has folded every
// link of its subjects up to the stream's last sequence, read before it: its
// position moves there, so the link stream can be trimmed past what an idle
// worker never consumes. Events keep to the acknowledgement floor: with
// event positions moved the same way, the cluster test lost an event once
// in five runs, so a pending count of zero is not taken as proof there.
func (p *Processor) covered(ctx context.Context) (position, error) {
	pos := p.pos
	for i, stream := range []string{bus.EventStream, bus.LinkStream} {
		c := p.consumers[i]
		if c == nil {
			continue
		}
		s, err := p.js.Stream(ctx, stream)
		if err != nil {
			return pos, fmt.Errorf("processor: stream %s: %w", stream, err)
		}
		last := s.CachedInfo().State.LastSeq
		info, err := c.Info(ctx)
		if err != nil {
			return pos, fmt.Errorf("processor: consumer info: %w", err)
		}
		at := &pos.Events
		if i == 1 {
			at = &pos.Links
		}
		if i == 1 && info.NumPending == 0 && info.NumAckPending == 0 {
			*at = max(*at, last)
		} else {
			*at = min(*at, info.AckFloor.Stream)
		}
	}
	return pos, nil
}

// loadSnapshot restores the snapshot whose head the checkpoint names, if
// any, and returns the positions it covers.
func (p *Processor) loadSnapshot(ctx context.Context, headName string) (position, bool, error) {
	if headName == "" {
		return position{}, false, nil
	}
	obs, err := p.objectStore(ctx)
	if err != nil {
		return position{}, false, err
	}
	data, err := obs.GetBytes(ctx, headName)
	if errors.Is(err, jetstream.ErrObjectNotFound) {
		p.logger.Warn("the checkpoint names a snapshot that is gone; folding the stream from its start", "head", headName)
		p.head = ""
		return position{}, false, nil
	}
	if err != nil {
		return position{}, false, fmt.Errorf("processor: read snapshot %s: %w", headName, err)
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
		// Hot parts first: a repository's cold months add to it.
		parts := slices.Sorted(maps.Keys(head.Objects))
		for _, hot := range []bool{true, false} {
			for _, part := range parts {
				if strings.HasPrefix(part, "r/") != hot {
					continue
				}
				if err := ctx.Err(); err != nil {
					return position{}, false, err
				}
				data, err := obs.GetBytes(ctx, head.Objects[part])
				if err != nil {
					return position{}, false, fmt.Errorf("processor: read snapshot %s: %w", head.Objects[part], err)
				}
				decode := s.repos.DecodeRepo
				if !hot {
					decode = s.repos.DecodeCold
				}
				if err := decode(data); err != nil {
					return position{}, false, err
				}
			}
		}
		s.repos.Restored()
		s.repos.Saved() // what was just read is saved
		p.objects = head.Objects
	case *attributionStage:
		a, err := correlate.DecodeAttribution(p.opts.Correlate, head.State)
		if err != nil {
			return position{}, false, err
		}
		s.attribution = a
	}
	p.head, p.snapshotPos = headName, head.Position
	p.snapshotAt = time.Now()
	return head.Position, true, nil
}

// committedObjects are the names of the committed head and the objects it
// names, as restored.
func (p *Processor) committedObjects() map[string]bool {
	keep := map[string]bool{p.head: true}
	for _, name := range p.objects {
		keep[name] = true
	}
	return keep
}

// dropOrphans deletes this worker's objects that neither the committed head
// as restored (keep) names nor this run wrote: those of runs that stopped or
// were fenced out before committing, and deletes that failed. It runs once
// the checkpoint is this worker's, beside the work.
func (p *Processor) dropOrphans(ctx context.Context, keep map[string]bool) {
	obs, err := p.objectStore(ctx)
	if err != nil {
		return
	}
	infos, err := obs.List(ctx)
	if err != nil {
		if !errors.Is(err, jetstream.ErrNoObjectsFound) && ctx.Err() == nil {
			p.logger.Warn("listing snapshot objects failed; the next start deletes what no head names", "err", err)
		}
		return
	}
	prefix, ours := p.stage.name()+"/", "/"+p.runID
	for _, info := range infos {
		if !strings.HasPrefix(info.Name, prefix) || keep[info.Name] || strings.HasSuffix(info.Name, ours) {
			continue
		}
		if err := obs.Delete(ctx, info.Name); err != nil && !errors.Is(err, jetstream.ErrObjectNotFound) {
			if ctx.Err() == nil {
				p.logger.Warn("deleting a snapshot object no head names failed; the next start tries again", "object", info.Name, "err", err)
			}
			return
		}
	}
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
	// Head names the committed snapshot's head object, Snapshot the
	// positions it covers (what the link stream is trimmed by).
	Head     string    `json:"head,omitempty"`
	Snapshot *position `json:"snapshot,omitempty"`
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
	cp := checkpoint{position: pos, Owner: p.runID, Head: p.head}
	if p.head != "" {
		cp.Snapshot = &p.snapshotPos
	}
	data, err := json.Marshal(cp)
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

// stillOwner is ErrFenced once another worker has written the checkpoint:
// an idle worker learns it without a batch, and stops.
func (p *Processor) stillOwner(ctx context.Context) error {
	kv, err := p.checkpoints(ctx)
	if err != nil {
		return err
	}
	entry, err := kv.Get(ctx, p.stage.name())
	if err != nil {
		return fmt.Errorf("processor: read checkpoint: %w", err)
	}
	if entry.Revision() != p.checkpointRev {
		return fmt.Errorf("%w (%s)", ErrFenced, p.stage.name())
	}
	return nil
}

// loadCheckpoint is the worker's stored checkpoint and the revision it is
// at (0: none).
func (p *Processor) loadCheckpoint(ctx context.Context) (checkpoint, uint64, error) {
	kv, err := p.checkpoints(ctx)
	if err != nil {
		return checkpoint{}, 0, err
	}
	entry, err := kv.Get(ctx, p.stage.name())
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return checkpoint{}, 0, nil
	}
	if err != nil {
		return checkpoint{}, 0, fmt.Errorf("processor: read checkpoint: %w", err)
	}
	var cp checkpoint
	if err := json.Unmarshal(bytes.TrimSpace(entry.Value()), &cp); err != nil {
		return checkpoint{}, 0, fmt.Errorf("processor: decode checkpoint: %w", err)
	}
	return cp, entry.Revision(), nil
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
