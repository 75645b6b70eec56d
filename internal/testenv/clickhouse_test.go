package testenv

import (
	"context"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
)

func TestMain(m *testing.M) { os.Exit(RunClickHouse(m)) }

func connect(t *testing.T, dsn string) clickhouse.Conn {
	t.Helper()
	opts, err := clickhouse.ParseDSN(dsn)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := clickhouse.Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func TestClickHouse(t *testing.T) {
	dsnA, dsnB := ClickHouse(t), ClickHouse(t)
	if dsnA == dsnB {
		t.Fatalf("two calls returned the same DSN %q", dsnA)
	}
	if !strings.HasPrefix(dsnA, "clickhouse://"+ClickHouseAddr()+"/test_") {
		t.Fatalf("unexpected DSN %q (addr %q)", dsnA, ClickHouseAddr())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	a, b := connect(t, dsnA), connect(t, dsnB)

	if err := a.Exec(ctx, `CREATE TABLE t (k String, v UInt64, ts DateTime)
		ENGINE = ReplacingMergeTree(v) PARTITION BY toYYYYMM(ts) ORDER BY (k)`); err != nil {
		t.Fatal(err)
	}
	batch, err := a.PrepareBatch(ctx, "INSERT INTO t (k, v, ts)")
	if err != nil {
		t.Fatal(err)
	}
	ts := time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC)
	for _, r := range []struct {
		k string
		v uint64
	}{{"a", 1}, {"b", 2}, {"a", 3}} {
		if err := batch.Append(r.k, r.v, ts); err != nil {
			t.Fatal(err)
		}
	}
	if err := batch.Send(); err != nil {
		t.Fatal(err)
	}

	// FINAL collapses the two "a" rows to the one with the highest v.
	rows, err := a.Query(ctx, "SELECT k, v, ts FROM t FINAL ORDER BY k")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for rows.Next() {
		var (
			k  string
			v  uint64
			at time.Time
		)
		if err := rows.Scan(&k, &v, &at); err != nil {
			t.Fatal(err)
		}
		if !at.Equal(ts) {
			t.Errorf("row %s: ts = %v, want %v", k, at, ts)
		}
		got = append(got, k+"="+strconv.FormatUint(v, 10))
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	rows.Close()
	if want := "a=3 b=2"; strings.Join(got, " ") != want {
		t.Errorf("rows = %q, want %q", strings.Join(got, " "), want)
	}

	// The second database is separate: it has no table t.
	var n uint64
	if err := b.QueryRow(ctx, "SELECT count() FROM system.tables WHERE database = currentDatabase()").Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Errorf("second database has %d tables, want 0", n)
	}
	if err := b.Exec(ctx, "SELECT count() FROM t"); err == nil {
		t.Error("table t is visible from the second database")
	}
}
