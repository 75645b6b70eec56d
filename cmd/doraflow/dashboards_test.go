package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/doraflow/doraflow/internal/testenv"
)

// generate writes the layout the compose file relies on, the same bytes
// on every run, with the flags in the datasource and the provider's path
// absolute by default.
func TestDashboardsGenerate(t *testing.T) {
	dirs := []string{t.TempDir(), t.TempDir()}
	for _, dir := range dirs {
		out, err := run(t, "dashboards", "generate", "--out", dir, "--clickhouse-host", "clickhouse",
			"--clickhouse-port", "19000", "--clickhouse-user", "reader", "--clickhouse-database", "dora")
		if err != nil {
			t.Fatal(err)
		}
		if n := len(strings.Fields(out)); n != 6 {
			t.Errorf("printed %d paths:\n%s", n, out)
		}
	}
	var names []string
	err := filepath.WalkDir(dirs[0], func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(dirs[0], path)
		names = append(names, rel)
		a, _ := os.ReadFile(path)
		b, err := os.ReadFile(filepath.Join(dirs[1], rel))
		if err != nil || (!bytes.Equal(a, b) && !strings.HasSuffix(rel, "dashboards/doraflow.yaml")) {
			t.Errorf("%s differs between runs (%v)", rel, err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(names)
	want := []string{"dashboards/doraflow-overview.json", "dashboards/doraflow-pipeline.json", "dashboards/doraflow-team.json",
		"dashboards/doraflow-teams.json", "provisioning/dashboards/doraflow.yaml", "provisioning/datasources/doraflow.yaml"}
	if !slices.Equal(names, want) {
		t.Errorf("files %v, want %v", names, want)
	}
	var provider struct {
		Providers []struct {
			Type    string
			Options struct{ Path string }
		}
	}
	readYAML(t, filepath.Join(dirs[0], "provisioning/dashboards/doraflow.yaml"), &provider)
	if p := provider.Providers; len(p) != 1 || p[0].Type != "file" || p[0].Options.Path != filepath.Join(dirs[0], "dashboards") {
		t.Errorf("provider %+v", provider)
	}
	var ds struct {
		Datasources []struct {
			Type, UID string
			JSONData  map[string]any    `yaml:"jsonData"`
			Secure    map[string]string `yaml:"secureJsonData"`
		}
	}
	readYAML(t, filepath.Join(dirs[0], "provisioning/datasources/doraflow.yaml"), &ds)
	want2 := map[string]any{"host": "clickhouse", "port": 19000, "username": "reader", "defaultDatabase": "dora", "protocol": "native", "secure": false}
	if d := ds.Datasources; len(d) != 1 || d[0].Type != "grafana-clickhouse-datasource" || d[0].UID != "doraflow-clickhouse" ||
		!equalMaps(d[0].JSONData, want2) || d[0].Secure["password"] != "$DORAFLOW_CLICKHOUSE_READER_PASSWORD" {
		t.Errorf("datasource %+v", ds)
	}
	overview, _ := os.ReadFile(filepath.Join(dirs[0], "dashboards/doraflow-overview.json"))
	if !strings.Contains(string(overview), "FROM dora.repo_days") {
		t.Error("the dashboards' SQL does not read --clickhouse-database")
	}

	out, err := run(t, "dashboards", "generate", "--out", t.TempDir(), "--dashboards-path", "/var/lib/grafana/dashboards")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(strings.Fields(out)[4])
	if !strings.Contains(string(b), "path: /var/lib/grafana/dashboards\n") {
		t.Errorf("--dashboards-path not in the provider:\n%s", b)
	}
}

// Both subcommands refuse missing flags and token as a configuration
// error (exit 2), before anything is written or sent.
func TestDashboardsBadFlags(t *testing.T) {
	t.Setenv("DORAFLOW_GRAFANA_TOKEN", "")
	for _, args := range [][]string{
		{"dashboards", "generate"},
		{"dashboards", "apply", "--grafana-url", "http://127.0.0.1:1"},
		{"dashboards", "apply"},
	} {
		_, err := run(t, args...)
		if err == nil || !errors.Is(err, errConfig) || exitCode(err) != 2 {
			t.Errorf("%v: %v", args, err)
		}
	}
}

func readYAML(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

func equalMaps(a, b map[string]any) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range b {
		if a[k] != v {
			return false
		}
	}
	return true
}

// The processors record what they take per source: after the demo, the
// pipeline counts hold GitHub's processed events, no more than were
// published, with a lag that is not negative — what the pipeline-health
// dashboard reads.
func TestDemoRecordsPipelineCounts(t *testing.T) {
	dsn := testenv.ClickHouse(t)
	t.Setenv("DORAFLOW_CLICKHOUSE_DSN", dsn)
	t.Setenv("DORAFLOW_DATA_DIR", t.TempDir())
	t.Setenv("DORAFLOW_LISTEN", "127.0.0.1:0")
	if _, err := run(t, "demo", "--days", "3"); err != nil {
		t.Fatal(err)
	}
	conn, db := testenv.Conn(t, dsn)
	var events uint64
	var lag float64
	var sources []string
	row := conn.QueryRow(context.Background(), "SELECT sum(events), sum(lag_seconds_sum), groupUniqArray(source) FROM "+db+
		".pipeline_minutes WHERE outcome = 'processed'")
	if err := row.Scan(&events, &lag, &sources); err != nil {
		t.Fatal(err)
	}
	if events == 0 || lag < 0 || lag/float64(events) > 60 || !slices.Equal(sources, []string{"github"}) {
		t.Errorf("processed %d events from %v with %.1f s of lag", events, sources, lag)
	}
}
