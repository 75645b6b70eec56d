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
		{name: "nats user and password", env: map[string]string{"DORAFLOW_NATS_URL": "nats://a:4222", "DORAFLOW_NATS_USER": "u", "DORAFLOW_NATS_PASSWORD": "p"}},
		{name: "nats user without password", env: map[string]string{"DORAFLOW_NATS_URL": "nats://a:4222", "DORAFLOW_NATS_USER": "u"},
			errs: []string{"nats.user and nats.password go together"}},
		{name: "two ways to authenticate", env: map[string]string{"DORAFLOW_NATS_URL": "nats://a:4222", "DORAFLOW_NATS_USER": "u", "DORAFLOW_NATS_PASSWORD": "p", "DORAFLOW_NATS_TOKEN": "t"},
			errs: []string{"nats: user/password, token are set; authenticate one way"}},
		{name: "credentials for the embedded server", env: map[string]string{"DORAFLOW_NATS_TOKEN": "t"},
			errs: []string{"nats: credentials or TLS are set, but nats_url is empty"}},
		{name: "missing creds file", env: map[string]string{"DORAFLOW_NATS_URL": "nats://a:4222", "DORAFLOW_NATS_CREDS_FILE": "/nonexistent/x.creds"},
			errs: []string{"nats.creds_file: stat /nonexistent/x.creds: no such file or directory"}},
		{name: "TLS cert without key", yaml: "nats_url: tls://a:4222\nnats:\n  tls:\n    cert_file: /etc/hostname\n",
			errs: []string{"nats.tls: cert_file and key_file go together"}},
		{name: "clickhouse over TLS", env: map[string]string{"DORAFLOW_CLICKHOUSE_DSN": "clickhouse://ch:9440/dora?secure=true"}},
		{name: "unknown DSN parameter", env: map[string]string{"DORAFLOW_CLICKHOUSE_DSN": "clickhouse://ch:9440/dora?secur=true"},
			errs: []string{`clickhouse_dsn "clickhouse://ch:9440/dora?secur=true": unknown parameter "secur"; known: secure, ca_file, cert_file, key_file, server_name`}},
		{name: "bad secure", env: map[string]string{"DORAFLOW_CLICKHOUSE_DSN": "clickhouse://ch:9440/dora?secure=yes"},
			errs: []string{`secure="yes"; want true or false`}},
		{name: "clickhouse TLS CA missing", env: map[string]string{"DORAFLOW_CLICKHOUSE_TLS_CA_FILE": "/nonexistent/ca.pem"},
			errs: []string{"clickhouse.tls.ca_file: stat /nonexistent/ca.pem"}},
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
	seven := filepath.Join(t.TempDir(), "seven")
	if err := os.WriteFile(seven, []byte("7\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			// 7 parses as every kind of value and is no default; a
			// secret's file holds it.
			value := "7"
			if strings.HasSuffix(tc.name, FileSuffix) {
				value = seven
			}
			cfg, err := Load("", func(k string) string {
				if k == tc.name {
					return value
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

// Every secret can come from a file (NAME_FILE): what it holds, less one
// trailing line break, is the secret; a file that is missing or empty, or
// setting both NAME and NAME_FILE, is an error naming the variable and
// never holding the secret.
func TestSecretFiles(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	good := write("good", "s3cr3t-from-file\n")
	empty := write("empty", "")
	newline := write("newline", "\n")
	spaces := write("spaces", "   \n")
	chPassword := write("ch", "ch-pw\n")
	cases := []struct {
		name string
		env  map[string]string
		want func(Config) bool
		err  string
	}{
		{name: "from a file", env: map[string]string{"DORAFLOW_GITHUB_WEBHOOK_SECRET_FILE": good},
			want: func(c Config) bool { return c.GitHub.WebhookSecret == "s3cr3t-from-file" }},
		{name: "missing file", env: map[string]string{"DORAFLOW_API_TOKEN_FILE": filepath.Join(dir, "absent")},
			err: "config: DORAFLOW_API_TOKEN_FILE: open " + filepath.Join(dir, "absent") + ": no such file or directory"},
		{name: "empty file", env: map[string]string{"DORAFLOW_CDEVENTS_TOKEN_FILE": empty},
			err: "config: DORAFLOW_CDEVENTS_TOKEN_FILE: " + empty + " is empty; put the secret in it, or unset DORAFLOW_CDEVENTS_TOKEN_FILE"},
		{name: "a line break only", env: map[string]string{"DORAFLOW_OPSGENIE_SECRET_FILE": newline},
			err: "config: DORAFLOW_OPSGENIE_SECRET_FILE: " + newline + " is empty"},
		{name: "both", env: map[string]string{"DORAFLOW_GITLAB_TOKEN": "x", "DORAFLOW_GITLAB_TOKEN_FILE": good},
			err: "config: both DORAFLOW_GITLAB_TOKEN and DORAFLOW_GITLAB_TOKEN_FILE are set; set one"},
		{name: "white space from a file", env: map[string]string{"DORAFLOW_PAGERDUTY_WEBHOOK_SECRET_FILE": spaces},
			err: "pagerduty.webhook_secret (DORAFLOW_PAGERDUTY_WEBHOOK_SECRET): only white space"},
		{name: "one space", env: map[string]string{"DORAFLOW_GITHUB_WEBHOOK_SECRET": " "},
			err: "github.webhook_secret (DORAFLOW_GITHUB_WEBHOOK_SECRET): only white space"},
		{name: "clickhouse password into the DSN", env: map[string]string{"DORAFLOW_CLICKHOUSE_DSN": "clickhouse://reader@ch:9000/dora",
			"DORAFLOW_CLICKHOUSE_PASSWORD_FILE": chPassword},
			want: func(c Config) bool { return c.ClickHouseDSN == "clickhouse://reader:ch-pw@ch:9000/dora" }},
		{name: "clickhouse password, DSN without a user", env: map[string]string{"DORAFLOW_CLICKHOUSE_DSN": "clickhouse://ch:9000/dora",
			"DORAFLOW_CLICKHOUSE_PASSWORD": "p@ss"},
			want: func(c Config) bool { return c.ClickHouseDSN == "clickhouse://default:p%40ss@ch:9000/dora" }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := Load("", func(k string) string { return tc.env[k] })
			if err == nil {
				err = cfg.Validate()
			}
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("got %v, want an error with %q", err, tc.err)
				}
				if strings.Contains(err.Error(), "s3cr3t") {
					t.Errorf("the error holds the secret: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !tc.want(cfg) {
				t.Errorf("unexpected configuration: %+v", cfg)
			}
		})
	}
}

// A DSN's password never reaches an error or a log line.
func TestDSNErrorsHideThePassword(t *testing.T) {
	for _, dsn := range []string{"http://u:hunter2@ch:9000/x", "clickhouse://u:hunter2@ch:9000/bad-name", "clickhouse://u:hunter2@ch:9000/%zz"} {
		_, err := ParseClickHouseDSN(dsn)
		if err == nil || strings.Contains(err.Error(), "hunter2") {
			t.Errorf("%s: %v", dsn, err)
		}
		if got := Redacted(dsn); strings.Contains(got, "hunter2") {
			t.Errorf("Redacted(%s) = %s", dsn, got)
		}
	}
}

func TestGlobWarnings(t *testing.T) {
	cfg := Default()
	cfg.Teams = []Team{
		{Name: "payments", Repos: []string{"acme/pay-*", "pay-api"}, Services: []string{"payments-*"}},
		{Name: "infra", Repos: []string{"acme/infra", "**/terraform-*"}, Services: []string{"pagerduty-infra"}},
	}
	if got, want := cfg.Warnings(), []string{`team payments: repos glob "pay-api" matches no repository: repositories are owner/name (or group/project) paths; write e.g. "acme/pay-api"`}; !reflect.DeepEqual(got, want) {
		t.Errorf("Warnings: %q, want %q", got, want)
	}
	if got := cfg.UnmatchedGlobs(nil); len(got) != 0 {
		t.Errorf("with nothing seen: %q", got)
	}
	got := cfg.UnmatchedGlobs([]string{"repo:acme/pay-api", "repo:acme/infra", "service:payments-api", "service:acme/infra"})
	want := []string{
		`team infra: repos glob "**/terraform-*" matches none of the 2 repositories seen so far`,
		`team infra: services glob "pagerduty-infra" matches none of the 2 services seen so far`,
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("UnmatchedGlobs:\n%q\nwant\n%q", got, want)
	}
}

// clickhouse.tls goes into the DSN, where every command reads it.
func TestClickHouseTLSInTheDSN(t *testing.T) {
	cfg, err := Load("", func(k string) string {
		return map[string]string{"DORAFLOW_CLICKHOUSE_DSN": "clickhouse://u:p@ch:9440/dora", "DORAFLOW_CLICKHOUSE_TLS_CA_FILE": "/etc/ca.pem",
			"DORAFLOW_CLICKHOUSE_TLS_SERVER_NAME": "ch.internal"}[k]
	})
	if err != nil {
		t.Fatal(err)
	}
	d, err := ParseClickHouseDSN(cfg.ClickHouseDSN)
	if err != nil {
		t.Fatal(err)
	}
	if want := (TLS{Enabled: true, CAFile: "/etc/ca.pem", ServerName: "ch.internal"}); d.TLS == nil || *d.TLS != want || d.Password != "p" {
		t.Errorf("%s parses as %+v (TLS %+v)", cfg.ClickHouseDSN, d, d.TLS)
	}
}
