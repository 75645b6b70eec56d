package dora

import (
	"math"
	"time"
)

// Aggregates are what the SQL returns for one team (or "*").
type Aggregates struct {
	Deployments, Failed, Rework, Recovered uint64
	RecoveryMedianSeconds                  uint64
	Changes                                uint64
	LeadTimeMedianSeconds, LeadTimeP90     uint64
	Incidents, Resolved                    uint64
	TimeToRestoreMedianSeconds             uint64
}

// TeamMetrics is one row of the report (contract: README "report").
// Pointers are null where there is nothing to measure.
type TeamMetrics struct {
	Team                  string   `json:"team"`
	Deployments           uint64   `json:"deployments"`
	DeploymentsPerDay     float64  `json:"deployments_per_day"`
	Changes               uint64   `json:"changes"`
	LeadTimeMedianSeconds *float64 `json:"lead_time_median_seconds"`
	LeadTimeP90Seconds    *float64 `json:"lead_time_p90_seconds"`
	FailedDeployments     uint64   `json:"failed_deployments"`
	ChangeFailureRate     *float64 `json:"change_failure_rate"`
	Incidents             uint64   `json:"incidents"`
	TimeToRestoreMedian   *float64 `json:"time_to_restore_median_seconds"`
	// DORA 2023/2024 additions.
	RecoveryMedianSeconds *float64 `json:"failed_deployment_recovery_median_seconds"`
	ReworkDeployments     uint64   `json:"rework_deployments"`
	ReworkRate            *float64 `json:"rework_rate"`
	Tiers                 Tiers    `json:"tiers"`
}

// Tiers rate each key metric; empty (null) where it cannot be rated.
type Tiers struct {
	DeploymentFrequency Tier  `json:"deployment_frequency"`
	LeadTime            *Tier `json:"lead_time"`
	ChangeFailureRate   *Tier `json:"change_failure_rate"`
	TimeToRestore       *Tier `json:"time_to_restore"`
}

// Metrics derives a team's metrics from its aggregates over a window.
func (b Benchmark) Metrics(team string, a Aggregates, window time.Duration) TeamMetrics {
	days := window.Hours() / 24
	m := TeamMetrics{
		Team:              team,
		Deployments:       a.Deployments,
		Changes:           a.Changes,
		FailedDeployments: a.Failed,
		Incidents:         a.Incidents,
		ReworkDeployments: a.Rework,
	}
	if days > 0 {
		m.DeploymentsPerDay = round(float64(a.Deployments)/days, 4)
	}
	m.Tiers.DeploymentFrequency = b.DeploymentFrequencyTier(m.DeploymentsPerDay)
	if a.Changes > 0 {
		m.LeadTimeMedianSeconds = ptr(float64(a.LeadTimeMedianSeconds))
		m.LeadTimeP90Seconds = ptr(float64(a.LeadTimeP90))
		m.Tiers.LeadTime = ptr(b.LeadTimeTier(time.Duration(a.LeadTimeMedianSeconds) * time.Second))
	}
	if a.Deployments > 0 {
		m.ChangeFailureRate = ptr(round(float64(a.Failed)/float64(a.Deployments), 4))
		m.Tiers.ChangeFailureRate = ptr(b.ChangeFailureRateTier(*m.ChangeFailureRate))
		m.ReworkRate = ptr(round(float64(a.Rework)/float64(a.Deployments), 4))
	}
	if a.Recovered > 0 {
		m.RecoveryMedianSeconds = ptr(float64(a.RecoveryMedianSeconds))
	}
	if a.Resolved > 0 {
		m.TimeToRestoreMedian = ptr(float64(a.TimeToRestoreMedianSeconds))
		m.Tiers.TimeToRestore = ptr(b.TimeToRestoreTier(time.Duration(a.TimeToRestoreMedianSeconds) * time.Second))
	}
	return m
}

func ptr[T any](v T) *T { return &v }

func round(v float64, places int) float64 {
	p := math.Pow(10, float64(places))
	return math.Round(v*p) / p
}
