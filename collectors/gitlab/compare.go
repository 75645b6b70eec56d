package gitlab

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	gl "github.com/xanzy/go-gitlab"

	"github.com/doraflow/doraflow/pkg/event"
)

// Comparer fills gaps in a project's push chain (GitLab sends at most 20
// commits per push) through GitLab's compare API.
type Comparer struct {
	client *gl.Client
}

// NewComparer returns a Comparer authenticated with token; apiURL is empty
// for gitlab.com, or a self-managed instance's API URL (…/api/v4).
func NewComparer(token, apiURL string) (*Comparer, error) {
	if token == "" {
		return nil, errors.New("gitlab: compare needs a token (DORAFLOW_GITLAB_TOKEN)")
	}
	var opts []gl.ClientOptionFunc
	if apiURL != "" {
		opts = append(opts, gl.WithBaseURL(apiURL))
	}
	client, err := gl.NewClient(token, opts...)
	if err != nil {
		return nil, fmt.Errorf("gitlab: api client: %w", err)
	}
	return &Comparer{client: client}, nil
}

// NewComparerFor returns a Comparer on an existing client (a backfill's,
// with its transport).
func NewComparerFor(client *gl.Client) *Comparer { return &Comparer{client: client} }

// Compare returns the commits between base and head (from their merge base)
// as a push event.
func (c *Comparer) Compare(ctx context.Context, project, base, head string) (event.Event, error) {
	straight := false
	cmp, resp, err := c.client.Repositories.Compare(project, &gl.CompareOptions{From: &base, To: &head, Straight: &straight},
		gl.WithContext(ctx))
	if err != nil {
		if resp != nil && resp.StatusCode == http.StatusNotFound {
			return event.Event{}, fmt.Errorf("gitlab: compare %s %s...%s: %w: %v", project, base, head, event.ErrNotComparable, err)
		}
		return event.Event{}, fmt.Errorf("gitlab: compare %s %s...%s: %w", project, base, head, err)
	}
	if cmp.CompareTimeout {
		return event.Event{}, fmt.Errorf("gitlab: compare %s %s...%s: %w: GitLab timed out comparing", project, base, head, event.ErrNotComparable)
	}
	push := &event.Push{Ref: "compare", Before: base, After: head}
	for _, cm := range cmp.Commits {
		if cm == nil || cm.ID == "" || cm.AuthoredDate == nil {
			return event.Event{}, fmt.Errorf("gitlab: compare %s: commit without id or date", project)
		}
		push.Commits = append(push.Commits, event.Commit{SHA: cm.ID, Time: cm.AuthoredDate.UTC()})
	}
	return event.CompareEvent("gitlab", project, base, head, push)
}
