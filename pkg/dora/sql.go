package dora

import (
	"fmt"
	"strconv"
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

// Scope is the teams a query covers: every team when both Team and Teams
// are empty.
type Scope struct {
	// Team is a SQL expression of type String naming one team (a quoted
	// literal for `report --team`).
	Team string
	// Teams is a list of String literals naming several teams: a
	// dashboard's ${team:singlequote}, which Grafana expands to 'a','b'.
	Teams string
	// Guard, if set, is a format with one %s that wraps each condition on
	// the teams: a dashboard's $__conditionalAll(%s, $team), which the
	// plugin turns into 1=1 when every team is selected (Grafana would
	// otherwise list every team, or nothing, in ${team:singlequote}).
	Guard string
}

// AllTeams is the scope of every team.
var AllTeams = Scope{}

// OneTeam is the scope of the named team, as a quoted literal.
func OneTeam(name string) Scope { return Scope{Team: quote(name)} }

// scoped says whether the scope leaves teams out.
func (s Scope) scoped() bool { return s.Team != "" || s.Teams != "" }

// is is the condition that the team expression t is one of the scope's.
func (s Scope) is(t string) string {
	if s.Teams != "" {
		return t + " IN ({teams})"
	}
	return t + " = {team}"
}

// guard wraps a condition on the teams in the scope's Guard.
func (s Scope) guard(cond string) string {
	if s.Guard == "" {
		return cond
	}
	return fmt.Sprintf(s.Guard, cond)
}

// By is what a metric query gives one row per: Key is a SQL expression over
// a row's team (team) and UTC day (day), named As; Days is the number of
// days each result row covers (the divisor of deployments per day), an
// expression over the window and As. An empty Key is one row over the
// scope.
type By struct {
	Key, As, Days string
	// totals: the per-team rows over all teams end WITH TOTALS (the
	// report reads its total there).
	totals bool
}

// windowDays is the length of the window in days.
const windowDays = `((toUInt32({to}) - toUInt32({from})) / 86400)`

var (
	// ByTeam is a row per team: the report's and the team comparison's.
	ByTeam = By{Key: teamExpr, As: "team", Days: windowDays, totals: true}
	// Overall is one row over the scope's teams: a dashboard's stat.
	Overall = By{Days: windowDays}
	// ByDay, ByWeek and ByMonth are a row per UTC day, week (from Monday)
	// and month of the window, each covering the part of the window within
	// it; the key is named bucket.
	ByDay   = byBucket("day", "bucket + 1")
	ByWeek  = byBucket("toMonday(day)", "bucket + 7")
	ByMonth = byBucket("toStartOfMonth(day)", "addMonths(bucket, 1)")
)

func byBucket(key, next string) By {
	return By{Key: key, As: "bucket", Days: `((least(toUInt32(` + next + `) * 86400, toUInt32({to})) -
        greatest(toUInt32(bucket) * 86400, toUInt32({from}))) / 86400)`}
}

// selectKey is the key column of a query's SELECT list, and group its GROUP
// BY clause.
func (b By) selectKey() string {
	if b.Key == "" {
		return ""
	}
	return b.Key + " AS " + b.As + ",\n    "
}

func (b By) group() string {
	if b.Key == "" {
		return ""
	}
	return "\nGROUP BY " + b.As
}

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
// their lead times. A fact's day is the UTC day of its deployment.
//
// Columns: by's key (if any), deployments, failed_deployments,
// rework_deployments, recovered_deployments, recovery_median_seconds,
// changes, lead_time_median_seconds, lead_time_p90_seconds. Per team for
// all teams the query ends WITH TOTALS: its totals row is the figures over
// all teams. (The two lead-time quantiles are one aggregate: the server
// computes an aggregate written twice once.)
func DeliverySQL(db string, w Window, s Scope, by By) string {
	return expand(`SELECT `+by.selectKey()+`sum(deployments) AS deployments,
    sum(failed) AS failed_deployments,
    sum(rework) AS rework_deployments,
    sum(length(recovery_seconds)) AS recovered_deployments,
    toUInt64(quantileExactArray(0.5)(recovery_seconds)) AS recovery_median_seconds,
    sum(changes) AS changes,
    toUInt64(quantilesExactArray(0.5, 0.9)(lead_time_seconds)[1]) AS lead_time_median_seconds,
    toUInt64(quantilesExactArray(0.5, 0.9)(lead_time_seconds)[2]) AS lead_time_p90_seconds
FROM (
    SELECT repo, day, deployments, failed, rework, recovery_seconds, changes, lead_time_seconds FROM (
        SELECT repo, day, deployments, failed, rework, recovery_seconds, changes, lead_time_seconds
        FROM {db}.repo_days
        WHERE day >= toDate(`+firstDay+`) AND day < toDate(`+endDay+`)`+repoScope(s)+`
        ORDER BY version DESC
        LIMIT 1 BY repo, day)
    UNION ALL
    SELECT repo, toDate(finished_at), toUInt32(1), toUInt32(failed), toUInt32(rework),
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
    SELECT repo, toDate(deployed_at), toUInt32(0), toUInt32(0), toUInt32(0), emptyArrayInt64(), toUInt32(1), [lead_time_seconds]
    FROM (
        SELECT repo, lead_time_seconds, deployed_at, live
        FROM {db}.changes
        WHERE `+edges("deployed_at")+repoScope(s)+`
        ORDER BY version DESC
        LIMIT 1 BY repo, sha, deployed_at)
    WHERE live = 1)
ANY LEFT JOIN `+repoTeams+` USING repo`+by.group()+totals(s, by), db, w, s)
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
// own repository or service. Each incident is one row as opened (its day
// the UTC day it opened) and one as resolved (the day it resolved), so that
// a trend counts it in the week it opened and restores it in the week it
// was resolved.
// Columns: by's key (if any), incidents, resolved_incidents,
// time_to_restore_median_seconds; WITH TOTALS per team for all teams.
func IncidentsSQL(db string, w Window, s Scope, by By) string {
	where := ""
	if s.scoped() {
		where = "\nWHERE " + s.guard(s.is(teamExpr))
	}
	resolvedIn := `role = 'resolved' AND resolved_at IS NOT NULL AND assumeNotNull(resolved_at) >= {from} AND assumeNotNull(resolved_at) < {to}`
	return expand(`SELECT `+by.selectKey()+`countIf(role = 'opened' AND opened_at >= {from}) AS incidents,
    countIf(`+resolvedIn+`) AS resolved_incidents,
    toUInt64(quantileExactIf(0.5)(toUInt64(assumeNotNull(resolved_at)) - toUInt64(opened_at),
        `+resolvedIn+`)) AS time_to_restore_median_seconds
FROM (
    SELECT entity, opened_at, resolved_at, arrayJoin(['opened', 'resolved']) AS role,
        toDate(if(role = 'opened', opened_at, ifNull(resolved_at, opened_at))) AS day FROM (
        SELECT incident_id, opened_at, resolved_at, live,
            if(repo != '', concat('repo:', repo), concat('service:', service)) AS entity
        FROM {db}.incidents
        WHERE opened_at < {to} AND (incident_id, opened_at) IN (
            SELECT incident_id, opened_at FROM {db}.incidents
            WHERE opened_at < {to} AND (opened_at >= {from} OR (resolved_at >= {from} AND resolved_at < {to})))
        ORDER BY version DESC
        LIMIT 1 BY incident_id, opened_at)
    WHERE live = 1)
ANY LEFT JOIN `+entityTeams+` USING entity`+where+by.group()+totals(s, by)+`
SETTINGS use_index_for_in_with_subqueries = 0`, db, w, s)
}

// repoScope restricts a scan to the repositories of the scope's team before
// anything is deduplicated (the repository is part of every key there, so
// this drops whole keys), letting the server read only their rows.
func repoScope(s Scope) string {
	if !s.scoped() {
		return ""
	}
	// Unassigned is every repository not mapped to another team.
	return "\n            AND " + s.guard("(repo IN (SELECT repo FROM "+repoTeams+" WHERE "+s.is(teamExpr)+")"+
		" OR ("+s.is("'unassigned'")+" AND repo NOT IN (SELECT repo FROM "+repoTeams+
		" WHERE "+teamExpr+" != 'unassigned')))")
}

// totals is WITH TOTALS for the report's per-team rows over all teams.
func totals(s Scope, by By) string {
	if !s.scoped() && by.totals {
		return "\nWITH TOTALS"
	}
	return ""
}

func expand(sql, db string, w Window, s Scope) string {
	return strings.NewReplacer("{db}", db, "{from}", w.From, "{to}", w.To, "{team}", s.Team, "{teams}", s.Teams).Replace(sql)
}

// MetricsSQL derives the report's metrics in SQL, a row per by, from
// DeliverySQL and IncidentsSQL side by side (a key with figures of one kind
// only has zeros of the other), exactly as Benchmark.Metrics does but for
// rounding: null where there is nothing to measure.
//
// Columns: by's key (if any), then the report's JSON names: deployments,
// deployments_per_day, changes, lead_time_median_seconds,
// lead_time_p90_seconds, failed_deployments, change_failure_rate,
// incidents, time_to_restore_median_seconds,
// failed_deployment_recovery_median_seconds, rework_deployments,
// rework_rate.
func MetricsSQL(db string, w Window, s Scope, by By) string {
	by.totals = false
	key, keys := "", ""
	if by.Key != "" {
		key, keys = by.As+",\n    ", by.As+", "
	}
	return expand(`SELECT `+key+`sum(n_deployments) AS deployments,
    `+round4("deployments / "+by.Days)+` AS deployments_per_day,
    sum(n_changes) AS changes,
    if(changes = 0, NULL, sum(n_lead_time_median)) AS lead_time_median_seconds,
    if(changes = 0, NULL, sum(n_lead_time_p90)) AS lead_time_p90_seconds,
    sum(n_failed) AS failed_deployments,
    if(deployments = 0, NULL, `+round4("failed_deployments / deployments")+`) AS change_failure_rate,
    sum(n_incidents) AS incidents,
    if(sum(n_resolved) = 0, NULL, sum(n_restore_median)) AS time_to_restore_median_seconds,
    if(sum(n_recovered) = 0, NULL, sum(n_recovery_median)) AS failed_deployment_recovery_median_seconds,
    sum(n_rework) AS rework_deployments,
    if(deployments = 0, NULL, `+round4("rework_deployments / deployments")+`) AS rework_rate
FROM (
    SELECT `+keys+`deployments AS n_deployments, failed_deployments AS n_failed, rework_deployments AS n_rework,
        recovered_deployments AS n_recovered, recovery_median_seconds AS n_recovery_median, changes AS n_changes,
        lead_time_median_seconds AS n_lead_time_median, lead_time_p90_seconds AS n_lead_time_p90,
        toUInt64(0) AS n_incidents, toUInt64(0) AS n_resolved, toUInt64(0) AS n_restore_median
    FROM (`+DeliverySQL(db, w, s, by)+`)
    UNION ALL
    SELECT `+keys+`toUInt64(0), toUInt64(0), toUInt64(0), toUInt64(0), toUInt64(0), toUInt64(0), toUInt64(0), toUInt64(0),
        incidents, resolved_incidents, time_to_restore_median_seconds
    FROM (`+IncidentsSQL(db, w, s, by)+`))`+by.group(), db, w, s)
}

// round4 rounds a ratio to 4 places as the report does (half up: the
// server's round() rounds half to even).
func round4(x string) string { return "floor((" + x + ") * 10000 + 0.5) / 10000" }

// TierSQL is the tier of metric m ('elite', 'high', 'medium' or 'low') of
// a value in the report's units under the benchmark that the String
// expression bench names (a dashboard's '${benchmark}'; an unknown name is
// the default benchmark); NULL where the value is.
func TierSQL(m Metric, value, bench string) string {
	sql := Benchmarks[0].tierSQL(m, value)
	for _, b := range Benchmarks[1:] {
		sql = "if(" + bench + " = " + quote(b.Name) + ", " + b.tierSQL(m, value) + ", " + sql + ")"
	}
	return "if(isNull(" + value + "), NULL, " + sql + ")"
}

func (b Benchmark) tierSQL(m Metric, value string) string {
	l := b.Limits(m)
	sql := "multiIf("
	for i, v := range l.Values {
		sql += fmt.Sprintf("%s %s %s, '%s', ", value, l.Compare, strconv.FormatFloat(v, 'g', -1, 64), TierOrder[i])
	}
	return sql + "'low')"
}
