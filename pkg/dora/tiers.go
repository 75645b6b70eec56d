// Package dora holds the DORA metric definitions once: the SQL over the fact
// tables, the derived ratios and the performance tiers. The processor writes
// the facts these read; `report` and the dashboards run the same SQL.
package dora

import "time"

// Tier is a DORA performance level.
type Tier string

const (
	Elite  Tier = "elite"
	High   Tier = "high"
	Medium Tier = "medium"
	Low    Tier = "low"
)

// Benchmark is a year's published thresholds.
type Benchmark struct {
	Name string
	// Deployment frequency, per day: at least Elite/High/Medium, else low.
	DeployPerDay [3]float64
	// Lead time: under Elite/High/Medium, else low.
	LeadTime [3]time.Duration
	// Change failure rate: at most Elite/High/Medium, else low.
	ChangeFailureRate [3]float64
	// Time to restore: under Elite/High/Medium, else low.
	TimeToRestore [3]time.Duration
}

const day = 24 * time.Hour

// Benchmarks by name; DefaultBenchmark is used unless another is chosen.
var (
	Benchmark2023 = Benchmark{
		Name:              "2023",
		DeployPerDay:      [3]float64{1, 1.0 / 7, 1.0 / 30},
		LeadTime:          [3]time.Duration{day, 7 * day, 30 * day},
		ChangeFailureRate: [3]float64{0.05, 0.10, 0.15},
		TimeToRestore:     [3]time.Duration{time.Hour, day, 7 * day},
	}
	Benchmark2021 = Benchmark{
		Name:              "2021",
		DeployPerDay:      [3]float64{1, 1.0 / 7, 1.0 / 30},
		LeadTime:          [3]time.Duration{time.Hour, 7 * day, 180 * day},
		ChangeFailureRate: [3]float64{0.15, 0.15, 0.15},
		TimeToRestore:     [3]time.Duration{time.Hour, day, 7 * day},
	}
)

// Benchmarks are the benchmarks one can choose, the default first.
var Benchmarks = []Benchmark{Benchmark2023, Benchmark2021}

// BenchmarkNamed returns the benchmark of a year.
func BenchmarkNamed(name string) (Benchmark, bool) {
	switch name {
	case "", "2023":
		return Benchmark2023, true
	case "2021":
		return Benchmark2021, true
	}
	return Benchmark{}, false
}

// DeploymentFrequencyTier rates deployments per day.
func (b Benchmark) DeploymentFrequencyTier(perDay float64) Tier {
	for i, t := range b.DeployPerDay {
		if perDay >= t {
			return TierOrder[i]
		}
	}
	return Low
}

// LeadTimeTier rates a median lead time.
func (b Benchmark) LeadTimeTier(d time.Duration) Tier { return below(d, b.LeadTime) }

// TimeToRestoreTier rates a median time to restore.
func (b Benchmark) TimeToRestoreTier(d time.Duration) Tier { return below(d, b.TimeToRestore) }

// ChangeFailureRateTier rates a change failure rate.
func (b Benchmark) ChangeFailureRateTier(rate float64) Tier {
	for i, t := range b.ChangeFailureRate {
		if rate <= t {
			return TierOrder[i]
		}
	}
	return Low
}

func below(d time.Duration, limits [3]time.Duration) Tier {
	for i, t := range limits {
		if d < t {
			return TierOrder[i]
		}
	}
	return Low
}

// Metric names a key metric that has tiers, as the report's JSON does.
type Metric string

const (
	DeploymentFrequency Metric = "deployment_frequency"
	LeadTime            Metric = "lead_time"
	ChangeFailureRate   Metric = "change_failure_rate"
	TimeToRestore       Metric = "time_to_restore"
)

// Metrics are the metrics with tiers, in the order the report names them.
var Metrics = []Metric{DeploymentFrequency, LeadTime, ChangeFailureRate, TimeToRestore}

// Limits is how a benchmark rates a metric: a value is Elite, High or
// Medium by the first limit it meets (Compare: ">=", "<" or "<="), else
// low. Values are in the units the report gives: deployments per day,
// seconds, a ratio.
type Limits struct {
	Values  [3]float64
	Compare string
}

// Limits returns the benchmark's limits of a metric.
func (b Benchmark) Limits(m Metric) Limits {
	secs := func(ds [3]time.Duration) [3]float64 {
		return [3]float64{ds[0].Seconds(), ds[1].Seconds(), ds[2].Seconds()}
	}
	switch m {
	case DeploymentFrequency:
		return Limits{b.DeployPerDay, ">="}
	case LeadTime:
		return Limits{secs(b.LeadTime), "<"}
	case ChangeFailureRate:
		return Limits{b.ChangeFailureRate, "<="}
	case TimeToRestore:
		return Limits{secs(b.TimeToRestore), "<"}
	}
	return Limits{}
}

// TierOrder is the tiers, best first.
var TierOrder = [4]Tier{Elite, High, Medium, Low}
