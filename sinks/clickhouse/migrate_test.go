package clickhouse

import (
	"context"
	"io/fs"
	"slices"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/doraflow/doraflow/processor/correlate"
)

// withMigration is the embedded migrations plus one more.
func withMigration(t *testing.T, name, sql string) fstest.MapFS {
	t.Helper()
	files := fstest.MapFS{}
	err := fs.WalkDir(migrations, "migrations", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := migrations.ReadFile(path)
		files[path] = &fstest.MapFile{Data: data}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	files["migrations/"+name+".up.sql"] = &fstest.MapFile{Data: []byte(sql)}
	return files
}

// A later migration that alters a table, as the next schema change will,
// runs once against the configured database with its data in place; a
// statement naming a table without {db} is refused before anything runs.
func TestAlterMigrationOnExistingData(t *testing.T) {
	s := open(t)
	ctx := context.Background()
	if _, err := s.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	d := correlate.DeploymentFact{Repo: "a/b", ID: "1", Environment: "production", Production: true,
		FinishedAt: time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)}
	if err := s.Write(ctx, correlate.Facts{Deployments: []correlate.Row[correlate.DeploymentFact]{{Fact: d, Live: true}}}, 1); err != nil {
		t.Fatal(err)
	}
	alter := withMigration(t, "0099_note", "-- a column with a default, as a schema change adds one\nALTER TABLE {db}.deployments ADD COLUMN note String DEFAULT 'none';\n")
	for run, want := range [][]string{{"0099_note"}, nil} {
		applied, err := s.migrate(ctx, alter)
		if err != nil || !slices.Equal(applied, want) {
			t.Fatalf("run %d: applied %v, %v; want %v", run+1, applied, err, want)
		}
	}
	var rows uint64
	var note string
	if err := s.conn.QueryRow(ctx, "SELECT count(), any(note) FROM "+s.table("deployments")).Scan(&rows, &note); err != nil {
		t.Fatal(err)
	}
	if rows != 1 || note != "none" {
		t.Fatalf("after the migration: %d rows, note %q; want the row kept, with the default", rows, note)
	}

	unqualified := withMigration(t, "0100_bare", "ALTER TABLE deployments ADD COLUMN bare UInt8;\n")
	_, err := s.migrate(ctx, unqualified)
	if err == nil || !strings.Contains(err.Error(), "{db}.table") {
		t.Fatalf("an unqualified statement: %v; want it refused", err)
	}
	if err := s.conn.Exec(ctx, "SELECT bare FROM "+s.table("deployments")+" LIMIT 0"); err == nil {
		t.Fatal("the refused statement ran")
	}
}

// Every embedded statement runs against the configured database.
func TestEmbeddedMigrationsAreQualified(t *testing.T) {
	files, err := fs.Glob(migrations, "migrations/*.up.sql")
	if err != nil || len(files) == 0 {
		t.Fatal(files, err)
	}
	for _, f := range files {
		raw, _ := migrations.ReadFile(f)
		for _, stmt := range statements(string(raw)) {
			q, err := qualify(stmt, "somedb", "")
			if err != nil {
				t.Errorf("%s: %v", f, err)
				continue
			}
			if !strings.Contains(q, "somedb.") {
				t.Errorf("%s: %.80q names no table in the database", f, q)
			}
		}
	}
}

// On a cluster the schema is created on every replica with replicated
// engines, alters run on every replica, and data statements are as on one
// server.
func TestClusterDDL(t *testing.T) {
	cases := []struct{ name, stmt, want string }{
		{"replacing", "CREATE TABLE IF NOT EXISTS deployments (\n    repo String,\n    version UInt64\n) ENGINE = ReplacingMergeTree(version)\nPARTITION BY toYYYYMM(finished_at)\nORDER BY (repo)",
			"CREATE TABLE IF NOT EXISTS db.deployments ON CLUSTER main (\n    repo String,\n    version UInt64\n) ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/db/deployments', '{replica}', version)\nPARTITION BY toYYYYMM(finished_at)\nORDER BY (repo)"},
		{"summing a tuple", "CREATE TABLE IF NOT EXISTS pipeline_minutes (events UInt64) ENGINE = SummingMergeTree((events, lag_seconds_sum)) ORDER BY minute",
			"CREATE TABLE IF NOT EXISTS db.pipeline_minutes ON CLUSTER main (events UInt64) ENGINE = ReplicatedSummingMergeTree('/clickhouse/tables/{shard}/db/pipeline_minutes', '{replica}', (events, lag_seconds_sum)) ORDER BY minute"},
		{"plain, no parameters", "CREATE TABLE IF NOT EXISTS schema_migrations (version UInt32) ENGINE = MergeTree ORDER BY version",
			"CREATE TABLE IF NOT EXISTS db.schema_migrations ON CLUSTER main (version UInt32) ENGINE = ReplicatedMergeTree('/clickhouse/tables/{shard}/db/schema_migrations', '{replica}') ORDER BY version"},
		{"alter", "ALTER TABLE {db}.deployments ADD COLUMN note String DEFAULT ''",
			"ALTER TABLE db.deployments ON CLUSTER main ADD COLUMN note String DEFAULT ''"},
		{"data", "INSERT INTO {db}.repo_days SELECT * FROM {db}.changes", "INSERT INTO db.repo_days SELECT * FROM db.changes"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := qualify(tc.stmt, "db", "main")
			if err != nil || got != tc.want {
				t.Fatalf("got %v\n%s\nwant\n%s", err, got, tc.want)
			}
		})
	}
	// Every embedded migration has a replicated form the server parses: no
	// cluster is configured on the test server (two replicas need a
	// coordination service), so it may only refuse the cluster itself.
	s := open(t)
	files, _ := fs.Glob(migrations, "migrations/*.up.sql")
	for _, f := range files {
		raw, _ := migrations.ReadFile(f)
		for _, stmt := range statements(string(raw)) {
			q, err := qualify(stmt, s.database, "main")
			switch {
			case err != nil:
				t.Errorf("%s: %v", f, err)
			case !strings.HasPrefix(q, "CREATE"):
			case !strings.Contains(q, " ON CLUSTER main ") || !strings.Contains(q, "ENGINE = Replicated"):
				t.Errorf("%s: %.120q is not replicated", f, q)
			default:
				err := s.conn.Exec(context.Background(), q)
				if err == nil || strings.Contains(err.Error(), "Syntax error") || !strings.Contains(err.Error(), "main") {
					t.Errorf("%s: %.80q: %v; want only the unknown cluster refused", f, q, err)
				}
			}
		}
	}
}
