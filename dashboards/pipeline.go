package dashboards

import (
	"github.com/grafana/grafana-foundation-sdk/go/cog"
	"github.com/grafana/grafana-foundation-sdk/go/common"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
	"github.com/grafana/grafana-foundation-sdk/go/timeseries"

	"github.com/doraflow/doraflow/pkg/dora"
	"github.com/doraflow/doraflow/pkg/telemetry"
)

// pipeline is for operators: what the processors took from the bus per
// source (pipeline_minutes, written by the processor), whether facts keep
// arriving, and how many deployments' changes are approximate. Deliveries
// the collectors ignore never reach the bus: they are counted in
// /metrics (doraflow_webhook_ignored_total) only.
func pipeline(db string) *dashboard.DashboardBuilder {
	d := newDashboard(PipelineUID, "doraflow pipeline health",
		"For operators: events processed and dead-lettered per source, processing lag, the latest event and fact per source, approximate deployments.",
		"now-7d")
	d.WithPanel(sourceSeries(db, "Events processed per source",
		"Events the processors folded and acknowledged, per source; with the dead-lettered ones, every event the collectors published. (Deliveries the collectors ignore are counted in /metrics only.)",
		perSource(db, "sum(events)", telemetry.OutcomeProcessed), "short", 0))
	d.WithPanel(sourceSeries(db, "Events dead-lettered per source",
		"Events set aside on the dead-letter stream (undecodable, or delivered too often without being processed); links between stages show as source links.",
		perSource(db, "sum(events)", telemetry.OutcomeDeadLettered), "short", 0))
	d.WithPanel(sourceSeries(db, "Processing lag per source",
		"Mean time from the collector's receipt of an event to the processor's acknowledgement of it; no point where nothing was processed.",
		perSource(db, "if(sum(events) = 0, NULL, sum(lag_seconds_sum) / sum(events))", telemetry.OutcomeProcessed), "s", 1).
		DrawStyle(common.GraphDrawStyleLine).FillOpacity(0).ShowPoints(common.VisibilityModeAuto).
		SpanNulls(common.BoolOrFloat64{Bool: cog.ToPtr(false)}).
		Stacking(common.NewStackingConfigBuilder().Mode(common.StackingModeNone)))
	d.WithPanel(newTable().
		Title("Last event processed per source").
		Description("The last minute in which the processors took an event of each source, and how many in the hour before the range's end: a source that went quiet shows an old time and 0.").
		Datasource(datasource()).
		WithTarget(tableQuery("A", lastEventSQL(db))).
		NoValue("-").
		OverrideByName("last_seen", []dashboard.DynamicConfigValue{{Id: "displayName", Value: "last seen"}, {Id: "unit", Value: "dateTimeAsIso"}}).
		OverrideByName("last_hour", []dashboard.DynamicConfigValue{{Id: "displayName", Value: "events in the last hour"}, {Id: "unit", Value: "short"}, {Id: "decimals", Value: 0}}).
		Span(12).Height(8))
	d.WithPanel(newTable().
		Title("Last fact seen per kind").
		Description("The latest time a stored fact names, and how many name a time within the day before the range's end.").
		Datasource(datasource()).
		WithTarget(tableQuery("A", dora.LastSeenSQL(db, window))).
		NoValue("-").
		OverrideByName("last_day", []dashboard.DynamicConfigValue{{Id: "displayName", Value: "facts in the last day"}, {Id: "unit", Value: "short"}, {Id: "decimals", Value: 0}}).
		OverrideByName("last_seen", []dashboard.DynamicConfigValue{{Id: "displayName", Value: "last seen"}, {Id: "unit", Value: "dateTimeAsIso"}}).
		Span(12).Height(8))
	d.WithPanel(timeseries.NewPanelBuilder().
		Title("Approximate deployments per day").
		Description("Production deployments whose changes were found without a complete push chain (missed pushes, no compare API token), against all; a day without deployments shows 0.").
		Datasource(datasource()).
		WithTarget(seriesQuery("A", zeroFilled("day", []string{"deployments AS `production deployments`", "approximate AS `approximate`"},
			"SELECT day AS bucket, deployments, approximate FROM (\n"+dora.ApproximateSQL(db, window)+")"))).
		DrawStyle(common.GraphDrawStyleBars).FillOpacity(60).
		Unit("short").Decimals(0).Min(0).
		Legend(legend()).Tooltip(tooltip()).
		Span(12).Height(8))
	return d
}

func sourceSeries(db, title, description, sql, unit string, decimals float64) *timeseries.PanelBuilder {
	return timeseries.NewPanelBuilder().
		Title(title).
		Description(description).
		Datasource(datasource()).
		WithTarget(seriesQuery("A", sql)).
		DrawStyle(common.GraphDrawStyleBars).FillOpacity(60).
		Stacking(common.NewStackingConfigBuilder().Mode(common.StackingModeNormal)).
		Unit(unit).Decimals(decimals).Min(0).
		Legend(legend()).Tooltip(tooltip()).
		Span(12).Height(8)
}

// sourceName names the source of a count; links between the processor's
// stages carry none.
const sourceName = "if(source = '', 'links', source)"

// perSource is value (an aggregate over pipeline_minutes' events and
// lag_seconds_sum) of the given outcome per source and time bucket of the
// panel's interval (at least a minute), every bucket of the range present
// for each source seen in it: a bucket without events has 0 events.
func perSource(db, value, outcome string) string {
	step := "greatest(60, toUInt32($__interval_s))"
	first := "toUInt64(intDiv(toUInt32(" + window.From + "), " + step + "))"
	last := "toUInt64(intDiv(toUInt32(" + window.To + ") - 1, " + step + "))"
	inRange := "minute >= " + window.From + " AND minute < " + window.To
	return `SELECT toDateTime(bucket * ` + step + `) AS time, source, value FROM (
    SELECT bucket, source FROM (SELECT ` + first + ` + arrayJoin(range(toUInt32(` + last + ` - ` + first + ` + 1))) AS bucket)
    CROSS JOIN (SELECT DISTINCT ` + sourceName + ` AS source FROM ` + db + `.pipeline_minutes WHERE ` + inRange + `))
ANY LEFT JOIN (
    SELECT toUInt64(intDiv(toUInt32(minute), ` + step + `)) AS bucket, ` + sourceName + ` AS source, ` + value + ` AS value
    FROM ` + db + `.pipeline_minutes
    WHERE ` + inRange + ` AND outcome = '` + outcome + `'
    GROUP BY bucket, source) USING (bucket, source)
ORDER BY time, source`
}

// lastEventSQL is each source's last minute with a processed event before
// the range's end, and its events in the hour before the end.
func lastEventSQL(db string) string {
	return `SELECT ` + sourceName + ` AS source, max(minute) AS last_seen,
    sumIf(events, minute >= toDateTime(toUInt32(` + window.To + `) - 3600)) AS last_hour
FROM ` + db + `.pipeline_minutes
WHERE outcome = '` + telemetry.OutcomeProcessed + `' AND minute < ` + window.To + `
GROUP BY source
ORDER BY source`
}
