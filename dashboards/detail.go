package dashboards

import (
	"github.com/grafana/grafana-foundation-sdk/go/barchart"
	"github.com/grafana/grafana-foundation-sdk/go/cog"
	"github.com/grafana/grafana-foundation-sdk/go/common"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
	"github.com/grafana/grafana-foundation-sdk/go/histogram"
	"github.com/grafana/grafana-foundation-sdk/go/timeseries"

	"github.com/doraflow/doraflow/pkg/dora"
)

// Row limits of the detail's lists: enough to scroll, few enough for a
// browser.
const (
	listRows      = 200
	histogramRows = 100000
)

// commitURL links a change to its commit on the Git host (GitLab answers
// /group/project/commit/sha too).
const commitURL = "${git_host}/${__data.fields.repo}/commit/${__data.fields.sha}"

func teamDetail(db string) *dashboard.DashboardBuilder {
	d := newDashboard(TeamUID, "DORA team detail",
		"One team (or a few) up close: its production deployments, where its lead time goes, its failures and how it recovered.",
		"now-30d").
		WithVariable(teamVariable(db)).
		WithVariable(dashboard.NewQueryVariableBuilder("repository").Label("Repository").
			Datasource(datasource()).
			Query(dashboard.StringOrMap{String: cog.ToPtr(dora.ReposSQL(db, teams))}).
			Definition(dora.ReposSQL(db, teams)).
			Refresh(dashboard.VariableRefreshOnDashboardLoad).
			Sort(dashboard.VariableSortAlphabeticalAsc).
			Multi(true).IncludeAll(true).
			Current(dashboard.VariableOption{Text: dashboard.StringOrArrayOfString{ArrayOfString: []string{"All"}},
				Value: dashboard.StringOrArrayOfString{ArrayOfString: []string{"$__all"}}})).
		WithVariable(benchmarkVariable()).
		WithVariable(dashboard.NewTextBoxVariableBuilder("git_host").Label("Git host").
			Description("Base URL of the Git host, for the links to commits").
			DefaultValue(dashboard.StringOrMap{String: cog.ToPtr("https://github.com")}).
			Current(dashboard.VariableOption{Text: dashboard.StringOrArrayOfString{String: cog.ToPtr("https://github.com")},
				Value: dashboard.StringOrArrayOfString{String: cog.ToPtr("https://github.com")}}))

	d.WithPanel(newTable().
		Title("Recent production deployments").
		Description("Latest first. Approximate: the changes were found without a complete push chain. Outcome: failed (rolled back, or it caused an incident), rollback (it re-deployed an earlier sha), ok. Recovery: from a failed deployment to its last incident's resolution or its rollback.").
		Datasource(datasource()).
		WithTarget(tableQuery("A", dora.DeploymentsListSQL(db, window, teams, repos, listRows))).
		NoValue("-").
		Span(24).Height(10).
		OverrideByName("recovery_seconds", []dashboard.DynamicConfigValue{{Id: "unit", Value: "s"}, {Id: "decimals", Value: 1}, {Id: "displayName", Value: "recovery"}}).
		OverrideByName("approximate", boolColumn("exact", "approximate")).
		OverrideByName("rework", boolColumn("no", "rework")).
		OverrideByName("outcome", []dashboard.DynamicConfigValue{{Id: "mappings", Value: valueMap(map[string]map[string]any{
			"ok":       {"color": "green", "index": 0},
			"failed":   {"color": "red", "index": 1},
			"rollback": {"color": "orange", "index": 2}})},
			{Id: "custom.cellOptions", Value: map[string]any{"type": "color-text"}}}))

	d.WithRow(dashboard.NewRowBuilder("Lead time"))
	d.WithPanel(timeseries.NewPanelBuilder().
		Title("Lead time p50 and p90 per week").
		Description("Of the changes first deployed to production each UTC week, for the selected teams; a week without changes has no point.").
		Datasource(datasource()).
		WithTarget(seriesQuery("A", trendSQL(db, dora.ByWeek, "lead_time_median_seconds AS p50", "lead_time_p90_seconds AS p90"))).
		Unit("s").Decimals(1).Min(0).
		ShowPoints(common.VisibilityModeAlways).PointSize(5).LineWidth(2).
		SpanNulls(common.BoolOrFloat64{Bool: cog.ToPtr(false)}).
		Legend(legend()).Tooltip(tooltip()).
		Span(12).Height(8))
	d.WithPanel(histogram.NewPanelBuilder().
		Title("Lead time distribution").
		Description("Changes first deployed to production in the range, by lead time.").
		Datasource(datasource()).
		WithTarget(tableQuery("A", "SELECT lead_time_seconds AS `lead time` FROM (\n"+dora.ChangesListSQL(db, window, teams, repos, histogramRows)+")")).
		Unit("s").Decimals(1).
		Legend(legend()).Tooltip(tooltip()).
		Span(12).Height(8))
	d.WithPanel(newTable().
		Title("Slowest changes").
		Description("The changes with the longest lead time; click a sha for the commit on the Git host.").
		Datasource(datasource()).
		WithTarget(tableQuery("A", dora.ChangesListSQL(db, window, teams, repos, listRows))).
		NoValue("-").
		Span(24).Height(10).
		OverrideByName("lead_time_seconds", []dashboard.DynamicConfigValue{{Id: "unit", Value: "s"}, {Id: "decimals", Value: 1}, {Id: "displayName", Value: "lead time"}}).
		OverrideByName("sha", []dashboard.DynamicConfigValue{{Id: "links", Value: []map[string]any{
			{"title": "Commit on the Git host", "url": commitURL, "targetBlank": true}}}}))

	d.WithRow(dashboard.NewRowBuilder("Failures and recovery"))
	d.WithPanel(newTable().
		Title("Failed deployments").
		Description("Production deployments that were rolled back or caused an incident, with the incidents attributed to them and their recovery time.").
		Datasource(datasource()).
		WithTarget(tableQuery("A", dora.FailedDeploymentsSQL(db, window, teams, repos, listRows))).
		NoValue("-").
		Span(12).Height(10).
		OverrideByName("recovery_seconds", []dashboard.DynamicConfigValue{{Id: "unit", Value: "s"}, {Id: "decimals", Value: 1}, {Id: "displayName", Value: "recovery"}}))
	d.WithPanel(barchart.NewPanelBuilder().
		Title("Time to restore per incident").
		Description("Incidents resolved in the range, by the team of their repository or service; latest first.").
		Datasource(datasource()).
		WithTarget(tableQuery("A", "SELECT incident_id, restore_seconds AS `time to restore` FROM (\n"+dora.IncidentsListSQL(db, window, teams, listRows)+")")).
		XField("incident_id").
		Orientation(common.VizOrientationHorizontal).
		ShowValue(common.VisibilityModeAuto).
		Unit("s").Decimals(1).Min(0).
		Thresholds(thresholds(dora.TimeToRestore)).
		ColorScheme(dashboard.NewFieldColorBuilder().Mode(dashboard.FieldColorModeIdThresholds)).
		Legend(common.NewVizLegendOptionsBuilder().ShowLegend(false).DisplayMode(common.LegendDisplayModeList).Placement(common.LegendPlacementBottom)).
		Tooltip(tooltip()).
		Span(12).Height(10))
	return d
}

// boolColumn shows a 0/1 column as words.
func boolColumn(no, yes string) []dashboard.DynamicConfigValue {
	return []dashboard.DynamicConfigValue{{Id: "mappings", Value: valueMap(map[string]map[string]any{
		"0": {"text": no, "index": 0}, "1": {"text": yes, "color": "orange", "index": 1}})}}
}

// valueMap is a Grafana value mapping (type "value") from each value to
// its display (text, color, index). Override values are written as plain
// maps so that they encode the same after a decode.
func valueMap(options map[string]map[string]any) []map[string]any {
	return []map[string]any{{"type": "value", "options": options}}
}
