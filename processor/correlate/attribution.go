package correlate

import (
	"slices"
	"strings"
	"time"

	"github.com/doraflow/doraflow/pkg/event"
)

// Attribution is the incident stage of the correlation: it folds every
// incident and every production deployment (as the repository stages hand
// them on), blames each incident on a deployment, and hands on each
// incident's blame as it changes. There is one for all incidents,
// so attribution is a function of the events alone. A change of a
// deployment re-attributes only the incidents it can affect: those naming
// it, and those opened within the look-back after it.
type Attribution struct {
	cfg       Config
	retention Retention
	incidents map[string]*incidentState
	deps      map[DeploymentKey]*prodDep
	byDay     map[int64][]*prodDep // by UTC day, in (time, repo, id) order
	byID      map[string][]*prodDep
	ships     map[string]map[string]string // sha → repo → deployment id

	// Indexes of incidents: by the day they opened, and by the sha and
	// deployment id they name.
	openedOn     map[int64]map[string]bool
	namingSHA    map[string]map[string]bool
	namingDeploy map[string]map[string]bool

	dirty  map[string]bool
	attrib map[string]IncidentFact // as last handed out
	// After a restart (Remember): stored rows to retract, and incidents
	// whose blame must be handed out again.
	strays  []Row[IncidentFact]
	reblame map[string]bool
	changed bool // since the last Saved
	// frozenBefore: incidents opened before this are kept as stored.
	frozenBefore time.Time
}

type prodDep struct {
	repo, id, service, team string
	at                      time.Time
}

func (p *prodDep) compare(o *prodDep) int {
	if c := p.at.Compare(o.at); c != 0 {
		return c
	}
	if c := strings.Compare(p.repo, o.repo); c != 0 {
		return c
	}
	return strings.Compare(p.id, o.id)
}

func dayOf(t time.Time) int64 { return t.Unix() / 86400 }

// NewAttribution returns an empty attribution stage.
func NewAttribution(cfg Config) *Attribution {
	return &Attribution{cfg: cfg, retention: cfg.Retention, incidents: map[string]*incidentState{},
		deps: map[DeploymentKey]*prodDep{}, byDay: map[int64][]*prodDep{}, byID: map[string][]*prodDep{},
		ships: map[string]map[string]string{}, openedOn: map[int64]map[string]bool{},
		namingSHA: map[string]map[string]bool{}, namingDeploy: map[string]map[string]bool{},
		dirty: map[string]bool{}, attrib: map[string]IncidentFact{}, reblame: map[string]bool{}}
}

func addTo[K comparable](m map[K]map[string]bool, k K, id string) {
	set := m[k]
	if set == nil {
		set = map[string]bool{}
		m[k] = set
	}
	set[id] = true
}

// Apply folds an incident snapshot; other events are not attribution's.
func (a *Attribution) Apply(e event.Event) {
	if e.Type != event.TypeIncident || e.Validate() != nil {
		return
	}
	id := e.Incident.ID
	st := a.incidents[id]
	if st == nil {
		st = &incidentState{}
		a.incidents[id] = st
	}
	before := st.openedAt
	st.apply(e)
	if !before.Equal(st.openedAt) {
		if set := a.openedOn[dayOf(before)]; set != nil && !before.IsZero() {
			delete(set, id)
		}
		addTo(a.openedOn, dayOf(st.openedAt), id)
	}
	if sha := e.Incident.SHA; sha != "" {
		addTo(a.namingSHA, sha, id)
	}
	if dep := e.Incident.DeploymentID; dep != "" {
		addTo(a.namingDeploy, dep, id)
	}
	a.dirty[id] = true
	a.changed = true
}

// ApplyDeployment folds a production deployment (or its withdrawal).
func (a *Attribution) ApplyDeployment(d ProductionDeployment) {
	key := d.Key()
	if old := a.deps[key]; old != nil {
		if !d.Withdrawn && old.service == d.Service && old.at.Equal(d.At) {
			return
		}
		a.removeDep(old)
		a.dirtyAround(old)
	}
	a.changed = true
	if d.Withdrawn {
		return
	}
	p := &prodDep{repo: d.Repo, id: d.ID, service: d.Service, team: a.cfg.TeamOfRepo(d.Repo), at: d.At.UTC()}
	a.deps[key] = p
	insertSorted(a.byDay, dayOf(p.at), p)
	a.byID[p.id] = append(a.byID[p.id], p)
	slices.SortFunc(a.byID[p.id], func(x, y *prodDep) int { return strings.Compare(x.repo, y.repo) })
	a.dirtyAround(p)
}

func insertSorted(m map[int64][]*prodDep, k int64, p *prodDep) {
	list := m[k]
	i, _ := slices.BinarySearchFunc(list, p, (*prodDep).compare)
	m[k] = slices.Insert(list, i, p)
}

func (a *Attribution) removeDep(p *prodDep) {
	delete(a.deps, DeploymentKey{p.repo, p.id})
	k := dayOf(p.at)
	a.byDay[k] = slices.DeleteFunc(a.byDay[k], func(x *prodDep) bool { return x == p })
	if len(a.byDay[k]) == 0 {
		delete(a.byDay, k)
	}
	a.byID[p.id] = slices.DeleteFunc(a.byID[p.id], func(x *prodDep) bool { return x == p })
	if len(a.byID[p.id]) == 0 {
		delete(a.byID, p.id)
	}
}

// dirtyAround marks the incidents a change of p can re-attribute.
func (a *Attribution) dirtyAround(p *prodDep) {
	for id := range a.namingDeploy[p.id] {
		a.dirty[id] = true
	}
	until := p.at.Add(a.cfg.Lookback)
	for d := dayOf(p.at); d <= dayOf(until); d++ {
		for id := range a.openedOn[d] {
			if opened := a.incidents[id].openedAt; !opened.Before(p.at) && !opened.After(until) {
				a.dirty[id] = true
			}
		}
	}
}

// ApplyShip folds which deployment first shipped a sha incidents name.
func (a *Attribution) ApplyShip(s Ship) {
	repos := a.ships[s.SHA]
	if repos == nil {
		repos = map[string]string{}
		a.ships[s.SHA] = repos
	}
	if repos[s.Repo] == s.DeploymentID {
		return
	}
	if s.DeploymentID == "" {
		delete(repos, s.Repo)
	} else {
		repos[s.Repo] = s.DeploymentID
	}
	for id := range a.namingSHA[s.SHA] {
		a.dirty[id] = true
	}
	a.changed = true
}

// Flush attributes the incidents the folds since the last flush can have
// changed, and returns the incident rows to write and the blames that
// changed.
func (a *Attribution) Flush() ([]Row[IncidentFact], []BlamedIncident) {
	var rows []Row[IncidentFact]
	var blames []BlamedIncident
	for _, id := range sortedKeys(a.dirty) {
		f, ok := a.attribute(id)
		old, had := a.attrib[id]
		hadOld := had && !a.frozen(old.OpenedAt)
		hasCur := ok && !a.frozen(f.OpenedAt)
		rows = append(rows, handOut(old, hadOld, f, hasCur, sameIncident, func(f IncidentFact) time.Time { return f.OpenedAt })...)
		before, now := BlamedIncident{ID: id}, BlamedIncident{ID: id}
		if had {
			before = blamedOf(old)
		}
		if ok {
			now = blamedOf(f)
			a.attrib[id] = f
		} else {
			delete(a.attrib, id)
		}
		if !before.equal(now) || a.reblame[id] {
			blames = append(blames, now)
		}
	}
	clear(a.dirty)
	clear(a.reblame)
	rows = append(rows, unshadowed(a.strays, rows, func(f IncidentFact) string { return f.ID + "@" + f.OpenedAt.String() })...)
	a.strays = nil
	return rows, blames
}

// blamedOf is an incident's blame; blamed on nothing, only its id.
func blamedOf(f IncidentFact) BlamedIncident {
	if f.DeploymentRepo == "" {
		return BlamedIncident{ID: f.ID}
	}
	return BlamedIncident{ID: f.ID, DeploymentRepo: f.DeploymentRepo, DeploymentID: f.DeploymentID,
		OpenedAt: f.OpenedAt, ResolvedAt: f.ResolvedAt}
}

func (a *Attribution) frozen(t time.Time) bool { return t.Before(a.frozenBefore) }

// attribute is an incident's fact; false for a withdrawn one.
func (a *Attribution) attribute(id string) (IncidentFact, bool) {
	st := a.incidents[id]
	if st == nil {
		return IncidentFact{}, false
	}
	e := st.latest
	inc := *e.Incident
	if inc.Withdrawn {
		return IncidentFact{}, false
	}
	inc.DeploymentID, inc.SHA = st.deploymentID.value, st.sha.value
	e.Incident, e.Repo, e.Service = &inc, st.repo.value, st.service.value
	f := IncidentFact{ID: id, Source: e.Source, Service: e.Service, Repo: e.Repo,
		OpenedAt: st.openedAt.UTC(), Attribution: AttributedNone}
	if inc.ResolvedAt != nil {
		t := inc.ResolvedAt.UTC()
		f.ResolvedAt = &t
	}
	if p, how := a.blame(e, f.OpenedAt); p != nil {
		f.DeploymentRepo, f.DeploymentID, f.Attribution = p.repo, p.id, how
	}
	return f, true
}

// blame finds the deployment an incident is attributed to: an explicit
// deployment id first, then an explicit sha (the deployment that first
// shipped it), then the latest production deployment of its service at or
// before it opened, then of its team, within the look-back.
func (a *Attribution) blame(e event.Event, opened time.Time) (*prodDep, string) {
	inc := e.Incident
	// Deployment ids are unique per repository only: two tools may both
	// count from 1.
	if inc.DeploymentID != "" {
		if e.Repo != "" {
			if p := a.deps[DeploymentKey{e.Repo, inc.DeploymentID}]; p != nil {
				return p, AttributedExplicit
			}
		} else if ps := a.byID[inc.DeploymentID]; len(ps) > 0 {
			return ps[0], AttributedExplicit
		}
	}
	if inc.SHA != "" {
		repos := a.ships[inc.SHA]
		for _, repo := range sortedKeys(repos) {
			if e.Repo != "" && repo != e.Repo {
				continue
			}
			if p := a.deps[DeploymentKey{repo, repos[repo]}]; p != nil {
				return p, AttributedSHA
			}
		}
	}
	service := e.Service
	if service == "" {
		service = e.Repo
	}
	if p := a.latest(opened, func(p *prodDep) bool { return p.service == service || p.repo == service }); p != nil {
		return p, AttributedService
	}
	team := a.cfg.TeamOfService(service)
	if p := a.latest(opened, func(p *prodDep) bool { return p.team == team }); p != nil {
		return p, AttributedTeam
	}
	return nil, AttributedNone
}

// latest is the last production deployment at or before at, within the
// look-back, that matches.
func (a *Attribution) latest(at time.Time, match func(*prodDep) bool) *prodDep {
	since := at.Add(-a.cfg.Lookback)
	for d := dayOf(at); d >= dayOf(since); d-- {
		list := a.byDay[d]
		for i := len(list) - 1; i >= 0; i-- {
			p := list[i]
			if p.at.After(at) {
				continue
			}
			if p.at.Before(since) {
				return nil
			}
			if match(p) {
				return p
			}
		}
	}
	return nil
}

// Current is every incident fact as last handed out, in id order.
func (a *Attribution) Current() []Row[IncidentFact] {
	var out []Row[IncidentFact]
	for _, id := range sortedKeys(a.attrib) {
		if f := a.attrib[id]; !a.frozen(f.OpenedAt) {
			out = append(out, Row[IncidentFact]{Fact: f, Live: true})
		}
	}
	return out
}

// Changed reports whether anything was folded since the last Saved:
// whether a snapshot must be saved again.
func (a *Attribution) Changed() bool { return a.changed }

// Saved says a snapshot holds the stage as it is now.
func (a *Attribution) Saved() { a.changed = false }

// Compact applies the retention as of now: incidents opened before Keep are
// frozen; incidents and deployments older than Keep+Margin leave the state.
func (a *Attribution) Compact(now time.Time) {
	if a.retention.Keep <= 0 {
		return
	}
	frozen := now.Add(-a.retention.Keep)
	if !frozen.After(a.frozenBefore) {
		return
	}
	a.frozenBefore = frozen
	drop := frozen.Add(-a.retention.Margin)
	for d, list := range a.byDay {
		if d < dayOf(drop) {
			for _, p := range slices.Clone(list) {
				a.removeDep(p)
			}
		}
	}
	for d, set := range a.openedOn {
		if d >= dayOf(drop) {
			continue
		}
		for id := range set {
			st := a.incidents[id]
			if st == nil || !st.openedAt.Before(drop) {
				continue
			}
			delete(a.incidents, id)
			delete(a.attrib, id)
			delete(a.dirty, id)
		}
		delete(a.openedOn, d)
	}
	for _, index := range []map[string]map[string]bool{a.namingSHA, a.namingDeploy} {
		for k, set := range index {
			for id := range set {
				if a.incidents[id] == nil {
					delete(set, id)
				}
			}
			if len(set) == 0 {
				delete(index, k)
			}
		}
	}
	a.changed = true
}

// IncidentKey is what an incident is partitioned by: its repository, or
// its service (as event.Event.Key).
func IncidentKey(f IncidentFact) string {
	if f.Repo != "" {
		return "repo:" + f.Repo
	}
	return "service:" + f.Service
}

// Remember makes what the stage last handed out of the given incidents
// what the store holds of them (stored: their live rows), as Repos.Remember
// does after a restart; their blames are handed out again, wherever they
// were blamed before.
func (a *Attribution) Remember(stored []Row[IncidentFact], ids []string) {
	for _, id := range ids {
		delete(a.attrib, id)
		a.dirty[id] = true
		a.reblame[id] = true
	}
	for _, row := range stored {
		f := row.Fact
		if !a.dirty[f.ID] {
			continue
		}
		if _, dup := a.attrib[f.ID]; dup {
			a.strays = append(a.strays, Row[IncidentFact]{Fact: f})
			continue
		}
		a.attrib[f.ID] = f
	}
	a.changed = true
}

// Touched are the incidents to attribute at the next flush.
func (a *Attribution) Touched() []string { return sortedKeys(a.dirty) }
