package benchscale

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/doraflow/doraflow/dashboards"
	"github.com/doraflow/doraflow/internal/grafanatest"
)

// panelCase is one target of a dashboard panel as Grafana would send it.
type panelCase struct {
	name string
	sql  string
	// days is the span the query reads: its dashboard's range, twice that
	// for a query that also reads the period before it.
	days int
}

// panelCases are the targets of every dashboard panel expanded with every
// team selected over the dashboard's default range ending at until, and
// the team detail's with one team selected too (how a squad opens it).
func panelCases(b *testing.B, db string, until time.Time, teams []string, team string) []panelCase {
	b.Helper()
	ds, err := dashboards.Build(db)
	if err != nil {
		b.Fatal(err)
	}
	var out []panelCase
	for _, d := range ds {
		days := 0
		if _, err := fmt.Sscanf(d.Dashboard.Time.From, "now-%dd", &days); err != nil {
			b.Fatalf("%s: range %q", d.UID, d.Dashboard.Time.From)
		}
		selections := [][]string{nil}
		if d.UID == dashboards.TeamUID {
			selections = append(selections, []string{team})
		}
		for _, sel := range selections {
			v := grafanatest.Vars{From: until.AddDate(0, 0, -days), To: until, Team: sel, Benchmark: "2023", AllTeams: teams}
			who := "all teams"
			if sel != nil {
				who = sel[0]
			}
			for _, p := range d.Dashboard.Panels {
				if p.Panel == nil {
					continue
				}
				for _, tg := range p.Panel.Targets {
					q := tg.(dashboards.Query)
					sql, err := grafanatest.Expand(q.RawSql, v)
					if err != nil {
						b.Fatal(err)
					}
					span := days
					if strings.Contains(q.RawSql, "2 * toUInt32($__fromTime)") {
						span = 2 * days
					}
					out = append(out, panelCase{name: fmt.Sprintf("%dd/panel %s %q %s, %s", span, d.UID, *p.Panel.Title, q.RefId, who),
						sql: sql, days: span})
				}
			}
		}
	}
	return out
}

// runPanel runs a panel's query and reads its whole answer, as the plugin
// does.
func runPanel(ctx context.Context, conn driver.Conn, sql string) error {
	rows, err := conn.Query(ctx, sql)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
	}
	return rows.Err()
}
