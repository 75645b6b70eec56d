package deployments

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/compose-spec/compose-go/v2/types"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	corev1 "k8s.io/api/core/v1"

	"github.com/doraflow/doraflow/internal/serve"
	"github.com/doraflow/doraflow/pkg/config"
)

// natsServices are the compose services that run nats-server.
func natsServices(p *types.Project) []string {
	var names []string
	for name, s := range p.Services {
		if strings.HasPrefix(s.Image, "nats:") {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	return names
}

// natsOptions parses the configuration a compose NATS node starts with,
// with the node's environment, through nats-server's own loader.
func natsOptions(t *testing.T, p *types.Project, name string) *server.Options {
	t.Helper()
	s := p.Services[name]
	path := flag(s.Command, "--config")
	var file string
	for _, v := range s.Volumes {
		if v.Target == path {
			file = v.Source
		}
	}
	if file == "" {
		t.Fatalf("%s: --config %q is not mounted", name, path)
	}
	for k, v := range s.Environment {
		if v != nil {
			t.Setenv(k, *v)
		}
	}
	opts, err := server.ProcessConfigFile(file)
	if err != nil {
		t.Fatalf("%s: %s: %v", name, file, err)
	}
	return opts
}

// TestComposeNATSConfig checks that the three nodes' settings make one
// JetStream cluster: a name each, one cluster name, routes to all three,
// a volume each, and the image of the nats-server doraflow is tested with.
func TestComposeNATSConfig(t *testing.T) {
	p := loadCompose(t)
	names := natsServices(p)
	if len(names) != 3 {
		t.Fatalf("NATS nodes %v, want 3", names)
	}
	clusters := map[string]bool{}
	servers := map[string]bool{}
	stores := map[string]bool{}
	for _, name := range names {
		s := p.Services[name]
		opts := natsOptions(t, p, name)
		servers[opts.ServerName] = true
		clusters[opts.Cluster.Name] = true
		if !opts.JetStream {
			t.Errorf("%s: JetStream is off", name)
		}
		var store string
		for _, v := range s.Volumes {
			if v.Target == opts.StoreDir && v.Type == types.VolumeTypeVolume {
				store = v.Source
			}
		}
		if store == "" || stores[store] {
			t.Errorf("%s: store_dir %s is not a volume of its own", name, opts.StoreDir)
		}
		stores[store] = true
		var routes []string
		for _, r := range opts.Routes {
			routes = append(routes, r.Host)
		}
		slices.Sort(routes)
		var want []string
		for _, n := range names {
			want = append(want, n+":"+strconv.Itoa(opts.Cluster.Port))
		}
		if !slices.Equal(routes, want) {
			t.Errorf("%s: routes %v, want all three nodes %v", name, routes, want)
		}
		if s.HealthCheck == nil || !strings.Contains(strings.Join(s.HealthCheck.Test, " "), fmt.Sprintf("127.0.0.1:%d/healthz", opts.HTTPPort)) {
			t.Errorf("%s: health check %v does not ask the monitoring port %d", name, s.HealthCheck, opts.HTTPPort)
		}
		if want := "nats:" + server.VERSION + "-alpine"; s.Image != want {
			t.Errorf("%s: image %s, want %s: the nats-server go.mod pins and the tests run", name, s.Image, want)
		}
	}
	if len(servers) != 3 || servers[""] {
		t.Errorf("server names %v: JetStream needs one per node", servers)
	}
	if len(clusters) != 1 || clusters[""] {
		t.Errorf("cluster names %v, want one", clusters)
	}
}

// TestComposeClusterServes starts the three compose NATS nodes from their
// own configuration on loopback (names mapped to 127.0.0.1), waits for a
// stream replicated on all three, then runs a collector with the compose
// collector's environment against them and asks it every probe the
// manifests use.
func TestComposeClusterServes(t *testing.T) {
	p := loadCompose(t)
	names := natsServices(p)
	cluster := map[string]string{}
	for _, name := range names {
		cluster[name] = freeAddr(t)
	}
	var clientURLs []string
	for _, name := range names {
		opts := natsOptions(t, p, name)
		opts.Host, opts.Port, opts.HTTPPort = "127.0.0.1", -1, 0
		_, port, _ := net.SplitHostPort(cluster[name])
		opts.Cluster.Host = "127.0.0.1"
		opts.Cluster.Port, _ = strconv.Atoi(port)
		for _, r := range opts.Routes {
			addr, ok := cluster[r.Hostname()]
			if !ok {
				t.Fatalf("%s: route %s to no node", name, r)
			}
			r.Host = addr
		}
		opts.StoreDir = t.TempDir()
		opts.NoLog, opts.NoSigs = true, true
		ns, err := server.NewServer(opts)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		go ns.Start()
		t.Cleanup(ns.Shutdown)
		if !ns.ReadyForConnections(10 * time.Second) {
			t.Fatalf("%s: not ready", name)
		}
		clientURLs = append(clientURLs, ns.ClientURL())
	}

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	nc, err := nats.Connect(strings.Join(clientURLs, ","))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	// A stream of 3 replicas comes up only once the three nodes are one
	// JetStream cluster with a meta leader; an attempt before that waits
	// for its whole context, so each gets a short one.
	for {
		attempt, cancelAttempt := context.WithTimeout(ctx, 2*time.Second)
		_, err = js.CreateStream(attempt, jetstream.StreamConfig{Name: "CHECK", Subjects: []string{"check.>"}, Replicas: 3})
		cancelAttempt()
		if err == nil {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("no stream of 3 replicas on the compose cluster: %v (last: %v)", ctx.Err(), err)
		case <-time.After(200 * time.Millisecond):
		}
	}

	collector := withCommand(p, "serve", "--role", "collector")[0]
	getenv := func(k string) string {
		switch k {
		case "DORAFLOW_NATS_URL":
			return strings.Join(clientURLs, ",")
		case "DORAFLOW_LISTEN":
			return "127.0.0.1:0"
		case config.FileEnv:
			for _, v := range collector.Volumes {
				if v.Target == env(collector, k) {
					return v.Source
				}
			}
		}
		return env(collector, k)
	}
	cfg, err := config.Load(getenv(config.FileEnv), getenv)
	if err == nil {
		err = cfg.Validate()
	}
	if err != nil {
		t.Fatalf("%s's configuration: %v", collector.Name, err)
	}
	srv, err := serve.Start(ctx, cfg, serve.RoleCollector, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatalf("%s: %v", collector.Name, err)
	}
	defer srv.Stop(context.Background())
	for _, path := range probePaths(t) {
		resp, err := http.Get("http://" + srv.Addr() + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("GET %s: %d %s, want 200", path, resp.StatusCode, body)
		}
	}
}

// probePaths are the paths that the compose health checks and the chart's
// probes ask doraflow.
func probePaths(t *testing.T) []string {
	t.Helper()
	var paths []string
	add := func(p string) {
		if !slices.Contains(paths, p) {
			paths = append(paths, p)
		}
	}
	for _, s := range doraflowServices(loadCompose(t)) {
		if hc := s.HealthCheck; hc != nil && !hc.Disable {
			u, err := url.Parse(hc.Test[len(hc.Test)-1])
			if err != nil {
				t.Fatal(err)
			}
			add(u.Path)
		}
	}
	for _, c := range renderedContainers(t, renderChart(t, "")) {
		for _, probe := range []*corev1.Probe{c.LivenessProbe, c.ReadinessProbe} {
			if probe != nil && probe.HTTPGet != nil {
				add(probe.HTTPGet.Path)
			}
		}
	}
	if len(paths) == 0 {
		t.Fatal("no probes in the manifests")
	}
	return paths
}

// freeAddr is a loopback address nothing listens on.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}
