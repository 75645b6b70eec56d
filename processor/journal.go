package processor

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/doraflow/doraflow/pkg/bus"
	"github.com/doraflow/doraflow/pkg/event"
)

// JournalSubject is where a partition's processor records the events it has
// folded, once their facts are written and before it acknowledges them. A
// restart folds the snapshot and the journal after it: exactly the events
// processed, whatever the consumer's acknowledgements say (they can have
// holes after a crash), and never one that is still to be dead-lettered.
func JournalSubject(partition int) string { return fmt.Sprintf("doraflow.journal.%d", partition) }

// journalChunk bounds a journal message well under NATS's 1 MB payload limit.
const journalChunk = 256 << 10

// appendJournal records events and waits until JetStream has them.
func (p *Processor) appendJournal(ctx context.Context, events []event.Event) error {
	var msgs []*nats.Msg
	var chunk []json.RawMessage
	size := 0
	flush := func() error {
		if len(chunk) == 0 {
			return nil
		}
		data, err := json.Marshal(chunk)
		if err != nil {
			return err
		}
		m := nats.NewMsg(JournalSubject(p.opts.Partition))
		m.Data = data
		msgs = append(msgs, m)
		chunk, size = nil, 0
		return nil
	}
	for _, e := range events {
		data, err := json.Marshal(e)
		if err != nil {
			return fmt.Errorf("processor: journal %s: %w", e.ID, err)
		}
		if size+len(data) > journalChunk {
			if err := flush(); err != nil {
				return err
			}
		}
		chunk = append(chunk, data)
		size += len(data)
	}
	if err := flush(); err != nil {
		return err
	}
	for _, m := range msgs {
		ack, err := bus.Publish(ctx, p.js, m)
		if err != nil {
			return fmt.Errorf("processor: journal: %w", err)
		}
		p.journaled = ack.Sequence
	}
	return nil
}

// foldJournal folds the journal after the snapshot's position.
func (p *Processor) foldJournal(ctx context.Context) (int, error) {
	stream, err := p.js.Stream(ctx, bus.JournalStream)
	if err != nil {
		return 0, fmt.Errorf("processor: journal: %w", err)
	}
	cc := jetstream.OrderedConsumerConfig{FilterSubjects: []string{JournalSubject(p.opts.Partition)}}
	if p.journaled > 0 {
		cc.DeliverPolicy, cc.OptStartSeq = jetstream.DeliverByStartSequencePolicy, p.journaled+1
	}
	cons, err := stream.OrderedConsumer(ctx, cc)
	if err != nil {
		return 0, fmt.Errorf("processor: journal: %w", err)
	}
	info, err := cons.Info(ctx)
	if err != nil {
		return 0, fmt.Errorf("processor: journal: %w", err)
	}
	n, pending := 0, info.NumPending
	progressed := time.Now()
	for pending > 0 {
		batch, err := cons.Fetch(100, jetstream.FetchMaxWait(50*time.Millisecond))
		if err != nil {
			return n, fmt.Errorf("processor: journal: %w", err)
		}
		got := 0
		for m := range batch.Messages() {
			meta, err := m.Metadata()
			if err != nil {
				return n, fmt.Errorf("processor: journal: %w", err)
			}
			data, err := bus.Data(ctx, p.js, m)
			if err != nil {
				return n, fmt.Errorf("processor: journal message %d: %w", meta.Sequence.Stream, err)
			}
			var events []event.Event
			if err := json.Unmarshal(data, &events); err != nil {
				return n, fmt.Errorf("processor: journal message %d: %w", meta.Sequence.Stream, err)
			}
			for _, e := range events {
				if p.state.Apply(e) {
					n++
				}
			}
			p.journaled, pending = meta.Sequence.Stream, meta.NumPending
			got++
		}
		if got > 0 {
			progressed = time.Now()
		} else if time.Since(progressed) > 30*time.Second || ctx.Err() != nil {
			return n, fmt.Errorf("processor: journal stalled after sequence %d", p.journaled)
		}
	}
	return n, nil
}

// trimJournal drops the journal up to what the stored snapshot covers.
func (p *Processor) trimJournal(ctx context.Context, upTo uint64) error {
	stream, err := p.js.Stream(ctx, bus.JournalStream)
	if err != nil {
		return fmt.Errorf("processor: journal: %w", err)
	}
	if err := stream.Purge(ctx, jetstream.WithPurgeSubject(JournalSubject(p.opts.Partition)),
		jetstream.WithPurgeSequence(upTo+1)); err != nil {
		return fmt.Errorf("processor: trim journal: %w", err)
	}
	return nil
}

// ClearJournal drops a partition's whole journal (replay re-derives it).
func ClearJournal(ctx context.Context, js jetstream.JetStream, partition int) error {
	stream, err := js.Stream(ctx, bus.JournalStream)
	if err != nil {
		return fmt.Errorf("processor: journal: %w", err)
	}
	if err := stream.Purge(ctx, jetstream.WithPurgeSubject(JournalSubject(partition))); err != nil {
		return fmt.Errorf("processor: clear journal: %w", err)
	}
	return nil
}
