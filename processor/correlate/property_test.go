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

// history draws a random but plausible history of one repository: a main
// line of pushes (some forced), feature branches merged by squash, rebase
// or merge commit, deployments to production and staging that succeed or
// fail (some re-deploying an old sha), and incidents opened and resolved.
func history(t *rapid.T) []event.Event { return drawHistory(t, true) }

// drawHistory is history, with or without force pushes. Commit times are
// distinct (a commit's second is its number), as real ones nearly always
// are, and a rebase keeps the times of the commits it rewrites, as Git does.
func drawHistory(t *rapid.T, forced bool) []event.Event {
	var events []event.Event
	head := zero
	var mainline []string
	n := 0
	sha := func() string { n++; return fmt.Sprintf("s%03d", n) }
	commit := func(s string, hour int) event.Commit {
		return event.Commit{SHA: s, Time: h(hour).Add(time.Duration(n) * time.Second)}
	}
	hour := 0
	for step := rapid.IntRange(1, 40).Draw(t, "steps"); step > 0; step-- {
		hour += rapid.IntRange(0, 5).Draw(t, "gap")
		switch rapid.IntRange(0, 9).Draw(t, "kind") {
		case 0, 1, 2:
			var commits []event.Commit
			for k := rapid.IntRange(1, 3).Draw(t, "commits"); k > 0; k-- {
				commits = append(commits, commit(sha(), hour-rapid.IntRange(0, 3).Draw(t, "age")))
			}
			after := commits[len(commits)-1].SHA
			events = append(events, pushAt(hour, push(head, after, forced && head != zero && rapid.IntRange(0, 9).Draw(t, "forced") == 0, commits...)))
			head = after
			for _, cm := range commits {
				mainline = append(mainline, cm.SHA)
			}
		case 3:
			f1 := commit(sha(), hour-2)
			f2 := commit(sha(), hour-1)
			events = append(events, pushAt(hour-1, branchPush(zero, f2.SHA, f1, f2)))
			m := sha()
			kind := rapid.IntRange(0, 2).Draw(t, "merge")
			switch kind {
			case 0: // squash
				events = append(events, pushAt(hour, push(head, m, false, commit(m, hour))))
			case 1: // rebase: the copies keep the originals' times
				r1 := sha()
				events = append(events, pushAt(hour, push(head, m, false, event.Commit{SHA: r1, Time: f1.Time}, event.Commit{SHA: m, Time: f2.Time})))
				mainline = append(mainline, r1)
			default: // merge commit
				events = append(events, pushAt(hour, push(head, m, false, f1, f2, commit(m, hour))))
				mainline = append(mainline, f1.SHA, f2.SHA)
			}
			events = append(events, merge(m, f2.SHA, 2))
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

// pushAt dates a push when it happened.
func pushAt(hour int, e event.Event) event.Event {
	e.OccurredAt = h(hour)
	return e
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

// A compare range — the commits between two shas as a Git host's compare
// API lists them, which the gap filler (and a backfill) publishes in place
// of pushes it missed — gives the same changes as the pushes it stands for,
// alone or together with them: squash merges are not taken for rebases.
func TestCompareRangeCountsAsPushes(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		events := drawHistory(t, false)
		var mainPushes []int
		for i, e := range events {
			if e.Type == event.TypePush && e.Push.Ref == "refs/heads/main" {
				mainPushes = append(mainPushes, i)
			}
		}
		if len(mainPushes) == 0 {
			return
		}
		from := rapid.IntRange(0, len(mainPushes)-1).Draw(t, "from")
		to := rapid.IntRange(from, len(mainPushes)-1).Draw(t, "to")
		covered := mainPushes[from : to+1]
		first, last := events[covered[0]].Push, events[covered[len(covered)-1]].Push
		rng := &event.Push{Ref: "compare", Before: first.Before, After: last.After, Range: true}
		for _, i := range covered {
			rng.Commits = append(rng.Commits, events[i].Push.Commits...)
		}
		keep := rapid.Bool().Draw(t, "keep the pushes")
		var withRange []event.Event
		for i, e := range events {
			if keep || !slices.Contains(covered, i) {
				withRange = append(withRange, e)
			}
		}
		withRange = append(withRange, event.Event{ID: "compare", Source: "t", Type: event.TypePush, Repo: repo,
			OccurredAt: events[covered[len(covered)-1]].OccurredAt, Push: rng})

		want, got := New(testConfig()), New(testConfig())
		for _, e := range events {
			want.Apply(e)
		}
		want.Flush()
		for _, e := range rapid.Permutation(withRange).Draw(t, "arrival") {
			got.Apply(e)
		}
		got.Flush()
		if w, g := summary(want.Current()), summary(got.Current()); !slices.Equal(w, g) {
			t.Fatalf("the compare range gives other facts than the pushes:\n pushes: %q\n range:  %q", w, g)
		}
	})
}

// snapshot saves both stages and restores them into a fresh state, as a
// restarted processor does.
func snapshotRoundTrip(t *rapid.T, cfg Config, s *State) *State {
	meta, err := s.Repos.EncodeMeta()
	if err != nil {
		t.Fatal(err)
	}
	restored := New(cfg)
	if err := restored.Repos.DecodeMeta(meta); err != nil {
		t.Fatal(err)
	}
	for _, name := range sortedKeys(s.Repos.repos) {
		data, ok, err := s.Repos.EncodeRepo(name)
		if err != nil || !ok {
			t.Fatalf("encode %s: %v %v", name, ok, err)
		}
		if err := restored.Repos.DecodeRepo(data); err != nil {
			t.Fatal(err)
		}
	}
	// Every month holding cold history: in the store, parts saved before
	// stay; here nothing stays.
	for _, month := range s.Repos.coldMonths() {
		data, err := s.Repos.EncodeCold(month)
		if err != nil {
			t.Fatal(err)
		}
		if err := restored.Repos.DecodeCold(data); err != nil {
			t.Fatal(err)
		}
	}
	restored.Repos.Restored()
	data, err := s.Attribution.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if restored.Attribution, err = DecodeAttribution(cfg, data); err != nil {
		t.Fatal(err)
	}
	return restored
}

// A state restored from a snapshot writes nothing for what the snapshot
// covered, and, fed the rest, ends where a state fed everything ends.
func TestSnapshotRestore(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		events := multiRepoHistory(t)
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
		restored := snapshotRoundTrip(t, testConfig(), first)
		if again := restored.Flush(); again.Len() != 0 {
			t.Fatalf("restoring wrote %d rows again: %q", again.Len(), summaryWithRepo(again))
		}
		if w, g := summaryWithRepo(first.Current()), summaryWithRepo(restored.Current()); !reflect.DeepEqual(w, g) {
			t.Fatalf("restored facts differ:\n%q\n%q", w, g)
		}
		for _, e := range events[cut:] {
			restored.Apply(e)
		}
		restored.Flush()
		if w, g := summaryWithRepo(whole.Current()), summaryWithRepo(restored.Current()); !reflect.DeepEqual(w, g) {
			t.Fatalf("restored state differs:\n%q\n%q", w, g)
		}
		if restored.Approximate() != whole.Approximate() {
			t.Fatalf("approximate: restored %d, whole %d", restored.Approximate(), whole.Approximate())
		}
	})
}

// Settling — history older than the margin behind a repository's latest
// event reduced to commit ids — changes no fact as long as events arrive
// less than half the margin late, flushed at any points, restarted from
// snapshots (whose settled history is saved apart) at any points.
func TestSettlingKeepsFacts(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		events := multiRepoHistory(t)
		whole := New(testConfig())
		for _, e := range events {
			whole.Apply(e)
		}
		whole.Flush()

		const margin = 20 * time.Hour
		cfg := testConfig()
		cfg.Retention = Retention{Margin: margin}
		late := make([]time.Duration, len(events))
		for i := range late {
			late[i] = time.Duration(rapid.IntRange(0, int(margin/time.Minute)/2-1).Draw(t, "late")) * time.Minute
		}
		order := make([]int, len(events))
		for i := range order {
			order[i] = i
		}
		slices.SortStableFunc(order, func(a, b int) int {
			return events[a].OccurredAt.Add(late[a]).Compare(events[b].OccurredAt.Add(late[b]))
		})
		settling := New(cfg)
		stored := store{}
		for _, i := range order {
			settling.Apply(events[i])
			switch rapid.IntRange(0, 7).Draw(t, "flush") {
			case 0, 1:
				stored.write(settling.Flush())
			case 2: // a restart from a snapshot, hot and cold parts
				stored.write(settling.Flush())
				settling = snapshotRoundTrip(t, cfg, settling)
			}
		}
		stored.write(settling.Flush())
		current := store{}
		current.write(whole.Current())
		if !reflect.DeepEqual(stored.live(), current.live()) {
			t.Fatalf("settling changed the facts:\n%s", storeDiff(stored.live(), current.live()))
		}
	})
}

// storeFacts is what the store model holds live, as rows a Remember reads.
func (s store) facts() Facts {
	var out Facts
	for _, v := range s.live() {
		switch f := v.(type) {
		case DeploymentFact:
			out.Deployments = append(out.Deployments, Row[DeploymentFact]{Fact: f, Live: true})
		case ChangeFact:
			out.Changes = append(out.Changes, Row[ChangeFact]{Fact: f, Live: true})
		case IncidentFact:
			out.Incidents = append(out.Incidents, Row[IncidentFact]{Fact: f, Live: true})
		}
	}
	return out
}

// A worker restarted from an older snapshot — while the store holds rows
// its predecessor wrote after that snapshot, rows of its last flush cut
// short, and nothing of events it folded but never checkpointed — refolds
// some of the events again (not necessarily the ones its predecessor had),
// remembers what the store holds (of the repositories it refolded, or only
// what was written since the snapshot), and goes on: the store ends holding
// exactly the facts of all the events, the rollups included, however the
// crash fell.
func TestRestartRemembersTheStore(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		events := multiRepoHistory(t)
		whole := New(testConfig())
		for _, e := range events {
			whole.Apply(e)
		}
		whole.Flush()

		stored := store{}
		// The write that last wrote each row, and the fact it wrote.
		writtenAt, written := map[storeKey]int{}, map[storeKey]any{}
		writes := 0
		days := map[string]RepoDay{}
		write := func(f Facts) {
			writes++
			stored.write(f)
			for k, fact := range rowsOf(f) {
				writtenAt[k], written[k] = writes, fact
			}
			for _, d := range f.Days {
				days[d.Repo+d.Day.String()] = d
			}
		}
		arrival := rapid.Permutation(events).Draw(t, "arrival")
		snapAt := rapid.IntRange(0, len(arrival)).Draw(t, "snapshot")
		crashAt := rapid.IntRange(snapAt, len(arrival)).Draw(t, "crash")
		first := New(testConfig())
		var snap *State
		snapWrites := 0
		checkpoint := snapAt // events up to here had their rows written
		for i, e := range arrival {
			if i == snapAt {
				write(first.Flush())
				snap, snapWrites = snapshotRoundTrip(t, testConfig(), first), writes
			}
			if i == crashAt {
				break
			}
			first.Apply(e)
			if rapid.IntRange(0, 2).Draw(t, "flush") == 0 {
				write(first.Flush())
				checkpoint = i + 1
			}
		}
		if snap == nil {
			write(first.Flush())
			snap, snapWrites = snapshotRoundTrip(t, testConfig(), first), writes
			checkpoint = len(arrival)
		} else if crashAt > checkpoint && rapid.Bool().Draw(t, "cut short") {
			// The checkpoint comes before the write: the last flush is
			// covered by it, but only some of its rows reached the store.
			f := first.Flush()
			f.Deployments = rapid.SampledFrom([][]Row[DeploymentFact]{nil, f.Deployments[:len(f.Deployments)/2], f.Deployments}).Draw(t, "deployments written")
			f.Changes = rapid.SampledFrom([][]Row[ChangeFact]{nil, f.Changes[:len(f.Changes)/2], f.Changes}).Draw(t, "changes written")
			f.Days = nil
			write(f)
			checkpoint = crashAt
		}
		// A successor refolds everything up to the checkpoint, and some of
		// what came after (the stream up to a checkpoint can hold messages
		// nobody processed yet), remembers what the store holds of what it
		// refolded, then gets everything again. An earlier successor may
		// have done the same from the same snapshot and checkpoint, and
		// been stopped while it wrote.
		refolded := make([]bool, len(arrival)-snapAt)
		for i := range refolded {
			refolded[i] = snapAt+i < checkpoint || rapid.Bool().Draw(t, "refolded")
		}
		onlyWritten := rapid.Bool().Draw(t, "only what was written since")
		rebuild := func() *State {
			s := snapshotRoundTrip(t, testConfig(), snap)
			for i, e := range arrival[snapAt:] {
				if refolded[i] {
					s.Apply(e)
				}
			}
			repos, incidents := s.Repos.Touched(), s.Attribution.Touched()
			held := stored.facts()
			var mine []Row[IncidentFact]
			for _, r := range held.Incidents {
				if slices.Contains(incidents, r.Fact.ID) {
					mine = append(mine, r)
				}
			}
			if onlyWritten {
				s.Repos.RememberWritten(stored.writtenSince(writtenAt, written, snapWrites, repos))
			} else {
				s.Repos.Remember(held, repos)
			}
			s.Attribution.Remember(mine, incidents)
			return s
		}
		if rapid.Bool().Draw(t, "an earlier rebuild cut short") {
			f := rebuild().Flush()
			f.Deployments = rapid.SampledFrom([][]Row[DeploymentFact]{nil, f.Deployments[:len(f.Deployments)/2], f.Deployments}).Draw(t, "rebuild's deployments written")
			f.Changes = rapid.SampledFrom([][]Row[ChangeFact]{nil, f.Changes[:len(f.Changes)/2], f.Changes}).Draw(t, "rebuild's changes written")
			f.Days = nil
			write(f)
		}
		snap = rebuild()
		write(snap.Flush())
		for _, e := range rapid.Permutation(arrival[snapAt:]).Draw(t, "redelivered") {
			snap.Apply(e)
		}
		write(snap.Flush())

		want := store{}
		want.write(whole.Current())
		if !reflect.DeepEqual(stored.live(), want.live()) {
			t.Fatalf("the store holds other facts after the restart:\n%s", storeDiff(stored.live(), want.live()))
		}
		wantDays := map[string]RepoDay{}
		deps, changes := map[string]map[string]DeploymentFact{}, map[string]map[string]ChangeFact{}
		for _, r := range whole.Current().Deployments {
			if deps[r.Fact.Repo] == nil {
				deps[r.Fact.Repo] = map[string]DeploymentFact{}
			}
			deps[r.Fact.Repo][r.Fact.ID] = r.Fact
		}
		for _, r := range whole.Current().Changes {
			if changes[r.Fact.Repo] == nil {
				changes[r.Fact.Repo] = map[string]ChangeFact{}
			}
			changes[r.Fact.Repo][r.Fact.SHA] = r.Fact
		}
		for _, name := range sortedKeys(deps) {
			for _, d := range bruteDays(name, deps[name], changes[name]) {
				wantDays[d.Repo+d.Day.String()] = d
			}
		}
		for _, name := range sortedKeys(changes) {
			if deps[name] == nil {
				for _, d := range bruteDays(name, nil, changes[name]) {
					wantDays[d.Repo+d.Day.String()] = d
				}
			}
		}
		got := map[string]RepoDay{}
		for k, d := range days {
			if d.Deployments != 0 || d.Failed != 0 || d.Rework != 0 || len(d.RecoverySeconds) != 0 || len(d.LeadTimeSeconds) != 0 {
				got[k] = normalDays([]RepoDay{d})[0]
			}
		}
		for k, d := range wantDays {
			wantDays[k] = normalDays([]RepoDay{d})[0]
		}
		if !reflect.DeepEqual(got, wantDays) {
			t.Fatalf("the rollups differ after the restart:\n%v\n%v", got, wantDays)
		}
	})
}

// rowsOf are the facts of f's rows by where the store keeps them.
func rowsOf(f Facts) map[storeKey]any {
	out := map[storeKey]any{}
	for _, r := range f.Deployments {
		out[storeKey{"deployments", r.Fact.Repo + "/" + r.Fact.ID, r.Fact.FinishedAt.Unix()}] = r.Fact
	}
	for _, r := range f.Changes {
		out[storeKey{"changes", r.Fact.Repo + "/" + r.Fact.SHA, r.Fact.DeployedAt.Unix()}] = r.Fact
	}
	return out
}

// writtenSince is what Store.WrittenSince reads: every row, live or
// retracted, of the deployments and changes of repos with a row written
// after write number since (written: the fact each row last had).
func (s store) writtenSince(writtenAt map[storeKey]int, written map[storeKey]any, since int, repos []string) Facts {
	recent := map[[2]string]bool{}
	for k, n := range writtenAt {
		if n > since {
			recent[[2]string{k.table, k.key}] = true
		}
	}
	var out Facts
	for k, v := range s {
		if !recent[[2]string{k.table, k.key}] {
			continue
		}
		switch f := written[k].(type) {
		case DeploymentFact:
			if slices.Contains(repos, f.Repo) {
				out.Deployments = append(out.Deployments, Row[DeploymentFact]{Fact: f, Live: v != nil})
			}
		case ChangeFact:
			if slices.Contains(repos, f.Repo) {
				out.Changes = append(out.Changes, Row[ChangeFact]{Fact: f, Live: v != nil})
			}
		}
	}
	return out
}

// storeDiff lists what two stores hold differently.
func storeDiff(got, want map[storeKey]any) string {
	var out []string
	for k, v := range got {
		if w, ok := want[k]; !ok || !reflect.DeepEqual(v, w) {
			out = append(out, fmt.Sprintf("got  %v: %+v", k, v))
		}
	}
	for k, w := range want {
		if v, ok := got[k]; !ok || !reflect.DeepEqual(v, w) {
			out = append(out, fmt.Sprintf("want %v: %+v", k, w))
		}
	}
	slices.Sort(out)
	return strings.Join(out, "\n")
}

// coldMonths are the months any repository holds cold history of.
func (s *Repos) coldMonths() []int32 {
	set := map[int32]bool{}
	for _, r := range s.repos {
		for _, days := range [][]int32{r.settled.days(), keysOf(r.deployedOn), keysOf(r.days.Days)} {
			for _, day := range days {
				if r.coldDay(day) {
					set[monthOf(day)] = true
				}
			}
		}
	}
	out := keysOf(set)
	slices.Sort(out)
	return out
}
