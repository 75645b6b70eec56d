package correlate

import (
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/doraflow/doraflow/pkg/event"
)

// repoState is everything known about one repository, kept so that an event
// costs what it changes: the commit graph built from pushes and merges, the
// deployments, which production deployment first shipped each commit, and
// the facts last handed out. Every field is a union or a deterministic
// choice, so the order events arrive in does not matter.
//
// Production deployments ship commits in time order: each one ships the
// commits reachable from its sha that no earlier one reached. An event can
// only change what the deployments from some point in that order ship (a
// late deployment, a late push that fills a hole a deployment's walk ended
// at, a merge that turns a commit into a rewrite), so a flush walks again
// from the earliest deployment the batch's events can affect, never the
// whole history.
type repoState struct {
	name    string
	commits map[string]*commit
	// settled holds the ids of commits shipped by settled deployments (see
	// settle), by the day (Unix days) of their deployment: their facts are
	// final, and a walk stops at them.
	settled settledSet
	merges  map[string]event.Merge
	byHead  map[string][]string // merge shas by the merged branch's head
	deploys map[string]*deployState
	prod    []*deployState // production deployments in (time, id) order
	// missing: shas a walk ended at without knowing the commit, with the
	// earliest deployment whose walk did: when the commit arrives, that is
	// where the walk must start again.
	missing map[string]*deployState
	hosts   map[string]bool // sources whose pushes or merges describe the repo
	blamed  []BlamedIncident
	latest  time.Time // the latest event time seen: older history settles
	// oldestCommit: no commit held is older (zero: none with a time), so
	// retention need not look for abandoned commits before it.
	oldestCommit time.Time
	// settledBefore: production deployments before this are settled.
	settledBefore time.Time
	// deployedOn lists deployment ids by the day they finished, for
	// retention.
	deployedOn map[int32][]string
	// pruned: older production deployments left the state (retention), so
	// the first one kept is not the repository's first.
	pruned bool
	ships  map[string]string // watched sha → deployment id last handed out
	days   RepoDays          // the per-day rollups of the facts handed out

	// After a restart (Remember): stored rows no fact holds, to retract,
	// and whether attribution must be handed every record again.
	strays    Facts
	republish bool
	// reship: attribution must be handed every ship again.
	reship bool
	// While a snapshot is restored: missing shas by deployment id.
	missingIDs map[string]string

	// What the events since the last flush touched.
	fromID         string
	fromTime       time.Time
	hasFrom        bool
	statusDirty    map[*deployState]bool
	touchedDeps    map[*deployState]bool
	touchedCommits map[*commit]bool
	walked         bool // some production deployment was walked again
}

type commit struct {
	sha     string
	time    time.Time // zero when only known as a branch's tip
	parents []string
	// pushPrev is the commit listed just before this one in a push (not in
	// a compare range): how a rebase merge's rewritten commits are found.
	// pushPrevConflict when pushes disagree.
	pushPrev string
	// gap: the commit's parents are unknown because the push that brought
	// it was forced or truncated.
	gap     bool
	shipper *deployState // the production deployment that first ships it
	counted bool         // a change of its shipper (not a rewrite)
	// While a snapshot is restored: the shipper's id, and whether the
	// emitted fields were saved (else they are the shipper's).
	shipperID string
	handed    bool
	// The change fact last handed out.
	emitted                  bool
	emittedID                string
	emittedAt, emittedCommit time.Time
}

const pushPrevConflict = "\x00"

// handedOut records f as the change fact last handed out for the commit
// (nil: none).
func (c *commit) handedOut(f *ChangeFact) {
	if f == nil {
		c.emitted, c.emittedID, c.emittedAt, c.emittedCommit = false, "", time.Time{}, time.Time{}
		return
	}
	c.emitted, c.emittedID, c.emittedAt, c.emittedCommit = true, f.DeploymentID, f.DeployedAt, f.CommittedAt
}

// emittedFact is the change fact last handed out for the commit.
func (c *commit) emittedFact(repo string) ChangeFact {
	return ChangeFact{Repo: repo, SHA: c.sha, DeploymentID: c.emittedID, CommittedAt: c.emittedCommit, DeployedAt: c.emittedAt}
}

type deployState struct {
	id, service, sha, env string
	statuses              []deployStatus
	hint                  bool // the source said it is a rollback

	status     string
	at         time.Time
	production bool

	// What its walk found (production deployments).
	walked       bool
	shipped      []*commit
	missed       []string // shas its walk ended at unknown
	changes      int
	approximate  bool
	rollback     bool
	rolledBackBy *deployState
	undid        []*deployState
	// settled: its shipped commits are reduced to their ids; it is never
	// walked again.
	settled bool

	emitted     DeploymentFact
	emittedLive bool
	published   *ProductionDeployment
	republish   bool // hand attribution its record again
	// While a snapshot is restored: the rollback's id, and whether the
	// emitted fact was saved (else it is the one the deployment gives).
	rolledBackID string
	handed       bool
}

type deployStatus struct {
	event, status string
	at            time.Time
}

func newRepoState(name string) *repoState {
	return &repoState{name: name, commits: map[string]*commit{}, settled: newSettledSet(),
		deployedOn: map[int32][]string{},
		merges:     map[string]event.Merge{}, byHead: map[string][]string{}, deploys: map[string]*deployState{},
		missing: map[string]*deployState{}, hosts: map[string]bool{}, ships: map[string]string{},
		statusDirty: map[*deployState]bool{}, touchedDeps: map[*deployState]bool{}, touchedCommits: map[*commit]bool{}}
}

// shaHash is a sha's settled id: FNV-1a, stable across processes because
// settled ids are snapshotted. 64 bits make a collision among a repository's
// commits (millions at most) vanishingly unlikely.
func shaHash(sha string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(sha); i++ {
		h ^= uint64(sha[i])
		h *= 1099511628211
	}
	return h
}

func (r *repoState) isSettled(sha string) bool {
	return r.settled.has(shaHash(sha))
}

// covered: a walk stops here, an earlier deployment reached it.
func (r *repoState) covered(sha string) bool {
	if c := r.commits[sha]; c != nil && c.shipper != nil {
		return true
	}
	if r.missing[sha] != nil {
		return true
	}
	return r.isSettled(sha)
}

func (r *repoState) heldCommitAt(t time.Time) {
	if !t.IsZero() && (r.oldestCommit.IsZero() || t.Before(r.oldestCommit)) {
		r.oldestCommit = t
	}
}

func (r *repoState) seen(t time.Time) {
	if t.After(r.latest) {
		r.latest = t
	}
}

// markFrom notes that production deployments from (at, id) on must be
// walked again.
func (r *repoState) markFrom(at time.Time, id string) {
	if !r.hasFrom || deployOrder(at, id, r.fromTime, r.fromID) < 0 {
		r.fromTime, r.fromID, r.hasFrom = at, id, true
	}
}

func (r *repoState) markFromDeploy(d *deployState) { r.markFrom(d.at, d.id) }

func (r *repoState) touchDep(d *deployState) { r.touchedDeps[d] = true }
func (r *repoState) touchCommit(c *commit)   { r.touchedCommits[c] = true }

// touched is called for a commit a push added or changed: the deployments
// that its absence, or its former shape, influenced must be walked again.
func (r *repoState) touched(c *commit) {
	if d := r.missing[c.sha]; d != nil {
		r.markFromDeploy(d)
	}
	if c.shipper != nil {
		r.markFromDeploy(c.shipper)
	}
	for _, m := range r.byHead[c.sha] {
		if mc := r.commits[m]; mc != nil && mc.shipper != nil {
			r.markFromDeploy(mc.shipper)
		}
	}
}

func (r *repoState) applyPush(p *event.Push) {
	if p.Deleted {
		return
	}
	prev := p.Before
	for i, pc := range p.Commits {
		if r.isSettled(pc.SHA) {
			prev = pc.SHA
			continue
		}
		n := r.commits[pc.SHA]
		changed := n == nil
		if n == nil {
			n = &commit{sha: pc.SHA}
			r.commits[pc.SHA] = n
		}
		if !n.time.Equal(pc.Time) {
			n.time, changed = pc.Time, true
			r.heldCommitAt(pc.Time)
		}
		switch {
		case i > 0:
			changed = n.addParent(prev) || changed
			if !p.Range {
				changed = n.setPushPrev(prev) || changed
			}
		case p.Forced || p.Truncated:
			if !n.gap {
				n.gap, changed = true, true
			}
		case !event.IsZeroSHA(prev):
			changed = n.addParent(prev) || changed
		}
		if changed {
			r.touched(n)
		}
		prev = pc.SHA
	}
	if len(p.Commits) == 0 && !event.IsZeroSHA(p.After) && !r.isSettled(p.After) && r.commits[p.After] == nil {
		n := &commit{sha: p.After} // a branch created at a known commit
		r.commits[p.After] = n
		r.touched(n)
	}
}

func (c *commit) addParent(sha string) bool {
	if slices.Contains(c.parents, sha) {
		return false
	}
	c.parents = append(c.parents, sha)
	return true
}

func (c *commit) setPushPrev(sha string) bool {
	switch c.pushPrev {
	case sha, pushPrevConflict:
		return false
	case "":
		c.pushPrev = sha
	default:
		c.pushPrev = pushPrevConflict
	}
	return true
}

func (r *repoState) applyMerge(m event.Merge) {
	if old, ok := r.merges[m.MergeSHA]; ok && old == m {
		return
	}
	if old, ok := r.merges[m.MergeSHA]; ok {
		r.byHead[old.HeadSHA] = slices.DeleteFunc(r.byHead[old.HeadSHA], func(s string) bool { return s == m.MergeSHA })
	}
	r.merges[m.MergeSHA] = m
	if !slices.Contains(r.byHead[m.HeadSHA], m.MergeSHA) {
		r.byHead[m.HeadSHA] = append(r.byHead[m.HeadSHA], m.MergeSHA)
	}
	if mc := r.commits[m.MergeSHA]; mc != nil && mc.shipper != nil {
		r.markFromDeploy(mc.shipper)
	}
}

func (r *repoState) applyDeployment(e event.Event) {
	d := e.Deployment
	ds := r.deploys[d.ID]
	if ds == nil {
		ds = &deployState{id: d.ID}
		r.deploys[d.ID] = ds
	}
	if slices.ContainsFunc(ds.statuses, func(s deployStatus) bool { return s.event == e.ID }) {
		return
	}
	// A deployment's sha, environment and service are the same in every
	// status; take the smallest non-empty to stay order-independent anyway.
	ds.sha = minNonEmpty(ds.sha, d.SHA)
	ds.env = minNonEmpty(ds.env, d.Environment)
	ds.service = minNonEmpty(ds.service, e.Service)
	ds.hint = ds.hint || d.Rollback
	ds.statuses = append(ds.statuses, deployStatus{event: e.ID, status: d.Status, at: e.OccurredAt})
	r.statusDirty[ds] = true
}

func minNonEmpty(a, b string) string {
	if a == "" || (b != "" && b < a) {
		return b
	}
	return a
}

// outcome is a deployment's result: success at its first success; else its
// latest failure or error; else pending since it was first seen.
func (d *deployState) outcome() (string, time.Time) {
	var best deployStatus
	for _, st := range d.statuses {
		switch {
		case best.status == "":
			best = st
		case st.status == event.StatusSuccess:
			if best.status != event.StatusSuccess || st.at.Before(best.at) {
				best = st
			}
		case best.status == event.StatusSuccess:
		case st.status == event.StatusPending:
			if best.status == event.StatusPending && st.at.Before(best.at) {
				best = st
			}
		case best.status == event.StatusPending || st.at.After(best.at) ||
			(st.at.Equal(best.at) && st.status > best.status):
			best = st
		}
	}
	return best.status, best.at.UTC()
}

// prodIndex is where d sits (or would sit) in the production order.
func (r *repoState) prodIndex(at time.Time, id string) int {
	return sort.Search(len(r.prod), func(i int) bool { return deployOrder(r.prod[i].at, r.prod[i].id, at, id) >= 0 })
}

func (r *repoState) removeProd(d *deployState) {
	i := r.prodIndex(d.at, d.id)
	if i < len(r.prod) && r.prod[i] == d {
		r.prod = slices.Delete(r.prod, i, i+1)
	}
	r.unship(d)
	d.rolledBackBy = nil
}

func (r *repoState) insertProd(d *deployState) {
	i := r.prodIndex(d.at, d.id)
	r.prod = slices.Insert(r.prod, i, d)
}

// unship undoes what a production deployment's walk found.
func (r *repoState) unship(d *deployState) {
	for _, c := range d.shipped {
		c.shipper, c.counted = nil, false
		r.touchCommit(c)
	}
	for _, u := range d.undid {
		if u.rolledBackBy == d {
			u.rolledBackBy = nil
			r.touchDep(u)
		}
	}
	for _, sha := range d.missed {
		if r.missing[sha] == d {
			delete(r.missing, sha)
		}
	}
	d.shipped, d.undid, d.missed = d.shipped[:0], nil, nil
	d.changes, d.approximate, d.rollback, d.walked = 0, false, false, false
	r.touchDep(d)
}

// update brings the deployments and what they ship in line with the
// events folded since the last flush.
func (r *repoState) update(cfg Config) {
	for _, d := range sortedDeploys(r.statusDirty) {
		if d.settled {
			continue // its facts are final
		}
		if d.production {
			r.removeProd(d)
			r.markFromDeploy(d)
		}
		at := d.at
		d.status, d.at = d.outcome()
		if !d.at.Equal(at) {
			day := unixDay(d.at)
			r.deployedOn[day] = append(r.deployedOn[day], d.id)
		}
		d.production = d.status == event.StatusSuccess && cfg.IsProduction(d.env)
		if d.production {
			r.insertProd(d)
			r.markFromDeploy(d)
		}
		r.touchDep(d)
	}
	clear(r.statusDirty)
	if !r.hasFrom {
		return
	}
	r.hasFrom = false
	k := r.prodIndex(r.fromTime, r.fromID)
	for _, d := range r.prod[k:] {
		if !d.settled {
			r.unship(d)
		}
	}
	for j := k; j < len(r.prod); j++ {
		if d := r.prod[j]; !d.walked {
			r.walk(j)
			if d.at.Before(r.settledBefore) {
				r.settleOne(d) // arrived after its time had settled
			}
		}
	}
	r.walked = true
}

// walk finds what the production deployment at position j ships: the
// commits reachable from its sha that no earlier deployment reached.
func (r *repoState) walk(j int) {
	d := r.prod[j]
	d.walked = true
	first := j == 0 && !r.pruned
	if j > 0 {
		prev := r.prod[j-1]
		if d.sha != prev.sha && (r.covered(d.sha) || d.hint) {
			d.rollback = true
			r.markRolledBack(j)
		}
	} else if d.hint {
		d.rollback = true
	}
	stack := []string{d.sha}
	for len(stack) > 0 {
		sha := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if r.covered(sha) {
			continue
		}
		c := r.commits[sha]
		if c == nil || c.time.IsZero() {
			// Only known as a branch tip (or not at all): the chain ends
			// here without reaching the previous deployment.
			if !first || c == nil {
				d.approximate = true
			}
			r.missing[sha] = d
			d.missed = append(d.missed, sha)
			continue
		}
		if c.gap && len(c.parents) == 0 {
			d.approximate = true
		}
		c.shipper = d
		d.shipped = append(d.shipped, c)
		r.touchCommit(c)
		stack = append(stack, c.parents...)
		if head := r.rewriteHead(c); head != "" {
			stack = append(stack, head)
		}
	}
	var copies map[*commit]bool
	for _, c := range d.shipped {
		if m, ok := r.merges[c.sha]; ok && m.Commits > 1 && r.rewriteHead(c) != "" {
			copies = r.rebaseCopies(c, m, d, copies)
		}
	}
	for _, c := range d.shipped {
		c.counted = r.rewriteHead(c) == "" && !copies[c]
		if c.counted {
			d.changes++
		}
	}
}

// rewriteHead is the head of the pull request whose squash or rebase merge
// wrote c on the target branch, when that head's history is known: the walk
// goes through it, and c (a rewrite) does not count. "" otherwise — a true
// merge commit, a fast-forward, or a head never pushed — and c counts.
func (r *repoState) rewriteHead(c *commit) string {
	m, ok := r.merges[c.sha]
	if !ok || m.HeadSHA == "" || m.HeadSHA == c.sha || slices.Contains(c.parents, m.HeadSHA) {
		return ""
	}
	if r.isSettled(m.HeadSHA) {
		return m.HeadSHA
	}
	if h := r.commits[m.HeadSHA]; h != nil && !h.time.IsZero() {
		return m.HeadSHA
	}
	return ""
}

// rebaseCopies adds to copies the commits a rebase merge wrote before its
// last one (tip): up to Commits-1 single-parent ancestors of the tip shipped
// by the same deployment, each pushed together with its child, or carrying
// the same time as the pull request's commit at the same depth (a rebase
// keeps author times) — so a compare range, which says nothing of how the
// commits were pushed, counts them as the pushes do. A squash merge's parent
// is another commit of the target branch, which neither holds for.
func (r *repoState) rebaseCopies(tip *commit, m event.Merge, d *deployState, copies map[*commit]bool) map[*commit]bool {
	a, b := tip, r.commits[m.HeadSHA]
	for k := 1; k < m.Commits; k++ {
		next := a.pushPrev
		pushed := next != "" && next != pushPrevConflict
		if !pushed {
			if len(a.parents) != 1 {
				return copies
			}
			next = a.parents[0]
		}
		ap := r.commits[next]
		if ap == nil || ap.time.IsZero() || ap.shipper != d {
			return copies
		}
		var bp *commit
		if b != nil && len(b.parents) == 1 {
			bp = r.commits[b.parents[0]]
		}
		if !pushed && (bp == nil || bp == ap || bp.time.IsZero() || !bp.time.Equal(ap.time)) {
			return copies
		}
		if copies == nil {
			copies = map[*commit]bool{}
		}
		copies[ap] = true
		a, b = ap, bp
	}
	return copies
}

// markRolledBack marks the production deployments that the rollback at
// position j undid: those after the last one that deployed the same sha, or
// just the one before it when the target was never deployed itself. The
// first rollback of a deployment counts.
func (r *repoState) markRolledBack(j int) {
	d := r.prod[j]
	from := j - 1
	for i := j - 1; i >= 0; i-- {
		if r.prod[i].sha == d.sha {
			from = i + 1
			break
		}
	}
	for i := from; i < j; i++ {
		u := r.prod[i]
		if u.sha == d.sha || u.rolledBackBy != nil {
			continue
		}
		u.rolledBackBy = d
		d.undid = append(d.undid, u)
		r.touchDep(u)
	}
}

// blame records (or replaces) an incident blamed on a deployment of the
// repository, and unblame forgets one; both touch the deployments whose
// facts that changes: the one blamed, and those that finished while the
// incident was open (rework).
func (r *repoState) blame(b BlamedIncident) {
	i, found := slices.BinarySearchFunc(r.blamed, b.ID, func(x BlamedIncident, id string) int { return strings.Compare(x.ID, id) })
	if found {
		if r.blamed[i].equal(b) {
			return
		}
		r.touchBlamed(r.blamed[i])
		r.blamed[i] = b
	} else {
		r.blamed = slices.Insert(r.blamed, i, b)
	}
	r.touchBlamed(b)
}

func (r *repoState) unblame(id string) {
	i, found := slices.BinarySearchFunc(r.blamed, id, func(x BlamedIncident, id string) int { return strings.Compare(x.ID, id) })
	if found {
		r.touchBlamed(r.blamed[i])
		r.blamed = slices.Delete(r.blamed, i, i+1)
	}
}

func (r *repoState) touchBlamed(b BlamedIncident) {
	if d := r.deploys[b.DeploymentID]; d != nil {
		r.touchDep(d)
	}
	for i := r.prodIndex(b.OpenedAt, ""); i < len(r.prod); i++ {
		d := r.prod[i]
		if b.ResolvedAt != nil && !d.at.Before(*b.ResolvedAt) {
			break
		}
		r.touchDep(d)
	}
}

// fact is the deployment's fact as things stand.
func (r *repoState) fact(d *deployState) DeploymentFact {
	f := DeploymentFact{Repo: r.name, ID: d.id, Service: d.service, Environment: d.env, SHA: d.sha,
		Status: d.status, FinishedAt: d.at, Production: d.production}
	if f.Service == "" {
		f.Service = r.name
	}
	if !d.production {
		return f
	}
	f.Rollback, f.Changes, f.Approximate = d.rollback, d.changes, d.approximate
	var recovered []time.Time
	if d.rolledBackBy != nil {
		f.Failed = true
		recovered = append(recovered, d.rolledBackBy.at)
	}
	var lastResolved time.Time
	open := false
	for _, b := range r.blamed {
		switch {
		case b.DeploymentID == d.id:
			f.Incidents++
			if b.ResolvedAt == nil {
				open = true
			} else if b.ResolvedAt.After(lastResolved) {
				lastResolved = *b.ResolvedAt
			}
		case b.openAt(d.at):
			f.Rework = true // a fix forward
		}
	}
	if f.Incidents > 0 {
		f.Failed = true
		if !open {
			recovered = append(recovered, lastResolved)
		}
	}
	if len(recovered) > 0 {
		t := slices.MinFunc(recovered, time.Time.Compare).UTC()
		f.RecoveredAt = &t
	}
	f.Rework = f.Rework || d.rollback
	return f
}

// shipOf is the production deployment that first shipped sha, "" if none:
// the deployment whose walk reached the commit, or, for a commit no push
// reported (a CI/CD-only source), the first that deployed it.
func (r *repoState) shipOf(sha string) string {
	if c := r.commits[sha]; c != nil && c.shipper != nil {
		return c.shipper.id
	}
	for _, d := range r.prod {
		if d.sha == sha {
			return d.id
		}
	}
	return ""
}

// settle reduces what production deployments before t shipped to the
// commits' ids: their change facts are final, later walks stop at them, and
// re-deploying one is still recognised as a rollback. It costs what newly
// settles.
func (r *repoState) settle(t time.Time) {
	if !t.After(r.settledBefore) {
		return
	}
	for i := r.prodIndex(r.settledBefore, ""); i < len(r.prod) && r.prod[i].at.Before(t); i++ {
		r.settleOne(r.prod[i])
	}
	r.settledBefore = t
}

func (r *repoState) settleOne(d *deployState) {
	if d.settled || !d.walked {
		return
	}
	day := unixDay(d.at)
	for _, c := range d.shipped {
		r.settle1(c.sha, day)
		delete(r.commits, c.sha)
		if m, ok := r.merges[c.sha]; ok {
			delete(r.merges, c.sha)
			r.byHead[m.HeadSHA] = slices.DeleteFunc(r.byHead[m.HeadSHA], func(s string) bool { return s == c.sha })
			if len(r.byHead[m.HeadSHA]) == 0 {
				delete(r.byHead, m.HeadSHA)
			}
		}
	}
	for _, sha := range d.missed {
		if r.missing[sha] == d {
			delete(r.missing, sha)
			r.settle1(sha, day)
		}
	}
	d.shipped, d.missed, d.settled, d.statuses = nil, nil, true, nil
}

func (r *repoState) settle1(sha string, day int32) {
	r.settled.add(shaHash(sha), day)
}

// drop forgets what retention no longer keeps: production deployments (all
// settled by then) and settled commit ids before drop, non-production
// deployments before drop, and commits never shipped whose time is before
// abandoned.
func (r *repoState) drop(drop, abandoned time.Time) {
	n := r.prodIndex(drop, "")
	for _, d := range r.prod[:n] {
		if !d.settled {
			n = 0 // never before settling: it may still ship commits
			break
		}
	}
	if n > 0 {
		for _, d := range r.prod[:n] {
			delete(r.deploys, d.id)
		}
		r.prod = slices.Delete(r.prod, 0, n)
		r.pruned = true
	}
	dropDay := unixDay(drop)
	for day, ids := range r.deployedOn {
		if day < dropDay {
			for _, id := range ids {
				if d := r.deploys[id]; d != nil && !d.production && d.at.Before(drop) {
					delete(r.deploys, id)
				}
			}
			delete(r.deployedOn, day)
		}
	}
	r.settled.dropBefore(dropDay)
	// Commits never shipped, once some commit held is old enough: looking
	// at every commit a day would cost the whole unsettled history daily.
	if r.oldestCommit.IsZero() || !r.oldestCommit.Before(abandoned) {
		return
	}
	r.oldestCommit = time.Time{}
	for sha, c := range r.commits {
		if c.shipper == nil && !c.time.IsZero() && c.time.Before(abandoned) {
			delete(r.commits, sha)
			continue
		}
		r.heldCommitAt(c.time)
	}
}

func unixDay(t time.Time) int32 { return int32(t.Unix() / 86400) }

// sortedDeploys orders a set of deployments by id, so output is
// deterministic.
func sortedDeploys(set map[*deployState]bool) []*deployState {
	out := make([]*deployState, 0, len(set))
	for d := range set {
		out = append(out, d)
	}
	slices.SortFunc(out, func(a, b *deployState) int { return strings.Compare(a.id, b.id) })
	return out
}

func sortedCommits(set map[*commit]bool) []*commit {
	out := make([]*commit, 0, len(set))
	for c := range set {
		out = append(out, c)
	}
	slices.SortFunc(out, func(a, b *commit) int { return strings.Compare(a.sha, b.sha) })
	return out
}
