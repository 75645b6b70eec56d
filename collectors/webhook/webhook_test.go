package webhook_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/doraflow/doraflow/collectors/webhook"
	"github.com/doraflow/doraflow/pkg/bus"
	"github.com/doraflow/doraflow/pkg/event"
	"github.com/doraflow/doraflow/pkg/telemetry"
)

// echo is a minimal source: every delivery is one incident.
type echo struct{}

func (echo) Name() string { return "echo" }
func (echo) Authenticate(h http.Header, body []byte) ([]byte, error) {
	if h.Get("X-Token") != "ok" {
		return nil, io.ErrUnexpectedEOF
	}
	return body, nil
}
func (echo) Identify(h http.Header, _ []byte) (string, string, error) {
	return "incident", h.Get("X-Id"), nil
}
func (echo) Parse(d webhook.Delivery) ([]event.Event, error) {
	return []event.Event{{ID: "echo:" + string(d.Body), Source: "echo", Type: event.TypeIncident, Service: "svc",
		OccurredAt: event.MinTime, Incident: &event.Incident{ID: "i", OpenedAt: event.MinTime}}}, nil
}

func TestPublishThenAnswer(t *testing.T) {
	ctx := context.Background()
	b, err := bus.Open(ctx, bus.Options{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	pub := webhook.PublisherFunc(func(ctx context.Context, msgs []*nats.Msg) error { return bus.PublishAll(ctx, b.JS, msgs) })
	h := webhook.NewHandler(echo{}, pub, webhook.Options{MaxBodyBytes: 1 << 10, PublishTimeout: time.Second, Partitions: 4},
		telemetry.New(), slog.New(slog.NewTextHandler(io.Discard, nil)))
	post := func(id, body string) *httptest.ResponseRecorder {
		r := httptest.NewRequest(http.MethodPost, "/", strings.NewReader(body))
		r.Header.Set("X-Token", "ok")
		r.Header.Set("X-Id", id)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w
	}
	msgs := func(stream string) uint64 {
		s, err := b.JS.Stream(ctx, stream)
		if err != nil {
			t.Fatal(err)
		}
		info, err := s.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return info.State.Msgs
	}

	if w := post("d1", `"a"`); w.Code != http.StatusAccepted {
		t.Fatalf("got %d %s", w.Code, w.Body)
	}
	if msgs(bus.RawStream) != 1 || msgs(bus.EventStream) != 1 {
		t.Fatal("answered 2xx before both messages were in the streams")
	}
	// A redelivery is answered 2xx and stored once.
	if w := post("d1", `"a"`); w.Code != http.StatusAccepted || msgs(bus.RawStream) != 1 || msgs(bus.EventStream) != 1 {
		t.Fatalf("redelivery: %d, raw %d, events %d", w.Code, msgs(bus.RawStream), msgs(bus.EventStream))
	}
	// With the event stream gone, nothing acknowledges the publish: 503 and
	// Retry-After, so the sender retries.
	if err := b.JS.DeleteStream(ctx, bus.EventStream); err != nil {
		t.Fatal(err)
	}
	w := post("d2", `"b"`)
	if w.Code != http.StatusServiceUnavailable || w.Header().Get("Retry-After") == "" {
		t.Fatalf("bus down: got %d %s", w.Code, w.Body)
	}
	if w := post("d3", `"`+strings.Repeat("x", 2000)+`"`); w.Code != http.StatusRequestEntityTooLarge {
		t.Fatalf("oversized: got %d", w.Code)
	}
}
