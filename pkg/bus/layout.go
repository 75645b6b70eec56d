package bus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"
)

// LayoutBucket is the key-value bucket that records how the bus is laid
// out. Events go to a partition by a hash of their repository, and each
// partition's processor holds the history of its repositories: under
// another partition count repositories move to partitions that do not hold
// their history, and processors retract the facts they no longer see. So
// the count is recorded when the bus is first set up, and every process
// that publishes or processes events checks it.
const LayoutBucket = "doraflow_layout"

const layoutKey = "layout"

// Layout is how the bus is laid out.
type Layout struct {
	// Partitions of the event subjects.
	Partitions int `json:"partitions"`
	// Repartitioning, when set, is the count a replay is moving the bus to.
	// A replay that stopped half-way leaves it set: the stream then holds
	// neither layout whole, and only another replay may start.
	Repartitioning int `json:"repartitioning,omitempty"`
}

// ReadLayout returns the recorded layout and the revision of the record;
// found is false on a bus that has none yet.
func ReadLayout(ctx context.Context, js jetstream.JetStream) (l Layout, rev uint64, found bool, err error) {
	kv, err := layoutBucket(ctx, js)
	if err != nil {
		return Layout{}, 0, false, err
	}
	entry, err := kv.Get(ctx, layoutKey)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return Layout{}, 0, false, nil
	}
	if err != nil {
		return Layout{}, 0, false, fmt.Errorf("bus: read layout: %w", err)
	}
	if err := json.Unmarshal(entry.Value(), &l); err != nil {
		return Layout{}, 0, false, fmt.Errorf("bus: read layout: %s holds %q: %w", LayoutBucket, entry.Value(), err)
	}
	return l, entry.Revision(), true, nil
}

// InitLayout records l on a bus that has no layout yet and returns it. If
// one is recorded already (by another process a moment before, say), it
// returns that one instead: the first to record wins, whatever others
// are configured with.
func InitLayout(ctx context.Context, js jetstream.JetStream, l Layout) (Layout, uint64, error) {
	kv, err := layoutBucket(ctx, js)
	if err != nil {
		return Layout{}, 0, err
	}
	value, err := json.Marshal(l)
	if err != nil {
		return Layout{}, 0, fmt.Errorf("bus: record layout: %w", err)
	}
	rev, err := kv.Create(ctx, layoutKey, value)
	if errors.Is(err, jetstream.ErrKeyExists) {
		recorded, rev, _, err := ReadLayout(ctx, js)
		return recorded, rev, err
	}
	if err != nil {
		return Layout{}, 0, fmt.Errorf("bus: record layout: %w", err)
	}
	return l, rev, nil
}

// UpdateLayout replaces the layout recorded at revision rev, and fails if
// the record has changed since: two replays cannot both move the bus.
func UpdateLayout(ctx context.Context, js jetstream.JetStream, l Layout, rev uint64) (uint64, error) {
	kv, err := layoutBucket(ctx, js)
	if err != nil {
		return 0, err
	}
	value, err := json.Marshal(l)
	if err != nil {
		return 0, fmt.Errorf("bus: record layout: %w", err)
	}
	rev, err = kv.Update(ctx, layoutKey, value, rev)
	if err != nil {
		return 0, fmt.Errorf("bus: record layout: %w", err)
	}
	return rev, nil
}

// WatchLayout delivers every layout recorded after the call until ctx is
// done, so that a running process learns the bus was re-laid out under
// it. A record that was removed or cannot be read arrives as the zero
// Layout, which matches no configuration.
func WatchLayout(ctx context.Context, js jetstream.JetStream) (<-chan Layout, error) {
	kv, err := layoutBucket(ctx, js)
	if err != nil {
		return nil, err
	}
	w, err := kv.Watch(ctx, layoutKey, jetstream.UpdatesOnly())
	if err != nil {
		return nil, fmt.Errorf("bus: watch layout: %w", err)
	}
	out := make(chan Layout)
	go func() {
		defer close(out)
		defer func() { _ = w.Stop() }()
		for {
			select {
			case <-ctx.Done():
				return
			case e, ok := <-w.Updates():
				if !ok {
					return
				}
				if e == nil {
					continue
				}
				var l Layout
				if e.Operation() == jetstream.KeyValuePut {
					if err := json.Unmarshal(e.Value(), &l); err != nil {
						l = Layout{}
					}
				}
				select {
				case out <- l:
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	return out, nil
}

// layoutBucket opens the layout bucket, creating it on a new bus with as
// many replicas as the event stream it describes.
func layoutBucket(ctx context.Context, js jetstream.JetStream) (jetstream.KeyValue, error) {
	kv, err := js.KeyValue(ctx, LayoutBucket)
	if err == nil {
		return kv, nil
	}
	if !errors.Is(err, jetstream.ErrBucketNotFound) {
		return nil, fmt.Errorf("bus: %s: %w", LayoutBucket, err)
	}
	stream, err := js.Stream(ctx, EventStream)
	if err != nil {
		return nil, fmt.Errorf("bus: %s: %w", LayoutBucket, err)
	}
	kv, err = js.CreateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      LayoutBucket,
		Description: "how the bus is laid out (partition count): fixed when it is first set up",
		Storage:     jetstream.FileStorage,
		Replicas:    stream.CachedInfo().Config.Replicas,
	})
	if errors.Is(err, jetstream.ErrBucketExists) {
		// Another process created it a moment before.
		kv, err = js.KeyValue(ctx, LayoutBucket)
	}
	if err != nil {
		return nil, fmt.Errorf("bus: %s: %w", LayoutBucket, err)
	}
	return kv, nil
}
