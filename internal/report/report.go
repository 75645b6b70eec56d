// Package report builds the per-team DORA report from the store and prints
// it as a table or JSON (the contract in the README).
package report

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/doraflow/doraflow/pkg/dora"
)

// Source is where the aggregates come from: per team and over all teams, or
// (team not empty) over that team's facts alone, the total being the team's.
type Source interface {
	Aggregates(ctx context.Context, since, until time.Time, team string) (map[string]*dora.Aggregates, *dora.Aggregates, error)
}

// Report is the JSON document `doraflow report --format json` prints.
type Report struct {
	Since     time.Time          `json:"since"`
	Until     time.Time          `json:"until"`
	Benchmark string             `json:"benchmark"`
	Teams     []dora.TeamMetrics `json:"teams"`
	Total     dora.TeamMetrics   `json:"total"`
}

// Build computes the report over [since, until). Every team in teams
// appears, measured or not; team, if not empty, keeps only that one, and
// only its facts are read.
func Build(ctx context.Context, src Source, b dora.Benchmark, since, until time.Time, teams []string, team string) (Report, error) {
	perTeam, total, err := src.Aggregates(ctx, since, until, team)
	if err != nil {
		return Report{}, err
	}
	names := slices.Clone(teams)
	for name := range perTeam {
		if !slices.Contains(names, name) {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	window := until.Sub(since)
	r := Report{Since: since.UTC(), Until: until.UTC(), Benchmark: b.Name, Teams: []dora.TeamMetrics{}}
	for _, name := range names {
		if team != "" && name != team {
			continue
		}
		a := perTeam[name]
		if a == nil {
			a = &dora.Aggregates{}
		}
		r.Teams = append(r.Teams, b.Metrics(name, *a, window))
	}
	r.Total = b.Metrics("*", *total, window)
	return r, nil
}

// ParseSince reads --since: RFC 3339, or a duration back from now such as
// 30d, 12h, 90m.
func ParseSince(s string, now time.Time) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t.UTC(), nil
	}
	if n, ok := strings.CutSuffix(s, "d"); ok {
		days, err := strconv.Atoi(n)
		if err == nil && days > 0 {
			return now.Add(-time.Duration(days) * 24 * time.Hour).UTC(), nil
		}
	}
	if d, err := time.ParseDuration(s); err == nil && d > 0 {
		return now.Add(-d).UTC(), nil
	}
	return time.Time{}, fmt.Errorf("--since %q: want RFC 3339 (2026-01-02T15:04:05Z) or a span back from now (30d, 12h)", s)
}

// WriteJSON prints the report as indented JSON.
func (r Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// WriteTable prints the report as an aligned table.
func (r Report) WriteTable(w io.Writer) error {
	fmt.Fprintf(w, "DORA metrics %s → %s (benchmark %s)\n\n", r.Since.Format(time.RFC3339), r.Until.Format(time.RFC3339), r.Benchmark)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "team\tdeploys\t/day\tchanges\tlead time p50\tp90\tfailed\tCFR\tincidents\tTTR p50\trework\tDF tier\tLT tier\tCFR tier\tTTR tier\t")
	for _, m := range append(slices.Clone(r.Teams), r.Total) {
		fmt.Fprintf(tw, "%s\t%d\t%.2f\t%d\t%s\t%s\t%d\t%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t\n",
			m.Team, m.Deployments, m.DeploymentsPerDay, m.Changes, dur(m.LeadTimeMedianSeconds), dur(m.LeadTimeP90Seconds),
			m.FailedDeployments, pct(m.ChangeFailureRate), m.Incidents, dur(m.TimeToRestoreMedian), pct(m.ReworkRate),
			m.Tiers.DeploymentFrequency, tier(m.Tiers.LeadTime), tier(m.Tiers.ChangeFailureRate), tier(m.Tiers.TimeToRestore))
	}
	return tw.Flush()
}

func dur(sec *float64) string {
	if sec == nil {
		return "-"
	}
	d := time.Duration(*sec) * time.Second
	switch {
	case d >= 48*time.Hour:
		return fmt.Sprintf("%.1fd", d.Hours()/24)
	case d >= time.Hour:
		return fmt.Sprintf("%.1fh", d.Hours())
	default:
		return fmt.Sprintf("%.0fm", d.Minutes())
	}
}

func pct(v *float64) string {
	if v == nil {
		return "-"
	}
	return fmt.Sprintf("%.1f%%", *v*100)
}

func tier(t *dora.Tier) string {
	if t == nil {
		return "-"
	}
	return string(*t)
}
