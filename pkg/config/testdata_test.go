package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Every file in testdata/: good.*.yaml load and validate; bad.*.yaml fail
// with exactly the message below, which names the setting and the fix.
func TestTestdata(t *testing.T) {
	bad := map[string]string{
		"bad.unknown-key.yaml": "config testdata/bad.unknown-key.yaml: yaml: unmarshal errors:\n  line 1: field teem not found in type config.Config",
		"bad.teams.yaml": `teams[0].name: empty
teams[1].name: "unassigned" is reserved for what no team claims
teams[2] (a): bad glob "acme/[x"
teams[3].name: "a" appears twice`,
		"bad.secret-space.yaml": "github.webhook_secret (DORAFLOW_GITHUB_WEBHOOK_SECRET): only white space; a secret that short is guessed at once: give a real one, or leave it empty to switch the feature off",
		"bad.nats-auth.yaml": `nats.user and nats.password go together: give both, or neither
nats: user/password, token are set; authenticate one way
nats: credentials or TLS are set, but nats_url is empty: the embedded server is in-process and takes neither; set nats_url to the external server`,
		"bad.retention.yaml": "processor.retention: keep 0s, margin 72h0m0s; keep must be positive and margin at least incident_lookback (96h0m0s), e.g. keep 400 days (9600h), margin 30 days (720h)",
		"bad.stream-age.yaml": `nats.events.max_age: 720h0m0s is shorter than processor.retention keep + margin (10320h0m0s): facts in between could no longer be recomputed (replay, a processor starting afresh) and would be retracted; raise it, or leave it 0 to derive it
nats.dead_letter.max_age: 1h0m0s; must be at least 24h, the window in which redeliveries are recognised`,
		"bad.clickhouse-dsn.yaml": `clickhouse_dsn "clickhouse://doraflow:xxxxx@clickhouse:9440/doraflow?secur=true": unknown parameter "secur"; known: secure, ca_file, cert_file, key_file, server_name`,
		"bad.limits.yaml": `collector.max_inflight_bytes: 999 is less than collector.max_body_bytes (1000), so a body of the largest size allowed could never be read; raise it (default 268435456, 256 MiB)
collector.max_inflight_publishes: 0; must be at least 1 (default 256)`,
	}
	files, err := filepath.Glob(filepath.Join("testdata", "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no testdata: %v", err)
	}
	for _, path := range files {
		name := filepath.Base(path)
		t.Run(name, func(t *testing.T) {
			cfg, err := Load(path, func(string) string { return "" })
			if err == nil {
				err = cfg.Validate()
			}
			switch {
			case strings.HasPrefix(name, "good."):
				if err != nil {
					t.Errorf("%v", err)
				}
			case strings.HasPrefix(name, "bad."):
				want, ok := bad[name]
				if !ok {
					t.Fatalf("no expected message for %s: add it to the table", name)
				}
				if err == nil || err.Error() != want {
					t.Errorf("got\n%v\nwant\n%s", err, want)
				}
			default:
				t.Errorf("%s: name it good.*.yaml or bad.*.yaml", name)
			}
		})
	}
	for name := range bad {
		if _, err := os.Stat(filepath.Join("testdata", name)); err != nil {
			t.Errorf("the table names %s, which testdata lacks", name)
		}
	}
}
