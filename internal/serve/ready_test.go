package serve_test

import (
	"context"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/doraflow/doraflow/internal/serve"
	"github.com/doraflow/doraflow/internal/testenv"
	"github.com/doraflow/doraflow/pkg/bus"
)

// A processor is ready only once it runs every worker it is due, rebuilt:
// not while a processor that died still holds their leases, and once ready
// it stays so.
func TestNotReadyWhileWorkersAreHeldElsewhere(t *testing.T) {
	ctx := context.Background()
	nats := externalNATS(t)
	cfg := testConfig(t, testenv.ClickHouse(t))
	cfg.NATSURL = nats.ClientURL()
	cfg.Processor.LeaseTTL = 2 * time.Second
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Listen = ln.Addr().String()
	ln.Close()

	// A processor that takes every lease and dies without giving them back.
	ghost, kill := context.WithCancel(ctx)
	owned := make(chan []int, 16)
	if _, err := bus.Join(ghost, nats.JS, bus.MembershipOptions{Group: "processor", Partitions: cfg.Processor.Partitions + 1,
		TTL: cfg.Processor.LeaseTTL, Logger: quiet()}, func(o []int) { owned <- o }); err != nil {
		t.Fatal(err)
	}
	for o := range owned {
		if len(o) == cfg.Processor.Partitions+1 {
			break
		}
	}
	kill()
	died := time.Now()

	started := make(chan *serve.Server, 1)
	go func() {
		srv, err := serve.Start(ctx, cfg, serve.RoleProcessor, quiet())
		if err != nil {
			t.Error(err)
		}
		started <- srv
	}()
	ready := func() bool {
		resp, err := http.Get("http://" + cfg.Listen + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}
	var readyAt time.Time
	for deadline := time.Now().Add(30 * time.Second); readyAt.IsZero(); time.Sleep(20 * time.Millisecond) {
		if ready() {
			readyAt = time.Now()
		}
		if time.Now().After(deadline) {
			t.Fatal("never ready")
		}
	}
	if held := readyAt.Sub(died); held < cfg.Processor.LeaseTTL/2 {
		t.Errorf("ready %s after the dead processor's last renewal, while its leases (TTL %s) still held every worker", held, cfg.Processor.LeaseTTL)
	}
	for end := time.Now().Add(time.Second); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		if !ready() {
			t.Fatal("ready, then not ready again")
		}
	}
	srv := <-started
	if srv != nil {
		stop(srv)
	}
}
