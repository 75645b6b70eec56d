package bus

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// HeaderPayload, on a message with no data of its own, names the object in
// PayloadBucket that holds its data: the message was larger than the
// connection's max_payload. Every other header, Nats-Msg-Id included, is
// the original message's, so deduplication works as for any message.
const HeaderPayload = "Doraflow-Payload"

// MaxSubjectBytes bounds the subjects doraflow publishes on. NATS closes
// the connection on a control line over 4 KB (subject, reply, sizes), and
// does not reconnect after that: a subject that long is a bug, refused here
// before it reaches the server.
const MaxSubjectBytes = 256

// ErrPayloadMissing is Data's error for a reference to an object that is
// not in PayloadBucket: that message's data is lost, retrying cannot help.
var ErrPayloadMissing = errors.New("referenced payload not in " + PayloadBucket)

// Message is what Data reads: a jetstream.Msg, for one.
type Message interface {
	Headers() nats.Header
	Data() []byte
}

// Data is a message's real data: its own, or, for a reference, the object
// it names. Every consumer reads message data through it.
func Data(ctx context.Context, js jetstream.JetStream, m Message) ([]byte, error) {
	name := m.Headers().Get(HeaderPayload)
	if name == "" {
		return m.Data(), nil
	}
	obs, err := js.ObjectStore(ctx, PayloadBucket)
	if err != nil {
		return nil, fmt.Errorf("bus: payload %s: %w", name, err)
	}
	data, err := obs.GetBytes(ctx, name)
	if errors.Is(err, jetstream.ErrObjectNotFound) {
		return nil, fmt.Errorf("bus: payload %s: %w", name, ErrPayloadMissing)
	}
	if err != nil {
		return nil, fmt.Errorf("bus: payload %s: %w", name, err)
	}
	return data, nil
}

// fit returns m as it can go on the connection: m itself when it fits the
// server's max_payload, else a reference to its data, which is stored in
// PayloadBucket before fit returns (so a reference acknowledged on a stream
// never names a missing object). Objects are named by the data's SHA-256:
// a retry stores nothing twice, and a stored object is never rewritten
// under a reader.
func fit(ctx context.Context, js jetstream.JetStream, m *nats.Msg) (*nats.Msg, error) {
	if len(m.Subject) > MaxSubjectBytes {
		return nil, fmt.Errorf("bus: publish %.64s…: subject of %d bytes, over %d", m.Subject, len(m.Subject), MaxSubjectBytes)
	}
	limit := js.Conn().MaxPayload()
	size := int64(len(m.Data) + headerBytes(m.Header))
	// Before the first connect the limit is unknown (0): publish as is,
	// the client buffers or refuses it.
	if limit <= 0 || size <= limit {
		return m, nil
	}
	sum := sha256.Sum256(m.Data)
	name := "sha256-" + hex.EncodeToString(sum[:])
	obs, err := js.ObjectStore(ctx, PayloadBucket)
	if err != nil {
		return nil, fmt.Errorf("bus: publish %s: %d bytes, over the server's max_payload of %d: %s: %w", m.Subject, size, limit, PayloadBucket, err)
	}
	info, err := obs.GetInfo(ctx, name)
	switch {
	case err == nil && info.Size == uint64(len(m.Data)):
		// Stored by an earlier attempt.
	case err == nil || errors.Is(err, jetstream.ErrObjectNotFound):
		// Chunks must fit the server's limit too (the object store's
		// default, 128 KB, does on any server with a usual limit).
		meta := jetstream.ObjectMeta{Name: name, Opts: &jetstream.ObjectMetaOptions{ChunkSize: uint32(min(128<<10, limit/2))}}
		if _, err := obs.Put(ctx, meta, bytes.NewReader(m.Data)); err != nil {
			return nil, fmt.Errorf("bus: publish %s: store %d bytes in %s: %w", m.Subject, len(m.Data), PayloadBucket, err)
		}
	default:
		return nil, fmt.Errorf("bus: publish %s: %s: %w", m.Subject, PayloadBucket, err)
	}
	ref := nats.NewMsg(m.Subject)
	for k, v := range m.Header {
		ref.Header[k] = v
	}
	ref.Header.Set(HeaderPayload, name)
	if int64(headerBytes(ref.Header)) > limit {
		return nil, fmt.Errorf("bus: publish %s: headers alone are over the server's max_payload of %d", m.Subject, limit)
	}
	return ref, nil
}

// headerBytes is about what h takes on the wire ("NATS/1.0", a
// "key: value" line per value, a blank line).
func headerBytes(h nats.Header) int {
	if len(h) == 0 {
		return 0
	}
	n := len("NATS/1.0\r\n\r\n")
	for k, vs := range h {
		for _, v := range vs {
			n += len(k) + len(": \r\n") + len(v)
		}
	}
	return n
}
