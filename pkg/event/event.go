// Package event is doraflow's canonical event model: what every collector
// publishes on the bus and what the processor correlates. It is a contract for
// other consumers of the bus (see README "The bus").
package event

import (
	"errors"
	"fmt"
	"hash/fnv"
	"time"
	"unicode"
)

// Type names the kind of an event. The values are stable: they are part of the
// subjects on the bus.
type Type string

const (
	TypePush       Type = "push"       // commits pushed to a branch
	TypeMerge      Type = "merge"      // a pull/merge request merged
	TypeDeployment Type = "deployment" // a deployment attempt reached a status
	TypeIncident   Type = "incident"   // a snapshot of an incident (opened, resolved, reopened)
)

// Event is one canonical event. Exactly one of the payload pointers is set,
// matching Type. Events are immutable facts about the outside world: the
// processor folds them idempotently (by ID), in any order.
type Event struct {
	// ID identifies the fact the event reports, not the delivery that carried
	// it: a redelivery, or the same fact fetched later through an API
	// (backfill), yields the same ID.
	ID         string      `json:"id"`
	Source     string      `json:"source"` // github, gitlab, pagerduty, ...
	Type       Type        `json:"type"`
	Repo       string      `json:"repo,omitempty"`    // owner/name or group/project
	Service    string      `json:"service,omitempty"` // incident-side service name
	OccurredAt time.Time   `json:"time"`
	Push       *Push       `json:"push,omitempty"`
	Merge      *Merge      `json:"merge,omitempty"`
	Deployment *Deployment `json:"deployment,omitempty"`
	Incident   *Incident   `json:"incident,omitempty"`
}

// Commit is a commit as a push reports it.
type Commit struct {
	SHA  string    `json:"sha"`
	Time time.Time `json:"time"` // the commit's own timestamp
}

// Push reports that Ref moved from Before to After. Commits are the new
// commits in order, oldest first; each one's parent is the one before it, and
// the first one's parent is Before (unless Forced, when it is unknown).
type Push struct {
	Ref     string   `json:"ref"`
	Before  string   `json:"before"`
	After   string   `json:"after"`
	Forced  bool     `json:"forced,omitempty"`
	Deleted bool     `json:"deleted,omitempty"`
	Commits []Commit `json:"commits"`
	// Truncated is set when the source cut the commit list (GitLab sends at
	// most 20): the chain from Before to the first listed commit has a gap.
	Truncated bool `json:"truncated,omitempty"`
	// Range is set when the commits come from a Git host's compare API (a
	// gap fill, a backfill) rather than from one push: their order says
	// nothing about which of them were pushed together.
	Range bool `json:"range,omitempty"`
}

// Merge reports a merged pull/merge request. MergeSHA is the commit that
// landed on the target branch; HeadSHA the tip of the merged branch. When the
// merge rewrote the branch's commits (squash, rebase), the last Commits
// commits of the push that brought MergeSHA are rewrites of HeadSHA's history.
type Merge struct {
	Number   int    `json:"number"`
	MergeSHA string `json:"merge_sha"`
	HeadSHA  string `json:"head_sha"`
	Commits  int    `json:"commits"`
	Target   string `json:"target,omitempty"`
}

// Deployment statuses.
const (
	StatusSuccess = "success"
	StatusFailure = "failure"
	StatusError   = "error"
	StatusPending = "pending"
)

// Deployment reports the status of one deployment attempt.
type Deployment struct {
	ID          string `json:"id"` // unique per source
	SHA         string `json:"sha"`
	Environment string `json:"environment"`
	Status      string `json:"status"`
	// Rollback is set when the source says so explicitly (CDEvents
	// service.rolledback); otherwise rollbacks are derived from the shas.
	Rollback bool `json:"rollback,omitempty"`
}

// Incident is a snapshot of an incident at OccurredAt. The latest snapshot of
// an ID wins; ties go to the later Seq, then to the resolved one.
type Incident struct {
	ID         string     `json:"id"`
	Title      string     `json:"title,omitempty"`
	OpenedAt   time.Time  `json:"opened_at"`
	ResolvedAt *time.Time `json:"resolved_at,omitempty"`
	// Withdrawn marks an incident that is no longer one (label removed,
	// deleted): it is dropped from the metrics.
	Withdrawn bool `json:"withdrawn,omitempty"`
	// Explicit attribution, when the source carries it.
	DeploymentID string `json:"deployment_id,omitempty"`
	SHA          string `json:"sha,omitempty"`
}

// Validate reports an event that the processor cannot use. Collectors call it
// before publishing so a bad event is refused at the edge (400), not
// dead-lettered later.
func (e *Event) Validate() error {
	if e.ID == "" || e.Source == "" {
		return fmt.Errorf("event: id and source are required")
	}
	if e.OccurredAt.IsZero() {
		return fmt.Errorf("event %s: time is required", e.ID)
	}
	bad := func(t time.Time) error {
		if t.Before(MinTime) || !t.Before(MaxTime) {
			return fmt.Errorf("event %s: time %s is outside %d-%d", e.ID, t.Format(time.RFC3339), MinTime.Year(), MaxTime.Year())
		}
		return nil
	}
	if err := bad(e.OccurredAt); err != nil {
		return err
	}
	if e.Push != nil {
		for _, c := range e.Push.Commits {
			if err := bad(c.Time); err != nil {
				return err
			}
		}
	}
	if e.Incident != nil {
		if err := bad(e.Incident.OpenedAt); err != nil {
			return err
		}
		if e.Incident.ResolvedAt != nil {
			if err := bad(*e.Incident.ResolvedAt); err != nil {
				return err
			}
		}
	}
	set := 0
	for _, p := range []bool{e.Push != nil, e.Merge != nil, e.Deployment != nil, e.Incident != nil} {
		if p {
			set++
		}
	}
	if set != 1 {
		return fmt.Errorf("event %s: exactly one payload must be set, have %d", e.ID, set)
	}
	switch e.Type {
	case TypePush:
		if e.Push == nil || e.Repo == "" {
			return fmt.Errorf("event %s: push needs a repo and a push payload", e.ID)
		}
	case TypeMerge:
		if e.Merge == nil || e.Repo == "" || e.Merge.MergeSHA == "" {
			return fmt.Errorf("event %s: merge needs a repo and a merge sha", e.ID)
		}
	case TypeDeployment:
		d := e.Deployment
		if d == nil || e.Repo == "" || d.ID == "" || d.SHA == "" {
			return fmt.Errorf("event %s: deployment needs a repo, an id and a sha", e.ID)
		}
	case TypeIncident:
		i := e.Incident
		if i == nil || i.ID == "" || i.OpenedAt.IsZero() {
			return fmt.Errorf("event %s: incident needs an id and an opened time", e.ID)
		}
		if e.Repo == "" && e.Service == "" {
			return fmt.Errorf("event %s: incident needs a service or a repo", e.ID)
		}
		if i.ResolvedAt != nil && i.ResolvedAt.Before(i.OpenedAt) {
			return fmt.Errorf("event %s: incident resolved at %s before it opened at %s", e.ID, i.ResolvedAt.Format(time.RFC3339), i.OpenedAt.Format(time.RFC3339))
		}
	default:
		return fmt.Errorf("event %s: unknown type %q", e.ID, e.Type)
	}
	return nil
}

// Key is what events are partitioned by: all events of one repository (or,
// for incidents without one, one service) keep their order in one partition.
func (e *Event) Key() string {
	if e.Repo != "" {
		return "repo:" + e.Repo
	}
	return "service:" + e.Service
}

// Partition maps a key onto one of n partitions, stably across processes.
func Partition(key string, n int) int {
	if n <= 1 {
		return 0
	}
	h := fnv.New32a()
	h.Write([]byte(key))
	return int(h.Sum32() % uint32(n))
}

// The times an event may carry: what the fact store's DateTime holds. A
// fact it refuses would stop its partition's writes for good, so such an
// event is refused at the edge.
var (
	MinTime = time.Date(1971, 1, 1, 0, 0, 0, 0, time.UTC)
	MaxTime = time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC)
)

// ZeroSHA is what Git hosts send for "no commit" (a created or deleted ref).
const ZeroSHA = "0000000000000000000000000000000000000000"

// IsZeroSHA reports whether sha names no commit.
func IsZeroSHA(sha string) bool {
	if sha == "" {
		return true
	}
	for _, c := range sha {
		if c != '0' {
			return false
		}
	}
	return true
}

// ErrNotComparable marks a comparison a Git host will never answer (an
// unknown repository or commit, nothing between the two): retrying is
// pointless.
var ErrNotComparable = errors.New("not comparable")

// CompareEvent wraps the commits a Git host's compare API returned between
// base and head as a push, so the processor folds them like any push. Its
// id names the comparison: fetching it again is a duplicate.
func CompareEvent(source, repo, base, head string, push *Push) (Event, error) {
	if len(push.Commits) == 0 {
		return Event{}, fmt.Errorf("%s: compare %s %s...%s: %w: no commits between them", source, repo, base, head, ErrNotComparable)
	}
	push.Range = true
	return Event{
		ID:         fmt.Sprintf("%s:compare:%s:%s...%s", source, repo, base, head),
		Source:     source,
		Type:       TypePush,
		Repo:       repo,
		OccurredAt: push.Commits[len(push.Commits)-1].Time,
		Push:       push,
	}, nil
}

// ValidID reports whether an id taken from a payload can name an event:
// ids travel in message headers, so it must be neither empty, nor over 256
// bytes, nor carry control characters.
func ValidID(s string) bool {
	if s == "" || len(s) > 256 {
		return false
	}
	for _, r := range s {
		if unicode.IsControl(r) {
			return false
		}
	}
	return true
}
