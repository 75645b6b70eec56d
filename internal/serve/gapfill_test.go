package serve_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/doraflow/doraflow/internal/githubtest"
	"github.com/doraflow/doraflow/internal/report"
	"github.com/doraflow/doraflow/internal/testenv"
	"github.com/doraflow/doraflow/pkg/dora"
)

// fakeGitHubCompare serves GET /api/v3/repos/{owner}/{repo}/compare/{base}...{head}
// as GitHub documents it: bearer token, commits oldest first, two per page
// with a Link header to the next, the merge base, 404 for unknown commits.
func fakeGitHubCompare(t *testing.T, token string, history map[string][]githubtest.Commit) (*httptest.Server, *atomic.Int32) {
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		if r.Header.Get("Authorization") != "Bearer "+token {
			http.Error(w, `{"message": "Bad credentials"}`, http.StatusUnauthorized)
			return
		}
		rest, ok := strings.CutPrefix(r.URL.Path, "/api/v3/repos/")
		parts := strings.SplitN(rest, "/compare/", 2)
		if !ok || len(parts) != 2 {
			http.NotFound(w, r)
			return
		}
		base, head, _ := strings.Cut(parts[1], "...")
		commits, known := history[parts[0]+"@"+base+"..."+head]
		if !known {
			http.Error(w, `{"message": "Not Found"}`, http.StatusNotFound)
			return
		}
		page, _ := strconv.Atoi(r.URL.Query().Get("page"))
		page = max(page, 1)
		const perPage = 2
		from, to := (page-1)*perPage, min(page*perPage, len(commits))
		var out []map[string]any
		for _, c := range commits[from:to] {
			out = append(out, map[string]any{"sha": c.SHA, "commit": map[string]any{"author": map[string]any{"date": c.Time.Format(time.RFC3339)}}})
		}
		if to < len(commits) {
			next := *r.URL
			q := next.Query()
			q.Set("page", strconv.Itoa(page+1))
			next.RawQuery = q.Encode()
			w.Header().Set("Link", fmt.Sprintf(`<http://%s%s>; rel="next"`, r.Host, next.RequestURI()))
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"status": "ahead", "ahead_by": len(commits), "total_commits": len(commits),
			"merge_base_commit": map[string]any{"sha": base}, "commits": out})
	}))
	t.Cleanup(srv.Close)
	return srv, &calls
}

// Pushes were missed between two deployments: with a token, the processor
// asks GitHub's compare API for the commits in between (over several pages)
// and the deployment's changes become exact.
func TestGapFilledThroughCompareAPI(t *testing.T) {
	sha := githubtest.SHA
	zero := strings.Repeat("0", 40)
	c := func(name string, t time.Time) githubtest.Commit { return githubtest.Commit{SHA: sha(name), Time: t} }
	between := []githubtest.Commit{c("g2", at(2, 8, 0)), c("g3", at(2, 9, 0)), c("g4", at(2, 10, 0))}
	api, calls := fakeGitHubCompare(t, "gh-token", map[string][]githubtest.Commit{
		"acme/pay-api@" + sha("g1") + "..." + sha("g4"): between,
	})
	cfg := testConfig(t, testenv.ClickHouse(t))
	cfg.GitHub.Token, cfg.GitHub.APIURL = "gh-token", api.URL
	srv := start(t, cfg)
	defer stop(srv)
	for _, d := range []githubtest.Delivery{
		githubtest.Push("p1", "acme/pay-api", zero, sha("g1"), c("g1", at(1, 10, 0))),
		githubtest.DeploymentStatus("d1", "acme/pay-api", 1, 11, sha("g1"), "production", "success", at(1, 12, 0)),
		// The pushes of g2 and g3 never arrived.
		githubtest.Push("p3", "acme/pay-api", sha("g3"), sha("g4"), c("g4", at(2, 10, 0))),
		githubtest.DeploymentStatus("d2", "acme/pay-api", 2, 12, sha("g4"), "production", "success", at(2, 12, 0)),
	} {
		post(t, srv, d)
	}
	// The fill is asynchronous: wait for the report to show it.
	deadline := time.Now().Add(20 * time.Second)
	for {
		r := reportOf(t, srv, cfg)
		pay := teamOf(t, r, "payments")
		if pay.Changes == 4 {
			// g1 2h; g2 4h, g3 3h, g4 2h: sorted [2h 2h 3h 4h], median (upper) 3h, p90 4h.
			if *pay.LeadTimeMedianSeconds != 3*3600 || *pay.LeadTimeP90Seconds != 4*3600 {
				t.Errorf("lead times after the fill: %v %v", *pay.LeadTimeMedianSeconds, *pay.LeadTimeP90Seconds)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("gap not filled: payments has %d changes, want 4", pay.Changes)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if n := calls.Load(); n != 2 {
		t.Errorf("compare API called %d times, want 2 (two pages)", n)
	}
	m := metricsText(t, srv.Addr())
	if !strings.Contains(m, `doraflow_gap_fills_total{host="github",result="filled"} 1`) {
		t.Error("/metrics lacks the filled gap")
	}
	if regexp.MustCompile(`doraflow_approximate_deployments\{partition="\d+"\} [1-9]`).MatchString(m) {
		t.Error("a deployment is still approximate")
	}
}

func teamOf(t *testing.T, r report.Report, name string) dora.TeamMetrics {
	t.Helper()
	for _, m := range r.Teams {
		if m.Team == name {
			return m
		}
	}
	t.Fatalf("no team %s in the report", name)
	return dora.TeamMetrics{}
}

// GitLab sends at most 20 commits a push: with a token, the cut part comes
// from GitLab's compare API, and the deployment's changes become exact.
func TestGitLabTruncatedPushFilled(t *testing.T) {
	const project = "acme/pay-gitlab"
	zero := strings.Repeat("0", 40)
	a, m, h := githubtest.SHA("gt-a"), githubtest.SHA("gt-m"), githubtest.SHA("gt-h")
	var calls atomic.Int32
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		q := r.URL.Query()
		if r.Header.Get("PRIVATE-TOKEN") != "gl-api" || r.URL.EscapedPath() != "/api/v4/projects/acme%2Fpay-gitlab/repository/compare" ||
			q.Get("from") != a || q.Get("to") != h {
			http.Error(w, `{"message": "404 Not Found"}`, http.StatusNotFound)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"commits": [{"id": %q, "authored_date": "2026-01-03T08:00:00Z"}, {"id": %q, "authored_date": "2026-01-03T09:00:00Z"}],
			"compare_timeout": false}`, m, h)
	}))
	defer api.Close()
	cfg := srcConfig(t)
	cfg.GitLab.Token, cfg.GitLab.APIURL = "gl-api", api.URL+"/api/v4"
	srv := start(t, cfg)
	defer stop(srv)
	gitlab := func(event, key string, body []byte) *http.Request {
		return srcRequest(srv, "/webhooks/gitlab", body, map[string]string{"X-Gitlab-Token": srcGitLabToken,
			"X-Gitlab-Event": event, "Idempotency-Key": key})
	}
	commit := func(sha, ts string) map[string]any {
		return map[string]any{"id": sha, "message": "change", "title": "change", "timestamp": ts,
			"url": "https://gitlab.example.com/" + project + "/-/commit/" + sha}
	}
	push := func(before, after string, total int, commits ...any) []byte {
		return srcFixture(t, "gitlab", "push.json", map[string]any{"before": before, "after": after, "checkout_sha": after,
			"ref": "refs/heads/main", "project.path_with_namespace": project, "commits": commits, "total_commits_count": total})
	}
	deployment := func(id int, sha, changed string) []byte {
		return srcFixture(t, "gitlab", "deployment.json", map[string]any{"status": "success", "status_changed_at": changed,
			"deployment_id": id, "environment": "production", "project.path_with_namespace": project, "short_sha": sha[:8],
			"commit_url": "https://gitlab.example.com/" + project + "/-/commit/" + sha})
	}
	srcAccepted(t, gitlab("Push Hook", "p1", push(zero, a, 1, commit(a, "2026-01-02T08:00:00Z"))), 1)
	srcAccepted(t, gitlab("Deployment Hook", "d1", deployment(1, a, "2026-01-02 10:00:00 UTC")), 1)
	// Two commits pushed, only the newest listed.
	srcAccepted(t, gitlab("Push Hook", "p2", push(a, h, 2, commit(h, "2026-01-03T09:00:00Z"))), 1)
	srcAccepted(t, gitlab("Deployment Hook", "d2", deployment(2, h, "2026-01-03 12:00:00 UTC")), 1)

	deadline := time.Now().Add(20 * time.Second)
	for {
		pay := teamOf(t, reportOf(t, srv, cfg), "payments")
		if pay.Changes == 3 {
			// a 2h; m 4h, h 3h: sorted [2h 3h 4h], median 3h, p90 4h.
			if *pay.LeadTimeMedianSeconds != 3*3600 || *pay.LeadTimeP90Seconds != 4*3600 {
				t.Errorf("lead times after the fill: %v %v", *pay.LeadTimeMedianSeconds, *pay.LeadTimeP90Seconds)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("truncated push not filled: %d changes, want 3 (compare API called %d times)", pay.Changes, calls.Load())
		}
		time.Sleep(100 * time.Millisecond)
	}
}
