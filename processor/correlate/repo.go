package correlate

import (
	"maps"
	"slices"
	"time"

	"github.com/doraflow/doraflow/pkg/event"
)

// repoState is everything known about one repository: the commit graph built
// from pushes and merges, and its deployments. Every field is a union or a
// deterministic choice, so the order events arrive in does not matter.
type repoState struct {
	name    string
	commits map[string]*commit
	merges  map[string]event.Merge // by merge sha
	deploys map[string]*deployState
	hosts   map[string]bool // sources whose pushes or merges describe the repo
	// baseline: commits shipped by deployments that retention dropped; the
	// walk from later deployments stops at them as at any covered commit.
	baseline map[string]bool
}

type commit struct {
	time    time.Time // zero when only known as someone's parent
	parents map[string]bool
	// pushPrev are the commits listed just before this one in a push: how a
	// rebase merge's rewritten commits are found.
	pushPrev map[string]bool
	// gap: this commit's parents are unknown because the push that brought it
	// was forced or truncated.
	gap bool
}

type deployState struct {
	service  string
	sha      string
	env      string
	statuses map[string]deployStatus // by event id
	rollback bool                    // the source said so
}

type deployStatus struct {
	status string
	at     time.Time
}

func newRepoState(name string) *repoState {
	return &repoState{name: name, commits: map[string]*commit{}, merges: map[string]event.Merge{},
		deploys: map[string]*deployState{}, hosts: map[string]bool{}, baseline: map[string]bool{}}
}

func (r *repoState) node(sha string) *commit {
	c := r.commits[sha]
	if c == nil {
		c = &commit{parents: map[string]bool{}, pushPrev: map[string]bool{}}
		r.commits[sha] = c
	}
	return c
}

func (r *repoState) applyPush(p *event.Push) {
	if p.Deleted {
		return
	}
	prev := p.Before
	for i, c := range p.Commits {
		n := r.node(c.SHA)
		n.time = c.Time
		switch {
		case i > 0:
			n.parents[prev] = true
			n.pushPrev[prev] = true
		case p.Forced || p.Truncated:
			n.gap = true
		case !event.IsZeroSHA(prev):
			n.parents[prev] = true
		}
		prev = c.SHA
	}
	if len(p.Commits) == 0 && !event.IsZeroSHA(p.After) {
		r.node(p.After) // a branch created at a known commit
	}
}

func (r *repoState) applyMerge(m event.Merge) {
	r.merges[m.MergeSHA] = m
}

func (r *repoState) applyDeployment(e event.Event) {
	d := e.Deployment
	ds := r.deploys[d.ID]
	if ds == nil {
		ds = &deployState{statuses: map[string]deployStatus{}}
		r.deploys[d.ID] = ds
	}
	// A deployment's sha, environment and service are the same in every
	// status; take the smallest non-empty to stay order-independent anyway.
	ds.sha = minNonEmpty(ds.sha, d.SHA)
	ds.env = minNonEmpty(ds.env, d.Environment)
	ds.service = minNonEmpty(ds.service, e.Service)
	ds.rollback = ds.rollback || d.Rollback
	ds.statuses[e.ID] = deployStatus{status: d.Status, at: e.OccurredAt}
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
	return best.status, best.at
}

// repoFacts is what a repository's own events determine: its deployments in
// order, their changes and rollbacks. Incident attribution is added on top.
type repoFacts struct {
	deployments []DeploymentFact // every attempt
	production  []int            // indexes into deployments, in time order
	changes     map[ChangeKey]ChangeFact
	// firstShip: the production deployment (index into deployments) that
	// first shipped each commit.
	firstShip map[string]int
	// rolledBackBy: index of the rollback that undid each failed deployment.
	rolledBackBy map[int]int
}

func (r *repoState) compute(cfg Config) *repoFacts {
	rf := &repoFacts{changes: map[ChangeKey]ChangeFact{}, firstShip: map[string]int{}, rolledBackBy: map[int]int{}}
	for id, d := range r.deploys {
		status, at := d.outcome()
		f := DeploymentFact{Repo: r.name, ID: id, Service: d.service, Environment: d.env, SHA: d.sha,
			Status: status, FinishedAt: at.UTC()}
		if f.Service == "" {
			f.Service = r.name
		}
		f.Production = status == event.StatusSuccess && cfg.IsProduction(d.env)
		rf.deployments = append(rf.deployments, f)
	}
	slices.SortFunc(rf.deployments, func(a, b DeploymentFact) int {
		if c := a.FinishedAt.Compare(b.FinishedAt); c != 0 {
			return c
		}
		if a.ID < b.ID {
			return -1
		}
		if a.ID > b.ID {
			return 1
		}
		return 0
	})
	for i, f := range rf.deployments {
		if f.Production {
			rf.production = append(rf.production, i)
		}
	}

	rewrites := r.rewrites()
	covered := maps.Clone(r.baseline)
	for pi, i := range rf.production {
		d := &rf.deployments[i]
		if pi > 0 {
			prev := rf.deployments[rf.production[pi-1]]
			if d.SHA != prev.SHA && (covered[d.SHA] || r.deploys[d.ID].rollback) {
				d.Rollback = true
				r.markRolledBack(rf, pi)
			}
		}
		if r.deploys[d.ID].rollback && pi == 0 {
			d.Rollback = true
		}
		// The deployed sha is shipped by it even when no push reported it
		// (a CI/CD-only source): explicit sha attribution finds it.
		if _, ok := rf.firstShip[d.SHA]; !ok {
			rf.firstShip[d.SHA] = i
		}
		// Walk back from the deployed sha to what earlier deployments already
		// covered. Covered sets are closed under ancestry, so the walk stops
		// there and each commit is visited once per recompute.
		stack := []string{d.SHA}
		for len(stack) > 0 {
			sha := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			if covered[sha] {
				continue
			}
			covered[sha] = true
			c := r.commits[sha]
			if c == nil || c.time.IsZero() {
				// Only known as a parent (or not at all): the chain ends here
				// without reaching the previous deployment.
				if pi > 0 || c == nil {
					d.Approximate = true
				}
				continue
			}
			if c.gap && len(c.parents) == 0 {
				d.Approximate = true
			}
			rf.firstShip[sha] = i
			if _, rewritten := rewrites[sha]; !rewritten {
				rf.changes[ChangeKey{r.name, sha}] = ChangeFact{Repo: r.name, SHA: sha, DeploymentID: d.ID,
					CommittedAt: c.time.UTC(), DeployedAt: d.FinishedAt}
				d.Changes++
			}
			for p := range c.parents {
				stack = append(stack, p)
			}
			if head, ok := rewrites[sha]; ok && head != "" {
				stack = append(stack, head)
			}
		}
	}
	return rf
}

// Gap is a stretch of a repository's history that the pushes seen do not
// cover: the commits between the previous production deployment (Base) and
// this one (Head). Host is the source whose API can fill it.
type Gap struct {
	Repo, Host, Base, Head string
}

func (r *repoState) gaps(rf *repoFacts) []Gap {
	hosts := sortedKeys(r.hosts)
	if len(hosts) == 0 {
		return nil
	}
	var out []Gap
	for pi := 1; pi < len(rf.production); pi++ {
		d := rf.deployments[rf.production[pi]]
		prev := rf.deployments[rf.production[pi-1]]
		if d.Approximate && d.SHA != prev.SHA {
			out = append(out, Gap{Repo: r.name, Host: hosts[0], Base: prev.SHA, Head: d.SHA})
		}
	}
	return out
}

// markRolledBack marks the production deployments that the rollback at
// position pi undid: those after the last one that deployed the same sha, or
// just the one before it when the target was never deployed itself.
func (r *repoState) markRolledBack(rf *repoFacts, pi int) {
	target := rf.deployments[rf.production[pi]].SHA
	from := pi - 1
	for j := pi - 1; j >= 0; j-- {
		if rf.deployments[rf.production[j]].SHA == target {
			from = j + 1
			break
		}
	}
	for j := from; j < pi; j++ {
		idx := rf.production[j]
		if rf.deployments[idx].SHA == target {
			continue
		}
		if _, done := rf.rolledBackBy[idx]; !done {
			rf.rolledBackBy[idx] = rf.production[pi]
		}
	}
}

// rewrites finds the commits that a squash or rebase merge wrote on the
// target branch in place of the pull request's own commits. Each maps to the
// pull request's head when its history is known (the rewrite is walked
// through, not counted), or to "" when it is not (the rewrite counts, as the
// best approximation).
func (r *repoState) rewrites() map[string]string {
	out := map[string]string{}
	for _, m := range r.merges {
		mc := r.commits[m.MergeSHA]
		if mc == nil || m.HeadSHA == "" || mc.parents[m.HeadSHA] {
			continue // unknown yet, or a true merge commit: it counts itself
		}
		head := r.commits[m.HeadSHA]
		if head == nil || head.time.IsZero() {
			continue
		}
		out[m.MergeSHA] = m.HeadSHA
		// A rebase merge rewrote Commits commits; they were pushed together,
		// ending at the merge sha.
		cur := m.MergeSHA
		for k := 1; k < m.Commits; k++ {
			prevs := make([]string, 0, len(r.commits[cur].pushPrev))
			for p := range r.commits[cur].pushPrev {
				prevs = append(prevs, p)
			}
			if len(prevs) != 1 || r.commits[prevs[0]] == nil {
				break
			}
			cur = prevs[0]
			out[cur] = ""
		}
	}
	return out
}
