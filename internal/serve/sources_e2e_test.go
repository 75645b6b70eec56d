package serve_test

// End-to-end tests of the sources other than GitHub: each one posts payloads
// in the shape its sender sends (the collectors' testdata, rewritten into the
// report window) to the real HTTP endpoint of a running doraflow, waits for
// the processor, and checks the report against values computed by hand.

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/doraflow/doraflow/internal/githubtest"
	"github.com/doraflow/doraflow/internal/report"
	"github.com/doraflow/doraflow/internal/serve"
	"github.com/doraflow/doraflow/internal/testenv"
	"github.com/doraflow/doraflow/pkg/config"
	"github.com/doraflow/doraflow/pkg/dora"
	"github.com/doraflow/doraflow/processor/correlate"
)

// The secrets of the sources under test, one per source.
const (
	srcGitLabToken     = "gl-t0ken"
	srcPagerDutySecret = "pd-s3cret"
	srcOpsgenieSecret  = "og-s3cret"
	srcAPIToken        = "api-t0ken"
	srcCDEventsToken   = "cde-t0ken"
)

// srcDelete, as a value in srcFixture's set, removes the field.
var srcDelete = &struct{}{}

// srcFixture reads a collector's testdata payload and rewrites fields: each
// key of set is a dotted path into the JSON object (missing objects on the
// way are created), each value the field's new value. Numbers are kept as
// written (epoch nanoseconds do not survive a float64).
func srcFixture(t *testing.T, collector, name string, set map[string]any) []byte {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("..", "..", "collectors", collector, "testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var doc map[string]any
	if err := dec.Decode(&doc); err != nil {
		t.Fatalf("%s/%s: %v", collector, name, err)
	}
	for path, v := range set {
		keys := strings.Split(path, ".")
		m := doc
		for _, k := range keys[:len(keys)-1] {
			next, ok := m[k].(map[string]any)
			if !ok {
				next = map[string]any{}
				m[k] = next
			}
			m = next
		}
		if v == srcDelete {
			delete(m, keys[len(keys)-1])
		} else {
			m[keys[len(keys)-1]] = v
		}
	}
	b, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// srcRequest is a POST of body to path on srv with headers.
func srcRequest(srv *serve.Server, path string, body []byte, header map[string]string) *http.Request {
	r, _ := http.NewRequest(http.MethodPost, "http://"+srv.Addr()+path, bytes.NewReader(body))
	r.Header.Set("Content-Type", "application/json")
	for k, v := range header {
		r.Header.Set(k, v)
	}
	return r
}

// srcSend sends req and checks the answer's status and that its body
// contains reason.
func srcSend(t *testing.T, req *http.Request, code int, reason string) {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != code || !strings.Contains(string(body), reason) {
		t.Fatalf("%s %s: got %d %s, want %d with %q", req.Method, req.URL.Path, resp.StatusCode, body, code, reason)
	}
}

// srcAccepted sends req and expects 202 with the number of events.
func srcAccepted(t *testing.T, req *http.Request, events int) {
	t.Helper()
	srcSend(t, req, http.StatusAccepted, fmt.Sprintf(`"events":%d`, events))
}

// srcConfig is testConfig with every source's secret set.
func srcConfig(t *testing.T) config.Config {
	cfg := testConfig(t, testenv.ClickHouse(t))
	cfg.GitLab.WebhookToken = srcGitLabToken
	cfg.PagerDuty.WebhookSecret = srcPagerDutySecret
	cfg.Opsgenie.Secret = srcOpsgenieSecret
	cfg.API.Token = srcAPIToken
	cfg.CDEvents.Token = srcCDEventsToken
	return cfg
}

// srcServices gives team the incident-side services.
func srcServices(t *testing.T, cfg *config.Config, team string, services ...string) {
	t.Helper()
	for i := range cfg.Teams {
		if cfg.Teams[i].Name == team {
			cfg.Teams[i].Services = append(cfg.Teams[i].Services, services...)
			if err := cfg.Validate(); err != nil {
				t.Fatal(err)
			}
			return
		}
	}
	t.Fatalf("no team %s", team)
}

// srcWant is the report over [day 1, day 11) where only team has measured
// anything (a): every other configured team is empty and the total is a.
func srcWant(cfg config.Config, team string, a dora.Aggregates) report.Report {
	b := dora.Benchmark2023
	window := 10 * 24 * time.Hour
	r := report.Report{Since: at(1, 0, 0), Until: at(11, 0, 0), Benchmark: "2023"}
	var names []string
	for _, tm := range cfg.Teams {
		names = append(names, tm.Name)
	}
	slices.Sort(names) // as the report sorts them
	for _, name := range names {
		if name == team {
			r.Teams = append(r.Teams, b.Metrics(name, a, window))
		} else {
			r.Teams = append(r.Teams, b.Metrics(name, dora.Aggregates{}, window))
		}
	}
	r.Total = b.Metrics("*", a, window)
	return r
}

// srcIncidents are the stored incident facts by incident id: how each was
// attributed, which the report does not show.
func srcIncidents(t *testing.T, srv *serve.Server) map[string]correlate.IncidentFact {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := srv.WaitIdle(ctx); err != nil {
		t.Fatal(err)
	}
	facts, err := srv.Store().Facts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]correlate.IncidentFact{}
	for _, r := range facts.Incidents {
		out[r.Fact.ID] = r.Fact
	}
	return out
}

func srcAttributed(t *testing.T, srv *serve.Server, incident, how, deployment string) {
	t.Helper()
	f, ok := srcIncidents(t, srv)[incident]
	if !ok {
		t.Fatalf("incident %s not stored", incident)
	}
	if f.Attribution != how || f.DeploymentID != deployment {
		t.Errorf("incident %s attributed %q to deployment %q, want %q to %q", incident, f.Attribution, f.DeploymentID, how, deployment)
	}
}

// GitLab: a push, a deployment of it, a merged merge request and an
// incident issue, for project acme/pay-gitlab (team payments).
//
// By hand:
//
//	push: commits A 2026-01-02 09:00+01:00 (08:00Z) and B 09:30Z, from zeros.
//	deployment 41: running at 12:25Z, success at "2026-01-02 13:30:00 +0100"
//	  = 12:30Z, to production, commit_url ending in B → one production
//	  deployment shipping A and B: leads A 4h30m = 16200s, B 3h = 10800s.
//	  ClickHouse's quantileExact takes the element at ⌊q·n⌋ of the sorted
//	  leads [10800 16200]: median (⌊1.0⌋ = 1) and p90 (⌊1.8⌋ = 1) are 16200.
//	merge request !5 merged as B (a true merge commit whose parent is A):
//	  no rewrite, nothing changes.
//	incident #9 (type Incident): opened 14:00Z, closed 16:30Z → TTR 2h30m
//	  = 9000s; its service is the project, so it is blamed on deployment 41
//	  (service match), which failed and recovered at 16:30: 4h = 14400s.
func TestGitLabEndToEnd(t *testing.T) {
	cfg := srcConfig(t)
	srv := start(t, cfg)
	defer stop(srv)
	const project = "acme/pay-gitlab"
	zero := strings.Repeat("0", 40)
	a, b := githubtest.SHA("gl-a"), githubtest.SHA("gl-b")
	gitlab := func(event, key string, body []byte) *http.Request {
		return srcRequest(srv, "/webhooks/gitlab", body, map[string]string{
			"X-Gitlab-Token": srcGitLabToken, "X-Gitlab-Event": event,
			"Idempotency-Key": key, "X-Gitlab-Event-UUID": key + "-uuid", "X-Gitlab-Instance": "https://gitlab.example.com"})
	}
	commit := func(sha, ts string) map[string]any {
		return map[string]any{"id": sha, "message": "change " + sha[:7], "title": "change " + sha[:7], "timestamp": ts,
			"url":    "https://gitlab.example.com/" + project + "/-/commit/" + sha,
			"author": map[string]any{"name": "Dev", "email": "dev@example.com"},
			"added":  []string{}, "modified": []string{"main.go"}, "removed": []string{}}
	}
	push := srcFixture(t, "gitlab", "push.json", map[string]any{
		"before": zero, "after": b, "checkout_sha": b, "ref": "refs/heads/main",
		"project.path_with_namespace": project, "project.default_branch": "main",
		"commits":             []any{commit(a, "2026-01-02T09:00:00+01:00"), commit(b, "2026-01-02T09:30:00Z")},
		"total_commits_count": 2,
	})
	deployment := func(status, changed string) []byte {
		return srcFixture(t, "gitlab", "deployment.json", map[string]any{
			"status": status, "status_changed_at": changed, "deployment_id": 41,
			"environment": "production", "environment_slug": "production",
			"project.path_with_namespace": project, "short_sha": b[:8],
			"commit_url": "https://gitlab.example.com/" + project + "/-/commit/" + b,
		})
	}
	merged := srcFixture(t, "gitlab", "merge_request_merged.json", map[string]any{
		"project.path_with_namespace": project, "object_attributes.iid": 5, "object_attributes.target_branch": "main",
		"object_attributes.merge_commit_sha": b, "object_attributes.last_commit.id": a,
		"object_attributes.updated_at": "2026-01-02 09:35:00 UTC",
	})
	incidentOpen := srcFixture(t, "gitlab", "incident_open.json", map[string]any{
		"project.path_with_namespace": project, "object_attributes.iid": 9,
		"object_attributes.created_at": "2026-01-02T14:00:00Z", "object_attributes.updated_at": "2026-01-02T14:00:00Z",
	})
	incidentClosed := srcFixture(t, "gitlab", "incident_closed.json", map[string]any{
		"project.path_with_namespace": project, "object_attributes.iid": 9,
		"object_attributes.created_at": "2026-01-02T14:00:00Z", "object_attributes.updated_at": "2026-01-02 16:30:05 UTC",
		"object_attributes.closed_at": "2026-01-02 16:30:00 UTC",
	})

	srcAccepted(t, gitlab("Push Hook", "k-push", push), 1)
	srcAccepted(t, gitlab("Deployment Hook", "k-dep-running", deployment("running", "2026-01-02 13:25:00 +0100")), 1)
	srcAccepted(t, gitlab("Deployment Hook", "k-dep-success", deployment("success", "2026-01-02 13:30:00 +0100")), 1)
	srcAccepted(t, gitlab("Merge Request Hook", "k-mr", merged), 1)
	srcAccepted(t, gitlab("Issue Hook", "k-inc-open", incidentOpen), 1)
	srcAccepted(t, gitlab("Issue Hook", "k-inc-closed", incidentClosed), 1)
	// GitLab retries with the same Idempotency-Key: accepted, counted once.
	srcSend(t, gitlab("Push Hook", "k-push", push), http.StatusAccepted, "accepted")
	srcSend(t, gitlab("Issue Hook", "k-inc-closed", incidentClosed), http.StatusAccepted, "accepted")
	// A hook doraflow does not use, and a wrong token.
	srcSend(t, gitlab("Note Hook", "k-note", []byte(`{"object_kind": "note"}`)), http.StatusOK, "ignored")
	wrong := gitlab("Push Hook", "k-wrong", push)
	wrong.Header.Set("X-Gitlab-Token", "not-the-token")
	srcSend(t, wrong, http.StatusUnauthorized, "X-Gitlab-Token")

	got := reportOf(t, srv, cfg)
	assertReport(t, got, srcWant(cfg, "payments", dora.Aggregates{
		Deployments: 1, Failed: 1, Recovered: 1, RecoveryMedianSeconds: 14400,
		Changes: 2, LeadTimeMedianSeconds: 16200, LeadTimeP90: 16200,
		Incidents: 1, Resolved: 1, TimeToRestoreMedianSeconds: 9000,
	}))
	pay := got.Teams[1]
	if pay.Team != "payments" || pay.Deployments != 1 || pay.Changes != 2 || *pay.LeadTimeMedianSeconds != 16200 ||
		*pay.LeadTimeP90Seconds != 16200 || pay.Incidents != 1 || *pay.TimeToRestoreMedian != 9000 ||
		pay.FailedDeployments != 1 || *pay.ChangeFailureRate != 1 {
		t.Errorf("payments: %+v", pay)
	}
	srcAttributed(t, srv, "gitlab:"+project+"#9", correlate.AttributedService, "41")
}

// srcPagerDutyRequest is a PagerDuty Webhooks v3 delivery, signed with
// secret.
func srcPagerDutyRequest(srv *serve.Server, secret, webhookID string, body []byte) *http.Request {
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write(body)
	return srcRequest(srv, "/webhooks/pagerduty", body, map[string]string{
		"X-PagerDuty-Signature":  "v1=" + hex.EncodeToString(mac.Sum(nil)),
		"X-Webhook-Id":           webhookID,
		"X-Webhook-Subscription": "PSUB123",
		"User-Agent":             "PagerDuty-Webhook/V3.0",
	})
}

// PagerDuty: a GitHub deployment of acme/pay-api, then an incident on the
// PagerDuty service "payments-api", which team payments lists.
//
// By hand:
//
//	deployment 501 of acme/pay-api to production, success at day 3 09:00.
//	incident PPAY001 created day 3 10:00:00 (triggered event at 10:00:05),
//	  acknowledged at 10:10 (ignored), resolved at 11:15 → TTR 1h15m =
//	  4500s. Service payments-api names no deployed service or repo, so the
//	  incident is blamed on the team's latest production deployment before
//	  it: 501, failed, recovered at 11:15: 2h15m = 8100s. No pushes: no
//	  changes.
func TestPagerDutyEndToEnd(t *testing.T) {
	cfg := srcConfig(t)
	srcServices(t, &cfg, "payments", "payments-api")
	srv := start(t, cfg)
	defer stop(srv)
	post(t, srv, githubtest.DeploymentStatus("pd-d1", "acme/pay-api", 501, 5001, githubtest.SHA("pd1"), "production", "success", at(3, 9, 0)))

	incident := func(name, eventID, occurred string) []byte {
		return srcFixture(t, "pagerduty", name, map[string]any{
			"event.id": eventID, "event.occurred_at": occurred,
			"event.data.id": "PPAY001", "event.data.created_at": "2026-01-03T10:00:00Z",
			"event.data.service.summary": "payments-api",
		})
	}
	triggered := incident("incident.triggered.json", "01PAYTRIG000000000000000001", "2026-01-03T10:00:05.000Z")
	acknowledged := incident("incident.acknowledged.json", "01PAYACK0000000000000000001", "2026-01-03T10:10:00.000Z")
	resolved := incident("incident.resolved.json", "01PAYRESV000000000000000001", "2026-01-03T11:15:00.000Z")

	srcAccepted(t, srcPagerDutyRequest(srv, srcPagerDutySecret, "wh-1", triggered), 1)
	srcSend(t, srcPagerDutyRequest(srv, srcPagerDutySecret, "wh-2", acknowledged), http.StatusOK, "ignored")
	srcAccepted(t, srcPagerDutyRequest(srv, srcPagerDutySecret, "wh-3", resolved), 1)
	// A retry of the same delivery changes nothing.
	srcAccepted(t, srcPagerDutyRequest(srv, srcPagerDutySecret, "wh-3", resolved), 1)
	srcSend(t, srcPagerDutyRequest(srv, "wrong-secret", "wh-4", resolved), http.StatusUnauthorized, "signature")

	want := srcWant(cfg, "payments", dora.Aggregates{
		Deployments: 1, Failed: 1, Recovered: 1, RecoveryMedianSeconds: 8100,
		Incidents: 1, Resolved: 1, TimeToRestoreMedianSeconds: 4500,
	})
	got := reportOf(t, srv, cfg)
	assertReport(t, got, want)
	if pay := got.Teams[1]; pay.Incidents != 1 || *pay.TimeToRestoreMedian != 4500 || pay.FailedDeployments != 1 {
		t.Errorf("payments: %+v", pay)
	}
	srcAttributed(t, srv, "pagerduty:PPAY001", correlate.AttributedTeam, "501")

	// The acknowledgement alone (a new delivery) still changes nothing.
	srcSend(t, srcPagerDutyRequest(srv, srcPagerDutySecret, "wh-5", incident("incident.acknowledged.json",
		"01PAYACK0000000000000000002", "2026-01-03T10:20:00.000Z")), http.StatusOK, "ignored")
	assertReport(t, reportOf(t, srv, cfg), want)
}

// Opsgenie: an alert on entity checkout-api, which team checkout lists,
// created and closed.
//
// By hand:
//
//	createdAt 2026-01-04 20:00:00.250 (epoch ms), acknowledged (ignored),
//	closed with updatedAt 21:45:00.750 (epoch ns). ClickHouse keeps whole
//	seconds: TTR 21:45:00 − 20:00:00 = 6300s. Checkout deployed nothing:
//	the incident is blamed on no deployment.
func TestOpsgenieEndToEnd(t *testing.T) {
	cfg := srcConfig(t)
	srcServices(t, &cfg, "checkout", "checkout-api")
	srv := start(t, cfg)
	defer stop(srv)
	created := at(4, 20, 0).Add(250 * time.Millisecond)
	closed := at(4, 21, 45).Add(750 * time.Millisecond)
	alert := func(name string, updated time.Time) []byte {
		return srcFixture(t, "opsgenie", name, map[string]any{
			"alert.alertId": "og-checkout-1", "alert.entity": "checkout-api", "alert.alias": "checkout-api-latency",
			"alert.message":   "checkout-api: p99 latency above 2s",
			"alert.createdAt": json.Number(fmt.Sprint(created.UnixMilli())),
			"alert.updatedAt": json.Number(fmt.Sprint(updated.UnixNano())),
		})
	}
	opsgenie := func(body []byte) *http.Request {
		return srcRequest(srv, "/webhooks/opsgenie", body, map[string]string{"X-Doraflow-Token": srcOpsgenieSecret})
	}
	srcAccepted(t, opsgenie(alert("create.json", created)), 1)
	srcSend(t, opsgenie(alert("acknowledge.json", at(4, 20, 5))), http.StatusOK, "ignored")
	closeReq := srcRequest(srv, "/webhooks/opsgenie", alert("close.json", closed), nil)
	closeReq.SetBasicAuth("opsgenie", srcOpsgenieSecret) // the other way to send the secret
	srcAccepted(t, closeReq, 1)
	srcAccepted(t, opsgenie(alert("close.json", closed)), 1) // a retry: same body, same id
	wrong := opsgenie(alert("close.json", closed))
	wrong.Header.Set("X-Doraflow-Token", "wrong")
	srcSend(t, wrong, http.StatusUnauthorized, "wrong secret")

	got := reportOf(t, srv, cfg)
	assertReport(t, got, srcWant(cfg, "checkout", dora.Aggregates{Incidents: 1, Resolved: 1, TimeToRestoreMedianSeconds: 6300}))
	if co := got.Teams[0]; co.Team != "checkout" || co.Incidents != 1 || *co.TimeToRestoreMedian != 6300 {
		t.Errorf("checkout: %+v", co)
	}
	srcAttributed(t, srv, "opsgenie:og-checkout-1", correlate.AttributedNone, "")
}

// The generic API: two deployments of acme/infra (team platform), and an
// incident that names the first one.
//
// By hand:
//
//	deploy-1 sha X to production, success, finished day 5 10:00;
//	deploy-2 sha Y, finished 12:00 (the later one: what the heuristics
//	  would blame, which makes the explicit attribution visible).
//	INC-1 with deployment_id deploy-1, opened 13:00, resolved 14:30 →
//	  TTR 1h30m = 5400s; deploy-1 failed, recovered at 14:30: 4h30m =
//	  16200s (deploy-2 would give 2h30m). deploy-2 finished before the
//	  incident opened: not rework. No pushes: no changes.
func TestGenericAPIEndToEnd(t *testing.T) {
	cfg := srcConfig(t)
	srv := start(t, cfg)
	defer stop(srv)
	api := func(path, token, body string) *http.Request {
		return srcRequest(srv, path, []byte(body), map[string]string{"Authorization": "Bearer " + token})
	}
	x, y := githubtest.SHA("infra-x"), githubtest.SHA("infra-y")
	srcAccepted(t, api("/api/v1/deployments", srcAPIToken, `{"id": "deploy-1", "repo": "acme/infra", "sha": "`+x+`",
		"environment": "production", "status": "pending", "started_at": "2026-01-05T09:55:00Z"}`), 1)
	srcAccepted(t, api("/api/v1/deployments", srcAPIToken, `{"id": "deploy-1", "repo": "acme/infra", "sha": "`+x+`",
		"environment": "production", "status": "success", "started_at": "2026-01-05T09:55:00Z", "finished_at": "2026-01-05T10:00:00Z"}`), 1)
	srcAccepted(t, api("/api/v1/deployments", srcAPIToken, `{"id": "deploy-2", "repo": "acme/infra", "sha": "`+strings.ToUpper(y)+`",
		"environment": "production", "status": "success", "finished_at": "2026-01-05T12:00:00Z"}`), 1)
	srcAccepted(t, api("/api/v1/incidents", srcAPIToken, `{"id": "INC-1", "repo": "acme/infra", "title": "infra down",
		"deployment_id": "deploy-1", "opened_at": "2026-01-05T13:00:00Z"}`), 1)
	resolved := `{"id": "INC-1", "repo": "acme/infra", "title": "infra down",
		"deployment_id": "deploy-1", "opened_at": "2026-01-05T13:00:00Z", "resolved_at": "2026-01-05T14:30:00Z"}`
	srcAccepted(t, api("/api/v1/incidents", srcAPIToken, resolved), 1)
	srcAccepted(t, api("/api/v1/incidents", srcAPIToken, resolved), 1) // posted twice: harmless

	for _, tc := range []struct {
		name, path, token, body string
		code                    int
		reason                  string
	}{
		{"bad sha, no finished_at", "/api/v1/deployments", srcAPIToken,
			`{"repo": "acme/infra", "sha": "xyz", "environment": "production", "status": "success"}`,
			400, `sha: \"xyz\" is not a hex commit sha; finished_at: required when status is success`},
		{"misspelt field", "/api/v1/deployments", srcAPIToken,
			`{"repo": "acme/infra", "SHA": "` + x + `", "environment": "production", "status": "success", "finished_at": "2026-01-05T10:00:00Z"}`,
			400, `unknown field \"SHA\"; sha: required`},
		{"incident without opened_at", "/api/v1/incidents", srcAPIToken,
			`{"id": "INC-2", "repo": "acme/infra"}`, 400, "opened_at: required"},
		{"resolved before opened", "/api/v1/incidents", srcAPIToken,
			`{"id": "INC-3", "service": "infra", "opened_at": "2026-01-05T13:00:00Z", "resolved_at": "2026-01-05T12:00:00Z"}`,
			400, "resolved_at: before opened_at"},
		{"wrong token, deployments", "/api/v1/deployments", "wrong", `{}`, 401, "bearer token does not match"},
		{"wrong token, incidents", "/api/v1/incidents", "wrong", `{}`, 401, "bearer token does not match"},
	} {
		t.Run(tc.name, func(t *testing.T) { srcSend(t, api(tc.path, tc.token, tc.body), tc.code, tc.reason) })
	}

	got := reportOf(t, srv, cfg)
	assertReport(t, got, srcWant(cfg, "platform", dora.Aggregates{
		Deployments: 2, Failed: 1, Recovered: 1, RecoveryMedianSeconds: 16200,
		Incidents: 1, Resolved: 1, TimeToRestoreMedianSeconds: 5400,
	}))
	if pl := got.Teams[2]; pl.Team != "platform" || pl.Deployments != 2 || pl.FailedDeployments != 1 ||
		pl.Incidents != 1 || *pl.TimeToRestoreMedian != 5400 || *pl.RecoveryMedianSeconds != 16200 {
		t.Errorf("platform: %+v", pl)
	}
	srcAttributed(t, srv, "generic:INC-1", correlate.AttributedExplicit, "deploy-1")
}

// srcCloudEvent wraps a CDEvent in a CloudEvent whose attributes are the
// CDEvent context's, in structured mode (the whole CloudEvent in the body)
// or binary mode (ce-* headers, the CDEvent as the body).
func srcCloudEvent(t *testing.T, srv *serve.Server, token string, structured bool, cdevent []byte) *http.Request {
	t.Helper()
	var c struct {
		Context struct{ ID, Source, Type, Timestamp string }
	}
	if err := json.Unmarshal(cdevent, &c); err != nil {
		t.Fatal(err)
	}
	attrs := map[string]string{"specversion": "1.0", "id": c.Context.ID, "source": c.Context.Source,
		"type": c.Context.Type, "time": c.Context.Timestamp}
	header := map[string]string{"Authorization": "Bearer " + token}
	if !structured {
		for k, v := range attrs {
			header["ce-"+k] = v
		}
		return srcRequest(srv, "/webhooks/cdevents", cdevent, header)
	}
	env := map[string]any{"datacontenttype": "application/json", "data": json.RawMessage(cdevent)}
	for k, v := range attrs {
		env[k] = v
	}
	body, err := json.Marshal(env)
	if err != nil {
		t.Fatal(err)
	}
	header["Content-Type"] = "application/cloudevents+json; charset=utf-8"
	return srcRequest(srv, "/webhooks/cdevents", body, header)
}

// CDEvents: two deployments of service checkout-web (repo acme/checkout,
// team checkout), one per binding mode, and an incident on the service.
//
// By hand:
//
//	dep-1 (structured) sha K1 to production at day 6 10:00; dep-2 (binary)
//	  sha K2 at 12:00: two production deployments.
//	INC-9 detected 12:30, resolved 13:10 → TTR 40m = 2400s; blamed on the
//	  service's latest deployment before 12:30, dep-2, failed, recovered
//	  at 13:10: 70m = 4200s. No pushes: no changes.
func TestCDEventsEndToEnd(t *testing.T) {
	cfg := srcConfig(t)
	srcServices(t, &cfg, "checkout", "checkout-web")
	srv := start(t, cfg)
	defer stop(srv)
	deployed := func(id, sha, ts string) []byte {
		return srcFixture(t, "cdevents", "service.deployed.json", map[string]any{
			"context.id": id, "context.source": "/ci/acme/checkout", "context.timestamp": ts,
			"subject.id": "checkout-web", "subject.content.artifactId": srcDelete,
			"customData.repo": "acme/checkout", "customData.sha": sha, "customData.pipeline": "deploy-checkout",
		})
	}
	incident := func(name, id, ts string) []byte {
		return srcFixture(t, "cdevents", name, map[string]any{
			"context.id": id, "context.timestamp": ts, "subject.id": "INC-9",
			"subject.content.service.id": "checkout-web", "subject.content.artifactId": srcDelete,
		})
	}
	dep1 := deployed("dep-1", githubtest.SHA("k1"), "2026-01-06T10:00:00Z")
	srcAccepted(t, srcCloudEvent(t, srv, srcCDEventsToken, true, dep1), 1)
	srcAccepted(t, srcCloudEvent(t, srv, srcCDEventsToken, false, deployed("dep-2", githubtest.SHA("k2"), "2026-01-06T12:00:00Z")), 1)
	srcAccepted(t, srcCloudEvent(t, srv, srcCDEventsToken, true, incident("incident.detected.json", "inc-ev-1", "2026-01-06T12:30:00Z")), 1)
	srcAccepted(t, srcCloudEvent(t, srv, srcCDEventsToken, false, incident("incident.resolved.json", "inc-ev-2", "2026-01-06T13:10:00Z")), 1)
	// dep-1 again, in the other mode: the same CloudEvent (source, id).
	srcAccepted(t, srcCloudEvent(t, srv, srcCDEventsToken, false, dep1), 1)
	srcSend(t, srcCloudEvent(t, srv, "wrong", true, dep1), http.StatusUnauthorized, "wrong bearer token")
	noAuth := srcCloudEvent(t, srv, srcCDEventsToken, true, dep1)
	noAuth.Header.Del("Authorization")
	srcSend(t, noAuth, http.StatusUnauthorized, "missing Authorization")

	got := reportOf(t, srv, cfg)
	assertReport(t, got, srcWant(cfg, "checkout", dora.Aggregates{
		Deployments: 2, Failed: 1, Recovered: 1, RecoveryMedianSeconds: 4200,
		Incidents: 1, Resolved: 1, TimeToRestoreMedianSeconds: 2400,
	}))
	if co := got.Teams[0]; co.Team != "checkout" || co.Deployments != 2 || co.Incidents != 1 || *co.TimeToRestoreMedian != 2400 {
		t.Errorf("checkout: %+v", co)
	}
	srcAttributed(t, srv, "cdevents:/monitoring/alertmanager:INC-9", correlate.AttributedService, "cdevents:/ci/acme/checkout:dep-2")
}

// A source whose secret is not configured is not mounted: its path is
// 404, whatever the request carries. GitHub, configured, answers.
func TestSourcesWithoutSecretAreNotMounted(t *testing.T) {
	cfg := testConfig(t, testenv.ClickHouse(t)) // only GitHub's secret
	srv := start(t, cfg)
	defer stop(srv)
	for _, tc := range []struct {
		path   string
		header map[string]string
	}{
		{"/webhooks/gitlab", map[string]string{"X-Gitlab-Token": srcGitLabToken, "X-Gitlab-Event": "Push Hook"}},
		{"/webhooks/pagerduty", map[string]string{"X-PagerDuty-Signature": "v1=00"}},
		{"/webhooks/opsgenie", map[string]string{"X-Doraflow-Token": srcOpsgenieSecret}},
		{"/webhooks/cdevents", map[string]string{"Authorization": "Bearer " + srcCDEventsToken}},
		{"/api/v1/deployments", map[string]string{"Authorization": "Bearer " + srcAPIToken}},
		{"/api/v1/incidents", map[string]string{"Authorization": "Bearer " + srcAPIToken}},
	} {
		t.Run(tc.path, func(t *testing.T) {
			srcSend(t, srcRequest(srv, tc.path, []byte(`{}`), tc.header), http.StatusNotFound, "")
		})
	}
	srcSend(t, srcRequest(srv, "/webhooks/github", []byte(`{}`), map[string]string{"X-GitHub-Event": "push"}),
		http.StatusUnauthorized, "X-Hub-Signature-256")
}
