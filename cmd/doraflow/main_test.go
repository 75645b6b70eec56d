package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/doraflow/doraflow/internal/testenv"
	"github.com/doraflow/doraflow/pkg/bus"
)

func TestMain(m *testing.M) {
	if os.Getenv(beMain) != "" {
		main()
		return
	}
	os.Exit(testenv.RunClickHouse(m))
}

func run(t *testing.T, args ...string) (string, error) {
	t.Helper()
	root := newRoot()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&bytes.Buffer{})
	root.SetArgs(args)
	err := root.ExecuteContext(context.Background())
	return out.String(), err
}

// The commands as a user runs them: migrate (twice), demo, then report as
// JSON in the documented shape.
func TestCommands(t *testing.T) {
	t.Setenv("DORAFLOW_CLICKHOUSE_DSN", testenv.ClickHouse(t))
	t.Setenv("DORAFLOW_DATA_DIR", t.TempDir())
	t.Setenv("DORAFLOW_LISTEN", "127.0.0.1:0")
	if out, err := run(t, "migrate"); err != nil || !strings.Contains(out, "applied 0001_facts") {
		t.Fatalf("migrate: %q %v", out, err)
	}
	if out, err := run(t, "migrate"); err != nil || !strings.Contains(out, "up to date") {
		t.Fatalf("migrate again: %q %v", out, err)
	}
	out, err := run(t, "demo", "--days", "7")
	if err != nil || !strings.Contains(out, "payments") {
		t.Fatalf("demo: %v\n%s", err, out)
	}
	out, err = run(t, "report", "--since", "8d", "--format", "json")
	if err != nil {
		t.Fatal(err)
	}
	var r struct {
		Teams []map[string]any `json:"teams"`
		Total map[string]any   `json:"total"`
	}
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("report is not JSON: %v\n%s", err, out)
	}
	for _, field := range []string{"team", "deployments", "deployments_per_day", "changes", "lead_time_median_seconds",
		"lead_time_p90_seconds", "failed_deployments", "change_failure_rate", "incidents", "time_to_restore_median_seconds", "tiers"} {
		if _, ok := r.Total[field]; !ok {
			t.Errorf("total lacks %s", field)
		}
	}
	if r.Total["team"] != "*" || r.Total["deployments"].(float64) == 0 {
		t.Errorf("total: %v", r.Total)
	}
	out, err = run(t, "report", "--since", "8d", "--team", "payments")
	if err != nil || !strings.Contains(out, "payments") || strings.Contains(out, "checkout") {
		t.Errorf("report --team: %v\n%s", err, out)
	}
}

func TestBadFlagsAreConfigErrors(t *testing.T) {
	t.Setenv("DORAFLOW_CLICKHOUSE_DSN", "clickhouse://127.0.0.1:1/x")
	for _, args := range [][]string{
		{"report", "--since", "yesterday"},
		{"report", "--format", "xml"},
		{"report", "--benchmark", "1999"},
		{"serve", "--role", "processor"}, // needs an external NATS
		{"serve", "--role", "both"},
	} {
		if _, err := run(t, args...); !errors.Is(err, errConfig) {
			t.Errorf("%v: got %v, want a configuration error (exit 2)", args, err)
		}
	}
}

// A partition count other than the one the bus was set up with is a
// configuration error (exit status 2) for every command that publishes or
// processes events, and says what to do.
func TestPartitionChangeExitsWith2(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	t.Setenv("DORAFLOW_DATA_DIR", dir)
	t.Setenv("DORAFLOW_CLICKHOUSE_DSN", testenv.ClickHouse(t))
	t.Setenv("DORAFLOW_LISTEN", "127.0.0.1:0")
	b, err := bus.Open(ctx, bus.Options{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = bus.InitLayout(ctx, b.JS, bus.Layout{Partitions: 8})
	b.Close()
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("DORAFLOW_PARTITIONS", "4")
	for _, args := range [][]string{{"serve"}, {"serve", "--role", "all"}, {"replay"}, {"demo", "--days", "1"}} {
		_, err := run(t, args...)
		if code := exitCode(err); code != 2 {
			t.Errorf("%v: exit %d (%v), want 2", args, code, err)
			continue
		}
		if !strings.Contains(err.Error(), "set up with 8 partitions") || !strings.Contains(err.Error(), "is 4") {
			t.Errorf("%v: %v", args, err)
		}
	}
}
