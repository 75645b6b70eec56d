// Package clickhouse is doraflow's fact store: schema migrations, batched
// idempotent writes of the processor's facts, and the metric queries.
package clickhouse

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"embed"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	ch "github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/doraflow/doraflow/pkg/config"
)

//go:embed migrations/*.up.sql
var migrations embed.FS

// Store is a connection to doraflow's ClickHouse database.
type Store struct {
	conn     driver.Conn
	database string
	// cluster: the ClickHouse cluster the schema is replicated on (empty:
	// one server).
	cluster string
	logger  *slog.Logger
}

// OnCluster makes the migrations create the schema on every replica of the
// named cluster (ON CLUSTER, Replicated… engines); the queries are the same.
func (s *Store) OnCluster(cluster string) { s.cluster = cluster }

// Open connects to the server named by dsn. The database need not exist yet
// (Migrate creates it).
func Open(ctx context.Context, dsn string, logger *slog.Logger) (*Store, error) {
	d, err := config.ParseClickHouseDSN(dsn)
	if err != nil {
		return nil, err
	}
	tlsConfig, err := TLSConfig(d.TLS)
	if err != nil {
		return nil, err
	}
	conn, err := ch.Open(&ch.Options{
		// Replicas in the DSN's order: a connection goes to the first that
		// answers.
		Addr:             d.Hosts(),
		ConnOpenStrategy: ch.ConnOpenInOrder,
		Auth:             ch.Auth{Username: d.User, Password: d.Password},
		TLS:              tlsConfig,
		DialTimeout:      5 * time.Second,
		// Only integer and bool settings here: string settings break every
		// query on 18.16.
		MaxOpenConns: 8,
	})
	if err != nil {
		return nil, fmt.Errorf("clickhouse: open %s: %w", d.Addr, err)
	}
	s := &Store{conn: conn, database: d.Database, logger: logger}
	if err := conn.Ping(ctx); err != nil {
		conn.Close()
		return nil, fmt.Errorf("clickhouse: ping %s: %w", d.Addr, err)
	}
	return s, nil
}

// TLSConfig is the client TLS configuration of t (nil: no TLS): the
// system's roots unless a CA file is given, a client certificate if one
// is.
func TLSConfig(t *config.TLS) (*tls.Config, error) {
	if t == nil {
		return nil, nil
	}
	c := &tls.Config{ServerName: t.ServerName, MinVersion: tls.VersionTLS12}
	if t.CAFile != "" {
		pem, err := os.ReadFile(t.CAFile)
		if err != nil {
			return nil, fmt.Errorf("clickhouse: TLS CA file: %w", err)
		}
		c.RootCAs = x509.NewCertPool()
		if !c.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("clickhouse: TLS CA file %s holds no PEM certificate", t.CAFile)
		}
	}
	if t.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("clickhouse: TLS client certificate: %w", err)
		}
		c.Certificates = []tls.Certificate{cert}
	}
	return c, nil
}

// Close closes the connection.
func (s *Store) Close() error { return s.conn.Close() }

// Ready reports whether the server answers.
func (s *Store) Ready(ctx context.Context) error {
	if err := s.conn.Ping(ctx); err != nil {
		return fmt.Errorf("clickhouse: %w", err)
	}
	return nil
}

// Database is the database the store uses.
func (s *Store) Database() string { return s.database }

// table qualifies a table name with the store's database.
func (s *Store) table(name string) string { return s.database + "." + name }

// Migrate creates the database if absent and applies the embedded migrations
// not yet recorded, in order. Re-running it changes nothing. Processes
// starting together must not run it at once (serve holds a lock on the bus
// around it): a migration is recorded only after its statements ran.
func (s *Store) Migrate(ctx context.Context) (applied []string, err error) {
	return s.migrate(ctx, migrations)
}

func (s *Store) migrate(ctx context.Context, fsys fs.FS) (applied []string, err error) {
	if err := s.conn.Exec(ctx, "CREATE DATABASE IF NOT EXISTS "+s.database+onCluster(s.cluster)); err != nil {
		return nil, fmt.Errorf("clickhouse: create database %s: %w", s.database, err)
	}
	recorder, err := qualify(`CREATE TABLE IF NOT EXISTS schema_migrations (
		version UInt32, name String, applied_at DateTime('UTC')
	) ENGINE = MergeTree ORDER BY version`, s.database, s.cluster)
	if err != nil {
		return nil, err
	}
	if err := s.conn.Exec(ctx, recorder); err != nil {
		return nil, fmt.Errorf("clickhouse: create schema_migrations: %w", err)
	}
	// A partial read would apply recorded migrations again.
	done := map[uint32]bool{}
	if err := s.query(ctx, "read schema_migrations", "SELECT version FROM "+s.table("schema_migrations"), func(rows driver.Rows) error {
		var v uint32
		if err := rows.Scan(&v); err != nil {
			return err
		}
		done[v] = true
		return nil
	}); err != nil {
		return nil, err
	}
	files, err := fs.Glob(fsys, "migrations/*.up.sql")
	if err != nil {
		return nil, err
	}
	slices.Sort(files)
	for _, f := range files {
		name := strings.TrimSuffix(strings.TrimPrefix(f, "migrations/"), ".up.sql")
		num, err := strconv.ParseUint(strings.SplitN(name, "_", 2)[0], 10, 32)
		if err != nil {
			return nil, fmt.Errorf("clickhouse: migration %s: name must start with a number", f)
		}
		if done[uint32(num)] {
			continue
		}
		raw, err := fs.ReadFile(fsys, f)
		if err != nil {
			return nil, err
		}
		for _, stmt := range statements(string(raw)) {
			q, err := qualify(stmt, s.database, s.cluster)
			if err != nil {
				return nil, fmt.Errorf("clickhouse: migration %s: %w", name, err)
			}
			if err := s.conn.Exec(ctx, q); err != nil {
				return nil, fmt.Errorf("clickhouse: migration %s: %w", name, err)
			}
		}
		batch, err := s.conn.PrepareBatch(ctx, "INSERT INTO "+s.table("schema_migrations")+" (version, name, applied_at)")
		if err != nil {
			return nil, fmt.Errorf("clickhouse: record migration %s: %w", name, err)
		}
		if err := batch.Append(uint32(num), name, time.Now().UTC()); err != nil {
			return nil, fmt.Errorf("clickhouse: record migration %s: %w", name, err)
		}
		if err := batch.Send(); err != nil {
			return nil, fmt.Errorf("clickhouse: record migration %s: %w", name, err)
		}
		applied = append(applied, name)
	}
	return applied, nil
}

// statements splits a migration file on semicolons at line ends, dropping
// comment lines.
func statements(sql string) []string {
	var out []string
	var cur strings.Builder
	for _, line := range strings.Split(sql, "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "--") {
			continue
		}
		cur.WriteString(line)
		cur.WriteString("\n")
		if strings.HasSuffix(strings.TrimSpace(line), ";") {
			if s := strings.TrimSuffix(strings.TrimSpace(cur.String()), ";"); s != "" {
				out = append(out, s)
			}
			cur.Reset()
		}
	}
	if s := strings.TrimSpace(cur.String()); s != "" {
		out = append(out, s)
	}
	return out
}

// qualify puts the database before the table a CREATE TABLE names, and in
// place of {db} in other statements, so the migrations need not know it. A
// statement that is neither names its tables unqualified, so it would run
// against the connection's default database: refused. On a cluster, CREATE
// TABLE and ALTER TABLE run ON CLUSTER and the MergeTree engines become
// their Replicated… kind, each table at its own path in the coordination
// service; data statements run on one replica and replicate.
func qualify(stmt, database, cluster string) (string, error) {
	const create = "CREATE TABLE IF NOT EXISTS "
	if rest, ok := strings.CutPrefix(stmt, create); ok {
		rest = strings.ReplaceAll(rest, "{db}", database)
		if cluster == "" {
			return create + database + "." + rest, nil
		}
		end := strings.IndexAny(rest, " \n(")
		if end < 0 {
			return "", fmt.Errorf("statement names no table: %.60q", stmt)
		}
		table := rest[:end]
		replicated, err := replicatedEngine(rest[end:], database, table)
		if err != nil {
			return "", err
		}
		return create + database + "." + table + onCluster(cluster) + replicated, nil
	}
	if !strings.Contains(stmt, "{db}.") {
		return "", fmt.Errorf("statement names no table as {db}.table: %.60q", stmt)
	}
	q := strings.ReplaceAll(stmt, "{db}", database)
	const alter = "ALTER TABLE "
	if cluster != "" && strings.HasPrefix(q, alter) {
		end := strings.IndexAny(q[len(alter):], " \n")
		if end < 0 {
			return "", fmt.Errorf("statement alters no table: %.60q", stmt)
		}
		at := len(alter) + end
		q = q[:at] + onCluster(cluster) + q[at:]
	}
	return q, nil
}

// mergeTree matches a table's MergeTree-family engine and its parameters.
var mergeTree = regexp.MustCompile(`ENGINE\s*=\s*(Replacing|Summing)?MergeTree(\(([^()]|\([^()]*\))*\))?`)

// replicatedEngine turns the MergeTree engine of a CREATE TABLE's body
// into its replicated kind, keeping the engine's parameters.
func replicatedEngine(body, database, table string) (string, error) {
	m := mergeTree.FindStringSubmatchIndex(body)
	if m == nil {
		return "", fmt.Errorf("table %s: no MergeTree engine to replicate", table)
	}
	kind := ""
	if m[2] >= 0 {
		kind = body[m[2]:m[3]]
	}
	args := fmt.Sprintf("'/clickhouse/tables/{shard}/%s/%s', '{replica}'", database, table)
	if m[4] >= 0 {
		if params := strings.TrimSpace(body[m[4]+1 : m[5]-1]); params != "" {
			args += ", " + params
		}
	}
	return body[:m[0]] + "ENGINE = Replicated" + kind + "MergeTree(" + args + ")" + body[m[1]:], nil
}

func onCluster(cluster string) string {
	if cluster == "" {
		return ""
	}
	return " ON CLUSTER " + cluster
}
