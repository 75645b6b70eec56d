package clickhouse

import (
	"context"
	"io"
	"log/slog"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/doraflow/doraflow/internal/testenv"
	"github.com/doraflow/doraflow/processor/correlate"
)

func TestMain(m *testing.M) { os.Exit(testenv.RunClickHouse(m)) }

func open(t testing.TB) *Store {
	t.Helper()
	return openDSN(t, testenv.ClickHouse(t), quietLogger())
}

func openDSN(t testing.TB, dsn string, logger *slog.Logger) *Store {
	t.Helper()
	s, err := Open(context.Background(), dsn, logger)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func TestMigrateIsRerunnable(t *testing.T) {
	s := open(t)
	ctx := context.Background()
	first, err := s.Migrate(ctx)
	if err != nil || len(first) == 0 {
		t.Fatalf("first run: %v %v", first, err)
	}
	again, err := s.Migrate(ctx)
	if err != nil || len(again) != 0 {
		t.Fatalf("second run applied %v, %v", again, err)
	}
}

// A fact whose time moved is retracted at the old time and written at the
// new one; the latest live rows are what Facts reads back.
func TestWriteRetractsMovedFacts(t *testing.T) {
	s := open(t)
	ctx := context.Background()
	if _, err := s.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	t1 := time.Date(2026, 1, 31, 23, 0, 0, 0, time.UTC)
	t2 := time.Date(2026, 2, 1, 1, 0, 0, 0, time.UTC) // another partition
	change := correlate.ChangeFact{Repo: "a/b", SHA: "c1", DeploymentID: "2", CommittedAt: t1.Add(-time.Hour), DeployedAt: t2}
	if err := s.Write(ctx, correlate.Facts{Changes: []correlate.Row[correlate.ChangeFact]{{Fact: change, Live: true}}}, 1); err != nil {
		t.Fatal(err)
	}
	moved := change
	moved.DeploymentID, moved.DeployedAt = "1", t1
	if err := s.Write(ctx, correlate.Facts{Changes: []correlate.Row[correlate.ChangeFact]{{Fact: change, Live: false}, {Fact: moved, Live: true}}}, 2); err != nil {
		t.Fatal(err)
	}
	got, err := s.Facts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got.Changes, []correlate.Row[correlate.ChangeFact]{{Fact: moved, Live: true}}) {
		t.Errorf("stored changes: %+v", got.Changes)
	}
}
