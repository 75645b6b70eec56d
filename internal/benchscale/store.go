package benchscale

import (
	"context"

	"github.com/doraflow/doraflow/sinks/clickhouse"
)

// Write stores a chunk of batches, each at its own version, in one insert
// per table.
func Write(ctx context.Context, store *clickhouse.Store, batches []Batch) error {
	cb := make([]clickhouse.Batch, len(batches))
	for i, b := range batches {
		cb[i] = clickhouse.Batch{Facts: b.Facts, Version: b.Version}
	}
	return store.WriteBatches(ctx, cb)
}
