package grafanatest

import (
	"strings"
	"testing"
	"time"
)

// The expansion is Grafana's and the plugin's, in their order: the
// conditionalAll macro before the variables (so All never reaches a
// condition), nested parentheses inside its first argument, Grafana's
// singlequote format with a backslash before a quote, a one-value
// selection still a list, the time macros (30 days give $__interval_s
// 1800, as Grafana rounds); and anything it cannot expand
// is an error, not SQL with a macro left in it.
func TestExpand(t *testing.T) {
	from, to := time.Unix(1_700_000_000, 0), time.Unix(1_700_000_000+30*86400, 0)
	base := Vars{From: from, To: to, Benchmark: "2021", AllTeams: []string{"a", "b"}}
	cases := []struct {
		name, sql string
		v         func(Vars) Vars
		want      string // "" with wantErr
		wantErr   string
	}{
		{"All is 1=1", "WHERE $__conditionalAll(team IN (${team:singlequote}), $team)", nil, "WHERE 1=1", ""},
		{"one team is a list of one", "WHERE $__conditionalAll(team IN (${team:singlequote}), $team)",
			func(v Vars) Vars { v.Team = []string{"a"}; return v }, "WHERE team IN ('a')", ""},
		{"several, one with a quote", "$__conditionalAll(x IN (SELECT f(a, b) FROM t WHERE team IN (${team:singlequote})), ${team})",
			func(v Vars) Vars { v.Team = []string{"o'brien", "b"}; return v },
			`x IN (SELECT f(a, b) FROM t WHERE team IN ('o\'brien','b'))`, ""},
		{"two macros, innermost last", "$__conditionalAll(a IN (${repository:singlequote}), $repository) AND $__conditionalAll(t IN (${team:singlequote}), $team)",
			func(v Vars) Vars { v.Repository = []string{"r/1"}; return v }, "a IN ('r/1') AND 1=1", ""},
		{"All outside the macro lists every option", "IN (${team:singlequote})", nil, "IN ('a','b')", ""},
		{"time macros and benchmark", "$__fromTime, $__toTime, $__interval_s, '${benchmark}'", nil,
			"toDateTime(1700000000), toDateTime(1702592000), 1800, '2021'", ""},
		{"a formatted second argument is not the plugin's", "$__conditionalAll(t IN (${team:singlequote}), ${team:singlequote})", nil,
			"", "not $var or ${var}"},
		{"an unknown macro is left", "$__timeGroup(t, 1h)", nil, "", "not expanded"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			v := base
			if c.v != nil {
				v = c.v(v)
			}
			got, err := Expand(c.sql, v)
			if c.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), c.wantErr) {
					t.Fatalf("got %q, %v; want an error with %q", got, err, c.wantErr)
				}
				return
			}
			if err != nil || got != c.want {
				t.Errorf("got %q, %v\nwant %q", got, err, c.want)
			}
		})
	}
}
