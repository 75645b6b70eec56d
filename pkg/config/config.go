// Package config loads doraflow's configuration: a YAML file (strictly
// decoded, unknown keys rejected) overlaid by DORAFLOW_* environment variables.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/bmatcuk/doublestar/v4"
	"go.yaml.in/yaml/v3"
)

// Config is the whole configuration. Start from Default; Validate explains
// every bad value at once.
type Config struct {
	Listen string `yaml:"listen"`
	// AdminListen, when set, is where /metrics, /healthz and /readyz are
	// served instead of Listen, so that the webhooks can be exposed to the
	// internet without the metrics.
	AdminListen   string     `yaml:"admin_listen"`
	NATSURL       string     `yaml:"nats_url"`
	NATS          NATS       `yaml:"nats"`
	DataDir       string     `yaml:"data_dir"`
	ClickHouseDSN string     `yaml:"clickhouse_dsn"`
	ClickHouse    ClickHouse `yaml:"clickhouse"`

	GitHub    GitHub    `yaml:"github"`
	GitLab    GitLab    `yaml:"gitlab"`
	PagerDuty PagerDuty `yaml:"pagerduty"`
	Opsgenie  Opsgenie  `yaml:"opsgenie"`
	API       API       `yaml:"api"`
	CDEvents  CDEvents  `yaml:"cdevents"`

	Teams        []Team       `yaml:"teams"`
	Environments Environments `yaml:"environments"`

	// IncidentLookback bounds heuristic incident attribution: an incident is
	// blamed on a deployment at most this long before it opened.
	IncidentLookback time.Duration `yaml:"incident_lookback"`

	Collector CollectorLimits `yaml:"collector"`
	Processor Processor       `yaml:"processor"`
}

// ClickHouse configures the schema doraflow creates.
type ClickHouse struct {
	// Cluster, when set, creates the schema ON CLUSTER with replicated
	// engines (a ClickHouse cluster of that name, with its coordination
	// service); the queries are the same.
	Cluster string `yaml:"cluster"`
	// Password, when set, replaces the password in clickhouse_dsn, so that
	// the DSN can live in plain configuration and the password in a secret
	// (DORAFLOW_CLICKHOUSE_PASSWORD_FILE).
	Password string `yaml:"password"`
	// TLS, when set, makes doraflow reach ClickHouse over TLS (its secure
	// native port, 9440 by default); the same as secure=true and the file
	// parameters in clickhouse_dsn, which it adds to.
	TLS TLS `yaml:"tls"`
}

// NATS configures what doraflow creates on the bus.
type NATS struct {
	// Replicas of every stream, key-value bucket and object store doraflow
	// creates: 1 on a single server (the embedded one), 3 (or 5) on a
	// JetStream cluster, so losing a node loses nothing acknowledged.
	Replicas int `yaml:"replicas"`
	// What the streams that grow with the deliveries keep. Max ages of
	// zero are derived: the raw archive and the event stream as long as
	// facts are recomputed (processor.retention keep + margin; older facts
	// are frozen, so nothing needs their deliveries), dead letters 90 days.
	Raw        StreamLimit `yaml:"raw"`
	Events     StreamLimit `yaml:"events"`
	DeadLetter StreamLimit `yaml:"dead_letter"`

	// How doraflow authenticates to an external NATS (nats_url): at most
	// one of user and password, a token, an NKey seed file, or a .creds
	// file (a JWT and its seed, as nsc writes it).
	User         string `yaml:"user"`
	Password     string `yaml:"password"`
	Token        string `yaml:"token"`
	NKeySeedFile string `yaml:"nkey_seed_file"`
	CredsFile    string `yaml:"creds_file"`
	TLS          TLS    `yaml:"tls"`
}

// TLS configures a TLS connection: the CA that signed the server's
// certificate (empty: the system's), a client certificate and key for
// servers that verify clients, and the name the server's certificate
// must bear when it is not the host dialled.
type TLS struct {
	Enabled    bool   `yaml:"enabled"`
	CAFile     string `yaml:"ca_file"`
	CertFile   string `yaml:"cert_file"`
	KeyFile    string `yaml:"key_file"`
	ServerName string `yaml:"server_name"`
}

// Set reports whether any TLS setting is given: TLS is then on.
func (t TLS) Set() bool {
	return t.Enabled || t.CAFile != "" || t.CertFile != "" || t.KeyFile != "" || t.ServerName != ""
}

// validate checks the TLS settings under key.
func (t TLS) validate(key string) []error {
	var errs []error
	if (t.CertFile == "") != (t.KeyFile == "") {
		errs = append(errs, fmt.Errorf("%s: cert_file and key_file go together: give both, or neither", key))
	}
	for _, f := range []struct{ name, path string }{{"ca_file", t.CAFile}, {"cert_file", t.CertFile}, {"key_file", t.KeyFile}} {
		if f.path == "" {
			continue
		}
		if _, err := os.Stat(f.path); err != nil {
			errs = append(errs, fmt.Errorf("%s.%s: %w", key, f.name, err))
		}
	}
	return errs
}

// StreamLimit bounds a stream: older messages are discarded, and past
// MaxBytes (0: no limit) the oldest.
type StreamLimit struct {
	MaxAge   time.Duration `yaml:"max_age"`
	MaxBytes int64         `yaml:"max_bytes"`
}

// validateAuth checks the credentials and TLS settings: one way to
// authenticate, and only towards an external server.
func (n NATS) validateAuth(url string) []error {
	var errs []error
	var ways []string
	if n.User != "" || n.Password != "" {
		ways = append(ways, "user/password")
		if n.User == "" || n.Password == "" {
			errs = append(errs, errors.New("nats.user and nats.password go together: give both, or neither"))
		}
	}
	if n.Token != "" {
		ways = append(ways, "token")
	}
	if n.NKeySeedFile != "" {
		ways = append(ways, "nkey_seed_file")
	}
	if n.CredsFile != "" {
		ways = append(ways, "creds_file")
	}
	if len(ways) > 1 {
		errs = append(errs, fmt.Errorf("nats: %s are set; authenticate one way", strings.Join(ways, ", ")))
	}
	if (len(ways) > 0 || n.TLS.Set()) && url == "" {
		errs = append(errs, errors.New("nats: credentials or TLS are set, but nats_url is empty: the embedded server is in-process and takes neither; set nats_url to the external server"))
	}
	for _, f := range []struct{ name, path string }{{"nkey_seed_file", n.NKeySeedFile}, {"creds_file", n.CredsFile}} {
		if f.path == "" {
			continue
		}
		if _, err := os.Stat(f.path); err != nil {
			errs = append(errs, fmt.Errorf("nats.%s: %w", f.name, err))
		}
	}
	return append(errs, n.TLS.validate("nats.tls")...)
}

// deadLetterAge is how long dead letters stay for an operator to look at.
const deadLetterAge = 90 * 24 * time.Hour

// StreamLimits are the limits with the derived max ages filled in.
func (c Config) StreamLimits() (raw, events, deadLetter StreamLimit) {
	raw, events, deadLetter = c.NATS.Raw, c.NATS.Events, c.NATS.DeadLetter
	recomputed := c.Processor.Retention.Keep + c.Processor.Retention.Margin
	if raw.MaxAge == 0 {
		raw.MaxAge = recomputed
	}
	if events.MaxAge == 0 {
		events.MaxAge = recomputed
	}
	if deadLetter.MaxAge == 0 {
		deadLetter.MaxAge = deadLetterAge
	}
	return raw, events, deadLetter
}

// GitHub configures the GitHub collector.
type GitHub struct {
	WebhookSecret string `yaml:"webhook_secret"`
	// Token (and APIURL for GitHub Enterprise Server) let the processor fill
	// gaps in push chains through the compare API.
	Token  string `yaml:"token"`
	APIURL string `yaml:"api_url"`
	// IncidentLabels mark an issue as an incident; default ["incident"].
	IncidentLabels []string `yaml:"incident_labels"`
}

// GitLab configures the GitLab collector.
type GitLab struct {
	WebhookToken string `yaml:"webhook_token"`
	// Token (and APIURL for a self-managed instance, …/api/v4) let the
	// processor fill gaps in push chains (GitLab sends at most 20 commits
	// per push) through the compare API.
	Token  string `yaml:"token"`
	APIURL string `yaml:"api_url"`
	// PipelineDeployments counts successful pipelines on the default branch
	// as production deployments, for teams that deploy from pipelines.
	PipelineDeployments bool `yaml:"pipeline_deployments"`
}

// PagerDuty configures the PagerDuty Webhooks v3 collector.
type PagerDuty struct {
	WebhookSecret string `yaml:"webhook_secret"`
	// Token is a REST API key, and APIURL the REST API (empty for
	// https://api.pagerduty.com; https://api.eu.pagerduty.com in the EU
	// region), for `doraflow backfill pagerduty`.
	Token  string `yaml:"token"`
	APIURL string `yaml:"api_url"`
}

// Opsgenie configures the Opsgenie webhook collector.
type Opsgenie struct {
	Secret string `yaml:"secret"`
	// Header carrying the secret (default X-Doraflow-Token); basic auth
	// with the secret as password works too.
	Header string `yaml:"header"`
	// Only alerts with one of these tags / priorities are incidents; empty
	// means all.
	Tags       []string `yaml:"tags"`
	Priorities []string `yaml:"priorities"`
}

// API configures the generic deployments/incidents API.
type API struct {
	Token string `yaml:"token"`
}

// CDEvents configures the CDEvents (CloudEvents) collector.
type CDEvents struct {
	Token string `yaml:"token"`
}

// Team owns repositories (globs over owner/name) and incident-side services.
type Team struct {
	Name     string   `yaml:"name"`
	Repos    []string `yaml:"repos"`
	Services []string `yaml:"services"`
}

// Environments says which deployment environments count as production.
type Environments struct {
	Production []string `yaml:"production"`
}

// CollectorLimits bounds what one webhook request may cost.
type CollectorLimits struct {
	MaxBodyBytes int64 `yaml:"max_body_bytes"`
	// MaxInflightBytes bounds the request body bytes a process holds at
	// once, over all requests: a body beyond it is answered 503 with
	// Retry-After without being read. Bodies are read before their
	// signature can be checked, so this is what bounds the memory any
	// sender can make the collector use.
	MaxInflightBytes int64 `yaml:"max_inflight_bytes"`
	// MaxInflightPublishes bounds the deliveries a process publishes at
	// once, over all sources: one more is answered 503 with Retry-After at
	// once instead of waiting for a slot, so that a burst beyond what the
	// bus takes is pushed back to the senders (which retry) rather than
	// queued in memory.
	MaxInflightPublishes int           `yaml:"max_inflight_publishes"`
	PublishTimeout       time.Duration `yaml:"publish_timeout"`
}

// Processor tunes the stream processor.
type Processor struct {
	BatchSize     int           `yaml:"batch_size"`
	FlushInterval time.Duration `yaml:"flush_interval"`
	Partitions    int           `yaml:"partitions"`
	// SnapshotInterval: how often the processor saves its state to the bus,
	// so that a restart folds only the events after it.
	SnapshotInterval time.Duration `yaml:"snapshot_interval"`
	// AckWait: how long an event delivered to a processor that died waits
	// before it is delivered again.
	AckWait time.Duration `yaml:"ack_wait"`
	// LeaseTTL: processors share the partitions through leases on the bus;
	// a processor that dies hands its partitions over after about this long.
	LeaseTTL time.Duration `yaml:"lease_ttl"`
	// Retention bounds the processor's state: facts older than Keep are
	// kept as stored and no longer recomputed; events older than
	// Keep+Margin leave the state. Margin covers what a kept fact depends on
	// from before its time (incident look-back, incidents open long).
	Retention Retention `yaml:"retention"`
}

// Retention is the processor's state window.
type Retention struct {
	Keep   time.Duration `yaml:"keep"`
	Margin time.Duration `yaml:"margin"`
}

// Unassigned is the team of repos and services no team claims.
const Unassigned = "unassigned"

// Default returns the configuration used where nothing else is said.
func Default() Config {
	return Config{
		Listen:           ":8080",
		NATS:             NATS{Replicas: 1},
		DataDir:          ".doraflow",
		ClickHouseDSN:    "clickhouse://127.0.0.1:9000/doraflow",
		Environments:     Environments{Production: []string{"production", "prod", "prd", "live"}},
		IncidentLookback: 72 * time.Hour,
		Collector: CollectorLimits{
			// GitHub caps webhook payloads at 25 MB.
			MaxBodyBytes:         25 << 20,
			MaxInflightBytes:     256 << 20,
			MaxInflightPublishes: 256,
			PublishTimeout:       10 * time.Second,
		},
		Processor: Processor{BatchSize: 5000, FlushInterval: 200 * time.Millisecond, Partitions: 8, SnapshotInterval: 30 * time.Second, AckWait: 30 * time.Second, LeaseTTL: 6 * time.Second,
			Retention: Retention{Keep: 400 * 24 * time.Hour, Margin: 30 * 24 * time.Hour}},
	}
}

// Load reads the YAML file at path (if path is not empty), then applies the
// environment. It does not validate: call Validate.
func Load(path string, getenv func(string) string) (Config, error) {
	cfg := Default()
	if path != "" {
		raw, err := os.ReadFile(path)
		if err != nil {
			return cfg, fmt.Errorf("config: %w", err)
		}
		if err := Parse(raw, &cfg); err != nil {
			return cfg, fmt.Errorf("config %s: %w", path, err)
		}
	}
	if err := cfg.applyEnv(getenv); err != nil {
		return cfg, err
	}
	cfg.ClickHouseDSN = withTLS(withPassword(cfg.ClickHouseDSN, cfg.ClickHouse.Password), cfg.ClickHouse.TLS)
	return cfg, nil
}

// withTLS is dsn with t's settings as its parameters (dsn as it is when t
// sets nothing or dsn does not parse).
func withTLS(dsn string, t TLS) string {
	if !t.Set() {
		return dsn
	}
	u, err := url.Parse(dsn)
	if err != nil {
		return dsn
	}
	q := u.Query()
	q.Set("secure", "true")
	for name, v := range map[string]string{"ca_file": t.CAFile, "cert_file": t.CertFile, "key_file": t.KeyFile, "server_name": t.ServerName} {
		if v != "" {
			q.Set(name, v)
		}
	}
	u.RawQuery = q.Encode()
	return u.String()
}

// withPassword is dsn with its password replaced by password (dsn as it
// is when password is empty or dsn does not parse: Validate says why).
func withPassword(dsn, password string) string {
	if password == "" {
		return dsn
	}
	u, err := url.Parse(dsn)
	if err != nil {
		return dsn
	}
	user := "default"
	if u.User != nil {
		user = u.User.Username()
	}
	u.User = url.UserPassword(user, password)
	return u.String()
}

// Redacted is a URL or DSN fit for a log line or an error: any password in
// it replaced by xxxxx. What does not parse as a URL is left out whole.
func Redacted(rawURL string) string {
	if rawURL == "" {
		return ""
	}
	u, err := url.Parse(rawURL)
	if err != nil {
		return "(an address that does not parse)"
	}
	return u.Redacted()
}

// Parse decodes YAML over cfg, rejecting unknown keys.
func Parse(raw []byte, cfg *Config) error {
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	dec.KnownFields(true)
	// An empty file is valid: it leaves the defaults.
	if err := dec.Decode(cfg); err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	return nil
}

// FileEnv names the configuration file when --config is not given.
const FileEnv = "DORAFLOW_CONFIG"

// EnvNames lists every environment variable doraflow reads: FileEnv and
// those Load applies, each secret's NAME_FILE beside its NAME. Install
// manifests are checked against it, so that a deployment never sets a
// variable no code reads.
func EnvNames() []string {
	var c Config
	names := []string{FileEnv}
	for _, v := range c.envVars() {
		names = append(names, v.name)
		if v.secret {
			names = append(names, v.name+FileSuffix)
		}
	}
	return names
}

// SecretEnvNames lists the variables that hold a secret (each can also be
// given as NAME_FILE, the path of a file holding it).
func SecretEnvNames() []string {
	var c Config
	var names []string
	for _, v := range c.envVars() {
		if v.secret {
			names = append(names, v.name)
		}
	}
	return names
}

// FileSuffix turns a secret's variable into the one naming a file that
// holds it (DORAFLOW_GITHUB_TOKEN_FILE), the convention of Kubernetes and
// compose secrets.
const FileSuffix = "_FILE"

// envVar is a variable Load applies: set parses its value into the Config.
// A secret's value never appears in an error, and can come from the file
// named by name+FileSuffix.
type envVar struct {
	name   string
	set    func(value string) error
	secret bool
}

// envVars is the one table of the variables Load applies, bound to c.
func (c *Config) envVars() []envVar {
	secret := func(name string, dst *string) envVar { return envVar{name: name, set: setString(dst), secret: true} }
	return []envVar{
		{name: "DORAFLOW_LISTEN", set: setString(&c.Listen)},
		{name: "DORAFLOW_ADMIN_LISTEN", set: setString(&c.AdminListen)},
		// A NATS URL or a ClickHouse DSN may carry a password.
		secret("DORAFLOW_NATS_URL", &c.NATSURL),
		{name: "DORAFLOW_DATA_DIR", set: setString(&c.DataDir)},
		secret("DORAFLOW_CLICKHOUSE_DSN", &c.ClickHouseDSN),
		secret("DORAFLOW_CLICKHOUSE_PASSWORD", &c.ClickHouse.Password),
		{name: "DORAFLOW_CLICKHOUSE_CLUSTER", set: setString(&c.ClickHouse.Cluster)},
		{name: "DORAFLOW_CLICKHOUSE_TLS_CA_FILE", set: setString(&c.ClickHouse.TLS.CAFile)},
		{name: "DORAFLOW_CLICKHOUSE_TLS_SERVER_NAME", set: setString(&c.ClickHouse.TLS.ServerName)},
		{name: "DORAFLOW_NATS_USER", set: setString(&c.NATS.User)},
		secret("DORAFLOW_NATS_PASSWORD", &c.NATS.Password),
		secret("DORAFLOW_NATS_TOKEN", &c.NATS.Token),
		{name: "DORAFLOW_NATS_NKEY_SEED_FILE", set: setString(&c.NATS.NKeySeedFile)},
		{name: "DORAFLOW_NATS_CREDS_FILE", set: setString(&c.NATS.CredsFile)},
		{name: "DORAFLOW_NATS_TLS_CA_FILE", set: setString(&c.NATS.TLS.CAFile)},
		{name: "DORAFLOW_NATS_TLS_CERT_FILE", set: setString(&c.NATS.TLS.CertFile)},
		{name: "DORAFLOW_NATS_TLS_KEY_FILE", set: setString(&c.NATS.TLS.KeyFile)},
		{name: "DORAFLOW_NATS_TLS_SERVER_NAME", set: setString(&c.NATS.TLS.ServerName)},
		secret("DORAFLOW_GITHUB_WEBHOOK_SECRET", &c.GitHub.WebhookSecret),
		secret("DORAFLOW_GITHUB_TOKEN", &c.GitHub.Token),
		secret("DORAFLOW_GITLAB_TOKEN", &c.GitLab.Token),
		secret("DORAFLOW_GITLAB_WEBHOOK_TOKEN", &c.GitLab.WebhookToken),
		secret("DORAFLOW_PAGERDUTY_WEBHOOK_SECRET", &c.PagerDuty.WebhookSecret),
		secret("DORAFLOW_PAGERDUTY_TOKEN", &c.PagerDuty.Token),
		secret("DORAFLOW_OPSGENIE_SECRET", &c.Opsgenie.Secret),
		secret("DORAFLOW_API_TOKEN", &c.API.Token),
		secret("DORAFLOW_CDEVENTS_TOKEN", &c.CDEvents.Token),
		{name: "DORAFLOW_MAX_INFLIGHT_BYTES", set: func(v string) error {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				return errors.New("want a whole number of bytes")
			}
			c.Collector.MaxInflightBytes = n
			return nil
		}},
		{name: "DORAFLOW_MAX_INFLIGHT_PUBLISHES", set: setInt(&c.Collector.MaxInflightPublishes)},
		{name: "DORAFLOW_PARTITIONS", set: setInt(&c.Processor.Partitions)},
		{name: "DORAFLOW_NATS_REPLICAS", set: setInt(&c.NATS.Replicas)},
	}
}

func setString(dst *string) func(string) error {
	return func(v string) error { *dst = v; return nil }
}

func setInt(dst *int) func(string) error {
	return func(v string) error {
		n, err := strconv.Atoi(v)
		if err != nil {
			return errors.New("want a whole number")
		}
		*dst = n
		return nil
	}
}

// applyEnv sets what the environment gives; an empty variable leaves the
// value as the file or the default had it. A secret may come from the
// file its NAME_FILE names instead: a file that cannot be read or holds
// nothing is an error naming the variable, and so is setting both.
func (c *Config) applyEnv(getenv func(string) string) error {
	for _, v := range c.envVars() {
		value := getenv(v.name)
		if v.secret {
			fromFile, err := secretFile(v.name+FileSuffix, getenv(v.name+FileSuffix))
			if err != nil {
				return err
			}
			if fromFile != "" {
				if value != "" {
					return fmt.Errorf("config: both %s and %s%s are set; set one", v.name, v.name, FileSuffix)
				}
				value = fromFile
			}
		}
		if value == "" {
			continue
		}
		if err := v.set(value); err != nil {
			if v.secret {
				return fmt.Errorf("config: %s: %w", v.name, err)
			}
			return fmt.Errorf("config: %s=%q: %w", v.name, value, err)
		}
	}
	return nil
}

// secretFile reads the secret in the file variable name points at (path);
// "" when the variable is not set. One trailing line break is not part of
// the secret: editors and `echo` add it.
func secretFile(name, path string) (string, error) {
	if path == "" {
		return "", nil
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		// The path may be read by anyone who reads the error; the secret
		// may not, and is not in it.
		return "", fmt.Errorf("config: %s: %w", name, err)
	}
	s := strings.TrimSuffix(strings.TrimSuffix(string(raw), "\n"), "\r")
	if s == "" {
		return "", fmt.Errorf("config: %s: %s is empty; put the secret in it, or unset %s", name, path, name)
	}
	return s, nil
}

// secrets are the settings that hold a credential, by their YAML key and
// variable.
func (c *Config) secrets() []struct {
	key, env string
	value    string
} {
	return []struct {
		key, env string
		value    string
	}{
		{"clickhouse.password", "DORAFLOW_CLICKHOUSE_PASSWORD", c.ClickHouse.Password},
		{"nats.password", "DORAFLOW_NATS_PASSWORD", c.NATS.Password},
		{"nats.token", "DORAFLOW_NATS_TOKEN", c.NATS.Token},
		{"github.webhook_secret", "DORAFLOW_GITHUB_WEBHOOK_SECRET", c.GitHub.WebhookSecret},
		{"github.token", "DORAFLOW_GITHUB_TOKEN", c.GitHub.Token},
		{"gitlab.webhook_token", "DORAFLOW_GITLAB_WEBHOOK_TOKEN", c.GitLab.WebhookToken},
		{"gitlab.token", "DORAFLOW_GITLAB_TOKEN", c.GitLab.Token},
		{"pagerduty.webhook_secret", "DORAFLOW_PAGERDUTY_WEBHOOK_SECRET", c.PagerDuty.WebhookSecret},
		{"opsgenie.secret", "DORAFLOW_OPSGENIE_SECRET", c.Opsgenie.Secret},
		{"api.token", "DORAFLOW_API_TOKEN", c.API.Token},
		{"cdevents.token", "DORAFLOW_CDEVENTS_TOKEN", c.CDEvents.Token},
	}
}

// Validate gathers every problem in the configuration.
func (c *Config) Validate() error {
	var errs []error
	for _, sec := range c.secrets() {
		if sec.value != "" && strings.TrimSpace(sec.value) == "" {
			errs = append(errs, fmt.Errorf("%s (%s): only white space; a secret that short is guessed at once: give a real one, or leave it empty to switch the feature off", sec.key, sec.env))
		}
	}
	if c.Listen == "" {
		errs = append(errs, errors.New("listen: empty; give an address such as :8080"))
	}
	if c.DataDir == "" {
		errs = append(errs, errors.New("data_dir: empty; give a directory such as .doraflow"))
	}
	if _, err := ParseClickHouseDSN(c.ClickHouseDSN); err != nil {
		errs = append(errs, err)
	}
	for _, r := range c.ClickHouse.Cluster {
		if !(r == '_' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z') {
			errs = append(errs, fmt.Errorf("clickhouse.cluster: %q; a cluster name holds only letters, digits and _", c.ClickHouse.Cluster))
			break
		}
	}
	if len(c.Environments.Production) == 0 {
		errs = append(errs, errors.New("environments.production: empty; list at least one environment name, e.g. production"))
	}
	if c.IncidentLookback <= 0 {
		errs = append(errs, fmt.Errorf("incident_lookback: %s; must be positive, e.g. 72h", c.IncidentLookback))
	}
	if c.Collector.MaxBodyBytes <= 0 {
		errs = append(errs, fmt.Errorf("collector.max_body_bytes: %d; must be positive", c.Collector.MaxBodyBytes))
	}
	if c.Collector.MaxInflightBytes < c.Collector.MaxBodyBytes {
		errs = append(errs, fmt.Errorf("collector.max_inflight_bytes: %d is less than collector.max_body_bytes (%d), so a body of the largest size allowed could never be read; raise it (default %d, 256 MiB)",
			c.Collector.MaxInflightBytes, c.Collector.MaxBodyBytes, Default().Collector.MaxInflightBytes))
	}
	if c.Collector.MaxInflightPublishes < 1 {
		errs = append(errs, fmt.Errorf("collector.max_inflight_publishes: %d; must be at least 1 (default %d)", c.Collector.MaxInflightPublishes, Default().Collector.MaxInflightPublishes))
	}
	if c.AdminListen != "" && c.AdminListen == c.Listen && !strings.HasSuffix(c.Listen, ":0") {
		errs = append(errs, fmt.Errorf("admin_listen: %q is listen too; give another address, or leave it empty to serve the admin endpoints on listen", c.AdminListen))
	}
	if c.Collector.PublishTimeout <= 0 {
		errs = append(errs, fmt.Errorf("collector.publish_timeout: %s; must be positive", c.Collector.PublishTimeout))
	}
	switch r := c.NATS.Replicas; {
	case r < 1 || r > 5:
		errs = append(errs, fmt.Errorf("nats.replicas: %d; must be between 1 and 5 (JetStream's limit): 1 on a single server, 3 on a cluster", r))
	case r > 1 && c.NATSURL == "":
		errs = append(errs, fmt.Errorf("nats.replicas: %d, but nats_url is empty, so the bus is the embedded single server, which holds one copy; set nats_url to a JetStream cluster or replicas to 1", r))
	}
	errs = append(errs, c.NATS.validateAuth(c.NATSURL)...)
	errs = append(errs, c.ClickHouse.TLS.validate("clickhouse.tls")...)
	recomputed := c.Processor.Retention.Keep + c.Processor.Retention.Margin
	for _, l := range []struct {
		name  string
		limit StreamLimit
	}{{"nats.raw", c.NATS.Raw}, {"nats.events", c.NATS.Events}, {"nats.dead_letter", c.NATS.DeadLetter}} {
		switch {
		case l.limit.MaxAge < 0 || l.limit.MaxBytes < 0:
			errs = append(errs, fmt.Errorf("%s: max_age %s, max_bytes %d; must not be negative", l.name, l.limit.MaxAge, l.limit.MaxBytes))
		case l.limit.MaxAge > 0 && l.limit.MaxAge < 24*time.Hour:
			errs = append(errs, fmt.Errorf("%s.max_age: %s; must be at least 24h, the window in which redeliveries are recognised", l.name, l.limit.MaxAge))
		case l.name != "nats.dead_letter" && l.limit.MaxAge > 0 && l.limit.MaxAge < recomputed:
			errs = append(errs, fmt.Errorf("%s.max_age: %s is shorter than processor.retention keep + margin (%s): facts in between could no longer be recomputed (replay, a processor starting afresh) and would be retracted; raise it, or leave it 0 to derive it", l.name, l.limit.MaxAge, recomputed))
		}
	}
	if c.Processor.BatchSize <= 0 {
		errs = append(errs, fmt.Errorf("processor.batch_size: %d; must be positive", c.Processor.BatchSize))
	}
	if c.Processor.FlushInterval <= 0 {
		errs = append(errs, fmt.Errorf("processor.flush_interval: %s; must be positive", c.Processor.FlushInterval))
	}
	if c.Processor.SnapshotInterval <= 0 {
		errs = append(errs, fmt.Errorf("processor.snapshot_interval: %s; must be positive, e.g. 30s", c.Processor.SnapshotInterval))
	}
	if r := c.Processor.Retention; r.Keep <= 0 || r.Margin < c.IncidentLookback {
		errs = append(errs, fmt.Errorf("processor.retention: keep %s, margin %s; keep must be positive and margin at least incident_lookback (%s), e.g. keep 400 days (9600h), margin 30 days (720h)",
			r.Keep, r.Margin, c.IncidentLookback))
	}
	if c.Processor.LeaseTTL < time.Second {
		errs = append(errs, fmt.Errorf("processor.lease_ttl: %s; must be at least 1s", c.Processor.LeaseTTL))
	}
	if c.Processor.AckWait < time.Second {
		errs = append(errs, fmt.Errorf("processor.ack_wait: %s; must be at least 1s", c.Processor.AckWait))
	}
	if c.Processor.Partitions < 1 || c.Processor.Partitions > 1024 {
		errs = append(errs, fmt.Errorf("processor.partitions: %d; must be between 1 and 1024", c.Processor.Partitions))
	}
	seen := map[string]bool{}
	for i, t := range c.Teams {
		switch {
		case t.Name == "":
			errs = append(errs, fmt.Errorf("teams[%d].name: empty", i))
		case t.Name == Unassigned:
			errs = append(errs, fmt.Errorf("teams[%d].name: %q is reserved for what no team claims", i, Unassigned))
		case seen[t.Name]:
			errs = append(errs, fmt.Errorf("teams[%d].name: %q appears twice", i, t.Name))
		}
		seen[t.Name] = true
		for _, p := range append(append([]string{}, t.Repos...), t.Services...) {
			if !doublestar.ValidatePattern(p) {
				errs = append(errs, fmt.Errorf("teams[%d] (%s): bad glob %q", i, t.Name, p))
			}
		}
	}
	return errors.Join(errs...)
}

// ClickHouseDSN is a parsed clickhouse://host:port[,host:port…]/database
// address.
type ClickHouseDSN struct {
	Addr     string // host:port, or several separated by commas
	Database string
	User     string
	Password string
	// TLS, when set, is how to reach the server over TLS (secure=true).
	TLS *TLS
}

// Hosts are the servers the DSN names, in the order a client tries them:
// replicas of one cluster, the next taking over when one is down.
func (d ClickHouseDSN) Hosts() []string { return strings.Split(d.Addr, ",") }

// The DSN's query parameters: TLS, and its files.
var dsnParams = []string{"secure", "ca_file", "cert_file", "key_file", "server_name"}

// ParseClickHouseDSN parses
// clickhouse://[user[:password]@]host:port[,host:port…]/database[?secure=true&ca_file=…&cert_file=…&key_file=…&server_name=…].
func ParseClickHouseDSN(dsn string) (ClickHouseDSN, error) {
	u, err := url.Parse(dsn)
	if err != nil {
		// url.Error quotes the whole DSN, password and all.
		var uerr *url.Error
		if errors.As(err, &uerr) {
			err = uerr.Err
		}
		return ClickHouseDSN{}, fmt.Errorf("clickhouse_dsn: does not parse as a URL: %w", err)
	}
	if u.Scheme != "clickhouse" || u.Host == "" {
		return ClickHouseDSN{}, fmt.Errorf("clickhouse_dsn %q: want clickhouse://host:port/database", u.Redacted())
	}
	db := strings.Trim(u.Path, "/")
	if db == "" {
		db = "doraflow"
	}
	for _, r := range db {
		if !(r == '_' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z') {
			return ClickHouseDSN{}, fmt.Errorf("clickhouse_dsn %q: database name %q may hold only letters, digits and _", u.Redacted(), db)
		}
	}
	out := ClickHouseDSN{Addr: u.Host, Database: db, User: "default"}
	for _, h := range out.Hosts() {
		if _, _, err := net.SplitHostPort(h); err != nil {
			return ClickHouseDSN{}, fmt.Errorf("clickhouse_dsn %q: server %q: want host:port", dsn, h)
		}
	}
	if u.User != nil {
		out.User = u.User.Username()
		out.Password, _ = u.User.Password()
	}
	q := u.Query()
	for name := range q {
		if !slices.Contains(dsnParams, name) {
			return ClickHouseDSN{}, fmt.Errorf("clickhouse_dsn %q: unknown parameter %q; known: %s", u.Redacted(), name, strings.Join(dsnParams, ", "))
		}
	}
	t := TLS{CAFile: q.Get("ca_file"), CertFile: q.Get("cert_file"), KeyFile: q.Get("key_file"), ServerName: q.Get("server_name")}
	switch secure := q.Get("secure"); secure {
	case "", "false":
	case "true":
		t.Enabled = true
	default:
		return ClickHouseDSN{}, fmt.Errorf("clickhouse_dsn %q: secure=%q; want true or false", u.Redacted(), secure)
	}
	if t.Set() {
		if (t.CertFile == "") != (t.KeyFile == "") {
			return ClickHouseDSN{}, fmt.Errorf("clickhouse_dsn %q: cert_file and key_file go together: give both, or neither", u.Redacted())
		}
		t.Enabled = true
		out.TLS = &t
	}
	return out, nil
}

// IsProduction reports whether env names a production environment
// (case-insensitive).
func (c *Config) IsProduction(env string) bool {
	for _, p := range c.Environments.Production {
		if strings.EqualFold(p, env) {
			return true
		}
	}
	return false
}

// TeamOfRepo is the team that owns repo (first match in file order).
func (c *Config) TeamOfRepo(repo string) string {
	return c.match(repo, func(t Team) []string { return t.Repos })
}

// TeamOfService is the team that owns an incident-side service. A service
// named like a repository that no services glob claims belongs to that
// repository's team (incidents raised as Git host issues use the repo as the
// service).
func (c *Config) TeamOfService(service string) string {
	if t := c.match(service, func(t Team) []string { return t.Services }); t != Unassigned {
		return t
	}
	return c.TeamOfRepo(service)
}

func (c *Config) match(name string, patterns func(Team) []string) string {
	for _, t := range c.Teams {
		for _, p := range patterns(t) {
			if ok, _ := doublestar.Match(p, name); ok {
				return t.Name
			}
		}
	}
	return Unassigned
}

// Warnings are what in the configuration is valid but likely a mistake,
// for the log at start: a repos glob without a slash, which no owner/name
// (or group/project) path matches.
func (c *Config) Warnings() []string {
	var out []string
	for _, t := range c.Teams {
		for _, p := range t.Repos {
			if staticallyUnmatched(p) {
				out = append(out, fmt.Sprintf("team %s: repos glob %q matches no repository: repositories are owner/name (or group/project) paths; write e.g. \"acme/%s\"", t.Name, p, p))
			}
		}
	}
	return out
}

// UnmatchedGlobs are warnings for the team globs that match none of the
// repositories and services doraflow has seen (entities as "repo:owner/name"
// and "service:name"): a typo leaves a team empty and its work unassigned.
// Nothing is said when nothing has been seen yet.
func (c *Config) UnmatchedGlobs(entities []string) []string {
	var repos, services []string
	for _, e := range entities {
		if r, ok := strings.CutPrefix(e, "repo:"); ok {
			repos = append(repos, r)
		} else if s, ok := strings.CutPrefix(e, "service:"); ok {
			services = append(services, s)
		}
	}
	matchesAny := func(p string, names []string) bool {
		for _, n := range names {
			if ok, _ := doublestar.Match(p, n); ok {
				return true
			}
		}
		return false
	}
	var out []string
	for _, t := range c.Teams {
		if len(repos) > 0 {
			for _, p := range t.Repos {
				if staticallyUnmatched(p) {
					continue // Warnings says so
				}
				if !matchesAny(p, repos) {
					out = append(out, fmt.Sprintf("team %s: repos glob %q matches none of the %d repositories seen so far", t.Name, p, len(repos)))
				}
			}
		}
		if len(services) > 0 {
			for _, p := range t.Services {
				if !matchesAny(p, services) {
					out = append(out, fmt.Sprintf("team %s: services glob %q matches none of the %d services seen so far", t.Name, p, len(services)))
				}
			}
		}
	}
	return out
}

// staticallyUnmatched reports whether a repos glob can match no
// owner/name path: it has no slash and no **.
func staticallyUnmatched(p string) bool {
	return !strings.Contains(p, "/") && !strings.Contains(p, "**")
}
