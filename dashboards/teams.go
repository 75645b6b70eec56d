package dashboards

import (
	"github.com/grafana/grafana-foundation-sdk/go/barchart"
	"github.com/grafana/grafana-foundation-sdk/go/common"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
	"github.com/grafana/grafana-foundation-sdk/go/table"
	"github.com/grafana/grafana-foundation-sdk/go/xychart"

	"github.com/doraflow/doraflow/pkg/dora"
)

// The team table's columns: the keys, their tiers, the volumes behind them
// (so that a small sample shows as one) and the change of each key against
// the previous period.
const teamColumns = "team, " +
	"deployments_per_day AS `deploys/day`, df_tier AS `DF tier`, df_change AS `DF change`, " +
	"lead_time_median_seconds AS `lead time p50`, lt_tier AS `LT tier`, lt_change AS `LT change`, " +
	"change_failure_rate AS `CFR`, cfr_tier AS `CFR tier`, cfr_change AS `CFR change`, " +
	"time_to_restore_median_seconds AS `TTR p50`, ttr_tier AS `TTR tier`, ttr_change AS `TTR change`, " +
	"failed_deployment_recovery_median_seconds AS `recovery p50`, rework_rate AS `rework`, " +
	"deployments, changes, failed_deployments AS `failed`, incidents"

func teamComparison(db string) *dashboard.DashboardBuilder {
	d := newDashboard(TeamsUID, "DORA team comparison",
		"Every selected team side by side: the keys, their tiers by the selected benchmark, the volumes behind them and their change against the previous period.",
		"now-90d").
		WithVariable(teamVariable(db)).
		WithVariable(benchmarkVariable())
	d.WithPanel(teamTable(db))
	d.WithRow(dashboard.NewRowBuilder("Teams ranked per key"))
	for _, k := range keys[:4] {
		d.WithPanel(ranking(db, k))
	}
	d.WithRow(dashboard.NewRowBuilder("Throughput against stability"))
	d.WithPanel(xy(db, "Deployment frequency against change failure rate", "deployments_per_day", "change_failure_rate", perDay, "percentunit"))
	d.WithPanel(xy(db, "Lead time against time to restore", "lead_time_median_seconds", "time_to_restore_median_seconds", "s", "s"))
	return d
}

func teamTable(db string) *table.PanelBuilder {
	p := newTable().
		Title("Teams").
		Description("Each team's keys over the range; a change is relative to the period of the same length before it. Few deployments or changes make a figure a small sample. Click a team for its detail.").
		Datasource(datasource()).
		WithTarget(tableQuery("A", teamsSQL(db, teamColumns, "ORDER BY team"))).
		NoValue("-").
		Filterable(true).
		Span(24).Height(12).
		OverrideByName("team", []dashboard.DynamicConfigValue{
			{Id: "links", Value: []map[string]any{{"title": "Team detail", "url": teamDetailURL}}}})
	units := map[string]string{"deploys/day": perDay, "lead time p50": "s", "TTR p50": "s", "recovery p50": "s", "CFR": "percentunit", "rework": "percentunit"}
	for _, name := range []string{"deploys/day", "lead time p50", "CFR", "TTR p50", "recovery p50", "rework"} {
		p.OverrideByName(name, []dashboard.DynamicConfigValue{{Id: "unit", Value: units[name]}, {Id: "decimals", Value: 1}})
	}
	for _, name := range []string{"DF change", "LT change", "CFR change", "TTR change"} {
		p.OverrideByName(name, []dashboard.DynamicConfigValue{{Id: "unit", Value: "percentunit"}, {Id: "decimals", Value: 0}})
	}
	for _, name := range []string{"deployments", "changes", "failed", "incidents"} {
		p.OverrideByName(name, []dashboard.DynamicConfigValue{{Id: "unit", Value: "short"}, {Id: "decimals", Value: 0}})
	}
	tiers := map[string]map[string]any{}
	for i, t := range dora.TierOrder {
		tiers[string(t)] = map[string]any{"color": tierColor[t], "index": i}
	}
	mappings := valueMap(tiers)
	for _, name := range []string{"DF tier", "LT tier", "CFR tier", "TTR tier"} {
		p.OverrideByName(name, []dashboard.DynamicConfigValue{
			{Id: "mappings", Value: mappings},
			{Id: "custom.cellOptions", Value: map[string]any{"type": "color-background"}}})
	}
	return p
}

// ranking is the teams ordered by a key, best first, each bar coloured by
// its tier of the selected benchmark, as the overview's stats are.
func ranking(db string, k key) *barchart.PanelBuilder {
	order := "DESC"
	if k.lowerIsBetter {
		order = "ASC"
	}
	return barchart.NewPanelBuilder().
		Title(k.title + " by team").
		Description("Best first; a team with nothing to measure is left out. Coloured by tier of the selected benchmark: " + tierLegend).
		Datasource(datasource()).
		WithTarget(tableQuery("A", teamsSQL(db, "team, "+k.column+" AS `"+k.title+"`",
			"WHERE "+k.column+" IS NOT NULL ORDER BY "+k.column+" "+order+", team"))).
		WithTarget(tableQuery("T", thresholdsSQL(k.metric))).
		WithTransformation(fromThresholdsQuery(k.metric)).
		XField("team").
		Orientation(common.VizOrientationHorizontal).
		ShowValue(common.VisibilityModeAlways).
		Unit(k.unit).Decimals(k.decimals).Min(0).
		Thresholds(thresholds(k.metric)).
		ColorScheme(dashboard.NewFieldColorBuilder().Mode(dashboard.FieldColorModeIdThresholds)).
		Legend(common.NewVizLegendOptionsBuilder().ShowLegend(false).DisplayMode(common.LegendDisplayModeList).Placement(common.LegendPlacementBottom)).
		Tooltip(tooltip()).
		Span(12).Height(10)
}

// xy plots each team as a point of two keys.
func xy(db, title, x, y, xUnit, yUnit string) *xychart.PanelBuilder {
	return xychart.NewPanelBuilder().
		Title(title).
		Description("One point per team with both figures; hover for the team.").
		Datasource(datasource()).
		WithTarget(tableQuery("A", teamsSQL(db, "team, "+x+", "+y, "WHERE "+x+" IS NOT NULL AND "+y+" IS NOT NULL ORDER BY team"))).
		Legend(legend()).Tooltip(tooltip()).
		OverrideByName(x, []dashboard.DynamicConfigValue{{Id: "unit", Value: xUnit}, {Id: "decimals", Value: 1}}).
		OverrideByName(y, []dashboard.DynamicConfigValue{{Id: "unit", Value: yUnit}, {Id: "decimals", Value: 1}}).
		Span(12).Height(10)
}
