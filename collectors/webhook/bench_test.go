package webhook_test

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/doraflow/doraflow/collectors/github"
	"github.com/doraflow/doraflow/collectors/webhook"
	"github.com/doraflow/doraflow/internal/githubtest"
	"github.com/doraflow/doraflow/pkg/bus"
	"github.com/doraflow/doraflow/pkg/telemetry"
)

// The collector's cost is stated against the bare bus: BenchmarkBareJetStream
// publishes what a push delivery publishes (its raw body and one event,
// waiting for both acks) with no HTTP, authentication or parsing;
// BenchmarkGitHubPush serves the same delivery through the real handler.
// Compare their ns/op (same run, same embedded file-backed JetStream).

func openBus(b *testing.B) *bus.Bus {
	bb, err := bus.Open(context.Background(), bus.Options{DataDir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(bb.Close)
	return bb
}

func pushBody(b *testing.B) []byte {
	body, err := os.ReadFile("../github/testdata/push.with-new-branch.payload.json")
	if err != nil {
		b.Fatal(err)
	}
	return body
}

func BenchmarkBareJetStream(b *testing.B) {
	bb := openBus(b)
	body := pushBody(b)
	ctx := context.Background()
	b.SetBytes(int64(len(body)))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		raw := nats.NewMsg("doraflow.raw.github.push")
		raw.Data = body
		raw.Header.Set(nats.MsgIdHdr, "raw-"+strconv.Itoa(i))
		ev := nats.NewMsg("doraflow.events.0.push")
		ev.Data = body[:600] // about the size of a canonical push event
		ev.Header.Set(nats.MsgIdHdr, "ev-"+strconv.Itoa(i))
		if err := bus.PublishAll(ctx, bb.JS, []*nats.Msg{raw, ev}); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkGitHubPush(b *testing.B) {
	bb := openBus(b)
	body := pushBody(b)
	src, err := github.New(github.Config{WebhookSecret: "bench"})
	if err != nil {
		b.Fatal(err)
	}
	pub := webhook.PublisherFunc(func(ctx context.Context, msgs []*nats.Msg) error { return bus.PublishAll(ctx, bb.JS, msgs) })
	h := webhook.NewHandler(src, pub, webhook.Options{MaxBodyBytes: 25 << 20, PublishTimeout: 10 * time.Second, Partitions: 8},
		telemetry.New(), slog.New(slog.NewTextHandler(io.Discard, nil)))
	sig := githubtest.Sign("bench", body)
	b.SetBytes(int64(len(body)))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		// Each delivery is a distinct fact, as in real traffic.
		r := httptest.NewRequest(http.MethodPost, "/webhooks/github", bytes.NewReader(body))
		r.Header.Set("Content-Type", "application/json")
		r.Header.Set("X-GitHub-Event", "push")
		r.Header.Set("X-GitHub-Delivery", "d-"+strconv.Itoa(i))
		r.Header.Set("X-Hub-Signature-256", sig)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != http.StatusAccepted {
			b.Fatalf("%d %s", w.Code, w.Body)
		}
	}
}
