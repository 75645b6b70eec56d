package bus

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// LockBucket holds the locks processes take on the bus for work that must
// run once however many start together (the ClickHouse migrations).
const LockBucket = "doraflow_locks"

// lockTTL is how long a lock outlives a holder that died; a live holder
// renews it every third of that.
const lockTTL = 15 * time.Second

// WithLock runs fn while this process holds the named lock, waiting for
// another holder to finish (or die: its lock then expires). fn's context is
// cancelled if the lock is lost (not renewed in time).
func WithLock(ctx context.Context, js jetstream.JetStream, name string, replicas int, fn func(context.Context) error) error {
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      LockBucket,
		Description: "locks for work that runs once across processes (migrations)",
		TTL:         lockTTL,
		History:     1,
		Storage:     jetstream.FileStorage,
		Replicas:    max(replicas, 1),
	})
	if err != nil {
		return fmt.Errorf("bus: lock %s: %w", name, replicasHint(err, replicas))
	}
	if err := awaitReplicas(ctx, js, "KV_"+LockBucket, replicas); err != nil {
		return err
	}
	owner := []byte(strconv.FormatInt(time.Now().UnixNano(), 36))
	var rev uint64
	for {
		rev, err = kv.Create(ctx, name, owner)
		if err == nil {
			break
		}
		if !errors.Is(err, jetstream.ErrKeyExists) {
			return fmt.Errorf("bus: lock %s: %w", name, err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("bus: lock %s: held elsewhere: %w", name, ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
	held, lost := context.WithCancelCause(ctx)
	defer lost(nil)
	renewed := make(chan struct{})
	go func() {
		defer close(renewed)
		for {
			select {
			case <-held.Done():
				return
			case <-time.After(lockTTL / 3):
			}
			next, err := kv.Update(held, name, owner, rev)
			if err != nil {
				lost(fmt.Errorf("bus: lock %s lost: %w", name, err))
				return
			}
			rev = next
		}
	}()
	fnErr := fn(held)
	lost(nil)
	<-renewed
	if cause := context.Cause(held); fnErr != nil && cause != nil && !errors.Is(cause, context.Canceled) {
		fnErr = errors.Join(fnErr, cause)
	}
	// Released for the next holder at once rather than at expiry; a failed
	// release only makes it wait for the expiry.
	_ = kv.Delete(context.WithoutCancel(ctx), name, jetstream.LastRevision(rev))
	return fnErr
}
