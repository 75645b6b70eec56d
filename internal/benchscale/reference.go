package benchscale

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/doraflow/doraflow/pkg/dora"
)

// The metric queries as doraflow ran them before the per-day rollups: every
// fact in the window deduplicated (latest version, tombstones dropped), the
// team joined from the teams table, once by team and once over all teams.
// They define the figures: the rollup-based queries must give the same.
const (
	refDeployments = `SELECT {group} AS team,
    count() AS deployments,
    countIf(failed = 1) AS failed_deployments,
    countIf(rework = 1) AS rework_deployments,
    countIf(failed = 1 AND recovered_at IS NOT NULL) AS recovered_deployments,
    toUInt64(quantileExactIf(0.5)(toUInt64(assumeNotNull(recovered_at)) - toUInt64(finished_at),
        failed = 1 AND recovered_at IS NOT NULL)) AS recovery_median_seconds
FROM (
    SELECT repo, finished_at, failed, rework, recovered_at FROM (
        SELECT repo, deployment_id, finished_at, production, failed, rework, recovered_at, live
        FROM {db}.deployments
        WHERE finished_at >= {from} AND finished_at < {to}
        ORDER BY version DESC
        LIMIT 1 BY repo, deployment_id, finished_at)
    WHERE live = 1 AND production = 1)
ANY LEFT JOIN {repoTeams} USING repo
GROUP BY team`
	refChanges = `SELECT {group} AS team,
    count() AS changes,
    toUInt64(quantileExact(0.5)(lead_time_seconds)) AS lead_time_median_seconds,
    toUInt64(quantileExact(0.9)(lead_time_seconds)) AS lead_time_p90_seconds
FROM (
    SELECT repo, lead_time_seconds FROM (
        SELECT repo, sha, deployed_at, lead_time_seconds, live
        FROM {db}.changes
        WHERE deployed_at >= {from} AND deployed_at < {to}
        ORDER BY version DESC
        LIMIT 1 BY repo, sha, deployed_at)
    WHERE live = 1)
ANY LEFT JOIN {repoTeams} USING repo
GROUP BY team`
	refIncidents = `SELECT {group} AS team,
    countIf(opened_at >= {from}) AS incidents,
    countIf(resolved_at IS NOT NULL AND assumeNotNull(resolved_at) >= {from} AND assumeNotNull(resolved_at) < {to}) AS resolved_incidents,
    toUInt64(quantileExactIf(0.5)(toUInt64(assumeNotNull(resolved_at)) - toUInt64(opened_at),
        resolved_at IS NOT NULL AND assumeNotNull(resolved_at) >= {from} AND assumeNotNull(resolved_at) < {to})) AS time_to_restore_median_seconds
FROM (
    SELECT entity, opened_at, resolved_at FROM (
        SELECT incident_id, opened_at, resolved_at, live,
            if(repo != '', concat('repo:', repo), concat('service:', service)) AS entity
        FROM {db}.incidents
        WHERE opened_at < {to}
        ORDER BY version DESC
        LIMIT 1 BY incident_id, opened_at)
    WHERE live = 1)
ANY LEFT JOIN (SELECT entity, argMax(team, version) AS team_name FROM {db}.teams GROUP BY entity) USING entity
GROUP BY team`
	refRepoTeams = `(SELECT substring(entity, 6) AS repo, argMax(team, version) AS team_name
    FROM {db}.teams WHERE startsWith(entity, 'repo:') GROUP BY entity)`
)

// The bare aggregate scans of a window: the same aggregates over the raw
// rows the window holds, without deduplication or teams — the least any
// query of the window's figures reads and computes. The benchmark states
// the report's latency as a ratio to these, measured in the same run.
const (
	bareDeployments = `SELECT count(), countIf(failed = 1), countIf(rework = 1),
    countIf(failed = 1 AND recovered_at IS NOT NULL),
    toUInt64(quantileExactIf(0.5)(toUInt64(assumeNotNull(recovered_at)) - toUInt64(finished_at),
        failed = 1 AND recovered_at IS NOT NULL))
FROM {db}.deployments WHERE finished_at >= {from} AND finished_at < {to} AND production = 1`
	bareChanges = `SELECT count(), toUInt64(quantileExact(0.5)(lead_time_seconds)), toUInt64(quantileExact(0.9)(lead_time_seconds))
FROM {db}.changes WHERE deployed_at >= {from} AND deployed_at < {to}`
	bareIncidents = `SELECT countIf(opened_at >= {from}),
    countIf(resolved_at IS NOT NULL AND assumeNotNull(resolved_at) >= {from} AND assumeNotNull(resolved_at) < {to}),
    toUInt64(quantileExactIf(0.5)(toUInt64(assumeNotNull(resolved_at)) - toUInt64(opened_at),
        resolved_at IS NOT NULL AND assumeNotNull(resolved_at) >= {from} AND assumeNotNull(resolved_at) < {to}))
FROM {db}.incidents WHERE opened_at < {to}`
)

func expandRef(sql, db string, since, until time.Time, group string) string {
	w := dora.Between(since, until)
	sql = strings.NewReplacer("{repoTeams}", refRepoTeams, "{group}", group).Replace(sql)
	return strings.NewReplacer("{db}", db, "{from}", w.From, "{to}", w.To).Replace(sql)
}

// Reference computes the figures of [since, until) with the deduplicating
// queries of before, per team and over all teams.
func Reference(ctx context.Context, conn driver.Conn, db string, since, until time.Time) (map[string]*dora.Aggregates, *dora.Aggregates, error) {
	perTeam := map[string]*dora.Aggregates{}
	total := map[string]*dora.Aggregates{}
	for _, g := range []struct {
		group string
		into  map[string]*dora.Aggregates
	}{{"if(team_name = '', 'unassigned', team_name)", perTeam}, {"'*'", total}} {
		get := func(team string) *dora.Aggregates {
			a := g.into[team]
			if a == nil {
				a = &dora.Aggregates{}
				g.into[team] = a
			}
			return a
		}
		for _, q := range []struct {
			sql    string
			fields func(a *dora.Aggregates) []*uint64
		}{
			{refDeployments, func(a *dora.Aggregates) []*uint64 {
				return []*uint64{&a.Deployments, &a.Failed, &a.Rework, &a.Recovered, &a.RecoveryMedianSeconds}
			}},
			{refChanges, func(a *dora.Aggregates) []*uint64 {
				return []*uint64{&a.Changes, &a.LeadTimeMedianSeconds, &a.LeadTimeP90}
			}},
			{refIncidents, func(a *dora.Aggregates) []*uint64 {
				return []*uint64{&a.Incidents, &a.Resolved, &a.TimeToRestoreMedianSeconds}
			}},
		} {
			if err := scanRows(ctx, conn, expandRef(q.sql, db, since, until, g.group), func(team string) []*uint64 { return q.fields(get(team)) }); err != nil {
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

// Bare runs the bare aggregate scans of [since, until), returning their
// figures (deployments, changes, incidents; for a sanity check against the
// report).
func Bare(ctx context.Context, conn driver.Conn, db string, since, until time.Time) (dora.Aggregates, error) {
	var a dora.Aggregates
	for _, q := range []struct {
		sql    string
		fields []*uint64
	}{
		{bareDeployments, []*uint64{&a.Deployments, &a.Failed, &a.Rework, &a.Recovered, &a.RecoveryMedianSeconds}},
		{bareChanges, []*uint64{&a.Changes, &a.LeadTimeMedianSeconds, &a.LeadTimeP90}},
		{bareIncidents, []*uint64{&a.Incidents, &a.Resolved, &a.TimeToRestoreMedianSeconds}},
	} {
		row := conn.QueryRow(ctx, expandRef(q.sql, db, since, until, ""))
		dest := make([]any, len(q.fields))
		for i, f := range q.fields {
			dest[i] = f
		}
		if err := row.Scan(dest...); err != nil {
			return dora.Aggregates{}, fmt.Errorf("bare aggregate scan: %w", err)
		}
	}
	return a, nil
}

// scanRows runs a query whose first column is a team and the others UInt64
// figures.
func scanRows(ctx context.Context, conn driver.Conn, sql string, fields func(team string) []*uint64) error {
	rows, err := conn.Query(ctx, sql)
	if err != nil {
		return fmt.Errorf("reference query: %w", err)
	}
	defer rows.Close()
	var team string
	vals := make([]uint64, len(rows.Columns())-1)
	dest := []any{&team}
	for i := range vals {
		dest = append(dest, &vals[i])
	}
	for rows.Next() {
		if err := rows.Scan(dest...); err != nil {
			return fmt.Errorf("reference query: %w", err)
		}
		for i, f := range fields(team) {
			*f = vals[i]
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("reference query: %w", err)
	}
	return nil
}
