package bus

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
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

// The client holds a bounded number of publishes awaiting acknowledgement;
// a PublishAll of more messages than that, on a server slower than the
// client's stall wait (200 ms), waits for acknowledgements instead of
// failing. The "server" here acknowledges each message 300 ms late, and the
// client holds one publish at a time.
func TestPublishAllWaitsForSlowAcknowledgements(t *testing.T) {
	b := openTest(t, 0)
	sub, err := b.Conn.Subscribe("slow.acks", func(m *nats.Msg) {
		time.Sleep(300 * time.Millisecond)
		_ = m.Respond([]byte(`{"stream":"SLOW","seq":1}`))
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	js, err := jetstream.New(b.Conn, jetstream.WithPublishAsyncMaxPending(1))
	if err != nil {
		t.Fatal(err)
	}
	var msgs []*nats.Msg
	for range 3 {
		msgs = append(msgs, nats.NewMsg("slow.acks"))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := PublishAll(ctx, js, msgs); err != nil {
		t.Fatalf("PublishAll: %v", err)
	}
}
