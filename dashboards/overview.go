package dashboards

import (
	"github.com/grafana/grafana-foundation-sdk/go/barchart"
	"github.com/grafana/grafana-foundation-sdk/go/cog"
	"github.com/grafana/grafana-foundation-sdk/go/cog/variants"
	"github.com/grafana/grafana-foundation-sdk/go/common"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
	"github.com/grafana/grafana-foundation-sdk/go/stat"
	"github.com/grafana/grafana-foundation-sdk/go/timeseries"

	"github.com/doraflow/doraflow/pkg/dora"
)

// A key figure of the overview: a column of dora.MetricsSQL, how to show
// it, and its tiers (none for the two without a benchmark).
type key struct {
	title, column, unit, noValue string
	decimals                     float64
	tiered                       bool
	metric                       dora.Metric
	// lowerIsBetter colours a fall green in the change against the
	// previous period.
	lowerIsBetter bool
}

// perDay is Grafana's custom-suffix unit for deployments per day.
const perDay = "suffix: /day"

var keys = []key{
	{"Deployment frequency", "deployments_per_day", perDay, "no deployments", 2, true, dora.DeploymentFrequency, false},
	{"Lead time for changes (p50)", "lead_time_median_seconds", "s", "no changes deployed", 1, true, dora.LeadTime, true},
	{"Change failure rate", "change_failure_rate", "percentunit", "no deployments", 1, true, dora.ChangeFailureRate, true},
	{"Time to restore (p50)", "time_to_restore_median_seconds", "s", "no incidents resolved", 1, true, dora.TimeToRestore, true},
	{"Failed deployment recovery (p50)", "failed_deployment_recovery_median_seconds", "s", "no failed deployment recovered", 1, false, "", true},
	{"Rework rate", "rework_rate", "percentunit", "no deployments", 1, false, "", true},
}

func overview(db string) *dashboard.DashboardBuilder {
	d := newDashboard(OverviewUID, "DORA overview",
		"The four keys, failed-deployment recovery and rework rate of the selected teams, rated by the selected DORA benchmark, with their trends.",
		"now-90d").
		WithVariable(teamVariable(db)).
		WithVariable(benchmarkVariable()).
		WithRow(dashboard.NewRowBuilder("The keys over the range, and their change against the period of the same length before it"))
	for _, k := range keys {
		d.WithPanel(statPanel(db, k))
	}
	d.WithRow(dashboard.NewRowBuilder("Trends: weekly and monthly (UTC)"))
	for _, k := range keys[:4] {
		d.WithPanel(trendPanel(db, k))
	}
	d.WithRow(dashboard.NewRowBuilder("Teams and volumes"))
	d.WithPanel(barchart.NewPanelBuilder().
		Title("Share of teams per tier").
		Description("How many of the selected teams are in each tier of each key, by the selected benchmark.").
		Datasource(datasource()).
		WithTarget(tableQuery("A", tierShareSQL(db))).
		XField("tier").
		Orientation(common.VizOrientationHorizontal).
		ShowValue(common.VisibilityModeAuto).
		Stacking(common.StackingModeNone).
		Legend(legend()).
		Tooltip(tooltip()).
		Unit("short").Decimals(0).Min(0).
		Span(12).Height(8))
	d.WithPanel(timeseries.NewPanelBuilder().
		Title("Production deployments and incidents per day").
		Description("Production deployments finished and incidents opened each UTC day; a day without any shows 0.").
		Datasource(datasource()).
		WithTarget(seriesQuery("A", trendSQL(db, dora.ByDay, "deployments AS `production deployments`", "incidents AS `incidents opened`"))).
		DrawStyle(common.GraphDrawStyleBars).
		FillOpacity(60).
		Unit("short").Decimals(0).Min(0).
		Legend(legend()).Tooltip(tooltip()).
		Span(12).Height(8))
	return d
}

// statPanel is a key over the range, coloured by its tier (the thresholds
// query T gives the selected benchmark's limits), with the change against
// the previous period.
func statPanel(db string, k key) *stat.PanelBuilder {
	color := common.PercentChangeColorModeStandard
	if k.lowerIsBetter {
		color = common.PercentChangeColorModeInverted
	}
	targets := []cog.Builder[variants.Dataquery]{seriesQuery("A", statSQL(db, k.column))}
	p := stat.NewPanelBuilder().
		Title(k.title).
		Datasource(datasource()).
		Unit(k.unit).Decimals(k.decimals).
		NoValue(k.noValue).
		ReduceOptions(common.NewReduceDataOptionsBuilder().Calcs([]string{"last"}).Values(false)).
		Orientation(common.VizOrientationAuto).
		TextMode(common.BigValueTextModeValue).
		GraphMode(common.BigValueGraphModeNone).
		JustifyMode(common.BigValueJustifyModeCenter).
		ShowPercentChange(true).
		PercentChangeColorMode(color).
		Span(4).Height(5)
	if k.tiered {
		p.Description("Coloured by tier of the selected benchmark: " + tierLegend).
			ColorMode(common.BigValueColorModeBackground).
			Thresholds(thresholds(k.metric)).
			ColorScheme(dashboard.NewFieldColorBuilder().Mode(dashboard.FieldColorModeIdThresholds)).
			WithTransformation(fromThresholdsQuery(k.metric))
		// T answers the thresholds; the transformation takes its frame
		// out of what the panel shows.
		targets = append(targets, tableQuery("T", thresholdsSQL(k.metric)))
	} else {
		p.Description("DORA publishes no tiers for this one.").
			ColorMode(common.BigValueColorModeNone)
	}
	return p.Targets(targets)
}

const tierLegend = "dark green elite, green high, yellow medium, red low."

// trendPanel is a key per UTC week and per UTC month.
func trendPanel(db string, k key) *timeseries.PanelBuilder {
	p := timeseries.NewPanelBuilder().
		Title(k.title + " per week and per month").
		Datasource(datasource()).
		WithTarget(seriesQuery("A", trendSQL(db, dora.ByWeek, k.column+" AS weekly"))).
		WithTarget(seriesQuery("B", trendSQL(db, dora.ByMonth, k.column+" AS monthly"))).
		Unit(k.unit).Decimals(k.decimals).Min(0).
		LineWidth(2).
		ShowPoints(common.VisibilityModeAlways).
		PointSize(5).
		Legend(legend()).Tooltip(tooltip()).
		Span(12).Height(8)
	if k.metric == dora.DeploymentFrequency {
		p.Description("Production deployments per day within each week and month; a week without any shows 0.")
	} else {
		// Nothing to measure in a week is a gap, not a zero: the line
		// stays broken rather than drawn through it.
		p.Description("A week or month with nothing to measure has no point.").
			SpanNulls(common.BoolOrFloat64{Bool: cog.ToPtr(false)})
	}
	return p
}
