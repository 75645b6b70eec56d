package generic

import (
	"encoding/json"
	"errors"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/doraflow/doraflow/collectors/webhook"
	"github.com/doraflow/doraflow/pkg/event"
)

const (
	token = "api-t0ken"
	sha   = "9fceb02d0ae598e95dc970b74767f19372d61af8"
)

func ts(s string) time.Time {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		panic(err)
	}
	return t.UTC()
}

func tp(s string) *time.Time { t := ts(s); return &t }

func sources(t testing.TB) (*Deployments, *Incidents) {
	t.Helper()
	d, err := NewDeployments(Config{APIToken: token})
	if err != nil {
		t.Fatal(err)
	}
	i, err := NewIncidents(Config{APIToken: token})
	if err != nil {
		t.Fatal(err)
	}
	return d, i
}

func TestParseDeployment(t *testing.T) {
	tests := []struct {
		name string
		body string
		want event.Event
		err  string // the whole error, when refused
	}{
		{
			name: "with id",
			body: `{"id": "deploy-4711", "repo": "acme/api", "sha": "` + sha + `", "environment": "production",
				"status": "success", "started_at": "2026-01-05T10:00:00Z", "finished_at": "2026-01-05T11:04:30+01:00",
				"service": "api-eu", "rollback": true}`,
			want: event.Event{ID: "generic:deployment:acme/api:deploy-4711:success", Source: "generic", Type: event.TypeDeployment,
				Repo: "acme/api", Service: "api-eu", OccurredAt: ts("2026-01-05T10:04:30Z"),
				Deployment: &event.Deployment{ID: "deploy-4711", SHA: sha, Environment: "production", Status: "success", Rollback: true}},
		},
		{
			name: "without id: named by what, where and when",
			body: `{"repo": "group/sub/project", "sha": "` + strings.ToUpper(sha) + `", "environment": "staging",
				"status": "failure", "finished_at": "2026-01-05T10:04:30Z"}`,
			want: event.Event{ID: "generic:deployment:group/sub/project:" + deploymentHash("group/sub/project", sha, "staging", ts("2026-01-05T10:04:30Z")) + ":failure",
				Source: "generic", Type: event.TypeDeployment, Repo: "group/sub/project", Service: "group/sub/project",
				OccurredAt: ts("2026-01-05T10:04:30Z"),
				Deployment: &event.Deployment{ID: deploymentHash("group/sub/project", sha, "staging", ts("2026-01-05T10:04:30Z")),
					SHA: sha, Environment: "staging", Status: "failure"}},
		},
		{
			name: "pending at its start",
			body: `{"id": "d1", "repo": "acme/api", "sha": "9fceb02", "environment": "production", "status": "pending",
				"started_at": "2026-01-05T10:00:00.5Z", "service": null}`,
			want: event.Event{ID: "generic:deployment:acme/api:d1:pending", Source: "generic", Type: event.TypeDeployment,
				Repo: "acme/api", Service: "acme/api", OccurredAt: ts("2026-01-05T10:00:00.5Z"),
				Deployment: &event.Deployment{ID: "d1", SHA: "9fceb02", Environment: "production", Status: "pending"}},
		},
		{
			name: "everything missing",
			body: `{}`,
			err:  "generic: invalid deployment: repo: required; sha: required; environment: required; status: required",
		},
		{
			name: "bad values",
			body: `{"repo": "acme", "sha": "xyz", "environment": "production", "status": "ok", "finished_at": "yesterday"}`,
			err: `generic: invalid deployment: repo: "acme" is not owner/name; sha: "xyz" is not a hex commit sha; ` +
				`status: "ok" is not one of success, failure, error, pending; ` +
				`finished_at: "yesterday" is not an RFC 3339 time like 2026-01-05T10:04:30Z`,
		},
		{
			name: "finished_at required unless pending",
			body: `{"repo": "acme/api", "sha": "` + sha + `", "environment": "production", "status": "success"}`,
			err:  "generic: invalid deployment: finished_at: required when status is success",
		},
		{
			name: "started_at required when pending",
			body: `{"repo": "acme/api", "sha": "` + sha + `", "environment": "production", "status": "pending"}`,
			err:  "generic: invalid deployment: started_at: required when status is pending",
		},
		{
			name: "finished before it started",
			body: `{"repo": "acme/api", "sha": "` + sha + `", "environment": "production", "status": "error",
				"started_at": "2026-01-05T10:00:00Z", "finished_at": "2026-01-05T09:00:00Z"}`,
			err: "generic: invalid deployment: finished_at: before started_at",
		},
		{
			name: "unknown fields and wrong types, each reported once",
			body: `{"repo": "acme/api", "sha": 42, "SHA": "` + sha + `", "environment": "production", "status": "success",
				"finished_at": "2026-01-05T10:04:30Z", "rollback": "yes", "colour": "blue"}`,
			err: `generic: invalid deployment: unknown field "SHA"; unknown field "colour"; rollback: want true or false; sha: want a string`,
		},
		{
			name: "control characters in the id",
			body: `{"id": "a\nb", "repo": "acme/api", "sha": "` + sha + `", "environment": "production", "status": "success",
				"finished_at": "2026-01-05T10:04:30Z"}`,
			err: `generic: invalid deployment: id: "a\nb" contains control characters`,
		},
		{
			name: "zero time",
			body: `{"repo": "acme/api", "sha": "` + sha + `", "environment": "production", "status": "success",
				"finished_at": "0001-01-01T00:00:00Z"}`,
			err: `generic: invalid deployment: finished_at: "0001-01-01T00:00:00Z" is before 1970`,
		},
		{name: "not an object", body: `[1, 2]`, err: "generic: invalid deployment: body: want a JSON object; " +
			"repo: required; sha: required; environment: required; status: required"},
	}
	deployments, _ := sources(t)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := deployments.Parse(webhook.Delivery{Source: "generic", Event: "deployment", Body: []byte(tc.body)})
			check(t, got, err, tc.want, tc.err)
		})
	}
}

func TestParseIncident(t *testing.T) {
	tests := []struct {
		name string
		body string
		want event.Event
		err  string
	}{
		{
			name: "open",
			body: `{"id": "INC-1234", "service": "checkout", "title": "Checkout returns 500", "opened_at": "2026-01-05T11:00:00Z"}`,
			want: event.Event{ID: "generic:incident:INC-1234:open", Source: "generic", Type: event.TypeIncident, Service: "checkout",
				OccurredAt: ts("2026-01-05T11:00:00Z"),
				Incident:   &event.Incident{ID: "generic:INC-1234", Title: "Checkout returns 500", OpenedAt: ts("2026-01-05T11:00:00Z")}},
		},
		{
			name: "resolved, with attribution",
			body: `{"id": "INC-1234", "repo": "acme/checkout", "opened_at": "2026-01-05T11:00:00Z",
				"resolved_at": "2026-01-05T12:15:00Z", "deployment_id": "deploy-4711", "sha": "` + strings.ToUpper(sha) + `"}`,
			want: event.Event{ID: "generic:incident:INC-1234:resolved:2026-01-05T12:15:00Z", Source: "generic", Type: event.TypeIncident,
				Repo: "acme/checkout", OccurredAt: ts("2026-01-05T12:15:00Z"),
				Incident: &event.Incident{ID: "generic:INC-1234", OpenedAt: ts("2026-01-05T11:00:00Z"),
					ResolvedAt: tp("2026-01-05T12:15:00Z"), DeploymentID: "deploy-4711", SHA: sha}},
		},
		{
			name: "everything missing",
			body: `{}`,
			err:  "generic: invalid incident: id: required; service: required when repo is absent; opened_at: required",
		},
		{
			name: "resolved before it opened",
			body: `{"id": "i", "service": "s", "opened_at": "2026-01-05T11:00:00Z", "resolved_at": "2026-01-05T10:00:00Z"}`,
			err:  "generic: invalid incident: resolved_at: before opened_at",
		},
		{
			name: "bad values",
			body: `{"id": "i", "repo": "a/", "opened_at": "2026-01-05", "sha": "g00d", "deployment_id": 7, "severity": "high"}`,
			err: `generic: invalid incident: deployment_id: want a string; unknown field "severity"; repo: "a/" is not owner/name; ` +
				`opened_at: "2026-01-05" is not an RFC 3339 time like 2026-01-05T10:04:30Z; sha: "g00d" is not a hex commit sha`,
		},
	}
	_, incidents := sources(t)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := incidents.Parse(webhook.Delivery{Source: "generic", Event: "incident", Body: []byte(tc.body)})
			check(t, got, err, tc.want, tc.err)
		})
	}
}

func check(t *testing.T, got []event.Event, err error, want event.Event, wantErr string) {
	t.Helper()
	if wantErr != "" {
		if err == nil || err.Error() != wantErr {
			t.Fatalf("got error\n%v\nwant\n%s", err, wantErr)
		}
		var fe *fieldError
		if !errors.As(err, &fe) && !strings.Contains(wantErr, "unknown field") {
			t.Errorf("%v does not unwrap to a fieldError", err)
		}
		return
	}
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, []event.Event{want}) {
		g, _ := json.MarshalIndent(got, "", " ")
		w, _ := json.MarshalIndent(want, "", " ")
		t.Fatalf("got\n%s\nwant\n%s", g, w)
	}
	if err := got[0].Validate(); err != nil {
		t.Error(err)
	}
}

// TestDeploymentStatusesShareAnID: without a client id, the statuses of one
// attempt (same started_at) are one deployment, each status its own event.
func TestDeploymentStatusesShareAnID(t *testing.T) {
	deployments, _ := sources(t)
	parse := func(body string) event.Event {
		t.Helper()
		got, err := deployments.Parse(webhook.Delivery{Body: []byte(body)})
		if err != nil {
			t.Fatal(err)
		}
		return got[0]
	}
	base := `"repo": "acme/api", "sha": "` + sha + `", "environment": "production", "started_at": "2026-01-05T10:00:00Z"`
	pending := parse(`{` + base + `, "status": "pending"}`)
	success := parse(`{` + base + `, "status": "success", "finished_at": "2026-01-05T10:05:00Z"}`)
	if pending.Deployment.ID != success.Deployment.ID || pending.ID == success.ID {
		t.Fatalf("pending %s/%s, success %s/%s: want one deployment, two events",
			pending.ID, pending.Deployment.ID, success.ID, success.Deployment.ID)
	}
}

func TestIdentify(t *testing.T) {
	deployments, incidents := sources(t)
	tests := []struct {
		name    string
		src     webhook.Source
		body    string
		typ, id string
	}{
		{name: "deployment", src: deployments, typ: "deployment", id: "generic:deployment:acme/api:d1:success",
			body: `{"id": "d1", "repo": "acme/api", "sha": "` + sha + `", "environment": "production", "status": "success", "finished_at": "2026-01-05T10:04:30Z"}`},
		{name: "bad deployment: body hash", src: deployments, typ: "deployment", body: `{"id": "d1"}`},
		{name: "incident", src: incidents, typ: "incident", id: "generic:incident:i1:open",
			body: `{"id": "i1", "service": "s", "opened_at": "2026-01-05T11:00:00Z"}`},
		{name: "bad incident: body hash", src: incidents, typ: "incident", body: `not json`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			typ, id, err := tc.src.Identify(http.Header{}, []byte(tc.body))
			if err != nil || typ != tc.typ || id != tc.id {
				t.Fatalf("got %q %q %v; want %q %q", typ, id, err, tc.typ, tc.id)
			}
		})
	}
}

func TestAuthenticate(t *testing.T) {
	deployments, incidents := sources(t)
	tests := []struct {
		name, header, err string
	}{
		{name: "good token", header: "Bearer " + token},
		{name: "scheme in any case", header: "bearer " + token},
		{name: "wrong token", header: "Bearer nope", err: "generic: bearer token does not match the configured API token"},
		{name: "token prefix", header: "Bearer " + token[:3], err: "generic: bearer token does not match the configured API token"},
		{name: "basic auth", header: "Basic " + token, err: "generic: missing `Authorization: Bearer <token>` header"},
		{name: "missing", err: "generic: missing `Authorization: Bearer <token>` header"},
	}
	for _, src := range []webhook.Source{deployments, incidents} {
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				h := http.Header{}
				if tc.header != "" {
					h.Set("Authorization", tc.header)
				}
				body := []byte(`{}`)
				got, err := src.Authenticate(h, body)
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
}

func TestConfig(t *testing.T) {
	if _, err := NewDeployments(Config{}); err == nil || !strings.Contains(err.Error(), "DORAFLOW_API_TOKEN") {
		t.Fatalf("got %v; want an error naming DORAFLOW_API_TOKEN", err)
	}
	if _, err := NewIncidents(Config{}); err == nil {
		t.Fatal("want an error")
	}
}

// FuzzParse checks that no body panics either parser and that whatever they
// return is an event the processor accepts, with an id Identify agrees on.
func FuzzParse(f *testing.F) {
	for _, seed := range []string{
		`{"id": "deploy-4711", "repo": "acme/api", "sha": "` + sha + `", "environment": "production", "status": "success",
			"started_at": "2026-01-05T10:00:00Z", "finished_at": "2026-01-05T10:04:30Z", "service": "api", "rollback": false}`,
		`{"repo": "acme/api", "sha": "9fceb02", "environment": "staging", "status": "pending", "started_at": "2026-01-05T10:00:00Z"}`,
		`{"id": "INC-1", "service": "checkout", "title": "500s", "opened_at": "2026-01-05T11:00:00Z", "resolved_at": "2026-01-05T12:15:00Z",
			"deployment_id": "deploy-4711", "sha": "` + sha + `"}`,
		`{"id": "INC-2", "repo": "acme/api", "opened_at": "2026-01-05T11:00:00+02:00"}`,
		`{}`, `null`, `[]`, `{"sha": 1}`,
	} {
		f.Add(seed)
	}
	deployments, incidents := sources(f)
	f.Fuzz(func(t *testing.T, body string) {
		for _, src := range []webhook.Source{deployments, incidents} {
			events, err := src.Parse(webhook.Delivery{Body: []byte(body)})
			_, id, idErr := src.Identify(http.Header{}, []byte(body))
			if idErr != nil {
				t.Fatal(idErr)
			}
			if err != nil {
				if events != nil || id != "" {
					t.Fatalf("events %v, delivery id %q with error %v", events, id, err)
				}
				continue
			}
			if len(events) != 1 || events[0].ID != id {
				t.Fatalf("events %v, delivery id %q", events, id)
			}
			if err := events[0].Validate(); err != nil {
				t.Fatal(err)
			}
		}
	})
}
