package backfill

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/doraflow/doraflow/collectors/webhook"
	"github.com/doraflow/doraflow/pkg/bus"
	"github.com/doraflow/doraflow/pkg/event"
)

// BusSink publishes events on the event stream as the collectors do: on
// their partition's subject, with the event id as Nats-Msg-Id, so that
// JetStream drops an event a webhook (or an earlier run) already published
// within its duplicate window, and the processor, idempotent by event id,
// does beyond it. Each event is archived in the raw stream first (source
// "backfill"), so that a replay, which rebuilds the event stream from the
// archive, keeps it.
type BusSink struct {
	JS         jetstream.JetStream
	Partitions int
	// Delivery names the run in each message's Doraflow-Delivery header.
	Delivery string
}

// Publish publishes events and returns once JetStream acknowledged all.
func (s *BusSink) Publish(ctx context.Context, events []event.Event) error {
	now := time.Now().UTC()
	msgs := make([]*nats.Msg, 0, 2*len(events))
	for _, e := range events {
		if err := e.Validate(); err != nil {
			return fmt.Errorf("backfill: %w", err)
		}
		raw, err := webhook.ArchivedEventMessage(e, s.Delivery, now)
		if err != nil {
			return err
		}
		m, err := webhook.EventMessage(e, s.Delivery, now, s.Partitions)
		if err != nil {
			return err
		}
		msgs = append(msgs, raw, m)
	}
	return bus.PublishAll(ctx, s.JS, msgs)
}

// ListSink writes each event as one JSON line instead of publishing it:
// what --dry-run shows.
type ListSink struct {
	mu  sync.Mutex
	Out io.Writer
}

// Publish writes events to Out.
func (s *ListSink) Publish(_ context.Context, events []event.Event) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	enc := json.NewEncoder(s.Out)
	for _, e := range events {
		if err := e.Validate(); err != nil {
			return fmt.Errorf("backfill: %w", err)
		}
		if err := enc.Encode(e); err != nil {
			return fmt.Errorf("backfill: dry run: %w", err)
		}
	}
	return nil
}
