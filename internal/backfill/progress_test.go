package backfill

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
	"time"
)

// On a terminal: a bar with the targets done of all, their rate, the time
// spent and left, the events and the current wait.
func TestBarProgress(t *testing.T) {
	var out bytes.Buffer
	p := &barProgress{out: &out, label: "backfill:github"}
	p.Start(4)
	p.Phase("acme/a", "deployments", 12)
	p.Wait(Wait{Host: "api.github.com", Reason: "secondary rate limit", For: 60 * time.Second, Until: time.Date(2026, 12, 2, 1, 2, 3, 0, time.UTC)})
	time.Sleep(250 * time.Millisecond) // past the bar's throttle
	p.Done("acme/a", 12)
	p.Finish()
	got := out.String()
	for _, want := range []string{"backfill:github: 12 events", "secondary rate limit, waiting 1m0s (until 01:02:03)", "(1/4, 4 targets/s) [0s:0s]", "4/4"} {
		if !strings.Contains(got, want) {
			t.Errorf("bar lacks %q:\n%q", want, got)
		}
	}
}

// Elsewhere: log lines, with the rate and the time left.
func TestLogProgress(t *testing.T) {
	var out bytes.Buffer
	p := NewProgress(&out, "backfill:github", slog.New(slog.NewTextHandler(&out, nil)))
	p.Start(2)
	p.Phase("acme/a", "deployments", 12)
	p.Wait(Wait{Host: "api.github.com", Reason: "primary rate limit", For: time.Minute, Until: time.Now().Add(time.Minute)})
	p.Done("acme/a", 12)
	p.Finish()
	got := out.String()
	for _, want := range []string{"targets=2", "phase=deployments events=12", `reason="primary rate limit" for=1m0s`, "done=1 of=2", "targets_per_s=", "eta="} {
		if !strings.Contains(got, want) {
			t.Errorf("log lacks %q:\n%s", want, got)
		}
	}
}
