package dora

import (
	"testing"
	"time"
)

func TestTiers2023(t *testing.T) {
	b := Benchmark2023
	day := 24 * time.Hour
	cases := []struct {
		name string
		got  Tier
		want Tier
	}{
		{"one deploy a day is elite", b.DeploymentFrequencyTier(1), Elite},
		{"one a week is high", b.DeploymentFrequencyTier(1.0 / 7), High},
		{"one a month is medium", b.DeploymentFrequencyTier(1.0 / 30), Medium},
		{"less is low", b.DeploymentFrequencyTier(0.01), Low},
		{"lead time under a day is elite", b.LeadTimeTier(day - time.Second), Elite},
		{"a day is high", b.LeadTimeTier(day), High},
		{"a week is medium", b.LeadTimeTier(7 * day), Medium},
		{"30 days is low", b.LeadTimeTier(30 * day), Low},
		{"5% failures is elite", b.ChangeFailureRateTier(0.05), Elite},
		{"10% is high", b.ChangeFailureRateTier(0.10), High},
		{"15% is medium", b.ChangeFailureRateTier(0.15), Medium},
		{"more is low", b.ChangeFailureRateTier(0.1501), Low},
		{"restore under an hour is elite", b.TimeToRestoreTier(59 * time.Minute), Elite},
		{"under a day is high", b.TimeToRestoreTier(23 * time.Hour), High},
		{"under a week is medium", b.TimeToRestoreTier(6 * day), Medium},
		{"a week is low", b.TimeToRestoreTier(7 * day), Low},
	}
	for _, tc := range cases {
		if tc.got != tc.want {
			t.Errorf("%s: got %s, want %s", tc.name, tc.got, tc.want)
		}
	}
}

func TestMetricsNullWhereNothingToMeasure(t *testing.T) {
	m := Benchmark2023.Metrics("t", Aggregates{}, 30*24*time.Hour)
	if m.LeadTimeMedianSeconds != nil || m.ChangeFailureRate != nil || m.TimeToRestoreMedian != nil ||
		m.Tiers.LeadTime != nil || m.Tiers.ChangeFailureRate != nil || m.Tiers.TimeToRestore != nil {
		t.Errorf("want nulls, got %+v", m)
	}
	m = Benchmark2023.Metrics("t", Aggregates{Deployments: 3, Failed: 1}, 30*24*time.Hour)
	if m.DeploymentsPerDay != 0.1 || *m.ChangeFailureRate != 0.3333 {
		t.Errorf("got %+v", m)
	}
}
