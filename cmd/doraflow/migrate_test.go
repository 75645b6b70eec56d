package main

import (
	"context"
	"strings"
	"sync"
	"testing"

	"github.com/doraflow/doraflow/internal/testenv"
	"github.com/doraflow/doraflow/pkg/bus"
)

// Several `doraflow migrate` run together against an external NATS and a new
// database: every one succeeds, and each migration is applied (and
// recorded) once, since they take turns under the lock on the bus.
func TestMigrateCommandsTogetherApplyOnce(t *testing.T) {
	nats, err := bus.Open(context.Background(), bus.Options{DataDir: t.TempDir(), Port: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer nats.Close()
	dsn := testenv.ClickHouse(t)
	t.Setenv("DORAFLOW_CLICKHOUSE_DSN", dsn)
	t.Setenv("DORAFLOW_NATS_URL", nats.ClientURL())
	const commands = 4
	outs := make([]string, commands)
	errs := make([]error, commands)
	var wg sync.WaitGroup
	for i := range commands {
		wg.Go(func() { outs[i], errs[i] = run(t, "migrate") })
	}
	wg.Wait()
	applying := 0
	for i, err := range errs {
		if err != nil {
			t.Fatalf("migrate %d: %v", i, err)
		}
		if strings.Contains(outs[i], "applied 0001_facts") {
			applying++
		} else if !strings.Contains(outs[i], "up to date") {
			t.Errorf("migrate %d printed %q", i, outs[i])
		}
	}
	if applying != 1 {
		t.Errorf("%d of %d commands applied the first migration, want 1", applying, commands)
	}
	conn, db := testenv.Conn(t, dsn)
	var versions, records uint64
	if err := conn.QueryRow(context.Background(), "SELECT uniqExact(version), count() FROM "+db+".schema_migrations").Scan(&versions, &records); err != nil {
		t.Fatal(err)
	}
	if versions == 0 || records != versions {
		t.Errorf("schema_migrations: %d versions in %d records, want each once", versions, records)
	}
}
