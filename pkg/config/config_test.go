package config

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestLoadAndValidate(t *testing.T) {
	cases := []struct {
		name string
		yaml string
		env  map[string]string
		errs []string // each must appear in the error; none: valid
	}{
		{name: "empty file keeps the defaults", yaml: ""},
		{name: "the README example", yaml: `
teams:
  - name: payments
    repos: ["acme/payments-*", "acme/billing"]
    services: ["payments-api"]
environments:
  production: ["production", "prod"]
`},
		{name: "unknown key", yaml: "teem: []\n", errs: []string{"field teem not found"}},
		{name: "every problem at once", yaml: `
teams:
  - name: ""
  - name: unassigned
  - name: a
    repos: ["acme/[x"]
  - name: a
environments:
  production: []
incident_lookback: -1h
processor:
  partitions: 0
`, errs: []string{"teams[0].name: empty", `teams[1].name: "unassigned" is reserved`, `bad glob "acme/[x"`,
			`teams[3].name: "a" appears twice`, "environments.production: empty", "incident_lookback: -1h0m0s",
			"processor.partitions: 0"}},
		{name: "environment overrides the file", yaml: "listen: ':1'\n",
			env:  map[string]string{"DORAFLOW_LISTEN": ":2", "DORAFLOW_CLICKHOUSE_DSN": "http://x"},
			errs: []string{`clickhouse_dsn "http://x": want clickhouse://host:port/database`}},
		{name: "replicas in the DSN", env: map[string]string{"DORAFLOW_CLICKHOUSE_DSN": "clickhouse://ch-1:9000,ch-2:9000/doraflow"}},
		{name: "a replica without a port", env: map[string]string{"DORAFLOW_CLICKHOUSE_DSN": "clickhouse://ch-1,ch-2:9000/doraflow"},
			errs: []string{`server "ch-1": want host:port`}},
		{name: "bad partitions variable", env: map[string]string{"DORAFLOW_PARTITIONS": "many"}, errs: []string{"DORAFLOW_PARTITIONS"}},
		{name: "in-flight budget below the body limit", yaml: "collector:\n  max_body_bytes: 1000\n  max_inflight_bytes: 999\n",
			errs: []string{"collector.max_inflight_bytes: 999 is less than collector.max_body_bytes (1000)"}},
		{name: "in-flight budget from the environment", yaml: "collector:\n  max_body_bytes: 1000\n",
			env: map[string]string{"DORAFLOW_MAX_INFLIGHT_BYTES": "0"}, errs: []string{"collector.max_inflight_bytes: 0"}},
		{name: "bad in-flight budget variable", env: map[string]string{"DORAFLOW_MAX_INFLIGHT_BYTES": "1GB"}, errs: []string{"DORAFLOW_MAX_INFLIGHT_BYTES"}},
		{name: "in-flight budget equal to the body limit", yaml: "collector:\n  max_body_bytes: 1000\n  max_inflight_bytes: 1000\n"},
		{name: "replicas on a cluster", yaml: "nats_url: nats://a:4222\nnats:\n  replicas: 3\n"},
		{name: "replicas from the environment", env: map[string]string{"DORAFLOW_NATS_URL": "nats://a:4222", "DORAFLOW_NATS_REPLICAS": "3"}},
		{name: "replicas on the embedded server", env: map[string]string{"DORAFLOW_NATS_REPLICAS": "3"},
			errs: []string{"nats.replicas: 3, but nats_url is empty"}},
		{name: "too many replicas", yaml: "nats_url: nats://a:4222\nnats:\n  replicas: 7\n", errs: []string{"nats.replicas: 7; must be between 1 and 5"}},
		{name: "stream limits", yaml: "nats:\n  raw:\n    max_age: 12000h\n    max_bytes: 1000000000\n  dead_letter:\n    max_age: 240h\n"},
		{name: "event stream shorter than retention", yaml: "nats:\n  events:\n    max_age: 720h\n",
			errs: []string{"nats.events.max_age: 720h0m0s is shorter than processor.retention keep + margin (10320h0m0s)"}},
		{name: "stream age under the duplicate window", yaml: "nats:\n  dead_letter:\n    max_age: 1h\n", errs: []string{"nats.dead_letter.max_age: 1h0m0s; must be at least 24h"}},
		{name: "negative stream bytes", yaml: "nats:\n  raw:\n    max_bytes: -1\n", errs: []string{"nats.raw: max_age 0s, max_bytes -1"}},
		{name: "clickhouse cluster", yaml: "clickhouse:\n  cluster: main_2\n"},
		{name: "bad clickhouse cluster", env: map[string]string{"DORAFLOW_CLICKHOUSE_CLUSTER": "main; DROP"}, errs: []string{`clickhouse.cluster: "main; DROP"`}},
		{name: "bad replicas variable", env: map[string]string{"DORAFLOW_NATS_REPLICAS": "three"}, errs: []string{"DORAFLOW_NATS_REPLICAS"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "doraflow.yaml")
			if err := os.WriteFile(path, []byte(tc.yaml), 0o600); err != nil {
				t.Fatal(err)
			}
			cfg, err := Load(path, func(k string) string { return tc.env[k] })
			if err == nil {
				err = cfg.Validate()
			}
			if len(tc.errs) == 0 {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("no error")
			}
			for _, want := range tc.errs {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error lacks %q:\n%v", want, err)
				}
			}
		})
	}
}

func TestTeamMatching(t *testing.T) {
	cfg := Default()
	cfg.Teams = []Team{
		{Name: "payments", Repos: []string{"acme/payments-*", "acme/billing"}, Services: []string{"payments-api"}},
		{Name: "platform", Repos: []string{"acme/**"}},
	}
	cases := []struct{ kind, name, team string }{
		{"repo", "acme/payments-api", "payments"},
		{"repo", "acme/billing", "payments"},
		{"repo", "acme/infra", "platform"}, // first match wins, in file order
		{"repo", "other/x", Unassigned},
		{"service", "payments-api", "payments"},
		{"service", "acme/billing", "payments"}, // an issue-incident's service is its repo
		{"service", "search", Unassigned},
	}
	for _, tc := range cases {
		got := cfg.TeamOfRepo(tc.name)
		if tc.kind == "service" {
			got = cfg.TeamOfService(tc.name)
		}
		if got != tc.team {
			t.Errorf("%s %s: team %q, want %q", tc.kind, tc.name, got, tc.team)
		}
	}
	if !cfg.IsProduction("PROD") || cfg.IsProduction("staging") {
		t.Error("production environments are matched case-insensitively")
	}
}

// Unset max ages follow the retention: the deliveries of every fact that is
// still recomputed stay on the bus.
func TestStreamLimitsDerived(t *testing.T) {
	cfg := Default()
	cfg.Processor.Retention.Keep = 100 * 24 * time.Hour
	cfg.NATS.Raw.MaxAge = 5000 * time.Hour
	raw, events, deadLetter := cfg.StreamLimits()
	if want := 130 * 24 * time.Hour; raw.MaxAge != 5000*time.Hour || events.MaxAge != want || deadLetter.MaxAge != 90*24*time.Hour {
		t.Fatalf("raw %s, events %s, dead letters %s; want 5000h, %s, 2160h", raw.MaxAge, events.MaxAge, deadLetter.MaxAge, want)
	}
}

// TestEnvNames checks that EnvNames lists exactly what Load reads: each name
// changes the configuration, and a name it does not list changes nothing.
func TestEnvNames(t *testing.T) {
	names := EnvNames()
	seen := map[string]bool{}
	for _, name := range names {
		if !strings.HasPrefix(name, "DORAFLOW_") || seen[name] {
			t.Errorf("EnvNames: %q is a duplicate or lacks the DORAFLOW_ prefix", name)
		}
		seen[name] = true
	}
	if !seen[FileEnv] {
		t.Errorf("EnvNames lacks %s", FileEnv)
	}
	// Every variable Load asks for is listed: none is read outside the table.
	if _, err := Load("", func(k string) string {
		if !seen[k] {
			t.Errorf("Load reads %s, which EnvNames does not list", k)
		}
		return ""
	}); err != nil {
		t.Fatal(err)
	}
	type envCase struct {
		name    string
		changes bool
	}
	cases := []envCase{{name: "DORAFLOW_NOT_A_SETTING", changes: false}}
	for _, name := range names {
		// Load does not read the file's name: the command line does.
		if name != FileEnv {
			cases = append(cases, envCase{name: name, changes: true})
		}
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			// 7 parses as every kind of value and is no default.
			cfg, err := Load("", func(k string) string {
				if k == tc.name {
					return "7"
				}
				return ""
			})
			if err != nil {
				t.Fatal(err)
			}
			if changed := !reflect.DeepEqual(cfg, Default()); changed != tc.changes {
				t.Errorf("%s=7 changed the configuration: %v, want %v", tc.name, changed, tc.changes)
			}
		})
	}
}
