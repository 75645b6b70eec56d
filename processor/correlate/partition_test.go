package correlate

import (
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"pgregory.net/rapid"

	"github.com/doraflow/doraflow/pkg/event"
)

// multiRepoHistory is several repositories' histories together; incidents
// name a repository, a service of the same team, or another service, so
// attribution crosses repositories (and partitions).
func multiRepoHistory(t *rapid.T) []event.Event {
	var all []event.Event
	for r := range rapid.IntRange(1, 4).Draw(t, "repos") {
		name := fmt.Sprintf("acme/r%d", r)
		for _, e := range history(t) {
			e.ID = name + ":" + e.ID
			if e.Repo != "" {
				e.Repo = name
			}
			if e.Service == repo {
				e.Service = name
			}
			if e.Incident != nil {
				inc := *e.Incident
				inc.ID = name + ":" + inc.ID
				e.Incident = &inc
			}
			all = append(all, e)
		}
	}
	return all
}

// Split into repository stages by partition and one attribution stage, the
// records between them delivered late, in batches, whatever the timing
// between the stages, the stages settle on exactly the facts one state
// holds: attribution is a function of the events alone.
func TestPartitionedStagesAgreeWithOne(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		events := multiRepoHistory(t)
		partitions := rapid.IntRange(1, 4).Draw(t, "partitions")
		one := New(testConfig())
		for _, e := range events {
			one.Apply(e)
		}
		one.Flush()

		repos := make([]*Repos, partitions)
		for p := range repos {
			cfg := testConfig()
			cfg.OwnsRepo = func(repo string) bool { return event.Partition("repo:"+repo, partitions) == p }
			repos[p] = NewRepos(cfg)
		}
		attribution := NewAttribution(testConfig())
		partitionOf := func(repo string) int { return event.Partition("repo:"+repo, partitions) }
		var links []any // records in flight between the stages
		var union Facts
		write := func(f Facts) {
			union.Deployments = append(union.Deployments, f.Deployments...)
			union.Changes = append(union.Changes, f.Changes...)
			union.Incidents = append(union.Incidents, f.Incidents...)
		}
		step := func() {
			switch rapid.IntRange(0, 2).Draw(t, "step") {
			case 0: // a repository stage flushes
				o := repos[rapid.IntRange(0, partitions-1).Draw(t, "stage")].Flush()
				write(o.Facts)
				for _, d := range o.Deployments {
					links = append(links, d)
				}
				for _, s := range o.Ships {
					links = append(links, s)
				}
			case 1: // attribution flushes
				rows, blames := attribution.Flush()
				write(Facts{Incidents: rows})
				for _, b := range blames {
					links = append(links, b)
				}
			default: // some records arrive
				n := rapid.IntRange(0, len(links)).Draw(t, "arrive")
				for _, l := range links[:n] {
					switch l := l.(type) {
					case ProductionDeployment:
						attribution.ApplyDeployment(l)
					case Ship:
						attribution.ApplyShip(l)
					case BlamedIncident: // to every stage
						for _, r := range repos {
							r.ApplyBlame(l)
						}
					}
				}
				links = links[n:]
			}
		}
		for _, e := range rapid.Permutation(events).Draw(t, "arrival") {
			if e.Type == event.TypeIncident {
				attribution.Apply(e)
				for _, r := range repos {
					r.Apply(e)
				}
			} else {
				repos[partitionOf(e.Repo)].Apply(e)
			}
			for range rapid.IntRange(0, 2).Draw(t, "steps") {
				step()
			}
		}
		// Then everything settles.
		for round := 0; ; round++ {
			if round > 20 {
				t.Fatal("the stages did not settle")
			}
			before, delivered := union.Len(), len(links)
			for _, r := range repos {
				o := r.Flush()
				write(o.Facts)
				for _, d := range o.Deployments {
					attribution.ApplyDeployment(d)
				}
				for _, s := range o.Ships {
					attribution.ApplyShip(s)
				}
			}
			for _, l := range links {
				switch l := l.(type) {
				case ProductionDeployment:
					attribution.ApplyDeployment(l)
				case Ship:
					attribution.ApplyShip(l)
				case BlamedIncident:
					for _, r := range repos {
						r.ApplyBlame(l)
					}
				}
			}
			links = nil
			rows, blames := attribution.Flush()
			write(Facts{Incidents: rows})
			for _, b := range blames {
				for _, r := range repos {
					r.ApplyBlame(b)
				}
			}
			if union.Len() == before && delivered == 0 && len(blames) == 0 {
				break
			}
		}
		var current Facts
		for _, r := range repos {
			c := r.Current()
			current.Deployments = append(current.Deployments, c.Deployments...)
			current.Changes = append(current.Changes, c.Changes...)
		}
		current.Incidents = attribution.Current()
		want := summaryWithRepo(one.Current())
		if got := summaryWithRepo(current); !reflect.DeepEqual(got, want) {
			t.Fatalf("partitioned facts differ:\n one:   %q\n split: %q", want, got)
		}
		// What the stages wrote, kept as the store keeps it, is the same.
		stored, held := store{}, store{}
		stored.write(union)
		held.write(one.Current())
		if !reflect.DeepEqual(stored.live(), held.live()) {
			t.Fatalf("the store would hold other facts:\n%v\n%v", stored.live(), held.live())
		}
	})
}

// summaryWithRepo prints every field, times dereferenced.
func summaryWithRepo(f Facts) []string {
	ts := func(t *time.Time) string {
		if t == nil {
			return "-"
		}
		return t.UTC().String()
	}
	var out []string
	for _, r := range f.Deployments {
		d := r.Fact
		rec := ts(d.RecoveredAt)
		d.RecoveredAt = nil
		out = append(out, fmt.Sprintf("%v %+v recovered=%s", r.Live, d, rec))
	}
	for _, r := range f.Changes {
		out = append(out, fmt.Sprintf("%v %+v", r.Live, r.Fact))
	}
	for _, r := range f.Incidents {
		i := r.Fact
		res := ts(i.ResolvedAt)
		i.ResolvedAt = nil
		out = append(out, fmt.Sprintf("%v %+v resolved=%s", r.Live, i, res))
	}
	slices.SortFunc(out, strings.Compare)
	return out
}

// Compacting the state keeps every fact newer than the retention exactly as
// without compaction, writes nothing for them, and survives a snapshot.
func TestRetentionKeepsRecentFacts(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		events := staggered(multiRepoHistory(t), 120*time.Hour)
		if len(events) == 0 {
			return
		}
		last := slices.MaxFunc(events, func(a, b event.Event) int { return a.OccurredAt.Compare(b.OccurredAt) }).OccurredAt
		// The margin covers the look-back (72h) and incidents (open at most 30h).
		r := Retention{Keep: time.Duration(rapid.IntRange(1, 150).Draw(t, "keep")) * time.Hour, Margin: 110 * time.Hour}
		now := last.Add(time.Duration(rapid.IntRange(0, 10).Draw(t, "after")) * time.Hour)
		frozen := now.Add(-r.Keep)

		cfg := testConfig()
		cfg.Retention = r
		whole := New(testConfig())
		compacted := New(cfg)
		for _, e := range events {
			whole.Apply(e)
			compacted.Apply(e)
		}
		whole.Flush()
		compacted.Flush()
		compacted.Compact(now)
		if rows := compacted.Flush(); rows.Len() != 0 {
			t.Fatalf("compaction changed %d rows: %q", rows.Len(), summaryWithRepo(rows))
		}
		want := summaryWithRepo(recentFacts(whole.Current(), frozen))
		if got := summaryWithRepo(compacted.Current()); !reflect.DeepEqual(got, want) {
			t.Fatalf("facts after compaction differ:\n whole:     %q\n compacted: %q", want, got)
		}
		restored := snapshotRoundTrip(t, cfg, compacted)
		if rows := restored.Flush(); rows.Len() != 0 {
			t.Fatalf("restoring the compacted snapshot changed %d rows: %q", rows.Len(), summaryWithRepo(rows))
		}
	})
}

func recentFacts(f Facts, frozen time.Time) Facts {
	var out Facts
	for _, r := range f.Deployments {
		if !r.Fact.FinishedAt.Before(frozen) {
			out.Deployments = append(out.Deployments, r)
		}
	}
	for _, r := range f.Changes {
		if !r.Fact.DeployedAt.Before(frozen) {
			out.Changes = append(out.Changes, r)
		}
	}
	for _, r := range f.Incidents {
		if !r.Fact.OpenedAt.Before(frozen) {
			out.Incidents = append(out.Incidents, r)
		}
	}
	return out
}

// staggered shifts the n-th repository's history (ids start "acme/r<n>:")
// by n steps, so that histories follow each other in time.
func staggered(events []event.Event, step time.Duration) []event.Event {
	out := make([]event.Event, 0, len(events))
	for _, e := range events {
		var n int
		if _, err := fmt.Sscanf(e.ID, "acme/r%d:", &n); err != nil {
			panic(err) // the generator names every event so
		}
		out = append(out, shifted(e, time.Duration(n)*step))
	}
	return out
}

func shifted(e event.Event, d time.Duration) event.Event {
	e.OccurredAt = e.OccurredAt.Add(d)
	if e.Push != nil {
		p := *e.Push
		p.Commits = slices.Clone(p.Commits)
		for i := range p.Commits {
			p.Commits[i].Time = p.Commits[i].Time.Add(d)
		}
		e.Push = &p
	}
	if e.Incident != nil {
		inc := *e.Incident
		inc.OpenedAt = inc.OpenedAt.Add(d)
		if inc.ResolvedAt != nil {
			r := inc.ResolvedAt.Add(d)
			inc.ResolvedAt = &r
		}
		e.Incident = &inc
	}
	return e
}

// A commit never deployed is forgotten once it is Keep older than the
// deployments retention drops, and not before; one that arrives after a
// compaction, older than every commit held, is forgotten at the next.
func TestAbandonedCommitsLeaveTheState(t *testing.T) {
	cfg := testConfig()
	cfg.Retention = Retention{Keep: 100 * time.Hour, Margin: 10 * time.Hour}
	s := New(cfg)
	held := func() []string { return sortedKeys(s.Repos.repos[repo].commits) }
	s.Apply(branchPush("0000000000000000000000000000000000000000", "old", c("old", 0)))
	s.Apply(branchPush("old", "new", c("new", 200)))
	s.Flush()
	// Abandoned: older than now - Keep - Margin - Keep (now - 210 hours).
	for _, tc := range []struct {
		now  int
		late *event.Event
		want []string
	}{
		{now: 200, want: []string{"new", "old"}},
		{now: 215, want: []string{"new"}},
		{now: 220, late: ptr(branchPush("0000000000000000000000000000000000000000", "older", c("older", 5))), want: []string{"new"}},
		{now: 400, want: []string{"new"}},
		{now: 420, want: nil},
	} {
		if tc.late != nil {
			s.Apply(*tc.late)
			s.Flush()
		}
		s.Compact(h(tc.now))
		if got := held(); !slices.Equal(got, tc.want) {
			t.Errorf("at hour %d: commits held %q, want %q", tc.now, got, tc.want)
		}
	}
}

func ptr[T any](v T) *T { return &v }
