package webhook_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/doraflow/doraflow/collectors/webhook"
	"github.com/doraflow/doraflow/pkg/telemetry"
)

// Beyond the bound of deliveries publishing at once, and right after
// JetStream refused one for its limits, a delivery is answered 503 with
// Retry-After at once, without reaching the bus.
func TestPressure(t *testing.T) {
	var calls atomic.Int32
	block := make(chan struct{})
	entered := make(chan struct{}, 1)
	var fail atomic.Pointer[error]
	pub := webhook.PublisherFunc(func(ctx context.Context, _ []*nats.Msg) error {
		calls.Add(1)
		if err := fail.Load(); err != nil {
			return *err
		}
		entered <- struct{}{}
		select {
		case <-block:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	})
	pressure := webhook.NewPressure(1)
	h := webhook.NewHandler(echo{}, pub, webhook.Options{MaxBodyBytes: 1 << 10, PublishTimeout: 10 * time.Second, Partitions: 1, Pressure: pressure},
		telemetry.New(), slog.New(slog.NewTextHandler(io.Discard, nil)))
	post := func(id string) *httptest.ResponseRecorder {
		r := httptest.NewRequest(http.MethodPost, "/", strings.NewReader(`"`+id+`"`))
		r.Header.Set("X-Token", "ok")
		r.Header.Set("X-Id", id)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w
	}
	first := make(chan *httptest.ResponseRecorder)
	go func() { first <- post("a") }()
	<-entered
	if pressure.Inflight() != 1 {
		t.Fatalf("in flight: %d, want 1", pressure.Inflight())
	}
	w := post("b")
	if w.Code != http.StatusServiceUnavailable || w.Header().Get("Retry-After") == "" || !strings.Contains(w.Body.String(), "collector.max_inflight_publishes") {
		t.Errorf("beyond the bound: %d %v %s", w.Code, w.Header(), w.Body)
	}
	if calls.Load() != 1 {
		t.Errorf("the delivery beyond the bound reached the publisher")
	}
	close(block)
	if w := <-first; w.Code != http.StatusAccepted {
		t.Errorf("the delivery within the bound: %d %s", w.Code, w.Body)
	}

	limit := error(&jetstream.APIError{Code: 503, ErrorCode: 10023, Description: "insufficient resources"})
	fail.Store(&limit)
	if w := post("c"); w.Code != http.StatusServiceUnavailable || !strings.Contains(w.Body.String(), "at its limits") {
		t.Errorf("JetStream at its limits: %d %s", w.Code, w.Body)
	}
	if pressure.Limited() == nil {
		t.Error("Limited() is nil right after a refusal for limits")
	}
	before := calls.Load()
	if w := post("d"); w.Code != http.StatusServiceUnavailable || w.Header().Get("Retry-After") == "" {
		t.Errorf("right after a refusal for limits: %d %s", w.Code, w.Body)
	}
	if calls.Load() != before {
		t.Error("a delivery right after a refusal for limits reached the publisher")
	}
}
