package clickhouse_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"reflect"
	"testing"
	"time"

	"github.com/doraflow/doraflow/internal/benchscale"
	"github.com/doraflow/doraflow/internal/testenv"
	"github.com/doraflow/doraflow/pkg/dora"
	"github.com/doraflow/doraflow/sinks/clickhouse"
)

// TestAggregatesExact checks that the report's figures — whole days from
// the per-day rollups, partial days from the facts — are exactly those of
// the deduplicating queries of before (benchscale.Reference), for all teams
// and each team, over windows aligned to midnight or not, shorter than a
// day or crossing one midnight, and after the team mapping changes (a team
// with nothing to show may now have no row where it had a row of zeros). The
// history has five times the processor's usual churn: deployments rewritten
// as they fail and recover, facts whose time moved (tombstones at the old
// time, within a day and across days and months), facts retracted, rows
// written again unchanged; it is written in small inserts, so many versions
// of a fact or a repo-day sit unmerged in different parts.
func TestAggregatesExact(t *testing.T) {
	ctx := context.Background()
	dsn := testenv.ClickHouse(t)
	store, err := clickhouse.Open(ctx, dsn, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	if _, err := store.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	size := benchscale.Size{Teams: 6, ReposPerTeam: 3, Days: 75, DeploymentsPerDay: 40, ChangesPerDeployment: 4,
		BatchesPerDay: 6, Churn: 5}
	mapping := size.Mapping()
	if err := store.WriteTeams(ctx, mapping, 1); err != nil {
		t.Fatal(err)
	}
	err = benchscale.Chunks(size, 7, 3000, func(bs []benchscale.Batch) error {
		return benchscale.Write(ctx, store, bs)
	})
	if err != nil {
		t.Fatal(err)
	}
	conn, _ := testenv.Conn(t, dsn)

	end := benchscale.End
	day := 24 * time.Hour
	windows := []struct {
		name         string
		since, until time.Time
	}{
		{"30 whole days", end.Add(-31 * day), end.Add(-day)},
		{"--since 30d at 14:37", end.Add(-31*day + 14*time.Hour + 37*time.Minute), end.Add(-day + 14*time.Hour + 37*time.Minute)},
		{"within one day", end.Add(-10*day + 3*time.Hour), end.Add(-10*day + 20*time.Hour)},
		{"across one midnight", end.Add(-10*day + 20*time.Hour), end.Add(-9*day + 5*time.Hour)},
		{"starting at midnight, ending inside a day", end.Add(-40 * day), end.Add(-2*day + time.Hour)},
		{"the whole history and beyond", end.Add(-100 * day), end.Add(day)},
		{"one second", end.Add(-5*day + time.Hour), end.Add(-5*day + time.Hour + time.Second)},
	}
	teams := []string{"", benchscale.Team(0), benchscale.Team(3), "unassigned", "no-such-team"}
	check := func(t *testing.T) {
		for _, w := range windows {
			refTeams, refTotal, err := benchscale.Reference(ctx, conn, store.Database(), w.since, w.until)
			if err != nil {
				t.Fatal(err)
			}
			for _, team := range teams {
				t.Run(fmt.Sprintf("%s/team %q", w.name, team), func(t *testing.T) {
					perTeam, total, err := store.Aggregates(ctx, w.since, w.until, team)
					if err != nil {
						t.Fatal(err)
					}
					wantTeams, wantTotal := refTeams, *refTotal
					if team != "" {
						wantTeams = map[string]*dora.Aggregates{}
						wantTotal = dora.Aggregates{}
						if a := refTeams[team]; a != nil {
							wantTeams[team] = a
							wantTotal = *a
						}
					}
					// A team whose figures are all zero may be a row of
					// zeros or no row: the report shows both alike.
					perTeam, wantTeams = nonZero(perTeam), nonZero(wantTeams)
					if !reflect.DeepEqual(perTeam, wantTeams) {
						for name, a := range wantTeams {
							if got := perTeam[name]; got == nil || *got != *a {
								t.Errorf("team %s: got %+v, want %+v", name, got, a)
							}
						}
						t.Errorf("teams: got %d, want %d", len(perTeam), len(wantTeams))
					}
					if *total != wantTotal {
						t.Errorf("total:\n got %+v\nwant %+v", *total, wantTotal)
					}
				})
			}
		}
	}
	t.Run("as written", check)
	// Re-attribution at query time: team-000's first repository moves to
	// team-003, its service to no team, and team-003's first repository to
	// the empty team (unassigned).
	remap := map[string]string{
		"repo:" + benchscale.Repo(0): benchscale.Team(3), "service:svc-0000": "",
		"repo:" + benchscale.Repo(3*size.ReposPerTeam): "",
	}
	if err := store.WriteTeams(ctx, remap, 2); err != nil {
		t.Fatal(err)
	}
	t.Run("after the team mapping changed", check)
}

func nonZero(m map[string]*dora.Aggregates) map[string]*dora.Aggregates {
	out := map[string]*dora.Aggregates{}
	for k, v := range m {
		if *v != (dora.Aggregates{}) {
			out[k] = v
		}
	}
	return out
}
