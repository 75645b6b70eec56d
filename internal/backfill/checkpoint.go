package backfill

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// CheckpointBucket is the key-value bucket on the bus that holds a
// checkpoint per backfilled target.
const CheckpointBucket = "doraflow_backfill"

// Checkpoint is how far a target's backfill got: started on a window
// (publishing may have begun), or finished.
type Checkpoint struct {
	Since    time.Time `json:"since"`
	Until    time.Time `json:"until"`
	Finished bool      `json:"finished,omitempty"`
	Events   int       `json:"events"`
}

// Checkpoints load and save checkpoints by target key.
type Checkpoints interface {
	Load(ctx context.Context, key string) (Checkpoint, bool, error)
	Save(ctx context.Context, key string, cp Checkpoint) error
}

// KVCheckpoints keeps checkpoints in CheckpointBucket.
type KVCheckpoints struct{ kv jetstream.KeyValue }

// OpenCheckpoints opens CheckpointBucket, creating it with replicas copies.
func OpenCheckpoints(ctx context.Context, js jetstream.JetStream, replicas int) (*KVCheckpoints, error) {
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      CheckpointBucket,
		Description: "backfill progress, per repository, project or account: an interrupted backfill resumes from it",
		Storage:     jetstream.FileStorage,
		Replicas:    max(replicas, 1),
	})
	if err != nil {
		return nil, fmt.Errorf("backfill: checkpoints %s: %w", CheckpointBucket, err)
	}
	return &KVCheckpoints{kv: kv}, nil
}

// kvKey makes a target key a valid bucket key (letters, digits, - _ / = .,
// no leading or trailing dot).
func kvKey(key string) string {
	return strings.Trim(strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', strings.ContainsRune("-_/=.", r):
			return r
		}
		return '_'
	}, key), ".")
}

// Load returns the checkpoint of key, if any.
func (c *KVCheckpoints) Load(ctx context.Context, key string) (Checkpoint, bool, error) {
	e, err := c.kv.Get(ctx, kvKey(key))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return Checkpoint{}, false, nil
	}
	if err != nil {
		return Checkpoint{}, false, fmt.Errorf("backfill: checkpoint %s: %w", key, err)
	}
	var cp Checkpoint
	if err := json.Unmarshal(e.Value(), &cp); err != nil {
		return Checkpoint{}, false, fmt.Errorf("backfill: checkpoint %s holds %q: %w", key, e.Value(), err)
	}
	return cp, true, nil
}

// Save records cp as key's checkpoint.
func (c *KVCheckpoints) Save(ctx context.Context, key string, cp Checkpoint) error {
	v, err := json.Marshal(cp)
	if err != nil {
		return fmt.Errorf("backfill: checkpoint %s: %w", key, err)
	}
	if _, err := c.kv.Put(ctx, kvKey(key), v); err != nil {
		return fmt.Errorf("backfill: checkpoint %s: %w", key, err)
	}
	return nil
}

// MemCheckpoints keeps checkpoints in memory: a --dry-run records nothing.
type MemCheckpoints struct {
	mu sync.Mutex
	m  map[string]Checkpoint
}

// Load returns the checkpoint of key, if any.
func (c *MemCheckpoints) Load(_ context.Context, key string) (Checkpoint, bool, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	cp, ok := c.m[key]
	return cp, ok, nil
}

// Save records cp as key's checkpoint.
func (c *MemCheckpoints) Save(_ context.Context, key string, cp Checkpoint) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[string]Checkpoint{}
	}
	c.m[key] = cp
	return nil
}
