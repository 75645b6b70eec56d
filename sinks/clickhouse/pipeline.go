package clickhouse

import (
	"context"

	"github.com/doraflow/doraflow/pkg/telemetry"
)

// WritePipeline stores the processor's per-minute pipeline counts.
func (s *Store) WritePipeline(ctx context.Context, counts []telemetry.PipelineCount) error {
	return s.insert(ctx, "pipeline_minutes", "minute, source, outcome, events, lag_seconds_sum", len(counts), func(i int) []any {
		c := counts[i]
		return []any{c.Minute, c.Source, c.Outcome, c.Events, c.LagSecondsSum}
	})
}
