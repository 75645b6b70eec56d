package pagerduty

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/doraflow/doraflow/collectors/webhook"
	"github.com/doraflow/doraflow/collectors/webhook/webhooktest"
	"github.com/doraflow/doraflow/pkg/event"
	"github.com/doraflow/doraflow/pkg/telemetry"
)

const secret = "s3cret"

func source(t testing.TB) *Source {
	s, err := New(Config{WebhookSecret: secret})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func fixture(t testing.TB, name string) []byte {
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// sign is what PagerDuty puts in X-PagerDuty-Signature.
func sign(key string, body []byte) string {
	mac := hmac.New(sha256.New, []byte(key))
	mac.Write(body)
	return "v1=" + hex.EncodeToString(mac.Sum(nil))
}

func mustTime(t testing.TB, s string) time.Time {
	v, err := time.Parse(time.RFC3339, s)
	if err != nil {
		t.Fatal(err)
	}
	return v.UTC()
}

func TestParseFixtures(t *testing.T) {
	cases := []struct {
		file    string
		ignored string // reason, when the delivery is ignored
		bad     string // part of the error, when it is refused
		check   func(t *testing.T, e event.Event)
	}{
		{file: "incident.triggered.json", check: func(t *testing.T, e event.Event) {
			i := e.Incident
			if e.ID != "pagerduty:01DENTRIG0000000000000000001" || e.Service != "API Service" || e.Repo != "" ||
				!e.OccurredAt.Equal(mustTime(t, "2020-04-09T15:16:28Z")) {
				t.Errorf("event: %+v", e)
			}
			if i.ID != "pagerduty:PGR0VU2" || i.Title != "A little bump in the road" || i.ResolvedAt != nil ||
				!i.OpenedAt.Equal(mustTime(t, "2020-04-09T15:16:27Z")) {
				t.Errorf("incident: %+v", i)
			}
		}},
		{file: "incident.resolved.json", check: func(t *testing.T, e event.Event) {
			i := e.Incident
			if i.ID != "pagerduty:PGR0VU2" || !i.OpenedAt.Equal(mustTime(t, "2020-04-09T15:16:27Z")) {
				t.Errorf("incident: %+v", i)
			}
			if i.ResolvedAt == nil || !i.ResolvedAt.Equal(mustTime(t, "2020-04-09T16:02:11Z")) {
				t.Errorf("resolved at %v, want event.occurred_at", i.ResolvedAt)
			}
		}},
		{file: "incident.reopened.json", check: func(t *testing.T, e event.Event) {
			i := e.Incident
			if i.ID != "pagerduty:PGR0VU2" || i.ResolvedAt != nil || !e.OccurredAt.Equal(mustTime(t, "2020-04-09T16:30:00Z")) {
				t.Errorf("reopened: %+v %+v", e, i)
			}
		}},
		{file: "incident.acknowledged.json", ignored: "event type not used"},
		{file: "pagey.ping.json", ignored: "ping"},
		{file: "bad.no-service.json", bad: "service.summary"},
		{file: "bad.no-occurred-at.json", bad: "occurred_at is missing"},
		{file: "bad.no-incident-id.json", bad: "incident id"},
		{file: "bad.resolved-before-created.json", bad: "before it opened"},
		{file: "bad.occurred-at-not-a-time.json", bad: "parse incident.triggered"},
		{file: "bad.truncated.json", bad: "parse incident.triggered"},
	}
	s := source(t)
	for _, tc := range cases {
		t.Run(tc.file, func(t *testing.T) {
			body := fixture(t, tc.file)
			typ := "incident.triggered" // what Identify says of the bad bodies
			if json.Valid(body) {
				var err error
				if typ, _, err = s.Identify(http.Header{}, body); err != nil {
					t.Fatal(err)
				}
			}
			events, err := s.Parse(webhook.Delivery{Source: "pagerduty", Event: typ, ID: "d", Body: body})
			if e, ok := webhooktest.Expect(t, events, err, tc.ignored, tc.bad); ok {
				tc.check(t, e)
			}
		})
	}
}

// Event ids name the fact (PagerDuty's event id), not the delivery, and the
// incident id is shared by all of an incident's events.
func TestIDs(t *testing.T) {
	s := source(t)
	body := fixture(t, "incident.triggered.json")
	a, _ := s.Parse(webhook.Delivery{Event: "incident.triggered", ID: "one", Body: body})
	b, _ := s.Parse(webhook.Delivery{Event: "incident.triggered", ID: "two", Body: body})
	r, _ := s.Parse(webhook.Delivery{Event: "incident.resolved", ID: "three", Body: fixture(t, "incident.resolved.json")})
	if len(a) != 1 || len(b) != 1 || len(r) != 1 {
		t.Fatalf("parse failed: %v %v %v", a, b, r)
	}
	if a[0].ID != b[0].ID {
		t.Errorf("redelivery changed the id: %s %s", a[0].ID, b[0].ID)
	}
	if a[0].ID == r[0].ID || a[0].Incident.ID != r[0].Incident.ID {
		t.Errorf("triggered %s/%s vs resolved %s/%s", a[0].ID, a[0].Incident.ID, r[0].ID, r[0].Incident.ID)
	}
	// A body replayed under another event name is refused, not misread.
	if _, err := s.Parse(webhook.Delivery{Event: "incident.resolved", Body: body}); err == nil || errors.Is(err, webhook.ErrIgnored) {
		t.Errorf("mismatched event name: %v", err)
	}
}

func TestAuthenticate(t *testing.T) {
	s := source(t)
	body := fixture(t, "incident.triggered.json")
	good, other := sign(secret, body), sign("old", body)
	cases := []struct {
		name, sig string
		ok        bool
	}{
		{"valid", good, true},
		{"rotation, new secret second", other + "," + good, true},
		{"rotation, new secret first", good + "," + other, true},
		{"rotation with blanks", other + ", " + good, true},
		{"wrong secret", other, false},
		{"missing", "", false},
		{"not hex", "v1=zz", false},
		{"unknown version", "v2=" + strings.TrimPrefix(good, "v1="), false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := http.Header{}
			if tc.sig != "" {
				h.Set(SignatureHeader, tc.sig)
			}
			payload, err := s.Authenticate(h, body)
			if (err == nil) != tc.ok {
				t.Fatalf("err = %v, want ok=%v", err, tc.ok)
			}
			if tc.ok && string(payload) != string(body) {
				t.Error("payload differs from body")
			}
		})
	}
	if _, err := s.Authenticate(http.Header{SignatureHeader: {sign(secret, nil)}}, nil); err == nil {
		t.Error("empty body accepted")
	}
	if _, err := New(Config{}); err == nil || !strings.Contains(err.Error(), "DORAFLOW_PAGERDUTY_WEBHOOK_SECRET") {
		t.Errorf("empty secret: %v", err)
	}
}

func TestIdentify(t *testing.T) {
	s := source(t)
	h := http.Header{}
	h.Set(DeliveryHeader, "d-1")
	typ, id, err := s.Identify(h, fixture(t, "incident.resolved.json"))
	if typ != "incident.resolved" || id != "d-1" || err != nil {
		t.Errorf("got %q %q %v", typ, id, err)
	}
	for _, body := range []string{`{}`, `{"event":{}}`, `[1]`, `{"event":`} {
		if _, _, err := s.Identify(h, []byte(body)); err == nil {
			t.Errorf("%s: no error", body)
		}
	}
}

// The whole request path, through the shared plumbing: status codes and what
// reaches the bus.
func TestHandler(t *testing.T) {
	var published []*nats.Msg
	pub := webhook.PublisherFunc(func(_ context.Context, msgs []*nats.Msg) error {
		published = append(published, msgs...)
		return nil
	})
	h := webhook.NewHandler(source(t), pub, webhook.Options{MaxBodyBytes: 1 << 20, PublishTimeout: time.Second, Partitions: 4},
		telemetry.New(), slog.New(slog.NewTextHandler(io.Discard, nil)))
	post := func(body []byte, sig string) int {
		r := httptest.NewRequest(http.MethodPost, "/webhooks/pagerduty", strings.NewReader(string(body)))
		r.Header.Set("Content-Type", "application/json")
		r.Header.Set(DeliveryHeader, "delivery-1")
		if sig != "" {
			r.Header.Set(SignatureHeader, sig)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w.Code
	}
	cases := []struct {
		name string
		body []byte
		sig  string
		code int
	}{
		{"triggered", fixture(t, "incident.triggered.json"), "", http.StatusAccepted},
		{"unsigned", fixture(t, "incident.triggered.json"), "v1=00", http.StatusUnauthorized},
		{"acknowledged", fixture(t, "incident.acknowledged.json"), "", http.StatusOK},
		{"no service", fixture(t, "bad.no-service.json"), "", http.StatusBadRequest},
		{"truncated", fixture(t, "bad.truncated.json"), "", http.StatusBadRequest},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			sig := tc.sig
			if sig == "" {
				sig = sign(secret, tc.body)
			}
			if code := post(tc.body, sig); code != tc.code {
				t.Errorf("status %d, want %d", code, tc.code)
			}
		})
	}
	// triggered: raw + event; acknowledged: raw only.
	if len(published) != 3 || published[1].Header.Get(nats.MsgIdHdr) != "pagerduty:01DENTRIG0000000000000000001" {
		t.Errorf("published %d messages", len(published))
	}
}

// The parser never panics, and whatever it returns is a valid event.
func FuzzParse(f *testing.F) {
	webhooktest.SeedTestdata(f, typeTriggered, typeResolved, typeReopened)
	s := source(f)
	f.Fuzz(func(t *testing.T, typ string, body []byte) {
		events, err := s.Parse(webhook.Delivery{Event: typ, ID: "fuzz", Body: body})
		webhooktest.ValidEvents(t, typ, events, err)
	})
}

// Kind knows PagerDuty's v3 event types, used or not, and nothing else.
func TestKind(t *testing.T) {
	s := source(t)
	for _, tc := range []struct{ typ, kind string }{
		{"incident.triggered", "incident.triggered"},
		{"incident.acknowledged", "incident.acknowledged"},
		{"pagey.ping", "pagey.ping"},
		{"incident.made_up", ""},
		{"Incident.Triggered", ""},
	} {
		if got := s.Kind(tc.typ); got != tc.kind {
			t.Errorf("Kind(%q) = %q, want %q", tc.typ, got, tc.kind)
		}
	}
}
