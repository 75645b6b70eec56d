package backfill_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/doraflow/doraflow/internal/backfill"
	"github.com/doraflow/doraflow/internal/gitlabtest"
	"github.com/doraflow/doraflow/pkg/event"
)

const glToken = "gl-token"

// glHistory is history() on GitLab: the same shape, so the same metrics
// (checkMetrics), with GitLab's differences — one current status per
// deployment, a squash merge that names its squash commit, incidents by
// issue type.
func glHistory() *gitlabtest.Project {
	c := func(name string, t time.Time, parents ...string) gitlabtest.Commit {
		ps := []string{}
		for _, p := range parents {
			ps = append(ps, sha(p))
		}
		return gitlabtest.Commit{SHA: sha(name), Time: t, Parents: ps}
	}
	commits := map[string]gitlabtest.Commit{}
	for _, cm := range []gitlabtest.Commit{
		c("b0", at(-4, 10, 0)),
		c("b1", at(1, 10, 0), "b0"),
		c("g1", at(1, 20, 0), "b1"),
		c("g2", at(2, 6, 0), "g1"),
		c("b2", at(2, 8, 0), "b1"),
		c("b3", at(2, 10, 0), "b2"),
	} {
		commits[cm.SHA] = cm
	}
	dep := func(id int, name, env, status string, finish time.Time) gitlabtest.Deployment {
		return gitlabtest.Deployment{ID: id, SHA: sha(name), Env: env, Status: status, Created: finish.Add(-5 * time.Minute), Finish: finish}
	}
	return &gitlabtest.Project{
		Path:    "acme/pay-gl",
		Commits: commits,
		Deployments: []gitlabtest.Deployment{
			dep(200, "b0", "production", "success", at(-4, 12, 0)),
			dep(201, "b1", "production", "success", at(1, 12, 0)),
			dep(202, "b3", "staging", "success", at(2, 11, 0)),
			dep(203, "b3", "production", "success", at(2, 12, 0)),
			dep(204, "b1", "production", "success", at(3, 12, 0)),
			dep(205, "b3", "production", "failed", at(3, 13, 0)),
		},
		MergeRequests: []gitlabtest.MergeRequest{
			{IID: 5, Merged: at(2, 8, 0), SquashSHA: sha("b2"), Commits: []string{sha("g1"), sha("g2")}, Target: "main"},
		},
		Issues: []gitlabtest.Issue{
			{IID: 7, Incident: true, Created: at(2, 13, 0), Updated: at(2, 15, 0), Closed: at(2, 15, 0)},
			{IID: 8, Created: at(2, 14, 0), Updated: at(2, 14, 0)},
		},
	}
}

// A GitLab backfill, paged by X-Next-Page through 429s, ends in ClickHouse
// with the history's metrics; fetched again from scratch it counts nothing
// twice.
func TestGitLabBackfill(t *testing.T) {
	api := gitlabtest.NewAPI(glToken)
	defer api.Close()
	api.PerPage = 2
	api.LimitEvery = 10
	api.AddProject(glHistory())
	cfg := testConfig(t)
	srv := start(t, cfg)
	backfillGL := func(fresh bool) backfill.Result {
		t.Helper()
		ctx := context.Background()
		now := time.Now().UTC()
		bcfg := backfill.Config{Since: at(1, 0, 0), Until: now, Keep: cfg.Processor.Retention.Keep, Now: now, Concurrency: 2}
		s, err := backfill.NewSession(ctx, bcfg, backfill.SessionOptions{JS: srv.Bus.JS, Partitions: cfg.Processor.Partitions,
			Replicas: 1, Progress: io.Discard, Label: "backfill:gitlab"}, quiet())
		if err != nil {
			t.Fatal(err)
		}
		s.Fresh = fresh
		g, err := backfill.NewGitLab(backfill.GitLabConfig{Token: glToken, APIURL: api.URL + "/api/v4", Projects: []string{"acme/pay-gl"},
			IsProduction: cfg.IsProduction}, s.Transport)
		if err != nil {
			t.Fatal(err)
		}
		res, err := s.Run(ctx, g.Targets())
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	res := backfillGL(false)
	if res.Events == 0 || api.Limited.Load() == 0 {
		t.Fatalf("result %+v, %d rate-limit answers", res, api.Limited.Load())
	}
	r := reportOf(t, srv)
	checkMetrics(t, r)
	backfillGL(true)
	if got := reportJSON(t, reportOf(t, srv)); got != reportJSON(t, r) {
		t.Errorf("a second backfill changed the report\n got %s\nwant %s", got, reportJSON(t, r))
	}
}

// glFixture is a GitLab hook from collectors/gitlab/testdata with the
// dotted paths of set replaced.
func glFixture(t *testing.T, name string, set map[string]any) []byte {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("..", "..", "collectors", "gitlab", "testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
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
		m[keys[len(keys)-1]] = v
	}
	b, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

const glHookToken = "gl-hook"

// glHooks are glHistory's facts as GitLab's hooks report them.
func glHooks(t *testing.T) []struct {
	event, key string
	body       []byte
} {
	const project = "acme/pay-gl"
	type hook = struct {
		event, key string
		body       []byte
	}
	commit := func(name string, at time.Time) map[string]any {
		return map[string]any{"id": sha(name), "message": "change", "title": "change", "timestamp": at.Format(time.RFC3339),
			"url": "https://gitlab.example.com/" + project + "/-/commit/" + sha(name)}
	}
	push := func(ref, before, after string, commits ...any) []byte {
		return glFixture(t, "push.json", map[string]any{"before": before, "after": after, "checkout_sha": after, "ref": ref,
			"project.path_with_namespace": project, "commits": commits, "total_commits_count": len(commits)})
	}
	deployment := func(id int, name, env, status string, at time.Time) hook {
		return hook{"Deployment Hook", fmt.Sprintf("d%d", id), glFixture(t, "deployment.json", map[string]any{"status": status,
			"status_changed_at": at.Format(time.RFC3339), "deployment_id": id, "environment": env, "project.path_with_namespace": project,
			"short_sha": sha(name)[:8], "commit_url": "https://gitlab.example.com/" + project + "/-/commit/" + sha(name)})}
	}
	zero := event.ZeroSHA
	return []hook{
		{"Push Hook", "p0", push("refs/heads/main", zero, sha("b0"), commit("b0", at(-4, 10, 0)))},
		deployment(200, "b0", "production", "success", at(-4, 12, 0)),
		{"Push Hook", "p1", push("refs/heads/main", sha("b0"), sha("b1"), commit("b1", at(1, 10, 0)))},
		deployment(201, "b1", "production", "success", at(1, 12, 0)),
		{"Push Hook", "pf", push("refs/heads/feature-5", zero, sha("g2"), commit("g1", at(1, 20, 0)), commit("g2", at(2, 6, 0)))},
		{"Push Hook", "p2", push("refs/heads/main", sha("b1"), sha("b2"), commit("b2", at(2, 8, 0)))},
		{"Merge Request Hook", "m5", glFixture(t, "merge_request_squashed.json", map[string]any{"project.path_with_namespace": project,
			"object_attributes.iid": 5, "object_attributes.action": "merge", "object_attributes.merge_commit_sha": nil,
			"object_attributes.squash_commit_sha": sha("b2"), "object_attributes.last_commit.id": sha("g2"),
			"object_attributes.target_branch": "main", "object_attributes.updated_at": at(2, 8, 0).Format(time.RFC3339)})},
		{"Push Hook", "p3", push("refs/heads/main", sha("b2"), sha("b3"), commit("b3", at(2, 10, 0)))},
		deployment(202, "b3", "staging", "success", at(2, 11, 0)),
		deployment(203, "b3", "production", "success", at(2, 12, 0)),
		{"Issue Hook", "i7", glFixture(t, "incident_closed.json", map[string]any{"project.path_with_namespace": project,
			"object_attributes.iid": 7, "object_attributes.created_at": at(2, 13, 0).Format(time.RFC3339),
			"object_attributes.updated_at": at(2, 15, 0).Format(time.RFC3339), "object_attributes.closed_at": at(2, 15, 0).Format(time.RFC3339)})},
		deployment(204, "b1", "production", "success", at(3, 12, 0)),
		deployment(205, "b3", "production", "failed", at(3, 13, 0)),
	}
}

// GitLab's hooks of the same facts, before or after the backfill, count
// once: the report is the backfill's alone (checkMetrics).
func TestGitLabBackfillAndHooksCountOnce(t *testing.T) {
	for _, hooksFirst := range []bool{false, true} {
		t.Run(fmt.Sprintf("hooks first=%v", hooksFirst), func(t *testing.T) {
			api := gitlabtest.NewAPI(glToken)
			defer api.Close()
			api.PerPage = 2
			api.AddProject(glHistory())
			cfg := testConfig(t)
			cfg.GitLab.WebhookToken = glHookToken
			srv := start(t, cfg)
			hooks := func() {
				for _, h := range glHooks(t) {
					req, _ := http.NewRequest(http.MethodPost, "http://"+srv.Addr()+"/webhooks/gitlab", bytes.NewReader(h.body))
					req.Header.Set("Content-Type", "application/json")
					req.Header.Set("X-Gitlab-Token", glHookToken)
					req.Header.Set("X-Gitlab-Event", h.event)
					req.Header.Set("Idempotency-Key", h.key)
					resp, err := http.DefaultClient.Do(req)
					if err != nil {
						t.Fatal(err)
					}
					msg, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					if resp.StatusCode != http.StatusAccepted {
						t.Fatalf("%s %s: %d %s", h.event, h.key, resp.StatusCode, msg)
					}
				}
				reportOf(t, srv)
			}
			if hooksFirst {
				hooks()
			}
			ctx := context.Background()
			now := time.Now().UTC()
			bcfg := backfill.Config{Since: at(1, 0, 0), Until: now, Keep: cfg.Processor.Retention.Keep, Now: now, Concurrency: 1}
			s, err := backfill.NewSession(ctx, bcfg, backfill.SessionOptions{JS: srv.Bus.JS, Partitions: cfg.Processor.Partitions,
				Replicas: 1, Progress: io.Discard, Label: "backfill:gitlab"}, quiet())
			if err != nil {
				t.Fatal(err)
			}
			g, err := backfill.NewGitLab(backfill.GitLabConfig{Token: glToken, APIURL: api.URL + "/api/v4", Projects: []string{"acme/pay-gl"},
				IsProduction: cfg.IsProduction}, s.Transport)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := s.Run(ctx, g.Targets()); err != nil {
				t.Fatal(err)
			}
			if !hooksFirst {
				reportOf(t, srv)
				hooks()
			}
			checkMetrics(t, reportOf(t, srv))
		})
	}
}
