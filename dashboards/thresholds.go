package dashboards

import (
	"math"

	"github.com/grafana/grafana-foundation-sdk/go/cog"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"

	"github.com/doraflow/doraflow/pkg/dora"
)

// tierColor is the colour of each tier on every dashboard.
var tierColor = map[dora.Tier]string{dora.Elite: "dark-green", dora.High: "green", dora.Medium: "yellow", dora.Low: "red"}

// step is a Grafana threshold step: the tier of values at or above value
// (the first step's value is -Infinity).
type step struct {
	tier  dora.Tier
	value float64
}

// steps turns a benchmark's limits of a metric into Grafana's threshold
// steps, ascending. Grafana colours a value by the last step it is at or
// above: a "<" limit is the step of the next tier itself, a "<=" limit
// the next float above it, and for ">=" the best tier is the top step.
func steps(m dora.Metric, b dora.Benchmark) []step {
	l := b.Limits(m)
	t := dora.TierOrder
	switch l.Compare {
	case ">=":
		return []step{{t[3], math.Inf(-1)}, {t[2], l.Values[2]}, {t[1], l.Values[1]}, {t[0], l.Values[0]}}
	case "<=":
		next := func(v float64) float64 { return math.Nextafter(v, math.Inf(1)) }
		return []step{{t[0], math.Inf(-1)}, {t[1], next(l.Values[0])}, {t[2], next(l.Values[1])}, {t[3], next(l.Values[2])}}
	}
	return []step{{t[0], math.Inf(-1)}, {t[1], l.Values[0]}, {t[2], l.Values[1]}, {t[3], l.Values[2]}}
}

// thresholds are the default benchmark's steps, what a panel shows until
// its thresholds query answers.
func thresholds(m dora.Metric) *dashboard.ThresholdsConfigBuilder {
	var out []dashboard.Threshold
	for i, s := range steps(m, dora.Benchmarks[0]) {
		th := dashboard.Threshold{Color: tierColor[s.tier]}
		if i > 0 {
			th.Value = cog.ToPtr(s.value)
		}
		out = append(out, th)
	}
	return dashboard.NewThresholdsConfigBuilder().Mode(dashboard.ThresholdsModeAbsolute).Steps(out)
}

// fromThresholdsQuery makes the selected benchmark's steps, answered by
// the query refID T (thresholdsSQL), the thresholds of query A's values:
// Grafana's "config from query results" with each column a threshold of
// its tier's colour.
func fromThresholdsQuery(m dora.Metric) dashboard.DataTransformerConfig {
	var mappings []map[string]any
	for _, s := range steps(m, dora.Benchmarks[0]) {
		mappings = append(mappings, map[string]any{"fieldName": string(s.tier), "handlerKey": "threshold1",
			"handlerArguments": map[string]any{"threshold": map[string]any{"color": tierColor[s.tier]}}})
	}
	return dashboard.DataTransformerConfig{Id: "configFromData", Options: map[string]any{
		"configRefId": "T",
		"applyTo":     map[string]any{"id": "byFrameRefID", "options": "A"},
		"mappings":    mappings,
	}}
}
