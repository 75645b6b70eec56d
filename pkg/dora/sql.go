package dora

import (
	"fmt"
	"strings"
	"time"
)

// Window is the time range of a query as SQL expressions of type DateTime:
// literal times for `report`, the Grafana plugin's $__fromTime/$__toTime
// macros for dashboards.
type Window struct{ From, To string }

// Between is the window of [since, until) as literals.
func Between(since, until time.Time) Window {
	return Window{From: fmt.Sprintf("toDateTime(%d)", since.Unix()), To: fmt.Sprintf("toDateTime(%d)", until.Unix())}
}

// Grouping says what the metric rows are grouped by.
type Grouping string

const (
	// ByTeam groups by the team that owns each fact's repository or service,
	// as the teams table says now.
	ByTeam Grouping = "if(team_name = '', 'unassigned', team_name)"
	// AllTeams folds every fact into one row named "*".
	AllTeams Grouping = "'*'"
)

// The latest version of each fact in the window, tombstones dropped. The
// dedupe runs inside the window (LIMIT 1 BY), never FINAL over the table.
const latestDeployments = `
SELECT repo, finished_at, failed, rework, recovered_at FROM (
    SELECT repo, deployment_id, finished_at, production, failed, rework, recovered_at, live
    FROM {db}.deployments
    WHERE finished_at >= {from} AND finished_at < {to}
    ORDER BY version DESC
    LIMIT 1 BY repo, deployment_id, finished_at)
WHERE live = 1 AND production = 1`

const latestChanges = `
SELECT repo, lead_time_seconds FROM (
    SELECT repo, sha, deployed_at, lead_time_seconds, live
    FROM {db}.changes
    WHERE deployed_at >= {from} AND deployed_at < {to}
    ORDER BY version DESC
    LIMIT 1 BY repo, sha, deployed_at)
WHERE live = 1`

// Incidents opened before the window ends: an incident opened long before
// may be resolved inside it.
const latestIncidents = `
SELECT entity, opened_at, resolved_at FROM (
    SELECT incident_id, opened_at, resolved_at, live,
        if(repo != '', concat('repo:', repo), concat('service:', service)) AS entity
    FROM {db}.incidents
    WHERE opened_at < {to}
    ORDER BY version DESC
    LIMIT 1 BY incident_id, opened_at)
WHERE live = 1`

const repoTeams = `(SELECT substring(entity, 6) AS repo, argMax(team, version) AS team_name
    FROM {db}.teams WHERE startsWith(entity, 'repo:') GROUP BY entity)`

const entityTeams = `(SELECT entity, argMax(team, version) AS team_name FROM {db}.teams GROUP BY entity)`

// DeploymentsSQL: production deployments finished in the window; failed and
// rework among them; the median failed-deployment recovery time.
// Columns: team, deployments, failed_deployments, rework_deployments,
// recovered_deployments, recovery_median_seconds.
func DeploymentsSQL(db string, w Window, g Grouping) string {
	return expand(`SELECT {group} AS team,
    count() AS deployments,
    countIf(failed = 1) AS failed_deployments,
    countIf(rework = 1) AS rework_deployments,
    countIf(failed = 1 AND recovered_at IS NOT NULL) AS recovered_deployments,
    toUInt64(quantileExactIf(0.5)(toUInt64(assumeNotNull(recovered_at)) - toUInt64(finished_at),
        failed = 1 AND recovered_at IS NOT NULL)) AS recovery_median_seconds
FROM (`+latestDeployments+`)
ANY LEFT JOIN `+repoTeams+` USING repo
GROUP BY team`, db, w, g)
}

// ChangesSQL: changes whose first production deployment finished in the
// window, with the median and 90th percentile of their lead times.
// Columns: team, changes, lead_time_median_seconds, lead_time_p90_seconds.
func ChangesSQL(db string, w Window, g Grouping) string {
	return expand(`SELECT {group} AS team,
    count() AS changes,
    toUInt64(quantileExact(0.5)(lead_time_seconds)) AS lead_time_median_seconds,
    toUInt64(quantileExact(0.9)(lead_time_seconds)) AS lead_time_p90_seconds
FROM (`+latestChanges+`)
ANY LEFT JOIN `+repoTeams+` USING repo
GROUP BY team`, db, w, g)
}

// IncidentsSQL: incidents opened in the window; those resolved in it and the
// median of their time to restore.
// Columns: team, incidents, resolved_incidents, time_to_restore_median_seconds.
func IncidentsSQL(db string, w Window, g Grouping) string {
	return expand(`SELECT {group} AS team,
    countIf(opened_at >= {from}) AS incidents,
    countIf(resolved_at IS NOT NULL AND assumeNotNull(resolved_at) >= {from} AND assumeNotNull(resolved_at) < {to}) AS resolved_incidents,
    toUInt64(quantileExactIf(0.5)(toUInt64(assumeNotNull(resolved_at)) - toUInt64(opened_at),
        resolved_at IS NOT NULL AND assumeNotNull(resolved_at) >= {from} AND assumeNotNull(resolved_at) < {to})) AS time_to_restore_median_seconds
FROM (`+latestIncidents+`)
ANY LEFT JOIN `+entityTeams+` USING entity
GROUP BY team`, db, w, g)
}

func expand(sql, db string, w Window, g Grouping) string {
	return strings.NewReplacer("{db}", db, "{from}", w.From, "{to}", w.To, "{group}", string(g)).Replace(sql)
}
