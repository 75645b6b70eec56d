package demo

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/schollz/progressbar/v3"
)

// sender is one Send: where to, and how hard to retry.
type sender struct {
	client      *http.Client
	url, secret string
	concurrency int
	attempts    int           // per webhook, the first included
	backoff     time.Duration // before the first retry; doubles each time
	maxBackoff  time.Duration
}

// Send posts every webhook to url, signed with secret as GitHub signs them,
// using concurrency workers. A 503 or a connection error is retried with a
// short backoff (the collector may be starting or shedding load), up to 10
// tries; any other non-2xx answer fails the whole send. progress, if not
// nil, is called once per delivered webhook, from a single goroutine.
//
// With concurrency > 1 webhooks arrive slightly out of order, as they do
// from GitHub itself.
func Send(ctx context.Context, client *http.Client, url, secret string, hooks []Webhook, concurrency int, progress func(done, total int)) error {
	if client == nil {
		client = http.DefaultClient
	}
	s := sender{client: client, url: url, secret: secret, concurrency: concurrency,
		attempts: 10, backoff: 50 * time.Millisecond, maxBackoff: 2 * time.Second}
	return s.send(ctx, hooks, progress)
}

func (s sender) send(ctx context.Context, hooks []Webhook, progress func(done, total int)) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)

	jobs := make(chan Webhook)
	go func() {
		defer close(jobs)
		for _, h := range hooks {
			select {
			case jobs <- h:
			case <-ctx.Done():
				return
			}
		}
	}()

	results := make(chan error)
	var wg sync.WaitGroup
	for range max(1, min(s.concurrency, len(hooks))) {
		wg.Go(func() {
			for h := range jobs {
				results <- s.deliver(ctx, h)
			}
		})
	}
	go func() {
		wg.Wait()
		close(results)
	}()

	done := 0
	var firstErr error
	for err := range results {
		if err != nil {
			if firstErr == nil {
				firstErr = err
				cancel(err) // stop the others: the run has failed
			}
			continue
		}
		done++
		if progress != nil {
			progress(done, len(hooks))
		}
	}
	if firstErr != nil {
		return firstErr
	}
	if done < len(hooks) {
		return context.Cause(ctx) // cancelled before every webhook was handed out
	}
	return nil
}

// SendWithBar is Send with a progress bar on w.
func SendWithBar(ctx context.Context, client *http.Client, url, secret string, hooks []Webhook, concurrency int, w io.Writer) error {
	bar := progressbar.NewOptions(len(hooks),
		progressbar.OptionSetWriter(w),
		progressbar.OptionSetDescription("sending webhooks"),
		progressbar.OptionShowCount(),
		progressbar.OptionShowIts(),
		progressbar.OptionSetItsString("hooks"),
		progressbar.OptionThrottle(100*time.Millisecond),
		progressbar.OptionOnCompletion(func() { fmt.Fprintln(w) }),
	)
	err := Send(ctx, client, url, secret, hooks, concurrency, func(done, _ int) { _ = bar.Set(done) })
	if err != nil {
		_ = bar.Exit() // leave the bar where it stopped, with the error after it
	}
	return err
}

// Signature is the X-Hub-Signature-256 value GitHub sends for body.
func Signature(secret string, body []byte) string {
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write(body)
	return "sha256=" + hex.EncodeToString(mac.Sum(nil))
}

// errRetry marks an answer worth trying again.
var errRetry = errors.New("temporary failure")

// deliver posts one webhook, retrying what may succeed on a later try.
func (s sender) deliver(ctx context.Context, h Webhook) error {
	sig := Signature(s.secret, h.Body)
	backoff := s.backoff
	for attempt := 1; ; attempt++ {
		err := s.post(ctx, sig, h)
		if err == nil || !errors.Is(err, errRetry) {
			return err
		}
		if attempt >= s.attempts {
			return fmt.Errorf("webhook %s (%s): giving up after %d attempts: %w", h.Delivery, h.Event, attempt, err)
		}
		select {
		case <-time.After(backoff):
		case <-ctx.Done():
			return context.Cause(ctx)
		}
		backoff = min(2*backoff, s.maxBackoff)
	}
}

func (s sender) post(ctx context.Context, sig string, h Webhook) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.url, bytes.NewReader(h.Body))
	if err != nil {
		return fmt.Errorf("webhook %s: %w", h.Delivery, err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "GitHub-Hookshot/doraflow-demo")
	req.Header.Set("X-GitHub-Event", h.Event)
	req.Header.Set("X-GitHub-Delivery", h.Delivery)
	req.Header.Set("X-Hub-Signature-256", sig)
	resp, err := s.client.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return context.Cause(ctx)
		}
		return fmt.Errorf("%w: %w", errRetry, err) // connection refused or reset: the collector may be (re)starting
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 2048))
	_, _ = io.Copy(io.Discard, resp.Body) // drain, so the connection is reused
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		return nil
	case resp.StatusCode == http.StatusServiceUnavailable:
		return fmt.Errorf("%w: %s: %s", errRetry, resp.Status, bytes.TrimSpace(msg))
	default:
		return fmt.Errorf("webhook %s (%s): %s: %s", h.Delivery, h.Event, resp.Status, bytes.TrimSpace(msg))
	}
}
