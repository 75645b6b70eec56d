// Package dashboards builds doraflow's Grafana dashboards as code with
// grafana-foundation-sdk, on the metric SQL of pkg/dora (the SQL `report`
// runs), writes them with the Grafana provisioning of them and of the
// ClickHouse datasource, and applies them to a Grafana through its HTTP
// API.
package dashboards

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/grafana/grafana-foundation-sdk/go/cog"
	"github.com/grafana/grafana-foundation-sdk/go/common"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
	"github.com/grafana/grafana-foundation-sdk/go/table"

	"github.com/doraflow/doraflow/pkg/dora"
)

// Tag is on every doraflow dashboard; the dashboards' links list the
// dashboards with it.
const Tag = "doraflow"

// UIDs of the dashboards: stable, so links and bookmarks keep working.
const (
	OverviewUID = "doraflow-overview"
	TeamsUID    = "doraflow-teams"
	TeamUID     = "doraflow-team"
	PipelineUID = "doraflow-pipeline"
)

// Dashboard is one generated dashboard.
type Dashboard struct {
	UID       string
	Dashboard dashboard.Dashboard
}

// JSON is the dashboard as Grafana's v1 dashboard JSON (what file
// provisioning and /api/dashboards/db take), indented, ending in a newline:
// the same bytes for the same dashboard.
func (d Dashboard) JSON() ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetIndent("", "  ")
	// SQL has < and >: keep it readable.
	enc.SetEscapeHTML(false)
	if err := enc.Encode(d.Dashboard); err != nil {
		return nil, fmt.Errorf("dashboards: encode %s: %w", d.UID, err)
	}
	return buf.Bytes(), nil
}

// Build builds every dashboard over the tables of database db.
func Build(db string) ([]Dashboard, error) {
	var out []Dashboard
	for _, b := range []struct {
		uid   string
		build func(db string) *dashboard.DashboardBuilder
	}{{OverviewUID, overview}, {TeamsUID, teamComparison}, {TeamUID, teamDetail}, {PipelineUID, pipeline}} {
		d, err := b.build(db).Build()
		if err != nil {
			return nil, fmt.Errorf("dashboards: build %s: %w", b.uid, err)
		}
		out = append(out, Dashboard{UID: b.uid, Dashboard: d})
	}
	return out, nil
}

// newDashboard is what every doraflow dashboard starts with: uid, tags,
// UTC, the datasource variable and links to the others.
func newDashboard(uid, title, description, from string) *dashboard.DashboardBuilder {
	return dashboard.NewDashboardBuilder(title).
		Uid(uid).
		Description(description).
		Tags([]string{Tag}).
		Timezone("utc").
		Time(from, "now").
		Refresh("5m").
		Tooltip(dashboard.DashboardCursorSyncCrosshair).
		Link(linksToOthers{}).
		WithVariable(dashboard.NewDatasourceVariableBuilder("datasource").Label("ClickHouse").Type(PluginID).
			Current(dashboard.VariableOption{Text: dashboard.StringOrArrayOfString{String: cog.ToPtr(datasourceName)},
				Value: dashboard.StringOrArrayOfString{String: cog.ToPtr(DatasourceUID)}}))
}

// linksToOthers is the dashboards' links to one another: they keep the
// time range and the variables (team, benchmark) across. The SDK's link
// builder always sets placement "inControlsMenu", which hides the links in
// a menu; without a placement Grafana shows them above the panels.
type linksToOthers struct{}

func (linksToOthers) Build() (dashboard.DashboardLink, error) {
	return dashboard.DashboardLink{Title: "doraflow", Type: dashboard.DashboardLinkTypeDashboards, Tags: []string{Tag},
		AsDropdown: false, IncludeVars: true, KeepTime: true}, nil
}

// teamVariable is the multi-select team variable, All included; Grafana
// inserts no allValue of its own (a custom one would land verbatim in
// ${team:singlequote}), and every condition on it is in $__conditionalAll.
func teamVariable(db string) *dashboard.QueryVariableBuilder {
	return dashboard.NewQueryVariableBuilder("team").Label("Team").
		Datasource(datasource()).
		Query(dashboard.StringOrMap{String: cog.ToPtr(dora.TeamsSQL(db))}).
		Definition(dora.TeamsSQL(db)).
		Refresh(dashboard.VariableRefreshOnDashboardLoad).
		Sort(dashboard.VariableSortAlphabeticalAsc).
		Multi(true).IncludeAll(true).
		Current(dashboard.VariableOption{Text: dashboard.StringOrArrayOfString{ArrayOfString: []string{"All"}},
			Value: dashboard.StringOrArrayOfString{ArrayOfString: []string{"$__all"}}})
}

// benchmarkVariable chooses the DORA benchmark of the tiers.
func benchmarkVariable() *dashboard.CustomVariableBuilder {
	var names []string
	var options []dashboard.VariableOption
	for _, b := range dora.Benchmarks {
		names = append(names, b.Name)
		options = append(options, dashboard.VariableOption{Text: dashboard.StringOrArrayOfString{String: cog.ToPtr(b.Name)},
			Value: dashboard.StringOrArrayOfString{String: cog.ToPtr(b.Name)}})
	}
	return dashboard.NewCustomVariableBuilder("benchmark").Label("Benchmark").
		Values(dashboard.StringOrMap{String: cog.ToPtr(strings.Join(names, ","))}).
		Options(options).
		Current(options[0])
}

// legend is a legend under a chart, as a list.
func legend() *common.VizLegendOptionsBuilder {
	return common.NewVizLegendOptionsBuilder().ShowLegend(true).DisplayMode(common.LegendDisplayModeList).Placement(common.LegendPlacementBottom)
}

// tooltip shows every series at the cursor.
func tooltip() *common.VizTooltipOptionsBuilder {
	return common.NewVizTooltipOptionsBuilder().Mode(common.TooltipDisplayModeMulti).Sort(common.SortOrderNone)
}

// teamDetailURL opens the team detail of the row's team over the same
// time range and benchmark.
const teamDetailURL = "/d/" + TeamUID + "/doraflow-team-detail?var-datasource=${datasource}&var-benchmark=${benchmark}&var-team=${__data.fields.team:percentencode}&${__url_time_range}"

// newTable is a table panel with its footer off, stated: Grafana's schema
// wants the footer's reducer list, which the SDK leaves null.
func newTable() *table.PanelBuilder {
	return table.NewPanelBuilder().
		Footer(common.NewTableFooterOptionsBuilder().Show(false).Reducer([]string{}).CountRows(false))
}
