package gitlab

import (
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/doraflow/doraflow/collectors/webhook"
	"github.com/doraflow/doraflow/collectors/webhook/webhooktest"
	"github.com/doraflow/doraflow/pkg/event"
)

const token = "t0ken"

func newSource(t testing.TB, pipelines bool) *Source {
	t.Helper()
	s, err := New(Config{WebhookToken: token, PipelineDeployments: pipelines})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func ts(s string) time.Time {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return t
}

func tp(s string) *time.Time { t := ts(s); return &t }

func readTestdata(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// mutated returns a testdata payload with fields changed: each key is a
// dotted path into the JSON object, each value its new value.
func mutated(t testing.TB, name string, set map[string]any) []byte {
	t.Helper()
	var doc map[string]any
	if err := json.Unmarshal(readTestdata(t, name), &doc); err != nil {
		t.Fatal(err)
	}
	for path, v := range set {
		keys := strings.Split(path, ".")
		m := doc
		for _, k := range keys[:len(keys)-1] {
			m = m[k].(map[string]any)
		}
		m[keys[len(keys)-1]] = v
	}
	b, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

const (
	pushBefore = "95790bf891e76fee5e1747ab589903a6a1f80f22"
	pushAfter  = "da1560886d4f094c3e6c9ef40349f7d38b5d27d7"
	pushFirst  = "b6568db1bc1dcd7f8b4d5a946b0b91f9dacd7327"
)

func pushEvent(truncated bool) event.Event {
	return event.Event{
		ID:         "gitlab:push:mike/diaspora:refs/heads/master:" + pushBefore + ":" + pushAfter,
		Source:     "gitlab",
		Type:       event.TypePush,
		Repo:       "mike/diaspora",
		OccurredAt: ts("2012-01-03T21:36:29Z"),
		Push: &event.Push{
			Ref: "refs/heads/master", Before: pushBefore, After: pushAfter,
			Commits: []event.Commit{
				{SHA: pushFirst, Time: ts("2011-12-12T12:27:31Z")},
				{SHA: pushAfter, Time: ts("2012-01-03T21:36:29Z")},
			},
			Truncated: truncated,
		},
	}
}

func mergeEvent(sha string) event.Event {
	return event.Event{
		ID:         "gitlab:merge:gitlabhq/gitlab-test!1",
		Source:     "gitlab",
		Type:       event.TypeMerge,
		Repo:       "gitlabhq/gitlab-test",
		OccurredAt: ts("2013-12-04T09:10:11Z"),
		Merge:      &event.Merge{Number: 1, MergeSHA: sha, HeadSHA: pushAfter, Target: "master"},
	}
}

func deploymentEvent(gitlabStatus, status string) event.Event {
	return event.Event{
		ID:         "gitlab:deployment:root/test-deployment-webhooks:15:" + gitlabStatus,
		Source:     "gitlab",
		Type:       event.TypeDeployment,
		Repo:       "root/test-deployment-webhooks",
		Service:    "root/test-deployment-webhooks",
		OccurredAt: ts("2021-04-28T19:50:00Z"), // "2021-04-28 21:50:00 +0200"
		Deployment: &event.Deployment{ID: "15", SHA: "279484c09fbe69ededfced8c1bb6e6d24616b468",
			Environment: "staging", Status: status},
	}
}

func pipelineEvent(gitlabStatus, status string) event.Event {
	return event.Event{
		ID:         "gitlab:pipeline:gitlab-org/gitlab-test:31:" + gitlabStatus,
		Source:     "gitlab",
		Type:       event.TypeDeployment,
		Repo:       "gitlab-org/gitlab-test",
		Service:    "gitlab-org/gitlab-test",
		OccurredAt: ts("2016-08-12T15:26:29Z"),
		Deployment: &event.Deployment{ID: "pipeline:31", SHA: "bcbb5ec396a2c0f828686f14fac9b80b780504f2",
			Environment: "production", Status: status},
	}
}

func incidentEvent(action, updated string, resolved *time.Time) event.Event {
	return event.Event{
		ID:         "gitlab:issue:gitlabhq/gitlab-test#23:" + action + ":" + updated,
		Source:     "gitlab",
		Type:       event.TypeIncident,
		Repo:       "gitlabhq/gitlab-test",
		Service:    "gitlabhq/gitlab-test",
		OccurredAt: ts(updated),
		Incident: &event.Incident{ID: "gitlab:gitlabhq/gitlab-test#23", Title: "New API: create/update/delete file",
			OpenedAt: ts("2013-12-03T17:15:43Z"), ResolvedAt: resolved},
	}
}

func TestParse(t *testing.T) {
	deleted := pushEvent(false)
	deleted.ID = "gitlab:push:mike/diaspora:refs/heads/master:" + pushAfter + ":" + event.ZeroSHA
	deleted.OccurredAt = time.Unix(0, 0).UTC()
	deleted.Push = &event.Push{Ref: "refs/heads/master", Before: pushAfter, After: event.ZeroSHA, Deleted: true, Commits: []event.Commit{}}

	tests := []struct {
		name      string
		header    string
		file      string
		set       map[string]any // changes to the file, if any
		pipelines bool
		want      []event.Event
		ignored   string // reason, when ignored
		err       string // part of the error, when refused
	}{
		// GitLab's own sample lists 2 of 4 commits: truncated.
		{name: "push truncated", header: "Push Hook", file: "push.json", want: []event.Event{pushEvent(true)}},
		{name: "push complete", header: "Push Hook", file: "push_complete.json", want: []event.Event{pushEvent(false)}},
		{name: "push newest first is reordered", header: "Push Hook", file: "push_complete.json",
			set:  map[string]any{"commits": reversedCommits(t)},
			want: []event.Event{pushEvent(false)}},
		{name: "branch deleted", header: "Push Hook", file: "push_delete.json", ignored: "push without new commits"},
		{name: "push to a tag ref", header: "Push Hook", file: "push.json", set: map[string]any{"ref": "refs/tags/v1"},
			ignored: "push not to a branch"},
		{name: "push without project path", header: "Push Hook", file: "push.json",
			set: map[string]any{"project.path_with_namespace": ""}, err: "project.path_with_namespace missing"},
		{name: "push with newline in project path", header: "Push Hook", file: "push.json",
			set: map[string]any{"project.path_with_namespace": "a/b\nc"}, err: "control characters"},
		{name: "push commit without timestamp", header: "Push Hook", file: "push.json",
			set: map[string]any{"commits": []any{map[string]any{"id": pushAfter}}}, err: "commits[0]: id and timestamp are required"},
		{name: "push with short after", header: "Push Hook", file: "push.json", set: map[string]any{"after": "da15608"},
			err: "must be commit ids"},
		{name: "tag push", header: "Tag Push Hook", file: "push.json", ignored: "event type not used"},

		{name: "merge request opened", header: "Merge Request Hook", file: "merge_request.json", ignored: "merge request not merged"},
		{name: "merged", header: "Merge Request Hook", file: "merge_request_merged.json",
			want: []event.Event{mergeEvent("4f1a2b3c4d5e6f708192a3b4c5d6e7f809a1b2c3")}},
		{name: "squashed fast-forward", header: "Merge Request Hook", file: "merge_request_squashed.json",
			want: []event.Event{mergeEvent("aa11bb22cc33dd44ee55ff6677889900aabbccdd")}},
		{name: "fast-forward", header: "Merge Request Hook", file: "merge_request_merged.json",
			set:  map[string]any{"object_attributes.merge_commit_sha": nil},
			want: []event.Event{mergeEvent(pushAfter)}},
		{name: "merged without updated_at", header: "Merge Request Hook", file: "merge_request_merged.json",
			set: map[string]any{"object_attributes.updated_at": ""}, err: "object_attributes.updated_at missing"},

		{name: "deployment success", header: "Deployment Hook", file: "deployment.json",
			want: []event.Event{deploymentEvent("success", event.StatusSuccess)}},
		{name: "deployment failed", header: "Deployment Hook", file: "deployment_failed.json",
			want: []event.Event{deploymentEvent("failed", event.StatusFailure)}},
		{name: "deployment canceled", header: "Deployment Hook", file: "deployment.json", set: map[string]any{"status": "canceled"},
			want: []event.Event{deploymentEvent("canceled", event.StatusError)}},
		{name: "deployment running", header: "Deployment Hook", file: "deployment.json", set: map[string]any{"status": "running"},
			want: []event.Event{deploymentEvent("running", event.StatusPending)}},
		{name: "deployment blocked", header: "Deployment Hook", file: "deployment.json", set: map[string]any{"status": "blocked"},
			ignored: "deployment status not used"},
		{name: "deployment commit_url without sha", header: "Deployment Hook", file: "deployment.json",
			set: map[string]any{"commit_url": "http://10.126.0.2:3000/root/test-deployment-webhooks/-/commit/279484c0"},
			err: "does not end in a commit id"},
		{name: "deployment commit_url of another commit", header: "Deployment Hook", file: "deployment.json",
			set: map[string]any{"short_sha": "aaaaaaaa"}, err: "does not match short_sha"},
		{name: "deployment bad time", header: "Deployment Hook", file: "deployment.json",
			set: map[string]any{"status_changed_at": "2021-04-28 21:50:00 CEST"}, err: "is not a time GitLab sends"},

		{name: "pipeline, pipeline deployments off", header: "Pipeline Hook", file: "pipeline.json", ignored: "pipeline deployments disabled"},
		{name: "pipeline success", header: "Pipeline Hook", file: "pipeline.json", pipelines: true,
			want: []event.Event{pipelineEvent("success", event.StatusSuccess)}},
		{name: "pipeline failed", header: "Pipeline Hook", file: "pipeline_failed.json", pipelines: true,
			want: []event.Event{pipelineEvent("failed", event.StatusFailure)}},
		{name: "pipeline running", header: "Pipeline Hook", file: "pipeline.json", pipelines: true,
			set: map[string]any{"object_attributes.status": "running"}, ignored: "pipeline not finished"},
		{name: "pipeline on a branch", header: "Pipeline Hook", file: "pipeline_branch.json", pipelines: true,
			ignored: "pipeline not on the default branch"},
		{name: "pipeline on a tag", header: "Pipeline Hook", file: "pipeline.json", pipelines: true,
			set: map[string]any{"object_attributes.tag": true}, ignored: "pipeline not on the default branch"},

		{name: "issue", header: "Issue Hook", file: "issue.json", ignored: "issue not an incident"},
		{name: "incident opened", header: "Issue Hook", file: "incident_open.json",
			want: []event.Event{incidentEvent("open", "2013-12-03T17:15:43Z", nil)}},
		{name: "confidential incident", header: "Confidential Issue Hook", file: "incident_open.json",
			want: []event.Event{incidentEvent("open", "2013-12-03T17:15:43Z", nil)}},
		{name: "incident by issue_type", header: "Issue Hook", file: "incident_legacy_type.json",
			want: []event.Event{incidentEvent("open", "2013-12-03T17:15:43Z", nil)}},
		{name: "incident closed", header: "Issue Hook", file: "incident_closed.json",
			want: []event.Event{incidentEvent("close", "2013-12-03T19:00:05Z", tp("2013-12-03T19:00:04Z"))}},
		{name: "incident closed without closed_at", header: "Issue Hook", file: "incident_closed.json",
			set:  map[string]any{"object_attributes.closed_at": nil},
			want: []event.Event{incidentEvent("close", "2013-12-03T19:00:05Z", tp("2013-12-03T19:00:05Z"))}},
		{name: "incident closed before it opened", header: "Issue Hook", file: "incident_closed.json",
			set: map[string]any{"object_attributes.closed_at": "2013-12-01T00:00:00Z"}, err: "is before created_at"},

		{name: "note", header: "Note Hook", file: "issue.json", ignored: "event type not used"},
		{name: "not JSON for go-gitlab", header: "Push Hook", file: "push.json", set: map[string]any{"total_commits_count": "4"},
			err: "gitlab: parse Push Hook: json: cannot unmarshal"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			body := readTestdata(t, tc.file)
			if tc.set != nil {
				body = mutated(t, tc.file, tc.set)
			}
			got, err := newSource(t, tc.pipelines).Parse(webhook.Delivery{Source: "gitlab", Event: tc.header, Body: body})
			switch {
			case tc.ignored != "":
				if !errors.Is(err, webhook.ErrIgnored) || err.Error() != "ignored: "+tc.ignored {
					t.Fatalf("got %v, %v; want ignored: %s", got, err, tc.ignored)
				}
				return
			case tc.err != "":
				if err == nil || errors.Is(err, webhook.ErrIgnored) || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("got %v, %v; want error containing %q", got, err, tc.err)
				}
				return
			case err != nil:
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				g, _ := json.MarshalIndent(got, "", " ")
				w, _ := json.MarshalIndent(tc.want, "", " ")
				t.Fatalf("got\n%s\nwant\n%s", g, w)
			}
			for i := range got {
				if err := got[i].Validate(); err != nil {
					t.Error(err)
				}
			}
		})
	}
}

// reversedCommits is push_complete.json's commit list, newest first.
func reversedCommits(t *testing.T) []any {
	var doc struct{ Commits []any }
	if err := json.Unmarshal(readTestdata(t, "push_complete.json"), &doc); err != nil {
		t.Fatal(err)
	}
	return []any{doc.Commits[1], doc.Commits[0]}
}

func TestAuthenticate(t *testing.T) {
	s := newSource(t, false)
	body := []byte(`{"object_kind":"push"}`)
	tests := []struct {
		name  string
		token string
		err   string
	}{
		{name: "good token", token: token},
		{name: "wrong token", token: "t0ken2", err: "gitlab: X-Gitlab-Token does not match the configured token"},
		{name: "missing", err: "gitlab: missing X-Gitlab-Token header"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := http.Header{}
			if tc.token != "" {
				h.Set("X-Gitlab-Token", tc.token)
			}
			got, err := s.Authenticate(h, body)
			if tc.err != "" {
				if err == nil || err.Error() != tc.err {
					t.Fatalf("got %v; want %q", err, tc.err)
				}
				return
			}
			if err != nil || string(got) != string(body) {
				t.Fatalf("got %q, %v", got, err)
			}
		})
	}
}

func TestIdentify(t *testing.T) {
	s := newSource(t, false)
	tests := []struct {
		name            string
		header          map[string]string
		wantType, want  string
		wantErrContains string
	}{
		{name: "idempotency key first", header: map[string]string{"X-Gitlab-Event": "Push Hook",
			"Idempotency-Key": "k1", "X-Gitlab-Event-UUID": "u1"}, wantType: "Push Hook", want: "k1"},
		{name: "event uuid", header: map[string]string{"X-Gitlab-Event": "Push Hook", "X-Gitlab-Event-UUID": "u1"},
			wantType: "Push Hook", want: "u1"},
		{name: "no id: body hash", header: map[string]string{"X-Gitlab-Event": "Issue Hook"}, wantType: "Issue Hook"},
		{name: "no event", header: map[string]string{"X-Gitlab-Event-UUID": "u1"}, wantErrContains: "missing X-Gitlab-Event"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := http.Header{}
			for k, v := range tc.header {
				h.Set(k, v)
			}
			typ, id, err := s.Identify(h, nil)
			if tc.wantErrContains != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErrContains) {
					t.Fatalf("got %v; want %q", err, tc.wantErrContains)
				}
				return
			}
			if err != nil || typ != tc.wantType || id != tc.want {
				t.Fatalf("got %q %q %v; want %q %q", typ, id, err, tc.wantType, tc.want)
			}
		})
	}
}

func TestConfig(t *testing.T) {
	if _, err := New(Config{}); err == nil || !strings.Contains(err.Error(), "DORAFLOW_GITLAB_WEBHOOK_TOKEN") {
		t.Fatalf("got %v; want an error naming DORAFLOW_GITLAB_WEBHOOK_TOKEN", err)
	}
}

func TestParseTime(t *testing.T) {
	for in, want := range map[string]string{
		"2021-04-28 21:50:00 +0200":   "2021-04-28T19:50:00Z",
		"2016-08-12 15:23:28 UTC":     "2016-08-12T15:23:28Z",
		"2013-12-03T17:15:43Z":        "2013-12-03T17:15:43Z",
		"2013-12-03T17:15:43.5+01:00": "2013-12-03T16:15:43.5Z",
	} {
		got, err := parseTime("f", in)
		if err != nil || !got.Equal(ts(want)) || got.Location() != time.UTC {
			t.Errorf("parseTime(%q) = %v, %v; want %s", in, got, err, want)
		}
	}
	for _, in := range []string{"", "2016-08-12 15:23:28 PDT", "yesterday"} {
		if _, err := parseTime("f", in); err == nil {
			t.Errorf("parseTime(%q): want an error", in)
		}
	}
}

var fuzzHeaders = []string{"Push Hook", "Merge Request Hook", "Deployment Hook", "Pipeline Hook",
	"Issue Hook", "Confidential Issue Hook", "Note Hook", "Tag Push Hook"}

// FuzzParse checks that no payload panics the parser and that whatever it
// returns is an event the processor accepts.
func FuzzParse(f *testing.F) {
	webhooktest.SeedTestdata(f, fuzzHeaders...)
	s := newSource(f, true)
	f.Fuzz(func(t *testing.T, header string, body []byte) {
		events, err := s.Parse(webhook.Delivery{Source: "gitlab", Event: header, Body: body})
		if err != nil {
			if events != nil {
				t.Fatalf("events %v with error %v", events, err)
			}
			return
		}
		if len(events) == 0 {
			t.Fatal("no events and no error")
		}
		for i := range events {
			if err := events[i].Validate(); err != nil {
				t.Fatal(err)
			}
		}
	})
}

// Kind knows GitLab's event types, used or not, and nothing else.
func TestKind(t *testing.T) {
	s := newSource(t, false)
	for _, tc := range []struct{ typ, kind string }{
		{"Push Hook", "Push Hook"},
		{"Deployment Hook", "Deployment Hook"},
		{"Pipeline Hook", "Pipeline Hook"},
		{"Note Hook", "Note Hook"},
		{"push hook", ""},
		{"Made Up Hook", ""},
	} {
		if got := s.Kind(tc.typ); got != tc.kind {
			t.Errorf("Kind(%q) = %q, want %q", tc.typ, got, tc.kind)
		}
	}
}
