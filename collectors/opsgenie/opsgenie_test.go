package opsgenie

import (
	"context"
	"encoding/json"
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

func source(t testing.TB, cfg Config) *Source {
	if cfg.Secret == "" {
		cfg.Secret = secret
	}
	s, err := New(cfg)
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

// parse runs a body through Identify and Parse, as the plumbing does.
func parse(t testing.TB, s *Source, body []byte) ([]event.Event, error) {
	typ, _, err := s.Identify(http.Header{}, body)
	if err != nil {
		return nil, err
	}
	return s.Parse(webhook.Delivery{Source: "opsgenie", Event: typ, ID: "d", Body: body})
}

func TestParseFixtures(t *testing.T) {
	created := time.UnixMilli(1700000000123).UTC()
	closed := time.Unix(0, 1700003600456000000).UTC()
	filtered := Config{Tags: []string{"PROD"}, Priorities: []string{"p1", "P2"}}
	cases := []struct {
		file    string
		cfg     Config
		ignored string // reason, when the delivery is ignored
		bad     string // part of the error, when it is refused
		check   func(t *testing.T, e event.Event)
	}{
		{file: "create.json", check: func(t *testing.T, e event.Event) {
			i := e.Incident
			if e.ID != "opsgenie:4f5c1a8e-7b2d-4c3a-9e1f-0a1b2c3d4e5f-1700000000123:Create" || e.Service != "payments-api" ||
				!e.OccurredAt.Equal(created) {
				t.Errorf("event: %+v", e)
			}
			if i.ID != "opsgenie:4f5c1a8e-7b2d-4c3a-9e1f-0a1b2c3d4e5f-1700000000123" || i.Title != "payments-api: error rate above 5%" ||
				!i.OpenedAt.Equal(created) || i.ResolvedAt != nil {
				t.Errorf("incident: %+v", i)
			}
		}},
		{file: "create.json", cfg: filtered, check: func(t *testing.T, e event.Event) {}},
		{file: "close.json", check: func(t *testing.T, e event.Event) {
			i := e.Incident
			if !strings.HasSuffix(e.ID, ":Close") || !i.OpenedAt.Equal(created) || i.ResolvedAt == nil ||
				!i.ResolvedAt.Equal(closed) || !e.OccurredAt.Equal(closed) {
				t.Errorf("closed: %+v %+v", e, i)
			}
		}},
		{file: "close.no-updated-at.json", check: func(t *testing.T, e event.Event) {
			// Deterministic fallback: the creation time, not the receipt.
			if r := e.Incident.ResolvedAt; r == nil || !r.Equal(created) || !e.OccurredAt.Equal(created) {
				t.Errorf("resolved at %v", r)
			}
		}},
		{file: "create.service-tag.json", check: func(t *testing.T, e event.Event) {
			if e.Service != "checkout" {
				t.Errorf("service %q", e.Service)
			}
		}},
		{file: "create.no-service.json", ignored: "alert names no service"},
		{file: "create.p3-staging.json", check: func(t *testing.T, e event.Event) {}},
		{file: "create.p3-staging.json", cfg: filtered, ignored: "alert filtered out"},
		{file: "create.p3-staging.json", cfg: Config{Tags: []string{"staging"}, Priorities: []string{"P1"}}, ignored: "alert filtered out"},
		{file: "create.p3-staging.json", cfg: Config{Tags: []string{"staging"}}, check: func(t *testing.T, e event.Event) {}},
		{file: "create.no-priority.json", cfg: Config{Priorities: []string{"P1"}}, ignored: "alert filtered out"},
		// Relaying integrations send the priority as a number: 1 is P1.
		{file: "create.priority-number.json", check: func(t *testing.T, e event.Event) {}},
		{file: "create.priority-number.json", cfg: Config{Priorities: []string{"P1"}}, check: func(t *testing.T, e event.Event) {}},
		{file: "create.priority-number.json", cfg: Config{Priorities: []string{"P2"}}, ignored: "alert filtered out"},
		{file: "create.priority-null.json", check: func(t *testing.T, e event.Event) {}},
		{file: "create.priority-null.json", cfg: Config{Priorities: []string{"P1"}}, ignored: "alert filtered out"},
		{file: "acknowledge.json", ignored: "action not used"},
		{file: "addnote.json", ignored: "action not used"},
		{file: "delete.json", ignored: "action not used"},
		{file: "bad.no-alert-id.json", bad: "alertId"},
		{file: "bad.no-created-at.json", bad: "createdAt is missing"},
		{file: "bad.created-at-not-a-number.json", bad: "parse Create"},
		{file: "bad.closed-before-created.json", bad: "before it opened"},
		{file: "bad.tags-not-a-list.json", bad: "parse Create"},
	}
	for _, tc := range cases {
		t.Run(tc.file, func(t *testing.T) {
			events, err := parse(t, source(t, tc.cfg), fixture(t, tc.file))
			if e, ok := webhooktest.Expect(t, events, err, tc.ignored, tc.bad); ok {
				tc.check(t, e)
			}
		})
	}
}

func TestEpochTime(t *testing.T) {
	want := time.Date(2023, 11, 14, 22, 13, 20, 0, time.UTC)
	cases := []struct {
		in   string
		want time.Time
		bad  bool
	}{
		{in: "1700000000", want: want},
		{in: "1700000000000", want: want},
		{in: "1700000000000000", want: want},
		{in: "1700000000000000000", want: want},
		{in: "1420452191104", want: time.UnixMilli(1420452191104).UTC()},
		{in: "1420452224764002246", want: time.Unix(0, 1420452224764002246).UTC()},
		{in: "", want: time.Time{}},
		{in: "0", want: time.Time{}},
		{in: "-5", bad: true},
		{in: "1.7e12", bad: true},
		{in: "99999999999999999999", bad: true},
	}
	for _, tc := range cases {
		got, err := epochTime(json.Number(tc.in))
		if (err != nil) != tc.bad || !got.Equal(tc.want) {
			t.Errorf("%s: got %v, %v; want %v (bad=%v)", tc.in, got, err, tc.want, tc.bad)
		}
	}
}

func TestAuthenticate(t *testing.T) {
	body := fixture(t, "create.json")
	basic := func(user, pass string) string {
		r := &http.Request{Header: http.Header{}}
		r.SetBasicAuth(user, pass)
		return r.Header.Get("Authorization")
	}
	cases := []struct {
		name   string
		cfg    Config
		header map[string]string
		ok     bool
	}{
		{"default header", Config{}, map[string]string{"X-Doraflow-Token": secret}, true},
		{"default header, lower case", Config{}, map[string]string{"x-doraflow-token": secret}, true},
		{"wrong token", Config{}, map[string]string{"X-Doraflow-Token": "guess"}, false},
		{"prefix of the token", Config{}, map[string]string{"X-Doraflow-Token": secret[:3]}, false},
		{"custom header", Config{Header: "X-Opsgenie-Secret"}, map[string]string{"X-Opsgenie-Secret": secret}, true},
		{"default header when another is configured", Config{Header: "X-Opsgenie-Secret"}, map[string]string{"X-Doraflow-Token": secret}, false},
		{"basic auth", Config{}, map[string]string{"Authorization": basic("doraflow", secret)}, true},
		{"basic auth, wrong password", Config{}, map[string]string{"Authorization": basic(secret, "x")}, false},
		{"bearer is not basic", Config{}, map[string]string{"Authorization": "Bearer " + secret}, false},
		{"nothing", Config{}, nil, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := http.Header{}
			for k, v := range tc.header {
				h.Set(k, v)
			}
			payload, err := source(t, tc.cfg).Authenticate(h, body)
			if (err == nil) != tc.ok {
				t.Fatalf("err = %v, want ok=%v", err, tc.ok)
			}
			if tc.ok && string(payload) != string(body) {
				t.Error("payload differs from body")
			}
			if err != nil && strings.Contains(err.Error(), secret) {
				t.Error("error leaks the secret")
			}
		})
	}
}

func TestConfigValidate(t *testing.T) {
	cases := []struct {
		cfg  Config
		want string // part of the error; "" for a valid config
	}{
		{Config{Secret: "x"}, ""},
		{Config{Secret: "x", Header: "X-Token", Tags: []string{"prod"}, Priorities: []string{"P1", "p2"}}, ""},
		{Config{}, "DORAFLOW_OPSGENIE_SECRET"},
		{Config{Secret: "x", Header: "X Token"}, "not a valid HTTP header name"},
		{Config{Secret: "x", Header: "authorization"}, "basic auth"},
		{Config{Secret: "x", Tags: []string{" "}}, "empty tag"},
		{Config{Secret: "x", Priorities: []string{"high"}}, `"high"`},
	}
	for _, tc := range cases {
		err := tc.cfg.Validate()
		if (tc.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%+v: got %v, want %q", tc.cfg, err, tc.want)
		}
	}
}

func TestIdentify(t *testing.T) {
	s := source(t, Config{})
	typ, id, err := s.Identify(http.Header{}, fixture(t, "close.json"))
	if typ != "Close" || id != "" || err != nil {
		t.Errorf("got %q %q %v", typ, id, err)
	}
	for _, body := range []string{`{}`, `{"action":""}`, `[1]`, `{"action":`} {
		if _, _, err := s.Identify(http.Header{}, []byte(body)); err == nil {
			t.Errorf("%s: no error", body)
		}
	}
}

// The whole request path, through the shared plumbing.
func TestHandler(t *testing.T) {
	var published []*nats.Msg
	pub := webhook.PublisherFunc(func(_ context.Context, msgs []*nats.Msg) error {
		published = append(published, msgs...)
		return nil
	})
	h := webhook.NewHandler(source(t, Config{}), pub, webhook.Options{MaxBodyBytes: 1 << 20, PublishTimeout: time.Second, Partitions: 4},
		telemetry.New(), slog.New(slog.NewTextHandler(io.Discard, nil)))
	cases := []struct {
		name, file, token string
		code              int
	}{
		{"create", "create.json", secret, http.StatusAccepted},
		{"close", "close.json", secret, http.StatusAccepted},
		{"wrong token", "create.json", "guess", http.StatusUnauthorized},
		{"acknowledge", "acknowledge.json", secret, http.StatusOK},
		{"no service", "create.no-service.json", secret, http.StatusOK},
		{"no alert id", "bad.no-alert-id.json", secret, http.StatusBadRequest},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodPost, "/webhooks/opsgenie", strings.NewReader(string(fixture(t, tc.file))))
			r.Header.Set("Content-Type", "application/json")
			r.Header.Set(DefaultHeader, tc.token)
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			if w.Code != tc.code {
				t.Errorf("status %d, want %d: %s", w.Code, tc.code, w.Body)
			}
		})
	}
	// create, close: raw + event each; acknowledge, no service: raw only.
	if len(published) != 6 {
		t.Errorf("published %d messages, want 6", len(published))
	}
}

// The parser never panics, and whatever it returns is a valid event.
func FuzzParse(f *testing.F) {
	webhooktest.SeedTestdata(f, actionCreate, actionClose)
	sources := []*Source{source(f, Config{}), source(f, Config{Tags: []string{"prod"}, Priorities: []string{"P1"}})}
	f.Fuzz(func(t *testing.T, typ string, body []byte) {
		for _, s := range sources {
			events, err := s.Parse(webhook.Delivery{Event: typ, ID: "fuzz", Body: body})
			webhooktest.ValidEvents(t, typ, events, err)
		}
	})
}

// Kind knows Opsgenie's alert actions, used or not, and nothing else.
func TestKind(t *testing.T) {
	s := source(t, Config{Secret: secret})
	for _, tc := range []struct{ typ, kind string }{
		{"Create", "Create"},
		{"Close", "Close"},
		{"AddNote", "AddNote"},
		{"create", ""},
		{"MadeUp", ""},
	} {
		if got := s.Kind(tc.typ); got != tc.kind {
			t.Errorf("Kind(%q) = %q, want %q", tc.typ, got, tc.kind)
		}
	}
}
