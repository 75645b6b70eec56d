package bus

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/doraflow/doraflow/internal/natstest"
)

// Every stream, bucket and object store doraflow creates on a cluster has
// the replicas asked for, and a bus laid out with fewer is raised to them
// when a process starts with more.
func TestReplicasOnACluster(t *testing.T) {
	cluster := natstest.StartCluster(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	for _, replicas := range []int{1, 3} {
		b, err := Open(ctx, Options{URL: cluster.URL(), Replicas: replicas, Logger: logger})
		if err != nil {
			t.Fatalf("replicas %d: %v", replicas, err)
		}
		m, err := Join(ctx, b.JS, MembershipOptions{Group: "processor", Partitions: 2, TTL: 2 * time.Second, Replicas: replicas, Logger: logger}, func([]int) {})
		if err != nil {
			t.Fatalf("replicas %d: join: %v", replicas, err)
		}
		names := map[string]int{}
		for info := range b.JS.ListStreams(ctx).Info() {
			names[info.Config.Name] = info.Config.Replicas
		}
		for _, want := range []string{RawStream, EventStream, DeadLetterStream, LinkStream,
			"OBJ_" + StateBucket, "OBJ_" + PayloadBucket, "KV_" + CheckpointBucket, "KV_" + membershipBucketPrefix + "processor"} {
			if got, ok := names[want]; !ok || got != replicas {
				t.Errorf("replicas %d: stream %s has %d replicas (present %v); all: %v", replicas, want, got, ok, names)
			}
		}
		if err := m.Leave(ctx); err != nil {
			t.Fatal(err)
		}
		b.Close()
	}
}

// A single server cannot hold more than one copy: the start fails saying
// what to change.
func TestReplicasOnASingleServer(t *testing.T) {
	single, err := Open(context.Background(), Options{DataDir: t.TempDir(), Port: -1, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer single.Close()
	b, err := Open(context.Background(), Options{URL: single.ClientURL(), Replicas: 3,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err == nil {
		b.Close()
		t.Fatal("opened 3 replicas on a single server")
	}
	if !strings.Contains(err.Error(), "nats.replicas is 3") {
		t.Fatalf("error does not say what to change: %v", err)
	}
}

// The streams that grow with the deliveries keep what the limits say, and
// a later start with other limits changes them.
func TestStreamLimits(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	for _, limits := range []Limits{
		{Raw: StreamLimit{MaxAge: 48 * time.Hour}, Events: StreamLimit{MaxAge: 72 * time.Hour, MaxBytes: 1 << 30}, DeadLetter: StreamLimit{MaxAge: 24 * time.Hour}},
		{Raw: StreamLimit{MaxAge: 96 * time.Hour, MaxBytes: 1 << 20}},
	} {
		b, err := Open(ctx, Options{DataDir: dir, Limits: limits, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		if err != nil {
			t.Fatal(err)
		}
		for name, want := range map[string]StreamLimit{RawStream: limits.Raw, EventStream: limits.Events, DeadLetterStream: limits.DeadLetter} {
			s, err := b.JS.Stream(ctx, name)
			if err != nil {
				t.Fatal(err)
			}
			cfg := s.CachedInfo().Config
			wantBytes := want.MaxBytes
			if wantBytes == 0 {
				wantBytes = -1
			}
			if cfg.MaxAge != want.MaxAge || cfg.MaxBytes != wantBytes {
				t.Errorf("%s: max age %s, max bytes %d; want %s, %d", name, cfg.MaxAge, cfg.MaxBytes, want.MaxAge, wantBytes)
			}
		}
		b.Close()
	}
}
