package correlate

import (
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
	// Retention bounds the state; zero keeps everything.
	Retention Retention
	// OwnsRepo says whether a repository stage holds the repository (its
	// partition); nil: all.
	OwnsRepo func(repo string) bool
}

// Retention bounds the state. Facts older than Keep are frozen: stored as
// they are, never rewritten or retracted; deployments and incidents older
// than Keep+Margin leave the state. Margin is also how far behind a
// repository's latest event its history stays whole: the commits a
// production deployment older than that shipped are reduced to their ids
// (settled), so an event arriving more than Margin after the deployments it
// belongs to is folded against that settled history. Margin must cover what
// a kept fact can depend on from before its time (the incident look-back,
// how long incidents stay open, how late pushes arrive).
type Retention struct {
	Keep, Margin time.Duration
}

// State is the whole correlation in one place: a repository stage for
// every repository and the attribution stage, the records between them
// exchanged in memory until they settle. The processor runs the stages
// apart, over the bus; State is the same computation for tests and tools.
type State struct {
	Repos       *Repos
	Attribution *Attribution
}

// New returns an empty state.
func New(cfg Config) *State {
	return &State{Repos: NewRepos(cfg), Attribution: NewAttribution(cfg)}
}

// Apply folds one event. Folding an event twice changes nothing.
func (s *State) Apply(e event.Event) {
	s.Repos.Apply(e)
	if e.Type == event.TypeIncident {
		s.Attribution.Apply(e)
	}
}

// Flush returns the rows to write for everything folded since the last
// flush, once both stages have settled.
func (s *State) Flush() Facts {
	var out Facts
	for {
		o := s.Repos.Flush()
		out.Deployments = append(out.Deployments, o.Facts.Deployments...)
		out.Changes = append(out.Changes, o.Facts.Changes...)
		out.Days = append(out.Days, o.Facts.Days...)
		for _, d := range o.Deployments {
			s.Attribution.ApplyDeployment(d)
		}
		for _, sh := range o.Ships {
			s.Attribution.ApplyShip(sh)
		}
		rows, blames := s.Attribution.Flush()
		out.Incidents = append(out.Incidents, rows...)
		for _, b := range blames {
			s.Repos.ApplyBlame(b)
		}
		if len(o.Deployments)+len(o.Ships)+len(blames) == 0 {
			return out
		}
	}
}

// Current is every fact as last handed out, in key order.
func (s *State) Current() Facts {
	f := s.Repos.Current()
	f.Incidents = s.Attribution.Current()
	return f
}

// Gaps are the holes in push chains behind approximate deployments.
func (s *State) Gaps() []Gap { return s.Repos.Gaps() }

// Approximate counts approximate production deployments.
func (s *State) Approximate() int { return s.Repos.Approximate() }

// Compact applies the retention as of now.
func (s *State) Compact(now time.Time) {
	s.Repos.Compact(now)
	s.Attribution.Compact(now)
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

// Gap is a stretch of a repository's history that the pushes seen do not
// cover: the commits between the previous production deployment (Base) and
// this one (Head). Host is the source whose API can fill it.
type Gap struct {
	Repo, Host, Base, Head string
}

// Stale are tombstones for the stored facts that current does not hold at
// the same key and time, except those older than frozen (retention keeps
// them as stored).
func Stale(stored, current Facts, frozen time.Time) Facts {
	return Facts{
		Deployments: stale(stored.Deployments, current.Deployments, DeploymentFact.Key, func(f DeploymentFact) time.Time { return f.FinishedAt }, frozen),
		Changes:     stale(stored.Changes, current.Changes, ChangeFact.Key, func(f ChangeFact) time.Time { return f.DeployedAt }, frozen),
		Incidents:   stale(stored.Incidents, current.Incidents, func(f IncidentFact) string { return f.ID }, func(f IncidentFact) time.Time { return f.OpenedAt }, frozen),
	}
}

func stale[F any, K comparable](stored, current []Row[F], key func(F) K, at func(F) time.Time, frozen time.Time) []Row[F] {
	held := map[K]time.Time{}
	for _, r := range current {
		held[key(r.Fact)] = at(r.Fact)
	}
	var out []Row[F]
	for _, r := range stored {
		t, ok := held[key(r.Fact)]
		if r.Live && !at(r.Fact).Before(frozen) && (!ok || !t.Equal(at(r.Fact))) {
			out = append(out, Row[F]{Fact: r.Fact})
		}
	}
	return out
}

// handOut are the rows that take the store from the fact last handed out
// (old, if hadOld) to the current one (cur, if hasCur): none when they are
// the same; a tombstone at the old time when the fact went away or its time
// moved; the new row.
func handOut[F any](old F, hadOld bool, cur F, hasCur bool, same func(a, b F) bool, at func(F) time.Time) []Row[F] {
	if hadOld && hasCur && same(old, cur) {
		return nil
	}
	var rows []Row[F]
	if hadOld && (!hasCur || !at(old).Equal(at(cur))) {
		rows = append(rows, Row[F]{Fact: old})
	}
	if hasCur {
		rows = append(rows, Row[F]{Fact: cur, Live: true})
	}
	return rows
}
