package gitlab

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	gl "github.com/xanzy/go-gitlab"

	"github.com/doraflow/doraflow/collectors/webhook"
	"github.com/doraflow/doraflow/pkg/event"
)

const source = "gitlab"

// Parse turns a GitLab delivery into canonical events. It is pure: the same
// delivery always gives the same events, with ids that name the fact (not the
// delivery), so a redelivery or a backfilled copy is a duplicate.
func (s *Source) Parse(d webhook.Delivery) ([]event.Event, error) {
	typ := gl.EventType(d.Event)
	switch typ {
	case gl.EventTypePush, gl.EventTypeMergeRequest, gl.EventTypeDeployment,
		gl.EventTypeIssue, gl.EventConfidentialIssue:
	case gl.EventTypePipeline:
		if !s.pipelineDeployments {
			return nil, webhook.Ignored("pipeline deployments disabled")
		}
	default:
		return nil, webhook.Ignored("event type not used")
	}
	payload, err := gl.ParseWebhook(typ, d.Body)
	if err != nil {
		return nil, fmt.Errorf("gitlab: parse %s: %w", d.Event, err)
	}
	var events []event.Event
	switch p := payload.(type) {
	case *gl.PushEvent:
		events, err = parsePush(p)
	case *gl.MergeEvent:
		events, err = parseMerge(p, d.Body)
	case *gl.DeploymentEvent:
		events, err = parseDeployment(p)
	case *gl.PipelineEvent:
		events, err = parsePipeline(p)
	case *gl.IssueEvent:
		events, err = parseIssue(p, d.Body)
	default:
		// ParseWebhook maps each type accepted above onto one of these.
		return nil, fmt.Errorf("gitlab: parse %s: unexpected payload %T", d.Event, payload)
	}
	switch {
	case errors.Is(err, webhook.ErrIgnored):
		// Unwrapped: the plumbing takes the reason after "ignored: " as
		// a metrics label, which must stay a short fixed phrase.
		return nil, err
	case err != nil:
		return nil, fmt.Errorf("gitlab: parse %s: %w", d.Event, err)
	}
	return events, nil
}

// repoOf checks a project's path_with_namespace. The path ends up in event
// ids, which travel as NATS headers, so whitespace and control characters are
// refused rather than published.
func repoOf(path string) (string, error) {
	if path == "" {
		return "", fmt.Errorf("project.path_with_namespace missing")
	}
	if strings.ContainsFunc(path, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
		return "", fmt.Errorf("project.path_with_namespace %q has whitespace or control characters", path)
	}
	return path, nil
}

// isSHA reports a full commit id: 40 hex digits (SHA-1) or 64 (SHA-256
// repositories).
func isSHA(s string) bool {
	if len(s) != 40 && len(s) != 64 {
		return false
	}
	for _, c := range s {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
			return false
		}
	}
	return true
}

// timeLayouts are the formats GitLab uses for times in webhooks: RFC 3339 in
// some payloads, Ruby's default "2021-04-28 21:50:00 +0200" in deployments and
// "2016-08-12 15:23:28 UTC" in pipelines and older versions. Only the literal
// zone UTC is accepted: Go would read other abbreviations as offset zero.
var timeLayouts = [...]string{time.RFC3339Nano, "2006-01-02 15:04:05 -0700", "2006-01-02 15:04:05 UTC"}

// parseTime reads a GitLab time; field names the attribute for the error.
func parseTime(field, s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, fmt.Errorf("%s missing", field)
	}
	for _, layout := range timeLayouts {
		if t, err := time.Parse(layout, s); err == nil {
			return t.UTC(), nil
		}
	}
	return time.Time{}, fmt.Errorf("%s: %q is not a time GitLab sends", field, s)
}

func parsePush(p *gl.PushEvent) ([]event.Event, error) {
	repo, err := repoOf(p.Project.PathWithNamespace)
	if err != nil {
		return nil, err
	}
	if !strings.HasPrefix(p.Ref, "refs/heads/") {
		return nil, webhook.Ignored("push not to a branch")
	}
	if !isSHA(p.After) || !isSHA(p.Before) {
		return nil, fmt.Errorf("before %q and after %q must be commit ids", p.Before, p.After)
	}
	commits, err := pushCommits(p)
	if err != nil {
		return nil, err
	}
	push := &event.Push{
		Ref:     p.Ref,
		Before:  p.Before,
		After:   p.After,
		Deleted: event.IsZeroSHA(p.After),
		Commits: commits,
		// GitLab lists at most the 20 newest commits; total_commits_count
		// says how many the push brought. Forced is left unset: GitLab's
		// payload does not say whether a push was forced.
		Truncated: p.TotalCommitsCount > len(commits),
	}
	// Without new commits (a branch deleted, or created at a known commit)
	// a push changes nothing doraflow measures.
	if len(commits) == 0 {
		return nil, webhook.Ignored("push without new commits")
	}
	// A push payload has no time of its own: use the newest commit's.
	at := commits[len(commits)-1].Time
	return []event.Event{{
		ID:         fmt.Sprintf("gitlab:push:%s:%s:%s:%s", repo, p.Ref, p.Before, p.After),
		Source:     source,
		Type:       event.TypePush,
		Repo:       repo,
		OccurredAt: at,
		Push:       push,
	}}, nil
}

// pushCommits lists a push's commits oldest first. GitLab sends them that
// way ("latest 20 commits ASC"), ending at after; a list that starts at after
// instead is reversed rather than trusted to be in order.
func pushCommits(p *gl.PushEvent) ([]event.Commit, error) {
	commits := make([]event.Commit, 0, len(p.Commits))
	for i, c := range p.Commits {
		if c == nil || !isSHA(c.ID) || c.Timestamp == nil {
			return nil, fmt.Errorf("commits[%d]: id and timestamp are required", i)
		}
		commits = append(commits, event.Commit{SHA: c.ID, Time: c.Timestamp.UTC()})
	}
	if n := len(commits); n > 1 && commits[0].SHA == p.After && commits[n-1].SHA != p.After {
		for i, j := 0, n-1; i < j; i, j = i+1, j-1 {
			commits[i], commits[j] = commits[j], commits[i]
		}
	}
	return commits, nil
}

// mergeExtra holds what go-gitlab's MergeEvent lacks.
type mergeExtra struct {
	ObjectAttributes struct {
		SquashCommitSHA string `json:"squash_commit_sha"`
	} `json:"object_attributes"`
}

func parseMerge(p *gl.MergeEvent, body []byte) ([]event.Event, error) {
	mr := &p.ObjectAttributes
	if mr.Action != "merge" {
		return nil, webhook.Ignored("merge request not merged")
	}
	repo, err := repoOf(p.Project.PathWithNamespace)
	if err != nil {
		return nil, err
	}
	var extra mergeExtra
	if err := json.Unmarshal(body, &extra); err != nil {
		return nil, err
	}
	if mr.IID <= 0 {
		return nil, fmt.Errorf("object_attributes.iid missing")
	}
	// The payload has no merged_at; the hook is sent as the merge happens,
	// which updated_at records.
	at, err := parseTime("object_attributes.updated_at", mr.UpdatedAt)
	if err != nil {
		return nil, err
	}
	e, err := MergeEvent(repo, mr.IID, mr.MergeCommitSHA, extra.ObjectAttributes.SquashCommitSHA, mr.LastCommit.ID, mr.TargetBranch, at)
	if err != nil {
		return nil, err
	}
	return []event.Event{e}, nil
}

// MergeEvent is the event of merge request !iid merged at at, as the merge
// request hook and a backfill through the merge requests API both report
// it: the commit it landed (merge commit, else squash commit, else the head
// itself), the head of the merged branch and the target branch.
func MergeEvent(repo string, iid int, mergeCommit, squashCommit, head, target string, at time.Time) (event.Event, error) {
	mergeSHA := landedSHA(mergeCommit, squashCommit, head)
	if !isSHA(mergeSHA) {
		return event.Event{}, fmt.Errorf("merged merge request !%d has no merge_commit_sha, squash_commit_sha or last_commit.id", iid)
	}
	return event.Event{
		ID:         fmt.Sprintf("gitlab:merge:%s!%d", repo, iid),
		Source:     source,
		Type:       event.TypeMerge,
		Repo:       repo,
		OccurredAt: at.UTC(),
		Merge: &event.Merge{
			Number:   iid,
			MergeSHA: mergeSHA,
			HeadSHA:  head,
			// GitLab does not send the merge request's commit count.
			Target: target,
		},
	}, nil
}

// landedSHA is the commit a merge put on the target branch: the merge commit;
// without one (fast-forward merge) the squashed commit; without that either
// (fast-forward, no squash) the merged branch's head itself.
func landedSHA(mergeCommit, squashCommit, head string) string {
	switch {
	case mergeCommit != "":
		return mergeCommit
	case squashCommit != "":
		return squashCommit
	default:
		return head
	}
}

// deploymentStatuses maps GitLab's deployment statuses onto doraflow's.
// canceled becomes error: the attempt ended without deploying, which is not a
// failure of the change but must not stay pending forever either. Others
// (blocked awaiting approval, skipped) say nothing about the outcome.
var deploymentStatuses = map[string]string{
	"success":  event.StatusSuccess,
	"failed":   event.StatusFailure,
	"canceled": event.StatusError,
	"running":  event.StatusPending,
	"created":  event.StatusPending,
}

func parseDeployment(p *gl.DeploymentEvent) ([]event.Event, error) {
	if _, ok := deploymentStatuses[p.Status]; !ok {
		return nil, webhook.Ignored("deployment status not used")
	}
	repo, err := repoOf(p.Project.PathWithNamespace)
	if err != nil {
		return nil, err
	}
	sha, err := shaOfCommitURL(p.CommitURL, p.ShortSHA)
	if err != nil {
		return nil, err
	}
	at, err := parseTime("status_changed_at", p.StatusChangedAt)
	if err != nil {
		return nil, err
	}
	e, err := DeploymentEvent(repo, p.DeploymentID, sha, p.Environment, p.Status, at)
	if err != nil {
		return nil, err
	}
	return []event.Event{e}, nil
}

// DeploymentEvent is the event of deployment id reaching GitLab status
// status at at, as the deployment hook and a backfill through the
// deployments API both report it. A status that says nothing about the
// outcome is Ignored.
func DeploymentEvent(repo string, id int, sha, env, status string, at time.Time) (event.Event, error) {
	st, ok := deploymentStatuses[status]
	if !ok {
		return event.Event{}, webhook.Ignored("deployment status not used")
	}
	if id <= 0 {
		return event.Event{}, fmt.Errorf("deployment_id missing")
	}
	if !isSHA(sha) {
		return event.Event{}, fmt.Errorf("deployment %d: sha %q is not a commit id", id, sha)
	}
	ids := strconv.Itoa(id)
	return event.Event{
		ID:         fmt.Sprintf("gitlab:deployment:%s:%s:%s", repo, ids, status),
		Source:     source,
		Type:       event.TypeDeployment,
		Repo:       repo,
		Service:    repo,
		OccurredAt: at.UTC(),
		Deployment: &event.Deployment{
			ID:          ids,
			SHA:         sha,
			Environment: env,
			Status:      st,
		},
	}, nil
}

// shaOfCommitURL takes the full commit id from commit_url
// (".../-/commit/<sha>"): the deployment payload has only short_sha besides,
// which cannot be matched against pushed commits.
func shaOfCommitURL(commitURL, shortSHA string) (string, error) {
	sha := commitURL[strings.LastIndexByte(commitURL, '/')+1:]
	if !isSHA(sha) {
		return "", fmt.Errorf("commit_url %q does not end in a commit id", commitURL)
	}
	if !strings.HasPrefix(sha, shortSHA) {
		return "", fmt.Errorf("commit_url %q does not match short_sha %q", commitURL, shortSHA)
	}
	return sha, nil
}

// pipelineStatuses are the pipeline statuses that are a deployment's outcome;
// running or canceled pipelines are not reported.
var pipelineStatuses = map[string]string{
	"success": event.StatusSuccess,
	"failed":  event.StatusFailure,
}

// parsePipeline reports a finished pipeline on the default branch as a
// deployment to production (Config.PipelineDeployments).
func parsePipeline(p *gl.PipelineEvent) ([]event.Event, error) {
	pl := &p.ObjectAttributes
	status, ok := pipelineStatuses[pl.Status]
	if !ok {
		return nil, webhook.Ignored("pipeline not finished")
	}
	if p.Project.DefaultBranch == "" {
		return nil, fmt.Errorf("project.default_branch missing")
	}
	if pl.Tag || pl.Ref != p.Project.DefaultBranch {
		return nil, webhook.Ignored("pipeline not on the default branch")
	}
	repo, err := repoOf(p.Project.PathWithNamespace)
	if err != nil {
		return nil, err
	}
	if pl.ID <= 0 || !isSHA(pl.SHA) {
		return nil, fmt.Errorf("object_attributes.id and sha are required")
	}
	at, err := parseTime("object_attributes.finished_at", pl.FinishedAt)
	if err != nil {
		return nil, err
	}
	id := "pipeline:" + strconv.Itoa(pl.ID)
	return []event.Event{{
		ID:         fmt.Sprintf("gitlab:pipeline:%s:%d:%s", repo, pl.ID, pl.Status),
		Source:     source,
		Type:       event.TypeDeployment,
		Repo:       repo,
		Service:    repo,
		OccurredAt: at,
		Deployment: &event.Deployment{
			ID:          id,
			SHA:         pl.SHA,
			Environment: "production",
			Status:      status,
		},
	}}, nil
}

// issueExtra holds what go-gitlab's IssueEvent lacks: the work item type
// (GitLab 17.2+ sends "type": "Incident") and when the issue was closed.
type issueExtra struct {
	ObjectAttributes struct {
		Type      string `json:"type"`
		IssueType string `json:"issue_type"`
		ClosedAt  string `json:"closed_at"`
	} `json:"object_attributes"`
}

func (x issueExtra) isIncident() bool {
	a := x.ObjectAttributes
	return strings.EqualFold(a.Type, "incident") || strings.EqualFold(a.IssueType, "incident")
}

// parseIssue turns an issue of type Incident into a snapshot of the incident.
func parseIssue(p *gl.IssueEvent, body []byte) ([]event.Event, error) {
	var extra issueExtra
	if err := json.Unmarshal(body, &extra); err != nil {
		return nil, err
	}
	if !extra.isIncident() {
		return nil, webhook.Ignored("issue not an incident")
	}
	repo, err := repoOf(p.Project.PathWithNamespace)
	if err != nil {
		return nil, err
	}
	issue := &p.ObjectAttributes
	if issue.IID <= 0 {
		return nil, fmt.Errorf("object_attributes.iid missing")
	}
	opened, err := parseTime("object_attributes.created_at", issue.CreatedAt)
	if err != nil {
		return nil, err
	}
	at := opened
	if issue.UpdatedAt != "" {
		if at, err = parseTime("object_attributes.updated_at", issue.UpdatedAt); err != nil {
			return nil, err
		}
	}
	var resolved *time.Time
	if issue.State == "closed" {
		t, err := resolvedAt(extra.ObjectAttributes.ClosedAt, at)
		if err != nil {
			return nil, err
		}
		resolved = &t
	}
	// GitLab sends no hook when an issue is deleted today; should one
	// come, it withdraws the incident.
	e, err := IncidentEvent(repo, issue.IID, issue.Title, opened, at, resolved, issue.Action, issue.Action == "delete")
	if err != nil {
		return nil, err
	}
	return []event.Event{e}, nil
}

// IncidentEvent is the snapshot, at at, of incident issue #iid opened at
// opened (resolved, if closed), as the issue hook (action is its action)
// and a backfill through the issues API both report it. The incident's id
// names the issue, so every snapshot of it is the same incident.
func IncidentEvent(repo string, iid int, title string, opened, at time.Time, resolved *time.Time, action string, withdrawn bool) (event.Event, error) {
	if resolved != nil && resolved.Before(opened) {
		return event.Event{}, fmt.Errorf("object_attributes.closed_at %s is before created_at %s", resolved.Format(time.RFC3339), opened.Format(time.RFC3339))
	}
	inc := &event.Incident{
		ID:        fmt.Sprintf("gitlab:%s#%d", repo, iid),
		Title:     title,
		OpenedAt:  opened.UTC(),
		Withdrawn: withdrawn,
	}
	if resolved != nil {
		r := resolved.UTC()
		inc.ResolvedAt = &r
	}
	return event.Event{
		ID:         fmt.Sprintf("gitlab:issue:%s#%d:%s:%s", repo, iid, action, at.UTC().Format(time.RFC3339)),
		Source:     source,
		Type:       event.TypeIncident,
		Repo:       repo,
		Service:    repo,
		OccurredAt: at.UTC(),
		Incident:   inc,
	}, nil
}

// resolvedAt is when a closed incident was resolved: closed_at, or, from a
// GitLab that does not send it, the update that carried the close.
func resolvedAt(closedAt string, updated time.Time) (time.Time, error) {
	if closedAt == "" {
		return updated, nil
	}
	return parseTime("object_attributes.closed_at", closedAt)
}
