// Package telemetry holds doraflow's Prometheus metrics, registered on a
// registry the caller owns (no global state).
package telemetry

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Metrics are the counters and gauges every component reports to.
type Metrics struct {
	Registry *prometheus.Registry

	// Collectors.
	// The event label is one of the source's fixed event kinds, "other"
	// or "unknown" (see collectors/webhook): never a value a sender chose.
	Requests        *prometheus.CounterVec // source, event, code
	Ignored         *prometheus.CounterVec // source, event, reason
	Published       *prometheus.CounterVec // source, type
	RequestDuration *prometheus.HistogramVec

	// Processor.
	Processed     *prometheus.CounterVec // type
	FactsWritten  *prometheus.CounterVec // table
	ProcessingLag prometheus.Gauge
	Errors        *prometheus.CounterVec // component, kind
	Approximate   *prometheus.GaugeVec   // partition
	GapFills      *prometheus.CounterVec // host, result
	DeadLettered  *prometheus.CounterVec // reason
	// CommittedAfterDeployment counts the changes whose commit is
	// timestamped after the deployment that shipped them (a committer's
	// clock ahead): their lead time is stored as 0.
	CommittedAfterDeployment prometheus.Counter
}

// New registers doraflow's metrics (and the Go and process collectors) on a
// fresh registry.
func New() *Metrics {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m := &Metrics{
		Registry: reg,
		Requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "doraflow_webhook_requests_total",
			Help: "Webhook requests answered, by source, event kind (other: not known to the source; unknown: answered before the type was read) and HTTP status code.",
		}, []string{"source", "event", "code"}),
		Ignored: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "doraflow_webhook_ignored_total",
			Help: "Webhook deliveries answered 2xx but not used (event type not known, or not relevant), by source, event kind and reason.",
		}, []string{"source", "event", "reason"}),
		Published: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "doraflow_events_published_total",
			Help: "Canonical events acknowledged by JetStream, by source and type.",
		}, []string{"source", "type"}),
		RequestDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "doraflow_webhook_request_duration_seconds",
			Help:    "Time to answer a webhook, publish acknowledgements included.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14),
		}, []string{"source"}),
		Processed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "doraflow_events_processed_total",
			Help: "Canonical events folded into the correlation state, by type; a message folded again after a restart or a failed batch counts again.",
		}, []string{"type"}),
		FactsWritten: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "doraflow_facts_written_total",
			Help: "Fact rows written to ClickHouse, by table.",
		}, []string{"table"}),
		ProcessingLag: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "doraflow_processing_lag_seconds",
			Help: "Time between an event's publication and the write of its facts, for the last batch.",
		}),
		GapFills: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "doraflow_gap_fills_total",
			Help: "Gaps in push chains sent to a Git host's compare API, by host and result (filled, retry, given_up).",
		}, []string{"host", "result"}),
		Errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "doraflow_errors_total",
			Help: "Errors by component and kind.",
		}, []string{"component", "kind"}),
		Approximate: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "doraflow_approximate_deployments",
			Help: "Production deployments whose changes may be incomplete: the push chain to the previous deployment has a gap (missed webhook, force push, truncated push) that no compare API call filled.",
		}, []string{"partition"}),
		DeadLettered: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "doraflow_dead_lettered_total",
			Help: "Messages moved to the dead-letter stream, by reason.",
		}, []string{"reason"}),
		CommittedAfterDeployment: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "doraflow_changes_committed_after_deployment_total",
			Help: "Changes written whose commit is timestamped after their deployment (a clock ahead), counted once per change and process: their lead time is stored as 0.",
		}),
	}
	reg.MustRegister(m.Requests, m.Ignored, m.Published, m.RequestDuration, m.Processed,
		m.FactsWritten, m.ProcessingLag, m.Errors, m.Approximate, m.GapFills, m.DeadLettered, m.CommittedAfterDeployment)
	return m
}
