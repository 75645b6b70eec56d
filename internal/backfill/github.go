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

	gh "github.com/google/go-github/v60/github"

	collector "github.com/doraflow/doraflow/collectors/github"
	"github.com/doraflow/doraflow/collectors/webhook"
	"github.com/doraflow/doraflow/pkg/event"
)

// GitHubConfig configures a GitHub backfill.
type GitHubConfig struct {
	// Token is DORAFLOW_GITHUB_TOKEN; APIURL is github.api_url (empty for
	// github.com, the API of a GitHub Enterprise Server otherwise).
	Token, APIURL string
	// Repos (owner/name) or Org names what to backfill.
	Repos []string
	Org   string
	// IncidentLabels mark issues as incidents (github.incident_labels).
	IncidentLabels []string
	// IsProduction says whether an environment is a production one.
	IsProduction func(env string) bool
}

// Validate explains every problem of the configuration at once.
func (c GitHubConfig) Validate() error {
	var errs []error
	if c.Token == "" {
		errs = append(errs, errors.New("backfill github: no token; set DORAFLOW_GITHUB_TOKEN (or github.token) to a token that can read the repositories' deployments, pull requests and issues"))
	}
	switch {
	case len(c.Repos) == 0 && c.Org == "":
		errs = append(errs, errors.New("backfill github: name the repositories (--repo owner/name, repeated) or an organisation (--org ORG)"))
	case len(c.Repos) > 0 && c.Org != "":
		errs = append(errs, errors.New("backfill github: --repo and --org exclude each other"))
	}
	for _, r := range c.Repos {
		if owner, name, ok := strings.Cut(r, "/"); !ok || owner == "" || name == "" || strings.Contains(name, "/") {
			errs = append(errs, fmt.Errorf("backfill github: --repo %q: want owner/name", r))
		}
	}
	if c.IsProduction == nil {
		errs = append(errs, errors.New("backfill github: IsProduction is not set"))
	}
	return errors.Join(errs...)
}

// GitHub backfills repositories through GitHub's REST API.
type GitHub struct {
	cfg    GitHubConfig
	client *gh.Client
	cmp    *collector.Comparer
}

// NewGitHubClient is a go-github client for token and apiURL whose
// requests go through rt (a Transport).
func NewGitHubClient(token, apiURL string, rt http.RoundTripper) (*gh.Client, error) {
	client := gh.NewClient(&http.Client{Transport: rt}).WithAuthToken(token)
	if apiURL != "" {
		var err error
		if client, err = client.WithEnterpriseURLs(apiURL, apiURL); err != nil {
			return nil, fmt.Errorf("github.api_url %q: %w", apiURL, err)
		}
	}
	return client, nil
}

// NewGitHub returns a GitHub backfill for a valid cfg, its requests sent
// through rt.
func NewGitHub(cfg GitHubConfig, rt http.RoundTripper) (*GitHub, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if len(cfg.IncidentLabels) == 0 {
		cfg.IncidentLabels = collector.DefaultIncidentLabels
	}
	client, err := NewGitHubClient(cfg.Token, cfg.APIURL, rt)
	if err != nil {
		return nil, err
	}
	return &GitHub{cfg: cfg, client: client, cmp: collector.NewComparerFor(client)}, nil
}

// Targets are the repositories to backfill: those named, or those of the
// organisation pushed to since since.
func (g *GitHub) Targets(ctx context.Context, since time.Time) ([]Target, error) {
	repos := g.cfg.Repos
	if g.cfg.Org != "" {
		var err error
		if repos, err = g.orgRepos(ctx, since); err != nil {
			return nil, err
		}
	}
	targets := make([]Target, 0, len(repos))
	for _, repo := range repos {
		owner, name, _ := strings.Cut(repo, "/")
		r := ghRepo{g: g, full: repo, owner: owner, name: name}
		targets = append(targets, Target{Key: "github/" + repo, Name: repo, Phases: []Phase{
			{Name: "deployments", Run: r.deployments},
			{Name: "pulls", Run: r.pulls},
			{Name: "issues", Run: r.issues},
		}})
	}
	return targets, nil
}

func (g *GitHub) orgRepos(ctx context.Context, since time.Time) ([]string, error) {
	var repos []string
	opts := &gh.RepositoryListByOrgOptions{Type: "all", Sort: "pushed", Direction: "desc", ListOptions: gh.ListOptions{PerPage: 100}}
	for {
		page, resp, err := g.client.Repositories.ListByOrg(ctx, g.cfg.Org, opts)
		if err != nil {
			return nil, fmt.Errorf("backfill github: list repositories of %s: %w", g.cfg.Org, err)
		}
		for _, r := range page {
			// Sorted by push, newest first: the rest saw nothing since.
			if p := r.GetPushedAt().Time; !p.IsZero() && p.Before(since) {
				return repos, nil
			}
			repos = append(repos, r.GetFullName())
		}
		if resp.NextPage == 0 {
			return repos, nil
		}
		opts.Page = resp.NextPage
	}
}

type ghRepo struct {
	g                 *GitHub
	full, owner, name string
}

// maxOlderDeployments bounds how many production deployments before the
// window are read to find the last successful one, the base of the first
// comparison.
const maxOlderDeployments = 20

type ghDeployment struct {
	d       *gh.Deployment
	success time.Time // its first success; zero if it never succeeded
}

// deployments publishes the production deployments created in the window
// with every status they had (the latest is often an automatic inactive
// one: the list tells the outcome), the last successful one before the
// window, and the commits each successful one shipped: the comparison with
// the one before it, paged (a comparison without paging stops at 250
// commits).
func (r ghRepo) deployments(ctx context.Context, w Window, emit func(...event.Event)) error {
	var (
		in    []ghDeployment
		pred  *ghDeployment
		older int
	)
	opts := &gh.DeploymentsListOptions{ListOptions: gh.ListOptions{PerPage: 100}}
pages:
	for {
		page, resp, err := r.g.client.Repositories.ListDeployments(ctx, r.owner, r.name, opts)
		if err != nil {
			return fmt.Errorf("list deployments: %w", err)
		}
		// Newest first.
		for _, d := range page {
			if !r.g.cfg.IsProduction(d.GetEnvironment()) || !d.GetCreatedAt().Before(w.Until) {
				continue
			}
			dep, err := r.statuses(ctx, d, emit)
			if err != nil {
				return err
			}
			if w.Contains(d.GetCreatedAt().Time) {
				in = append(in, dep)
				continue
			}
			if !dep.success.IsZero() {
				pred = &dep
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
	var shipped []ghDeployment
	for _, d := range in {
		if !d.success.IsZero() {
			shipped = append(shipped, d)
		}
	}
	slices.SortFunc(shipped, func(a, b ghDeployment) int {
		return cmp.Or(a.success.Compare(b.success), cmp.Compare(a.d.GetID(), b.d.GetID()))
	})
	prev := ""
	if pred != nil {
		prev = pred.d.GetSHA()
	}
	for i, d := range shipped {
		sha := d.d.GetSHA()
		switch {
		case prev == "":
			e, err := r.history(ctx, sha, w.Since)
			if err != nil {
				return err
			}
			if e != nil {
				emit(*e)
			}
		case prev != sha:
			e, rng, err := r.g.cmp.CompareRange(ctx, r.full, prev, sha)
			if errors.Is(err, event.ErrNotComparable) {
				// A rollback (the head is behind) or nothing between.
				break
			}
			if err != nil {
				return err
			}
			emit(e)
			if i == 0 && pred != nil && rng.MergeBase.SHA == prev && !rng.MergeBase.Time.IsZero() {
				// The commit the previous deployment shipped, so that the
				// history stops there: it is not this deployment's change.
				before := cmp.Or(rng.MergeBaseParent, event.ZeroSHA)
				if anchor, err := event.CompareEvent("github", r.full, before, prev,
					&event.Push{Ref: "compare", Before: before, After: prev, Commits: []event.Commit{rng.MergeBase}}); err == nil {
					emit(anchor)
				}
			}
		}
		prev = sha
	}
	return nil
}

// statuses publishes deployment d and each of its statuses that tells an
// outcome, and returns when it first succeeded.
func (r ghRepo) statuses(ctx context.Context, d *gh.Deployment, emit func(...event.Event)) (ghDeployment, error) {
	dep := ghDeployment{d: d}
	created, err := collector.DeploymentEvent(r.full, d)
	if err != nil {
		return dep, fmt.Errorf("deployment %d: %w", d.GetID(), err)
	}
	emit(created)
	opts := &gh.ListOptions{PerPage: 100}
	for {
		page, resp, err := r.g.client.Repositories.ListDeploymentStatuses(ctx, r.owner, r.name, d.GetID(), opts)
		if err != nil {
			return dep, fmt.Errorf("list statuses of deployment %d: %w", d.GetID(), err)
		}
		for _, st := range page {
			e, err := collector.DeploymentStatusEvent(r.full, d, st)
			if errors.Is(err, webhook.ErrIgnored) {
				continue
			}
			if err != nil {
				return dep, fmt.Errorf("deployment %d: %w", d.GetID(), err)
			}
			emit(e)
			if e.Deployment.Status == event.StatusSuccess && (dep.success.IsZero() || e.OccurredAt.Before(dep.success)) {
				dep.success = e.OccurredAt
			}
		}
		if resp.NextPage == 0 {
			return dep, nil
		}
		opts.Page = resp.NextPage
	}
}

// history is the commits of sha since since, for a first deployment that
// has no earlier one to compare with: a range from the parent of the
// oldest listed commit.
func (r ghRepo) history(ctx context.Context, sha string, since time.Time) (*event.Event, error) {
	var newestFirst []*gh.RepositoryCommit
	opts := &gh.CommitsListOptions{SHA: sha, Since: since, ListOptions: gh.ListOptions{PerPage: 100}}
	for {
		page, resp, err := r.g.client.Repositories.ListCommits(ctx, r.owner, r.name, opts)
		if err != nil {
			return nil, fmt.Errorf("list commits of %s: %w", sha, err)
		}
		newestFirst = append(newestFirst, page...)
		if resp.NextPage == 0 {
			break
		}
		opts.Page = resp.NextPage
	}
	return rangeEvent("github", r.full, sha, newestFirst, rangeOf)
}

// rangeEvent is a host's listing of commits (newest first, as the APIs
// list them) as the compare event of their range, nil for none.
func rangeEvent[C any](source, repo, sha string, newestFirst []C, rangeOf func([]C) (*event.Push, error)) (*event.Event, error) {
	if len(newestFirst) == 0 {
		return nil, nil
	}
	slices.Reverse(newestFirst)
	push, err := rangeOf(newestFirst)
	if err != nil {
		return nil, fmt.Errorf("commits of %s: %w", sha, err)
	}
	e, err := event.CompareEvent(source, repo, push.Before, push.After, push)
	if err != nil {
		return nil, err
	}
	return &e, nil
}

// rangeOf is commits (oldest first) as a range push from the first one's
// parent.
func rangeOf(commits []*gh.RepositoryCommit) (*event.Push, error) {
	before := event.ZeroSHA
	if ps := commits[0].Parents; len(ps) > 0 && ps[0].GetSHA() != "" {
		before = ps[0].GetSHA()
	}
	push := &event.Push{Ref: "compare", Before: before, After: commits[len(commits)-1].GetSHA()}
	for _, c := range commits {
		at := c.GetCommit().GetAuthor().GetDate().Time
		if c.GetSHA() == "" || at.IsZero() {
			return nil, errors.New("commit without sha or date")
		}
		push.Commits = append(push.Commits, event.Commit{SHA: c.GetSHA(), Time: at.UTC()})
	}
	return push, nil
}

// pulls publishes the pull requests merged in the window (the list has no
// merged flag: merged_at says it), each with its commit list: a squash or
// rebase merge rewrites them on the target branch, and the lead time of
// its changes starts at the original commits.
func (r ghRepo) pulls(ctx context.Context, w Window, emit func(...event.Event)) error {
	opts := &gh.PullRequestListOptions{State: "closed", Sort: "updated", Direction: "desc", ListOptions: gh.ListOptions{PerPage: 100}}
	for {
		page, resp, err := r.g.client.PullRequests.List(ctx, r.owner, r.name, opts)
		if err != nil {
			return fmt.Errorf("list pull requests: %w", err)
		}
		for _, pr := range page {
			if pr.GetUpdatedAt().Before(w.Since) {
				return nil // sorted by update, newest first: the rest is older
			}
			if pr.MergedAt == nil || !w.Contains(pr.GetMergedAt().Time) {
				continue // closed without merging, or merged outside the window
			}
			commits, err := r.prCommits(ctx, pr.GetNumber())
			if err != nil {
				return err
			}
			merge, err := collector.MergeEvent(r.full, pr, len(commits))
			if err != nil {
				return fmt.Errorf("pull request %d: %w", pr.GetNumber(), err)
			}
			emit(merge)
			if len(commits) == 0 {
				continue
			}
			push, err := rangeOf(commits)
			if err != nil {
				return fmt.Errorf("pull request %d: %w", pr.GetNumber(), err)
			}
			e, err := event.CompareEvent("github", r.full, push.Before, push.After, push)
			if err != nil {
				return fmt.Errorf("pull request %d: %w", pr.GetNumber(), err)
			}
			emit(e)
		}
		if resp.NextPage == 0 {
			return nil
		}
		opts.Page = resp.NextPage
	}
}

// issueAction is the webhook action whose snapshot the issue's current
// state is, where it shows: closed when the last update closed it, opened
// when it was never updated. The snapshot's event id is then the
// webhook's, and JetStream drops the second of the two. Otherwise
// "backfill": a snapshot no webhook sent with that id (the incident id is
// the issue's either way, so it is the same incident).
func issueAction(issue *gh.Issue) string {
	updated := issue.GetUpdatedAt().Time
	switch {
	case issue.GetState() == "closed" && issue.ClosedAt != nil && updated.Equal(issue.GetClosedAt().Time):
		return "closed"
	case issue.GetState() == "open" && updated.Equal(issue.GetCreatedAt().Time):
		return "opened"
	}
	return "backfill"
}

func (r ghRepo) prCommits(ctx context.Context, number int) ([]*gh.RepositoryCommit, error) {
	var out []*gh.RepositoryCommit
	opts := &gh.ListOptions{PerPage: 100}
	for {
		page, resp, err := r.g.client.PullRequests.ListCommits(ctx, r.owner, r.name, number, opts)
		if err != nil {
			return nil, fmt.Errorf("list commits of pull request %d: %w", number, err)
		}
		out = append(out, page...)
		if resp.NextPage == 0 {
			return out, nil
		}
		opts.Page = resp.NextPage
	}
}

// issues publishes a snapshot of each issue labelled as an incident and
// updated in the window. /issues lists pull requests too (skipped) and
// only open issues unless asked for all; several labels in one query
// would mean all of them, so each label is its own query.
func (r ghRepo) issues(ctx context.Context, w Window, emit func(...event.Event)) error {
	seen := map[int]bool{}
	for _, label := range r.g.cfg.IncidentLabels {
		opts := &gh.IssueListByRepoOptions{State: "all", Labels: []string{label}, Since: w.Since,
			Sort: "updated", Direction: "asc", ListOptions: gh.ListOptions{PerPage: 100}}
		for {
			page, resp, err := r.g.client.Issues.ListByRepo(ctx, r.owner, r.name, opts)
			if err != nil {
				return fmt.Errorf("list issues labelled %q: %w", label, err)
			}
			for _, issue := range page {
				if issue.IsPullRequest() || seen[issue.GetNumber()] || !issue.GetCreatedAt().Before(w.Until) {
					continue
				}
				seen[issue.GetNumber()] = true
				e, err := collector.IncidentEvent(r.full, issue, issueAction(issue), false)
				if err != nil {
					return fmt.Errorf("issue %d: %w", issue.GetNumber(), err)
				}
				emit(e)
			}
			if resp.NextPage == 0 {
				break
			}
			opts.Page = resp.NextPage
		}
	}
	return nil
}
