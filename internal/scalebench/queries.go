package scalebench

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/doraflow/doraflow/internal/benchscale"
	"github.com/doraflow/doraflow/internal/report"
	"github.com/doraflow/doraflow/pkg/dora"
	"github.com/doraflow/doraflow/sinks/clickhouse"
)

// queryPoint is the latency of the report over one window of what the
// processor stored.
type queryPoint struct {
	Days int
	// Rows are the fact rows (deployments and changes, every version) in
	// the window: what a query without rollups would read.
	Rows uint64
	// Changes and Deployments are the report's totals of the window.
	Changes, Deployments     uint64
	Report, ReportTeam, Bare []time.Duration
	Team                     string // the --team measured
}

// measureQueries times `report` (report.Build over every team, and for one
// team) and the bare aggregate scan of the same window
// (benchscale.Bare), samples times each, over windows of the given lengths
// ending at until.
func measureQueries(ctx context.Context, store *clickhouse.Store, conn driver.Conn, until time.Time, windows []int,
	teams []string, samples int) ([]queryPoint, error) {
	db := store.Database()
	team := teams[len(teams)/2]
	var out []queryPoint
	for _, days := range windows {
		since := until.AddDate(0, 0, -days)
		w := dora.Between(since, until)
		p := queryPoint{Days: days, Team: team}
		var deps, changes uint64
		if err := conn.QueryRow(ctx, fmt.Sprintf("SELECT count() FROM %s.deployments WHERE finished_at >= %s AND finished_at < %s",
			db, w.From, w.To)).Scan(&deps); err != nil {
			return nil, fmt.Errorf("scalebench: count window: %w", err)
		}
		if err := conn.QueryRow(ctx, fmt.Sprintf("SELECT count() FROM %s.changes WHERE deployed_at >= %s AND deployed_at < %s",
			db, w.From, w.To)).Scan(&changes); err != nil {
			return nil, fmt.Errorf("scalebench: count window: %w", err)
		}
		p.Rows = deps + changes
		for range samples {
			start := time.Now()
			r, err := report.Build(ctx, store, dora.Benchmark2023, since, until, teams, "")
			if err != nil {
				return nil, fmt.Errorf("scalebench: report %dd: %w", days, err)
			}
			p.Report = append(p.Report, time.Since(start))
			p.Changes, p.Deployments = r.Total.Changes, r.Total.Deployments
			start = time.Now()
			if _, err := report.Build(ctx, store, dora.Benchmark2023, since, until, teams, team); err != nil {
				return nil, fmt.Errorf("scalebench: report %dd --team: %w", days, err)
			}
			p.ReportTeam = append(p.ReportTeam, time.Since(start))
			start = time.Now()
			if _, err := benchscale.Bare(ctx, conn, db, since, until); err != nil {
				return nil, fmt.Errorf("scalebench: bare scan %dd: %w", days, err)
			}
			p.Bare = append(p.Bare, time.Since(start))
		}
		out = append(out, p)
	}
	return out, nil
}

// quantile of durations (q in [0, 1]); 0 for none.
func quantile(ds []time.Duration, q float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[min(int(q*float64(len(s))), len(s)-1)]
}
