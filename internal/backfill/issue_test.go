package backfill

import (
	"testing"
	"time"

	gh "github.com/google/go-github/v60/github"
)

func TestIssueAction(t *testing.T) {
	t0 := time.Date(2026, 11, 1, 10, 0, 0, 0, time.UTC)
	ts := func(t time.Time) *gh.Timestamp { return &gh.Timestamp{Time: t} }
	for _, tc := range []struct {
		name  string
		issue gh.Issue
		want  string
	}{
		{"closed by its last update", gh.Issue{State: gh.String("closed"), CreatedAt: ts(t0), UpdatedAt: ts(t0.Add(time.Hour)), ClosedAt: ts(t0.Add(time.Hour))}, "closed"},
		{"commented after closing", gh.Issue{State: gh.String("closed"), CreatedAt: ts(t0), UpdatedAt: ts(t0.Add(2 * time.Hour)), ClosedAt: ts(t0.Add(time.Hour))}, "backfill"},
		{"never updated", gh.Issue{State: gh.String("open"), CreatedAt: ts(t0), UpdatedAt: ts(t0)}, "opened"},
		{"labelled later", gh.Issue{State: gh.String("open"), CreatedAt: ts(t0), UpdatedAt: ts(t0.Add(time.Minute))}, "backfill"},
	} {
		if got := issueAction(&tc.issue); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
}
