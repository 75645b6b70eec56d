package webhook_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
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
	if t := h.Get("X-Type"); t != "" {
		return t, h.Get("X-Id"), nil
	}
	return "incident", h.Get("X-Id"), nil
}

// Kind knows "incident", and names "broken" with a kind that cannot be a
// subject token (a bug the plumbing must catch).
func (echo) Kind(typ string) string {
	switch typ {
	case "incident":
		return typ
	case "broken":
		return "a.b>c"
	}
	return ""
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

// recorder is a Publisher that keeps what it is given.
type recorder struct {
	mu   sync.Mutex
	msgs []*nats.Msg
}

func (r *recorder) Publish(_ context.Context, msgs []*nats.Msg) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.msgs = append(r.msgs, msgs...)
	return nil
}

func (r *recorder) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.msgs)
}

// Only known event types reach a subject; unknown ones are answered as
// ignored and publish nothing; invalid ones are refused with the reason.
func TestEventTypes(t *testing.T) {
	cases := []struct {
		typ     string
		code    int
		reason  string
		subject string // of the raw delivery, when published
	}{
		{typ: "incident", code: http.StatusAccepted, subject: "doraflow.raw.echo.incident"},
		{typ: "made.up", code: http.StatusOK, reason: "event type not known"},
		{typ: "broken", code: http.StatusOK, reason: "event type not known"},
		{typ: strings.Repeat("x", webhook.MaxEventTypeBytes), code: http.StatusOK, reason: "event type not known"},
		{typ: strings.Repeat("x", webhook.MaxEventTypeBytes+1), code: http.StatusBadRequest, reason: "longer than 128"},
		{typ: "in.*", code: http.StatusBadRequest, reason: "character"},
		{typ: "in>", code: http.StatusBadRequest, reason: "character"},
		{typ: "in\tcident", code: http.StatusBadRequest, reason: "character"},
		{typ: "Push Hook", code: http.StatusOK, reason: "event type not known"},
		{typ: "dev.cdevents.service.deployed.0.1.1", code: http.StatusOK, reason: "event type not known"},
	}
	for _, tc := range cases {
		t.Run(fmt.Sprintf("%.20s", tc.typ), func(t *testing.T) {
			pub := &recorder{}
			h := webhook.NewHandler(echo{}, pub, webhook.Options{MaxBodyBytes: 1 << 10, PublishTimeout: time.Second, Partitions: 4},
				telemetry.New(), slog.New(slog.NewTextHandler(io.Discard, nil)))
			r := httptest.NewRequest(http.MethodPost, "/", strings.NewReader(`"a"`))
			r.Header.Set("X-Token", "ok")
			r.Header.Set("X-Id", "d1")
			r.Header.Set("X-Type", tc.typ)
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			if w.Code != tc.code || !strings.Contains(w.Body.String(), tc.reason) {
				t.Fatalf("got %d %s, want %d with %q", w.Code, w.Body, tc.code, tc.reason)
			}
			switch {
			case tc.subject == "" && pub.count() != 0:
				t.Errorf("published %d messages", pub.count())
			case tc.subject != "" && (pub.count() == 0 || pub.msgs[0].Subject != tc.subject ||
				pub.msgs[0].Header.Get(bus.HeaderEvent) != tc.typ):
				t.Errorf("raw delivery: %+v", pub.msgs)
			}
		})
	}
}

// The budget bounds the body bytes all handlers hold: a body that does not
// fit is answered 503 with Retry-After, without being read, whether its
// length is declared or not; bytes are given back after each request.
func TestBudget(t *testing.T) {
	budget := webhook.NewBudget(1000)
	h := webhook.NewHandler(echo{}, &recorder{}, webhook.Options{MaxBodyBytes: 800, PublishTimeout: time.Second, Partitions: 4, Budget: budget},
		telemetry.New(), slog.New(slog.NewTextHandler(io.Discard, nil)))
	body := func(n int) string { return `"` + strings.Repeat("x", n-2) + `"` }
	cases := []struct {
		name    string
		body    string
		chunked bool
		code    int
		read    bool // whether the handler may read the whole body
	}{
		{"fits", body(700), false, http.StatusAccepted, true},
		{"fits, chunked", body(700), true, http.StatusAccepted, true},
		{"over the body limit", body(900), false, http.StatusRequestEntityTooLarge, false},
		{"over the body limit, chunked", body(900), true, http.StatusRequestEntityTooLarge, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for range 3 { // the budget is given back every time
				w, read := serveBody(h, tc.body, tc.chunked)
				if w.Code != tc.code || (!tc.read && read == len(tc.body)) {
					t.Fatalf("got %d %s after reading %d bytes", w.Code, w.Body, read)
				}
			}
		})
	}
	// While 700 bytes are held by a request in flight, another body of 700
	// does not fit.
	held := webhook.NewHandler(echo{}, webhook.PublisherFunc(func(context.Context, []*nats.Msg) error {
		for _, chunked := range []bool{false, true} {
			w, read := serveBody(h, body(700), chunked)
			if w.Code != http.StatusServiceUnavailable || w.Header().Get("Retry-After") == "" ||
				!strings.Contains(w.Body.String(), "max_inflight_bytes") {
				t.Errorf("chunked %v: got %d %s", chunked, w.Code, w.Body)
			}
			if !chunked && read > 0 || chunked && read >= 700 {
				t.Errorf("chunked %v: %d bytes read of a body that does not fit", chunked, read)
			}
		}
		return nil
	}), webhook.Options{MaxBodyBytes: 800, PublishTimeout: time.Second, Partitions: 4, Budget: budget},
		telemetry.New(), slog.New(slog.NewTextHandler(io.Discard, nil)))
	if w, _ := serveBody(held, body(700), false); w.Code != http.StatusAccepted {
		t.Fatalf("got %d %s", w.Code, w.Body)
	}
	if w, _ := serveBody(h, body(700), true); w.Code != http.StatusAccepted {
		t.Fatalf("after the request in flight: %d %s", w.Code, w.Body)
	}
}

// countingReader counts what is read from it.
type countingReader struct {
	r io.Reader
	n int
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}

// serveBody posts body to h, with a Content-Length or without (as a
// chunked request arrives), and says how much of it h read.
func serveBody(h http.Handler, body string, chunked bool) (*httptest.ResponseRecorder, int) {
	src := &countingReader{r: strings.NewReader(body)}
	r := httptest.NewRequest(http.MethodPost, "/", src)
	r.ContentLength = int64(len(body))
	if chunked {
		r.ContentLength = -1
	}
	r.Header.Set("X-Token", "ok")
	r.Header.Set("X-Id", fmt.Sprintf("b%d", len(body)))
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w, src.n
}
