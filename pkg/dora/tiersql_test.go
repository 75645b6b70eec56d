package dora_test

import (
	"context"
	"math"
	"os"
	"strconv"
	"testing"
	"time"

	ch "github.com/ClickHouse/clickhouse-go/v2"

	"github.com/doraflow/doraflow/internal/testenv"
	"github.com/doraflow/doraflow/pkg/dora"
)

func TestMain(m *testing.M) { os.Exit(testenv.RunClickHouse(m)) }

// TierSQL rates every value as the Go tiers do — the report's and the
// dashboards' tiers are the one table — on both sides of every limit of
// every benchmark, NULL for no value, and the default benchmark for a name
// it does not know.
func TestTierSQLMatchesTiers(t *testing.T) {
	testenv.ClickHouse(t)
	conn, err := ch.Open(&ch.Options{Addr: []string{testenv.ClickHouseAddr()}})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx := context.Background()
	goTier := func(b dora.Benchmark, m dora.Metric, v float64) dora.Tier {
		switch m {
		case dora.DeploymentFrequency:
			return b.DeploymentFrequencyTier(v)
		case dora.LeadTime:
			return b.LeadTimeTier(time.Duration(v) * time.Second)
		case dora.ChangeFailureRate:
			return b.ChangeFailureRateTier(v)
		}
		return b.TimeToRestoreTier(time.Duration(v) * time.Second)
	}
	for _, b := range append(dora.Benchmarks, dora.Benchmark{Name: "1999"}) {
		rated, _ := dora.BenchmarkNamed(b.Name)
		if b.Name == "1999" {
			rated = dora.Benchmarks[0]
		}
		for _, m := range dora.Metrics {
			var values []float64
			for _, l := range rated.Limits(m).Values {
				if m == dora.LeadTime || m == dora.TimeToRestore {
					values = append(values, l-1, l, l+1)
				} else {
					values = append(values, math.Nextafter(l, 0), l, math.Nextafter(l, 1))
				}
			}
			for _, v := range values {
				var got *string
				lit := strconv.FormatFloat(v, 'g', -1, 64)
				if err := conn.QueryRow(ctx, "SELECT "+dora.TierSQL(m, "toNullable("+lit+")", "'"+b.Name+"'")).Scan(&got); err != nil {
					t.Fatalf("%s %s %v: %v", b.Name, m, v, err)
				}
				if want := goTier(rated, m, v); got == nil || *got != string(want) {
					t.Errorf("benchmark %s, %s of %s: SQL says %s, Go says %s", b.Name, m, lit, deref(got), want)
				}
			}
			var none *string
			if err := conn.QueryRow(ctx, "SELECT "+dora.TierSQL(m, "CAST(NULL AS Nullable(Float64))", "'"+b.Name+"'")).Scan(&none); err != nil {
				t.Fatal(err)
			}
			if none != nil {
				t.Errorf("benchmark %s, %s of NULL: %q, want NULL", b.Name, m, *none)
			}
		}
	}
}

func deref(s *string) string {
	if s == nil {
		return "NULL"
	}
	return *s
}
