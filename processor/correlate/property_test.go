package correlate

import (
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"testing"

	"pgregory.net/rapid"

	"github.com/doraflow/doraflow/pkg/event"
)

// history draws a random but plausible history of one repository: a main
// line of pushes (some forced), feature branches merged by squash, rebase
// or merge commit, deployments to production and staging that succeed or
// fail (some re-deploying an old sha), and incidents opened and resolved.
func history(t *rapid.T) []event.Event {
	var events []event.Event
	head := zero
	var mainline []string
	n := 0
	sha := func() string { n++; return fmt.Sprintf("s%03d", n) }
	hour := 0
	for step := rapid.IntRange(1, 40).Draw(t, "steps"); step > 0; step-- {
		hour += rapid.IntRange(0, 5).Draw(t, "gap")
		switch rapid.IntRange(0, 9).Draw(t, "kind") {
		case 0, 1, 2:
			var commits []event.Commit
			for k := rapid.IntRange(1, 3).Draw(t, "commits"); k > 0; k-- {
				commits = append(commits, c(sha(), hour-rapid.IntRange(0, 3).Draw(t, "age")))
			}
			after := commits[len(commits)-1].SHA
			events = append(events, push(head, after, head != zero && rapid.IntRange(0, 9).Draw(t, "forced") == 0, commits...))
			head = after
			for _, cm := range commits {
				mainline = append(mainline, cm.SHA)
			}
		case 3:
			f1, f2 := sha(), sha()
			events = append(events, branchPush(zero, f2, c(f1, hour-2), c(f2, hour-1)))
			m := sha()
			kind := rapid.IntRange(0, 2).Draw(t, "merge")
			switch kind {
			case 0: // squash
				events = append(events, push(head, m, false, c(m, hour)))
			case 1: // rebase
				r1 := sha()
				events = append(events, push(head, m, false, c(r1, hour), c(m, hour)))
			default: // merge commit
				events = append(events, push(head, m, false, c(f1, hour-2), c(f2, hour-1), c(m, hour)))
			}
			events = append(events, merge(m, f2, 2))
			head = m
			mainline = append(mainline, m)
		case 4, 5, 6, 7:
			target := head
			if len(mainline) > 0 && rapid.IntRange(0, 5).Draw(t, "old") == 0 {
				target = mainline[rapid.IntRange(0, len(mainline)-1).Draw(t, "which")]
			}
			if event.IsZeroSHA(target) {
				continue
			}
			env := rapid.SampledFrom([]string{"production", "production", "staging"}).Draw(t, "env")
			status := rapid.SampledFrom([]string{event.StatusSuccess, event.StatusSuccess, event.StatusFailure}).Draw(t, "status")
			events = append(events, deploy(sha(), target, env, status, hour))
		default:
			id := sha()
			service := rapid.SampledFrom([]string{repo, "api-svc", "other"}).Draw(t, "service")
			events = append(events, incident(id, service, hour, -1, hour))
			if rapid.Bool().Draw(t, "resolved") {
				r := hour + rapid.IntRange(0, 30).Draw(t, "ttr")
				events = append(events, incident(id, service, hour, r, r))
			}
		}
	}
	return events
}

// The facts do not depend on the order events arrive in, on how often each
// arrives, or on when the processor flushes.
func TestFactsIndependentOfArrival(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		events := history(t)
		if len(events) == 0 {
			return
		}
		inOrder := New(testConfig())
		for _, e := range events {
			inOrder.Apply(e)
		}
		inOrder.Flush()
		want := inOrder.Current()

		arrivals := rapid.Permutation(append(events, rapid.SliceOfN(rapid.SampledFrom(events), 0, len(events)).Draw(t, "dups")...)).Draw(t, "arrival")
		shuffled := New(testConfig())
		stored := store{}
		for _, e := range arrivals {
			shuffled.Apply(e)
			if rapid.IntRange(0, 3).Draw(t, "flush") == 0 {
				stored.write(shuffled.Flush())
			}
		}
		stored.write(shuffled.Flush())
		got := shuffled.Current()
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("facts differ\n in order: %q\n shuffled: %q", summary(want), summary(got))
		}
		approx := 0
		for _, r := range got.Deployments {
			if r.Fact.Production && r.Fact.Approximate {
				approx++
			}
		}
		if shuffled.Approximate() != approx {
			t.Fatalf("approximate count %d, facts hold %d", shuffled.Approximate(), approx)
		}
		// The rows the flushes wrote, kept as ClickHouse keeps them (the
		// latest row per key and time), hold exactly the current facts.
		current := store{}
		current.write(got)
		if !reflect.DeepEqual(stored.live(), current.live()) {
			t.Fatalf("the store would hold other facts than the state:\n%v\n%v", stored.live(), current.live())
		}
	})
}

// store models the fact tables: one row per table, natural key and time,
// the latest write winning; nil is a tombstone.
type store map[storeKey]any

type storeKey struct {
	table, key string
	at         int64
}

func (s store) write(f Facts) {
	put := func(k storeKey, live bool, fact any) {
		if live {
			s[k] = fact
		} else {
			s[k] = nil
		}
	}
	for _, r := range f.Deployments {
		put(storeKey{"deployments", r.Fact.Repo + "/" + r.Fact.ID, r.Fact.FinishedAt.Unix()}, r.Live, r.Fact)
	}
	for _, r := range f.Changes {
		put(storeKey{"changes", r.Fact.Repo + "/" + r.Fact.SHA, r.Fact.DeployedAt.Unix()}, r.Live, r.Fact)
	}
	for _, r := range f.Incidents {
		put(storeKey{"incidents", r.Fact.ID, r.Fact.OpenedAt.Unix()}, r.Live, r.Fact)
	}
}

func (s store) live() map[storeKey]any {
	out := map[storeKey]any{}
	for k, v := range s {
		if v != nil {
			out[k] = v
		}
	}
	return out
}

// A state restored from a snapshot, then fed the rest, ends where a state
// fed everything ends, and writes nothing for what the snapshot covered.
func TestSnapshotRestore(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		events := history(t)
		cut := rapid.IntRange(0, len(events)).Draw(t, "cut")
		whole := New(testConfig())
		for _, e := range events {
			whole.Apply(e)
		}
		whole.Flush()

		first := New(testConfig())
		for _, e := range events[:cut] {
			first.Apply(e)
		}
		first.Flush()
		raw, err := json.Marshal(first.Snapshot())
		if err != nil {
			t.Fatal(err)
		}
		var snap Snapshot
		if err := json.Unmarshal(raw, &snap); err != nil {
			t.Fatal(err)
		}
		restored := New(testConfig())
		restored.Restore(snap)
		restored.Remember(first.Current()) // what the store holds
		if again := restored.Flush(); again.Len() != 0 {
			t.Fatalf("restoring wrote %d rows again", again.Len())
		}
		for _, e := range events[cut:] {
			restored.Apply(e)
		}
		restored.Flush()
		if !slices.Equal(summary(restored.Current()), summary(whole.Current())) {
			t.Fatalf("restored state differs:\n%q\n%q", summary(restored.Current()), summary(whole.Current()))
		}
	})
}
