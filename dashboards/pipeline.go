package dashboards

import (
	"github.com/grafana/grafana-foundation-sdk/go/common"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
	"github.com/grafana/grafana-foundation-sdk/go/timeseries"

	"github.com/doraflow/doraflow/pkg/dora"
)

// pipeline is for operators, from what the facts tables hold: whether
// facts keep arriving per source, and how many deployments' changes are
// approximate. (Events received, ignored and dead-lettered are counted in
// /metrics, not stored in ClickHouse.)
func pipeline(db string) *dashboard.DashboardBuilder {
	d := newDashboard(PipelineUID, "doraflow pipeline health",
		"For operators: the latest fact per kind and incident source, and the share of production deployments whose changes are approximate.",
		"now-7d")
	d.WithPanel(newTable().
		Title("Last fact seen per source").
		Description("The latest time a stored fact names, and how many name a time within the day before the range's end: a source that went quiet shows an old time and 0.").
		Datasource(datasource()).
		WithTarget(tableQuery("A", dora.LastSeenSQL(db, window))).
		NoValue("-").
		OverrideByName("last_day", []dashboard.DynamicConfigValue{{Id: "displayName", Value: "facts in the last day"}, {Id: "unit", Value: "short"}, {Id: "decimals", Value: 0}}).
		OverrideByName("last_seen", []dashboard.DynamicConfigValue{{Id: "displayName", Value: "last seen"}, {Id: "unit", Value: "dateTimeAsIso"}}).
		Span(10).Height(8))
	d.WithPanel(timeseries.NewPanelBuilder().
		Title("Approximate deployments per day").
		Description("Production deployments whose changes were found without a complete push chain (missed pushes, no compare API token), against all; a day without deployments shows 0.").
		Datasource(datasource()).
		WithTarget(seriesQuery("A", zeroFilled("day", []string{"deployments AS `production deployments`", "approximate AS `approximate`"},
			"SELECT day AS bucket, deployments, approximate FROM (\n"+dora.ApproximateSQL(db, window)+")"))).
		DrawStyle(common.GraphDrawStyleBars).FillOpacity(60).
		Unit("short").Decimals(0).Min(0).
		Legend(legend()).Tooltip(tooltip()).
		Span(14).Height(8))
	return d
}
