package clickhouse

import (
	"context"
	"testing"
	"testing/fstest"
	"time"

	"github.com/doraflow/doraflow/pkg/dora"
	"github.com/doraflow/doraflow/processor/correlate"
)

// A store with facts from before the rollups gets them from migration 0002:
// the latest live facts of each repo and day, so a report over whole days
// (read from the rollups alone) has every figure.
func TestMigrationBackfillsRollups(t *testing.T) {
	s := open(t)
	ctx := context.Background()
	// The store as it was: the first migration only.
	raw, err := migrations.ReadFile("migrations/0001_facts.up.sql")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.migrate(ctx, fstest.MapFS{"migrations/0001_facts.up.sql": {Data: raw}}); err != nil {
		t.Fatal(err)
	}
	day1 := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	h := func(hours int) time.Time { return day1.Add(time.Duration(hours) * time.Hour) }
	recovered := h(12)
	d1 := correlate.DeploymentFact{Repo: "a/b", ID: "1", Environment: "production", Production: true, FinishedAt: h(10)}
	d1failed := d1
	d1failed.Failed, d1failed.RecoveredAt = true, &recovered
	d2 := correlate.DeploymentFact{Repo: "a/b", ID: "2", Environment: "production", Production: true, FinishedAt: h(11)}
	d2moved := d2
	d2moved.FinishedAt, d2moved.Rework = h(25), true
	staging := correlate.DeploymentFact{Repo: "a/b", ID: "3", Environment: "staging", FinishedAt: h(9)}
	c1 := correlate.ChangeFact{Repo: "a/b", SHA: "c1", DeploymentID: "1", CommittedAt: h(9), DeployedAt: h(10)}
	c2 := correlate.ChangeFact{Repo: "a/b", SHA: "c2", DeploymentID: "1", CommittedAt: h(8), DeployedAt: h(10)}
	c3 := correlate.ChangeFact{Repo: "a/b", SHA: "c3", DeploymentID: "2", CommittedAt: h(5), DeployedAt: h(11)}
	c3moved := c3
	c3moved.DeployedAt = h(25)
	type dep = correlate.Row[correlate.DeploymentFact]
	type chg = correlate.Row[correlate.ChangeFact]
	for _, w := range []struct {
		f       correlate.Facts
		version uint64
	}{
		{correlate.Facts{Deployments: []dep{{Fact: d1, Live: true}, {Fact: d2, Live: true}, {Fact: staging, Live: true}},
			Changes: []chg{{Fact: c1, Live: true}, {Fact: c2, Live: true}, {Fact: c3, Live: true}}}, 1},
		// d1 failed and recovered; d2 and its change moved to the next day;
		// c2 retracted.
		{correlate.Facts{Deployments: []dep{{Fact: d1failed, Live: true}, {Fact: d2}, {Fact: d2moved, Live: true}},
			Changes: []chg{{Fact: c2}, {Fact: c3}, {Fact: c3moved, Live: true}}}, 2},
	} {
		// Facts alone (no Days): the rollup table does not exist yet.
		if err := s.Write(ctx, w.f, w.version); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	perTeam, total, err := s.Aggregates(ctx, day1, day1.Add(48*time.Hour), "")
	if err != nil {
		t.Fatal(err)
	}
	want := dora.Aggregates{Deployments: 2, Failed: 1, Rework: 1, Recovered: 1, RecoveryMedianSeconds: 2 * 3600,
		Changes: 2, LeadTimeMedianSeconds: 20 * 3600, LeadTimeP90: 20 * 3600}
	if *total != want || len(perTeam) != 1 || *perTeam["unassigned"] != want {
		t.Errorf("after the backfill: total %+v, per team %v; want %+v for unassigned", *total, perTeam, want)
	}
}
