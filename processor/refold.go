package processor

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/doraflow/doraflow/pkg/bus"
)

// refold folds again, from the streams themselves, the messages after the
// snapshot's positions up to the checkpoint's: exactly what the worker had
// folded and written when it stopped, whatever its consumers' acknowledgements
// say. Messages after the checkpoint come through the consumers.
func (p *Processor) refold(ctx context.Context, from, to position) (int, error) {
	n := 0
	for _, s := range []struct {
		stream   string
		subjects []string
		from, to uint64
		fold     func(jetstream.Msg, []byte) error
	}{
		{bus.LinkStream, p.stage.linkSubjects(), from.Links, to.Links, p.foldLink},
		{bus.EventStream, p.stage.eventSubjects(), from.Events, to.Events, p.foldEvent},
	} {
		if s.to <= s.from {
			continue
		}
		folded, err := p.refoldStream(ctx, s.stream, s.subjects, s.from, s.to, s.fold)
		n += folded
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// errUnusable marks a message that will never fold.
type errUnusable struct{ error }

func (e errUnusable) Unwrap() error { return e.error }

func (p *Processor) refoldStream(ctx context.Context, stream string, subjects []string, from, to uint64, fold func(jetstream.Msg, []byte) error) (int, error) {
	st, err := p.js.Stream(ctx, stream)
	if err != nil {
		return 0, fmt.Errorf("processor: refold %s: %w", stream, err)
	}
	cons, err := st.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{FilterSubjects: subjects,
		DeliverPolicy: jetstream.DeliverByStartSequencePolicy, OptStartSeq: from + 1})
	if err != nil {
		return 0, fmt.Errorf("processor: refold %s: %w", stream, err)
	}
	n := 0
	progressed := time.Now()
	for {
		batch, err := cons.Fetch(500, jetstream.FetchMaxWait(100*time.Millisecond))
		if err != nil {
			return n, fmt.Errorf("processor: refold %s: %w", stream, err)
		}
		got := 0
		for m := range batch.Messages() {
			meta, err := m.Metadata()
			if err != nil {
				return n, fmt.Errorf("processor: refold %s: %w", stream, err)
			}
			if meta.Sequence.Stream > to {
				return n, nil
			}
			if err := ctx.Err(); err != nil {
				return n, err
			}
			got++
			data, err := bus.Data(ctx, p.js, m)
			if err == nil {
				if err = fold(m, data); err == nil {
					n++
				} else {
					err = errUnusable{err}
				}
			}
			var unusable errUnusable
			switch {
			case errors.As(err, &unusable) || errors.Is(err, bus.ErrPayloadMissing):
				// Never folded before either: the consumer dead-letters it.
				p.logger.Warn("refold skipped a message", "stream", stream, "seq", meta.Sequence.Stream, "err", err)
			case err != nil:
				return n, fmt.Errorf("processor: refold %s: %w", stream, err)
			}
			if meta.Sequence.Stream == to || meta.NumPending == 0 {
				return n, nil
			}
		}
		if err := batch.Error(); err != nil && got == 0 && ctx.Err() == nil {
			p.logger.Debug("refold fetch ended", "err", err)
		}
		if got > 0 {
			progressed = time.Now()
		} else if ctx.Err() != nil {
			return n, ctx.Err()
		} else if time.Since(progressed) > 5*time.Second {
			return n, nil // nothing more up to the checkpoint (trimmed, or dead-lettered)
		}
	}
}
