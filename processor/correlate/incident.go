package correlate

import (
	"slices"
	"strings"
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

// prodDeployment is a production deployment, as attribution sees it.
type prodDeployment struct {
	repo, id, service string
	at                time.Time
}

// prodIndex holds every production deployment in time order.
type prodIndex struct {
	all []prodDeployment
	// byID: by repo and id, and by id alone ("" repo) for the first repo
	// in name order, for incidents that name no repository.
	byID map[DeploymentKey]prodDeployment
}

func (s *State) prodIndex() prodIndex {
	idx := prodIndex{byID: map[DeploymentKey]prodDeployment{}}
	for _, name := range sortedKeys(keysOf(s.computed)) {
		rf := s.computed[name]
		for _, i := range rf.production {
			d := rf.deployments[i]
			idx.all = append(idx.all, prodDeployment{repo: d.Repo, id: d.ID, service: d.Service, at: d.FinishedAt})
		}
	}
	// Other partitions' deployments; this state's own repos are its own.
	for _, d := range s.foreign {
		if s.repos[d.Repo] == nil {
			idx.all = append(idx.all, prodDeployment{repo: d.Repo, id: d.ID, service: d.Service, at: d.At})
		}
	}
	slices.SortFunc(idx.all, func(a, b prodDeployment) int {
		if c := a.at.Compare(b.at); c != 0 {
			return c
		}
		if c := strings.Compare(a.repo, b.repo); c != 0 {
			return c
		}
		return strings.Compare(a.id, b.id)
	})
	for _, p := range idx.all {
		idx.byID[DeploymentKey{p.repo, p.id}] = p
		if q, dup := idx.byID[DeploymentKey{"", p.id}]; !dup || p.repo < q.repo {
			idx.byID[DeploymentKey{"", p.id}] = p
		}
	}
	return idx
}

// latest is the last deployment at or before at, within lookback, that
// matches.
func (idx prodIndex) latest(at time.Time, lookback time.Duration, match func(prodDeployment) bool) (prodDeployment, bool) {
	i, _ := slices.BinarySearchFunc(idx.all, at, func(p prodDeployment, t time.Time) int {
		if p.at.After(t) {
			return 1
		}
		return -1
	})
	for j := i - 1; j >= 0 && at.Sub(idx.all[j].at) <= lookback; j-- {
		if match(idx.all[j]) {
			return idx.all[j], true
		}
	}
	return prodDeployment{}, false
}

// attributeIncidents blames each incident on a production deployment:
// explicit deployment id first, then an explicit sha (the deployment that
// first shipped it), then the latest production deployment of its service at
// or before it opened, then of its team, within the look-back.
func (s *State) attributeIncidents() map[string]IncidentFact {
	idx := s.prodIndex()
	out := map[string]IncidentFact{}
	for id, st := range s.incidents {
		e := st.latest
		inc := *e.Incident
		if inc.Withdrawn {
			continue
		}
		inc.DeploymentID, inc.SHA = st.deploymentID.value, st.sha.value
		e.Incident, e.Repo, e.Service = &inc, st.repo.value, st.service.value
		f := IncidentFact{ID: id, Source: e.Source, Service: e.Service, Repo: e.Repo,
			OpenedAt: st.openedAt.UTC(), Attribution: AttributedNone}
		if inc.ResolvedAt != nil {
			t := inc.ResolvedAt.UTC()
			f.ResolvedAt = &t
		}
		p, how := s.blame(idx, e, f.OpenedAt)
		if how != AttributedNone {
			f.DeploymentRepo, f.DeploymentID = p.repo, p.id
		}
		f.Attribution = how
		out[id] = f
	}
	return out
}

func (s *State) blame(idx prodIndex, e event.Event, opened time.Time) (prodDeployment, string) {
	inc := e.Incident
	// Deployment ids are unique per repository only: two tools may both
	// count from 1.
	if p, ok := idx.byID[DeploymentKey{e.Repo, inc.DeploymentID}]; ok && inc.DeploymentID != "" {
		return p, AttributedExplicit
	}
	if inc.SHA != "" {
		for _, name := range sortedKeys(keysOf(s.computed)) {
			if e.Repo != "" && name != e.Repo {
				continue
			}
			rf := s.computed[name]
			if i, ok := rf.firstShip[inc.SHA]; ok {
				d := rf.deployments[i]
				return prodDeployment{repo: d.Repo, id: d.ID, service: d.Service, at: d.FinishedAt}, AttributedSHA
			}
		}
	}
	service := e.Service
	if service == "" {
		service = e.Repo
	}
	if p, ok := idx.latest(opened, s.cfg.Lookback, func(p prodDeployment) bool {
		return p.service == service || p.repo == service
	}); ok {
		return p, AttributedService
	}
	team := s.cfg.TeamOfService(service)
	if p, ok := idx.latest(opened, s.cfg.Lookback, func(p prodDeployment) bool {
		return s.cfg.TeamOfRepo(p.repo) == team
	}); ok {
		return p, AttributedTeam
	}
	return prodDeployment{}, AttributedNone
}

// deploymentFacts completes a repository's deployment facts with what the
// incidents say: failed, incidents, recovery and rework.
func (s *State) deploymentFacts(repo string, rf *repoFacts) []DeploymentFact {
	type blamed struct {
		n            int
		lastResolved *time.Time
		open         bool
	}
	byDeploy := map[string]*blamed{}
	var repoIncidents []IncidentFact // incidents blamed on this repo's deployments
	for _, id := range sortedKeys(keysOf(s.attrib)) {
		f := s.attrib[id]
		if f.DeploymentRepo != repo {
			continue
		}
		repoIncidents = append(repoIncidents, f)
		b := byDeploy[f.DeploymentID]
		if b == nil {
			b = &blamed{}
			byDeploy[f.DeploymentID] = b
		}
		b.n++
		if f.ResolvedAt == nil {
			b.open = true
		} else if b.lastResolved == nil || f.ResolvedAt.After(*b.lastResolved) {
			b.lastResolved = f.ResolvedAt
		}
	}
	out := slices.Clone(rf.deployments)
	for i := range out {
		d := &out[i]
		if !d.Production {
			continue
		}
		var recovered []time.Time
		if by, ok := rf.rolledBackBy[i]; ok {
			d.Failed = true
			recovered = append(recovered, rf.deployments[by].FinishedAt)
		}
		if b := byDeploy[d.ID]; b != nil {
			d.Failed = true
			d.Incidents = b.n
			if !b.open && b.lastResolved != nil {
				recovered = append(recovered, *b.lastResolved)
			}
		}
		if len(recovered) > 0 {
			t := slices.MinFunc(recovered, time.Time.Compare).UTC()
			d.RecoveredAt = &t
		}
		d.Rework = d.Rollback || fixesOpenIncident(*d, repoIncidents)
	}
	return out
}

// fixesOpenIncident: the deployment finished while an incident blamed on an
// earlier deployment of the same repo was open.
func fixesOpenIncident(d DeploymentFact, incidents []IncidentFact) bool {
	for _, f := range incidents {
		if f.DeploymentID == d.ID || f.OpenedAt.After(d.FinishedAt) {
			continue
		}
		if f.ResolvedAt == nil || f.ResolvedAt.After(d.FinishedAt) {
			return true
		}
	}
	return false
}

func keysOf[V any](m map[string]V) map[string]bool {
	out := make(map[string]bool, len(m))
	for k := range m {
		out[k] = true
	}
	return out
}

// ProductionDeployment is a production deployment as incident attribution
// needs it. When the work is split by partition, each state publishes its
// own (ProductionDeployments) and is told the others' (SetForeign), so every
// state attributes every incident the same way.
type ProductionDeployment struct {
	Repo    string    `json:"repo"`
	ID      string    `json:"id"`
	Service string    `json:"service"`
	At      time.Time `json:"at"`
}

// ProductionDeployments are this state's own production deployments, as
// last computed.
func (s *State) ProductionDeployments() []ProductionDeployment {
	var out []ProductionDeployment
	for _, name := range sortedKeys(keysOf(s.computed)) {
		rf := s.computed[name]
		for _, i := range rf.production {
			d := rf.deployments[i]
			out = append(out, ProductionDeployment{Repo: d.Repo, ID: d.ID, Service: d.Service, At: d.FinishedAt})
		}
	}
	return out
}

// SetForeign replaces what the state knows of other partitions' production
// deployments. It reports whether that changed anything.
func (s *State) SetForeign(deps []ProductionDeployment) bool {
	sorted := slices.Clone(deps)
	slices.SortFunc(sorted, func(a, b ProductionDeployment) int {
		if c := strings.Compare(a.Repo, b.Repo); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	if slices.EqualFunc(sorted, s.foreign, func(a, b ProductionDeployment) bool {
		return a.Repo == b.Repo && a.ID == b.ID && a.Service == b.Service && a.At.Equal(b.At)
	}) {
		return false
	}
	s.foreign = sorted
	s.incDirty = true
	return true
}

// IncidentKey is what an incident is partitioned by: its repository, or
// its service (as event.Event.Key).
func IncidentKey(f IncidentFact) string {
	if f.Repo != "" {
		return "repo:" + f.Repo
	}
	return "service:" + f.Service
}
