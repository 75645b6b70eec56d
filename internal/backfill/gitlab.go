package backfill

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	gl "github.com/xanzy/go-gitlab"

	collector "github.com/doraflow/doraflow/collectors/gitlab"
	"github.com/doraflow/doraflow/collectors/webhook"
	"github.com/doraflow/doraflow/pkg/event"
)

// GitLabConfig configures a GitLab backfill.
type GitLabConfig struct {
	// Token is DORAFLOW_GITLAB_TOKEN; APIURL is gitlab.api_url (empty for
	// gitlab.com, …/api/v4 of a self-managed instance).
	Token, APIURL string
	// Projects are group/name paths.
	Projects []string
	// IsProduction says whether an environment is a production one.
	IsProduction func(env string) bool
}

// Validate explains every problem of the configuration at once.
func (c GitLabConfig) Validate() error {
	var errs []error
	if c.Token == "" {
		errs = append(errs, errors.New("backfill gitlab: no token; set DORAFLOW_GITLAB_TOKEN (or gitlab.token) to a token with read_api"))
	}
	if len(c.Projects) == 0 {
		errs = append(errs, errors.New("backfill gitlab: name the projects (--project group/name, repeated)"))
	}
	for _, p := range c.Projects {
		if group, name, ok := strings.Cut(p, "/"); !ok || group == "" || name == "" {
			errs = append(errs, fmt.Errorf("backfill gitlab: --project %q: want group/name (subgroups allowed)", p))
		}
	}
	if c.IsProduction == nil {
		errs = append(errs, errors.New("backfill gitlab: IsProduction is not set"))
	}
	return errors.Join(errs...)
}

// GitLab backfills projects through GitLab's REST API.
type GitLab struct {
	cfg GitLabConfig
	//lint:ignore SA1019 go-gitlab is the pinned GitLab client (collectors/gitlab/staticcheck.conf says why)
	client *gl.Client
	cmp    *collector.Comparer
}

// NewGitLab returns a GitLab backfill for a valid cfg, its requests sent
// through rt. go-gitlab's own retries are off: rt retries.
func NewGitLab(cfg GitLabConfig, rt http.RoundTripper) (*GitLab, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	opts := []gl.ClientOptionFunc{gl.WithHTTPClient(&http.Client{Transport: rt}), gl.WithoutRetries()}
	if cfg.APIURL != "" {
		opts = append(opts, gl.WithBaseURL(cfg.APIURL))
	}
	//lint:ignore SA1019 as for the client field
	client, err := gl.NewClient(cfg.Token, opts...)
	if err != nil {
		return nil, fmt.Errorf("backfill gitlab: api client: %w", err)
	}
	return &GitLab{cfg: cfg, client: client, cmp: collector.NewComparerFor(client)}, nil
}

// Targets are the projects to backfill.
func (g *GitLab) Targets() []Target {
	targets := make([]Target, 0, len(g.cfg.Projects))
	for _, p := range g.cfg.Projects {
		r := glProject{g: g, path: p}
		targets = append(targets, Target{Key: "gitlab/" + p, Name: p, Phases: []Phase{
			{Name: "deployments", Run: r.deployments},
			{Name: "merges", Run: r.merges},
			{Name: "issues", Run: r.issues},
		}})
	}
	return targets
}

type glProject struct {
	g    *GitLab
	path string
}

type glDeployment struct {
	d  *gl.Deployment
	at time.Time // when it reached its status
}

func deployedAt(d *gl.Deployment) time.Time {
	if t := d.Deployable.FinishedAt; t != nil {
		return t.UTC()
	}
	if d.UpdatedAt != nil {
		return d.UpdatedAt.UTC()
	}
	return time.Time{}
}

// deployments publishes the production deployments created in the window
// (a GitLab deployment has one status at a time: its current one), the
// last successful one before, and the commits each successful one shipped
// (the compare with the one before it).
func (r glProject) deployments(ctx context.Context, w Window, emit func(...event.Event)) error {
	var (
		shipped []glDeployment
		pred    *glDeployment
		older   int
	)
	orderBy, sort := "id", "desc"
	opts := &gl.ListProjectDeploymentsOptions{ListOptions: gl.ListOptions{PerPage: 100}, OrderBy: &orderBy, Sort: &sort}
pages:
	for {
		page, resp, err := r.g.client.Deployments.ListProjectDeployments(r.path, opts, gl.WithContext(ctx))
		if err != nil {
			return fmt.Errorf("list deployments: %w", err)
		}
		for _, d := range page {
			env := ""
			if d.Environment != nil {
				env = d.Environment.Name
			}
			if d.CreatedAt == nil || !r.g.cfg.IsProduction(env) || !d.CreatedAt.Before(w.Until) {
				continue
			}
			at := deployedAt(d)
			e, err := collector.DeploymentEvent(r.path, d.ID, d.SHA, env, d.Status, at)
			if errors.Is(err, webhook.ErrIgnored) {
				continue
			}
			if err != nil {
				return fmt.Errorf("deployment %d: %w", d.ID, err)
			}
			emit(e)
			success := d.Status == "success"
			if w.Contains(d.CreatedAt.UTC()) {
				if success {
					shipped = append(shipped, glDeployment{d: d, at: at})
				}
				continue
			}
			if success {
				pred = &glDeployment{d: d, at: at}
				break pages
			}
			if older++; older >= maxOlderDeployments {
				break pages
			}
		}
		if resp.NextPage == 0 {
			break
		}
		opts.Page = resp.NextPage
	}
	slices.SortFunc(shipped, func(a, b glDeployment) int { return cmp.Or(a.at.Compare(b.at), cmp.Compare(a.d.ID, b.d.ID)) })
	prev := ""
	if pred != nil {
		prev = pred.d.SHA
		if err := r.anchor(ctx, prev, emit); err != nil {
			return err
		}
	}
	for _, d := range shipped {
		switch {
		case prev == "":
			e, err := r.history(ctx, d.d.SHA, w.Since)
			if err != nil {
				return err
			}
			if e != nil {
				emit(*e)
			}
		case prev != d.d.SHA:
			e, err := r.g.cmp.Compare(ctx, r.path, prev, d.d.SHA)
			if errors.Is(err, event.ErrNotComparable) {
				break // a rollback, or nothing between
			}
			if err != nil {
				return err
			}
			emit(e)
		}
		prev = d.d.SHA
	}
	return nil
}

// anchor publishes the commit the last deployment before the window
// shipped, so that the history of the first one in it stops there.
func (r glProject) anchor(ctx context.Context, sha string, emit func(...event.Event)) error {
	c, _, err := r.g.client.Commits.GetCommit(r.path, sha, nil, gl.WithContext(ctx))
	if err != nil {
		return fmt.Errorf("commit %s: %w", sha, err)
	}
	push, err := glRange([]*gl.Commit{c})
	if err != nil {
		return fmt.Errorf("commit %s: %w", sha, err)
	}
	e, err := event.CompareEvent("gitlab", r.path, push.Before, push.After, push)
	if err != nil {
		return err
	}
	emit(e)
	return nil
}

// history is the commits of sha since since, for a first deployment with
// no earlier one to compare with.
func (r glProject) history(ctx context.Context, sha string, since time.Time) (*event.Event, error) {
	var newestFirst []*gl.Commit
	opts := &gl.ListCommitsOptions{ListOptions: gl.ListOptions{PerPage: 100}, RefName: &sha, Since: &since}
	for {
		page, resp, err := r.g.client.Commits.ListCommits(r.path, opts, gl.WithContext(ctx))
		if err != nil {
			return nil, fmt.Errorf("list commits of %s: %w", sha, err)
		}
		newestFirst = append(newestFirst, page...)
		if resp.NextPage == 0 {
			break
		}
		opts.Page = resp.NextPage
	}
	return rangeEvent("gitlab", r.path, sha, newestFirst, glRange)
}

// glRange is commits (oldest first) as a range push from the first one's
// parent.
func glRange(commits []*gl.Commit) (*event.Push, error) {
	before := event.ZeroSHA
	if ps := commits[0].ParentIDs; len(ps) > 0 && ps[0] != "" {
		before = ps[0]
	}
	push := &event.Push{Ref: "compare", Before: before, After: commits[len(commits)-1].ID}
	for _, c := range commits {
		if c == nil || c.ID == "" || c.AuthoredDate == nil {
			return nil, errors.New("commit without id or authored_date")
		}
		push.Commits = append(push.Commits, event.Commit{SHA: c.ID, Time: c.AuthoredDate.UTC()})
	}
	return push, nil
}

// merges publishes the merge requests merged in the window, each with its
// commit list (a squash merge rewrites them on the target branch).
func (r glProject) merges(ctx context.Context, w Window, emit func(...event.Event)) error {
	state, orderBy, sort := "merged", "updated_at", "desc"
	since := w.Since
	opts := &gl.ListProjectMergeRequestsOptions{ListOptions: gl.ListOptions{PerPage: 100}, State: &state, OrderBy: &orderBy, Sort: &sort, UpdatedAfter: &since}
	for {
		page, resp, err := r.g.client.MergeRequests.ListProjectMergeRequests(r.path, opts, gl.WithContext(ctx))
		if err != nil {
			return fmt.Errorf("list merge requests: %w", err)
		}
		for _, mr := range page {
			merged := mr.MergedAt
			if merged == nil {
				merged = mr.UpdatedAt
			}
			if merged == nil || !w.Contains(merged.UTC()) {
				continue
			}
			e, err := collector.MergeEvent(r.path, mr.IID, mr.MergeCommitSHA, mr.SquashCommitSHA, mr.SHA, mr.TargetBranch, *merged)
			if err != nil {
				return err
			}
			emit(e)
			commits, err := r.mrCommits(ctx, mr.IID)
			if err != nil {
				return err
			}
			if len(commits) == 0 {
				continue
			}
			push, err := glRange(commits)
			if err != nil {
				return fmt.Errorf("merge request !%d: %w", mr.IID, err)
			}
			c, err := event.CompareEvent("gitlab", r.path, push.Before, push.After, push)
			if err != nil {
				return fmt.Errorf("merge request !%d: %w", mr.IID, err)
			}
			emit(c)
		}
		if resp.NextPage == 0 {
			return nil
		}
		opts.Page = resp.NextPage
	}
}

// mrCommits are a merge request's commits, oldest first (GitLab lists the
// newest first).
func (r glProject) mrCommits(ctx context.Context, iid int) ([]*gl.Commit, error) {
	var out []*gl.Commit
	opts := &gl.GetMergeRequestCommitsOptions{PerPage: 100}
	for {
		page, resp, err := r.g.client.MergeRequests.GetMergeRequestCommits(r.path, iid, opts, gl.WithContext(ctx))
		if err != nil {
			return nil, fmt.Errorf("list commits of merge request !%d: %w", iid, err)
		}
		out = append(out, page...)
		if resp.NextPage == 0 {
			break
		}
		opts.Page = resp.NextPage
	}
	slices.Reverse(out)
	return out, nil
}

// issues publishes a snapshot of each incident (issue_type incident)
// updated in the window, open or closed.
func (r glProject) issues(ctx context.Context, w Window, emit func(...event.Event)) error {
	issueType, orderBy, sort := "incident", "updated_at", "asc"
	since := w.Since
	opts := &gl.ListProjectIssuesOptions{ListOptions: gl.ListOptions{PerPage: 100}, IssueType: &issueType, OrderBy: &orderBy, Sort: &sort, UpdatedAfter: &since}
	for {
		page, resp, err := r.g.client.Issues.ListProjectIssues(r.path, opts, gl.WithContext(ctx))
		if err != nil {
			return fmt.Errorf("list incidents: %w", err)
		}
		for _, is := range page {
			if is.CreatedAt == nil || !is.CreatedAt.Before(w.Until) {
				continue
			}
			at := is.CreatedAt.UTC()
			if is.UpdatedAt != nil {
				at = is.UpdatedAt.UTC()
			}
			var resolved *time.Time
			if is.State == "closed" {
				t := at
				if is.ClosedAt != nil {
					t = is.ClosedAt.UTC()
				}
				resolved = &t
			}
			e, err := collector.IncidentEvent(r.path, is.IID, is.Title, is.CreatedAt.UTC(), at, resolved, "backfill", false)
			if err != nil {
				return fmt.Errorf("incident #%d: %w", is.IID, err)
			}
			emit(e)
		}
		if resp.NextPage == 0 {
			return nil
		}
		opts.Page = resp.NextPage
	}
}
