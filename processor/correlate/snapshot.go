package correlate

import (
	"bytes"
	"encoding/gob"
	"fmt"
	"slices"
	"time"

	"github.com/doraflow/doraflow/pkg/event"
)

// Snapshots save a stage's state between flushes, so a restart resumes
// where it left off: the repository stage one repository at a time (only
// those changed since the last snapshot need saving again), attribution
// whole. They hold what the stage knows and what it last handed out.

type repoSnapshot struct {
	Name        string
	Commits     []commitSnapshot
	SettledDays []int32
	SettledIDs  [][]uint64
	Merges      []event.Merge
	Deploys     []deploySnapshot
	Missing     map[string]string // sha → deployment id
	Hosts       []string
	Blamed      []BlamedIncident
	Latest      time.Time
	Settled     time.Time
	Pruned      bool
	Ships       map[string]string
	Days        RepoDays
}

type commitSnapshot struct {
	SHA                      string
	Time                     time.Time
	Parents                  []string
	PushPrev                 string
	Gap, Counted, Emitted    bool
	Shipper, EmittedID       string
	EmittedAt, EmittedCommit time.Time
}

type deploySnapshot struct {
	ID, Service, SHA, Env, Status     string
	Statuses                          []statusSnapshot
	Hint, Production, Walked, Settled bool
	At                                time.Time
	Changes                           int
	Approximate, Rollback             bool
	RolledBackBy                      string
	Emitted                           DeploymentFact
	EmittedLive                       bool
	Published                         *ProductionDeployment
}

type statusSnapshot struct {
	Event, Status string
	At            time.Time
}

type reposMeta struct {
	Watch        []string
	FrozenBefore time.Time
}

func encode(v any) ([]byte, error) {
	var buf bytes.Buffer
	if err := gob.NewEncoder(&buf).Encode(v); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// EncodeMeta saves what the repository stage holds besides its
// repositories.
func (s *Repos) EncodeMeta() ([]byte, error) {
	return encode(reposMeta{Watch: sortedKeys(s.watch), FrozenBefore: s.frozenBefore})
}

// DecodeMeta restores what EncodeMeta saved.
func (s *Repos) DecodeMeta(data []byte) error {
	var m reposMeta
	if err := gob.NewDecoder(bytes.NewReader(data)).Decode(&m); err != nil {
		return fmt.Errorf("correlate: decode repositories: %w", err)
	}
	for _, sha := range m.Watch {
		s.watch[sha] = true
	}
	s.frozenBefore = m.FrozenBefore
	return nil
}

// EncodeRepo saves one repository's state; false if the stage has none.
func (s *Repos) EncodeRepo(name string) ([]byte, bool, error) {
	r := s.repos[name]
	if r == nil {
		return nil, false, nil
	}
	snap := repoSnapshot{Name: r.name, Missing: map[string]string{}, Hosts: sortedKeys(r.hosts), Blamed: r.blamed,
		Latest: r.latest, Settled: r.settledBefore, Pruned: r.pruned, Ships: r.ships, Days: r.days}
	for _, sha := range sortedKeys(r.commits) {
		c := r.commits[sha]
		cs := commitSnapshot{SHA: sha, Time: c.time, Parents: c.parents, PushPrev: c.pushPrev, Gap: c.gap,
			Counted: c.counted, Emitted: c.emitted, EmittedID: c.emittedID, EmittedAt: c.emittedAt, EmittedCommit: c.emittedCommit}
		if c.shipper != nil {
			cs.Shipper = c.shipper.id
		}
		snap.Commits = append(snap.Commits, cs)
	}
	for day, hashes := range r.settledOn {
		snap.SettledDays = append(snap.SettledDays, day)
		snap.SettledIDs = append(snap.SettledIDs, hashes)
	}
	for _, m := range sortedKeys(r.merges) {
		snap.Merges = append(snap.Merges, r.merges[m])
	}
	for _, id := range sortedKeys(r.deploys) {
		d := r.deploys[id]
		ds := deploySnapshot{ID: d.id, Service: d.service, SHA: d.sha, Env: d.env, Status: d.status, Hint: d.hint,
			Production: d.production, Walked: d.walked, Settled: d.settled, At: d.at, Changes: d.changes,
			Approximate: d.approximate, Rollback: d.rollback, Emitted: d.emitted, EmittedLive: d.emittedLive, Published: d.published}
		for _, st := range d.statuses {
			ds.Statuses = append(ds.Statuses, statusSnapshot{Event: st.event, Status: st.status, At: st.at})
		}
		if d.rolledBackBy != nil {
			ds.RolledBackBy = d.rolledBackBy.id
		}
		snap.Deploys = append(snap.Deploys, ds)
	}
	for sha, d := range r.missing {
		snap.Missing[sha] = d.id
	}
	data, err := encode(snap)
	if err != nil {
		return nil, false, fmt.Errorf("correlate: encode %s: %w", name, err)
	}
	return data, true, nil
}

// DecodeRepo restores a repository EncodeRepo saved, replacing what the
// stage holds of it.
func (s *Repos) DecodeRepo(data []byte) error {
	var snap repoSnapshot
	if err := gob.NewDecoder(bytes.NewReader(data)).Decode(&snap); err != nil {
		return fmt.Errorf("correlate: decode repository: %w", err)
	}
	if old := s.repos[snap.Name]; old != nil {
		for _, d := range old.deploys {
			if d.emittedLive && s.countsApproximate(d.emitted) {
				s.approximate--
			}
		}
	}
	r := newRepoState(snap.Name)
	r.blamed, r.latest, r.settledBefore, r.pruned, r.days = snap.Blamed, snap.Latest, snap.Settled, snap.Pruned, snap.Days
	if snap.Ships != nil {
		r.ships = snap.Ships
	}
	for _, h := range snap.Hosts {
		r.hosts[h] = true
	}
	for _, ds := range snap.Deploys {
		d := &deployState{id: ds.ID, service: ds.Service, sha: ds.SHA, env: ds.Env, status: ds.Status, hint: ds.Hint,
			production: ds.Production, walked: ds.Walked, settled: ds.Settled, at: ds.At, changes: ds.Changes,
			approximate: ds.Approximate, rollback: ds.Rollback, emitted: ds.Emitted, emittedLive: ds.EmittedLive, published: ds.Published}
		for _, st := range ds.Statuses {
			d.statuses = append(d.statuses, deployStatus{event: st.Event, status: st.Status, at: st.At})
		}
		r.deploys[d.id] = d
		day := unixDay(d.at)
		r.deployedOn[day] = append(r.deployedOn[day], d.id)
		if d.production {
			r.prod = append(r.prod, d)
		}
		if d.emittedLive && s.countsApproximate(d.emitted) {
			s.approximate++
		}
	}
	for _, ds := range snap.Deploys {
		if by := r.deploys[ds.RolledBackBy]; by != nil {
			d := r.deploys[ds.ID]
			d.rolledBackBy = by
			by.undid = append(by.undid, d)
		}
	}
	sortProd(r.prod)
	for _, cs := range snap.Commits {
		c := &commit{sha: cs.SHA, time: cs.Time, parents: cs.Parents, pushPrev: cs.PushPrev, gap: cs.Gap, counted: cs.Counted,
			emitted: cs.Emitted, emittedID: cs.EmittedID, emittedAt: cs.EmittedAt, emittedCommit: cs.EmittedCommit}
		if d := r.deploys[cs.Shipper]; cs.Shipper != "" && d != nil {
			c.shipper = d
			d.shipped = append(d.shipped, c)
		}
		r.commits[c.sha] = c
		if c.shipper == nil {
			day := unixDay(c.time)
			r.pendingOn[day] = append(r.pendingOn[day], c.sha)
		}
	}
	for i, day := range snap.SettledDays {
		r.settledOn[day] = snap.SettledIDs[i]
		for _, h := range snap.SettledIDs[i] {
			r.settled[h] = struct{}{}
		}
	}
	for _, m := range snap.Merges {
		r.merges[m.MergeSHA] = m
		r.byHead[m.HeadSHA] = append(r.byHead[m.HeadSHA], m.MergeSHA)
	}
	for sha, id := range snap.Missing {
		if d := r.deploys[id]; d != nil {
			r.missing[sha] = d
			d.missed = append(d.missed, sha)
		}
	}
	s.repos[r.name] = r
	return nil
}

func sortProd(list []*deployState) {
	slices.SortFunc(list, func(a, b *deployState) int { return deployOrder(a.at, a.id, b.at, b.id) })
}

type attributionSnapshot struct {
	Incidents    []incidentSnapshot
	Deployments  []ProductionDeployment
	Ships        map[string]map[string]string
	Attributed   []IncidentFact
	FrozenBefore time.Time
}

type incidentSnapshot struct {
	Latest                           event.Event
	OpenedAt                         time.Time
	DeploymentID, SHA, Repo, Service stickySnapshot
}

type stickySnapshot struct {
	Value, ID string
	At        time.Time
}

func (v sticky) save() stickySnapshot    { return stickySnapshot{Value: v.value, ID: v.id, At: v.at} }
func (v stickySnapshot) restore() sticky { return sticky{value: v.Value, id: v.ID, at: v.At} }

// Encode saves the attribution stage.
func (a *Attribution) Encode() ([]byte, error) {
	snap := attributionSnapshot{Ships: a.ships, FrozenBefore: a.frozenBefore}
	for _, id := range sortedKeys(a.incidents) {
		st := a.incidents[id]
		snap.Incidents = append(snap.Incidents, incidentSnapshot{Latest: st.latest, OpenedAt: st.openedAt,
			DeploymentID: st.deploymentID.save(), SHA: st.sha.save(), Repo: st.repo.save(), Service: st.service.save()})
	}
	for _, p := range a.deps {
		snap.Deployments = append(snap.Deployments, ProductionDeployment{Repo: p.repo, ID: p.id, Service: p.service, At: p.at})
	}
	for _, id := range sortedKeys(a.attrib) {
		snap.Attributed = append(snap.Attributed, a.attrib[id])
	}
	data, err := encode(snap)
	if err != nil {
		return nil, fmt.Errorf("correlate: encode attribution: %w", err)
	}
	return data, nil
}

// DecodeAttribution restores what Encode saved into a fresh stage.
func DecodeAttribution(cfg Config, data []byte) (*Attribution, error) {
	var snap attributionSnapshot
	if err := gob.NewDecoder(bytes.NewReader(data)).Decode(&snap); err != nil {
		return nil, fmt.Errorf("correlate: decode attribution: %w", err)
	}
	a := NewAttribution(cfg)
	a.frozenBefore = snap.FrozenBefore
	if snap.Ships != nil {
		a.ships = snap.Ships
	}
	for _, is := range snap.Incidents {
		st := &incidentState{latest: is.Latest, openedAt: is.OpenedAt, deploymentID: is.DeploymentID.restore(),
			sha: is.SHA.restore(), repo: is.Repo.restore(), service: is.Service.restore()}
		id := is.Latest.Incident.ID
		a.incidents[id] = st
		addTo(a.openedOn, dayOf(st.openedAt), id)
		if st.sha.value != "" {
			addTo(a.namingSHA, st.sha.value, id)
		}
		if st.deploymentID.value != "" {
			addTo(a.namingDeploy, st.deploymentID.value, id)
		}
	}
	for _, d := range snap.Deployments {
		a.ApplyDeployment(d)
	}
	for _, f := range snap.Attributed {
		a.attrib[f.ID] = f
		if f.DeploymentRepo != "" {
			if a.blamed[f.DeploymentRepo] == nil {
				a.blamed[f.DeploymentRepo] = map[string]BlamedIncident{}
			}
			a.blamed[f.DeploymentRepo][f.ID] = blamedOf(f)
		}
	}
	clear(a.dirty)
	a.changed = false
	return a, nil
}
