package correlate

import (
	"maps"
	"slices"
	"time"

	"github.com/doraflow/doraflow/pkg/event"
)

// Retention bounds the state. Facts older than Keep are frozen: stored as
// they are, never rewritten or retracted. Events older than Keep+Margin are
// dropped; Margin must cover what a kept fact can depend on from before its
// time (the incident look-back, how long incidents stay open, how long
// commits wait for a deployment), or such facts come out different.
type Retention struct {
	Keep, Margin time.Duration
}

// Compact drops what retention no longer keeps, as of now: deployments and
// incidents before the drop horizon (Keep+Margin ago), the commits those
// deployments had shipped, and commits never deployed for longer than
// Keep beyond that (abandoned work). The shipped commits that later
// history refers to stay as a baseline, so later deployments' changes are
// unchanged. The state is rebuilt from what is kept, so a compacted state
// and one restored from its snapshot are the same.
func (s *State) Compact(now time.Time, r Retention) {
	frozen := now.Add(-r.Keep)
	if !frozen.After(s.frozenBefore) {
		return
	}
	drop := frozen.Add(-r.Margin)
	abandoned := drop.Add(-r.Keep)
	baselines := map[string][]string{}
	keptCommits := map[string]map[string]bool{}
	keptDeploys := map[DeploymentKey]bool{}
	for _, name := range sortedKeys(keysOf(s.repos)) {
		repo := s.repos[name]
		base, kept := repo.compact(drop, abandoned, s.cfg)
		if len(base) > 0 {
			baselines[name] = base
		}
		keptCommits[name] = kept
		for id, d := range repo.deploys {
			for _, st := range d.statuses {
				if !st.at.Before(drop) {
					keptDeploys[DeploymentKey{name, id}] = true
				}
			}
		}
	}
	keep := func(e event.Event) bool {
		switch e.Type {
		case event.TypeIncident:
			return !s.incidents[e.Incident.ID].openedAt.Before(drop)
		case event.TypeDeployment:
			return keptDeploys[DeploymentKey{e.Repo, e.Deployment.ID}]
		case event.TypePush:
			return !e.OccurredAt.Before(drop) || slices.ContainsFunc(e.Push.Commits, func(c event.Commit) bool { return keptCommits[e.Repo][c.SHA] })
		case event.TypeMerge:
			return !e.OccurredAt.Before(drop) || keptCommits[e.Repo][e.Merge.MergeSHA] || keptCommits[e.Repo][e.Merge.HeadSHA]
		}
		return false
	}
	kept := slices.DeleteFunc(slices.Clone(s.events), func(e event.Event) bool { return !keep(e) })
	emitted, approximate := s.emitted, s.approximate
	*s = *New(s.cfg)
	s.emitted, s.approximate = emitted, approximate
	s.restore(Snapshot{Events: kept, Baselines: baselines, FrozenBefore: frozen})
}

// compact splits a repository's commits at drop: the baseline (shipped by
// production deployments before drop, and referred to by a kept commit or
// a kept deployment) and the commits kept (not shipped before drop, and not
// abandoned). Re-deploying a sha older than the baseline is no longer
// recognised as a rollback.
func (r *repoState) compact(drop, abandoned time.Time, cfg Config) (baseline []string, kept map[string]bool) {
	var stack []string
	for _, d := range r.deploys {
		status, at := d.outcome()
		if at.Before(drop) && status == event.StatusSuccess && cfg.IsProduction(d.env) {
			stack = append(stack, d.sha)
		}
	}
	covered := maps.Clone(r.baseline)
	for len(stack) > 0 {
		sha := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if covered[sha] {
			continue
		}
		covered[sha] = true
		if c := r.commits[sha]; c != nil {
			stack = append(stack, slices.Collect(maps.Keys(c.parents))...)
			if head, ok := r.merges[sha]; ok {
				stack = append(stack, head.HeadSHA)
			}
		}
	}
	kept = map[string]bool{}
	base := map[string]bool{}
	for sha, c := range r.commits {
		if covered[sha] || (!c.time.IsZero() && c.time.Before(abandoned)) {
			continue
		}
		kept[sha] = true
		for p := range c.parents {
			if covered[p] {
				base[p] = true
			}
		}
	}
	for _, d := range r.deploys {
		for _, st := range d.statuses {
			if !st.at.Before(drop) && covered[d.sha] {
				base[d.sha] = true
			}
		}
	}
	for _, m := range r.merges {
		if kept[m.MergeSHA] && covered[m.HeadSHA] {
			base[m.HeadSHA] = true
		}
	}
	return sortedKeys(base), kept
}

// frozen reports whether a fact at t is older than the retention keeps.
func (s *State) frozen(t time.Time) bool { return t.Before(s.frozenBefore) }

// forgetFrozen drops frozen facts from what the state compares with.
func (s *State) forgetFrozen() {
	for k, f := range s.emitted.deployments {
		if s.frozen(f.FinishedAt) {
			if f.Production && f.Approximate {
				s.approximate--
			}
			delete(s.emitted.deployments, k)
		}
	}
	for k, f := range s.emitted.changes {
		if s.frozen(f.DeployedAt) {
			delete(s.emitted.changes, k)
		}
	}
	for k, f := range s.emitted.incidents {
		if s.frozen(f.OpenedAt) {
			delete(s.emitted.incidents, k)
		}
	}
}
