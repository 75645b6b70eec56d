package correlate

import (
	"slices"
	"time"

	"github.com/doraflow/doraflow/pkg/event"
)

// Repos is the repository stage of the correlation for a set of
// repositories (a partition): it folds their pushes, merges and deployments,
// and the blames attribution hands it, into deployment and change facts.
// A flush costs what the events since the last one change.
type Repos struct {
	cfg       Config
	retention Retention
	repos     map[string]*repoState
	// watch: shas incidents name, whose shipping deployment is handed to
	// attribution (Ship).
	watch      map[string]bool
	watchAdded []string
	dirty      map[string]bool
	changed    map[string]bool // since the last Changed
	// frozenBefore: facts older than this are kept as stored.
	frozenBefore time.Time
	approximate  int
	// blamedOn: the repository each incident blamed on one of this stage's
	// deployments is blamed on.
	blamedOn map[string]string
	// coldDirty: months whose cold part changed since the last Saved;
	// coldBefore: months before it hold nothing (retention dropped it).
	coldDirty  map[int32]bool
	coldBefore int32
}

// Output is what a flush of the repository stage hands on: the fact rows to
// write, and what attribution needs.
type Output struct {
	Facts       Facts
	Deployments []ProductionDeployment
	Ships       []Ship
	// Gaps are the holes in push chains behind the production deployments
	// the flush found approximate.
	Gaps []Gap
}

// Len is the number of records.
func (o Output) Len() int { return o.Facts.Len() + len(o.Deployments) + len(o.Ships) }

// NewRepos returns an empty repository stage.
func NewRepos(cfg Config) *Repos {
	return &Repos{cfg: cfg, retention: cfg.Retention, repos: map[string]*repoState{}, watch: map[string]bool{},
		dirty: map[string]bool{}, changed: map[string]bool{}, coldDirty: map[int32]bool{}, blamedOn: map[string]string{}}
}

func (s *Repos) repo(name string) *repoState {
	r := s.repos[name]
	if r == nil {
		r = newRepoState(name)
		s.repos[name] = r
	}
	return r
}

func (s *Repos) touch(name string) {
	s.dirty[name] = true
	s.changed[name] = true
}

// Apply folds an event. Pushes, merges and deployments change their
// repository; an incident naming a commit makes the stage watch which
// deployment shipped it. Folding an event twice changes nothing.
func (s *Repos) Apply(e event.Event) {
	if e.Validate() != nil {
		return
	}
	switch e.Type {
	case event.TypePush:
		r := s.repo(e.Repo)
		r.hosts[e.Source] = true
		r.applyPush(e.Push)
		r.seen(e.OccurredAt)
		s.touch(e.Repo)
	case event.TypeMerge:
		r := s.repo(e.Repo)
		r.hosts[e.Source] = true
		r.applyMerge(*e.Merge)
		r.seen(e.OccurredAt)
		s.touch(e.Repo)
	case event.TypeDeployment:
		r := s.repo(e.Repo)
		r.applyDeployment(e)
		r.seen(e.OccurredAt)
		s.touch(e.Repo)
	case event.TypeIncident:
		if sha := e.Incident.SHA; sha != "" && !s.watch[sha] {
			s.watch[sha] = true
			s.watchAdded = append(s.watchAdded, sha)
		}
	}
}

// ApplyBlame folds an incident's blame: it leaves the repository it was
// blamed on, if this stage holds that one, and joins the one it is blamed on
// now, if this stage holds that one (Config.OwnsRepo).
func (s *Repos) ApplyBlame(b BlamedIncident) {
	if old, ok := s.blamedOn[b.ID]; ok {
		if old == b.DeploymentRepo {
			s.repos[old].blame(b)
			s.touch(old)
			return
		}
		s.repos[old].unblame(b.ID)
		delete(s.blamedOn, b.ID)
		s.touch(old)
	}
	if b.DeploymentRepo == "" || (s.cfg.OwnsRepo != nil && !s.cfg.OwnsRepo(b.DeploymentRepo)) {
		return
	}
	s.repo(b.DeploymentRepo).blame(b)
	s.blamedOn[b.ID] = b.DeploymentRepo
	s.touch(b.DeploymentRepo)
}

// Flush brings the facts of the repositories touched since the last flush
// in line with what was folded, and returns the rows to write (new or
// changed facts, and tombstones for facts whose time moved) and what
// attribution must learn. The caller writes and hands them on before it
// acknowledges the events.
func (s *Repos) Flush() Output {
	var out Output
	if len(s.watchAdded) > 0 {
		for name := range s.repos {
			s.dirty[name] = true
		}
	}
	for _, name := range sortedKeys(s.dirty) {
		r := s.repos[name]
		r.update(s.cfg)
		reship := r.republish || r.reship
		s.emit(r, &out)
		if r.walked || len(s.watchAdded) > 0 || reship {
			s.ship(r, &out, reship)
			r.walked, r.reship = false, false
		}
		if s.retention.Margin > 0 && !r.latest.IsZero() {
			before := r.settledBefore
			r.settle(r.latest.Add(-s.retention.Margin))
			s.passed(r, before)
		}
	}
	clear(s.dirty)
	s.watchAdded = nil
	return out
}

// emit hands out the rows of the facts the flush touched.
func (s *Repos) emit(r *repoState, out *Output) {
	var facts Facts
	for _, d := range sortedDeploys(r.touchedDeps) {
		cur := r.fact(d)
		s.emitDeployment(r, d, cur, &facts)
		var pub *ProductionDeployment
		if d.production {
			pub = &ProductionDeployment{Repo: r.name, ID: d.id, Service: cur.Service, At: d.at}
		}
		republish := r.republish || d.republish
		d.republish = false
		switch {
		case pub == nil && (d.published != nil || republish):
			w := ProductionDeployment{Repo: r.name, ID: d.id, Service: cur.Service, At: d.at, Withdrawn: true}
			if d.published != nil {
				w = *d.published
				w.Withdrawn = true
			}
			out.Deployments = append(out.Deployments, w)
			d.published = nil
		case pub != nil && (d.published == nil || *d.published != *pub || republish):
			out.Deployments = append(out.Deployments, *pub)
			d.published = pub
		}
		if d.production && d.approximate {
			if i := r.prodIndex(d.at, d.id); i > 0 && len(r.hosts) > 0 && r.prod[i-1].sha != d.sha {
				out.Gaps = append(out.Gaps, Gap{Repo: r.name, Host: sortedKeys(r.hosts)[0], Base: r.prod[i-1].sha, Head: d.sha})
			}
		}
	}
	clear(r.touchedDeps)
	for _, c := range sortedCommits(r.touchedCommits) {
		s.emitChange(r, c, &facts)
	}
	clear(r.touchedCommits)
	// A stray at the key and time of a row written now is replaced by it;
	// a tombstone of the same version there would tie with it.
	facts.Deployments = append(facts.Deployments, unshadowed(r.strays.Deployments, facts.Deployments,
		func(f DeploymentFact) string { return f.Key().String() + "@" + f.FinishedAt.String() })...)
	facts.Changes = append(facts.Changes, unshadowed(r.strays.Changes, facts.Changes,
		func(f ChangeFact) string { return f.Key().String() + "@" + f.DeployedAt.String() })...)
	r.strays, r.republish = Facts{}, false
	out.Facts.Deployments = append(out.Facts.Deployments, facts.Deployments...)
	out.Facts.Changes = append(out.Facts.Changes, facts.Changes...)
	days := r.days.Flush(r.name)
	for _, d := range days {
		s.markCold(r, unixDay(d.Day))
	}
	out.Facts.Days = append(out.Facts.Days, days...)
}

// unshadowed are tombstones for the strays no live row among rows has the
// key and time of.
func unshadowed[F any](strays, rows []Row[F], at func(F) string) []Row[F] {
	live := map[string]bool{}
	for _, r := range rows {
		if r.Live {
			live[at(r.Fact)] = true
		}
	}
	var out []Row[F]
	for _, st := range strays {
		if !live[at(st.Fact)] {
			out = append(out, Row[F]{Fact: st.Fact})
		}
	}
	return out
}

func (s *Repos) frozen(t time.Time) bool { return t.Before(s.frozenBefore) }

func (s *Repos) countsApproximate(f DeploymentFact) bool {
	return f.Production && f.Approximate && !s.frozen(f.FinishedAt)
}

func (s *Repos) emitDeployment(r *repoState, d *deployState, cur DeploymentFact, out *Facts) {
	old, hadOld := d.emitted, d.emittedLive && !s.frozen(d.emitted.FinishedAt)
	hasCur := !s.frozen(cur.FinishedAt)
	if d.emittedLive && s.countsApproximate(old) {
		s.approximate--
	}
	if s.countsApproximate(cur) {
		s.approximate++
	}
	d.emitted, d.emittedLive = cur, true
	rows := handOut(old, hadOld, cur, hasCur, sameDeployment, func(f DeploymentFact) time.Time { return f.FinishedAt })
	if len(rows) == 0 {
		return
	}
	s.markCold(r, unixDay(old.FinishedAt))
	s.markCold(r, unixDay(cur.FinishedAt))
	// The rollups mirror the rows: the row last handed out is retracted or
	// replaced, the new one counts.
	if hadOld {
		r.days.Add(old, -1)
	}
	if hasCur {
		r.days.Add(cur, +1)
	}
	out.Deployments = append(out.Deployments, rows...)
}

func (s *Repos) emitChange(r *repoState, c *commit, out *Facts) {
	var cur ChangeFact
	hasCur := c.shipper != nil && c.counted
	if hasCur {
		cur = ChangeFact{Repo: r.name, SHA: c.sha, DeploymentID: c.shipper.id, CommittedAt: c.time.UTC(), DeployedAt: c.shipper.at}
		hasCur = !s.frozen(cur.DeployedAt)
	}
	old := c.emittedFact(r.name)
	hadOld := c.emitted && !s.frozen(old.DeployedAt)
	if c.shipper != nil && c.counted {
		c.handedOut(&cur)
	} else {
		c.handedOut(nil)
	}
	rows := handOut(old, hadOld, cur, hasCur, sameChange, func(f ChangeFact) time.Time { return f.DeployedAt })
	if len(rows) == 0 {
		return
	}
	if hadOld {
		r.days.AddChange(old, -1)
	}
	if hasCur {
		r.days.AddChange(cur, +1)
	}
	out.Changes = append(out.Changes, rows...)
}

// ship hands attribution the deployment that shipped each watched sha, where
// that changed.
func (s *Repos) ship(r *repoState, out *Output, all bool) {
	for _, sha := range sortedKeys(s.watch) {
		id := r.shipOf(sha)
		if id == r.ships[sha] && !all {
			continue
		}
		out.Ships = append(out.Ships, Ship{Repo: r.name, SHA: sha, DeploymentID: id})
		if id == "" {
			delete(r.ships, sha)
		} else {
			r.ships[sha] = id
		}
	}
}

// Changed are the repositories changed since the last Saved, in name
// order: what a snapshot must save again.
func (s *Repos) Changed() []string { return sortedKeys(s.changed) }

// passed marks the months of the days the settled horizon passed since
// before: what they hold moves from the hot part to the cold.
func (s *Repos) passed(r *repoState, before time.Time) {
	to := unixDay(r.settledBefore)
	if !before.IsZero() {
		for day := unixDay(before); day < to; day++ {
			s.coldDirty[monthOf(day)] = true
		}
		return
	}
	for _, days := range [][]int32{r.settled.days(), keysOf(r.deployedOn), keysOf(r.days.Days)} {
		for _, day := range days {
			if day < to {
				s.coldDirty[monthOf(day)] = true
			}
		}
	}
}

func keysOf[V any](m map[int32]V) []int32 {
	out := make([]int32, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

// ColdBefore is the first month retention keeps anything of: cold parts
// of earlier months can be deleted.
func (s *Repos) ColdBefore() int32 { return s.coldBefore }

// Saved says a snapshot holds every repository as it is now.
func (s *Repos) Saved() {
	clear(s.changed)
	clear(s.coldDirty)
}

// Approximate is the number of production deployments whose changes may be
// incomplete because the push chain had a gap.
func (s *Repos) Approximate() int { return s.approximate }

// Gaps are the holes in the push chains behind every approximate production
// deployment, in a stable order (for a fresh start; flushes report new ones).
func (s *Repos) Gaps() []Gap {
	var out []Gap
	for _, name := range sortedKeys(s.repos) {
		r := s.repos[name]
		if len(r.hosts) == 0 {
			continue
		}
		host := sortedKeys(r.hosts)[0]
		for i := 1; i < len(r.prod); i++ {
			if d, prev := r.prod[i], r.prod[i-1]; d.approximate && d.sha != prev.sha && !d.settled {
				out = append(out, Gap{Repo: r.name, Host: host, Base: prev.sha, Head: d.sha})
			}
		}
	}
	return out
}

// Current is every fact as last handed out, in key order: what the store
// holds once the flushed rows are written (frozen facts aside).
func (s *Repos) Current() Facts {
	var out Facts
	for _, name := range sortedKeys(s.repos) {
		r := s.repos[name]
		for _, id := range sortedKeys(r.deploys) {
			if d := r.deploys[id]; d.emittedLive && !s.frozen(d.emitted.FinishedAt) {
				out.Deployments = append(out.Deployments, Row[DeploymentFact]{Fact: d.emitted, Live: true})
			}
		}
		for _, sha := range sortedKeys(r.commits) {
			c := r.commits[sha]
			if c.emitted && !s.frozen(c.emittedAt) {
				out.Changes = append(out.Changes, Row[ChangeFact]{Fact: c.emittedFact(r.name), Live: true})
			}
		}
	}
	return out
}

// Compact applies the retention as of now: facts older than Keep are frozen
// (kept as stored); deployments older than Keep+Margin leave the state, and
// so do the settled ids of commits shipped before then (re-deploying one is
// no longer recognised as a rollback); a commit waits for its deployment
// until Keep beyond that.
func (s *Repos) Compact(now time.Time) {
	if s.retention.Keep <= 0 {
		return
	}
	frozen := now.Add(-s.retention.Keep)
	if !frozen.After(s.frozenBefore) {
		return
	}
	old := s.frozenBefore
	s.frozenBefore = frozen
	drop := frozen.Add(-s.retention.Margin)
	abandoned := drop.Add(-s.retention.Keep)
	for _, r := range s.repos {
		// Facts frozen now no longer count as approximate.
		for i := r.prodIndex(old, ""); i < len(r.prod) && r.prod[i].at.Before(frozen); i++ {
			if d := r.prod[i]; d.emittedLive && d.emitted.Production && d.emitted.Approximate && !d.emitted.FinishedAt.Before(old) {
				s.approximate--
			}
		}
		r.drop(drop, abandoned)
		r.days.Drop(frozen)
		s.changed[r.name] = true
	}
	// The months between the two horizons lost some of their cold part:
	// saved again; months before both hold nothing any more (ColdBefore).
	for day := unixDay(drop); day <= unixDay(frozen); day++ {
		s.coldDirty[monthOf(day)] = true
	}
	s.coldBefore = monthOf(unixDay(drop))
}

func sortedBy[K comparable, V any](m map[K]V, compare func(a, b K) int) []K {
	keys := make([]K, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, compare)
	return keys
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// Remember makes what the stage last handed out of the given repositories
// what the store holds of them (stored: their live rows). After a restart
// the two can differ: a worker that died may have written rows its
// successor's snapshot does not know, or not written rows its checkpoint
// covers. The next flush then writes exactly the difference, retracts rows
// stored twice or for facts that no longer hold, rewrites their rollups,
// and hands attribution every record of them again.
func (s *Repos) Remember(stored Facts, repos []string) {
	deps := map[string][]DeploymentFact{}
	for _, row := range stored.Deployments {
		deps[row.Fact.Repo] = append(deps[row.Fact.Repo], row.Fact)
	}
	changes := map[string][]ChangeFact{}
	for _, row := range stored.Changes {
		changes[row.Fact.Repo] = append(changes[row.Fact.Repo], row.Fact)
	}
	for _, name := range repos {
		r := s.repo(name)
		rewrite := r.days.Days
		r.days = RepoDays{}
		for _, d := range r.deploys {
			if d.emittedLive && s.countsApproximate(d.emitted) {
				s.approximate--
			}
			d.emitted, d.emittedLive, d.published = DeploymentFact{}, false, nil
			r.touchDep(d)
		}
		for _, c := range r.commits {
			c.handedOut(nil)
			r.touchCommit(c)
		}
		for _, f := range deps[name] {
			s.rememberDeployment(r, r.deploys[f.ID], f)
		}
		for _, f := range changes[name] {
			c := r.commits[f.SHA]
			switch {
			case c == nil && r.isSettled(f.SHA):
				r.days.AddChange(f, +1) // final, and held only as an id
			case c == nil || c.emitted:
				r.strays.Changes = append(r.strays.Changes, Row[ChangeFact]{Fact: f})
			default:
				c.handedOut(&f)
				r.days.AddChange(f, +1)
			}
		}
		// Rewrite every rollup day the state or the store knew of.
		for day := range rewrite {
			r.days.day(time.Unix(int64(day)*86400, 0))
		}
		r.republish = true
		s.touch(name)
	}
}

// RememberWritten is Remember for a stage restored from a snapshot: stored
// holds every fact written since the snapshot was taken, with all its
// stored rows (live or retracted), and only those facts can differ from
// what the snapshot says was handed out. Their rows, rollups and records
// for attribution are made what the store holds and handed out again
// where the flush finds them changed; every other fact stays as the
// snapshot has it. The cost is what was written since, not the history.
func (s *Repos) RememberWritten(stored Facts) {
	deps := liveByKey(stored.Deployments, DeploymentFact.Key)
	changes := liveByKey(stored.Changes, ChangeFact.Key)
	for _, k := range sortedBy(deps, DeploymentKey.Compare) {
		facts := deps[k]
		r := s.repo(k.Repo)
		d := r.deploys[k.ID]
		if d != nil {
			if d.emittedLive && !s.frozen(d.emitted.FinishedAt) {
				r.days.Add(d.emitted, -1)
			}
			if d.emittedLive && s.countsApproximate(d.emitted) {
				s.approximate--
			}
			d.emitted, d.emittedLive, d.republish = DeploymentFact{}, false, true
			r.touchDep(d)
		}
		for _, f := range facts {
			s.rememberDeployment(r, d, f)
		}
		r.reship = true
		s.touch(k.Repo)
	}
	for _, k := range sortedBy(changes, ChangeKey.Compare) {
		facts := changes[k]
		r := s.repo(k.Repo)
		c := r.commits[k.SHA]
		if c == nil && r.isSettled(k.SHA) {
			continue // final: the snapshot counts it as stored
		}
		if c != nil {
			if old := c.emittedFact(r.name); c.emitted && !s.frozen(old.DeployedAt) {
				r.days.AddChange(old, -1)
			}
			c.handedOut(nil)
			r.touchCommit(c)
		}
		for _, f := range facts {
			if c == nil || c.emitted {
				r.strays.Changes = append(r.strays.Changes, Row[ChangeFact]{Fact: f})
				continue
			}
			c.handedOut(&f)
			if !s.frozen(f.DeployedAt) {
				r.days.AddChange(f, +1)
			}
		}
		r.reship = true
		s.touch(k.Repo)
	}
}

// rememberDeployment makes the stored live fact f what was last handed out
// for d, or a stray to retract if the stage does not hold d or already
// took another stored row for it.
func (s *Repos) rememberDeployment(r *repoState, d *deployState, f DeploymentFact) {
	if d == nil || d.emittedLive {
		r.strays.Deployments = append(r.strays.Deployments, Row[DeploymentFact]{Fact: f})
		return
	}
	d.emitted, d.emittedLive = f, true
	if s.countsApproximate(f) {
		s.approximate++
	}
	if !s.frozen(f.FinishedAt) {
		r.days.Add(f, +1)
	}
}

// liveByKey groups the live facts of rows by key; a key whose rows are
// all retracted maps to none.
func liveByKey[F any, K comparable](rows []Row[F], key func(F) K) map[K][]F {
	out := map[K][]F{}
	for _, row := range rows {
		k := key(row.Fact)
		if row.Live {
			out[k] = append(out[k], row.Fact)
		} else if out[k] == nil {
			out[k] = []F{}
		}
	}
	return out
}

// Touched are the repositories folded into since the last flush.
func (s *Repos) Touched() []string { return sortedKeys(s.dirty) }
