package serve_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/doraflow/doraflow/internal/serve"
	"github.com/doraflow/doraflow/internal/testenv"
)

// Two processors against one JetStream split the partitions and give the
// same facts as one; when one leaves, the other takes its partitions over.
func TestTwoProcessorsShareTheWork(t *testing.T) {
	ctx := context.Background()
	nats := externalNATS(t)
	cfg := testConfig(t, testenv.ClickHouse(t))
	cfg.NATSURL = nats.ClientURL()
	cfg.Processor.LeaseTTL = time.Second
	// A worker handed over mid-batch leaves its messages to its successor
	// after ack_wait: short here, as in the other fault tests.
	cfg.Processor.AckWait = time.Second
	logger := failureLog(t)
	collector, err := serve.Start(ctx, cfg, serve.RoleCollector, logger)
	if err != nil {
		t.Fatal(err)
	}
	defer stop(collector)
	first, err := serve.Start(ctx, cfg, serve.RoleProcessor, logger)
	if err != nil {
		t.Fatal(err)
	}
	second, err := serve.Start(ctx, cfg, serve.RoleProcessor, logger)
	if err != nil {
		t.Fatal(err)
	}
	defer stop(second)

	// Both get a share, and no worker runs twice (one per partition, and
	// the attribution worker).
	workers := cfg.Processor.Partitions + 1
	deadline := time.Now().Add(10 * time.Second)
	for {
		a, b := first.Processor().Owned(), second.Processor().Owned()
		if len(a) > 0 && len(b) > 0 && len(a)+len(b) == workers {
			if slices.ContainsFunc(a, func(p int) bool { return slices.Contains(b, p) }) {
				t.Fatalf("partitions owned twice: %v %v", a, b)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("partitions not shared: %v %v", a, b)
		}
		time.Sleep(20 * time.Millisecond)
	}

	deliveries := scenario()
	for _, d := range deliveries[:10] {
		post(t, collector, d)
	}
	settle(t, first, second)

	stop(first) // hands its partitions over
	for _, d := range deliveries[10:] {
		post(t, collector, d)
	}
	settle(t, second)
	if got := second.Processor().Owned(); len(got) != workers {
		t.Errorf("after the other left, the survivor owns %v", got)
	}
	assertReport(t, reportOf(t, second, cfg), expected())
}

// settle waits until every processor is idle, twice in a row.
func settle(t *testing.T, servers ...*serve.Server) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for calm := 0; calm < 2; {
		calm++
		for _, s := range servers {
			if err := s.WaitIdle(ctx); err != nil {
				t.Fatal(err)
			}
			if idle, _ := s.Processor().Idle(ctx); !idle {
				calm = 0
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
}
