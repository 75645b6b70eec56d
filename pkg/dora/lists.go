package dora

import "strconv"

// The lists behind a team's detail: facts of the window one by one, their
// latest versions, tombstones dropped, of the scope's teams and of the
// repositories the condition repos on column repo admits (a dashboard's
// $__conditionalAll on ${repository:singlequote}; empty for all). Each
// deduplicates only the window's rows, as DeliverySQL does at its edges.

// TeamsSQL lists every team the mapping names, and unassigned.
// Column: team.
func TeamsSQL(db string) string {
	return expand(`SELECT DISTINCT team FROM (
    SELECT `+teamExpr+` AS team FROM `+entityTeams+`
    UNION ALL SELECT 'unassigned')
ORDER BY team`, db, Window{}, AllTeams)
}

// ReposSQL lists the repositories with production deployments or changes
// on record of the scope's teams. Column: repo.
func ReposSQL(db string, s Scope) string {
	return expand(`SELECT DISTINCT repo FROM {db}.repo_days
WHERE 1 = 1`+repoScope(s)+`
ORDER BY repo`, db, Window{}, s)
}

// DeploymentsListSQL lists the production deployments finished in the
// window, latest first, at most limit. Columns: finished_at, team, repo,
// deployment_id, sha, changes, approximate, outcome (failed: rolled back
// or caused an incident; else rollback: it re-deployed an earlier sha;
// else ok), rework, incidents, recovery_seconds (NULL until recovered).
func DeploymentsListSQL(db string, w Window, s Scope, repos string, limit int) string {
	return expand(`SELECT finished_at, `+teamExpr+` AS team, repo, deployment_id, sha, changes, approximate,
    multiIf(failed = 1, 'failed', rollback = 1, 'rollback', 'ok') AS outcome, rework, incidents,
    if(failed = 1 AND recovered_at IS NOT NULL,
        toNullable(toInt64(assumeNotNull(recovered_at)) - toInt64(finished_at)), NULL) AS recovery_seconds
FROM (
    SELECT repo, deployment_id, sha, finished_at, production, rollback, failed, rework, changes, approximate,
        incidents, recovered_at, live
    FROM {db}.deployments
    WHERE finished_at >= {from} AND finished_at < {to}`+repoScope(s)+repoList(repos)+`
    ORDER BY version DESC
    LIMIT 1 BY repo, deployment_id, finished_at)
ANY LEFT JOIN `+repoTeams+` USING repo
WHERE live = 1 AND production = 1
ORDER BY finished_at DESC, repo, deployment_id
LIMIT `+strconv.Itoa(limit), db, w, s)
}

// FailedDeploymentsSQL is DeploymentsListSQL's failed deployments (rolled
// back or the cause of an incident) with the incidents attributed to them.
// Extra column: incident_ids (a list).
func FailedDeploymentsSQL(db string, w Window, s Scope, repos string, limit int) string {
	return expand(`SELECT finished_at, team, repo, deployment_id, sha, outcome, incidents, incident_ids, recovery_seconds
FROM (`+DeploymentsListSQL(db, w, s, repos, 1000000)+`)
ANY LEFT JOIN (
    SELECT deployment_repo AS repo, deployment_id, groupArray(incident_id) AS incident_ids FROM (
        SELECT incident_id, deployment_repo, deployment_id, live FROM {db}.incidents
        WHERE opened_at >= {from} AND deployment_id != ''
        ORDER BY version DESC
        LIMIT 1 BY incident_id, opened_at)
    WHERE live = 1
    GROUP BY repo, deployment_id) USING (repo, deployment_id)
WHERE outcome = 'failed'
ORDER BY finished_at DESC, repo, deployment_id
LIMIT `+strconv.Itoa(limit), db, w, s)
}

// ChangesListSQL lists the changes first deployed in the window, slowest
// first, at most limit. Columns: deployed_at, team, repo, sha,
// committed_at, lead_time_seconds.
func ChangesListSQL(db string, w Window, s Scope, repos string, limit int) string {
	return expand(`SELECT deployed_at, `+teamExpr+` AS team, repo, sha, committed_at, lead_time_seconds
FROM (
    SELECT repo, sha, committed_at, deployed_at, lead_time_seconds, live
    FROM {db}.changes
    WHERE deployed_at >= {from} AND deployed_at < {to}`+repoScope(s)+repoList(repos)+`
    ORDER BY version DESC
    LIMIT 1 BY repo, sha, deployed_at)
ANY LEFT JOIN `+repoTeams+` USING repo
WHERE live = 1
ORDER BY lead_time_seconds DESC, repo, sha
LIMIT `+strconv.Itoa(limit), db, w, s)
}

// IncidentsListSQL lists the incidents resolved in the window, latest
// first, at most limit, by the team of their own repository or service.
// Columns: resolved_at, team, incident_id, source, service, repo,
// opened_at, restore_seconds, attribution.
func IncidentsListSQL(db string, w Window, s Scope, limit int) string {
	where := ""
	if s.scoped() {
		where = "\nWHERE " + s.guard(s.is(teamExpr))
	}
	return expand(`SELECT resolved_at, `+teamExpr+` AS team, incident_id, source, service, repo, opened_at,
    toInt64(resolved_at) - toInt64(opened_at) AS restore_seconds, attribution
FROM (
    SELECT incident_id, source, service, repo, opened_at, assumeNotNull(resolved_at) AS resolved_at, attribution,
        if(repo != '', concat('repo:', repo), concat('service:', service)) AS entity
    FROM (
        SELECT incident_id, source, service, repo, opened_at, resolved_at, attribution, live
        FROM {db}.incidents
        WHERE opened_at < {to} AND (incident_id, opened_at) IN (
            SELECT incident_id, opened_at FROM {db}.incidents
            WHERE opened_at < {to} AND resolved_at >= {from} AND resolved_at < {to})
        ORDER BY version DESC
        LIMIT 1 BY incident_id, opened_at)
    WHERE live = 1 AND resolved_at IS NOT NULL AND assumeNotNull(resolved_at) >= {from} AND assumeNotNull(resolved_at) < {to})
ANY LEFT JOIN `+entityTeams+` USING entity`+where+`
ORDER BY resolved_at DESC, incident_id
LIMIT `+strconv.Itoa(limit)+`
SETTINGS use_index_for_in_with_subqueries = 0`, db, w, s)
}

// repoList restricts a scan to the repositories the condition repos
// admits.
func repoList(repos string) string {
	if repos == "" {
		return ""
	}
	return "\n            AND " + repos
}

// ApproximateSQL counts per UTC day (column day) the production
// deployments finished in the window and those among them whose changes
// are approximate (found without a complete push chain or the Git host's
// compare API). Columns: day, deployments, approximate.
func ApproximateSQL(db string, w Window) string {
	return expand(`SELECT toDate(finished_at) AS day, count() AS deployments, countIf(approximate = 1) AS approximate
FROM (
    SELECT finished_at, production, approximate, live FROM {db}.deployments
    WHERE finished_at >= {from} AND finished_at < {to}
    ORDER BY version DESC
    LIMIT 1 BY repo, deployment_id, finished_at)
WHERE live = 1 AND production = 1
GROUP BY day`, db, w, AllTeams)
}

// LastSeenSQL is, per kind of fact and incident source, the latest time a
// stored fact names and how many facts name a time within the last day
// before to: a source that went quiet shows here. Columns: facts, source,
// last_seen, last_day.
func LastSeenSQL(db string, w Window) string {
	return expand(`SELECT 'production deployments' AS facts, '' AS source, max(finished_at) AS last_seen,
    countIf(finished_at >= toDateTime(toUInt32({to}) - 86400)) AS last_day
FROM {db}.deployments WHERE live = 1 AND production = 1 AND finished_at < {to}
UNION ALL
SELECT 'changes', '', max(deployed_at), countIf(deployed_at >= toDateTime(toUInt32({to}) - 86400))
FROM {db}.changes WHERE live = 1 AND deployed_at < {to}
UNION ALL
SELECT 'incidents', source, max(opened_at), countIf(opened_at >= toDateTime(toUInt32({to}) - 86400))
FROM {db}.incidents WHERE live = 1 AND opened_at < {to}
GROUP BY source`, db, w, AllTeams)
}
