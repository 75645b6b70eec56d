package clickhouse

import (
	"context"
	"fmt"
	"time"

	"github.com/doraflow/doraflow/pkg/dora"
	"github.com/doraflow/doraflow/processor/correlate"
)

// Aggregates runs the metric SQL over [since, until) and returns the
// aggregates per team, and over all teams.
func (s *Store) Aggregates(ctx context.Context, since, until time.Time) (map[string]*dora.Aggregates, *dora.Aggregates, error) {
	w := dora.Between(since, until)
	perTeam := map[string]*dora.Aggregates{}
	total := map[string]*dora.Aggregates{}
	for _, g := range []struct {
		grouping dora.Grouping
		into     map[string]*dora.Aggregates
	}{{dora.ByTeam, perTeam}, {dora.AllTeams, total}} {
		get := func(team string) *dora.Aggregates {
			a := g.into[team]
			if a == nil {
				a = &dora.Aggregates{}
				g.into[team] = a
			}
			return a
		}
		queries := []struct {
			sql    string
			fields func(a *dora.Aggregates) []*uint64
		}{
			{dora.DeploymentsSQL(s.database, w, g.grouping), func(a *dora.Aggregates) []*uint64 {
				return []*uint64{&a.Deployments, &a.Failed, &a.Rework, &a.Recovered, &a.RecoveryMedianSeconds}
			}},
			{dora.ChangesSQL(s.database, w, g.grouping), func(a *dora.Aggregates) []*uint64 {
				return []*uint64{&a.Changes, &a.LeadTimeMedianSeconds, &a.LeadTimeP90}
			}},
			{dora.IncidentsSQL(s.database, w, g.grouping), func(a *dora.Aggregates) []*uint64 {
				return []*uint64{&a.Incidents, &a.Resolved, &a.TimeToRestoreMedianSeconds}
			}},
		}
		for _, q := range queries {
			if err := s.scanTeams(ctx, q.sql, func(team string) []*uint64 { return q.fields(get(team)) }); err != nil {
				return nil, nil, err
			}
		}
	}
	all := total["*"]
	if all == nil {
		all = &dora.Aggregates{}
	}
	return perTeam, all, nil
}

// scanTeams runs a query whose first column is the team and the others
// UInt64 aggregates, scanning each row into the fields fields(team) names.
func (s *Store) scanTeams(ctx context.Context, sql string, fields func(team string) []*uint64) error {
	rows, err := s.conn.Query(ctx, sql)
	if err != nil {
		return fmt.Errorf("clickhouse: metrics query: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var team string
		vals := make([]uint64, len(rows.Columns())-1)
		dest := []any{&team}
		for i := range vals {
			dest = append(dest, &vals[i])
		}
		if err := rows.Scan(dest...); err != nil {
			return fmt.Errorf("clickhouse: metrics query: %w", err)
		}
		for i, f := range fields(team) {
			*f = vals[i]
		}
	}
	return rows.Err()
}

// Facts reads the latest live version of every stored fact, so a restarted
// processor knows what is already written.
func (s *Store) Facts(ctx context.Context) (correlate.Facts, error) {
	var out correlate.Facts
	rows, err := s.conn.Query(ctx, `SELECT repo, deployment_id, service, environment, sha, status, finished_at,
		production, rollback, failed, rework, changes, approximate, incidents, recovered_at FROM (
		SELECT * FROM `+s.table("deployments")+` ORDER BY version DESC LIMIT 1 BY repo, deployment_id, finished_at)
		WHERE live = 1`)
	if err != nil {
		return out, fmt.Errorf("clickhouse: read deployments: %w", err)
	}
	for rows.Next() {
		var d correlate.DeploymentFact
		var prod, rb, failed, rework, approx uint8
		var changes, incidents uint32
		if err := rows.Scan(&d.Repo, &d.ID, &d.Service, &d.Environment, &d.SHA, &d.Status, &d.FinishedAt,
			&prod, &rb, &failed, &rework, &changes, &approx, &incidents, &d.RecoveredAt); err != nil {
			rows.Close()
			return out, fmt.Errorf("clickhouse: read deployments: %w", err)
		}
		d.Production, d.Rollback, d.Failed, d.Rework, d.Approximate = prod == 1, rb == 1, failed == 1, rework == 1, approx == 1
		d.Changes, d.Incidents = int(changes), int(incidents)
		d.FinishedAt = d.FinishedAt.UTC()
		if d.RecoveredAt != nil {
			t := d.RecoveredAt.UTC()
			d.RecoveredAt = &t
		}
		out.Deployments = append(out.Deployments, correlate.Row[correlate.DeploymentFact]{Fact: d, Live: true})
	}
	rows.Close()

	rows, err = s.conn.Query(ctx, `SELECT repo, sha, deployment_id, committed_at, deployed_at FROM (
		SELECT * FROM `+s.table("changes")+` ORDER BY version DESC LIMIT 1 BY repo, sha, deployed_at) WHERE live = 1`)
	if err != nil {
		return out, fmt.Errorf("clickhouse: read changes: %w", err)
	}
	for rows.Next() {
		var c correlate.ChangeFact
		if err := rows.Scan(&c.Repo, &c.SHA, &c.DeploymentID, &c.CommittedAt, &c.DeployedAt); err != nil {
			rows.Close()
			return out, fmt.Errorf("clickhouse: read changes: %w", err)
		}
		c.CommittedAt, c.DeployedAt = c.CommittedAt.UTC(), c.DeployedAt.UTC()
		out.Changes = append(out.Changes, correlate.Row[correlate.ChangeFact]{Fact: c, Live: true})
	}
	rows.Close()

	rows, err = s.conn.Query(ctx, `SELECT incident_id, source, service, repo, opened_at, resolved_at,
		deployment_repo, deployment_id, attribution FROM (
		SELECT * FROM `+s.table("incidents")+` ORDER BY version DESC LIMIT 1 BY incident_id, opened_at) WHERE live = 1`)
	if err != nil {
		return out, fmt.Errorf("clickhouse: read incidents: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var n correlate.IncidentFact
		if err := rows.Scan(&n.ID, &n.Source, &n.Service, &n.Repo, &n.OpenedAt, &n.ResolvedAt,
			&n.DeploymentRepo, &n.DeploymentID, &n.Attribution); err != nil {
			return out, fmt.Errorf("clickhouse: read incidents: %w", err)
		}
		n.OpenedAt = n.OpenedAt.UTC()
		if n.ResolvedAt != nil {
			t := n.ResolvedAt.UTC()
			n.ResolvedAt = &t
		}
		out.Incidents = append(out.Incidents, correlate.Row[correlate.IncidentFact]{Fact: n, Live: true})
	}
	return out, rows.Err()
}
