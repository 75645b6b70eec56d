package processor

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/doraflow/doraflow/pkg/bus"
	"github.com/doraflow/doraflow/processor/correlate"
)

// snapshot is what is stored: the state, and the last journal sequence it
// holds; a restart folds the journal after it.
type snapshot struct {
	JournalSeq uint64             `json:"journal_seq"`
	Taken      time.Time          `json:"taken"`
	State      correlate.Snapshot `json:"state"`
}

func (p *Processor) objectStore(ctx context.Context) (jetstream.ObjectStore, error) {
	return p.js.ObjectStore(ctx, bus.StateBucket)
}

// loadSnapshot returns the stored snapshot, or nil if there is none.
func (p *Processor) loadSnapshot(ctx context.Context) (*snapshot, error) {
	obs, err := p.objectStore(ctx)
	if err != nil {
		return nil, fmt.Errorf("processor: state store: %w", err)
	}
	r, err := obs.Get(ctx, p.opts.Consumer)
	if errors.Is(err, jetstream.ErrObjectNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("processor: read snapshot: %w", err)
	}
	defer r.Close()
	zr, err := gzip.NewReader(r)
	if err != nil {
		return nil, fmt.Errorf("processor: read snapshot: %w", err)
	}
	var snap snapshot
	if err := json.NewDecoder(zr).Decode(&snap); err != nil {
		return nil, fmt.Errorf("processor: decode snapshot: %w", err)
	}
	return &snap, nil
}

// saveSnapshot stores the state and trims the journal it covers.
func (p *Processor) saveSnapshot(ctx context.Context) error {
	obs, err := p.objectStore(ctx)
	if err != nil {
		return fmt.Errorf("processor: state store: %w", err)
	}
	if p.opts.Retention.Keep > 0 {
		// The horizon moves a day at a time: compaction rebuilds the state.
		p.state.Compact(time.Now().UTC().Truncate(24*time.Hour), p.opts.Retention)
	}
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	snap := snapshot{JournalSeq: p.journaled, Taken: time.Now().UTC(), State: p.state.Snapshot()}
	if err := json.NewEncoder(zw).Encode(snap); err != nil {
		return fmt.Errorf("processor: encode snapshot: %w", err)
	}
	if err := zw.Close(); err != nil {
		return fmt.Errorf("processor: encode snapshot: %w", err)
	}
	if _, err := obs.Put(ctx, jetstream.ObjectMeta{Name: p.opts.Consumer}, io.Reader(&buf)); err != nil {
		return fmt.Errorf("processor: write snapshot: %w", err)
	}
	p.snapshotAt = time.Now()
	p.logger.Debug("state snapshot written", "journal_seq", snap.JournalSeq, "events", len(snap.State.Events), "bytes", buf.Len())
	if snap.JournalSeq > 0 {
		return p.trimJournal(ctx, snap.JournalSeq)
	}
	return nil
}

// DeleteSnapshot drops the stored state of a consumer (replay re-derives it).
func DeleteSnapshot(ctx context.Context, js jetstream.JetStream, consumer string) error {
	obs, err := js.ObjectStore(ctx, bus.StateBucket)
	if err != nil {
		return fmt.Errorf("processor: state store: %w", err)
	}
	if err := obs.Delete(ctx, consumer); err != nil && !errors.Is(err, jetstream.ErrObjectNotFound) {
		return fmt.Errorf("processor: delete snapshot: %w", err)
	}
	return nil
}
