package processor

import (
	"context"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/doraflow/doraflow/pkg/bus"
	"github.com/doraflow/doraflow/pkg/telemetry"
)

// pipelineWriter is a store that keeps the pipeline counts
// (sinks/clickhouse's does); with any other store none are kept.
type pipelineWriter interface {
	WritePipeline(ctx context.Context, counts []telemetry.PipelineCount) error
}

// recordPipeline counts the events of an acknowledged batch by source,
// with their lag from the collector's receipt, and writes the counts so
// far: one small insert per batch beside the facts' four or five, and
// nothing left unwritten when the worker stops. The counts are operating
// figures: a failed write is logged and tried again with the next batch,
// never holding up the facts.
func (p *Processor) recordPipeline(ctx context.Context, acked []jetstream.Msg) {
	now := time.Now()
	for _, m := range acked {
		if !strings.HasPrefix(m.Subject(), "doraflow.events.") {
			continue
		}
		var lag time.Duration
		if at, err := time.Parse(time.RFC3339Nano, m.Headers().Get(bus.HeaderReceivedAt)); err == nil {
			lag = now.Sub(at)
		}
		p.pipeline.Add(m.Headers().Get(bus.HeaderSource), telemetry.OutcomeProcessed, now, lag)
	}
	w, ok := p.store.(pipelineWriter)
	if !ok || p.pipeline.Empty() {
		return
	}
	if err := w.WritePipeline(ctx, p.pipeline.Counts()); err != nil {
		p.metrics.Errors.WithLabelValues("processor", "pipeline").Inc()
		p.logger.Warn("writing the pipeline counts failed; they go with the next batch", "err", err)
		return
	}
	p.pipeline.Reset()
}
