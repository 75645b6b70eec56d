package dashboards

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/doraflow/doraflow/pkg/dora"
)

// What every panel's SQL is made of: pkg/dora's SQL over the dashboard's
// time range, teams and repositories, in the plugin's macros and
// Grafana's variable formats. The plugin's backend expands $__fromTime and
// $__toTime to toDateTime(seconds); $__conditionalAll(cond, $var) is
// replaced by 1=1 in the browser when $var is All, before Grafana
// interpolates the rest (so a condition never sees an All list).
var (
	window = dora.Window{From: "$__fromTime", To: "$__toTime"}
	// previous is the period of the same length just before the range.
	previous = dora.Window{From: "toDateTime(2 * toUInt32($__fromTime) - toUInt32($__toTime))", To: "$__fromTime"}
	teams    = dora.Scope{Teams: "${team:singlequote}", Guard: "$__conditionalAll(%s, $team)"}
)

const (
	repos = "$__conditionalAll(repo IN (${repository:singlequote}), $repository)"
	// bench is the selected benchmark's name, one of dora.Benchmarks.
	bench = "'${benchmark}'"
)

// statSQL is one metric column of dora.MetricsSQL over the selected teams
// as two points: the previous period's (at its start) and the range's (at
// the range's start). A stat panel shows the last and its change from the
// first.
func statSQL(db, column string) string {
	return `SELECT time, value FROM (
SELECT ` + previous.From + ` AS time, ` + column + ` AS value FROM (
` + dora.MetricsSQL(db, previous, teams, dora.Overall) + `)
UNION ALL
SELECT ` + window.From + ` AS time, ` + column + ` AS value FROM (
` + dora.MetricsSQL(db, window, teams, dora.Overall) + `))
ORDER BY time`
}

// thresholdsSQL is the selected benchmark's steps of a metric as one row,
// a column per tier in ascending order of its step, for the stat panels'
// "config from query results" thresholds. The base step is 0 rather than
// -Infinity, which a query cannot give: every metric is at least 0, and
// Grafana's display turns the lowest step into the base either way.
func thresholdsSQL(m dora.Metric) string {
	var cols []string
	for i, st := range steps(m, dora.Benchmarks[0]) {
		val := ""
		for _, b := range dora.Benchmarks {
			v := "0"
			if i > 0 {
				v = strconv.FormatFloat(steps(m, b)[i].value, 'g', -1, 64)
			}
			if val == "" {
				val = v
				continue
			}
			val = "if(" + bench + " = '" + b.Name + "', " + v + ", " + val + ")"
		}
		cols = append(cols, val+" AS "+string(st.tier))
	}
	return "SELECT " + strings.Join(cols, ", ")
}

// trendSQL is columns of dora.MetricsSQL per bucket (dora.ByDay, ByWeek or
// ByMonth) of the range over the selected teams, every bucket present: a
// bucket with no facts has zero deployments (and incidents), and no value
// for what needs something to measure.
func trendSQL(db string, by dora.By, columns ...string) string {
	return zeroFilled(by.Key, columns, dora.MetricsSQL(db, window, teams, by))
}

// zeroFilled is columns of rows (a query with a Date column bucket) for
// every bucket of the range, key a function of the UTC day day: a bucket
// missing from rows has the columns' defaults — 0 for counts, NULL for
// what is Nullable. The plugin takes the time column as the series' time.
func zeroFilled(key string, columns []string, rows string) string {
	// The range's UTC days by number, as dora does: the server's time
	// zone does not matter.
	first := `intDiv(toUInt32(` + window.From + `), 86400)`
	days := `SELECT toDate(` + first + ` + arrayJoin(range(toUInt32(intDiv(toUInt32(` + window.To + `) - 1, 86400) - ` + first + ` + 1)))) AS day`
	return `SELECT toDateTime(toUInt32(bucket) * 86400) AS time, ` + strings.Join(columns, ", ") + `
FROM (SELECT DISTINCT ` + key + ` AS bucket FROM (` + days + `))
ANY LEFT JOIN (
` + rows + `) USING bucket
ORDER BY time`
}

// teamsSQL is dora.MetricsSQL per selected team with the tiers of the
// selected benchmark and each key's relative change against the previous
// period: the columns named, the rows tail keeps in its order (WHERE,
// ORDER BY).
func teamsSQL(db, columns, tail string) string {
	prev := `SELECT team, deployments_per_day AS prev_df, lead_time_median_seconds AS prev_lt,
    change_failure_rate AS prev_cfr, time_to_restore_median_seconds AS prev_ttr FROM (
` + dora.MetricsSQL(db, previous, teams, dora.ByTeam) + `)`
	return `SELECT ` + columns + ` FROM (
SELECT *,
    ` + tier(dora.DeploymentFrequency, "deployments_per_day") + ` AS df_tier,
    ` + tier(dora.LeadTime, "lead_time_median_seconds") + ` AS lt_tier,
    ` + tier(dora.ChangeFailureRate, "change_failure_rate") + ` AS cfr_tier,
    ` + tier(dora.TimeToRestore, "time_to_restore_median_seconds") + ` AS ttr_tier,
    ` + change("deployments_per_day", "prev_df") + ` AS df_change,
    ` + change("lead_time_median_seconds", "prev_lt") + ` AS lt_change,
    ` + change("change_failure_rate", "prev_cfr") + ` AS cfr_change,
    ` + change("time_to_restore_median_seconds", "prev_ttr") + ` AS ttr_change
FROM (
` + dora.MetricsSQL(db, window, teams, dora.ByTeam) + `)
ANY LEFT JOIN (
` + prev + `) USING team)
` + tail
}

func tier(m dora.Metric, value string) string { return dora.TierSQL(m, value, bench) }

// change is cur's relative change from prev, NULL where either is missing
// or prev is zero (a team without a previous row has prev 0 or NULL).
func change(cur, prev string) string {
	return fmt.Sprintf("if(isNull(%[1]s) OR isNull(%[2]s) OR %[2]s = 0, NULL, toFloat64(assumeNotNull(%[1]s)) / toFloat64(assumeNotNull(%[2]s)) - 1)", cur, prev)
}

// tierShareSQL counts the selected teams in each tier of each key metric.
func tierShareSQL(db string) string {
	var counts []string
	for _, m := range dora.Metrics {
		counts = append(counts, "countIf(t_"+string(m)+" = tier) AS `"+metricTitle[m]+"`")
	}
	var tiers []string
	for _, t := range dora.TierOrder {
		tiers = append(tiers, "'"+string(t)+"'")
	}
	list := "[" + strings.Join(tiers, ", ") + "]"
	return `SELECT tier, ` + strings.Join(counts, ", ") + ` FROM (
SELECT arrayJoin(` + list + `) AS tier,
    ` + tier(dora.DeploymentFrequency, "deployments_per_day") + ` AS t_deployment_frequency,
    ` + tier(dora.LeadTime, "lead_time_median_seconds") + ` AS t_lead_time,
    ` + tier(dora.ChangeFailureRate, "change_failure_rate") + ` AS t_change_failure_rate,
    ` + tier(dora.TimeToRestore, "time_to_restore_median_seconds") + ` AS t_time_to_restore
FROM (
` + dora.MetricsSQL(db, window, teams, dora.ByTeam) + `))
GROUP BY tier
ORDER BY indexOf(` + list + `, tier)`
}

var metricTitle = map[dora.Metric]string{
	dora.DeploymentFrequency: "Deployment frequency",
	dora.LeadTime:            "Lead time",
	dora.ChangeFailureRate:   "Change failure rate",
	dora.TimeToRestore:       "Time to restore",
}
