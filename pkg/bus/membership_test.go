package bus

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

const testTTL = time.Second

// ownership records every onChange call of one member with its time.
type ownership struct {
	mu     sync.Mutex
	events []ownershipEvent
}

type ownershipEvent struct {
	at    time.Time
	owned []int
}

func (o *ownership) record(owned []int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.events = append(o.events, ownershipEvent{at: time.Now(), owned: owned})
}

// intervals returns, per partition, the [start, end) intervals during which
// the member reported it owned; end is zero while it still owns it.
func (o *ownership) intervals() map[int][][2]time.Time {
	o.mu.Lock()
	defer o.mu.Unlock()
	out := map[int][][2]time.Time{}
	since := map[int]time.Time{}
	for _, e := range o.events {
		for _, p := range e.owned {
			if _, ok := since[p]; !ok {
				since[p] = e.at
			}
		}
		for p, s := range since {
			if !slices.Contains(e.owned, p) {
				out[p] = append(out[p], [2]time.Time{s, e.at})
				delete(since, p)
			}
		}
	}
	for p, s := range since {
		out[p] = append(out[p], [2]time.Time{s, {}})
	}
	return out
}

type testMember struct {
	id     string
	m      *Membership
	nc     *nats.Conn
	cancel context.CancelFunc
	rec    *ownership
}

func testLogger() *slog.Logger {
	if os.Getenv("DORAFLOW_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

func openTestBus(t *testing.T) *Bus {
	t.Helper()
	b, err := Open(context.Background(), Options{DataDir: t.TempDir(), Port: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	return b
}

// joinMember joins over its own connection, like a separate process would.
func joinMember(t *testing.T, b *Bus, id string, partitions int) *testMember {
	t.Helper()
	nc, err := nats.Connect(b.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	tm := &testMember{id: id, nc: nc, cancel: cancel, rec: &ownership{}}
	tm.m, err = Join(ctx, js, MembershipOptions{
		Group: "test", ID: id, Partitions: partitions, TTL: testTTL, Logger: testLogger().With("test_member", id),
	}, tm.rec.record)
	if err != nil {
		cancel()
		nc.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		lctx, lcancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer lcancel()
		_ = tm.m.Leave(lctx)
		cancel()
		nc.Close()
	})
	return tm
}

func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > timeout {
			t.Fatalf("not within %s: %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return time.Since(start)
}

func allPartitions(n int) []int {
	ps := make([]int, n)
	for i := range ps {
		ps[i] = i
	}
	return ps
}

// balanced reports whether the members' owned sets are disjoint, cover all
// partitions, and differ in size by at most one.
func balanced(partitions int, members ...*testMember) bool {
	var union []int
	lo, hi := partitions, 0
	for _, tm := range members {
		owned := tm.m.Owned()
		union = append(union, owned...)
		lo, hi = min(lo, len(owned)), max(hi, len(owned))
	}
	slices.Sort(union)
	return slices.Equal(union, allPartitions(partitions)) && hi-lo <= 1
}

// checkExclusive fails if two members ever reported the same partition owned
// at the same time, according to their recorded onChange calls.
func checkExclusive(t *testing.T, members ...*testMember) {
	t.Helper()
	type owner struct {
		id  string
		ivs [][2]time.Time
	}
	byPartition := map[int][]owner{}
	for _, tm := range members {
		for p, ivs := range tm.rec.intervals() {
			byPartition[p] = append(byPartition[p], owner{tm.id, ivs})
		}
	}
	for p, owners := range byPartition {
		for i := range owners {
			for j := i + 1; j < len(owners); j++ {
				for _, a := range owners[i].ivs {
					for _, b := range owners[j].ivs {
						if overlaps(a, b) {
							t.Errorf("partition %d owned by %s %v and by %s %v at the same time",
								p, owners[i].id, fmtInterval(a), owners[j].id, fmtInterval(b))
						}
					}
				}
			}
		}
	}
}

func overlaps(a, b [2]time.Time) bool {
	// [s, e) with a zero end meaning "still open".
	before := func(x, y [2]time.Time) bool { return !x[1].IsZero() && !x[1].After(y[0]) }
	return !before(a, b) && !before(b, a)
}

func fmtInterval(iv [2]time.Time) string {
	end := "now"
	if !iv[1].IsZero() {
		end = iv[1].Format("15:04:05.000")
	}
	return fmt.Sprintf("[%s, %s)", iv[0].Format("15:04:05.000"), end)
}

func TestMembershipSingleMemberOwnsAll(t *testing.T) {
	b := openTestBus(t)
	a := joinMember(t, b, "a", 8)
	waitFor(t, 3*time.Second, "a owns all", func() bool { return slices.Equal(a.m.Owned(), allPartitions(8)) })
	// Reported exactly once per change: the first report may be empty or
	// already complete, and never repeats a set.
	a.rec.mu.Lock()
	defer a.rec.mu.Unlock()
	for i := 1; i < len(a.rec.events); i++ {
		if slices.Equal(a.rec.events[i].owned, a.rec.events[i-1].owned) {
			t.Errorf("onChange repeated %v", a.rec.events[i].owned)
		}
	}
}

func TestMembershipTwoMembersSplit(t *testing.T) {
	b := openTestBus(t)
	a := joinMember(t, b, "a", 8)
	c := joinMember(t, b, "c", 8)
	waitFor(t, 5*time.Second, "split 4/4", func() bool {
		return balanced(8, a, c) && len(a.m.Owned()) == 4
	})
	checkExclusive(t, a, c)
}

func TestMembershipLeaveHandsOver(t *testing.T) {
	b := openTestBus(t)
	a := joinMember(t, b, "a", 8)
	c := joinMember(t, b, "c", 8)
	waitFor(t, 5*time.Second, "split 4/4", func() bool { return balanced(8, a, c) })

	// Sample Owned() on both sides while the partitions move, in addition to
	// the recorded onChange intervals.
	stop := make(chan struct{})
	var sampled sync.WaitGroup
	var conflict []string
	sampled.Go(func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(10 * time.Millisecond):
			}
			// Read c before a: a partition leaves a before it reaches c.
			oc, oa := c.m.Owned(), a.m.Owned()
			for _, p := range oa {
				if slices.Contains(oc, p) {
					conflict = append(conflict, fmt.Sprintf("partition %d: a %v c %v", p, oa, oc))
				}
			}
		}
	})

	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := a.m.Leave(ctx); err != nil {
		t.Fatal(err)
	}
	if err := a.m.Leave(ctx); err != nil {
		t.Fatalf("second Leave: %v", err)
	}
	if got := a.m.Owned(); len(got) != 0 {
		t.Errorf("after Leave a owns %v", got)
	}
	waitFor(t, 3*time.Second, "c owns all", func() bool { return slices.Equal(c.m.Owned(), allPartitions(8)) })
	t.Logf("handover after Leave took %s", time.Since(start))
	close(stop)
	sampled.Wait()
	for _, c := range conflict {
		t.Error("owned twice:", c)
	}
	checkExclusive(t, a, c)
	a.rec.mu.Lock()
	last := a.rec.events[len(a.rec.events)-1].owned
	a.rec.mu.Unlock()
	if len(last) != 0 {
		t.Errorf("a's last report %v, want []", last)
	}
}

func TestMembershipCrashFailover(t *testing.T) {
	b := openTestBus(t)
	a := joinMember(t, b, "a", 8)
	c := joinMember(t, b, "c", 8)
	waitFor(t, 5*time.Second, "split 4/4", func() bool { return balanced(8, a, c) })

	// SIGKILL: no Leave, the connection just goes away.
	start := time.Now()
	a.nc.Close()
	a.cancel()
	took := waitFor(t, 2*testTTL+1500*time.Millisecond, "c owns all after a crashed", func() bool {
		return slices.Equal(c.m.Owned(), allPartitions(8))
	})
	t.Logf("failover after a crash took %s (TTL %s)", took, testTTL)
	if took < testTTL/2 {
		t.Errorf("failover after %s: leases cannot expire that fast", took)
	}
	_ = start
	checkExclusive(t, a, c)
}

func TestMembershipJoinRebalances(t *testing.T) {
	b := openTestBus(t)
	ms := []*testMember{
		joinMember(t, b, "m1", 8),
		joinMember(t, b, "m2", 8),
		joinMember(t, b, "m3", 8),
	}
	waitFor(t, 5*time.Second, "3/3/2", func() bool { return balanced(8, ms...) })
	ms = append(ms, joinMember(t, b, "m4", 8))
	took := waitFor(t, 5*time.Second, "2/2/2/2", func() bool { return balanced(8, ms...) })
	t.Logf("rebalance after a join took %s", took)
	for _, tm := range ms {
		if got := len(tm.m.Owned()); got != 2 {
			t.Errorf("%s owns %d partitions, want 2", tm.id, got)
		}
	}
	checkExclusive(t, ms...)
}

func TestMembershipOptionsValidated(t *testing.T) {
	b := openTestBus(t)
	ctx := context.Background()
	for _, opts := range []MembershipOptions{
		{Group: "", Partitions: 1},
		{Group: "a.b", Partitions: 1},
		{Group: "g", Partitions: 0},
		{Group: "g", Partitions: 1, ID: "x.y"},
		{Group: "g", Partitions: 1, TTL: time.Millisecond},
	} {
		if _, err := Join(ctx, b.JS, opts, nil); err == nil {
			t.Errorf("Join(%+v) succeeded", opts)
		}
	}
	if id := defaultMemberID(); !validToken(id) {
		t.Errorf("default id %q is not a valid key token", id)
	}
}

// A member cut off from the bus (its process still running) stops using its
// partitions before their leases expire on the server, so the survivor never
// overlaps with it.
func TestMembershipCutOffStopsBeforeExpiry(t *testing.T) {
	b := openTestBus(t)
	a := joinMember(t, b, "a", 8)
	c := joinMember(t, b, "c", 8)
	waitFor(t, 5*time.Second, "split 4/4", func() bool { return balanced(8, a, c) })

	a.nc.Close() // renewals now fail without an answer; ctx stays alive
	took := waitFor(t, testTTL, "a gives up its partitions", func() bool { return len(a.m.Owned()) == 0 })
	t.Logf("cut-off member stopped after %s", took)
	waitFor(t, 2*testTTL+1500*time.Millisecond, "c owns all", func() bool {
		return slices.Equal(c.m.Owned(), allPartitions(8))
	})
	checkExclusive(t, a, c)
}

// A lease taken over behind the member's back is reported lost at the next
// renewal, and taken up again once the other holder's key expires.
func TestMembershipLeaseStolen(t *testing.T) {
	b := openTestBus(t)
	a := joinMember(t, b, "a", 4)
	waitFor(t, 3*time.Second, "a owns all", func() bool { return slices.Equal(a.m.Owned(), allPartitions(4)) })
	kv, err := b.JS.KeyValue(context.Background(), membershipBucketPrefix+"test")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(context.Background(), leaseKey(2), []byte("intruder")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, testTTL, "a reports 2 lost", func() bool { return slices.Equal(a.m.Owned(), []int{0, 1, 3}) })
	waitFor(t, 2*testTTL+time.Second, "a owns 2 again", func() bool { return slices.Equal(a.m.Owned(), allPartitions(4)) })
}

// A member whose onChange takes three TTLs to stop the partitions it gives
// up keeps heartbeating and renewing meanwhile: the partitions it keeps
// never lapse to the other member, and those it gives up move only once
// its callback has returned.
func TestMembershipSlowStopKeepsTheLeases(t *testing.T) {
	b := openTestBus(t)
	nc, err := nats.Connect(b.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	slow := &testMember{id: "slow", nc: nc, rec: &ownership{}}
	var last []int
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	slow.cancel = cancel
	slow.m, err = Join(ctx, js, MembershipOptions{Group: "test", ID: "slow", Partitions: 8, TTL: testTTL, Logger: testLogger()},
		func(owned []int) {
			if len(owned) < len(last) {
				time.Sleep(3 * testTTL) // stopping the workers of what it gives up
			}
			last = owned
			slow.rec.record(owned)
		})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		lctx, lcancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer lcancel()
		_ = slow.m.Leave(lctx)
	}()
	waitFor(t, 5*time.Second, "slow owns all", func() bool { return slices.Equal(slow.m.Owned(), allPartitions(8)) })
	other := joinMember(t, b, "other", 8)
	waitFor(t, 10*time.Second, "split 4/4", func() bool { return balanced(8, slow, other) })
	checkExclusive(t, slow, other)
	slow.rec.mu.Lock()
	defer slow.rec.mu.Unlock()
	for _, e := range slow.rec.events {
		if len(e.owned) != 0 && len(e.owned) != 4 && len(e.owned) != 8 {
			t.Errorf("slow reported %v: its kept leases lapsed while it stopped the others", e.owned)
		}
	}
}
