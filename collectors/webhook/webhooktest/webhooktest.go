// Package webhooktest holds what every source's parser tests check.
package webhooktest

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/doraflow/doraflow/collectors/webhook"
	"github.com/doraflow/doraflow/pkg/event"
)

// Expect checks a Parse result against a table case: ignored (with that
// reason), refused (with bad in the error), or else exactly one valid event,
// which it returns with ok true.
func Expect(t testing.TB, events []event.Event, err error, ignored, bad string) (e event.Event, ok bool) {
	t.Helper()
	switch {
	case ignored != "":
		if !errors.Is(err, webhook.ErrIgnored) || !strings.Contains(err.Error(), ignored) {
			t.Fatalf("want ignored (%s), got %v %v", ignored, events, err)
		}
		return event.Event{}, false
	case bad != "":
		if err == nil || errors.Is(err, webhook.ErrIgnored) || !strings.Contains(err.Error(), bad) {
			t.Fatalf("want error containing %q, got %v %v", bad, events, err)
		}
		return event.Event{}, false
	}
	if err != nil || len(events) != 1 {
		t.Fatalf("got %v, %v", events, err)
	}
	if err := events[0].Validate(); err != nil {
		t.Fatal(err)
	}
	return events[0], true
}

// SeedTestdata adds every testdata/*.json body to a fuzz corpus, once under
// each event type, as (event type, body) pairs.
func SeedTestdata(f *testing.F, eventTypes ...string) {
	files, err := filepath.Glob(filepath.Join("testdata", "*.json"))
	if err != nil {
		f.Fatal(err)
	}
	for _, file := range files {
		body, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		for _, typ := range eventTypes {
			f.Add(typ, body)
		}
	}
}

// ValidEvents fails the test if a parse that succeeded returned an event
// the processor could not use.
func ValidEvents(t testing.TB, typ string, events []event.Event, err error) {
	t.Helper()
	if err != nil {
		return
	}
	for _, e := range events {
		if err := e.Validate(); err != nil {
			t.Errorf("invalid event from %s: %v", typ, err)
		}
	}
}
