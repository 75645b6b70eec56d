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
