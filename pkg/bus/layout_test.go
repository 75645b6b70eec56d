package bus

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// connect is a connection of its own, as another process would have.
func connect(t *testing.T, b *Bus) jetstream.JetStream {
	t.Helper()
	nc, err := nats.Connect(b.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

// Processes that set up a new bus at once, each with its own count, all
// end up with the one count that was recorded first.
func TestInitLayoutFirstWins(t *testing.T) {
	ctx := context.Background()
	b := openTestBus(t)
	got := make([]Layout, 6)
	var wg sync.WaitGroup
	for i := range got {
		js := connect(t, b)
		wg.Add(1)
		go func() {
			defer wg.Done()
			l, _, err := InitLayout(ctx, js, Layout{Partitions: i + 1})
			if err != nil {
				t.Error(err)
			}
			got[i] = l
		}()
	}
	wg.Wait()
	recorded, _, found, err := ReadLayout(ctx, b.JS)
	if err != nil || !found || recorded.Partitions < 1 {
		t.Fatalf("recorded %+v found %t: %v", recorded, found, err)
	}
	for i, l := range got {
		if l != recorded {
			t.Errorf("process %d was told %+v; recorded is %+v", i, l, recorded)
		}
	}
}

func TestLayoutUpdatesAndWatch(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	b := openTestBus(t)
	if _, _, found, err := ReadLayout(ctx, b.JS); err != nil || found {
		t.Fatalf("a new bus has a layout: %t %v", found, err)
	}
	_, rev, err := InitLayout(ctx, b.JS, Layout{Partitions: 8})
	if err != nil {
		t.Fatal(err)
	}
	watch, err := WatchLayout(ctx, connect(t, b))
	if err != nil {
		t.Fatal(err)
	}
	next := func() Layout {
		t.Helper()
		select {
		case l := <-watch:
			return l
		case <-ctx.Done():
			t.Fatal("no layout delivered")
			return Layout{}
		}
	}
	moving := Layout{Partitions: 8, Repartitioning: 4}
	newRev, err := UpdateLayout(ctx, b.JS, moving, rev)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := UpdateLayout(ctx, b.JS, Layout{Partitions: 2}, rev); err == nil {
		t.Error("an update at a stale revision succeeded")
	}
	if l := next(); l != moving {
		t.Errorf("watch delivered %+v, want %+v", l, moving)
	}
	if _, err := UpdateLayout(ctx, b.JS, Layout{Partitions: 4}, newRev); err != nil {
		t.Fatal(err)
	}
	if l := next(); l != (Layout{Partitions: 4}) {
		t.Errorf("watch delivered %+v, want 4 partitions", l)
	}
	kv, err := b.JS.KeyValue(ctx, LayoutBucket)
	if err != nil {
		t.Fatal(err)
	}
	if err := kv.Delete(ctx, layoutKey); err != nil {
		t.Fatal(err)
	}
	if l := next(); l != (Layout{}) {
		t.Errorf("a removed record was delivered as %+v, want the zero layout", l)
	}
}
