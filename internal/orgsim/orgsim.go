// Package orgsim generates an engineering organisation's history as
// canonical events, day by day, deterministically from a seed: repositories
// with feature branches merged by squash, merge commit or rebase, direct
// pushes, production and staging deployments (some failing, some rolling
// back), and incidents opened and resolved. Benchmarks and scale tests feed
// it through the correlation and the real pipeline; its shape follows the
// sizing in the design notes (a 2,000-engineer organisation: ~10k pushes of
// ~3 commits, ~1k production deployments, ~20 incidents a day).
package orgsim

import (
	"fmt"
	"iter"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/doraflow/doraflow/pkg/event"
)

// Options size the organisation.
type Options struct {
	Repos             int
	PushesPerDay      int // pushes to feature branches and main together
	DeploymentsPerDay int // production deployments
	IncidentsPerDay   int
	Start             time.Time // the first day (UTC midnight)
	Seed              uint64
}

// Large is the organisation of the design notes' sizing.
func Large(start time.Time) Options {
	return Options{Repos: 2000, PushesPerDay: 10000, DeploymentsPerDay: 1000, IncidentsPerDay: 20, Start: start, Seed: 1}
}

// Org is a generator. Days must be drawn in order.
type Org struct {
	opts  Options
	rng   *rand.Rand
	repos []*repo
	// weights: a repository's share of the activity (a few are busy).
	cumulative []float64
	day        int
	seq        int
	open       []openIncident
}

type repo struct {
	name     string
	head     string   // main's tip
	branches []branch // open feature branches
	deployed []string // production shas, latest last
	pending  bool     // main moved since the last production deployment
}

type branch struct {
	name    string
	tip     string
	commits []event.Commit
}

type openIncident struct {
	e        event.Event
	resolved time.Time
}

// New returns the organisation.
func New(opts Options) *Org {
	o := &Org{opts: opts, rng: rand.New(rand.NewPCG(opts.Seed, opts.Seed^0x9e3779b97f4a7c15))}
	total := 0.0
	for i := range opts.Repos {
		o.repos = append(o.repos, &repo{name: fmt.Sprintf("org/svc-%04d", i), head: event.ZeroSHA})
		// A long tail: weight 1/(rank+10) (Zipf-like, but the busiest repo
		// takes ~1% of the work, not half).
		total += 1 / float64(i+10)
		o.cumulative = append(o.cumulative, total)
	}
	for i := range o.cumulative {
		o.cumulative[i] /= total
	}
	return o
}

// Repo is the name of the i-th repository.
func (o *Org) Repo(i int) string { return o.repos[i].name }

func (o *Org) pick() *repo {
	i, _ := slices.BinarySearch(o.cumulative, o.rng.Float64())
	return o.repos[min(i, len(o.repos)-1)]
}

func (o *Org) sha() string {
	return fmt.Sprintf("%016x%016x%08x", o.rng.Uint64(), o.rng.Uint64(), o.rng.Uint32())
}

func (o *Org) id(kind string) string {
	o.seq++
	return fmt.Sprintf("sim:%s:%d", kind, o.seq)
}

// Day draws the next day's events, in time order.
func (o *Org) Day() []event.Event {
	start := o.opts.Start.Add(time.Duration(o.day) * 24 * time.Hour)
	o.day++
	var out []event.Event
	at := func() time.Time {
		return start.Add(time.Duration(o.rng.Int64N(int64(24 * time.Hour))).Truncate(time.Second))
	}
	for range o.opts.PushesPerDay {
		out = append(out, o.push(o.pick(), at())...)
	}
	// Production deployments go to repositories whose main moved; a few
	// roll back, a few attempts fail, a few go to staging first.
	for range o.opts.DeploymentsPerDay {
		r := o.pick()
		t := at()
		sha := r.head
		if event.IsZeroSHA(sha) {
			continue
		}
		if len(r.deployed) > 1 && o.rng.IntN(50) == 0 {
			sha = r.deployed[len(r.deployed)-2] // a rollback
		}
		if o.rng.IntN(5) == 0 {
			out = append(out, o.deployment(r, sha, "staging", event.StatusSuccess, t.Add(-10*time.Minute)))
		}
		if o.rng.IntN(20) == 0 {
			out = append(out, o.deployment(r, sha, "production", event.StatusFailure, t.Add(-5*time.Minute)))
		}
		out = append(out, o.deployment(r, sha, "production", event.StatusSuccess, t))
		r.deployed = append(r.deployed, sha)
		if len(r.deployed) > 8 {
			r.deployed = r.deployed[1:]
		}
	}
	for range o.opts.IncidentsPerDay {
		out = append(out, o.incident(o.pick(), at()))
	}
	end := start.Add(24 * time.Hour)
	o.open = slices.DeleteFunc(o.open, func(i openIncident) bool {
		if i.resolved.Before(end) {
			out = append(out, resolvedSnapshot(i))
			return true
		}
		return false
	})
	slices.SortStableFunc(out, func(a, b event.Event) int { return a.OccurredAt.Compare(b.OccurredAt) })
	return out
}

// Days draws n days, one at a time.
func (o *Org) Days(n int) iter.Seq[[]event.Event] {
	return func(yield func([]event.Event) bool) {
		for range n {
			if !yield(o.Day()) {
				return
			}
		}
	}
}

// push is a push to a feature branch (most), a pull request merged into
// main (squash, merge commit or rebase), or a direct push to main.
func (o *Org) push(r *repo, t time.Time) []event.Event {
	switch k := o.rng.IntN(100); {
	case k < 65 || len(r.branches) == 0:
		return o.branchPush(r, t)
	case k < 95:
		return o.mergePR(r, t)
	default:
		return []event.Event{o.mainPush(r, t, o.commits(t, 1+o.rng.IntN(3)))}
	}
}

func (o *Org) commits(t time.Time, n int) []event.Commit {
	out := make([]event.Commit, n)
	for i := range out {
		out[i] = event.Commit{SHA: o.sha(), Time: t.Add(-time.Duration(n-i) * time.Duration(1+o.rng.IntN(90)) * time.Minute)}
	}
	return out
}

func (o *Org) branchPush(r *repo, t time.Time) []event.Event {
	var b *branch
	if len(r.branches) > 0 && o.rng.IntN(3) > 0 {
		b = &r.branches[o.rng.IntN(len(r.branches))]
	} else {
		r.branches = append(r.branches, branch{name: fmt.Sprintf("refs/heads/feature-%d", o.seq), tip: r.head})
		b = &r.branches[len(r.branches)-1]
	}
	cs := o.commits(t, 1+o.rng.IntN(5))
	e := event.Event{ID: o.id("push"), Source: "sim", Type: event.TypePush, Repo: r.name, OccurredAt: t,
		Push: &event.Push{Ref: b.name, Before: b.tip, After: cs[len(cs)-1].SHA, Commits: cs}}
	b.tip = e.Push.After
	b.commits = append(b.commits, cs...)
	return []event.Event{e}
}

func (o *Org) mainPush(r *repo, t time.Time, cs []event.Commit) event.Event {
	e := event.Event{ID: o.id("push"), Source: "sim", Type: event.TypePush, Repo: r.name, OccurredAt: t,
		Push: &event.Push{Ref: "refs/heads/main", Before: r.head, After: cs[len(cs)-1].SHA, Commits: cs}}
	r.head, r.pending = e.Push.After, true
	return e
}

func (o *Org) mergePR(r *repo, t time.Time) []event.Event {
	i := o.rng.IntN(len(r.branches))
	b := r.branches[i]
	r.branches = slices.Delete(r.branches, i, i+1)
	var landed []event.Commit
	switch k := o.rng.IntN(10); {
	case k < 5: // squash
		landed = []event.Commit{{SHA: o.sha(), Time: t}}
	case k < 9: // merge commit: the branch's commits, then the merge
		landed = append(slices.Clone(b.commits), event.Commit{SHA: o.sha(), Time: t})
	default: // rebase: copies keep the author times
		for _, c := range b.commits {
			landed = append(landed, event.Commit{SHA: o.sha(), Time: c.Time})
		}
	}
	push := o.mainPush(r, t, landed)
	m := event.Event{ID: o.id("merge"), Source: "sim", Type: event.TypeMerge, Repo: r.name, OccurredAt: t,
		Merge: &event.Merge{Number: o.seq, MergeSHA: push.Push.After, HeadSHA: b.tip, Commits: len(b.commits), Target: "main"}}
	return []event.Event{push, m}
}

func (o *Org) deployment(r *repo, sha, env, status string, t time.Time) event.Event {
	id := o.id("deployment")
	return event.Event{ID: id + ":" + status, Source: "sim", Type: event.TypeDeployment, Repo: r.name, Service: r.name,
		OccurredAt: t, Deployment: &event.Deployment{ID: id, SHA: sha, Environment: env, Status: status}}
}

func (o *Org) incident(r *repo, t time.Time) event.Event {
	id := o.id("incident")
	e := event.Event{ID: id + ":opened", Source: "sim", Type: event.TypeIncident, Service: r.name, OccurredAt: t,
		Incident: &event.Incident{ID: id, OpenedAt: t}}
	o.open = append(o.open, openIncident{e: e, resolved: t.Add(time.Duration(10+o.rng.IntN(48*60)) * time.Minute)})
	return e
}

func resolvedSnapshot(i openIncident) event.Event {
	e := i.e
	inc := *e.Incident
	inc.ResolvedAt = &i.resolved
	e.ID = inc.ID + ":resolved"
	e.OccurredAt = i.resolved
	e.Incident = &inc
	return e
}
