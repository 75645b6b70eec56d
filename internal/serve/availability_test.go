package serve_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/doraflow/doraflow/internal/githubtest"
	"github.com/doraflow/doraflow/internal/serve"
	"github.com/doraflow/doraflow/internal/testenv"
	"github.com/doraflow/doraflow/pkg/bus"
	"github.com/doraflow/doraflow/pkg/config"
)

// probe GETs url and returns the status and body.
func probe(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// proxiedClickHouse is a fresh database behind a proxy the test can cut.
func proxiedClickHouse(t *testing.T) (string, *testenv.Proxy) {
	t.Helper()
	d, err := config.ParseClickHouseDSN(testenv.ClickHouse(t))
	if err != nil {
		t.Fatal(err)
	}
	proxy := testenv.NewProxy(t, d.Addr)
	return fmt.Sprintf("clickhouse://%s/%s", proxy.Addr(), d.Database), proxy
}

// With ClickHouse down at start, `serve --role all` starts anyway and
// accepts webhooks; the processor retries with backoff, says so in the log
// and on /readyz (while /readyz/collector is ready), and once ClickHouse
// answers it processes what was accepted meanwhile.
func TestServeStartsWithClickHouseDown(t *testing.T) {
	dsn, proxy := proxiedClickHouse(t)
	proxy.Cut()
	cfg := testConfig(t, dsn)
	var log testenv.LogBuffer
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	begun := time.Now()
	srv, err := serve.Start(ctx, cfg, serve.RoleAll, slog.New(slog.NewTextHandler(&log, nil)))
	if err != nil {
		t.Fatalf("serve with ClickHouse down: %v", err)
	}
	defer stop(srv)
	t.Logf("started in %s with ClickHouse down", time.Since(begun).Round(time.Millisecond))
	deliveries := scenario()
	for _, d := range deliveries {
		post(t, srv, d) // 2xx: the bus took them
	}
	code, body := probe(t, "http://"+srv.Addr()+"/readyz")
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "clickhouse: not reachable") || strings.Contains(body, "bus:") {
		t.Errorf("/readyz with ClickHouse down: %d %q; want 503 naming clickhouse only", code, body)
	}
	if code, body := probe(t, "http://"+srv.Addr()+"/readyz/collector"); code != http.StatusOK {
		t.Errorf("/readyz/collector with ClickHouse down: %d %q; want 200: the collectors work", code, body)
	}
	// The first retry is a second after the start.
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(log.String(), "clickhouse still not reachable"); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no retry in the log after 10s:\n%s", log.String())
		}
	}
	if !strings.Contains(log.String(), "clickhouse not reachable at start: the processor retries with backoff") {
		t.Errorf("the log does not say the processor waits:\n%s", log.String())
	}

	proxy.Restore()
	assertReport(t, reportOf(t, srv, cfg), expected())
	if code, body := probe(t, "http://"+srv.Addr()+"/readyz"); code != http.StatusOK {
		t.Errorf("/readyz once ClickHouse is back and everything is processed: %d %q", code, body)
	}
	if !strings.Contains(log.String(), "clickhouse reachable: the processor starts") {
		t.Errorf("the log does not say the processor started:\n%s", log.String())
	}
}

// Each /readyz check has its own budget and its own reason: a bus that
// hangs is blamed alone (not ClickHouse, whose check shares no deadline
// with it), and a ClickHouse that is down is blamed alone.
func TestReadyzReasonsApart(t *testing.T) {
	natsSrv := externalNATS(t)
	natsProxy := testenv.NewProxy(t, strings.TrimPrefix(natsSrv.ClientURL(), "nats://"))
	dsn, chProxy := proxiedClickHouse(t)
	cfg := testConfig(t, dsn)
	cfg.NATSURL = "nats://" + natsProxy.Addr()
	srv := start(t, cfg)
	defer stop(srv)
	url := "http://" + srv.Addr() + "/readyz"
	if code, body := probe(t, url); code != http.StatusOK {
		t.Fatalf("/readyz: %d %q", code, body)
	}

	chProxy.Cut()
	code, body := probe(t, url)
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "clickhouse:") || strings.Contains(body, "bus:") {
		t.Errorf("/readyz with ClickHouse down: %d %q; want 503 naming clickhouse only", code, body)
	}
	if code, body := probe(t, "http://"+srv.Addr()+"/readyz/collector"); code != http.StatusOK {
		t.Errorf("/readyz/collector with ClickHouse down: %d %q", code, body)
	}
	chProxy.Restore()

	natsProxy.Stall()
	begun := time.Now()
	code, body = probe(t, url)
	took := time.Since(begun)
	natsProxy.Resume()
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "bus:") || strings.Contains(body, "clickhouse:") {
		t.Errorf("/readyz with the bus hanging: %d %q; want 503 naming the bus only", code, body)
	}
	t.Logf("/readyz with the bus hanging answered in %s", took.Round(time.Millisecond))
}

// A collector whose JetStream has no room left is not ready, and says
// why; deliveries get 503 with Retry-After at once.
func TestNotReadyWhenJetStreamIsFull(t *testing.T) {
	natsSrv, err := bus.Open(context.Background(), bus.Options{DataDir: t.TempDir(), Port: -1, MaxStore: 2 << 20})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(natsSrv.Close)
	cfg := testConfig(t, "clickhouse://127.0.0.1:1/unused")
	cfg.NATSURL = natsSrv.ClientURL()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	srv, err := serve.Start(ctx, cfg, serve.RoleCollector, quiet())
	if err != nil {
		t.Fatal(err)
	}
	defer stop(srv)
	url := "http://" + srv.Addr() + "/readyz"
	if code, body := probe(t, url); code != http.StatusOK {
		t.Fatalf("/readyz before: %d %q", code, body)
	}
	pad := strings.Repeat("x", 256<<10)
	full := false
	for i := 0; i < 64 && !full; i++ {
		d := githubtest.Delivery{Event: "ping", ID: fmt.Sprintf("full-%d", i), Body: []byte(`{"zen": "` + pad + `"}`)}
		resp, err := http.DefaultClient.Do(githubtest.Request("http://"+srv.Addr()+"/webhooks/github", secret, d))
		if err != nil {
			t.Fatal(err)
		}
		answer, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		switch resp.StatusCode {
		case http.StatusOK:
		case http.StatusServiceUnavailable:
			full = true
			if resp.Header.Get("Retry-After") == "" || !strings.Contains(string(answer), "at its limits") {
				t.Errorf("503 without Retry-After or reason: %v %s", resp.Header, answer)
			}
		default:
			t.Fatalf("delivery %d: %d %s", i, resp.StatusCode, answer)
		}
	}
	if !full {
		t.Fatal("16 MB into a 2 MB JetStream and never refused")
	}
	code, body := probe(t, url)
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "bus:") || !strings.Contains(body, "storage") {
		t.Errorf("/readyz with JetStream full: %d %q; want 503 saying the bus storage is full", code, body)
	}
	t.Logf("/readyz with JetStream full: %q", body)
}

// The admin endpoints can listen apart from the webhooks: then the webhook
// address serves no metrics and the admin address no webhooks.
func TestAdminListen(t *testing.T) {
	cfg := testConfig(t, testenv.ClickHouse(t))
	cfg.AdminListen = "127.0.0.1:0"
	srv := start(t, cfg)
	defer stop(srv)
	if srv.AdminAddr() == srv.Addr() {
		t.Fatalf("admin on %s, the webhook address", srv.AdminAddr())
	}
	post(t, srv, githubtest.Delivery{Event: "ping", ID: "admin-ping", Body: []byte(`{"zen": "x"}`)})
	for _, path := range []string{"/metrics", "/healthz", "/readyz"} {
		if code, _ := probe(t, "http://"+srv.Addr()+path); code != http.StatusNotFound {
			t.Errorf("%s on the webhook address: %d, want 404", path, code)
		}
		if code, body := probe(t, "http://"+srv.AdminAddr()+path); code != http.StatusOK {
			t.Errorf("%s on the admin address: %d %q", path, code, body)
		}
	}
	resp, err := http.DefaultClient.Do(githubtest.Request("http://"+srv.AdminAddr()+"/webhooks/github", secret,
		githubtest.Delivery{Event: "ping", ID: "admin-ping-2", Body: []byte(`{}`)}))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("a webhook on the admin address: %d, want 404", resp.StatusCode)
	}
}

// A JetStream account at its storage limit makes every role not ready,
// saying so from the account's figures: a processor too, which publishes
// nothing a refusal could tell it by.
func TestNotReadyWhenTheAccountIsFull(t *testing.T) {
	dir := t.TempDir()
	conf := filepath.Join(dir, "nats.conf")
	if err := os.WriteFile(conf, []byte(fmt.Sprintf(`listen: "127.0.0.1:-1"
jetstream { store_dir: %q }
accounts {
  DORA { jetstream { max_file: 4MB, max_mem: 1MB }, users: [{user: doraflow, password: pw}] }
}
`, filepath.Join(dir, "js"))), 0o600); err != nil {
		t.Fatal(err)
	}
	opts, err := server.ProcessConfigFile(conf)
	if err != nil {
		t.Fatal(err)
	}
	opts.NoLog, opts.NoSigs = true, true
	ns, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats not ready")
	}
	t.Cleanup(ns.Shutdown)
	cfg := testConfig(t, testenv.ClickHouse(t))
	cfg.NATSURL = ns.ClientURL()
	cfg.NATS.User, cfg.NATS.Password = "doraflow", "pw"
	collector := startRole(t, cfg, serve.RoleCollector)
	defer stop(collector)
	proc := startRole(t, cfg, serve.RoleProcessor)
	defer stop(proc)
	for _, srv := range []*serve.Server{collector, proc} {
		if code, body := probe(t, "http://"+srv.Addr()+"/readyz"); code != http.StatusOK {
			t.Fatalf("/readyz before: %d %q", code, body)
		}
	}
	// Fill the account from outside doraflow.
	fill, err := bus.Open(context.Background(), bus.Options{URL: ns.ClientURL(), Auth: bus.Auth{User: "doraflow", Password: "pw"}, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	defer fill.Close()
	pad := make([]byte, 256<<10)
	for i := 0; i < 64; i++ {
		if _, err := fill.JS.Publish(context.Background(), fmt.Sprintf("doraflow.raw.fill.%d", i), pad); err != nil {
			break
		}
	}
	for _, srv := range []*serve.Server{collector, proc} {
		code, body := probe(t, "http://"+srv.Addr()+"/readyz")
		if code != http.StatusServiceUnavailable || !strings.Contains(body, "bus: JetStream storage full: the account stores") {
			t.Errorf("/readyz with the account full: %d %q", code, body)
		}
	}
}

func startRole(t *testing.T, cfg config.Config, role serve.Role) *serve.Server {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	srv, err := serve.Start(ctx, cfg, role, quiet())
	if err != nil {
		t.Fatal(err)
	}
	return srv
}
