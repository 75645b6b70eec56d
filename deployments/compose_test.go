package deployments

import (
	"context"
	"encoding/xml"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/dotenv"
	"github.com/compose-spec/compose-go/v2/types"
	"go.yaml.in/yaml/v3"

	"github.com/doraflow/doraflow/pkg/config"
)

const (
	composeDir  = "compose"
	composeFile = "compose/compose.yaml"
	envExample  = "compose/.env.example"
)

// loadCompose loads the compose file the way docker compose does, with the
// example .env.
func loadCompose(t *testing.T) *types.Project {
	t.Helper()
	opts, err := cli.NewProjectOptions([]string{composeFile},
		cli.WithWorkingDirectory(composeDir),
		cli.WithEnvFiles(envExample),
		cli.WithDotEnv,
	)
	if err != nil {
		t.Fatalf("compose options: %v", err)
	}
	project, err := opts.LoadProject(context.Background())
	if err != nil {
		t.Fatalf("load %s with %s: %v", composeFile, envExample, err)
	}
	return project
}

// rawService is a service as the compose file writes it, before
// interpolation: where a value comes from a variable, it says so.
type rawService struct {
	Environment map[string]string `yaml:"environment"`
}

// rawServices reads the compose file with anchors and merges resolved but
// nothing interpolated.
func rawServices(t *testing.T) map[string]rawService {
	t.Helper()
	raw, err := os.ReadFile(composeFile)
	if err != nil {
		t.Fatal(err)
	}
	var file struct {
		Services map[string]rawService `yaml:"services"`
	}
	if err := yaml.Unmarshal(raw, &file); err != nil {
		t.Fatalf("%s: %v", composeFile, err)
	}
	return file.Services
}

// doraflowServices are the services that run the doraflow image.
func doraflowServices(p *types.Project) map[string]types.ServiceConfig {
	out := map[string]types.ServiceConfig{}
	for name, s := range p.Services {
		if s.Build != nil {
			out[name] = s
		}
	}
	return out
}

// withCommand are the services whose command starts with args.
func withCommand(p *types.Project, args ...string) []types.ServiceConfig {
	var out []types.ServiceConfig
	for _, s := range doraflowServices(p) {
		if len(s.Command) >= len(args) && slices.Equal([]string(s.Command[:len(args)]), args) {
			out = append(out, s)
		}
	}
	slices.SortFunc(out, func(a, b types.ServiceConfig) int { return strings.Compare(a.Name, b.Name) })
	return out
}

func env(s types.ServiceConfig, name string) string {
	if v := s.Environment[name]; v != nil {
		return *v
	}
	return ""
}

// flag is the value after --name in a command.
func flag(cmd []string, name string) string {
	if i := slices.Index(cmd, name); i >= 0 && i+1 < len(cmd) {
		return cmd[i+1]
	}
	return ""
}

func TestComposeRoles(t *testing.T) {
	p := loadCompose(t)
	cases := []struct {
		role     string
		command  []string
		replicas int
		needs    []string // dependencies that must have completed successfully
	}{
		{role: "migrations", command: []string{"migrate"}, replicas: 1},
		{role: "dashboards", command: []string{"dashboards", "generate"}, replicas: 1},
		{role: "collectors", command: []string{"serve", "--role", "collector"}, replicas: 2, needs: []string{"migrate"}},
		{role: "processors", command: []string{"serve", "--role", "processor"}, replicas: 2, needs: []string{"migrate"}},
	}
	for _, tc := range cases {
		t.Run(tc.role, func(t *testing.T) {
			services := withCommand(p, tc.command...)
			if len(services) != tc.replicas {
				t.Fatalf("%d services run %q, want %d", len(services), tc.command, tc.replicas)
			}
			for _, s := range services {
				for _, dep := range tc.needs {
					if c := s.DependsOn[dep].Condition; c != types.ServiceConditionCompletedSuccessfully {
						t.Errorf("%s: depends on %s with %q, want %s", s.Name, dep, c, types.ServiceConditionCompletedSuccessfully)
					}
				}
				if s.Command[0] == "serve" {
					for _, n := range natsServices(p) {
						if c := s.DependsOn[n].Condition; c != types.ServiceConditionHealthy {
							t.Errorf("%s: depends on %s with %q, want %s", s.Name, n, c, types.ServiceConditionHealthy)
						}
					}
				}
			}
		})
	}
}

// TestComposeEnvironment checks every doraflow container's variables
// against the code's list, and that secrets come from .env.
func TestComposeEnvironment(t *testing.T) {
	p := loadCompose(t)
	raw := rawServices(t)
	known := envNames()
	secrets := secretNames()
	set := map[string]bool{}
	for name, s := range doraflowServices(p) {
		for v := range s.Environment {
			set[v] = true
			if !known[v] {
				t.Errorf("%s: sets %s, which doraflow does not read (config.EnvNames)", name, v)
			}
			if slices.Contains(secrets, v) && !strings.Contains(raw[name].Environment[v], "${") {
				t.Errorf("%s: %s is a secret: take it from .env (${%s}), not the compose file", name, v, v)
			}
		}
	}
	for _, v := range requiredSecrets() {
		if !set[v] {
			t.Errorf("no service sets %s: a team could not configure it", v)
		}
	}
	for _, s := range withCommand(p, "serve", "--role", "collector") {
		for _, v := range collectorSecrets(t) {
			if _, ok := s.Environment[v]; !ok {
				t.Errorf("%s: lacks %s, so its source can never be switched on", s.Name, v)
			}
		}
		if _, ok := s.Environment["DORAFLOW_CLICKHOUSE_DSN"]; ok {
			t.Errorf("%s: a collector needs no ClickHouse password", s.Name)
		}
	}
	for _, s := range doraflowServices(p) {
		if s.Command[0] != "serve" {
			continue
		}
		if got := env(s, "DORAFLOW_NATS_REPLICAS"); got != "3" {
			t.Errorf("%s: DORAFLOW_NATS_REPLICAS=%q, want 3 (one replica per node)", s.Name, got)
		}
		urls := strings.Split(env(s, "DORAFLOW_NATS_URL"), ",")
		var hosts []string
		for _, u := range urls {
			parsed, err := url.Parse(u)
			if err != nil {
				t.Fatalf("%s: DORAFLOW_NATS_URL: %v", s.Name, err)
			}
			hosts = append(hosts, parsed.Host)
		}
		for _, n := range natsServices(p) {
			if want := n + ":" + strconv.Itoa(natsOptions(t, p, n).Port); !slices.Contains(hosts, want) {
				t.Errorf("%s: DORAFLOW_NATS_URL %v lacks %s", s.Name, urls, want)
			}
		}
	}
}

// TestComposeEnvFile checks that the example .env gives every variable the
// compose file uses, and that the real .env is never committed.
func TestComposeEnvFile(t *testing.T) {
	raw, err := os.ReadFile(composeFile)
	if err != nil {
		t.Fatal(err)
	}
	example, err := dotenv.Read(envExample)
	if err != nil {
		t.Fatalf("%s: %v", envExample, err)
	}
	for _, m := range regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)`).FindAllStringSubmatch(string(raw), -1) {
		if _, ok := example[m[1]]; !ok {
			t.Errorf("%s uses ${%s}, which %s does not list", composeFile, m[1], envExample)
		}
	}
	ignore, err := os.ReadFile("../.gitignore")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(strings.Split(string(ignore), "\n"), "/deployments/compose/.env") {
		t.Error("../.gitignore does not ignore /deployments/compose/.env: secrets could be committed")
	}
}

// TestComposeHealthAndPorts checks the health checks and the one published
// webhook port against where doraflow listens.
func TestComposeHealthAndPorts(t *testing.T) {
	p := loadCompose(t)
	for name, s := range doraflowServices(p) {
		hc := s.HealthCheck
		oneShot := s.Command[0] != "serve"
		switch {
		case oneShot && (hc == nil || !hc.Disable):
			t.Errorf("%s: a one-shot service should not be health-checked", name)
		case !oneShot:
			if hc == nil || hc.Disable {
				t.Fatalf("%s: no health check", name)
			}
			u, err := url.Parse(hc.Test[len(hc.Test)-1])
			if err != nil {
				t.Fatalf("%s: health check %v: %v", name, hc.Test, err)
			}
			if u.Port() != listenPort(t, env(s, "DORAFLOW_LISTEN")) || u.Path != "/healthz" {
				t.Errorf("%s: health check %s, want /healthz on port %s", name, u, listenPort(t, env(s, "DORAFLOW_LISTEN")))
			}
		}
		if len(s.Ports) > 0 {
			t.Errorf("%s: publishes %v; webhooks go through the proxy", name, s.Ports)
		}
	}

	proxy := p.Services["proxy"]
	conf := readNginx(t, proxy)
	if len(proxy.Ports) != 1 || strconv.Itoa(int(proxy.Ports[0].Target)) != conf.listen {
		t.Errorf("proxy: publishes %+v, want one port to nginx's listen %s", proxy.Ports, conf.listen)
	}
	var want []string
	for _, s := range withCommand(p, "serve", "--role", "collector") {
		want = append(want, s.Name+":"+listenPort(t, env(s, "DORAFLOW_LISTEN")))
		if c := proxy.DependsOn[s.Name].Condition; c != types.ServiceConditionHealthy {
			t.Errorf("proxy: depends on %s with %q, want %s", s.Name, c, types.ServiceConditionHealthy)
		}
	}
	slices.Sort(conf.upstreams)
	if !slices.Equal(conf.upstreams, want) {
		t.Errorf("nginx upstreams %v, want every collector: %v", conf.upstreams, want)
	}
	if limit := config.Default().Collector.MaxBodyBytes; conf.maxBody <= limit {
		t.Errorf("nginx client_max_body_size %d bytes: a webhook of collector.max_body_bytes (%d) would get the proxy's 413", conf.maxBody, limit)
	}
}

type nginxConf struct {
	listen    string
	upstreams []string
	maxBody   int64
}

// readNginx reads the few directives that must agree with compose and
// doraflow from the proxy's nginx.conf.
func readNginx(t *testing.T, proxy types.ServiceConfig) nginxConf {
	t.Helper()
	var path string
	for _, v := range proxy.Volumes {
		if v.Target == "/etc/nginx/nginx.conf" {
			path = v.Source
		}
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("proxy: nginx.conf: %v", err)
	}
	var c nginxConf
	for _, line := range strings.Split(string(raw), "\n") {
		f := strings.Fields(strings.TrimSuffix(strings.TrimSpace(line), ";"))
		switch {
		case len(f) >= 2 && f[0] == "listen":
			c.listen = f[1]
		case len(f) >= 2 && f[0] == "server" && f[1] != "{":
			c.upstreams = append(c.upstreams, f[1])
		case len(f) == 2 && f[0] == "client_max_body_size":
			n, err := strconv.ParseInt(strings.TrimSuffix(f[1], "m"), 10, 64)
			if err != nil || !strings.HasSuffix(f[1], "m") {
				t.Fatalf("nginx.conf: client_max_body_size %s: want megabytes (32m)", f[1])
			}
			c.maxBody = n << 20
		}
	}
	return c
}

// TestComposeFiles checks that every file the compose file mounts or
// builds from exists.
func TestComposeFiles(t *testing.T) {
	p := loadCompose(t)
	for name, s := range p.Services {
		for _, v := range s.Volumes {
			if v.Type != types.VolumeTypeBind {
				if _, ok := p.Volumes[v.Source]; !ok {
					t.Errorf("%s: volume %s is not declared", name, v.Source)
				}
				continue
			}
			if _, err := os.Stat(v.Source); err != nil {
				t.Errorf("%s: mounts %s: %v", name, v.Source, err)
			}
			if !v.ReadOnly {
				t.Errorf("%s: mounts %s writable; configuration is mounted read-only", name, v.Source)
			}
		}
		if s.Build != nil {
			if _, err := os.Stat(filepath.Join(s.Build.Context, "Dockerfile")); err != nil {
				t.Errorf("%s: build context %s: %v", name, s.Build.Context, err)
			}
		}
	}
	for _, s := range doraflowServices(p) {
		if s.Command[0] != "serve" && s.Command[0] != "migrate" {
			continue
		}
		path := env(s, config.FileEnv)
		var src string
		for _, v := range s.Volumes {
			if v.Target == path {
				src = v.Source
			}
		}
		if src == "" {
			t.Fatalf("%s: %s=%s is not mounted", s.Name, config.FileEnv, path)
		}
		cfg, err := config.Load(src, func(string) string { return "" })
		if err == nil {
			err = cfg.Validate()
		}
		if err != nil {
			t.Errorf("%s: %s: %v", s.Name, src, err)
		}
	}
}

// TestComposeClickHouseAndGrafana checks that the writer, Grafana's
// read-only user, the database and the provisioning agree across services.
func TestComposeClickHouseAndGrafana(t *testing.T) {
	p := loadCompose(t)
	ch := p.Services["clickhouse"]
	if n := ch.Ulimits["nofile"]; n == nil || n.Soft != 262144 || n.Hard != 262144 {
		t.Errorf("clickhouse: ulimits nofile %+v, want 262144", n)
	}
	if ch.HealthCheck == nil || ch.HealthCheck.Disable {
		t.Error("clickhouse: no health check")
	}
	migrate := withCommand(p, "migrate")[0]
	dsn, err := config.ParseClickHouseDSN(env(migrate, "DORAFLOW_CLICKHOUSE_DSN"))
	if err != nil {
		t.Fatal(err)
	}
	if dsn.Addr != "clickhouse:9000" || dsn.User != env(ch, "CLICKHOUSE_USER") || dsn.Password != env(ch, "CLICKHOUSE_PASSWORD") || dsn.Database != env(ch, "CLICKHOUSE_DB") {
		t.Errorf("the writer's DSN %+v does not match the clickhouse service's user, password and database", dsn)
	}
	for _, s := range withCommand(p, "serve", "--role", "processor") {
		if env(s, "DORAFLOW_CLICKHOUSE_DSN") != env(migrate, "DORAFLOW_CLICKHOUSE_DSN") {
			t.Errorf("%s: writes to another ClickHouse than migrate prepared", s.Name)
		}
	}

	reader := readReader(t, ch)
	gen := withCommand(p, "dashboards", "generate")[0]
	cmd := []string(gen.Command)
	if got := flag(cmd, "--clickhouse-user"); got != reader.name {
		t.Errorf("dashboards: --clickhouse-user %q, want the read-only user %q", got, reader.name)
	}
	if reader.readonly != "2" {
		t.Errorf("%s: readonly %q, want 2 (read-only, and the Grafana plugin may set max_execution_time)", reader.name, reader.readonly)
	}
	if reader.passwordEnv == "" || env(ch, reader.passwordEnv) == "" {
		t.Errorf("%s: password from_env %q, which the clickhouse service does not set", reader.name, reader.passwordEnv)
	}
	if got := flag(cmd, "--clickhouse-database"); got != dsn.Database || !slices.Equal(reader.databases, []string{dsn.Database}) {
		t.Errorf("dashboards read %q, the reader may read %v, doraflow writes %q", got, reader.databases, dsn.Database)
	}
	if host, port := flag(cmd, "--clickhouse-host"), flag(cmd, "--clickhouse-port"); host+":"+port != dsn.Addr {
		t.Errorf("dashboards: ClickHouse at %s:%s, doraflow writes to %s", host, port, dsn.Addr)
	}

	grafana := p.Services["grafana"]
	if got := env(grafana, "GF_PLUGINS_PREINSTALL_SYNC"); got != "grafana-clickhouse-datasource@4.20.0" {
		t.Errorf("grafana: GF_PLUGINS_PREINSTALL_SYNC=%q", got)
	}
	// The datasource that dashboards generate writes expands this variable.
	if got := env(grafana, "DORAFLOW_CLICKHOUSE_READER_PASSWORD"); got == "" || got != env(ch, reader.passwordEnv) {
		t.Error("grafana: DORAFLOW_CLICKHOUSE_READER_PASSWORD is not the reader's password")
	}
	if c := grafana.DependsOn[gen.Name].Condition; c != types.ServiceConditionCompletedSuccessfully {
		t.Errorf("grafana: depends on %s with %q, want %s", gen.Name, c, types.ServiceConditionCompletedSuccessfully)
	}
	out := flag(cmd, "--out")
	var volume string
	for _, v := range gen.Volumes {
		if v.Target == out {
			volume = v.Source
		}
	}
	if volume == "" {
		t.Fatalf("dashboards: --out %s is not a volume", out)
	}
	var seen string
	for _, v := range grafana.Volumes {
		if v.Source == volume {
			seen = v.Target
			if !v.ReadOnly {
				t.Errorf("grafana: mounts %s writable", volume)
			}
		}
	}
	if seen == "" {
		t.Fatalf("grafana: does not mount %s", volume)
	}
	// What the generator wrote under --out, Grafana sees under seen.
	if got, want := env(grafana, "GF_PATHS_PROVISIONING"), seen+"/provisioning"; got != want {
		t.Errorf("grafana: GF_PATHS_PROVISIONING=%s, want %s", got, want)
	}
	if got, want := flag(cmd, "--dashboards-path"), seen+"/dashboards"; got != want {
		t.Errorf("dashboards: --dashboards-path %s, want %s (where Grafana sees them)", got, want)
	}
}

type readerUser struct {
	name, readonly, passwordEnv string
	databases                   []string
}

// readReader reads the one user of the users.d file the clickhouse
// service mounts, and its profile.
func readReader(t *testing.T, ch types.ServiceConfig) readerUser {
	t.Helper()
	var path string
	for _, v := range ch.Volumes {
		if strings.HasPrefix(v.Target, "/etc/clickhouse-server/users.d/") {
			path = v.Source
		}
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("clickhouse: users.d: %v", err)
	}
	var doc struct {
		Profiles struct {
			Items []struct {
				XMLName  xml.Name
				Readonly string `xml:"readonly"`
			} `xml:",any"`
		} `xml:"profiles"`
		Users struct {
			Items []struct {
				XMLName  xml.Name
				Password struct {
					FromEnv string `xml:"from_env,attr"`
				} `xml:"password"`
				Profile   string   `xml:"profile"`
				Databases []string `xml:"allow_databases>database"`
			} `xml:",any"`
		} `xml:"users"`
	}
	if err := xml.Unmarshal(raw, &doc); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	if len(doc.Users.Items) != 1 {
		t.Fatalf("%s: %d users, want the one read-only user", path, len(doc.Users.Items))
	}
	u := doc.Users.Items[0]
	r := readerUser{name: u.XMLName.Local, passwordEnv: u.Password.FromEnv, databases: u.Databases}
	for _, p := range doc.Profiles.Items {
		if p.XMLName.Local == u.Profile {
			r.readonly = p.Readonly
		}
	}
	return r
}

// TestComposeImages checks that every image compose pulls is pinned to a
// version, and the ones the issue names.
func TestComposeImages(t *testing.T) {
	p := loadCompose(t)
	named := map[string]string{
		"clickhouse": "clickhouse/clickhouse-server:25.8",
		"proxy":      "nginx:1.27-alpine",
	}
	for name, s := range p.Services {
		if s.Build != nil {
			continue
		}
		if !pinnedImage.MatchString(s.Image) || !strings.ContainsAny(s.Image, ":@") {
			t.Errorf("%s: image %s is not pinned to a version", name, s.Image)
		}
		if want, ok := named[name]; ok && s.Image != want {
			t.Errorf("%s: image %s, want %s", name, s.Image, want)
		}
	}
}
