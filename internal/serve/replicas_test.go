package serve_test

import (
	"context"
	"testing"
	"time"

	"github.com/doraflow/doraflow/internal/report"
	"github.com/doraflow/doraflow/internal/testenv"
	"github.com/doraflow/doraflow/pkg/config"
	"github.com/doraflow/doraflow/pkg/dora"
	"github.com/doraflow/doraflow/sinks/clickhouse"
)

// With clickhouse.cluster on two replicas of ClickHouse 18.16 (coordinated
// by ZooKeeper), the processor writes through the loss of the replica it
// writes to, the other holds every fact, and the lost one catches up when
// it returns: each answers the same report as a single server. (Replication
// is asynchronous: rows a replica took just before it died reach the other
// when it returns, so the test lets the first half replicate first.)
func TestReplicatedClickHouseLosesAReplica(t *testing.T) {
	replicas := testenv.ClickHouseReplicas(t, 2)
	cfg := testConfig(t, replicas.DSN())
	cfg.ClickHouse.Cluster = testenv.ReplicaCluster
	srv := start(t, cfg)
	defer stop(srv)
	deliveries := scenario()
	for _, d := range deliveries[:8] {
		post(t, srv, d)
	}
	reportOf(t, srv, cfg)
	replicas.Sync(1)

	replicas.Kill(0)
	for _, d := range deliveries[8:] {
		post(t, srv, d)
	}
	assertReport(t, reportOf(t, srv, cfg), expected())
	assertReport(t, replicaReport(t, replicas.DSN(1), cfg), expected())

	replicas.Restart(0)
	deadline := time.Now().Add(30 * time.Second)
	for {
		got := replicaReport(t, replicas.DSN(0), cfg)
		if sameReport(got, expected()) {
			break
		}
		if time.Now().After(deadline) {
			assertReport(t, got, expected())
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// replicaReport is the report that one replica answers on its own.
func replicaReport(t *testing.T, dsn string, cfg config.Config) report.Report {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	store, err := clickhouse.Open(ctx, dsn, quiet())
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	var teams []string
	for _, tm := range cfg.Teams {
		teams = append(teams, tm.Name)
	}
	r, err := report.Build(ctx, store, dora.Benchmark2023, at(1, 0, 0), at(11, 0, 0), teams, "")
	if err != nil {
		t.Fatal(err)
	}
	return r
}
