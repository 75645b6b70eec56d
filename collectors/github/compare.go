package github

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"

	gh "github.com/google/go-github/v60/github"

	"github.com/doraflow/doraflow/pkg/event"
)

// Comparer fills gaps in a repository's push chain through GitHub's compare
// API.
type Comparer struct {
	client *gh.Client
}

// NewComparer returns a Comparer authenticated with token; apiURL is empty
// for github.com, or a GitHub Enterprise Server's API URL.
func NewComparer(token, apiURL string) (*Comparer, error) {
	if token == "" {
		return nil, errors.New("github: compare needs a token (DORAFLOW_GITHUB_TOKEN)")
	}
	client := gh.NewClient(nil).WithAuthToken(token)
	if apiURL != "" {
		var err error
		if client, err = client.WithEnterpriseURLs(apiURL, apiURL); err != nil {
			return nil, fmt.Errorf("github: api url %q: %w", apiURL, err)
		}
	}
	return &Comparer{client: client}, nil
}

// NewComparerFor returns a Comparer on an existing client (a backfill's,
// with its transport).
func NewComparerFor(client *gh.Client) *Comparer { return &Comparer{client: client} }

// Compare returns the commits between base and head as a push event (from
// their merge base, so a diverged head chains correctly), paging through
// GitHub's 250-commit pages. Its id names the comparison, so fetching it
// again is a duplicate.
func (c *Comparer) Compare(ctx context.Context, repo, base, head string) (event.Event, error) {
	e, _, err := c.CompareRange(ctx, repo, base, head)
	return e, err
}

// Range is what a comparison tells beside its commits.
type Range struct {
	// MergeBase is the commit the range starts from, with its time and
	// first parent ("" for a root commit).
	MergeBase       event.Commit
	MergeBaseParent string
	// Merges are the commits of the range with more than one parent (true
	// merge commits): the history of what they merged is in the range.
	Merges map[string]bool
}

// CompareRange is Compare, with what else the comparison tells.
func (c *Comparer) CompareRange(ctx context.Context, repo, base, head string) (event.Event, Range, error) {
	var rng Range
	owner, name, ok := strings.Cut(repo, "/")
	if !ok {
		return event.Event{}, rng, fmt.Errorf("github: compare %s: %w: not owner/name", repo, event.ErrNotComparable)
	}
	push := &event.Push{Ref: "compare", Before: base, After: head}
	// Without paging parameters the API returns at most 250 commits.
	opts := &gh.ListOptions{PerPage: 100}
	for {
		cmp, resp, err := c.client.Repositories.CompareCommits(ctx, owner, name, base, head, opts)
		if err != nil {
			if resp != nil && (resp.StatusCode == http.StatusNotFound || resp.StatusCode == http.StatusUnprocessableEntity) {
				return event.Event{}, rng, fmt.Errorf("github: compare %s %s...%s: %w: %v", repo, base, head, event.ErrNotComparable, err)
			}
			return event.Event{}, rng, fmt.Errorf("github: compare %s %s...%s: %w", repo, base, head, err)
		}
		if mb := cmp.GetMergeBaseCommit(); mb.GetSHA() != "" {
			push.Before = mb.GetSHA()
			rng.MergeBase = event.Commit{SHA: mb.GetSHA(), Time: mb.GetCommit().GetAuthor().GetDate().UTC()}
			if len(mb.Parents) > 0 {
				rng.MergeBaseParent = mb.Parents[0].GetSHA()
			}
		}
		for _, rc := range cmp.Commits {
			at := rc.GetCommit().GetAuthor().GetDate().Time
			if rc.GetSHA() == "" || at.IsZero() {
				return event.Event{}, rng, fmt.Errorf("github: compare %s: commit without sha or date", repo)
			}
			push.Commits = append(push.Commits, event.Commit{SHA: rc.GetSHA(), Time: at.UTC()})
			if len(rc.Parents) > 1 {
				if rng.Merges == nil {
					rng.Merges = map[string]bool{}
				}
				rng.Merges[rc.GetSHA()] = true
			}
		}
		if resp.NextPage == 0 {
			break
		}
		opts.Page = resp.NextPage
	}
	e, err := event.CompareEvent("github", repo, base, head, push)
	return e, rng, err
}
