package backfill

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v5"
	"golang.org/x/time/rate"
)

// Wait is a pause the Transport makes before the next request to an API.
type Wait struct {
	Host   string
	Reason string // "primary rate limit", "secondary rate limit", "transient error: …"
	For    time.Duration
	Until  time.Time
}

func (w Wait) String() string {
	return fmt.Sprintf("%s: %s, waiting %s (until %s)", w.Host, w.Reason, w.For.Round(time.Second), w.Until.UTC().Format(time.TimeOnly))
}

// Transport is the http.RoundTripper of every backfill client. It owns
// rate limiting, for all requests to one API at once (several repositories
// are fetched concurrently, and the limit is the token's, not the
// repository's):
//
//   - a primary limit (403 or 429 with X-RateLimit-Remaining: 0, or
//     GitLab's RateLimit-Remaining: 0) waits until X-RateLimit-Reset
//     (RateLimit-Reset), and so does every other request, and so does a
//     success that used the last request of the window;
//   - a secondary limit (403 or 429 with Retry-After) waits that long;
//   - a 429 that says neither, a 5xx or a broken connection is retried
//     with exponential backoff, MaxRetries times.
//
// An API that sends no rate-limit headers (GitHub Enterprise Server with
// rate limiting off) is simply not waited for. The rate-limit headers are
// removed from the response once acted upon: go-github otherwise refuses
// the next request itself, without sending it, until the reset.
type Transport struct {
	Base http.RoundTripper
	// OnWait is told of each pause before it starts; nil tells no one.
	OnWait func(Wait)
	// MaxRetries bounds the retries of one request after transient
	// errors (rate-limit waits are not counted): default 6.
	MaxRetries int
	// MaxWait bounds one rate-limit pause (a reset announced hours ahead
	// is waited for at most this long, then asked again): default 1h.
	MaxWait time.Duration
	// Pace, when set, spaces the requests of all goroutines: GitHub's
	// secondary limit refuses more than 900 requests a minute (and may
	// block a token that keeps coming back), GitLab.com takes 2,000,
	// PagerDuty 960. Nil sends as fast as the answers come.
	Pace *rate.Limiter
	// now is time.Now except in tests.
	now func() time.Time

	mu     sync.Mutex
	paused time.Time // no request before this
}

func (t *Transport) base() http.RoundTripper {
	if t.Base != nil {
		return t.Base
	}
	return http.DefaultTransport
}

func (t *Transport) clock() time.Time {
	if t.now != nil {
		return t.now()
	}
	return time.Now()
}

// RoundTrip sends req, waiting and retrying as the API asks.
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	ctx := req.Context()
	bo := backoff.NewExponentialBackOff()
	bo.InitialInterval = 500 * time.Millisecond
	bo.MaxInterval = 30 * time.Second
	maxRetries := t.MaxRetries
	if maxRetries == 0 {
		maxRetries = 6
	}
	retries := 0
	for {
		if err := t.awaitPause(ctx); err != nil {
			return nil, err
		}
		if t.Pace != nil {
			if err := t.Pace.Wait(ctx); err != nil {
				return nil, fmt.Errorf("%s %s: %w", req.Method, req.URL.Redacted(), err)
			}
		}
		attempt, err := rewind(req)
		if err != nil {
			return nil, err
		}
		resp, err := t.base().RoundTrip(attempt)
		var wait Wait
		switch {
		case err != nil:
			if ctx.Err() != nil {
				return nil, err
			}
			wait = Wait{Reason: "transient error: " + err.Error()}
		default:
			var limited bool
			wait, limited = t.rateLimit(resp)
			if !limited && !transient(resp.StatusCode) {
				if wait.For > 0 {
					// The window's last request: the next ones wait.
					t.announce(req, wait)
				}
				consumeRateHeaders(resp.Header)
				return resp, nil
			}
			if !limited {
				wait = Wait{Reason: "transient error: " + resp.Status}
			}
		}
		if wait.For == 0 {
			// Transient: back off, a bounded number of times.
			if retries >= maxRetries {
				if err != nil {
					return nil, fmt.Errorf("%s %s: %w (after %d retries)", req.Method, req.URL.Redacted(), err, retries)
				}
				consumeRateHeaders(resp.Header)
				return resp, nil
			}
			retries++
			wait.For = bo.NextBackOff()
		}
		if resp != nil {
			_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
			resp.Body.Close()
		}
		t.announce(req, wait)
	}
}

// announce holds every request for w.For and says so.
func (t *Transport) announce(req *http.Request, w Wait) {
	w.Host = req.URL.Host
	w.Until = t.clock().Add(w.For)
	t.pause(w.Until)
	if t.OnWait != nil {
		t.OnWait(w)
	}
}

// rewind is req ready to be sent (again): a request with a body needs
// GetBody to be sent twice.
func rewind(req *http.Request) (*http.Request, error) {
	if req.Body == nil || req.Body == http.NoBody {
		return req, nil
	}
	if req.GetBody == nil {
		return req, nil
	}
	body, err := req.GetBody()
	if err != nil {
		return nil, fmt.Errorf("%s %s: rewind body: %w", req.Method, req.URL.Redacted(), err)
	}
	r := req.Clone(req.Context())
	r.Body = body
	return r, nil
}

func transient(code int) bool {
	return code == http.StatusTooManyRequests || code == http.StatusBadGateway ||
		code == http.StatusServiceUnavailable || code == http.StatusGatewayTimeout || code == http.StatusInternalServerError
}

// rateLimit reads what resp says about the rate limit: limited is true
// when resp is a refusal to wait out (For is then how long, or 0 for a
// 429 that says nothing: back off); for a success that used the window's
// last request, limited is false and For is how long the next must wait.
func (t *Transport) rateLimit(resp *http.Response) (Wait, bool) {
	h := resp.Header
	refused := resp.StatusCode == http.StatusForbidden || resp.StatusCode == http.StatusTooManyRequests
	remaining := firstHeader(h, "X-RateLimit-Remaining", "RateLimit-Remaining")
	reset := t.resetAt(firstHeader(h, "X-RateLimit-Reset", "RateLimit-Reset"))
	maxWait := t.MaxWait
	if maxWait == 0 {
		maxWait = time.Hour
	}
	if remaining == "0" && !reset.IsZero() {
		d := min(max(reset.Sub(t.clock()), 0)+time.Second, maxWait)
		if refused {
			return Wait{Reason: "primary rate limit", For: d}, true
		}
		return Wait{Reason: "primary rate limit used up", For: d}, false
	}
	if !refused {
		return Wait{}, false
	}
	if ra := h.Get("Retry-After"); ra != "" {
		if secs, err := strconv.Atoi(ra); err == nil && secs >= 0 {
			return Wait{Reason: "secondary rate limit", For: min(time.Duration(secs)*time.Second, maxWait)}, true
		}
		if at, err := http.ParseTime(ra); err == nil {
			return Wait{Reason: "secondary rate limit", For: min(max(at.Sub(t.clock()), time.Second), maxWait)}, true
		}
	}
	// A 403 without a rate-limit header is a real refusal (permissions);
	// a bare 429 is backed off.
	return Wait{}, resp.StatusCode == http.StatusTooManyRequests
}

// resetAt reads a reset header: Unix seconds (GitHub, GitLab) or, for a
// small number, seconds from now (PagerDuty's ratelimit-reset).
func (t *Transport) resetAt(v string) time.Time {
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 {
		return time.Time{}
	}
	if n < 1e9 {
		return t.clock().Add(time.Duration(n) * time.Second)
	}
	return time.Unix(n, 0)
}

func firstHeader(h http.Header, names ...string) string {
	for _, n := range names {
		if v := h.Get(n); v != "" {
			return v
		}
	}
	return ""
}

func consumeRateHeaders(h http.Header) {
	for _, n := range []string{"X-RateLimit-Remaining", "X-RateLimit-Reset", "X-RateLimit-Limit", "X-RateLimit-Used", "X-RateLimit-Resource"} {
		h.Del(n)
	}
}

func (t *Transport) pause(until time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if until.After(t.paused) {
		t.paused = until
	}
}

func (t *Transport) awaitPause(ctx context.Context) error {
	for {
		t.mu.Lock()
		d := t.paused.Sub(t.clock())
		t.mu.Unlock()
		if d <= 0 {
			return nil
		}
		timer := time.NewTimer(d)
		select {
		case <-ctx.Done():
			timer.Stop()
			return fmt.Errorf("waiting for the API's rate limit: %w", context.Cause(ctx))
		case <-timer.C:
		}
	}
}
