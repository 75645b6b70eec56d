// Package grafanatest turns a panel's rawSql into the SQL ClickHouse
// receives from Grafana's ClickHouse plugin, for the tests and benchmarks
// that run the dashboards' queries where no Grafana runs.
package grafanatest

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Vars are a dashboard's variable values as Grafana holds them: a nil
// list is All.
type Vars struct {
	From, To         time.Time
	Team, Repository []string
	Benchmark        string
	// AllTeams and AllRepos are the variables' options, what Grafana puts
	// for All where no $__conditionalAll stands.
	AllTeams, AllRepos []string
}

// Expand turns a panel's rawSql into what ClickHouse receives, in the
// order it happens: the plugin's frontend replaces $__conditionalAll
// (before anything is interpolated), Grafana interpolates the variables,
// the plugin's backend expands its time macros. It fails on anything left
// that none of them would expand.
func Expand(sql string, v Vars) (string, error) {
	sql, err := conditionalAll(sql, map[string]bool{"team": v.Team == nil, "repository": v.Repository == nil})
	if err != nil {
		return "", err
	}
	pick := func(vals, all []string) []string {
		if vals == nil {
			return all
		}
		return vals
	}
	sql = strings.NewReplacer(
		"${team:singlequote}", singlequote(pick(v.Team, v.AllTeams)),
		"${repository:singlequote}", singlequote(pick(v.Repository, v.AllRepos)),
		"${benchmark}", v.Benchmark,
		"$__fromTime", fmt.Sprintf("toDateTime(%d)", v.From.Unix()),
		"$__toTime", fmt.Sprintf("toDateTime(%d)", v.To.Unix()),
		"$__interval_s", strconv.Itoa(interval(v.To.Sub(v.From))),
	).Replace(sql)
	if i := strings.Index(sql, "$"); i >= 0 {
		return "", fmt.Errorf("not expanded: %q", sql[i:min(len(sql), i+40)])
	}
	return sql, nil
}

// interval is Grafana's $__interval in seconds for a range drawn over
// about 1,000 points: the raw step rounded down to a "nice" one (30 days
// give 1,800 s).
func interval(r time.Duration) int {
	raw := int(r.Seconds() / 1000)
	nice := 1
	for _, n := range []int{1, 2, 5, 10, 15, 20, 30, 60, 120, 300, 600, 900, 1200, 1800, 3600, 7200, 10800, 21600, 43200, 86400} {
		if n <= raw {
			nice = n
		}
	}
	return nice
}

// singlequote is Grafana's singlequote format: each value in single
// quotes, a quote inside escaped with a backslash, joined by commas.
func singlequote(vals []string) string {
	out := make([]string, len(vals))
	for i, v := range vals {
		out[i] = "'" + strings.ReplaceAll(v, "'", `\'`) + "'"
	}
	return strings.Join(out, ",")
}

var varRef = regexp.MustCompile(`^\$\{(\w+)\}$|^\$(\w+)$`)

// conditionalAll does what the plugin's applyConditionalAll does: from
// the last $__conditionalAll( on, split its arguments at the commas
// outside nested parentheses, and put 1=1 where the second argument's
// variable is All, else the first argument. Anything but two arguments,
// or a second that is not a bare $var or ${var}, is an error here (the
// plugin would leave the macro in the SQL).
func conditionalAll(sql string, all map[string]bool) (string, error) {
	const macro = "$__conditionalAll("
	for i := strings.LastIndex(sql, macro); i >= 0; i = strings.LastIndex(sql, macro) {
		start := i + len(macro)
		depth, args, last, end := 1, []string{}, start, -1
		for j := start; j < len(sql) && end < 0; j++ {
			switch sql[j] {
			case '(':
				depth++
			case ')':
				if depth--; depth == 0 {
					args = append(args, sql[last:j])
					end = j + 1
				}
			case ',':
				if depth == 1 {
					args = append(args, sql[last:j])
					last = j + 1
				}
			}
		}
		if end < 0 || len(args) != 2 {
			return "", fmt.Errorf("$__conditionalAll at %d: %d arguments", i, len(args))
		}
		m := varRef.FindStringSubmatch(strings.TrimSpace(args[1]))
		if m == nil {
			return "", fmt.Errorf("$__conditionalAll second argument %q: not $var or ${var}", args[1])
		}
		name := m[1] + m[2]
		phrase := args[0]
		if all[name] {
			phrase = "1=1"
		}
		sql = sql[:i] + phrase + sql[end:]
	}
	return sql, nil
}
