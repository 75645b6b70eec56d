package dora

import (
	"fmt"
	"strings"
	"time"
)

// Window is the time range [From, To) of a query as SQL expressions of type
// DateTime: literal times for `report`, the Grafana plugin's
// $__fromTime/$__toTime macros for dashboards.
type Window struct{ From, To string }

// Between is the window of [since, until) as literals.
func Between(since, until time.Time) Window {
	return Window{From: fmt.Sprintf("toDateTime(%d)", since.Unix()), To: fmt.Sprintf("toDateTime(%d)", until.Unix())}
}

// Scope is the teams a query covers: Team is a SQL expression of type
// String naming one team (a quoted literal for `report --team`, '${team}'
// in a dashboard), or empty for every team.
type Scope struct{ Team string }

// AllTeams is the scope of every team.
var AllTeams = Scope{}

// OneTeam is the scope of the named team, as a quoted literal.
func OneTeam(name string) Scope { return Scope{Team: quote(name)} }

// quote makes a ClickHouse string literal.
func quote(s string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(s) + "'"
}

// The team of a row is what the teams table says now (joined at query time,
// so changing the mapping re-attributes history); an empty or absent team
// is unassigned.
const teamExpr = "if(team_name = '', 'unassigned', team_name)"

const repoTeams = `(SELECT substring(entity, 6) AS repo, argMax(team, version) AS team_name
    FROM {db}.teams WHERE startsWith(entity, 'repo:') GROUP BY entity)`

const entityTeams = `(SELECT entity, argMax(team, version) AS team_name FROM {db}.teams GROUP BY entity)`

// The window's whole UTC days are [firstDay, endDay) (none when the window
// holds no whole day); the rest of the window — the partial days at its
// edges — is before the first whole day's start or from the end day's start
// on (when there is no whole day, that is all of it). Integer arithmetic on
// the instants, so the server's time zone does not matter.
const (
	firstDay = `intDiv(toUInt32({from}) + 86399, 86400)`
	endDay   = `intDiv(toUInt32({to}), 86400)`
)

// edges is the condition on a fact's time t that it falls in the window but
// not in its whole days. The outer bounds let the server skip partitions.
func edges(t string) string {
	return t + ` >= {from} AND ` + t + ` < {to} AND (` + t + ` < toDateTime(` + firstDay + ` * 86400) OR ` +
		t + ` >= toDateTime(` + endDay + ` * 86400))`
}

// DeliverySQL computes the deployment and change figures from the per-day
// rollups for the window's whole days and from the facts (their latest
// versions, tombstones dropped) for the partial days at its edges: exactly
// what deduplicating every fact in the window gives, at the cost of a few
// hundred thousand rollup rows. Production deployments finished in the
// window, the failed and rework ones among them, the recovered ones and the
// median failed-deployment recovery time; changes whose first production
// deployment finished in the window and the median and 90th percentile of
// their lead times.
//
// Columns: team, deployments, failed_deployments, rework_deployments,
// recovered_deployments, recovery_median_seconds, changes,
// lead_time_median_seconds, lead_time_p90_seconds. For all teams the query
// ends WITH TOTALS: its totals row is the figures over all teams. (The two
// lead-time quantiles are one aggregate: the server computes an aggregate
// written twice once.)
func DeliverySQL(db string, w Window, s Scope) string {
	return expand(`SELECT `+teamExpr+` AS team,
    sum(deployments) AS deployments,
    sum(failed) AS failed_deployments,
    sum(rework) AS rework_deployments,
    sum(length(recovery_seconds)) AS recovered_deployments,
    toUInt64(quantileExactArray(0.5)(recovery_seconds)) AS recovery_median_seconds,
    sum(changes) AS changes,
    toUInt64(quantilesExactArray(0.5, 0.9)(lead_time_seconds)[1]) AS lead_time_median_seconds,
    toUInt64(quantilesExactArray(0.5, 0.9)(lead_time_seconds)[2]) AS lead_time_p90_seconds
FROM (
    SELECT repo, deployments, failed, rework, recovery_seconds, changes, lead_time_seconds FROM (
        SELECT repo, deployments, failed, rework, recovery_seconds, changes, lead_time_seconds
        FROM {db}.repo_days
        WHERE day >= toDate(`+firstDay+`) AND day < toDate(`+endDay+`)`+repoScope(s)+`
        ORDER BY version DESC
        LIMIT 1 BY repo, day)
    UNION ALL
    SELECT repo, toUInt32(1), toUInt32(failed), toUInt32(rework),
        if(failed = 1 AND recovered_at IS NOT NULL,
            [toUInt64(assumeNotNull(recovered_at)) - toUInt64(finished_at)], emptyArrayInt64()),
        toUInt32(0), emptyArrayUInt64()
    FROM (
        SELECT repo, production, failed, rework, finished_at, recovered_at, live
        FROM {db}.deployments
        WHERE `+edges("finished_at")+repoScope(s)+`
        ORDER BY version DESC
        LIMIT 1 BY repo, deployment_id, finished_at)
    WHERE live = 1 AND production = 1
    UNION ALL
    SELECT repo, toUInt32(0), toUInt32(0), toUInt32(0), emptyArrayInt64(), toUInt32(1), [lead_time_seconds]
    FROM (
        SELECT repo, lead_time_seconds, live
        FROM {db}.changes
        WHERE `+edges("deployed_at")+repoScope(s)+`
        ORDER BY version DESC
        LIMIT 1 BY repo, sha, deployed_at)
    WHERE live = 1)
ANY LEFT JOIN `+repoTeams+` USING repo
GROUP BY team`+totals(s), db, w, s)
}

// IncidentsSQL: incidents opened in the window; those resolved in it and the
// median of their time to restore. Incidents are few: they are read from
// the facts, deduplicated over everything opened before the window ends (an
// incident opened long before may be resolved inside it) — but only the
// incidents one of whose versions was opened or resolved in the window: the
// latest version of any other is neither, so it adds nothing, and most of
// history is skipped before the dedupe. (That key set is small and not worth
// turning into index ranges, hence the setting.) The team scope
// applies after the dedupe: an incident's latest version says whose it is.
// The incidents of a deployment are counted by the team of the incident's
// own repository or service.
// Columns: team, incidents, resolved_incidents,
// time_to_restore_median_seconds; WITH TOTALS for all teams.
func IncidentsSQL(db string, w Window, s Scope) string {
	where := ""
	if s.Team != "" {
		where = "\nWHERE " + teamExpr + " = {team}"
	}
	return expand(`SELECT `+teamExpr+` AS team,
    countIf(opened_at >= {from}) AS incidents,
    countIf(resolved_at IS NOT NULL AND assumeNotNull(resolved_at) >= {from} AND assumeNotNull(resolved_at) < {to}) AS resolved_incidents,
    toUInt64(quantileExactIf(0.5)(toUInt64(assumeNotNull(resolved_at)) - toUInt64(opened_at),
        resolved_at IS NOT NULL AND assumeNotNull(resolved_at) >= {from} AND assumeNotNull(resolved_at) < {to})) AS time_to_restore_median_seconds
FROM (
    SELECT entity, opened_at, resolved_at FROM (
        SELECT incident_id, opened_at, resolved_at, live,
            if(repo != '', concat('repo:', repo), concat('service:', service)) AS entity
        FROM {db}.incidents
        WHERE opened_at < {to} AND (incident_id, opened_at) IN (
            SELECT incident_id, opened_at FROM {db}.incidents
            WHERE opened_at < {to} AND (opened_at >= {from} OR (resolved_at >= {from} AND resolved_at < {to})))
        ORDER BY version DESC
        LIMIT 1 BY incident_id, opened_at)
    WHERE live = 1)
ANY LEFT JOIN `+entityTeams+` USING entity`+where+`
GROUP BY team`+totals(s)+`
SETTINGS use_index_for_in_with_subqueries = 0`, db, w, s)
}

// repoScope restricts a scan to the repositories of the scope's team before
// anything is deduplicated (the repository is part of every key there, so
// this drops whole keys), letting the server read only their rows.
func repoScope(s Scope) string {
	if s.Team == "" {
		return ""
	}
	// Unassigned is every repository not mapped to another team.
	return "\n            AND (repo IN (SELECT repo FROM " + repoTeams + " WHERE " + teamExpr + " = {team})" +
		" OR ({team} = 'unassigned' AND repo NOT IN (SELECT repo FROM " + repoTeams +
		" WHERE " + teamExpr + " != 'unassigned')))"
}

func totals(s Scope) string {
	if s.Team == "" {
		return "\nWITH TOTALS"
	}
	return ""
}

func expand(sql, db string, w Window, s Scope) string {
	return strings.NewReplacer("{db}", db, "{from}", w.From, "{to}", w.To, "{team}", s.Team).Replace(sql)
}
