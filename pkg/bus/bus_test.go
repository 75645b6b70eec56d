package bus

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"
)

// openTest is an embedded bus that logs nothing; maxPayload 0 keeps NATS's
// default.
func openTest(t *testing.T, maxPayload int64) *Bus {
	t.Helper()
	b, err := Open(context.Background(), Options{DataDir: t.TempDir(), MaxPayload: maxPayload,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	return b
}

// A connection the server closes for good is reported by Lost, with the
// reason; closing the Bus is not a loss.
func TestLostConnection(t *testing.T) {
	for _, tc := range []struct {
		name string
		lose bool
	}{
		{"closed by the server", true},
		{"closed by Close", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := openTest(t, 0)
			if tc.lose {
				_ = b.Conn.Publish(strings.Repeat("x", 5000), nil) // over the control line limit
			} else {
				b.Close()
			}
			select {
			case <-b.Lost():
				if !tc.lose {
					t.Fatal("Close reported as a lost connection")
				}
				if err := b.LostErr(); err == nil || !strings.Contains(err.Error(), "control line") {
					t.Errorf("LostErr %v", err)
				}
			case <-time.After(time.Second):
				if tc.lose {
					t.Fatalf("Lost not closed; connection %s", b.Conn.Status())
				}
				if b.LostErr() != nil {
					t.Errorf("LostErr %v after Close", b.LostErr())
				}
			}
		})
	}
}
