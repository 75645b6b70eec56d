package bus

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/nats-io/nats.go"
)

// small is the max_payload of the embedded server in these tests.
const small = 200 << 10

// Messages over the server's max_payload are stored in the payload bucket
// and published as references; Data gives every message's data back, and
// a re-publish is dropped as a duplicate like any other.
func TestLargeMessagesGoByReference(t *testing.T) {
	ctx := context.Background()
	b := openTest(t, small)
	if got := b.Conn.MaxPayload(); got != small {
		t.Fatalf("server max_payload %d", got)
	}
	cases := []struct {
		name string
		size int
		ref  bool
	}{
		{"empty", 0, false},
		{"small", 1000, false},
		{"just under the limit", small - 200, false},
		{"over the limit", small, true},
		{"many chunks", 3 << 20, true},
	}
	stream, err := b.JS.Stream(ctx, EventStream)
	if err != nil {
		t.Fatal(err)
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m := nats.NewMsg(EventSubject(0, "push"))
			m.Data = bytes.Repeat([]byte{byte('a' + i)}, tc.size)
			m.Header.Set(nats.MsgIdHdr, tc.name)
			for range 2 { // the second time a duplicate
				if err := PublishAll(ctx, b.JS, []*nats.Msg{m}); err != nil {
					t.Fatal(err)
				}
			}
			if len(m.Data) != tc.size || m.Header.Get(HeaderPayload) != "" {
				t.Error("PublishAll changed the message it was given")
			}
			info, err := stream.Info(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if info.State.Msgs != uint64(i+1) {
				t.Fatalf("stream holds %d messages, want %d", info.State.Msgs, i+1)
			}
			stored, err := stream.GetMsg(ctx, info.State.LastSeq)
			if err != nil {
				t.Fatal(err)
			}
			if ref := stored.Header.Get(HeaderPayload) != ""; ref != tc.ref || ref && len(stored.Data) != 0 {
				t.Errorf("reference %v with %d bytes of data, want reference %v", ref, len(stored.Data), tc.ref)
			}
			if stored.Header.Get(nats.MsgIdHdr) != tc.name {
				t.Errorf("Nats-Msg-Id %q", stored.Header.Get(nats.MsgIdHdr))
			}
			data, err := Data(ctx, b.JS, rawMsg{stored.Header, stored.Data})
			if err != nil || !bytes.Equal(data, m.Data) {
				t.Errorf("Data: %d bytes, %v; want the %d published", len(data), err, tc.size)
			}
		})
	}
	obs, err := b.JS.ObjectStore(ctx, PayloadBucket)
	if err != nil {
		t.Fatal(err)
	}
	objects, err := obs.List(ctx)
	if err != nil || len(objects) != 2 {
		t.Errorf("payload bucket holds %d objects (%v), want 2", len(objects), err)
	}
	ack, err := Publish(ctx, b.JS, &nats.Msg{Subject: EventSubject(1, "push"), Data: make([]byte, 1<<20)})
	if err != nil || ack.Sequence != uint64(len(cases)+1) {
		t.Errorf("Publish: %+v %v", ack, err)
	}
}

type rawMsg struct {
	h    nats.Header
	data []byte
}

func (m rawMsg) Headers() nats.Header { return m.h }
func (m rawMsg) Data() []byte         { return m.data }

// A reference whose object is gone is an error that says retrying cannot
// help.
func TestDataOfMissingPayload(t *testing.T) {
	b := openTest(t, small)
	_, err := Data(context.Background(), b.JS, rawMsg{nats.Header{HeaderPayload: {"sha256-00"}}, nil})
	if !errors.Is(err, ErrPayloadMissing) {
		t.Errorf("got %v, want ErrPayloadMissing", err)
	}
}

// A subject long enough to make NATS close the connection is refused
// before it reaches the server.
func TestOverlongSubjectIsRefused(t *testing.T) {
	b := openTest(t, small)
	m := nats.NewMsg("doraflow.raw.github." + strings.Repeat("x", 4100))
	if err := PublishAll(context.Background(), b.JS, []*nats.Msg{m}); err == nil || !strings.Contains(err.Error(), "subject") {
		t.Errorf("got %v, want the subject refused", err)
	}
	if !b.Conn.IsConnected() {
		t.Errorf("connection %s", b.Conn.Status())
	}
}
