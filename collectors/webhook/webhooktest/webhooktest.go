// Package webhooktest holds what every source's parser tests check.
package webhooktest

import (
	"errors"
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
