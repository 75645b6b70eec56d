package github

import (
	"errors"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/doraflow/doraflow/collectors/webhook"
	"github.com/doraflow/doraflow/collectors/webhook/webhooktest"
	"github.com/doraflow/doraflow/internal/githubtest"
	"github.com/doraflow/doraflow/pkg/event"
)

func source(t testing.TB) *Source {
	s, err := New(Config{WebhookSecret: "s3cret"})
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

func TestParseFixtures(t *testing.T) {
	mustTime := func(s string) time.Time {
		v, err := time.Parse(time.RFC3339, s)
		if err != nil {
			t.Fatal(err)
		}
		return v.UTC()
	}
	cases := []struct {
		file, event string
		ignored     string // reason, when the delivery is ignored
		check       func(t *testing.T, e event.Event)
	}{
		{file: "push.with-new-branch.payload.json", event: "push", check: func(t *testing.T, e event.Event) {
			p := e.Push
			if e.Repo != "Codertocat/Hello-World" || p.Ref != "refs/heads/master" || !event.IsZeroSHA(p.Before) ||
				len(p.Commits) != 1 || !p.Commits[0].Time.Equal(mustTime("2019-05-15T15:19:25Z")) || p.Commits[0].SHA != p.After {
				t.Errorf("push: %+v %+v", e, p)
			}
		}},
		{file: "push.payload.json", event: "push", ignored: "push to a tag"},
		{file: "deployment_status.payload.json", event: "deployment_status", check: func(t *testing.T, e event.Event) {
			d := e.Deployment
			if d.ID != "145988746" || d.SHA != "f95f852bd8fca8fcc58a9a2d6c842781e32a215e" || d.Environment != "production" ||
				d.Status != event.StatusSuccess || !e.OccurredAt.Equal(mustTime("2019-05-15T15:20:55Z")) {
				t.Errorf("deployment status: %+v %+v", e, d)
			}
		}},
		{file: "deployment_status.gh-pages.payload.json", event: "deployment_status", ignored: "deployment state not an outcome"},
		{file: "deployment.payload.json", event: "deployment", check: func(t *testing.T, e event.Event) {
			if e.Deployment.Status != event.StatusPending || e.Deployment.ID != "145988746" {
				t.Errorf("deployment: %+v", e.Deployment)
			}
		}},
		{file: "pull_request.closed.payload.json", event: "pull_request", ignored: "pull request not merged"},
		{file: "pull_request.merged.json", event: "pull_request", check: func(t *testing.T, e event.Event) {
			m := e.Merge
			if m.MergeSHA != "c4295bd74fb0f4fda03689c3df3f2803b658fd85" || m.HeadSHA != "ec26c3e57ca3a959ca5aad62de7213c562f8c821" || m.Commits != 1 {
				t.Errorf("merge: %+v", m)
			}
		}},
		{file: "issues.labeled.payload.json", event: "issues", ignored: "issue not labelled as incident"},
		{file: "issues.labeled.incident.json", event: "issues", check: func(t *testing.T, e event.Event) {
			i := e.Incident
			if i.ID != "github:Codertocat/Hello-World#1" || i.ResolvedAt != nil || i.Withdrawn || e.Service != e.Repo {
				t.Errorf("incident: %+v", i)
			}
		}},
		{file: "issues.closed.incident.json", event: "issues", check: func(t *testing.T, e event.Event) {
			if r := e.Incident.ResolvedAt; r == nil || !r.Equal(mustTime("2019-05-15T18:00:00Z")) {
				t.Errorf("resolved: %v", r)
			}
		}},
		{file: "issues.unlabeled.incident.json", event: "issues", check: func(t *testing.T, e event.Event) {
			if !e.Incident.Withdrawn {
				t.Errorf("unlabelled incident not withdrawn: %+v", e.Incident)
			}
		}},
		// GitHub sends the issue as it was: one never labelled as an
		// incident withdraws nothing when deleted.
		{file: "issues.deleted.not-incident.json", event: "issues", ignored: "issue not labelled as incident"},
		{file: "issues.deleted.incident.json", event: "issues", check: func(t *testing.T, e event.Event) {
			if !e.Incident.Withdrawn {
				t.Errorf("deleted incident not withdrawn: %+v", e.Incident)
			}
		}},
		{file: "ping.payload.json", event: "ping", ignored: "ping"},
		{file: "workflow_run.completed.payload.json", event: "workflow_run", ignored: "event type not used"},
	}
	s := source(t)
	for _, tc := range cases {
		t.Run(tc.file, func(t *testing.T) {
			events, err := s.Parse(webhook.Delivery{Source: "github", Event: tc.event, ID: "d", Body: fixture(t, tc.file)})
			if tc.ignored != "" {
				if !errors.Is(err, webhook.ErrIgnored) || !strings.Contains(err.Error(), tc.ignored) {
					t.Fatalf("want ignored (%s), got %v %v", tc.ignored, events, err)
				}
				return
			}
			if err != nil || len(events) != 1 {
				t.Fatalf("got %v, %v", events, err)
			}
			if err := events[0].Validate(); err != nil {
				t.Fatal(err)
			}
			tc.check(t, events[0])
		})
	}
}

// Event ids name the fact, not the delivery: a redelivery, or the same fact
// under another delivery id, is a duplicate.
func TestEventIDsIgnoreDelivery(t *testing.T) {
	s := source(t)
	body := fixture(t, "deployment_status.payload.json")
	a, _ := s.Parse(webhook.Delivery{Event: "deployment_status", ID: "one", Body: body})
	b, _ := s.Parse(webhook.Delivery{Event: "deployment_status", ID: "two", Body: body})
	if a[0].ID != b[0].ID {
		t.Errorf("ids differ: %s %s", a[0].ID, b[0].ID)
	}
}

func TestAuthenticate(t *testing.T) {
	s := source(t)
	body := fixture(t, "push.with-new-branch.payload.json")
	form := url.Values{"payload": {string(body)}}.Encode()
	header := func(sig, contentType string) http.Header {
		h := http.Header{}
		if sig != "" {
			h.Set("X-Hub-Signature-256", sig)
		}
		if contentType != "" {
			h.Set("Content-Type", contentType)
		}
		return h
	}
	cases := []struct {
		name string
		h    http.Header
		ok   bool
	}{
		{"valid", header(githubtest.Sign("s3cret", body), "application/json"), true},
		{"valid with charset", header(githubtest.Sign("s3cret", body), "application/json; charset=utf-8"), true},
		{"wrong secret", header(githubtest.Sign("other", body), "application/json"), false},
		{"missing", header("", "application/json"), false},
		{"garbage", header("sha256=zz", "application/json"), false},
		{"SHA-1 in the SHA-256 header", header("sha1="+strings.Repeat("0", 40), "application/json"), false},
		{"no Content-Type: JSON", header(githubtest.Sign("s3cret", body), ""), true},
		{"form-encoded", header(githubtest.Sign("s3cret", []byte(form)), "application/x-www-form-urlencoded"), true},
		{"form-encoded, signature of the payload only", header(githubtest.Sign("s3cret", body), "application/x-www-form-urlencoded"), false},
		{"other Content-Type", header(githubtest.Sign("s3cret", body), "text/plain"), false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			sent := body
			if strings.HasPrefix(tc.h.Get("Content-Type"), "application/x-www-form-urlencoded") {
				sent = []byte(form)
			}
			payload, err := s.Authenticate(tc.h, sent)
			if (err == nil) != tc.ok {
				t.Fatalf("err = %v, want ok=%v", err, tc.ok)
			}
			if tc.ok && string(payload) != string(body) {
				t.Error("payload differs from the JSON sent")
			}
		})
	}
	if _, err := New(Config{}); err == nil || !strings.Contains(err.Error(), "DORAFLOW_GITHUB_WEBHOOK_SECRET") {
		t.Errorf("empty secret: %v", err)
	}
}

// Kind knows GitHub's event types, used or not, and nothing else: only
// these names reach subjects and metric labels.
func TestKind(t *testing.T) {
	s := source(t)
	for _, tc := range []struct{ typ, kind string }{
		{"push", "push"},
		{"deployment_status", "deployment_status"},
		{"ping", "ping"},
		{"star", "star"},
		{"workflow_run", "workflow_run"},
		{"Push", ""},
		{"pushes", ""},
		{"made_up", ""},
	} {
		if got := s.Kind(tc.typ); got != tc.kind {
			t.Errorf("Kind(%q) = %q, want %q", tc.typ, got, tc.kind)
		}
	}
}

// The parser never panics, and whatever it returns is a valid event.
func FuzzParse(f *testing.F) {
	webhooktest.SeedTestdata(f, "push", "deployment", "deployment_status", "pull_request", "issues")
	s := source(f)
	f.Fuzz(func(t *testing.T, typ string, body []byte) {
		events, err := s.Parse(webhook.Delivery{Event: typ, ID: "fuzz", Body: body})
		webhooktest.ValidEvents(t, typ, events, err)
	})
}
