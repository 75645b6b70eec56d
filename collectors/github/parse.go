package github

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	gh "github.com/google/go-github/v60/github"

	"github.com/doraflow/doraflow/collectors/webhook"
	"github.com/doraflow/doraflow/pkg/event"
)

// Parse turns a GitHub delivery into canonical events. It is pure: the same
// delivery always gives the same events, with ids that name the fact (not the
// delivery), so a redelivery or a backfilled copy is a duplicate.
func (s *Source) Parse(d webhook.Delivery) ([]event.Event, error) {
	switch d.Event {
	case "push", "deployment", "deployment_status", "pull_request", "issues":
	case "ping":
		return nil, webhook.Ignored("ping")
	default:
		return nil, webhook.Ignored("event type not used")
	}
	payload, err := gh.ParseWebHook(d.Event, d.Body)
	if err != nil {
		return nil, fmt.Errorf("github: parse %s: %w", d.Event, err)
	}
	var events []event.Event
	switch p := payload.(type) {
	case *gh.PushEvent:
		events, err = parsePush(p)
	case *gh.DeploymentEvent:
		events, err = parseDeployment(p)
	case *gh.DeploymentStatusEvent:
		events, err = parseDeploymentStatus(p)
	case *gh.PullRequestEvent:
		events, err = parsePullRequest(p)
	case *gh.IssuesEvent:
		events, err = s.parseIssue(p)
	}
	if err != nil {
		return nil, fmt.Errorf("github: parse %s: %w", d.Event, err)
	}
	return events, nil
}

func repoName(r interface{ GetFullName() string }) (string, error) {
	name := r.GetFullName()
	if name == "" {
		return "", fmt.Errorf("repository.full_name missing")
	}
	return name, nil
}

func parsePush(p *gh.PushEvent) ([]event.Event, error) {
	repo, err := repoName(p.GetRepo())
	if err != nil {
		return nil, err
	}
	ref := p.GetRef()
	if !strings.HasPrefix(ref, "refs/heads/") {
		return nil, webhook.Ignored("push to a tag")
	}
	if p.GetAfter() == "" {
		return nil, fmt.Errorf("push without after")
	}
	push := &event.Push{
		Ref:     ref,
		Before:  p.GetBefore(),
		After:   p.GetAfter(),
		Forced:  p.GetForced(),
		Deleted: p.GetDeleted(),
	}
	for i, c := range p.Commits {
		if c.GetID() == "" || c.Timestamp == nil {
			return nil, fmt.Errorf("commits[%d]: id and timestamp are required", i)
		}
		push.Commits = append(push.Commits, event.Commit{SHA: c.GetID(), Time: c.GetTimestamp().UTC()})
	}
	// Without new commits (a branch deleted, or created at a known commit)
	// a push changes nothing doraflow measures.
	if len(push.Commits) == 0 {
		return nil, webhook.Ignored("push without new commits")
	}
	// A push payload has no time of its own but the repository's pushed_at.
	at := p.GetRepo().GetPushedAt().Time
	if at.IsZero() {
		at = push.Commits[len(push.Commits)-1].Time
	}
	return []event.Event{{
		ID:         fmt.Sprintf("github:push:%s:%s:%s:%s", repo, ref, push.Before, push.After),
		Source:     "github",
		Type:       event.TypePush,
		Repo:       repo,
		OccurredAt: at.UTC(),
		Push:       push,
	}}, nil
}

func deploymentOf(d *gh.Deployment, status string) (*event.Deployment, error) {
	if d.GetID() == 0 || d.GetSHA() == "" {
		return nil, fmt.Errorf("deployment id and sha are required")
	}
	return &event.Deployment{
		ID:          strconv.FormatInt(d.GetID(), 10),
		SHA:         d.GetSHA(),
		Environment: d.GetEnvironment(),
		Status:      status,
	}, nil
}

func parseDeployment(p *gh.DeploymentEvent) ([]event.Event, error) {
	repo, err := repoName(p.GetRepo())
	if err != nil {
		return nil, err
	}
	e, err := DeploymentEvent(repo, p.GetDeployment())
	if err != nil {
		return nil, err
	}
	return []event.Event{e}, nil
}

// DeploymentEvent is the event of a deployment created (pending until a
// status says otherwise), as the deployment webhook and a backfill through
// the deployments API both report it.
func DeploymentEvent(repo string, d *gh.Deployment) (event.Event, error) {
	dep, err := deploymentOf(d, event.StatusPending)
	if err != nil {
		return event.Event{}, err
	}
	return event.Event{
		ID:         "github:deployment:" + dep.ID,
		Source:     "github",
		Type:       event.TypeDeployment,
		Repo:       repo,
		Service:    repo,
		OccurredAt: d.GetCreatedAt().UTC(),
		Deployment: dep,
	}, nil
}

// deploymentStates maps GitHub's deployment states onto doraflow's; the
// others (queued, in_progress, inactive) say nothing about the outcome.
var deploymentStates = map[string]string{
	"success": event.StatusSuccess,
	"failure": event.StatusFailure,
	"error":   event.StatusError,
	"pending": event.StatusPending,
}

func parseDeploymentStatus(p *gh.DeploymentStatusEvent) ([]event.Event, error) {
	repo, err := repoName(p.GetRepo())
	if err != nil {
		return nil, err
	}
	st := p.GetDeploymentStatus()
	if st == nil {
		return nil, fmt.Errorf("deployment_status missing")
	}
	e, err := DeploymentStatusEvent(repo, p.GetDeployment(), st)
	if err != nil {
		return nil, err
	}
	return []event.Event{e}, nil
}

// DeploymentStatusEvent is the event of one status of deployment d, as the
// deployment_status webhook and a backfill reading the deployment's status
// list both report it. A state that says nothing about the outcome
// (queued, in_progress, inactive) is Ignored.
func DeploymentStatusEvent(repo string, d *gh.Deployment, st *gh.DeploymentStatus) (event.Event, error) {
	status, ok := deploymentStates[st.GetState()]
	if !ok {
		return event.Event{}, webhook.Ignored("deployment state not an outcome")
	}
	dep, err := deploymentOf(d, status)
	if err != nil {
		return event.Event{}, err
	}
	if env := st.GetEnvironment(); env != "" {
		dep.Environment = env
	}
	if st.GetID() == 0 || st.CreatedAt == nil {
		return event.Event{}, fmt.Errorf("deployment_status id and created_at are required")
	}
	return event.Event{
		ID:         "github:deployment_status:" + strconv.FormatInt(st.GetID(), 10),
		Source:     "github",
		Type:       event.TypeDeployment,
		Repo:       repo,
		Service:    repo,
		OccurredAt: st.GetCreatedAt().UTC(),
		Deployment: dep,
	}, nil
}

func parsePullRequest(p *gh.PullRequestEvent) ([]event.Event, error) {
	pr := p.GetPullRequest()
	if pr == nil {
		return nil, fmt.Errorf("pull_request missing")
	}
	if p.GetAction() != "closed" || !pr.GetMerged() {
		return nil, webhook.Ignored("pull request not merged")
	}
	repo, err := repoName(p.GetRepo())
	if err != nil {
		return nil, err
	}
	e, err := MergeEvent(repo, pr, pr.GetCommits())
	if err != nil {
		return nil, err
	}
	return []event.Event{e}, nil
}

// MergeEvent is the event of merged pull request pr with its number of
// commits, as the pull_request webhook and a backfill both report it. The
// pull request list of the API has no merged flag and no commit count: a
// backfill knows the pull request is merged from merged_at and counts its
// commit list.
func MergeEvent(repo string, pr *gh.PullRequest, commits int) (event.Event, error) {
	if pr.GetMergeCommitSHA() == "" || pr.MergedAt == nil {
		return event.Event{}, fmt.Errorf("merged pull request without merge_commit_sha or merged_at")
	}
	return event.Event{
		ID:         fmt.Sprintf("github:merge:%s#%d", repo, pr.GetNumber()),
		Source:     "github",
		Type:       event.TypeMerge,
		Repo:       repo,
		OccurredAt: pr.GetMergedAt().UTC(),
		Merge: &event.Merge{
			Number:   pr.GetNumber(),
			MergeSHA: pr.GetMergeCommitSHA(),
			HeadSHA:  pr.GetHead().GetSHA(),
			Commits:  commits,
			Target:   pr.GetBase().GetRef(),
		},
	}, nil
}

func (s *Source) isIncidentLabel(name string) bool {
	for _, l := range s.incidentLabels {
		if strings.EqualFold(l, name) {
			return true
		}
	}
	return false
}

// parseIssue turns an issue labelled as an incident into a snapshot of that
// incident. Removing the label, or deleting the issue while it carries one
// (a deleted event holds the issue as it was), withdraws it; deleting an
// issue that carries none is ignored, since there is nothing to withdraw.
func (s *Source) parseIssue(p *gh.IssuesEvent) ([]event.Event, error) {
	issue := p.GetIssue()
	if issue == nil {
		return nil, fmt.Errorf("issue missing")
	}
	labelled := false
	for _, l := range issue.Labels {
		if s.isIncidentLabel(l.GetName()) {
			labelled = true
		}
	}
	action := p.GetAction()
	withdrawn := (action == "deleted" && labelled) || (action == "unlabeled" && s.isIncidentLabel(p.GetLabel().GetName()) && !labelled)
	if !labelled && !withdrawn {
		return nil, webhook.Ignored("issue not labelled as incident")
	}
	repo, err := repoName(p.GetRepo())
	if err != nil {
		return nil, err
	}
	e, err := IncidentEvent(repo, issue, action, withdrawn)
	if err != nil {
		return nil, err
	}
	return []event.Event{e}, nil
}

// IncidentEvent is the snapshot of an issue labelled as an incident, as the
// issues webhook (action is the webhook's action) and a backfill listing
// the repository's issues both report it. The incident's id names the
// issue, so every snapshot of it, whoever reports it, is the same incident.
func IncidentEvent(repo string, issue *gh.Issue, action string, withdrawn bool) (event.Event, error) {
	if issue.GetNumber() == 0 || issue.CreatedAt == nil {
		return event.Event{}, fmt.Errorf("issue number and created_at are required")
	}
	inc := &event.Incident{
		ID:        fmt.Sprintf("github:%s#%d", repo, issue.GetNumber()),
		Title:     issue.GetTitle(),
		OpenedAt:  issue.GetCreatedAt().UTC(),
		Withdrawn: withdrawn,
	}
	if issue.GetState() == "closed" && issue.ClosedAt != nil {
		t := issue.GetClosedAt().UTC()
		inc.ResolvedAt = &t
	}
	at := issue.GetUpdatedAt().Time
	if at.IsZero() {
		at = inc.OpenedAt
	}
	return event.Event{
		ID:         fmt.Sprintf("github:issue:%s#%d:%s:%s", repo, issue.GetNumber(), action, at.UTC().Format(time.RFC3339)),
		Source:     "github",
		Type:       event.TypeIncident,
		Repo:       repo,
		Service:    repo,
		OccurredAt: at.UTC(),
		Incident:   inc,
	}, nil
}
