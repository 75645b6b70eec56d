package dashboards

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"reflect"
	"sort"
	"testing"
	"time"

	ch "github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/doraflow/doraflow/internal/benchscale"
	"github.com/doraflow/doraflow/internal/grafanatest"
	"github.com/doraflow/doraflow/internal/report"
	"github.com/doraflow/doraflow/internal/testenv"
	"github.com/doraflow/doraflow/pkg/dora"
	"github.com/doraflow/doraflow/pkg/telemetry"
	"github.com/doraflow/doraflow/sinks/clickhouse"
)

func TestMain(m *testing.M) { os.Exit(testenv.RunClickHouse(m)) }

// quoted is a team whose name has a quote in it.
const quoted = "o'brien"

// history is a database with a generated history (benchscale's, at
// twice the processor's churn, in small inserts so that versions sit
// unmerged) whose first repository and service belong to quoted.
type history struct {
	store *clickhouse.Store
	conn  driver.Conn
	db    string
	teams []string
}

func loadHistory(t *testing.T) history {
	t.Helper()
	ctx := context.Background()
	dsn := testenv.ClickHouse(t)
	store, err := clickhouse.Open(ctx, dsn, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	if _, err := store.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	size := benchscale.Size{Teams: 5, ReposPerTeam: 3, Days: 200, DeploymentsPerDay: 30, ChangesPerDeployment: 4,
		BatchesPerDay: 4, Churn: 2}
	mapping := size.Mapping()
	if err := store.WriteTeams(ctx, mapping, 1); err != nil {
		t.Fatal(err)
	}
	if err := store.WriteTeams(ctx, map[string]string{"repo:" + benchscale.Repo(0): quoted, "service:svc-0000": quoted}, 2); err != nil {
		t.Fatal(err)
	}
	err = benchscale.Chunks(size, 3, 5000, func(bs []benchscale.Batch) error {
		return benchscale.Write(ctx, store, bs)
	})
	if err != nil {
		t.Fatal(err)
	}
	// What processors would have counted: every source every hour, a
	// dead letter now and then.
	var counts []telemetry.PipelineCount
	for at := benchscale.End.AddDate(0, 0, -size.Days); at.Before(benchscale.End); at = at.Add(time.Hour) {
		for i, source := range []string{"github", "gitlab", "pagerduty"} {
			counts = append(counts, telemetry.PipelineCount{Minute: at, Source: source, Outcome: telemetry.OutcomeProcessed,
				Events: uint64(10 * (i + 1)), LagSecondsSum: float64(i + 1)})
		}
		if at.Hour() == 3 {
			counts = append(counts, telemetry.PipelineCount{Minute: at, Source: "github", Outcome: telemetry.OutcomeDeadLettered, Events: 1})
		}
	}
	if err := store.WritePipeline(ctx, counts); err != nil {
		t.Fatal(err)
	}
	conn, db := testenv.Conn(t, dsn)
	h := history{store: store, conn: conn, db: db}
	for _, r := range h.rows(t, dora.TeamsSQL(db)) {
		h.teams = append(h.teams, r[0].(string))
	}
	return h
}

// rows runs a query and returns its rows, each value dereferenced
// (nil for NULL).
func (h history) rows(t *testing.T, sql string) [][]any {
	t.Helper()
	rows, err := h.conn.Query(context.Background(), sql)
	if err != nil {
		t.Fatalf("%v\n%s", err, sql)
	}
	defer rows.Close()
	var out [][]any
	types := rows.ColumnTypes()
	for rows.Next() {
		dest := make([]any, len(types))
		for i, ct := range types {
			dest[i] = reflect.New(ct.ScanType()).Interface()
		}
		if err := rows.Scan(dest...); err != nil {
			t.Fatalf("scan: %v\n%s", err, sql)
		}
		row := make([]any, len(dest))
		for i, d := range dest {
			v := reflect.ValueOf(d).Elem()
			for v.Kind() == reflect.Pointer {
				if v.IsNil() {
					break
				}
				v = v.Elem()
			}
			if v.Kind() == reflect.Pointer {
				row[i] = nil
			} else {
				row[i] = v.Interface()
			}
		}
		out = append(out, row)
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("%v\n%s", err, sql)
	}
	return out
}

// The window of the tests: 90 days ending at an odd time of the
// history's last day, so that whole days, partial days and the previous
// period all count.
var (
	until = benchscale.End.Add(-2*24*time.Hour + 13*time.Hour + 37*time.Minute)
	since = until.Add(-90 * 24 * time.Hour)
)

// Every target of every panel and every query variable runs, with the
// variables as Grafana and the plugin expand them — All, one team,
// several, a team with a quote in its name, a repository, the 2021
// benchmark — and returns rows.
func TestEveryPanelQueryRuns(t *testing.T) {
	h := loadHistory(t)
	ds, err := Build(h.db)
	if err != nil {
		t.Fatal(err)
	}
	allRepos := []string{}
	for _, r := range h.rows(t, dora.ReposSQL(h.db, dora.AllTeams)) {
		allRepos = append(allRepos, r[0].(string))
	}
	base := grafanatest.Vars{From: since, To: until, Benchmark: "2023", AllTeams: h.teams, AllRepos: allRepos}
	cases := []struct {
		name string
		v    func(v grafanatest.Vars) grafanatest.Vars
	}{
		{"all teams", func(v grafanatest.Vars) grafanatest.Vars { return v }},
		{"one team", func(v grafanatest.Vars) grafanatest.Vars { v.Team = []string{benchscale.Team(1)}; return v }},
		{"several teams, 2021", func(v grafanatest.Vars) grafanatest.Vars {
			v.Team, v.Benchmark = []string{benchscale.Team(1), benchscale.Team(2)}, "2021"
			return v
		}},
		{"a quote in the team's name", func(v grafanatest.Vars) grafanatest.Vars { v.Team = []string{quoted}; return v }},
		{"one repository", func(v grafanatest.Vars) grafanatest.Vars {
			v.Team, v.Repository = []string{benchscale.Team(1)}, []string{benchscale.Repo(3)}
			return v
		}},
	}
	for _, c := range cases {
		v := c.v(base)
		for _, d := range ds {
			for _, q := range variableQueries(d) {
				check(t, h, c.name, d.UID+" variable "+q.name, q.sql, v)
			}
			for _, p := range panels(d) {
				for _, q := range p.queries {
					check(t, h, c.name, fmt.Sprintf("%s %q %s", d.UID, p.title, q.RefId), q.RawSql, v)
				}
			}
		}
	}
}

func check(t *testing.T, h history, scope, what, raw string, v grafanatest.Vars) {
	t.Helper()
	sql, err := grafanatest.Expand(raw, v)
	if err != nil {
		t.Errorf("%s, %s: %v", scope, what, err)
		return
	}
	if rows := h.rows(t, sql); len(rows) == 0 {
		t.Errorf("%s, %s: no rows\n%s", scope, what, sql)
	}
}

// The stat panels show what `doraflow report` prints for the same window
// and team (All: its total), over the range and over the period before it;
// the team table's rows are the report's rows.
func TestStatsAreTheReport(t *testing.T) {
	h := loadHistory(t)
	ds, err := Build(h.db)
	if err != nil {
		t.Fatal(err)
	}
	stats := map[string]string{}
	var teamTable string
	for _, d := range ds {
		for _, p := range panels(d) {
			if d.UID == OverviewUID && len(p.queries) > 0 && p.kind == "stat" {
				stats[p.title] = p.queries[0].RawSql
			}
			if d.UID == TeamsUID && p.title == "Teams" {
				teamTable = p.queries[0].RawSql
			}
		}
	}
	if len(stats) != len(keys) || teamTable == "" {
		t.Fatalf("found %d stat panels and team table %t", len(stats), teamTable != "")
	}
	field := map[string]func(m dora.TeamMetrics) *float64{
		"Deployment frequency":             func(m dora.TeamMetrics) *float64 { return &m.DeploymentsPerDay },
		"Lead time for changes (p50)":      func(m dora.TeamMetrics) *float64 { return m.LeadTimeMedianSeconds },
		"Change failure rate":              func(m dora.TeamMetrics) *float64 { return m.ChangeFailureRate },
		"Time to restore (p50)":            func(m dora.TeamMetrics) *float64 { return m.TimeToRestoreMedian },
		"Failed deployment recovery (p50)": func(m dora.TeamMetrics) *float64 { return m.RecoveryMedianSeconds },
		"Rework rate":                      func(m dora.TeamMetrics) *float64 { return m.ReworkRate },
	}
	ctx := context.Background()
	for _, team := range []string{"", benchscale.Team(1), quoted} {
		v := grafanatest.Vars{From: since, To: until, Benchmark: "2023", AllTeams: h.teams}
		if team != "" {
			v.Team = []string{team}
		}
		cur, err := report.Build(ctx, h.store, dora.Benchmark2023, since, until, nil, team)
		if err != nil {
			t.Fatal(err)
		}
		prev, err := report.Build(ctx, h.store, dora.Benchmark2023, since.Add(-until.Sub(since)), since, nil, team)
		if err != nil {
			t.Fatal(err)
		}
		for title, raw := range stats {
			sql, err := grafanatest.Expand(raw, v)
			if err != nil {
				t.Fatal(err)
			}
			rows := h.rows(t, sql)
			if len(rows) != 2 {
				t.Fatalf("team %q, %s: %d rows, want 2", team, title, len(rows))
			}
			for i, r := range []report.Report{prev, cur} {
				want := field[title](r.Total)
				if got := number(rows[i][1]); !sameNumber(got, want) {
					t.Errorf("team %q, %s, %s: panel %s, report %s", team, title, []string{"previous period", "range"}[i], show(got), show(want))
				}
			}
			if got, want := rows[0][0].(time.Time), since.Add(-until.Sub(since)); !got.Equal(want) {
				t.Errorf("%s: previous point at %s, want %s", title, got, want)
			}
		}
		// The table: one row per team the report measured.
		sql, err := grafanatest.Expand(teamTable, v)
		if err != nil {
			t.Fatal(err)
		}
		rows := h.rows(t, sql)
		var measured []dora.TeamMetrics
		for _, m := range cur.Teams {
			if m.Deployments+m.Changes+m.Incidents > 0 || m.TimeToRestoreMedian != nil {
				measured = append(measured, m)
			}
		}
		if len(rows) != len(measured) {
			t.Fatalf("team %q: table has %d rows, report %d", team, len(rows), len(measured))
		}
		sort.Slice(measured, func(i, j int) bool { return measured[i].Team < measured[j].Team })
		for i, m := range measured {
			r := rows[i]
			got := []any{r[0], number(r[1]), r[2], number(r[4]), r[5], number(r[7]), r[8], number(r[10]), r[11], number(r[14]), r[15], r[16], r[17], r[18]}
			want := []any{m.Team, &m.DeploymentsPerDay, string(m.Tiers.DeploymentFrequency), m.LeadTimeMedianSeconds, tierOrNil(m.Tiers.LeadTime),
				m.ChangeFailureRate, tierOrNil(m.Tiers.ChangeFailureRate), m.TimeToRestoreMedian, tierOrNil(m.Tiers.TimeToRestore),
				m.ReworkRate, m.Deployments, m.Changes, m.FailedDeployments, m.Incidents}
			for j := range got {
				if !sameValue(got[j], want[j]) {
					t.Errorf("team %q, table row %s, value %d: panel %s, report %s", team, m.Team, j, show(got[j]), show(want[j]))
				}
			}
		}
	}
}

func tierOrNil(t *dora.Tier) any {
	if t == nil {
		return nil
	}
	return string(*t)
}

// number reads a numeric column as a float (nil for NULL).
func number(v any) *float64 {
	if v == nil {
		return nil
	}
	rv := reflect.ValueOf(v)
	if !rv.CanConvert(reflect.TypeOf(0.0)) || rv.Kind() == reflect.String {
		return nil
	}
	f := rv.Convert(reflect.TypeOf(0.0)).Float()
	return &f
}

func sameNumber(a, b *float64) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	return math.Abs(*a-*b) <= 1e-9*math.Max(1, math.Abs(*b))
}

func sameValue(a, b any) bool {
	fa, oka := a.(*float64)
	fb, okb := b.(*float64)
	if oka || okb {
		return sameNumber(fa, fb)
	}
	if u, ok := a.(uint64); ok {
		if w, ok := b.(uint64); ok {
			return u == w
		}
	}
	return reflect.DeepEqual(a, b)
}

func show(v any) string {
	if f, ok := v.(*float64); ok {
		if f == nil {
			return "NULL"
		}
		return fmt.Sprint(*f)
	}
	if v == nil {
		return "NULL"
	}
	return fmt.Sprint(v)
}

// The stats' and the rankings' colours are the tiers of pkg/dora's one
// table, for each benchmark: the thresholds query T, run on ClickHouse, and the static
// steps (the default benchmark's) colour every value on either side of
// every limit as the Go tiers rate it, under Grafana's rule (a value takes
// the colour of the highest step at or below it).
func TestStatColoursAreTheTiers(t *testing.T) {
	testenv.ClickHouse(t)
	conn, err := ch.Open(&ch.Options{Addr: []string{testenv.ClickHouseAddr()}})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	h := history{conn: conn}
	ds, err := Build("doraflow")
	if err != nil {
		t.Fatal(err)
	}
	goTier := func(b dora.Benchmark, m dora.Metric, v float64) dora.Tier {
		switch m {
		case dora.DeploymentFrequency:
			return b.DeploymentFrequencyTier(v)
		case dora.LeadTime:
			return b.LeadTimeTier(time.Duration(v * float64(time.Second)))
		case dora.ChangeFailureRate:
			return b.ChangeFailureRateTier(v)
		}
		return b.TimeToRestoreTier(time.Duration(v * float64(time.Second)))
	}
	colour := func(steps []step, v float64) string {
		c := ""
		for _, s := range steps {
			if v >= s.value {
				c = tierColor[s.tier]
			}
		}
		return c
	}
	checked := 0
	var all []panel
	for _, d := range ds {
		all = append(all, panels(d)...)
	}
	for _, p := range all {
		var k *key
		for i := range keys {
			if keys[i].tiered && (p.title == keys[i].title || p.title == keys[i].title+" by team") {
				k = &keys[i]
			}
		}
		var thresholdsQuery string
		for _, q := range p.queries {
			if q.RefId == "T" {
				thresholdsQuery = q.RawSql
			}
		}
		if k == nil || thresholdsQuery == "" {
			continue
		}
		opts := p.raw.Transformations[0].Options.(map[string]any)
		for _, m := range opts["mappings"].([]map[string]any) {
			name := m["fieldName"].(string)
			if c := m["handlerArguments"].(map[string]any)["threshold"].(map[string]any)["color"]; c != tierColor[dora.Tier(name)] {
				t.Errorf("%s: column %s is coloured %v", p.title, name, c)
			}
		}
		var static []step
		for _, s := range p.raw.FieldConfig.Defaults.Thresholds.Steps {
			v := math.Inf(-1)
			if s.Value != nil {
				v = *s.Value
			}
			static = append(static, step{tier: tierOf(s.Color), value: v})
		}
		for _, b := range dora.Benchmarks {
			sql, err := grafanatest.Expand(thresholdsQuery, grafanatest.Vars{Benchmark: b.Name})
			if err != nil {
				t.Fatal(err)
			}
			got := h.rows(t, sql)
			// Each column is its tier's step (the transformation maps
			// it to the tier's colour).
			var fromQuery []step
			cols := thresholdColumns(t, h, sql)
			for i, col := range cols {
				fromQuery = append(fromQuery, step{tier: dora.Tier(col), value: *number(got[0][i])})
			}
			for _, limit := range b.Limits(k.metric).Values {
				for _, v := range []float64{math.Nextafter(limit, 0), limit, math.Nextafter(limit, math.Inf(1)), limit * 0.9, limit * 1.1} {
					want := tierColor[goTier(b, k.metric, v)]
					if c := colour(fromQuery, v); c != want {
						t.Errorf("%s, benchmark %s, %v: thresholds query colours %s, the tier is %s", p.title, b.Name, v, c, want)
					}
					if b.Name == dora.Benchmarks[0].Name {
						if c := colour(static, v); c != want {
							t.Errorf("%s, %v: static steps colour %s, the tier is %s", p.title, v, c, want)
						}
					}
					checked++
				}
			}
		}
	}
	// Four stats and four rankings, five values about three limits of
	// two benchmarks each.
	if want := 8 * 2 * 3 * 5; checked != want {
		t.Fatalf("checked %d colourings, want %d", checked, want)
	}
}

func tierOf(color string) dora.Tier {
	for t, c := range tierColor {
		if c == color {
			return t
		}
	}
	return ""
}

func thresholdColumns(t *testing.T, h history, sql string) []string {
	t.Helper()
	rows, err := h.conn.Query(context.Background(), sql)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	return rows.Columns()
}
