package dashboards

import (
	"encoding/json"
	"reflect"

	"github.com/grafana/grafana-foundation-sdk/go/cog"
	"github.com/grafana/grafana-foundation-sdk/go/cog/variants"
	"github.com/grafana/grafana-foundation-sdk/go/common"
)

// PluginID is the ClickHouse datasource plugin's type.
const PluginID = "grafana-clickhouse-datasource"

// pluginVersion is written into every target: without one of at least 4
// the plugin takes the target for a v3 query and rewrites it.
const pluginVersion = "4.20.0"

// Query formats of the plugin.
const (
	FormatTimeSeries = 0
	FormatTable      = 1
)

// Query is a target of the ClickHouse plugin in its SQL editor mode, as
// its v4 frontend saves it. The SDK has no ClickHouse query type.
type Query struct {
	RefId         string               `json:"refId"`
	Hide          *bool                `json:"hide,omitempty"`
	Datasource    common.DataSourceRef `json:"datasource"`
	EditorType    string               `json:"editorType"`
	RawSql        string               `json:"rawSql"`
	Format        int                  `json:"format"`
	QueryType     string               `json:"queryType"`
	PluginVersion string               `json:"pluginVersion"`
}

// ImplementsDataqueryVariant marks Query as a dataquery for the SDK.
func (Query) ImplementsDataqueryVariant() {}

// DataqueryType is the plugin's id.
func (Query) DataqueryType() string { return PluginID }

// Validate accepts every Query: the SQL is checked against ClickHouse in
// the tests, not here.
func (Query) Validate() error { return nil }

// Equals compares two queries field by field.
func (q Query) Equals(other variants.Dataquery) bool {
	o, ok := other.(Query)
	return ok && reflect.DeepEqual(q, o)
}

// QueryVariant lets the SDK decode the plugin's targets (register it with
// cog.NewRuntime().RegisterDataqueryVariant).
func QueryVariant() variants.DataqueryConfig {
	unmarshal := func(raw []byte) (variants.Dataquery, error) {
		var q Query
		if err := json.Unmarshal(raw, &q); err != nil {
			return nil, err
		}
		return q, nil
	}
	return variants.DataqueryConfig{Identifier: PluginID, DataqueryUnmarshaler: unmarshal, StrictDataqueryUnmarshaler: unmarshal}
}

// datasource is the dashboards' datasource: the one the datasource
// variable selects.
func datasource() common.DataSourceRef {
	return common.DataSourceRef{Type: cog.ToPtr(PluginID), Uid: cog.ToPtr("${datasource}")}
}

// queryBuilder builds a Query for the SDK's panel builders.
type queryBuilder struct{ q Query }

var _ cog.Builder[variants.Dataquery] = queryBuilder{}

// Build returns the query. (A Build that fails must return
// cog.MakeBuildErrors: the SDK's parent builders panic on any other error.)
func (b queryBuilder) Build() (variants.Dataquery, error) { return b.q, nil }

func query(refID string, format int, sql string) queryBuilder {
	qt := "table"
	if format == FormatTimeSeries {
		qt = "timeseries"
	}
	return queryBuilder{Query{RefId: refID, Datasource: datasource(), EditorType: "sql", RawSql: sql,
		Format: format, QueryType: qt, PluginVersion: pluginVersion}}
}

// tableQuery and seriesQuery are a table- and a time-series-format query.
func tableQuery(refID, sql string) queryBuilder  { return query(refID, FormatTable, sql) }
func seriesQuery(refID, sql string) queryBuilder { return query(refID, FormatTimeSeries, sql) }
