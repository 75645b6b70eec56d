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
// where it left off. Attribution is saved whole. The repository stage is
// saved in two parts, so that a snapshot costs what changed, not the
// history held: per repository, the hot part — the commit graph, and the
// deployments and rollups newer than the settled history — saved again
// only when the repository changed; and per month, the cold part of every
// repository — settled commit ids, settled deployments, rollups of settled
// days — saved again only when something of that month changed (the
// current month as history settles; an older one when a late incident
// changes a settled deployment). Snapshots hold what the stage knows and
// what it last handed out; a decoder restores every part, then calls
// Restored.

type repoSnapshot struct {
	Name    string
	Commits []commitSnapshot
	Merges  []event.Merge
	Deploys []deploySnapshot
	Missing map[string]string // sha → deployment id
	Hosts   []string
	Blamed  []BlamedIncident
	Latest  time.Time
	Settled time.Time
	Pruned  bool
	Ships   map[string]string
	Days    RepoDays
	// Settled ids of days not yet cold (the day the horizon is in).
	SettledDays []int32
	SettledIDs  [][]uint64
}

// coldChunk is one month of every repository's settled history.
type coldChunk struct {
	Month int32
	Repos []coldRepo
}

type coldRepo struct {
	Name        string
	SettledDays []int32
	SettledIDs  [][]uint64
	Deploys     []deploySnapshot
	Days        RepoDays
}

// commitSnapshot: times as Unix nanoseconds; the change fact last handed
// out only when it is not the one the commit's shipper gives (a frozen
// fact), as after every flush it is.
type commitSnapshot struct {
	SHA                      string
	Time                     int64
	Parents                  []string
	PushPrev                 string
	Gap, Counted             bool
	Shipper                  string
	Handed                   bool // the emitted fields are set
	Emitted                  bool
	EmittedID                string
	EmittedAt, EmittedCommit int64
}

// deploySnapshot: the fact last handed out only when it is not the one the
// deployment gives now (a frozen fact); settled deployments keep no
// statuses (they are never recomputed).
type deploySnapshot struct {
	ID, Service, SHA, Env, Status     string
	Statuses                          []statusSnapshot
	Hint, Production, Walked, Settled bool
	At                                time.Time
	Changes                           int
	Approximate, Rollback             bool
	RolledBackBy                      string
	EmittedLive                       bool
	Handed                            bool
	Emitted                           DeploymentFact
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

func nanos(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func fromNanos(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n).UTC()
}

// monthOf names the month a Unix day falls in (yyyymm).
func monthOf(day int32) int32 {
	t := time.Unix(int64(day)*86400, 0).UTC()
	return int32(t.Year()*100 + int(t.Month()))
}

// coldDay: a deployment, settled ids or a rollup day before the repository's
// settled horizon belong to the cold part.
func (r *repoState) coldDay(day int32) bool { return day < unixDay(r.settledBefore) }

func (r *repoState) coldDeploy(d *deployState) bool {
	return r.coldDay(unixDay(d.at)) && (d.settled || !d.production)
}

// markCold notes that the cold part of day's month changed.
func (s *Repos) markCold(r *repoState, day int32) {
	if r.coldDay(day) {
		s.coldDirty[monthOf(day)] = true
	}
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

func (s *Repos) saveDeploy(r *repoState, d *deployState) deploySnapshot {
	ds := deploySnapshot{ID: d.id, Service: d.service, SHA: d.sha, Env: d.env, Status: d.status, Hint: d.hint,
		Production: d.production, Walked: d.walked, Settled: d.settled, At: d.at, Changes: d.changes,
		Approximate: d.approximate, Rollback: d.rollback, EmittedLive: d.emittedLive}
	if d.emittedLive && !sameDeployment(d.emitted, r.fact(d)) {
		ds.Handed, ds.Emitted = true, d.emitted
	}
	if !d.settled {
		for _, st := range d.statuses {
			ds.Statuses = append(ds.Statuses, statusSnapshot{Event: st.event, Status: st.status, At: st.at})
		}
	}
	if d.rolledBackBy != nil {
		ds.RolledBackBy = d.rolledBackBy.id
	}
	return ds
}

// EncodeRepo saves a repository's hot part; false if the stage has none.
func (s *Repos) EncodeRepo(name string) ([]byte, bool, error) {
	r := s.repos[name]
	if r == nil {
		return nil, false, nil
	}
	snap := repoSnapshot{Name: r.name, Missing: map[string]string{}, Hosts: sortedKeys(r.hosts), Blamed: r.blamed,
		Latest: r.latest, Settled: r.settledBefore, Pruned: r.pruned, Ships: r.ships,
		Days: RepoDays{Days: map[int32]*dayTally{}}}
	snap.Commits = make([]commitSnapshot, 0, len(r.commits))
	for sha, c := range r.commits {
		cs := commitSnapshot{SHA: sha, Time: nanos(c.time), Parents: c.parents, PushPrev: c.pushPrev, Gap: c.gap, Counted: c.counted}
		if c.shipper != nil {
			cs.Shipper = c.shipper.id
		}
		derived := c.shipper != nil && c.counted
		if c.emitted != derived || (derived && (c.emittedID != c.shipper.id || !c.emittedAt.Equal(c.shipper.at) || !c.emittedCommit.Equal(c.time))) {
			cs.Handed, cs.Emitted, cs.EmittedID = true, c.emitted, c.emittedID
			cs.EmittedAt, cs.EmittedCommit = nanos(c.emittedAt), nanos(c.emittedCommit)
		}
		snap.Commits = append(snap.Commits, cs)
	}
	for _, m := range sortedKeys(r.merges) {
		snap.Merges = append(snap.Merges, r.merges[m])
	}
	for _, id := range sortedKeys(r.deploys) {
		if d := r.deploys[id]; !r.coldDeploy(d) {
			snap.Deploys = append(snap.Deploys, s.saveDeploy(r, d))
		}
	}
	for day, t := range r.days.Days {
		if !r.coldDay(day) {
			snap.Days.Days[day] = t
		}
	}
	snap.SettledDays, snap.SettledIDs = r.settled.byDay(func(day int32) bool { return !r.coldDay(day) })
	for sha, d := range r.missing {
		snap.Missing[sha] = d.id
	}
	data, err := encode(snap)
	if err != nil {
		return nil, false, fmt.Errorf("correlate: encode %s: %w", name, err)
	}
	return data, true, nil
}

// ColdChanged are the months whose cold part changed since the last Saved.
func (s *Repos) ColdChanged() []int32 {
	out := make([]int32, 0, len(s.coldDirty))
	for m := range s.coldDirty {
		out = append(out, m)
	}
	slices.Sort(out)
	return out
}

// EncodeCold saves a month's cold part of every repository.
func (s *Repos) EncodeCold(month int32) ([]byte, error) {
	chunk := coldChunk{Month: month}
	for _, name := range sortedKeys(s.repos) {
		r := s.repos[name]
		cr := coldRepo{Name: name, Days: RepoDays{Days: map[int32]*dayTally{}}}
		cr.SettledDays, cr.SettledIDs = r.settled.byDay(func(day int32) bool { return monthOf(day) == month && r.coldDay(day) })
		seen := map[string]bool{}
		for day, ids := range r.deployedOn {
			if monthOf(day) != month {
				continue
			}
			for _, id := range ids {
				if d := r.deploys[id]; d != nil && !seen[id] && unixDay(d.at) == day && r.coldDeploy(d) {
					seen[id] = true
					cr.Deploys = append(cr.Deploys, s.saveDeploy(r, d))
				}
			}
		}
		for day, t := range r.days.Days {
			if monthOf(day) == month && r.coldDay(day) {
				cr.Days.Days[day] = t
			}
		}
		if len(cr.SettledDays)+len(cr.Deploys)+len(cr.Days.Days) > 0 {
			chunk.Repos = append(chunk.Repos, cr)
		}
	}
	data, err := encode(chunk)
	if err != nil {
		return nil, fmt.Errorf("correlate: encode month %d: %w", month, err)
	}
	return data, nil
}

func (s *Repos) restoreDeploy(r *repoState, ds deploySnapshot) {
	d := &deployState{id: ds.ID, service: ds.Service, sha: ds.SHA, env: ds.Env, status: ds.Status, hint: ds.Hint,
		production: ds.Production, walked: ds.Walked, settled: ds.Settled, at: ds.At, changes: ds.Changes,
		approximate: ds.Approximate, rollback: ds.Rollback, emittedLive: ds.EmittedLive, rolledBackID: ds.RolledBackBy,
		handed: ds.Handed, emitted: ds.Emitted}
	for _, st := range ds.Statuses {
		d.statuses = append(d.statuses, deployStatus{event: st.Event, status: st.Status, at: st.At})
	}
	r.deploys[d.id] = d
	day := unixDay(d.at)
	r.deployedOn[day] = append(r.deployedOn[day], d.id)
}

// DecodeRepo restores a repository's hot part, replacing what the stage
// holds of it.
func (s *Repos) DecodeRepo(data []byte) error {
	var snap repoSnapshot
	if err := gob.NewDecoder(bytes.NewReader(data)).Decode(&snap); err != nil {
		return fmt.Errorf("correlate: decode repository: %w", err)
	}
	r := newRepoState(snap.Name)
	r.blamed, r.latest, r.settledBefore, r.pruned, r.days = snap.Blamed, snap.Latest, snap.Settled, snap.Pruned, snap.Days
	for _, b := range r.blamed {
		s.blamedOn[b.ID] = r.name
	}
	if r.days.Days == nil {
		r.days.Days = map[int32]*dayTally{}
	}
	if snap.Ships != nil {
		r.ships = snap.Ships
	}
	for _, h := range snap.Hosts {
		r.hosts[h] = true
	}
	for _, ds := range snap.Deploys {
		s.restoreDeploy(r, ds)
	}
	for _, cs := range snap.Commits {
		c := &commit{sha: cs.SHA, time: fromNanos(cs.Time), parents: cs.Parents, pushPrev: cs.PushPrev, gap: cs.Gap,
			counted: cs.Counted, shipperID: cs.Shipper}
		if cs.Handed {
			c.emitted, c.emittedID, c.emittedAt, c.emittedCommit = cs.Emitted, cs.EmittedID, fromNanos(cs.EmittedAt), fromNanos(cs.EmittedCommit)
			c.handed = true
		}
		r.commits[c.sha] = c
		r.heldCommitAt(c.time)
	}
	for _, m := range snap.Merges {
		r.merges[m.MergeSHA] = m
	}
	for i, day := range snap.SettledDays {
		r.settled.restore(day, snap.SettledIDs[i])
	}
	r.missingIDs = snap.Missing
	s.repos[r.name] = r
	return nil
}

// DecodeCold restores a month's cold part.
func (s *Repos) DecodeCold(data []byte) error {
	var chunk coldChunk
	if err := gob.NewDecoder(bytes.NewReader(data)).Decode(&chunk); err != nil {
		return fmt.Errorf("correlate: decode month: %w", err)
	}
	for _, cr := range chunk.Repos {
		r := s.repo(cr.Name)
		for i, day := range cr.SettledDays {
			r.settled.restore(day, cr.SettledIDs[i])
		}
		for _, ds := range cr.Deploys {
			s.restoreDeploy(r, ds)
		}
		for day, t := range cr.Days.Days {
			r.days.Days[day] = t
		}
	}
	return nil
}

// Restored links what the decoded parts refer to by id, once all are in.
func (s *Repos) Restored() {
	s.approximate = 0
	for _, r := range s.repos {
		r.settled.index()
		r.prod = r.prod[:0]
		for _, d := range r.deploys {
			if d.production {
				r.prod = append(r.prod, d)
			}
		}
		sortProd(r.prod)
		for _, d := range r.deploys {
			if by := r.deploys[d.rolledBackID]; d.rolledBackID != "" && by != nil {
				d.rolledBackBy = by
				by.undid = append(by.undid, d)
			}
			d.rolledBackID = ""
		}
		for sha, id := range r.missingIDs {
			if d := r.deploys[id]; d != nil {
				r.missing[sha] = d
				d.missed = append(d.missed, sha)
			}
		}
		r.missingIDs = nil
		for _, c := range r.commits {
			if d := r.deploys[c.shipperID]; c.shipperID != "" && d != nil {
				c.shipper = d
				d.shipped = append(d.shipped, c)
			}
			c.shipperID = ""
			if !c.handed {
				if c.emitted = c.shipper != nil && c.counted; c.emitted {
					c.emittedID, c.emittedAt, c.emittedCommit = c.shipper.id, c.shipper.at, c.time.UTC()
				}
			}
			c.handed = false
		}
		for m, merge := range r.merges {
			r.byHead[merge.HeadSHA] = append(r.byHead[merge.HeadSHA], m)
		}
		for _, d := range r.deploys {
			if !d.handed && d.emittedLive {
				d.emitted = r.fact(d)
			}
			d.handed = false
			if d.production {
				d.published = &ProductionDeployment{Repo: r.name, ID: d.id, Service: d.emitted.Service, At: d.at}
			}
			if d.emittedLive && s.countsApproximate(d.emitted) {
				s.approximate++
			}
		}
	}
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
	}
	clear(a.dirty)
	a.changed = false
	return a, nil
}
