package backfill

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/time/rate"
)

// TestTransport answers the first request as the case says, the next ones
// with 200, and checks what the transport waited for and what reached the
// client.
func TestTransport(t *testing.T) {
	for _, tc := range []struct {
		name     string
		first    func(w http.ResponseWriter)
		requests int    // the server saw
		reason   string // of the one wait; "" for none
		minWait  time.Duration
		code     int // the client got
	}{
		{
			name: "primary limit waits for the reset",
			first: func(w http.ResponseWriter) {
				w.Header().Set("X-RateLimit-Remaining", "0")
				w.Header().Set("X-RateLimit-Reset", strconv.FormatInt(time.Now().Add(time.Second).Unix(), 10))
				w.WriteHeader(http.StatusForbidden)
			},
			requests: 2, reason: "primary rate limit", minWait: time.Second, code: 200,
		},
		{
			name: "primary limit as 429",
			first: func(w http.ResponseWriter) {
				w.Header().Set("X-RateLimit-Remaining", "0")
				w.Header().Set("X-RateLimit-Reset", strconv.FormatInt(time.Now().Unix(), 10))
				w.WriteHeader(http.StatusTooManyRequests)
			},
			requests: 2, reason: "primary rate limit", code: 200,
		},
		{
			name: "secondary limit waits Retry-After",
			first: func(w http.ResponseWriter) {
				w.Header().Set("Retry-After", "1")
				w.Header().Set("X-RateLimit-Remaining", "4000")
				w.WriteHeader(http.StatusForbidden)
			},
			requests: 2, reason: "secondary rate limit", minWait: time.Second, code: 200,
		},
		{
			name:     "transient 502 backs off",
			first:    func(w http.ResponseWriter) { w.WriteHeader(http.StatusBadGateway) },
			requests: 2, reason: "transient error: 502 Bad Gateway", code: 200,
		},
		{
			name:     "a 403 without rate-limit headers is a refusal",
			first:    func(w http.ResponseWriter) { w.WriteHeader(http.StatusForbidden) },
			requests: 1, code: 403,
		},
		{
			name:     "no rate-limit headers at all (GitHub Enterprise Server, limits off)",
			first:    func(w http.ResponseWriter) { w.WriteHeader(http.StatusOK) },
			requests: 1, code: 200,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var n atomic.Int32
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				if n.Add(1) == 1 {
					tc.first(w)
					return
				}
				w.WriteHeader(http.StatusOK)
			}))
			defer srv.Close()
			var waits []Wait
			tr := &Transport{OnWait: func(w Wait) { waits = append(waits, w) }}
			req, _ := http.NewRequestWithContext(context.Background(), http.MethodGet, srv.URL, nil)
			start := time.Now()
			resp, err := (&http.Client{Transport: tr}).Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tc.code || int(n.Load()) != tc.requests {
				t.Errorf("got %d after %d requests; want %d after %d", resp.StatusCode, n.Load(), tc.code, tc.requests)
			}
			switch {
			case tc.reason == "" && len(waits) > 0:
				t.Errorf("waited: %v", waits)
			case tc.reason != "" && (len(waits) != 1 || waits[0].Reason != tc.reason):
				t.Errorf("waits %v; want one for %q", waits, tc.reason)
			}
			if el := time.Since(start); el < tc.minWait {
				t.Errorf("returned after %s; want at least %s", el, tc.minWait)
			}
			if resp.Header.Get("X-RateLimit-Remaining") != "" {
				t.Error("rate-limit headers reached the client: go-github would refuse requests by itself")
			}
		})
	}
}

// A success that used the window's last request holds every request, of
// every goroutine, until the reset: the limit is the token's.
func TestTransportPausesAllAtLimit(t *testing.T) {
	reset := time.Now().Add(time.Second).Truncate(time.Second).Add(time.Second)
	var n atomic.Int32
	var mu sync.Mutex
	var late []time.Time
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		if n.Add(1) == 1 {
			w.Header().Set("X-RateLimit-Remaining", "0")
			w.Header().Set("X-RateLimit-Reset", strconv.FormatInt(reset.Unix(), 10))
		} else {
			mu.Lock()
			late = append(late, time.Now())
			mu.Unlock()
		}
		w.WriteHeader(http.StatusOK)
	}))
	defer srv.Close()
	client := &http.Client{Transport: &Transport{}}
	get := func() {
		resp, err := client.Get(srv.URL)
		if err != nil {
			t.Error(err)
			return
		}
		resp.Body.Close()
	}
	get()
	var wg sync.WaitGroup
	for range 3 {
		wg.Add(1)
		go func() { defer wg.Done(); get() }()
	}
	wg.Wait()
	for _, at := range late {
		if at.Before(reset) {
			t.Errorf("a request at %s, before the reset at %s", at.Format(time.StampMilli), reset.Format(time.StampMilli))
		}
	}
}

func TestConfigValidate(t *testing.T) {
	now := time.Date(2026, 12, 2, 1, 0, 0, 0, time.UTC)
	day := 24 * time.Hour
	for _, tc := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"ok", Config{Since: now.Add(-90 * day), Until: now, Now: now, Keep: 400 * day, Concurrency: 4}, ""},
		{"beyond retention", Config{Since: now.Add(-500 * day), Until: now, Now: now, Keep: 400 * day, Concurrency: 4}, "raise processor.retention.keep"},
		{"no since", Config{Until: now, Now: now, Concurrency: 4}, "--since is required"},
		{"inverted", Config{Since: now, Until: now.Add(-day), Now: now, Concurrency: 4}, "is not before the end"},
		{"no concurrency", Config{Since: now.Add(-day), Until: now, Now: now}, "--concurrency 0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			switch {
			case tc.want == "" && err != nil:
				t.Fatal(err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("error %v; want one saying %q", err, tc.want)
			}
		})
	}
}

// Pace spaces the requests of every goroutine.
func TestTransportPace(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) }))
	defer srv.Close()
	client := &http.Client{Transport: &Transport{Pace: rate.NewLimiter(20, 1)}}
	start := time.Now()
	var wg sync.WaitGroup
	for range 11 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := client.Get(srv.URL)
			if err != nil {
				t.Error(err)
				return
			}
			resp.Body.Close()
		}()
	}
	wg.Wait()
	// The first goes at once, the ten others 50 ms apart.
	if el := time.Since(start); el < 450*time.Millisecond {
		t.Errorf("11 requests at 20 a second took %s", el)
	}
}
