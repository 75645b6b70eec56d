package serve_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/doraflow/doraflow/internal/serve"
	"github.com/doraflow/doraflow/internal/testenv"
)

// Processes starting together against a new database all start, and each
// migration is applied once: one holds the lock on the bus, the others find
// the migrations applied.
func TestProcessesStartingTogetherMigrateOnce(t *testing.T) {
	ctx := context.Background()
	nats := externalNATS(t)
	dsn := testenv.ClickHouse(t)
	cfg := testConfig(t, dsn)
	cfg.NATSURL = nats.ClientURL()
	const processes = 4
	servers := make([]*serve.Server, processes)
	errs := make([]error, processes)
	var wg sync.WaitGroup
	for i := range processes {
		wg.Go(func() {
			sctx, cancel := context.WithTimeout(ctx, 60*time.Second)
			defer cancel()
			servers[i], errs[i] = serve.Start(sctx, cfg, serve.RoleProcessor, quiet())
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("process %d: %v", i, err)
		}
		defer stop(servers[i])
	}
	conn, db := testenv.Conn(t, dsn)
	rows, err := conn.Query(ctx, "SELECT version, count() FROM "+db+".schema_migrations GROUP BY version ORDER BY version")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	versions := 0
	for rows.Next() {
		var version uint32
		var n uint64
		if err := rows.Scan(&version, &n); err != nil {
			t.Fatal(err)
		}
		versions++
		if n != 1 {
			t.Errorf("migration %d applied %d times", version, n)
		}
	}
	if versions == 0 {
		t.Fatal("no migration recorded")
	}
}
