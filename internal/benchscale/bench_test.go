package benchscale

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	ch "github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/doraflow/doraflow/internal/report"
	"github.com/doraflow/doraflow/internal/testenv"
	"github.com/doraflow/doraflow/pkg/config"
	"github.com/doraflow/doraflow/pkg/dora"
	"github.com/doraflow/doraflow/sinks/clickhouse"
)

func TestMain(m *testing.M) { os.Exit(testenv.RunClickHouse(m)) }

// The query benchmark is driven by the environment (make bench-queries
// sets both): DORAFLOW_BENCH_SIZE=organisation for the full size (the
// default is a small history, so `make bench` stays quick), and
// DORAFLOW_BENCH_DOC, a file to write the figures to as Markdown.
const (
	sizeEnv = "DORAFLOW_BENCH_SIZE"
	docEnv  = "DORAFLOW_BENCH_DOC"
)

// small is the history `go test -bench` uses unless told otherwise: long
// enough for a 365-day window.
var small = Size{Teams: 10, ReposPerTeam: 4, Days: 400, DeploymentsPerDay: 40, ChangesPerDeployment: 5,
	BatchesPerDay: 4, Churn: 1}

// result is one case's latencies.
type result struct {
	name    string
	samples []time.Duration
}

func (r result) quantile(q float64) time.Duration {
	s := slices.Clone(r.samples)
	slices.Sort(s)
	return s[min(int(q*float64(len(s))), len(s)-1)]
}

// BenchmarkQueries loads a history into ClickHouse (facts and rollups, 100k
// rows an insert) and into PostgreSQL (the same facts, indexed), checks
// that the report's figures are those of the deduplicating queries of
// before and of PostgreSQL, then measures for 90 and 365 days, in order:
// the bare aggregate scans (the baseline), the report for all teams and
// for one team (report.Build, as `doraflow report` runs it), the
// deduplicating queries of before, and PostgreSQL; then every dashboard
// panel's queries. Each case reports its p50 and p95; run with
// -benchtime=Nx for N samples per case.
func BenchmarkQueries(b *testing.B) {
	size, sizeName := small, "small"
	if os.Getenv(sizeEnv) == "organisation" {
		size, sizeName = Organisation, "organisation"
	}
	ctx := context.Background()
	dsn := testenv.ClickHouse(b)
	store, err := clickhouse.Open(ctx, dsn, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		b.Fatal(err)
	}
	defer store.Close()
	if _, err := store.Migrate(ctx); err != nil {
		b.Fatal(err)
	}
	conn := rawConn(b, dsn)
	pg := startPostgres(b)

	// Load.
	start := time.Now()
	mapping := size.Mapping()
	if err := store.WriteTeams(ctx, mapping, 1); err != nil {
		b.Fatal(err)
	}
	if pg != nil {
		if err := pg.load(ctx); err != nil {
			b.Fatal(err)
		}
		pg.writeTeams(mapping)
	}
	err = Chunks(size, 1, 100_000, func(bs []Batch) error {
		if err := Write(ctx, store, bs); err != nil {
			return err
		}
		if pg != nil {
			return pg.write(bs)
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	loaded := time.Since(start)
	if pg != nil {
		if err := pg.finish(ctx); err != nil {
			b.Fatal(err)
		}
	}
	indexed := time.Since(start)
	waitForMerges(ctx, b, conn, store.Database())
	b.Logf("loaded in %s (PostgreSQL indexed at %s)", loaded.Round(time.Second), indexed.Round(time.Second))

	until := End.Add(-24*time.Hour + 14*time.Hour + 37*time.Minute) // a report's "now": not midnight
	var teams []string
	for i := range size.Teams {
		teams = append(teams, Team(i))
	}
	team := Team(42 % size.Teams)
	var results []result
	var checks []string
	measure := func(name string, run func() error) {
		b.Run(name, func(b *testing.B) {
			r := result{name: name}
			for range b.N {
				t0 := time.Now()
				if err := run(); err != nil {
					b.Fatal(err)
				}
				r.samples = append(r.samples, time.Since(t0))
			}
			b.ReportMetric(float64(r.quantile(0.5).Microseconds())/1000, "p50-ms")
			b.ReportMetric(float64(r.quantile(0.95).Microseconds())/1000, "p95-ms")
			b.ReportMetric(0, "ns/op")
			// The last call has b.N samples; earlier ones warmed up.
			results = slices.DeleteFunc(results, func(x result) bool { return x.name == name })
			results = append(results, r)
		})
	}
	for _, days := range []int{90, 365} {
		since := until.AddDate(0, 0, -days)
		checks = append(checks, checkFigures(ctx, b, store, conn, pg, since, until, team, days)...)
		db := store.Database()
		measure(fmt.Sprintf("%dd/bare", days), func() error { _, err := Bare(ctx, conn, db, since, until); return err })
		measure(fmt.Sprintf("%dd/report", days), func() error {
			_, err := report.Build(ctx, store, dora.Benchmark2023, since, until, teams, "")
			return err
		})
		measure(fmt.Sprintf("%dd/report-team", days), func() error {
			_, err := report.Build(ctx, store, dora.Benchmark2023, since, until, teams, team)
			return err
		})
		measure(fmt.Sprintf("%dd/dedupe-before", days), func() error { _, _, err := Reference(ctx, conn, db, since, until); return err })
		if pg != nil {
			// psql times each query itself: one session of b.N runs.
			b.Run(fmt.Sprintf("%dd/postgres", days), func(b *testing.B) {
				times, _, _, err := pg.pgRun(ctx, since, until, b.N)
				if err != nil {
					b.Fatal(err)
				}
				r := result{name: fmt.Sprintf("%dd/postgres", days), samples: times}
				b.ReportMetric(float64(r.quantile(0.5).Microseconds())/1000, "p50-ms")
				b.ReportMetric(float64(r.quantile(0.95).Microseconds())/1000, "p95-ms")
				b.ReportMetric(0, "ns/op")
				results = slices.DeleteFunc(results, func(x result) bool { return x.name == r.name })
				results = append(results, r)
			})
		}
	}
	// The dashboards' panels, each against the bare scan of the span it
	// reads.
	db := store.Database()
	bared := map[int]bool{90: true, 365: true}
	for _, c := range panelCases(b, db, until, teams, team) {
		if !bared[c.days] {
			since := until.AddDate(0, 0, -c.days)
			measure(fmt.Sprintf("%dd/bare", c.days), func() error { _, err := Bare(ctx, conn, db, since, until); return err })
			bared[c.days] = true
		}
		measure(c.name, func() error { return runPanel(ctx, conn, c.sql) })
	}
	if path := os.Getenv(docEnv); path != "" {
		doc := writeDoc(ctx, b, conn, store.Database(), pg, sizeName, size, loaded, indexed, until, team, results, checks)
		if err := os.WriteFile(path, []byte(doc), 0o644); err != nil {
			b.Fatal(err)
		}
	}
}

// checkFigures fails the benchmark unless the report's figures for the
// window, all teams and one team, are those of the deduplicating queries of
// before and of PostgreSQL.
func checkFigures(ctx context.Context, b *testing.B, store *clickhouse.Store, conn driver.Conn, pg *postgres, since, until time.Time, team string, days int) []string {
	b.Helper()
	perTeam, total, err := store.Aggregates(ctx, since, until, "")
	if err != nil {
		b.Fatal(err)
	}
	refTeams, refTotal, err := Reference(ctx, conn, store.Database(), since, until)
	if err != nil {
		b.Fatal(err)
	}
	if !reflect.DeepEqual(nonZero(perTeam), nonZero(refTeams)) || *total != *refTotal {
		b.Fatalf("%dd: the report's figures differ from the deduplicating queries':\n total %+v\n want  %+v", days, *total, *refTotal)
	}
	one, oneTotal, err := store.Aggregates(ctx, since, until, team)
	if err != nil {
		b.Fatal(err)
	}
	if want := refTeams[team]; want == nil || !reflect.DeepEqual(one, map[string]*dora.Aggregates{team: want}) || *oneTotal != *want {
		b.Fatalf("%dd: --team %s: %+v, want %+v", days, team, one, want)
	}
	out := []string{fmt.Sprintf("%d days: %d teams and the total equal to the deduplicating queries' (%d deployments, %d changes, %d incidents); --team %s equal",
		days, len(perTeam), total.Deployments, total.Changes, total.Incidents, team)}
	if pg != nil {
		_, pgTeams, pgTotal, err := pg.pgRun(ctx, since, until, 1)
		if err != nil {
			b.Fatal(err)
		}
		if !reflect.DeepEqual(nonZero(pgTeams), nonZero(refTeams)) || *pgTotal != *refTotal {
			b.Fatalf("%dd: PostgreSQL's figures differ:\n total %+v\n want  %+v", days, *pgTotal, *refTotal)
		}
		out = append(out, fmt.Sprintf("%d days: PostgreSQL's figures equal, all teams and total", days))
	}
	return out
}

func rawConn(b *testing.B, dsn string) driver.Conn {
	b.Helper()
	d, err := config.ParseClickHouseDSN(dsn)
	if err != nil {
		b.Fatal(err)
	}
	conn, err := ch.Open(&ch.Options{Addr: []string{d.Addr}, Auth: ch.Auth{Username: d.User, Password: d.Password}})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { conn.Close() })
	return conn
}

// waitForMerges waits until the server merges nothing in db: the state a
// store settles in between bursts of writes (the versions a merge has met
// are collapsed, the rest remain).
func waitForMerges(ctx context.Context, b *testing.B, conn driver.Conn, db string) {
	b.Helper()
	for deadline := time.Now().Add(10 * time.Minute); time.Now().Before(deadline); time.Sleep(2 * time.Second) {
		var n uint64
		if err := conn.QueryRow(ctx, "SELECT count() FROM system.merges WHERE database = ?", db).Scan(&n); err != nil {
			b.Fatal(err)
		}
		if n == 0 {
			return
		}
	}
	b.Log("merges still running after 10 minutes; measuring anyway")
}

func writeDoc(ctx context.Context, b *testing.B, conn driver.Conn, db string, pg *postgres, sizeName string, size Size,
	loaded, indexed time.Duration, until time.Time, team string, results []result, checks []string) string {
	b.Helper()
	var w strings.Builder
	chVersion := ""
	if err := conn.QueryRow(ctx, "SELECT version()").Scan(&chVersion); err != nil {
		b.Fatal(err)
	}
	fmt.Fprintf(&w, "# Query benchmark: `report` at organisation scale\n\n")
	fmt.Fprintf(&w, "Written by `make bench-queries` (internal/benchscale, BenchmarkQueries) on %s.\n\n", time.Now().UTC().Format(time.DateOnly))
	fmt.Fprintf(&w, "## Machine\n\n- %d cores (`nproc`), %s memory, GOMAXPROCS %d\n- ClickHouse %s\n", runtime.NumCPU(), memTotal(), runtime.GOMAXPROCS(0), chVersion)
	if pg != nil {
		fmt.Fprintf(&w, "- PostgreSQL %s (Debian's package)\n", pg.version)
	}
	fmt.Fprintf(&w, "\n## Data (size %q)\n\n%d teams × %d repositories, %d days ending %s, %d processor flushes a day; generated straight into fact rows with the rewrites the processor makes (see internal/benchscale). Rows stored, after background merges settled:\n\n",
		sizeName, size.Teams, size.ReposPerTeam, size.Days, End.Format(time.DateOnly), size.BatchesPerDay)
	fmt.Fprintf(&w, "| table | rows | distinct keys | parts |\n| --- | ---: | ---: | ---: |\n")
	for _, t := range []struct{ table, key string }{
		{"deployments", "repo, deployment_id, finished_at"}, {"changes", "repo, sha, deployed_at"},
		{"incidents", "incident_id, opened_at"}, {"repo_days", "repo, day"},
	} {
		var rows, keys, parts uint64
		if err := conn.QueryRow(ctx, fmt.Sprintf("SELECT count(), uniqExact(%s) FROM %s.%s", t.key, db, t.table)).Scan(&rows, &keys); err != nil {
			b.Fatal(err)
		}
		if err := conn.QueryRow(ctx, "SELECT count() FROM system.parts WHERE database = ? AND table = ? AND active", db, t.table).Scan(&parts); err != nil {
			b.Fatal(err)
		}
		fmt.Fprintf(&w, "| %s | %d | %d | %d |\n", t.table, rows, keys, parts)
	}
	fmt.Fprintf(&w, "\nLoad: %s into ClickHouse (100k-row inserts) and PostgreSQL (COPY) together; PostgreSQL indexed and analysed at %s.\n",
		loaded.Round(time.Second), indexed.Round(time.Second))
	fmt.Fprintf(&w, "\n## Latency\n\nWindows end at %s (not midnight, as `--since 90d` gives); `--team` is %s. Ratios are to the bare aggregate scan of the same window in the same run (p95 to p95, p50 to p50).\n\n", until.Format(time.RFC3339), team)
	fmt.Fprintf(&w, "| case | p50 ms | p95 ms | p50 × bare | p95 × bare | samples |\n| --- | ---: | ---: | ---: | ---: | ---: |\n")
	byName := map[string]result{}
	for _, r := range results {
		byName[r.name] = r
	}
	for _, r := range results {
		window := strings.SplitN(r.name, "/", 2)[0]
		bare := byName[window+"/bare"]
		fmt.Fprintf(&w, "| %s | %.1f | %.1f | %.2f | %.2f | %d |\n", r.name, ms(r.quantile(0.5)), ms(r.quantile(0.95)),
			ms(r.quantile(0.5))/ms(bare.quantile(0.5)), ms(r.quantile(0.95))/ms(bare.quantile(0.95)), len(r.samples))
	}
	fmt.Fprintf(&w, "\n- bare: the three aggregates over the raw rows of the window (no dedupe, no team): the floor.\n")
	fmt.Fprintf(&w, "- report / report-team: `report.Build` as `doraflow report [--team]` runs it: one delivery query (per-day rollups for whole days, deduplicated facts for the partial days at the edges) and one incident query, per team WITH TOTALS.\n")
	fmt.Fprintf(&w, "- dedupe-before: the queries `report` ran before the rollups (every fact in the window deduplicated, by team and again for all teams).\n")
	fmt.Fprintf(&w, "- panel: a target of a dashboard panel (dashboards/) expanded as Grafana and its ClickHouse plugin would send it, every team selected, over the dashboard's default range ending at the same time (overview and team comparison 90 days, team detail 30, pipeline 7; the team detail for --team's team too), its whole answer read; its window is the span it reads (twice the range for a stat or the team table, which read the period before too).\n")
	if pg != nil {
		fmt.Fprintf(&w, "- postgres: the same figures (checked equal) from the same facts, `DISTINCT ON` the natural key by version, per team and total with `GROUPING SETS`, timed by psql's `\\timing`.\n")
		fmt.Fprintf(&w, "\nFor every window, report is %s than PostgreSQL at p95.\n", speedups(byName))
		fmt.Fprintf(&w, "\nPostgreSQL's indexes (covering: every window query can be an index-only scan; the planner picks):\n\n```sql%s\n```\n\nServer settings: shared_buffers=4GB, work_mem=512MB, effective_cache_size=12GB (scripts/postgres.sh); durability settings off for the load only matter to loading.\n", pgIndexes)
	}
	fmt.Fprintf(&w, "\n## Exactness\n\n")
	for _, c := range checks {
		fmt.Fprintf(&w, "- %s\n", c)
	}
	return w.String()
}

func speedups(byName map[string]result) string {
	var parts []string
	for _, window := range []string{"90d", "365d"} {
		r, p := byName[window+"/report"], byName[window+"/postgres"]
		if len(r.samples) == 0 || len(p.samples) == 0 {
			continue
		}
		parts = append(parts, fmt.Sprintf("%.0f× faster (%s)", ms(p.quantile(0.95))/ms(r.quantile(0.95)), window))
	}
	return strings.Join(parts, ", ")
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// memTotal is the machine's memory as /proc/meminfo says.
func memTotal() string {
	out, err := exec.Command("sh", "-c", "awk '/MemTotal/ {printf \"%.1f GiB\", $2/1048576}' /proc/meminfo").Output()
	if err != nil {
		return "unknown"
	}
	return string(out)
}

// nonZero drops the teams whose figures are all zero: a row of zeros and no
// row read alike in the report.
func nonZero(m map[string]*dora.Aggregates) map[string]*dora.Aggregates {
	out := map[string]*dora.Aggregates{}
	for k, v := range m {
		if *v != (dora.Aggregates{}) {
			out[k] = v
		}
	}
	return out
}
