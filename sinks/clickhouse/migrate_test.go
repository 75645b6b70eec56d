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
			q, err := qualify(stmt, "somedb")
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
