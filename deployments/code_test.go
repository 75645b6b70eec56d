// Package deployments checks the install manifests (Dockerfile, compose,
// Helm chart) against the code, statically: no Docker engine or cluster runs
// on the machines that test doraflow. It is its own Go module so that
// compose-go, Helm and the Kubernetes types never enter the product's go.mod.
package deployments

import (
	"net"
	"slices"
	"strings"
	"testing"

	"github.com/doraflow/doraflow/internal/serve"
	"github.com/doraflow/doraflow/pkg/config"
)

// plainSettings are the variables doraflow reads that hold no secret.
// Every other name config.EnvNames lists is taken for a secret: manifests
// must pass it from a secret store (.env, a Kubernetes Secret), never as a
// literal, so a new variable is a secret until it is named here.
var plainSettings = map[string]bool{
	config.FileEnv:                true,
	"DORAFLOW_LISTEN":             true,
	"DORAFLOW_NATS_URL":           true,
	"DORAFLOW_NATS_REPLICAS":      true,
	"DORAFLOW_DATA_DIR":           true,
	"DORAFLOW_PARTITIONS":         true,
	"DORAFLOW_MAX_INFLIGHT_BYTES": true,
	"DORAFLOW_CLICKHOUSE_CLUSTER": true,
	"DORAFLOW_ADMIN_LISTEN":       true,
	// NATS credentials and TLS by file: the files are secrets, their paths
	// are not.
	"DORAFLOW_NATS_USER":                  true,
	"DORAFLOW_NATS_NKEY_SEED_FILE":        true,
	"DORAFLOW_NATS_CREDS_FILE":            true,
	"DORAFLOW_NATS_TLS_CA_FILE":           true,
	"DORAFLOW_NATS_TLS_CERT_FILE":         true,
	"DORAFLOW_NATS_TLS_KEY_FILE":          true,
	"DORAFLOW_NATS_TLS_SERVER_NAME":       true,
	"DORAFLOW_MAX_INFLIGHT_PUBLISHES":     true,
	"DORAFLOW_CLICKHOUSE_TLS_CA_FILE":     true,
	"DORAFLOW_CLICKHOUSE_TLS_SERVER_NAME": true,
}

// alternativeSecrets are secrets the manifests need not pass, since what
// they hold reaches doraflow another way: a secret's NAME_FILE (a file
// mounted instead of a variable set), the ClickHouse password, which the
// DSN the manifests pass can carry, and the NATS password and token, which
// the NATS URL can carry.
func alternativeSecret(name string) bool {
	switch name {
	case "DORAFLOW_CLICKHOUSE_PASSWORD", "DORAFLOW_NATS_PASSWORD", "DORAFLOW_NATS_TOKEN":
		return true
	}
	return strings.HasSuffix(name, config.FileSuffix)
}

// envNames is every variable a manifest may set on a doraflow container:
// those the code reads.
func envNames() map[string]bool {
	names := map[string]bool{}
	for _, n := range config.EnvNames() {
		names[n] = true
	}
	return names
}

// secretNames are the variables that hold secrets, from the code's list.
func secretNames() []string {
	var names []string
	for _, n := range config.EnvNames() {
		if !plainSettings[n] {
			names = append(names, n)
		}
	}
	return names
}

// requiredSecrets are the secrets every manifest must let a team set.
func requiredSecrets() []string {
	var names []string
	for _, n := range secretNames() {
		if !alternativeSecret(n) {
			names = append(names, n)
		}
	}
	return names
}

// collectorSecrets are the variables that switch a webhook source on, as
// the collector's routes name them; the collectors need these, the rest of
// the secrets are the processors'.
func collectorSecrets(t *testing.T) []string {
	t.Helper()
	_, off, err := serve.Sources(config.Default())
	if err != nil {
		t.Fatalf("serve.Sources: %v", err)
	}
	var names []string
	for _, d := range off {
		if !slices.Contains(names, d.Setting) {
			names = append(names, d.Setting)
		}
	}
	return names
}

// webhookPaths are the paths the collectors serve webhooks on.
func webhookPaths(t *testing.T) []string {
	t.Helper()
	_, off, err := serve.Sources(config.Default())
	if err != nil {
		t.Fatalf("serve.Sources: %v", err)
	}
	var paths []string
	for _, d := range off {
		paths = append(paths, d.Path)
	}
	return paths
}

// listenPort is the port doraflow listens on under the given
// DORAFLOW_LISTEN value (empty: the default).
func listenPort(t *testing.T, listen string) string {
	t.Helper()
	if listen == "" {
		listen = config.Default().Listen
	}
	_, port, err := net.SplitHostPort(listen)
	if err != nil {
		t.Fatalf("DORAFLOW_LISTEN %q: %v", listen, err)
	}
	return port
}
