package clickhouse

import (
	"context"
	"fmt"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/doraflow/doraflow/processor/correlate"
)

// Write inserts a set of fact rows and the rollup rows they changed, one
// batch per table, all at version. Rows are idempotent: writing the same set
// twice leaves the same facts.
func (s *Store) Write(ctx context.Context, f correlate.Facts, version uint64) error {
	return s.WriteBatches(ctx, []Batch{{Facts: f, Version: version}})
}

// Batch is a set of rows to write at one version.
type Batch struct {
	Facts   correlate.Facts
	Version uint64
}

// WriteBatches is Write for several batches, in version order, in one
// insert per table, each row at its batch's version: a backfill or a
// benchmark writes far more rows per insert than a live flush has
// (ClickHouse wants large inserts).
func (s *Store) WriteBatches(ctx context.Context, batches []Batch) error {
	var deps []versioned[correlate.Row[correlate.DeploymentFact]]
	var changes []versioned[correlate.Row[correlate.ChangeFact]]
	var incidents []versioned[correlate.Row[correlate.IncidentFact]]
	var days []versioned[correlate.RepoDay]
	// A rollup row replaces its day whole, so of the rows one insert has
	// for a repo-day only the last (highest version) matters: sending just
	// that one leaves the queries fewer versions to deduplicate.
	lastDay := map[dayKey]int{}
	for _, b := range batches {
		deps = appendVersioned(deps, b.Facts.Deployments, b.Version)
		changes = appendVersioned(changes, b.Facts.Changes, b.Version)
		incidents = appendVersioned(incidents, b.Facts.Incidents, b.Version)
		for _, d := range b.Facts.Days {
			k := dayKey{d.Repo, d.Day.Unix()}
			if i, ok := lastDay[k]; ok {
				days[i] = versioned[correlate.RepoDay]{d, b.Version}
				continue
			}
			lastDay[k] = len(days)
			days = append(days, versioned[correlate.RepoDay]{d, b.Version})
		}
	}
	if err := insertRows(ctx, s, "deployments", `repo, deployment_id, service, environment, sha, status, finished_at,
		production, rollback, failed, rework, changes, approximate, incidents, recovered_at, live, version`,
		deps, func(r correlate.Row[correlate.DeploymentFact], version uint64) []any {
			d := r.Fact
			return []any{d.Repo, d.ID, d.Service, d.Environment, d.SHA, d.Status, d.FinishedAt,
				b(d.Production), b(d.Rollback), b(d.Failed), b(d.Rework), uint32(d.Changes), b(d.Approximate),
				uint32(d.Incidents), d.RecoveredAt, b(r.Live), version}
		}); err != nil {
		return err
	}
	if err := insertRows(ctx, s, "changes", "repo, sha, deployment_id, committed_at, deployed_at, lead_time_seconds, live, version",
		changes, func(r correlate.Row[correlate.ChangeFact], version uint64) []any {
			c := r.Fact
			return []any{c.Repo, c.SHA, c.DeploymentID, c.CommittedAt, c.DeployedAt, c.LeadTimeSeconds(), b(r.Live), version}
		}); err != nil {
		return err
	}
	if err := insertRows(ctx, s, "incidents", `incident_id, source, service, repo, opened_at, resolved_at,
		deployment_repo, deployment_id, attribution, live, version`,
		incidents, func(r correlate.Row[correlate.IncidentFact], version uint64) []any {
			n := r.Fact
			return []any{n.ID, n.Source, n.Service, n.Repo, n.OpenedAt, n.ResolvedAt,
				n.DeploymentRepo, n.DeploymentID, n.Attribution, b(r.Live), version}
		}); err != nil {
		return err
	}
	return insertRows(ctx, s, "repo_days", `repo, day, deployments, failed, rework, recovery_seconds, changes,
		lead_time_seconds, version`, days, func(d correlate.RepoDay, version uint64) []any {
		// Never nil: the driver wants a slice for an Array column.
		rec, lead := d.RecoverySeconds, d.LeadTimeSeconds
		if rec == nil {
			rec = []int64{}
		}
		if lead == nil {
			lead = []uint64{}
		}
		return []any{d.Repo, d.Day, uint32(d.Deployments), uint32(d.Failed), uint32(d.Rework), rec,
			uint32(len(lead)), lead, version}
	})
}

type dayKey struct {
	repo string
	day  int64
}

type versioned[R any] struct {
	row     R
	version uint64
}

func appendVersioned[R any](out []versioned[R], rows []R, version uint64) []versioned[R] {
	for _, r := range rows {
		out = append(out, versioned[R]{r, version})
	}
	return out
}

// insertRows sends rows to table in one batch; nothing when there are none.
func insertRows[R any](ctx context.Context, s *Store, table, columns string, rows []versioned[R], values func(R, uint64) []any) error {
	if len(rows) == 0 {
		return nil
	}
	return s.insert(ctx, table, columns, len(rows), func(i int) []any { return values(rows[i].row, rows[i].version) })
}

// WriteTeams records which team owns each entity ("repo:…" or "service:…").
func (s *Store) WriteTeams(ctx context.Context, teams map[string]string, version uint64) error {
	if len(teams) == 0 {
		return nil
	}
	entities := make([]string, 0, len(teams))
	for e := range teams {
		entities = append(entities, e)
	}
	return s.insert(ctx, "teams", "entity, team, version", len(entities), func(i int) []any {
		return []any{entities[i], teams[entities[i]], version}
	})
}

// insert sends n rows to table in one batch.
func (s *Store) insert(ctx context.Context, table, columns string, n int, row func(int) []any) error {
	// 18.16 needs the columns named, or the batch has none.
	batch, err := s.conn.PrepareBatch(ctx, "INSERT INTO "+s.table(table)+" ("+columns+")")
	if err != nil {
		return fmt.Errorf("clickhouse: insert %s: %w", table, err)
	}
	for i := 0; i < n; i++ {
		if err := batch.Append(row(i)...); err != nil {
			_ = batch.Abort()
			return fmt.Errorf("clickhouse: insert %s row %d: %w", table, i, err)
		}
	}
	if err := batch.Send(); err != nil {
		return fmt.Errorf("clickhouse: insert %d rows into %s: %w", n, table, err)
	}
	return nil
}

func b(v bool) uint8 {
	if v {
		return 1
	}
	return 0
}

// Entities are every repository and service the facts mention, for
// refreshing the team mapping after a configuration change. A processor
// cannot start without them (a partial list would leave some history with
// its old team), so the read is retried whole.
func (s *Store) Entities(ctx context.Context) ([]string, error) {
	q := `SELECT DISTINCT e FROM (
		SELECT concat('repo:', repo) AS e FROM ` + s.table("deployments") + `
		UNION ALL SELECT concat('service:', service) AS e FROM ` + s.table("deployments") + `
		UNION ALL SELECT concat('service:', service) AS e FROM ` + s.table("incidents") + ` WHERE service != ''
		UNION ALL SELECT concat('repo:', repo) AS e FROM ` + s.table("incidents") + ` WHERE repo != '')`
	return retried(ctx, s, "entities", func() ([]string, error) {
		var out []string
		err := s.query(ctx, "entities", q, func(rows driver.Rows) error {
			var e string
			if err := rows.Scan(&e); err != nil {
				return err
			}
			out = append(out, e)
			return nil
		})
		if err != nil {
			return nil, err
		}
		return out, nil
	})
}
