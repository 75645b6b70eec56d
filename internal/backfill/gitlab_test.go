package backfill_test

import (
	"context"
	"io"
	"testing"
	"time"

	"github.com/doraflow/doraflow/internal/backfill"
	"github.com/doraflow/doraflow/internal/gitlabtest"
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
