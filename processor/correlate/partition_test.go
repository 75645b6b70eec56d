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

// Split by partition — each state folds its partition's events and every
// incident, writes incident facts only for its partitions, and learns the
// others' production deployments — the states together hold exactly the
// facts one state holds.
func TestPartitionedStatesAgreeWithOne(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		events := multiRepoHistory(t)
		partitions := rapid.IntRange(1, 4).Draw(t, "partitions")
		one := New(testConfig())
		for _, e := range events {
			one.Apply(e)
		}
		one.Flush()

		states := make([]*State, partitions)
		for p := range states {
			cfg := testConfig()
			cfg.OwnsIncident = func(key string) bool { return event.Partition(key, partitions) == p }
			states[p] = New(cfg)
		}
		for _, e := range events {
			for p, s := range states {
				if e.Type == event.TypeIncident || event.Partition(e.Key(), partitions) == p {
					s.Apply(e)
				}
			}
		}
		// Exchange production deployments until nothing changes, as the
		// processors do through the bus.
		for round := 0; ; round++ {
			if round > 10 {
				t.Fatal("partitions did not settle")
			}
			changed := false
			for _, s := range states {
				if s.Flush().Len() > 0 {
					changed = true
				}
			}
			for p, s := range states {
				var foreign []ProductionDeployment
				for q, o := range states {
					if q != p {
						foreign = append(foreign, o.ProductionDeployments()...)
					}
				}
				if s.SetForeign(foreign) {
					changed = true
				}
			}
			if !changed {
				break
			}
		}
		var union Facts
		for _, s := range states {
			c := s.Current()
			union.Deployments = append(union.Deployments, c.Deployments...)
			union.Changes = append(union.Changes, c.Changes...)
			union.Incidents = append(union.Incidents, c.Incidents...)
		}
		want, got := summaryWithRepo(one.Current()), summaryWithRepo(union)
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("partitioned facts differ:\n one:   %q\n split: %q", want, got)
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
		out = append(out, fmt.Sprintf("%+v recovered=%s", d, rec))
	}
	for _, r := range f.Changes {
		out = append(out, fmt.Sprintf("%+v", r.Fact))
	}
	for _, r := range f.Incidents {
		i := r.Fact
		res := ts(i.ResolvedAt)
		i.ResolvedAt = nil
		out = append(out, fmt.Sprintf("%+v resolved=%s", i, res))
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
		r := Retention{Keep: time.Duration(rapid.IntRange(0, 150).Draw(t, "keep")) * time.Hour, Margin: 110 * time.Hour}
		now := last.Add(time.Duration(rapid.IntRange(0, 10).Draw(t, "after")) * time.Hour)
		frozen := now.Add(-r.Keep)

		whole := New(testConfig())
		compacted := New(testConfig())
		for _, e := range events {
			whole.Apply(e)
			compacted.Apply(e)
		}
		whole.Flush()
		compacted.Flush()
		compacted.Compact(now, r)
		if rows := compacted.Flush(); rows.Len() != 0 {
			t.Fatalf("compaction changed %d rows: %q", rows.Len(), summaryWithRepo(rows))
		}
		want := summaryWithRepo(recentFacts(whole.Current(), frozen))
		if got := summaryWithRepo(compacted.Current()); !reflect.DeepEqual(got, want) {
			t.Fatalf("facts after compaction differ:\n whole:     %q\n compacted: %q", want, got)
		}
		restored := New(testConfig())
		restored.Restore(compacted.Snapshot())
		restored.Remember(whole.Current()) // the store holds frozen facts too
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
