package correlate

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/doraflow/doraflow/pkg/event"
)

var t0 = time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)

func h(n int) time.Time { return t0.Add(time.Duration(n) * time.Hour) }

func testConfig() Config {
	return Config{
		IsProduction: func(env string) bool { return strings.EqualFold(env, "production") },
		TeamOfRepo: func(repo string) string {
			if strings.HasPrefix(repo, "acme/") {
				return "acme"
			}
			return "unassigned"
		},
		TeamOfService: func(s string) string {
			if s == "api-svc" || strings.HasPrefix(s, "acme/") {
				return "acme"
			}
			return "unassigned"
		},
		Lookback: 72 * time.Hour,
	}
}

const repo = "acme/api"

func push(before, after string, forced bool, commits ...event.Commit) event.Event {
	return event.Event{ID: fmt.Sprintf("push:%s:%s", before, after), Source: "t", Type: event.TypePush, Repo: repo,
		OccurredAt: t0, Push: &event.Push{Ref: "refs/heads/main", Before: before, After: after, Forced: forced, Commits: commits}}
}

func branchPush(before, after string, commits ...event.Commit) event.Event {
	e := push(before, after, false, commits...)
	e.ID += ":feature"
	e.Push.Ref = "refs/heads/feature"
	return e
}

func c(sha string, hour int) event.Commit { return event.Commit{SHA: sha, Time: h(hour)} }

func deploy(id, sha, env, status string, hour int) event.Event {
	return event.Event{ID: "dep:" + id + ":" + status, Source: "t", Type: event.TypeDeployment, Repo: repo, Service: repo,
		OccurredAt: h(hour), Deployment: &event.Deployment{ID: id, SHA: sha, Environment: env, Status: status}}
}

func merge(mergeSHA, head string, commits int) event.Event {
	return event.Event{ID: "merge:" + mergeSHA, Source: "t", Type: event.TypeMerge, Repo: repo, OccurredAt: t0,
		Merge: &event.Merge{MergeSHA: mergeSHA, HeadSHA: head, Commits: commits}}
}

func incident(id, service string, opened int, resolved int, snapshot int) event.Event {
	inc := &event.Incident{ID: id, OpenedAt: h(opened)}
	if resolved >= 0 {
		r := h(resolved)
		inc.ResolvedAt = &r
	}
	return event.Event{ID: fmt.Sprintf("inc:%s:%d:%v", id, snapshot, resolved >= 0), Source: "t", Type: event.TypeIncident, Service: service,
		OccurredAt: h(snapshot), Incident: inc}
}

const zero = event.ZeroSHA

func withDeployment(e event.Event, id string) event.Event {
	e.Incident.DeploymentID = id
	return e
}

// summary is a readable digest of the facts for table tests.
func summary(f Facts) []string {
	var out []string
	for _, r := range f.Deployments {
		d := r.Fact
		if !d.Production {
			continue
		}
		s := fmt.Sprintf("%s changes=%d", d.ID, d.Changes)
		for _, flag := range []struct {
			on   bool
			name string
		}{{d.Rollback, "rollback"}, {d.Failed, "failed"}, {d.Rework, "rework"}, {d.Approximate, "approximate"}} {
			if flag.on {
				s += " " + flag.name
			}
		}
		if d.Incidents > 0 {
			s += fmt.Sprintf(" incidents=%d", d.Incidents)
		}
		if d.RecoveredAt != nil {
			s += fmt.Sprintf(" recovered=+%s", d.RecoveredAt.Sub(d.FinishedAt))
		}
		out = append(out, s)
	}
	for _, r := range f.Changes {
		out = append(out, fmt.Sprintf("change %s@%s lead=%s", r.Fact.SHA, r.Fact.DeploymentID, r.Fact.LeadTime()))
	}
	for _, r := range f.Incidents {
		out = append(out, fmt.Sprintf("incident %s → %s (%s)", r.Fact.ID, r.Fact.DeploymentID, r.Fact.Attribution))
	}
	slices.Sort(out)
	return out
}

func TestCorrelation(t *testing.T) {
	cases := []struct {
		name   string
		events []event.Event
		want   []string
	}{
		{
			name: "changes between consecutive deployments, staging and failed attempts are not deployments",
			events: []event.Event{
				push(zero, "a1", false, c("a1", 0)),
				deploy("1", "a1", "production", event.StatusSuccess, 2),
				push("a1", "a3", false, c("a2", 3), c("a3", 4)),
				deploy("2", "a3", "staging", event.StatusSuccess, 5),
				deploy("3", "a3", "production", event.StatusFailure, 6),
				deploy("4", "a3", "production", event.StatusSuccess, 8),
			},
			want: []string{"1 changes=1", "4 changes=2", "change a1@1 lead=2h0m0s", "change a2@4 lead=5h0m0s", "change a3@4 lead=4h0m0s"},
		},
		{
			name: "rollback fails the deployments it undoes; a re-run of the live sha is not a rollback",
			events: []event.Event{
				push(zero, "a1", false, c("a1", 0)),
				deploy("1", "a1", "production", event.StatusSuccess, 1),
				deploy("1b", "a1", "production", event.StatusSuccess, 2),
				push("a1", "a2", false, c("a2", 2)),
				deploy("2", "a2", "production", event.StatusSuccess, 3),
				push("a2", "a3", false, c("a3", 3)),
				deploy("3", "a3", "production", event.StatusSuccess, 4),
				deploy("4", "a1", "production", event.StatusSuccess, 6),
			},
			want: []string{"1 changes=1", "1b changes=0", "2 changes=1 failed recovered=+3h0m0s", "3 changes=1 failed recovered=+2h0m0s",
				"4 changes=0 rollback rework", "change a1@1 lead=1h0m0s", "change a2@2 lead=1h0m0s", "change a3@3 lead=1h0m0s"},
		},
		{
			name: "squash merge: the pull request's own commits count, not the squash commit",
			events: []event.Event{
				push(zero, "m1", false, c("m1", 0)),
				deploy("1", "m1", "production", event.StatusSuccess, 1),
				branchPush(zero, "f2", c("f1", 2), c("f2", 3)),
				push("m1", "sq", false, c("sq", 10)),
				merge("sq", "f2", 2),
				deploy("2", "sq", "production", event.StatusSuccess, 12),
			},
			want: []string{"1 changes=1", "2 changes=2", "change f1@2 lead=10h0m0s", "change f2@2 lead=9h0m0s", "change m1@1 lead=1h0m0s"},
		},
		{
			name: "rebase merge: rewritten commits are replaced by the originals",
			events: []event.Event{
				push(zero, "m1", false, c("m1", 0)),
				deploy("1", "m1", "production", event.StatusSuccess, 1),
				branchPush(zero, "f2", c("f1", 2), c("f2", 3)),
				push("m1", "r2", false, c("r1", 10), c("r2", 10)),
				merge("r2", "f2", 2),
				deploy("2", "r2", "production", event.StatusSuccess, 12),
			},
			want: []string{"1 changes=1", "2 changes=2", "change f1@2 lead=10h0m0s", "change f2@2 lead=9h0m0s", "change m1@1 lead=1h0m0s"},
		},
		{
			name: "true merge commit: branch commits and the merge commit each count once",
			events: []event.Event{
				push(zero, "m1", false, c("m1", 0)),
				deploy("1", "m1", "production", event.StatusSuccess, 1),
				branchPush(zero, "f1", c("f1", 2)),
				push("m1", "mc", false, c("f1", 2), c("mc", 5)),
				merge("mc", "f1", 1),
				deploy("2", "mc", "production", event.StatusSuccess, 6),
			},
			want: []string{"1 changes=1", "2 changes=2", "change f1@2 lead=4h0m0s", "change m1@1 lead=1h0m0s", "change mc@2 lead=1h0m0s"},
		},
		{
			name: "force push leaves a gap: the deployment is approximate",
			events: []event.Event{
				push(zero, "a1", false, c("a1", 0)),
				deploy("1", "a1", "production", event.StatusSuccess, 1),
				push("a1", "b2", true, c("b1", 2), c("b2", 3)),
				deploy("2", "b2", "production", event.StatusSuccess, 4),
			},
			want: []string{"1 changes=1", "2 changes=2 approximate", "change a1@1 lead=1h0m0s", "change b1@2 lead=2h0m0s", "change b2@2 lead=1h0m0s"},
		},
		{
			name: "deployment whose push never arrived is approximate with no changes",
			events: []event.Event{
				deploy("1", "x9", "production", event.StatusSuccess, 1),
			},
			want: []string{"1 changes=0 approximate"},
		},
		{
			name: "incident attributed by service, fix-forward is rework, restore time from resolution",
			events: []event.Event{
				push(zero, "a1", false, c("a1", 0)),
				deploy("1", "a1", "production", event.StatusSuccess, 1),
				push("a1", "a2", false, c("a2", 2)),
				incident("i1", repo, 3, -1, 3),
				deploy("2", "a2", "production", event.StatusSuccess, 4),
				incident("i1", repo, 3, 6, 6),
			},
			want: []string{"1 changes=1 failed incidents=1 recovered=+5h0m0s", "2 changes=1 rework",
				"change a1@1 lead=1h0m0s", "change a2@2 lead=2h0m0s", "incident i1 → 1 (service)"},
		},
		{
			name: "incident attributed by team when its service has no deployments; none outside the look-back",
			events: []event.Event{
				push(zero, "a1", false, c("a1", 0)),
				deploy("1", "a1", "production", event.StatusSuccess, 1),
				incident("i1", "api-svc", 10, 11, 11),
				incident("i2", "api-svc", 100, 101, 101),
			},
			want: []string{"1 changes=1 failed incidents=1 recovered=+10h0m0s", "change a1@1 lead=1h0m0s",
				"incident i1 → 1 (team)", "incident i2 →  (none)"},
		},
		{
			name: "explicit attribution wins; resolved snapshot seen before the opened one",
			events: []event.Event{
				push(zero, "a1", false, c("a1", 0)),
				deploy("1", "a1", "production", event.StatusSuccess, 1),
				push("a1", "a2", false, c("a2", 1)),
				deploy("2", "a2", "production", event.StatusSuccess, 2),
				func() event.Event {
					e := incident("i1", "api-svc", 3, 5, 5)
					e.Incident.DeploymentID = "1"
					return e
				}(),
				func() event.Event {
					e := incident("i1", "api-svc", 3, -1, 3)
					e.Incident.DeploymentID = "1"
					return e
				}(),
			},
			want: []string{"1 changes=1 failed incidents=1 recovered=+4h0m0s", "2 changes=1",
				"change a1@1 lead=1h0m0s", "change a2@2 lead=1h0m0s", "incident i1 → 1 (explicit)"},
		},
	}
	cases = append(cases, []struct {
		name   string
		events []event.Event
		want   []string
	}{
		{
			name: "explicit attribution survives a resolve that does not repeat it",
			events: []event.Event{
				deploy("1", "a1", "production", event.StatusSuccess, 1),
				deploy("2", "a2", "production", event.StatusSuccess, 2),
				withDeployment(incident("i1", "api-svc", 3, -1, 3), "1"),
				incident("i1", "api-svc", 3, 5, 5),
			},
			want: []string{"1 changes=0 failed approximate incidents=1 recovered=+4h0m0s", "2 changes=0 approximate",
				"incident i1 → 1 (explicit)"},
		},
		{
			name: "an explicit deployment id is looked up in the incident's repository",
			events: []event.Event{
				deploy("7", "a1", "production", event.StatusSuccess, 1),
				func() event.Event {
					e := deploy("7", "b1", "production", event.StatusSuccess, 1)
					e.ID, e.Repo, e.Service = "other:"+e.ID, "acme/other", "acme/other"
					return e
				}(),
				func() event.Event {
					e := withDeployment(incident("i1", "", 3, 4, 4), "7")
					e.Repo = "acme/other"
					return e
				}(),
			},
			want: []string{"7 changes=0 approximate", "7 changes=0 failed approximate incidents=1 recovered=+3h0m0s",
				"incident i1 → 7 (explicit)"},
		},
		{
			name: "an explicit sha finds the deployment that shipped it without any push",
			events: []event.Event{
				deploy("1", "a1", "production", event.StatusSuccess, 1),
				deploy("2", "a2", "production", event.StatusSuccess, 2),
				func() event.Event {
					e := incident("i1", "elsewhere", 3, 4, 4)
					e.Incident.SHA = "a1"
					return e
				}(),
			},
			want: []string{"1 changes=0 failed approximate incidents=1 recovered=+3h0m0s", "2 changes=0 approximate",
				"incident i1 → 1 (sha)"},
		},
	}...)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := New(testConfig())
			for _, e := range tc.events {
				s.Apply(e)
			}
			s.Flush()
			got := summary(s.Current())
			want := slices.Clone(tc.want)
			slices.Sort(want)
			if !slices.Equal(got, want) {
				t.Errorf("facts:\n got  %q\n want %q", got, want)
			}
		})
	}
}

// A gap in the push chain is reported with the range to compare; a push
// carrying the compared commits closes it and makes the deployment exact.
func TestGapsAndFill(t *testing.T) {
	s := New(testConfig())
	for _, e := range []event.Event{
		push(zero, "a1", false, c("a1", 0)),
		deploy("1", "a1", "production", event.StatusSuccess, 1),
		push("a2", "a3", false, c("a3", 3)), // the push of a2 was missed
		deploy("2", "a3", "production", event.StatusSuccess, 4),
	} {
		s.Apply(e)
	}
	s.Flush()
	gaps := s.Gaps()
	if len(gaps) != 1 || gaps[0] != (Gap{Repo: repo, Host: "t", Base: "a1", Head: "a3"}) {
		t.Fatalf("gaps: %+v", gaps)
	}
	fill := push("a1", "a3", false, c("a2", 2), c("a3", 3))
	fill.ID = "compare:a1...a3"
	s.Apply(fill)
	s.Flush()
	want := []string{"1 changes=1", "2 changes=2", "change a1@1 lead=1h0m0s", "change a2@2 lead=2h0m0s", "change a3@2 lead=1h0m0s"}
	if got := summary(s.Current()); !slices.Equal(got, want) {
		t.Errorf("after the fill:\n got  %q\n want %q", got, want)
	}
	if len(s.Gaps()) != 0 || s.Approximate() != 0 {
		t.Errorf("gaps remain: %+v, approximate %d", s.Gaps(), s.Approximate())
	}
}
