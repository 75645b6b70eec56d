package cdevents

import (
	"bufio"
	"context"
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

const (
	token = "t0ken"
	sha   = "3f786850e387550fdab836ed7e6dc881de23001b"
	sha2  = "89e6c98d92887913cadf06b2adb97f26cde4849b"
)

func source(t testing.TB) *Source {
	s, err := New(Config{Token: token})
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

type mode string

const (
	structured mode = "structured"
	binary     mode = "binary"
)

// request wraps a CDEvent in a CloudEvent, in the given binding mode. The
// CloudEvent's attributes are the CDEvent context's, as the CDEvents
// binding says; attrs overrides them ("" drops one).
func request(t testing.TB, m mode, cdevent []byte, attrs map[string]string) (http.Header, []byte) {
	var c struct {
		Context struct {
			ID, Source, Type, Timestamp string
		}
	}
	if err := json.Unmarshal(cdevent, &c); err != nil {
		t.Fatal(err)
	}
	a := map[string]string{"specversion": "1.0", "id": c.Context.ID, "source": c.Context.Source,
		"type": c.Context.Type, "time": c.Context.Timestamp}
	for k, v := range attrs {
		a[k] = v
	}
	h := http.Header{}
	if m == binary {
		h.Set("Content-Type", "application/json")
		for k, v := range a {
			if v != "" {
				h.Set("ce-"+k, v)
			}
		}
		return h, cdevent
	}
	h.Set("Content-Type", "application/cloudevents+json; charset=utf-8")
	env := map[string]any{"datacontenttype": "application/json", "data": json.RawMessage(cdevent)}
	for k, v := range a {
		if v != "" {
			env[k] = v
		}
	}
	body, err := json.Marshal(env)
	if err != nil {
		t.Fatal(err)
	}
	return h, body
}

// parse runs a request through Identify and Parse, as the plumbing does.
func parse(s *Source, h http.Header, body []byte) ([]event.Event, error) {
	typ, id, err := s.Identify(h, body)
	if err != nil {
		return nil, err
	}
	return s.Parse(webhook.Delivery{Source: "cdevents", Event: typ, ID: id, Header: h, Body: body})
}

func mustTime(t testing.TB, s string) time.Time {
	v, err := time.Parse(time.RFC3339, s)
	if err != nil {
		t.Fatal(err)
	}
	return v.UTC()
}

func TestParse(t *testing.T) {
	deployed := func(id, env string, rollback bool) func(t *testing.T, e event.Event) {
		return func(t *testing.T, e event.Event) {
			d := e.Deployment
			if e.Type != event.TypeDeployment || e.Repo != "acme/payments-api" || e.Service != "payments-api" {
				t.Errorf("event: %+v", e)
			}
			if d.ID != e.ID || e.ID != "cdevents:/ci/acme/pipelines:"+id || d.Environment != env ||
				d.Status != event.StatusSuccess || d.Rollback != rollback {
				t.Errorf("deployment: %+v", d)
			}
		}
	}
	withSHA := func(want string, next func(t *testing.T, e event.Event)) func(t *testing.T, e event.Event) {
		return func(t *testing.T, e event.Event) {
			if e.Deployment.SHA != want {
				t.Errorf("sha %s, want %s", e.Deployment.SHA, want)
			}
			next(t, e)
		}
	}
	cases := []struct {
		file    string
		attrs   map[string]string // CloudEvent attributes to override
		ignored string            // reason, when the delivery is ignored
		bad     string            // part of the error, when it is refused
		check   func(t *testing.T, e event.Event)
	}{
		{file: "service.deployed.json", check: withSHA(sha, func(t *testing.T, e event.Event) {
			deployed("dep-1001", "production", false)(t, e)
			if !e.OccurredAt.Equal(mustTime(t, "2024-03-01T10:00:00Z")) {
				t.Errorf("time %v", e.OccurredAt)
			}
		})},
		{file: "service.deployed.purl.json", check: withSHA(sha, deployed("dep-1002", "production", false))},
		{file: "service.deployed.vcs-url.json", check: withSHA(sha, deployed("dep-1003", "production", false))},
		{file: "service.deployed.commit-qualifier.json", check: withSHA(sha, deployed("dep-1004", "production", false))},
		{file: "service.deployed.spec-0.3.json", check: withSHA(sha, deployed("dep-1005", "staging", false))},
		{file: "service.upgraded.json", check: withSHA(sha2, deployed("dep-1006", "production", false))},
		{file: "service.rolledback.json", check: withSHA(sha, deployed("dep-1007", "production", true))},
		// The CloudEvent's time wins over the CDEvent's timestamp, which is
		// the fallback.
		{file: "service.deployed.json", attrs: map[string]string{"time": "2024-03-01T10:05:00Z"}, check: func(t *testing.T, e event.Event) {
			if !e.OccurredAt.Equal(mustTime(t, "2024-03-01T10:05:00Z")) {
				t.Errorf("time %v", e.OccurredAt)
			}
		}},
		{file: "service.deployed.json", attrs: map[string]string{"time": ""}, check: func(t *testing.T, e event.Event) {
			if !e.OccurredAt.Equal(mustTime(t, "2024-03-01T10:00:00Z")) {
				t.Errorf("time %v", e.OccurredAt)
			}
		}},
		{file: "change.merged.json", check: func(t *testing.T, e event.Event) {
			m := e.Merge
			if e.Type != event.TypeMerge || e.Repo != "acme/payments-api" || m.MergeSHA != sha2 || m.Number != 42 ||
				e.ID != "cdevents:/ci/acme/pipelines:chg-42" {
				t.Errorf("merge: %+v %+v", e, m)
			}
		}},
		{file: "change.merged.no-sha.json", ignored: "merge names no commit sha"},
		{file: "incident.detected.json", check: func(t *testing.T, e event.Event) {
			i := e.Incident
			at := mustTime(t, "2024-03-01T11:00:00Z")
			if e.Type != event.TypeIncident || e.Service != "payments-api" || e.Repo != "acme/payments-api" ||
				e.ID != "cdevents:/monitoring/alertmanager:inc-ev-1" {
				t.Errorf("event: %+v", e)
			}
			if i.ID != "cdevents:/monitoring/alertmanager:INC-7" || i.SHA != sha2 || !i.OpenedAt.Equal(at) ||
				i.ResolvedAt != nil || i.Title != "payments-api 5xx above 5%" {
				t.Errorf("incident: %+v", i)
			}
		}},
		{file: "incident.reported.json", check: func(t *testing.T, e event.Event) {
			// No subject source: the incident id falls back to the event's.
			if e.Service != "checkout" || e.Repo != "" || e.Incident.ID != "cdevents:/monitoring/alertmanager:INC-8" || e.Incident.SHA != "" {
				t.Errorf("incident: %+v %+v", e, e.Incident)
			}
		}},
		{file: "incident.resolved.json", check: func(t *testing.T, e event.Event) {
			i := e.Incident
			at := mustTime(t, "2024-03-01T12:15:00Z")
			if i.ID != "cdevents:/monitoring/alertmanager:INC-7" || i.ResolvedAt == nil || !i.ResolvedAt.Equal(at) || !i.OpenedAt.Equal(at) {
				t.Errorf("incident: %+v", i)
			}
		}},
		{file: "pipelinerun.finished.json", ignored: "event type not used"},
		{file: "service.deployed.json", attrs: map[string]string{"type": "com.example.deployed"}, ignored: "not a CDEvent"},
		{file: "service.deployed.json", attrs: map[string]string{"type": "dev.cdeventsx.acme-service.deployed.0.1.0"}, ignored: "event type not used"},
		{file: "bad.deployed.no-commit.json", bad: "names no commit"},
		{file: "bad.deployed.no-repo.json", bad: "names no repository"},
		{file: "bad.deployed.short-sha.json", bad: `customData.sha "3f78685" is not a full commit sha`},
		{file: "bad.deployed.not-a-purl.json", bad: "is not a purl"},
		{file: "bad.deployed.major-1.json", bad: "version 1.0.0 is not supported"},
		{file: "bad.incident.no-service.json", bad: "names no service"},
		{file: "service.deployed.json", attrs: map[string]string{"type": "dev.cdevents.service.upgraded.0.2.0"}, bad: "not the CloudEvent's type"},
		{file: "service.deployed.json", attrs: map[string]string{"type": "dev.cdevents.service.deployed.x"}, bad: "malformed CDEvents type"},
		{file: "service.deployed.json", attrs: map[string]string{"id": ""}, bad: "id"},
		{file: "service.deployed.json", attrs: map[string]string{"source": ""}, bad: "source"},
		{file: "service.deployed.json", attrs: map[string]string{"specversion": "0.1"}, bad: "CloudEvent"},
	}
	s := source(t)
	for _, tc := range cases {
		for _, m := range []mode{structured, binary} {
			t.Run(string(m)+"/"+tc.file, func(t *testing.T) {
				h, body := request(t, m, fixture(t, tc.file), tc.attrs)
				events, err := parse(s, h, body)
				if e, ok := webhooktest.Expect(t, events, err, tc.ignored, tc.bad); ok {
					tc.check(t, e)
				}
			})
		}
	}
}

// Requests that are not well-formed CloudEvents carrying a CDEvent.
func TestMalformed(t *testing.T) {
	cdevent := fixture(t, "service.deployed.json")
	h, body := request(t, binary, cdevent, nil)
	noData := h.Clone()
	cases := []struct {
		name string
		h    http.Header
		body string
		want string
	}{
		{"plain JSON, no CloudEvent", http.Header{"Content-Type": {"application/json"}}, string(cdevent), "not a CloudEvent"},
		{"structured, malformed JSON", http.Header{"Content-Type": {"application/cloudevents+json"}}, `{"specversion":"1.0",`, "read CloudEvent"},
		{"structured, no id", http.Header{"Content-Type": {"application/cloudevents+json"}},
			`{"specversion":"1.0","source":"/x","type":"dev.cdevents.service.deployed.0.2.0","data":{}}`, "id"},
		{"batch", http.Header{"Content-Type": {"application/cloudevents-batch+json"}}, `[]`, "batched"},
		{"binary, no data", noData, "", "no data"},
		{"binary, data not a CDEvent", h, `{"context":"x"}`, "not a CDEvent"},
		{"binary, data not JSON", func() http.Header { c := h.Clone(); c.Set("Content-Type", "application/xml"); return c }(), `<x/>`, "not JSON"},
		{"bare ce- header", func() http.Header { c := h.Clone(); c["Ce-"] = []string{"x"}; return c }(), string(body), "names no CloudEvents attribute"},
		{"control character in id", func() http.Header { c := h.Clone(); c.Set("Ce-Id", "a\x01b"); return c }(), string(body), "control characters"},
	}
	s := source(t)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			events, err := parse(s, tc.h, []byte(tc.body))
			if err == nil || errors.Is(err, webhook.ErrIgnored) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("want error containing %q, got %v %v", tc.want, events, err)
			}
		})
	}
}

// Event ids name the CloudEvent (source and id), the same in both modes and
// for every delivery of it.
func TestIDs(t *testing.T) {
	s := source(t)
	cdevent := fixture(t, "service.deployed.json")
	var ids []string
	for _, m := range []mode{structured, binary} {
		h, body := request(t, m, cdevent, nil)
		typ, delivery, err := s.Identify(h, body)
		if err != nil || typ != "dev.cdevents.service.deployed.0.2.0" || delivery != "/ci/acme/pipelines:dep-1001" {
			t.Fatalf("%s: identify %q %q %v", m, typ, delivery, err)
		}
		events, err := s.Parse(webhook.Delivery{Event: typ, ID: "whatever", Header: h, Body: body})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, events[0].ID)
	}
	if ids[0] != ids[1] {
		t.Errorf("ids differ between modes: %v", ids)
	}
}

func TestCommitOf(t *testing.T) {
	cases := []struct {
		name     string
		custom   customData
		artifact string
		repo     string
		sha      string
		bad      string
	}{
		{name: "customData wins", custom: customData{Repo: "Acme/App", SHA: sha}, artifact: "pkg:github/other/x@" + sha2, repo: "Acme/App", sha: sha},
		{name: "customData.commit", custom: customData{Commit: strings.ToUpper(sha)}, artifact: "pkg:github/acme/app", repo: "acme/app", sha: sha},
		{name: "customData repo URL", custom: customData{Repo: "https://gitlab.com/group/sub/app.git", SHA: sha}, repo: "group/sub/app", sha: sha},
		{name: "customData repo scp", custom: customData{Repo: "git@github.com:acme/app.git", SHA: sha}, repo: "acme/app", sha: sha},
		{name: "purl version", artifact: "pkg:github/acme/app@" + sha, repo: "acme/app", sha: sha},
		{name: "purl gitlab nested", artifact: "pkg:gitlab/group/sub/app@" + sha, repo: "group/sub/app", sha: sha},
		{name: "purl tag version", artifact: "pkg:github/acme/app@v1.2.3", repo: "acme/app"},
		{name: "commit qualifier", artifact: "pkg:oci/app@sha256%3Aabc?commit=" + sha + "&vcs_url=git%2Bssh%3A%2F%2Fgit%40github.com%2Facme%2Fapp.git", repo: "acme/app", sha: sha},
		{name: "vcs_url revision", artifact: "pkg:oci/app?vcs_url=git%2Bhttps%3A%2F%2Fgithub.com%2Facme%2Fapp%40" + sha, repo: "acme/app", sha: sha},
		{name: "vcs_url tag", artifact: "pkg:oci/app?vcs_url=git%2Bhttps%3A%2F%2Fgithub.com%2Facme%2Fapp%40v1", repo: "acme/app"},
		{name: "no namespace", artifact: "pkg:oci/app@" + sha, sha: sha},
		{name: "sha-256 repository", custom: customData{Repo: "a/b", SHA: strings.Repeat("ab", 32)}, repo: "a/b", sha: strings.Repeat("ab", 32)},
		{name: "nothing"},
		{name: "short sha", custom: customData{SHA: "3f78685"}, bad: "customData.sha"},
		{name: "bad commit qualifier", artifact: "pkg:github/acme/app?commit=main", bad: "purl qualifier commit"},
		{name: "qualifier without value", artifact: "pkg:github/acme/app?commit", bad: "not a purl"},
		{name: "not a purl", artifact: "acme/app:1.0", bad: "not a purl"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			repo, sha, err := commitOf(tc.custom, tc.artifact)
			if tc.bad != "" {
				if err == nil || !strings.Contains(err.Error(), tc.bad) {
					t.Fatalf("want error containing %q, got %q %q %v", tc.bad, repo, sha, err)
				}
				return
			}
			if err != nil || repo != tc.repo || sha != tc.sha {
				t.Errorf("got %q %q %v, want %q %q", repo, sha, err, tc.repo, tc.sha)
			}
		})
	}
}

func TestAuthenticate(t *testing.T) {
	s := source(t)
	cases := []struct {
		auth string
		ok   bool
	}{
		{"Bearer " + token, true},
		{"bearer " + token, true},
		{"Bearer  " + token + " ", true},
		{"Bearer " + token + "x", false},
		{"Bearer " + token[:2], false},
		{"Basic " + token, false},
		{token, false},
		{"", false},
	}
	for _, tc := range cases {
		h := http.Header{}
		if tc.auth != "" {
			h.Set("Authorization", tc.auth)
		}
		if _, err := s.Authenticate(h, []byte("{}")); (err == nil) != tc.ok {
			t.Errorf("%q: err = %v, want ok=%v", tc.auth, err, tc.ok)
		}
	}
	if _, err := New(Config{}); err == nil || !strings.Contains(err.Error(), "DORAFLOW_CDEVENTS_TOKEN") {
		t.Errorf("empty token: %v", err)
	}
}

// The whole request path, through the shared plumbing.
func TestHandler(t *testing.T) {
	var published []*nats.Msg
	pub := webhook.PublisherFunc(func(_ context.Context, msgs []*nats.Msg) error {
		published = append(published, msgs...)
		return nil
	})
	h := webhook.NewHandler(source(t), pub, webhook.Options{MaxBodyBytes: 1 << 20, PublishTimeout: time.Second, Partitions: 4},
		telemetry.New(), slog.New(slog.NewTextHandler(io.Discard, nil)))
	cases := []struct {
		name, file string
		m          mode
		auth       string
		code       int
	}{
		{"structured deployment", "service.deployed.json", structured, token, http.StatusAccepted},
		{"binary deployment", "service.deployed.purl.json", binary, token, http.StatusAccepted},
		{"wrong token", "service.deployed.json", binary, "guess", http.StatusUnauthorized},
		{"ignored", "pipelinerun.finished.json", binary, token, http.StatusOK},
		{"no commit", "bad.deployed.no-commit.json", structured, token, http.StatusBadRequest},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			hdr, body := request(t, tc.m, fixture(t, tc.file), nil)
			r := httptest.NewRequest(http.MethodPost, "/webhooks/cdevents", strings.NewReader(string(body)))
			r.Header = hdr
			r.Header.Set("Authorization", "Bearer "+tc.auth)
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			if w.Code != tc.code {
				t.Errorf("status %d, want %d: %s", w.Code, tc.code, w.Body)
			}
		})
	}
	// two deployments: raw + event each; ignored: raw only.
	if len(published) != 5 || published[0].Header.Get(nats.MsgIdHdr) != "cdevents:/ci/acme/pipelines:dep-1001" {
		t.Errorf("published %d messages", len(published))
	}
}

// headerLines renders a header as "Key: value" lines, and back, so that the
// fuzzer can vary the ce-* headers of binary mode.
func headerLines(h http.Header) string {
	var b strings.Builder
	for k, vs := range h {
		for _, v := range vs {
			b.WriteString(k + ": " + v + "\n")
		}
	}
	return b.String()
}

func parseHeaderLines(s string) http.Header {
	h := http.Header{}
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), ":"); ok {
			h.Add(k, strings.TrimSpace(v))
		}
	}
	return h
}

// The parser never panics, in either mode, and whatever it returns is a
// valid event.
func FuzzParse(f *testing.F) {
	entries, _ := os.ReadDir("testdata")
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".json") {
			cdevent, _ := os.ReadFile(filepath.Join("testdata", e.Name()))
			for _, m := range []mode{structured, binary} {
				h, body := request(f, m, cdevent, nil)
				f.Add(headerLines(h), body)
			}
		}
	}
	s := source(f)
	f.Fuzz(func(t *testing.T, headers string, body []byte) {
		h := parseHeaderLines(headers)
		typ, _, err := s.Identify(h, body)
		if err != nil {
			return
		}
		events, err := s.Parse(webhook.Delivery{Event: typ, ID: "fuzz", Header: h, Body: body})
		if err != nil {
			return
		}
		for _, e := range events {
			if err := e.Validate(); err != nil {
				t.Errorf("invalid event from %s: %v", typ, err)
			}
		}
	})
}

// commitOf takes any artifact id without panicking (packageurl-go v0.1.1
// panics on some), and what it returns is usable.
func FuzzCommitOf(f *testing.F) {
	for _, s := range []string{"pkg:github/acme/app@" + sha, "pkg:oci/app?commit=" + sha, "pkg:github/a/b?commit",
		"pkg:oci/app?vcs_url=git%2Bhttps%3A%2F%2Fgithub.com%2Facme%2Fapp%40" + sha, "pkg:a/b#c/../d", "pkg:conan/a/b?channel="} {
		f.Add(s, "")
	}
	f.Add("", "https://github.com/acme/app.git")
	f.Fuzz(func(t *testing.T, artifact, repo string) {
		_, got, err := commitOf(customData{Repo: repo}, artifact)
		if err == nil && got != "" && !isFullSHA(got) {
			t.Errorf("sha %q from %q", got, artifact)
		}
	})
}

// Kind drops the version of a CDEvents type, so that a fixed set of names
// reaches subjects and metric labels whatever versions producers send.
func TestKind(t *testing.T) {
	s := source(t)
	for _, tc := range []struct{ typ, kind string }{
		{"dev.cdevents.service.deployed.0.1.1", "service.deployed"},
		{"dev.cdevents.service.deployed.0.2.0", "service.deployed"},
		{"dev.cdevents.service.deployed.0.3.0-draft", "service.deployed"},
		{"dev.cdevents.incident.resolved.0.2.0", "incident.resolved"},
		{"dev.cdevents.pipelinerun.finished.0.2.0", "pipelinerun.finished"},
		{"dev.cdevents.ticket.closed.0.1.0", "ticket.closed"},
		{"dev.cdeventsx.acme-service.deployed.0.1.0", "custom"},
		{"dev.cdevents.service.exploded.0.1.0", ""},
		{"dev.cdevents.service.deployed", ""},
		{"com.example.deployed", ""},
	} {
		if got := s.Kind(tc.typ); got != tc.kind {
			t.Errorf("Kind(%q) = %q, want %q", tc.typ, got, tc.kind)
		}
	}
}
