package serve

import (
	"context"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/doraflow/doraflow/processor/correlate"
	"github.com/doraflow/doraflow/sinks/clickhouse"
)

// observedStore is the processor's store (all of it: the processor uses
// what else it can do, such as keeping the pipeline counts), counting as it writes what the
// facts say about their inputs: the changes whose commit is timestamped
// after their deployment (their lead time is clamped to 0), once per
// change, however often the fact is written again.
type observedStore struct {
	*clickhouse.Store
	committedAfter prometheus.Counter

	mu sync.Mutex
	// counted holds only the changes counted: the anomalies, not every
	// change.
	counted map[correlate.ChangeKey]bool
}

func newObservedStore(store *clickhouse.Store, committedAfter prometheus.Counter) *observedStore {
	return &observedStore{Store: store, committedAfter: committedAfter, counted: map[correlate.ChangeKey]bool{}}
}

func (s *observedStore) Write(ctx context.Context, f correlate.Facts, version uint64) error {
	if err := s.Store.Write(ctx, f, version); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range f.Changes {
		if !c.Live || !c.Fact.CommittedAt.After(c.Fact.DeployedAt) {
			continue
		}
		key := correlate.ChangeKey{Repo: c.Fact.Repo, SHA: c.Fact.SHA}
		if !s.counted[key] {
			s.counted[key] = true
			s.committedAfter.Inc()
		}
	}
	return nil
}
