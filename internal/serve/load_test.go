package serve_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"runtime/metrics"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/doraflow/doraflow/internal/githubtest"
	"github.com/doraflow/doraflow/internal/testenv"
)

// liveHeap is the heap the last collection left live, after a collection.
func liveHeap() uint64 {
	runtime.GC()
	s := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// heapObjects is the heap in use by objects now, live or not yet collected.
func heapObjects() uint64 {
	s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// Ten times as many senders as the collector publishes deliveries at once,
// over loopback for a bounded time: the deliveries beyond the bound get 503
// at once, none gets a 2xx that was not stored, every 2xx'd one becomes a
// fact in ClickHouse, and the heap stays flat.
func TestBackpressureUnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("load test")
	}
	const (
		inflight = 4
		senders  = 10 * inflight
		perSend  = 60
		duration = 4 * time.Second
	)
	cfg := testConfig(t, testenv.ClickHouse(t))
	cfg.API.Token = "load-token"
	cfg.Collector.MaxInflightPublishes = inflight
	srv := start(t, cfg)
	defer stop(srv)
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: senders}}
	finished := time.Now().UTC().Add(-time.Hour).Format(time.RFC3339)
	deploy := func(id string) (int, error) {
		body := fmt.Sprintf(`{"id": %q, "repo": "acme/load-%d", "sha": %q, "environment": "production", "status": "success", "finished_at": %q}`,
			id, len(id)%7, githubtest.SHA(id), finished)
		req, err := http.NewRequest(http.MethodPost, "http://"+srv.Addr()+"/api/v1/deployments", strings.NewReader(body))
		if err != nil {
			return 0, err
		}
		req.Header.Set("Authorization", "Bearer "+cfg.API.Token)
		req.Header.Set("Content-Type", "application/json")
		resp, err := client.Do(req)
		if err != nil {
			return 0, err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode == http.StatusServiceUnavailable && resp.Header.Get("Retry-After") == "" {
			return 0, fmt.Errorf("503 without Retry-After")
		}
		return resp.StatusCode, nil
	}
	// Warm up (connections, pools, the processor's first batches), then
	// take the baseline.
	for i := range 50 {
		if code, err := deploy(fmt.Sprintf("warm-%d", i)); err != nil || code/100 != 2 {
			t.Fatalf("warm-up: %d %v", code, err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := srv.WaitIdle(ctx); err != nil {
		t.Fatal(err)
	}
	baseline := liveHeap()

	var (
		mu       sync.Mutex
		accepted = map[string]bool{}
		refused  atomic.Int64
		peak     atomic.Uint64
	)
	sampling, stopSampling := context.WithCancel(context.Background())
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for sampling.Err() == nil {
			if h := heapObjects(); h > peak.Load() {
				peak.Store(h)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()
	end := time.Now().Add(duration)
	var wg sync.WaitGroup
	for s := range senders {
		wg.Go(func() {
			for i := 0; i < perSend && time.Now().Before(end); i++ {
				id := fmt.Sprintf("load-%d-%d", s, i)
				code, err := deploy(id)
				switch {
				case err != nil:
					t.Error(err)
					return
				case code/100 == 2:
					mu.Lock()
					accepted[id] = true
					mu.Unlock()
				case code == http.StatusServiceUnavailable:
					refused.Add(1)
				default:
					t.Errorf("%s: %d", id, code)
				}
			}
		})
	}
	wg.Wait()
	stopSampling()
	<-sampled
	if err := srv.WaitIdle(ctx); err != nil {
		t.Fatal(err)
	}
	after := liveHeap()
	facts, err := srv.Store().Facts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	stored := map[string]bool{}
	for _, d := range facts.Deployments {
		stored[d.Fact.ID] = true
	}
	missing := 0
	for id := range accepted {
		if !stored[id] {
			missing++
			if missing <= 5 {
				t.Errorf("%s was answered 2xx but is not stored", id)
			}
		}
	}
	if missing > 0 {
		t.Errorf("%d of %d deliveries answered 2xx are not stored (stored ids look like %v)", missing, len(accepted), sample(stored))
	}
	t.Logf("%d senders, %d publishing at once: %d deliveries accepted and stored, %d answered 503; live heap %d MiB before, %d MiB after, peak heap in use %d MiB",
		senders, inflight, len(accepted), refused.Load(), baseline>>20, after>>20, peak.Load()>>20)
	// Generous bounds: what a leak or an unbounded queue would exceed by
	// far, not what a busy machine's collection timing decides.
	const bound = 64 << 20
	if after > baseline+bound {
		t.Errorf("live heap grew from %d to %d bytes over the load", baseline, after)
	}
	if p := peak.Load(); p > baseline+4*bound {
		t.Errorf("heap in use peaked at %d bytes, from a live heap of %d", p, baseline)
	}
}

func sample(m map[string]bool) []string {
	var out []string
	for k := range m {
		if len(out) == 3 {
			break
		}
		out = append(out, k)
	}
	return out
}
