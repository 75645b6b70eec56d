package clickhouse

import (
	"context"
	"fmt"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/doraflow/doraflow/processor/correlate"
)

// Write inserts a set of fact rows, one batch per table, all at version.
// Rows are idempotent: writing the same set twice leaves the same facts.
func (s *Store) Write(ctx context.Context, f correlate.Facts, version uint64) error {
	if len(f.Deployments) > 0 {
		err := s.insert(ctx, "deployments", `repo, deployment_id, service, environment, sha, status, finished_at,
			production, rollback, failed, rework, changes, approximate, incidents, recovered_at, live, version`,
			len(f.Deployments), func(i int) []any {
				r := f.Deployments[i]
				d := r.Fact
				return []any{d.Repo, d.ID, d.Service, d.Environment, d.SHA, d.Status, d.FinishedAt,
					b(d.Production), b(d.Rollback), b(d.Failed), b(d.Rework), uint32(d.Changes), b(d.Approximate),
					uint32(d.Incidents), d.RecoveredAt, b(r.Live), version}
			})
		if err != nil {
			return err
		}
	}
	if len(f.Changes) > 0 {
		err := s.insert(ctx, "changes", "repo, sha, deployment_id, committed_at, deployed_at, lead_time_seconds, live, version",
			len(f.Changes), func(i int) []any {
				r := f.Changes[i]
				c := r.Fact
				return []any{c.Repo, c.SHA, c.DeploymentID, c.CommittedAt, c.DeployedAt,
					uint64(c.LeadTime() / time.Second), b(r.Live), version}
			})
		if err != nil {
			return err
		}
	}
	if len(f.Incidents) > 0 {
		err := s.insert(ctx, "incidents", `incident_id, source, service, repo, opened_at, resolved_at,
			deployment_repo, deployment_id, attribution, live, version`,
			len(f.Incidents), func(i int) []any {
				r := f.Incidents[i]
				n := r.Fact
				return []any{n.ID, n.Source, n.Service, n.Repo, n.OpenedAt, n.ResolvedAt,
					n.DeploymentRepo, n.DeploymentID, n.Attribution, b(r.Live), version}
			})
		if err != nil {
			return err
		}
	}
	return nil
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
