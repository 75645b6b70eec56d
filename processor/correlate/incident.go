package correlate

import (
	"time"

	"github.com/doraflow/doraflow/pkg/event"
)

// incidentState keeps the latest snapshot of an incident, and what earlier
// snapshots said that later ones may leave out (a resolve event rarely
// repeats the deployment or sha that caused the incident).
type incidentState struct {
	latest   event.Event
	openedAt time.Time // the earliest opening any snapshot reported
	// From the earliest snapshot that carried each.
	deploymentID, sha, repo, service sticky
}

// sticky is a value kept from the earliest snapshot that set it, so the
// result does not depend on arrival order.
type sticky struct {
	value string
	at    time.Time
	id    string
}

func (v *sticky) offer(value string, e event.Event) {
	if value == "" {
		return
	}
	if v.value == "" || e.OccurredAt.Before(v.at) || (e.OccurredAt.Equal(v.at) && e.ID < v.id) {
		*v = sticky{value: value, at: e.OccurredAt, id: e.ID}
	}
}

func (s *incidentState) apply(e event.Event) {
	if s.openedAt.IsZero() || e.Incident.OpenedAt.Before(s.openedAt) {
		s.openedAt = e.Incident.OpenedAt
	}
	if s.latest.ID == "" || newerSnapshot(e, s.latest) {
		s.latest = e
	}
	s.deploymentID.offer(e.Incident.DeploymentID, e)
	s.sha.offer(e.Incident.SHA, e)
	s.repo.offer(e.Repo, e)
	s.service.offer(e.Service, e)
}

// newerSnapshot orders snapshots of one incident: by time, then resolved
// before open (a resolve and a reopen at the same second are rare; resolved
// is the safer reading), then by id.
func newerSnapshot(a, b event.Event) bool {
	if c := a.OccurredAt.Compare(b.OccurredAt); c != 0 {
		return c > 0
	}
	ar, br := a.Incident.ResolvedAt != nil, b.Incident.ResolvedAt != nil
	if ar != br {
		return ar
	}
	return a.ID > b.ID
}

// Attribution kinds.
const (
	AttributedExplicit = "explicit"
	AttributedSHA      = "sha"
	AttributedService  = "service"
	AttributedTeam     = "team"
	AttributedNone     = "none"
)
