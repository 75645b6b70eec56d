package correlate

import (
	"slices"
	"strings"
	"time"

	"github.com/doraflow/doraflow/pkg/event"
)

// Config is what correlation needs from the configuration.
type Config struct {
	IsProduction  func(environment string) bool
	TeamOfRepo    func(repo string) string
	TeamOfService func(service string) string
	// Lookback bounds heuristic incident attribution.
	Lookback time.Duration
	// OwnsIncident says whether this state writes the facts of incidents
	// with the given key (event.Event.Key); nil: all. With the work split by
	// partition, every state folds every incident (attribution needs them
	// all) but only the owner of its partition writes its fact.
	OwnsIncident func(key string) bool
}

// State is the correlation state: every event folded so far, and the facts
// last handed out, so that Flush returns only what changed.
type State struct {
	cfg       Config
	seen      map[string]bool
	events    []event.Event // every event folded, for snapshots
	repos     map[string]*repoState
	incidents map[string]*incidentState

	dirty    map[string]bool // repos whose facts must be recomputed
	incDirty bool            // incident attribution must be recomputed
	computed map[string]*repoFacts
	attrib   map[string]IncidentFact
	emitted  emitted
	// strays are stored rows duplicating a fact's key (left by an earlier
	// fault): the next Flush retracts them.
	strays Facts
	// foreign are other partitions' production deployments.
	foreign []ProductionDeployment
	// frozenBefore: facts older than this are kept as stored (Compact).
	frozenBefore time.Time
	// approximate counts emitted production deployments whose changes may
	// be incomplete (a gap in the push chain).
	approximate int
}

type emitted struct {
	deployments map[DeploymentKey]DeploymentFact
	changes     map[ChangeKey]ChangeFact
	incidents   map[string]IncidentFact
}

// New returns an empty state.
func New(cfg Config) *State {
	return &State{
		cfg:       cfg,
		seen:      map[string]bool{},
		repos:     map[string]*repoState{},
		incidents: map[string]*incidentState{},
		dirty:     map[string]bool{},
		computed:  map[string]*repoFacts{},
		attrib:    map[string]IncidentFact{},
		emitted: emitted{
			deployments: map[DeploymentKey]DeploymentFact{},
			changes:     map[ChangeKey]ChangeFact{},
			incidents:   map[string]IncidentFact{},
		},
	}
}

// Apply folds one event into the state. It returns false for an event seen
// before (a duplicate), which changes nothing.
func (s *State) Apply(e event.Event) bool {
	if s.seen[e.ID] || e.Validate() != nil {
		return false
	}
	s.seen[e.ID] = true
	s.events = append(s.events, e)
	switch e.Type {
	case event.TypePush:
		r := s.repo(e.Repo)
		r.applyPush(e.Push)
		r.hosts[e.Source] = true
		s.dirty[e.Repo] = true
	case event.TypeMerge:
		r := s.repo(e.Repo)
		r.applyMerge(*e.Merge)
		r.hosts[e.Source] = true
		s.dirty[e.Repo] = true
	case event.TypeDeployment:
		s.repo(e.Repo).applyDeployment(e)
		s.dirty[e.Repo] = true
		s.incDirty = true
	case event.TypeIncident:
		inc := s.incidents[e.Incident.ID]
		if inc == nil {
			inc = &incidentState{}
			s.incidents[e.Incident.ID] = inc
		}
		inc.apply(e)
		s.incDirty = true
	}
	return true
}

func (s *State) repo(name string) *repoState {
	r := s.repos[name]
	if r == nil {
		r = newRepoState(name)
		s.repos[name] = r
	}
	return r
}

// Remember tells the state which facts are already stored (after a restart),
// so the next Flush writes only what differs and retracts what moved. A key
// stored live at two times (left by an earlier fault) keeps one row; the
// other is retracted at the next Flush.
func (s *State) Remember(f Facts) {
	defer s.forgetFrozen()
	for _, r := range f.Deployments {
		if r.Live {
			if old, ok := s.emitted.deployments[r.Fact.Key()]; ok {
				s.strays.Deployments = append(s.strays.Deployments, Row[DeploymentFact]{Fact: old})
				if old.Production && old.Approximate {
					s.approximate--
				}
			}
			s.emitted.deployments[r.Fact.Key()] = r.Fact
			if r.Fact.Production && r.Fact.Approximate {
				s.approximate++
			}
		}
	}
	for _, r := range f.Changes {
		if r.Live {
			if old, ok := s.emitted.changes[r.Fact.Key()]; ok {
				s.strays.Changes = append(s.strays.Changes, Row[ChangeFact]{Fact: old})
			}
			s.emitted.changes[r.Fact.Key()] = r.Fact
		}
	}
	for _, r := range f.Incidents {
		if r.Live {
			if old, ok := s.emitted.incidents[r.Fact.ID]; ok {
				s.strays.Incidents = append(s.strays.Incidents, Row[IncidentFact]{Fact: old})
			}
			s.emitted.incidents[r.Fact.ID] = r.Fact
		}
	}
}

// Flush recomputes the facts that the events folded since the last Flush can
// have changed, and returns the rows to write: new or changed facts, and
// tombstones for facts that vanished or whose time moved (so that a query
// over the old time no longer sees them). The caller must write them before
// it acknowledges the events.
func (s *State) Flush() Facts {
	out := s.strays
	s.strays = Facts{}
	affected := map[string]bool{}
	for name := range s.dirty {
		s.computed[name] = s.repos[name].compute(s.cfg)
		affected[name] = true
	}
	clear(s.dirty)
	if s.incDirty || len(affected) > 0 {
		attrib := s.attributeIncidents()
		for id, f := range attrib {
			if old, ok := s.attrib[id]; !ok || !sameIncident(old, f) {
				affected[old.DeploymentRepo] = true
				affected[f.DeploymentRepo] = true
			}
		}
		for id, old := range s.attrib {
			if _, ok := attrib[id]; !ok {
				affected[old.DeploymentRepo] = true
			}
		}
		s.attrib = attrib
		s.incDirty = false
		out.Incidents = diff(s.emitted.incidents, unfrozen(s.ownIncidents(), func(f IncidentFact) bool { return s.frozen(f.OpenedAt) }),
			strings.Compare, sameIncident, func(a, b IncidentFact) bool { return a.OpenedAt.Equal(b.OpenedAt) })
	}
	for _, name := range sortedKeys(affected) {
		rf := s.computed[name]
		if rf == nil {
			continue
		}
		deps := s.deploymentFacts(name, rf)
		cur := map[DeploymentKey]DeploymentFact{}
		for _, d := range deps {
			if !s.frozen(d.FinishedAt) {
				cur[d.Key()] = d
			}
		}
		old := map[DeploymentKey]DeploymentFact{}
		for k, v := range s.emitted.deployments {
			if k.Repo == name {
				old[k] = v
			}
		}
		rows := diff(old, cur, DeploymentKey.Compare, sameDeployment,
			func(a, b DeploymentFact) bool { return a.FinishedAt.Equal(b.FinishedAt) })
		s.approximate -= s.countApproximate(rows)
		applyRows(s.emitted.deployments, rows, DeploymentFact.Key, cur)
		s.approximate += s.countApproximate(rows)
		out.Deployments = append(out.Deployments, rows...)

		oldC := map[ChangeKey]ChangeFact{}
		for k, v := range s.emitted.changes {
			if k.Repo == name {
				oldC[k] = v
			}
		}
		curC := unfrozen(rf.changes, func(f ChangeFact) bool { return s.frozen(f.DeployedAt) })
		crows := diff(oldC, curC, ChangeKey.Compare, sameChange,
			func(a, b ChangeFact) bool { return a.DeployedAt.Equal(b.DeployedAt) })
		applyRows(s.emitted.changes, crows, ChangeFact.Key, curC)
		out.Changes = append(out.Changes, crows...)
	}
	applyRows(s.emitted.incidents, out.Incidents, func(f IncidentFact) string { return f.ID },
		unfrozen(s.ownIncidents(), func(f IncidentFact) bool { return s.frozen(f.OpenedAt) }))
	// A stray at the key and time of a row written now is replaced by it;
	// a tombstone of the same version there would tie with it.
	out.Deployments = dropShadowedStrays(out.Deployments, func(f DeploymentFact) string {
		return f.Key().String() + "@" + f.FinishedAt.String()
	})
	out.Changes = dropShadowedStrays(out.Changes, func(f ChangeFact) string { return f.Key().String() + "@" + f.DeployedAt.String() })
	out.Incidents = dropShadowedStrays(out.Incidents, func(f IncidentFact) string { return f.ID + "@" + f.OpenedAt.String() })
	return out
}

// dropShadowedStrays removes tombstones whose key and time a live row in
// the same set also has.
func dropShadowedStrays[F any](rows []Row[F], at func(F) string) []Row[F] {
	live := map[string]bool{}
	for _, r := range rows {
		if r.Live {
			live[at(r.Fact)] = true
		}
	}
	return slices.DeleteFunc(rows, func(r Row[F]) bool { return !r.Live && live[at(r.Fact)] })
}

// unfrozen keeps the facts retention has not frozen.
func unfrozen[K comparable, F any](facts map[K]F, isFrozen func(F) bool) map[K]F {
	out := make(map[K]F, len(facts))
	for k, f := range facts {
		if !isFrozen(f) {
			out[k] = f
		}
	}
	return out
}

// ownIncidents are the attributed incidents whose facts this state writes.
func (s *State) ownIncidents() map[string]IncidentFact {
	if s.cfg.OwnsIncident == nil {
		return s.attrib
	}
	out := map[string]IncidentFact{}
	for id, f := range s.attrib {
		if s.cfg.OwnsIncident(IncidentKey(f)) {
			out[id] = f
		}
	}
	return out
}

// applyRows records written rows as emitted.
func applyRows[K comparable, F any](emitted map[K]F, rows []Row[F], key func(F) K, cur map[K]F) {
	for _, r := range rows {
		k := key(r.Fact)
		if r.Live {
			emitted[k] = r.Fact
		} else if _, ok := cur[k]; !ok {
			delete(emitted, k)
		}
	}
}

// diff compares what was emitted with what holds now. A fact whose time
// moved gets a tombstone at the old time besides the new row.
func diff[K comparable, F any](old, cur map[K]F, compare func(a, b K) int, same func(a, b F) bool, sameTime func(a, b F) bool) []Row[F] {
	var rows []Row[F]
	for _, k := range sortedKeysFunc(cur, compare) {
		f := cur[k]
		o, ok := old[k]
		if ok && same(o, f) {
			continue
		}
		if ok && !sameTime(o, f) {
			rows = append(rows, Row[F]{Fact: o, Live: false})
		}
		rows = append(rows, Row[F]{Fact: f, Live: true})
	}
	for _, k := range sortedKeysFunc(old, compare) {
		if _, ok := cur[k]; !ok {
			rows = append(rows, Row[F]{Fact: old[k], Live: false})
		}
	}
	return rows
}

func sameIncident(a, b IncidentFact) bool {
	return a.ID == b.ID && a.Source == b.Source && a.Service == b.Service && a.Repo == b.Repo &&
		a.OpenedAt.Equal(b.OpenedAt) && sameTimePtr(a.ResolvedAt, b.ResolvedAt) &&
		a.DeploymentRepo == b.DeploymentRepo && a.DeploymentID == b.DeploymentID && a.Attribution == b.Attribution
}

// sameDeployment and sameChange compare times as instants: a fact read
// back from storage carries the same instant in another representation.
func sameDeployment(a, b DeploymentFact) bool {
	ra, rb := a.RecoveredAt, b.RecoveredAt
	fa, fb := a.FinishedAt, b.FinishedAt
	a.RecoveredAt, b.RecoveredAt = nil, nil
	a.FinishedAt, b.FinishedAt = time.Time{}, time.Time{}
	return a == b && fa.Equal(fb) && sameTimePtr(ra, rb)
}

func sameChange(a, b ChangeFact) bool {
	return a.Repo == b.Repo && a.SHA == b.SHA && a.DeploymentID == b.DeploymentID &&
		a.CommittedAt.Equal(b.CommittedAt) && a.DeployedAt.Equal(b.DeployedAt)
}

func sameTimePtr(a, b *time.Time) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	return a.Equal(*b)
}

func sortedKeys(m map[string]bool) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// sortedKeysFunc orders map keys, so output order is deterministic.
func sortedKeysFunc[K comparable, V any](m map[K]V, compare func(a, b K) int) []K {
	keys := make([]K, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, compare)
	return keys
}

// countApproximate counts the approximate production deployments among the
// emitted facts that rows touch.
func (s *State) countApproximate(rows []Row[DeploymentFact]) int {
	n := 0
	seen := map[DeploymentKey]bool{}
	for _, r := range rows {
		k := r.Fact.Key()
		if f, ok := s.emitted.deployments[k]; ok && !seen[k] && f.Production && f.Approximate {
			n++
		}
		seen[k] = true
	}
	return n
}

// Gaps are the holes in the push chains behind approximate production
// deployments, in a stable order: filled through the Git host's compare API,
// they make those deployments exact.
func (s *State) Gaps() []Gap {
	var out []Gap
	for _, name := range sortedKeys(keysOf(s.computed)) {
		out = append(out, s.repos[name].gaps(s.computed[name])...)
	}
	return out
}

// Approximate is the number of production deployments whose changes may be
// incomplete because the push chain had a gap.
func (s *State) Approximate() int { return s.approximate }

// Current is every fact as last handed out by Flush, in key order: what the
// store holds once those rows are written.
func (s *State) Current() Facts {
	var out Facts
	for _, k := range sortedKeysFunc(s.emitted.deployments, DeploymentKey.Compare) {
		out.Deployments = append(out.Deployments, Row[DeploymentFact]{Fact: s.emitted.deployments[k], Live: true})
	}
	for _, k := range sortedKeysFunc(s.emitted.changes, ChangeKey.Compare) {
		out.Changes = append(out.Changes, Row[ChangeFact]{Fact: s.emitted.changes[k], Live: true})
	}
	for _, k := range sortedKeysFunc(s.emitted.incidents, strings.Compare) {
		out.Incidents = append(out.Incidents, Row[IncidentFact]{Fact: s.emitted.incidents[k], Live: true})
	}
	return out
}

// Snapshot is the state in a form to store and restore: the events folded,
// and what retention left of older history. The facts already stored are
// not part of it — they are read from the store, which is the truth even
// for writes made after the snapshot.
type Snapshot struct {
	Events       []event.Event       `json:"events"`
	Baselines    map[string][]string `json:"baselines,omitempty"`
	FrozenBefore time.Time           `json:"frozen_before,omitzero"`
}

// Snapshot captures the state.
func (s *State) Snapshot() Snapshot {
	snap := Snapshot{Events: slices.Clone(s.events), FrozenBefore: s.frozenBefore}
	for _, name := range sortedKeys(keysOf(s.repos)) {
		if b := s.repos[name].baseline; len(b) > 0 {
			if snap.Baselines == nil {
				snap.Baselines = map[string][]string{}
			}
			snap.Baselines[name] = sortedKeys(b)
		}
	}
	return snap
}

// Restore folds a snapshot into the state.
func (s *State) Restore(snap Snapshot) { s.restore(snap) }

func (s *State) restore(snap Snapshot) {
	if snap.FrozenBefore.After(s.frozenBefore) {
		s.frozenBefore = snap.FrozenBefore
	}
	for name, shas := range snap.Baselines {
		r := s.repo(name)
		for _, sha := range shas {
			r.baseline[sha] = true
		}
		s.dirty[name] = true
	}
	for _, e := range snap.Events {
		s.Apply(e)
	}
	s.incDirty = true
	s.forgetFrozen()
}
