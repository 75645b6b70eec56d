package bus

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nats-io/nats.go"
)

// The embedded server's loopback listener takes only clients with its
// token; the URL recorded in the data dir carries it, and a record whose
// server is gone, or none, says what to do.
func TestLocalURL(t *testing.T) {
	dir := t.TempDir()
	if _, err := LocalURL(dir); !errors.Is(err, ErrNoLocalBus) || !strings.Contains(err.Error(), "DORAFLOW_NATS_URL") {
		t.Fatalf("no record: %v", err)
	}
	token, err := NewToken()
	if err != nil {
		t.Fatal(err)
	}
	b, err := Open(context.Background(), Options{DataDir: dir, Port: -1, Token: token, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if err := WriteLocalURL(dir, b.ClientURL()); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(filepath.Join(dir, LocalURLFile)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("record: %v %v; want mode 0600", fi, err)
	}
	u, err := LocalURL(dir)
	if err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect(u)
	if err != nil {
		t.Fatalf("with the recorded URL: %v", err)
	}
	nc.Close()
	host := strings.SplitN(strings.TrimPrefix(u, "nats://"), "@", 2)[1]
	if nc, err := nats.Connect("nats://" + host); err == nil {
		nc.Close()
		t.Fatal("a client without the token was let in")
	}
	b.Close()
	// serve was killed: the record stays, its server does not answer.
	if _, err := LocalURL(dir); !errors.Is(err, ErrNoLocalBus) || !strings.Contains(err.Error(), "does not answer") {
		t.Fatalf("stale record: %v", err)
	}
	RemoveLocalURL(dir, u)
	if _, err := os.Stat(filepath.Join(dir, LocalURLFile)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("record not removed: %v", err)
	}
}
