package scalebench

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/doraflow/doraflow/collectors/webhook"
	"github.com/doraflow/doraflow/internal/orgsim"
	"github.com/doraflow/doraflow/pkg/bus"
	"github.com/doraflow/doraflow/pkg/event"
)

// day is one published day of the organisation's history.
type day struct {
	Date   time.Time
	Events int
	// LastSeq is the event stream's last sequence once the day's events
	// were acknowledged: events are published in time order, so a worker
	// whose acknowledgements passed it has processed the day.
	LastSeq uint64
}

// publishChunk is how many messages one bus.PublishAll carries: a
// collector publishes a delivery's messages together and waits for every
// acknowledgement; the benchmark's "deliveries" are large, so that the
// publishing is not what limits it, and below the JetStream client's
// limit of outstanding asynchronous publishes (4,000 by default), which
// fails a publish that waits on it.
const publishChunk = 2000

type chunk struct {
	msgs []*nats.Msg
	day  *day // set on a day's last chunk
}

// publishDays draws the next n days of org and publishes every event as
// the collectors do (webhook.EventMessage, bus.PublishAll: on
// doraflow.events.<partition>.<type>, the event id as Nats-Msg-Id), in
// time order, and returns once JetStream has acknowledged them all.
func publishDays(ctx context.Context, js jetstream.JetStream, org *orgsim.Org, n, partitions int) ([]day, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	chunks := make(chan chunk, 4)
	genErr := make(chan error, 1)
	// Drawing and encoding run beside the publishing.
	go func() {
		defer close(chunks)
		for range n {
			events := org.Day()
			if len(events) == 0 {
				continue
			}
			d := &day{Date: events[0].OccurredAt.Truncate(24 * time.Hour), Events: len(events)}
			msgs, err := eventMessages(events, partitions)
			if err != nil {
				genErr <- err
				return
			}
			for len(msgs) > 0 {
				c := chunk{msgs: msgs[:min(publishChunk, len(msgs))]}
				msgs = msgs[len(c.msgs):]
				if len(msgs) == 0 {
					c.day = d
				}
				select {
				case chunks <- c:
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	stream, err := js.Stream(ctx, bus.EventStream)
	if err != nil {
		return nil, fmt.Errorf("scalebench: publish: %w", err)
	}
	var days []day
	for c := range chunks {
		if err := bus.PublishAll(ctx, js, c.msgs); err != nil {
			return nil, fmt.Errorf("scalebench: publish: %w", err)
		}
		if c.day == nil {
			continue
		}
		info, err := stream.Info(ctx)
		if err != nil {
			return nil, fmt.Errorf("scalebench: publish: %w", err)
		}
		c.day.LastSeq = info.State.LastSeq
		days = append(days, *c.day)
	}
	select {
	case err := <-genErr:
		return nil, err
	default:
	}
	return days, nil
}

// eventMessages are the bus messages of events, as a collector makes them.
func eventMessages(events []event.Event, partitions int) ([]*nats.Msg, error) {
	received := time.Now().UTC()
	msgs := make([]*nats.Msg, 0, len(events))
	for _, e := range events {
		m, err := webhook.EventMessage(e, "scalebench", received, partitions)
		if err != nil {
			return nil, err
		}
		msgs = append(msgs, m)
	}
	return msgs, nil
}

// trickle publishes events one at a time at about perSecond, as live
// webhooks arrive.
func trickle(ctx context.Context, js jetstream.JetStream, events []event.Event, partitions int, perSecond float64) error {
	msgs, err := eventMessages(events, partitions)
	if err != nil {
		return err
	}
	tick := time.NewTicker(time.Duration(float64(time.Second) / perSecond))
	defer tick.Stop()
	for _, m := range msgs {
		if err := bus.PublishAll(ctx, js, []*nats.Msg{m}); err != nil {
			return fmt.Errorf("scalebench: trickle: %w", err)
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}
