package main

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/doraflow/doraflow/internal/githubtest"
	"github.com/doraflow/doraflow/internal/testenv"
)

// secretMarkers are a value for every secret doraflow reads, each unlike
// anything else in a log line, so that finding one in a log or on /metrics
// can only mean it leaked.
func secretMarkers() map[string]string {
	return map[string]string{
		"DORAFLOW_GITHUB_WEBHOOK_SECRET":    "marker-gh-hook-7f3a",
		"DORAFLOW_GITHUB_TOKEN":             "marker-gh-token-19c4",
		"DORAFLOW_GITLAB_WEBHOOK_TOKEN":     "marker-gl-hook-2b8e",
		"DORAFLOW_GITLAB_TOKEN":             "marker-gl-token-66d1",
		"DORAFLOW_PAGERDUTY_WEBHOOK_SECRET": "marker-pd-hook-0a5f",
		"DORAFLOW_OPSGENIE_SECRET":          "marker-og-secret-c3e7",
		"DORAFLOW_API_TOKEN":                "marker-api-token-8d2c",
		"DORAFLOW_CDEVENTS_TOKEN":           "marker-cde-token-4e9b",
	}
}

// secretEnv is the environment of a serve with every secret set to its
// marker, half of them through a NAME_FILE, as a Kubernetes secret would
// be mounted.
func secretEnv(t *testing.T, markers map[string]string) []string {
	t.Helper()
	dir := t.TempDir()
	var env []string
	i := 0
	for name, value := range markers {
		i++
		if i%2 == 0 {
			env = append(env, name+"="+value)
			continue
		}
		path := filepath.Join(dir, strings.ToLower(name))
		if err := os.WriteFile(path, []byte(value+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		env = append(env, name+"_FILE="+path)
	}
	return env
}

// requireNoSecret fails the test for each marker found in text.
func requireNoSecret(t *testing.T, what, text string, markers map[string]string) {
	t.Helper()
	for name, value := range markers {
		if strings.Contains(text, value) {
			t.Errorf("%s holds the value of %s:\n%s", what, name, text)
		}
	}
}

// No secret reaches a log line, an error or /metrics: `serve` runs with
// every secret set (the ClickHouse password in its DSN), is sent requests
// with wrong credentials for every source and a good one, and is asked for
// its probes and metrics.
func TestServeLogsNoSecret(t *testing.T) {
	markers := secretMarkers()
	markers["DORAFLOW_CLICKHOUSE_DSN (password)"] = testenv.Password
	dsn := testenv.AsUser(testenv.ClickHouse(t), testenv.PasswordUser, testenv.Password)
	env := append(secretEnv(t, markers), "DORAFLOW_CLICKHOUSE_DSN="+dsn)
	proc := startServe(t, "all", env...)
	defer proc.stop()
	base := "http://" + proc.addr

	post := func(path string, header http.Header, body string) int {
		req, err := http.NewRequest(http.MethodPost, base+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header = header
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		answer, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		requireNoSecret(t, "the answer to "+path, string(answer), markers)
		return resp.StatusCode
	}
	wrong := map[string]http.Header{
		"/webhooks/github":    {"X-Github-Event": {"ping"}, "X-Hub-Signature-256": {"sha256=00"}},
		"/webhooks/gitlab":    {"X-Gitlab-Event": {"Push Hook"}, "X-Gitlab-Token": {"wrong"}},
		"/webhooks/pagerduty": {"X-Pagerduty-Signature": {"v1=00"}},
		"/webhooks/opsgenie":  {"X-Doraflow-Token": {"wrong"}},
		"/webhooks/cdevents":  {"Authorization": {"Bearer wrong"}},
		"/api/v1/deployments": {"Authorization": {"Bearer wrong"}},
		"/api/v1/incidents":   {"Authorization": {"Bearer wrong"}},
	}
	for path, h := range wrong {
		h.Set("Content-Type", "application/json")
		if code := post(path, h, `{}`); code != http.StatusUnauthorized {
			t.Errorf("%s with a wrong credential: %d, want 401", path, code)
		}
	}
	ping := githubtest.Delivery{Event: "ping", ID: "secrets-ping", Body: []byte(`{"zen": "Keep it logically awesome."}`)}
	resp, err := http.DefaultClient.Do(githubtest.Request(base+"/webhooks/github", markers["DORAFLOW_GITHUB_WEBHOOK_SECRET"], ping))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("a ping signed with the secret from its file: %d, want 200", resp.StatusCode)
	}
	var admin bytes.Buffer
	for _, path := range []string{"/metrics", "/readyz", "/healthz"} {
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(&admin, resp.Body)
		resp.Body.Close()
	}
	if !strings.Contains(admin.String(), "doraflow_webhook_requests_total") {
		t.Fatalf("/metrics lacks the request counter:\n%s", admin.String())
	}
	proc.stop()
	requireNoSecret(t, "/metrics, /readyz and /healthz", admin.String(), markers)
	log := proc.logText()
	if !strings.Contains(log, "webhook refused") || !strings.Contains(log, "doraflow serving") {
		t.Fatalf("the log lacks what the test made serve say:\n%s", log)
	}
	requireNoSecret(t, "serve's log", log, markers)
}

// `serve --role all` whose ClickHouse refuses its password starts anyway
// (it exited with status 1 in 0.09 s), accepts webhooks, and retries; its
// log and /readyz say why, and none of it holds the password.
func TestServeStartsWhenClickHouseRefuses(t *testing.T) {
	markers := secretMarkers()
	const wrong = "marker-ch-wrong-password-1e2f"
	markers["DORAFLOW_CLICKHOUSE_PASSWORD"] = wrong
	env := append(secretEnv(t, markers), "DORAFLOW_CLICKHOUSE_DSN="+testenv.AsUser(testenv.ClickHouse(t), testenv.PasswordUser, "x"))
	proc := startServe(t, "all", env...)
	defer proc.stop()
	base := "http://" + proc.addr
	ping := githubtest.Delivery{Event: "ping", ID: "refused-ping", Body: []byte(`{"zen": "Half measures are as bad as nothing at all."}`)}
	resp, err := http.DefaultClient.Do(githubtest.Request(base+"/webhooks/github", markers["DORAFLOW_GITHUB_WEBHOOK_SECRET"], ping))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("a webhook while ClickHouse refuses: %d, want 200", resp.StatusCode)
	}
	for deadline := time.Now().Add(15 * time.Second); !strings.Contains(proc.logText(), "clickhouse still not reachable"); time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no retry logged within 15s:\n%s", proc.logText())
		}
	}
	resp, err = http.Get(base + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	ready, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(ready), "clickhouse: not reachable") {
		t.Errorf("/readyz: %d %q", resp.StatusCode, ready)
	}
	proc.stop()
	var exit *exec.ExitError
	if proc.err != nil && !errors.As(proc.err, &exit) {
		t.Errorf("serve ended with %v", proc.err)
	}
	requireNoSecret(t, "/readyz", string(ready), markers)
	requireNoSecret(t, "serve's log", proc.logText(), markers)
}

// natsWithPassword is an external JetStream server that takes one user.
func natsWithPassword(t *testing.T, user, password string) string {
	t.Helper()
	s, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(),
		NoLog: true, NoSigs: true, Username: user, Password: password})
	if err != nil {
		t.Fatal(err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats not ready")
	}
	t.Cleanup(s.Shutdown)
	return s.ClientURL()
}

// A collector authenticates to an external NATS with the password from its
// file; with a wrong one it exits at once with status 1, saying the server
// refused it, and neither log holds the password.
func TestServeNATSPassword(t *testing.T) {
	const right, wrong = "marker-nats-pw-a41c", "marker-nats-wrong-pw-77d0"
	url := natsWithPassword(t, "doraflow", right)
	dir := t.TempDir()
	file := func(name, value string) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(value+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	markers := map[string]string{"right password": right, "wrong password": wrong}
	proc := startServe(t, "collector", "DORAFLOW_NATS_URL="+url, "DORAFLOW_NATS_USER=doraflow",
		"DORAFLOW_NATS_PASSWORD_FILE="+file("right", right), "DORAFLOW_GITHUB_WEBHOOK_SECRET=s")
	resp, err := http.Get("http://" + proc.addr + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("/readyz of a collector with the right password: %d", resp.StatusCode)
	}
	proc.stop()
	requireNoSecret(t, "serve's log", proc.logText(), markers)

	cmd := exec.Command(os.Args[0], "serve", "--role", "collector")
	cmd.Env = append(os.Environ(), beMain+"=1", "DORAFLOW_LISTEN=127.0.0.1:0", "DORAFLOW_DATA_DIR="+t.TempDir(),
		"DORAFLOW_NATS_URL="+url, "DORAFLOW_NATS_USER=doraflow", "DORAFLOW_NATS_PASSWORD_FILE="+file("wrong", wrong))
	begun := time.Now()
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 || !strings.Contains(string(out), "Authorization Violation") {
		t.Errorf("serve with a wrong NATS password: %v, want exit status 1 saying the server refused it:\n%s", err, out)
	}
	if took := time.Since(begun); took > 10*time.Second {
		t.Errorf("the refusal took %s", took)
	}
	requireNoSecret(t, "serve's output", string(out), markers)
}
