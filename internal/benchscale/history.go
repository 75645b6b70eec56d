// Package benchscale generates the fact history of a synthetic organisation
// straight into fact rows, for the query benchmarks and the tests that check
// the queries' exactness at scale. It makes the rows the processor makes —
// facts rewritten at higher versions as deployments fail and recover,
// facts whose time moves (retracted at the old time), facts retracted, rows
// written again unchanged — and the per-day rollups consistent with them,
// through correlate.RepoDays as the processor keeps them. It does not run
// the correlation: the benchmark measures the queries, not the processor.
package benchscale

import (
	"encoding/hex"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/doraflow/doraflow/processor/correlate"
)

// Size is the shape of a history.
type Size struct {
	Teams, ReposPerTeam int
	Days                int
	// DeploymentsPerDay are deployment attempts over all repositories, a
	// tenth of them to staging.
	DeploymentsPerDay int
	// ChangesPerDeployment is the mean number of changes a production
	// deployment ships.
	ChangesPerDeployment int
	// BatchesPerDay is how many processor flushes a day's facts arrive in:
	// a repo-day's rollup row is written again in each one that touches it.
	BatchesPerDay int
	// Churn scales how often facts are rewritten, moved or retracted (1 is
	// the processor's usual rate, see Generate).
	Churn float64
}

// Organisation is the benchmark's size: 500 teams, three years, ~10 M
// changes, ~1 M deployments, ~100 k incidents.
var Organisation = Size{Teams: 500, ReposPerTeam: 4, Days: 3 * 365, DeploymentsPerDay: 913,
	ChangesPerDeployment: 11, BatchesPerDay: 4, Churn: 1}

// End is when every generated history ends: the last day is whole, and a
// report "now" falls inside it.
var End = time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)

// Batch is the rows of one processor flush, at its version.
type Batch struct {
	Facts   correlate.Facts
	Version uint64
}

// Repo names the i-th repository; every ReposPerTeam-th from the first
// belongs to no team (to measure "unassigned" too).
func Repo(i int) string { return fmt.Sprintf("org-%03d/repo-%04d", i%1000, i) }

// Team names the i-th team.
func Team(i int) string { return fmt.Sprintf("team-%03d", i) }

func service(i int) string { return fmt.Sprintf("svc-%04d", i) }

// Mapping is the team mapping of the history as the teams table holds it
// ("repo:…" and "service:…" → team). One repository in a hundred is left
// out: its facts belong to "unassigned".
func (s Size) Mapping() map[string]string {
	out := map[string]string{}
	for i := range s.Teams * s.ReposPerTeam {
		if i%100 == 99 {
			continue
		}
		t := Team(i / s.ReposPerTeam)
		out["repo:"+Repo(i)] = t
		out["service:"+service(i)] = t
	}
	return out
}

// deployment is a production deployment whose facts can still change.
type deployment struct {
	repo    int
	fact    correlate.DeploymentFact
	changes []change
}

// change is a change fact as last handed out; live false once retracted.
type change struct {
	fact correlate.ChangeFact
	live bool
}

// generator emits the rows of each batch, keeping the rollups in step.
type generator struct {
	rng     *rand.Rand
	size    Size
	batch   correlate.Facts
	days    []correlate.RepoDays // by repository index
	touched map[int]bool
	// later holds what happens in a future batch, by batch number.
	later map[int][]func()
	sha   [24]byte // 20 bytes of a sha, filled 8 at a time
	// rowAt: where in the batch each fact key's row is. A flush hands out
	// a fact's final state once: a key handed out again in the same batch
	// replaces its row (two rows of a key at one version would leave the
	// store to pick either).
	rowAt map[string]int
	next  int // deployment and incident ids
}

// Generate produces the history batch by batch, in version order, calling
// emit with each. The same size and seed give the same rows.
//
// Per production deployment: 9 % fail through an incident opened within 6 h
// (the deployment is rewritten failed, then rewritten again recovered when
// the incident resolves, within 2 days); 4 % are rework; 0.5 % move (a later
// status: retracted at the old time with its changes, live at the new one);
// 0.2 % are retracted with their changes. Per change: 1 % move to an earlier
// deployment time (a late push showed an earlier deployment shipped it),
// 0.5 % are retracted, 2 % are written again unchanged. A further ~17
// unattributed incidents a day come from services. Churn multiplies these
// rates.
func Generate(size Size, seed uint64, emit func(Batch) error) error {
	g := &generator{rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), size: size,
		days: make([]correlate.RepoDays, size.Teams*size.ReposPerTeam), touched: map[int]bool{}, later: map[int][]func(){},
		rowAt: map[string]int{}}
	start := End.AddDate(0, 0, -size.Days)
	slot := 24 * time.Hour / time.Duration(size.BatchesPerDay)
	version := uint64(0)
	for b := range size.Days * size.BatchesPerDay {
		from := start.Add(time.Duration(b) * slot)
		for _, f := range g.later[b] {
			f()
		}
		delete(g.later, b)
		g.deployments(b, from, slot)
		g.serviceIncidents(b, from, slot)
		version++
		if err := emit(g.flush(version)); err != nil {
			return err
		}
		if b%size.BatchesPerDay == size.BatchesPerDay-1 {
			// Rewrites reach at most 4 days back (a change moved 2 days
			// earlier, 2 days late): older days are final.
			for i := range g.days {
				g.days[i].Drop(from.Add(-7 * 24 * time.Hour))
			}
		}
	}
	return nil
}

func (g *generator) chance(p float64) bool { return g.rng.Float64() < p*g.size.Churn }

func (g *generator) at(from time.Time, span time.Duration) time.Time {
	return from.Add(time.Duration(g.rng.Int64N(int64(span/time.Second))) * time.Second)
}

// schedule runs f in the batch that covers t (at the earliest the next one).
func (g *generator) schedule(b int, start, t time.Time, slot time.Duration, f func()) {
	nb := max(int(t.Sub(start)/slot), b+1)
	g.later[nb] = append(g.later[nb], f)
}

func (g *generator) newSHA() string {
	for i := 0; i < len(g.sha); i += 8 {
		v := g.rng.Uint64()
		for k := 0; k < 8; k++ {
			g.sha[i+k] = byte(v >> (8 * k))
		}
	}
	return hex.EncodeToString(g.sha[:20])
}

// leadTime draws a lead time: log-normal around a day, from minutes to
// months; one in a hundred commits has a clock ahead of the deployment.
func (g *generator) leadTime() time.Duration {
	if g.rng.IntN(100) == 0 {
		return -time.Duration(g.rng.IntN(600)) * time.Second
	}
	return time.Duration(math.Exp(math.Log(86400)+1.5*g.rng.NormFloat64())) * time.Second
}

func (g *generator) deployments(b int, from time.Time, slot time.Duration) {
	start := End.AddDate(0, 0, -g.size.Days)
	repos := g.size.Teams * g.size.ReposPerTeam
	n := g.size.DeploymentsPerDay / g.size.BatchesPerDay
	if g.rng.IntN(g.size.BatchesPerDay) < g.size.DeploymentsPerDay%g.size.BatchesPerDay {
		n++
	}
	for range n {
		g.next++
		repo := g.rng.IntN(repos)
		f := correlate.DeploymentFact{Repo: Repo(repo), ID: fmt.Sprintf("d%08d", g.next), Service: service(repo),
			Environment: "production", SHA: g.newSHA(), Status: "success", FinishedAt: g.at(from, slot)}
		if g.rng.IntN(10) == 0 {
			f.Environment = "staging"
			g.deployment(repo, nil, &f)
			continue
		}
		f.Production = true
		f.Rework = g.chance(0.04)
		d := &deployment{repo: repo, fact: f}
		for range 1 + g.rng.IntN(2*g.size.ChangesPerDeployment-1) {
			d.changes = append(d.changes, change{fact: correlate.ChangeFact{Repo: f.Repo, SHA: g.newSHA(), DeploymentID: f.ID,
				CommittedAt: f.FinishedAt.Add(-g.leadTime()), DeployedAt: f.FinishedAt}, live: true})
		}
		d.fact.Changes = len(d.changes)
		g.deployment(repo, nil, &d.fact)
		for i := range d.changes {
			c := &d.changes[i]
			g.change(repo, nil, &c.fact)
			// Scheduled changes act on c as it is then: the deployment may
			// have moved or been retracted in between.
			switch {
			case g.chance(0.01):
				back := time.Duration(3600+g.rng.IntN(2*86400)) * time.Second
				g.schedule(b, start, g.at(from, 2*24*time.Hour), slot, func() {
					if c.live {
						old := c.fact
						c.fact.DeployedAt, c.fact.DeploymentID = old.DeployedAt.Add(-back), old.DeploymentID+"-earlier"
						g.change(repo, &old, &c.fact)
					}
				})
			case g.chance(0.005):
				g.schedule(b, start, g.at(from, 2*24*time.Hour), slot, func() {
					if c.live {
						c.live = false
						g.change(repo, &c.fact, nil)
					}
				})
			case g.chance(0.02):
				g.schedule(b, start, g.at(from, 24*time.Hour), slot, func() {
					if c.live {
						g.change(repo, &c.fact, &c.fact)
					}
				})
			}
		}
		switch {
		case g.chance(0.09):
			g.fail(b, start, slot, d)
		case g.chance(0.005):
			g.schedule(b, start, g.at(from, 6*time.Hour), slot, func() { g.move(d) })
		case g.chance(0.002):
			g.schedule(b, start, g.at(from, 6*time.Hour), slot, func() { g.retract(d) })
		}
	}
}

// fail opens an incident on d within 6 h and resolves it within 2 days.
func (g *generator) fail(b int, start time.Time, slot time.Duration, d *deployment) {
	g.next++
	inc := correlate.IncidentFact{ID: fmt.Sprintf("i%08d", g.next), Source: "pagerduty", Service: d.fact.Service,
		OpenedAt: g.at(d.fact.FinishedAt, 6*time.Hour), DeploymentRepo: d.fact.Repo, DeploymentID: d.fact.ID,
		Attribution: "service"}
	if g.rng.IntN(10) == 0 { // raised as a Git host issue
		inc.Repo, inc.Source = d.fact.Repo, "github"
	}
	resolved := g.at(inc.OpenedAt.Add(10*time.Minute), 2*24*time.Hour)
	g.schedule(b, start, inc.OpenedAt, slot, func() {
		g.incident(inc)
		old := d.fact
		d.fact.Failed, d.fact.Incidents = true, 1
		g.deployment(d.repo, &old, &d.fact)
	})
	g.schedule(b, start, resolved, slot, func() {
		inc.ResolvedAt = &resolved
		g.incident(inc)
		old := d.fact
		d.fact.RecoveredAt = &resolved
		g.deployment(d.repo, &old, &d.fact)
	})
}

// move: a later status moves d's time, and its changes' with it.
func (g *generator) move(d *deployment) {
	old := d.fact
	d.fact.FinishedAt = old.FinishedAt.Add(time.Duration(60+g.rng.IntN(3*3600)) * time.Second)
	g.deployment(d.repo, &old, &d.fact)
	for i := range d.changes {
		c := &d.changes[i]
		if !c.live || c.fact.DeploymentID != d.fact.ID {
			continue // retracted, or moved to an earlier deployment
		}
		was := c.fact
		c.fact.DeployedAt = d.fact.FinishedAt
		g.change(d.repo, &was, &c.fact)
	}
}

// retract: d turns out not to be a production deployment.
func (g *generator) retract(d *deployment) {
	g.deployment(d.repo, &d.fact, nil)
	for i := range d.changes {
		if c := &d.changes[i]; c.live && c.fact.DeploymentID == d.fact.ID {
			c.live = false
			g.change(d.repo, &c.fact, nil)
		}
	}
}

// serviceIncidents are incidents no deployment is blamed for.
func (g *generator) serviceIncidents(b int, from time.Time, slot time.Duration) {
	start := End.AddDate(0, 0, -g.size.Days)
	if g.rng.IntN(100*g.size.BatchesPerDay) >= 1700*g.size.Teams/500 {
		return
	}
	g.next++
	repo := g.rng.IntN(g.size.Teams * g.size.ReposPerTeam)
	inc := correlate.IncidentFact{ID: fmt.Sprintf("i%08d", g.next), Source: "opsgenie", Service: service(repo),
		OpenedAt: g.at(from, slot), Attribution: "none"}
	g.incident(inc)
	if g.rng.IntN(20) == 0 {
		return // still open
	}
	resolved := g.at(inc.OpenedAt.Add(5*time.Minute), 12*time.Hour)
	g.schedule(b, start, resolved, slot, func() {
		inc.ResolvedAt = &resolved
		g.incident(inc)
	})
}

// deployment hands out cur replacing old (either may be nil) as the
// repository stage does: a tombstone where old's time is no longer live,
// and the rollup counts the stored live rows.
func (g *generator) deployment(repo int, old, cur *correlate.DeploymentFact) {
	days := &g.days[repo]
	g.touched[repo] = true
	put := func(r correlate.Row[correlate.DeploymentFact]) {
		g.batch.Deployments = putRow(g.batch.Deployments, g.rowAt, "d"+r.Fact.Key().String()+r.Fact.FinishedAt.String(), r)
	}
	if old != nil {
		days.Add(*old, -1)
		if cur == nil || !old.FinishedAt.Equal(cur.FinishedAt) {
			put(correlate.Row[correlate.DeploymentFact]{Fact: *old})
		}
	}
	if cur != nil {
		days.Add(*cur, 1)
		put(correlate.Row[correlate.DeploymentFact]{Fact: *cur, Live: true})
	}
}

// change is deployment for a change fact.
func (g *generator) change(repo int, old, cur *correlate.ChangeFact) {
	days := &g.days[repo]
	g.touched[repo] = true
	put := func(r correlate.Row[correlate.ChangeFact]) {
		g.batch.Changes = putRow(g.batch.Changes, g.rowAt, "c"+r.Fact.Key().String()+r.Fact.DeployedAt.String(), r)
	}
	if old != nil {
		days.AddChange(*old, -1)
		if cur == nil || !old.DeployedAt.Equal(cur.DeployedAt) {
			put(correlate.Row[correlate.ChangeFact]{Fact: *old})
		}
	}
	if cur != nil {
		days.AddChange(*cur, 1)
		put(correlate.Row[correlate.ChangeFact]{Fact: *cur, Live: true})
	}
}

// incident hands out an incident fact: a new version at the same key
// (incidents here keep their opening time).
func (g *generator) incident(f correlate.IncidentFact) {
	g.batch.Incidents = putRow(g.batch.Incidents, g.rowAt, "i"+f.ID, correlate.Row[correlate.IncidentFact]{Fact: f, Live: true})
}

// putRow appends r to rows, or replaces the row of the same key.
func putRow[F any](rows []correlate.Row[F], at map[string]int, key string, r correlate.Row[F]) []correlate.Row[F] {
	if i, ok := at[key]; ok {
		rows[i] = r
		return rows
	}
	at[key] = len(rows)
	return append(rows, r)
}

func (g *generator) flush(version uint64) Batch {
	touched := make([]int, 0, len(g.touched))
	for i := range g.touched {
		touched = append(touched, i)
	}
	slices.Sort(touched)
	for _, i := range touched {
		g.batch.Days = append(g.batch.Days, g.days[i].Flush(Repo(i))...)
	}
	clear(g.touched)
	clear(g.rowAt)
	out := Batch{Facts: g.batch, Version: version}
	g.batch = correlate.Facts{}
	return out
}

// Rows is the number of rows a batch writes.
func (b Batch) Rows() int { return b.Facts.Len() + len(b.Facts.Days) }

// Chunks is Generate with the batches handed on in chunks of at least rows
// rows (the last one smaller): ClickHouse wants large inserts, and a
// chunk keeps each row at its own batch's version.
func Chunks(size Size, seed uint64, rows int, emit func([]Batch) error) error {
	var chunk []Batch
	n := 0
	err := Generate(size, seed, func(b Batch) error {
		chunk = append(chunk, b)
		if n += b.Rows(); n < rows {
			return nil
		}
		err := emit(chunk)
		chunk, n = nil, 0
		return err
	})
	if err != nil || len(chunk) == 0 {
		return err
	}
	return emit(chunk)
}
