package clickhouse

import (
	"context"
	"io"
	"log/slog"
	"os"
	"reflect"
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

// WrittenSince reads every fact of the named repositories with a row above
// the version, with all its rows, retracted ones too, and nothing else.
func TestWrittenSince(t *testing.T) {
	s := open(t)
	ctx := context.Background()
	if _, err := s.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	t1 := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	t2 := t1.Add(time.Hour)
	change := func(repo, sha string, at time.Time) correlate.ChangeFact {
		return correlate.ChangeFact{Repo: repo, SHA: sha, DeploymentID: "d", CommittedAt: t1.Add(-time.Hour), DeployedAt: at}
	}
	deploy := correlate.DeploymentFact{Repo: "a/b", ID: "d1", Environment: "production", SHA: "c1", Status: "success",
		FinishedAt: t1, Production: true, Changes: 1}
	old, moved, untouched, elsewhere := change("a/b", "c1", t1), change("a/b", "c1", t2), change("a/b", "c2", t1), change("x/y", "c1", t1)
	rows := func(changes ...correlate.Row[correlate.ChangeFact]) correlate.Facts {
		return correlate.Facts{Changes: changes}
	}
	for _, w := range []struct {
		facts   correlate.Facts
		version uint64
	}{
		{correlate.Facts{Deployments: []correlate.Row[correlate.DeploymentFact]{{Fact: deploy, Live: true}},
			Changes: []correlate.Row[correlate.ChangeFact]{{Fact: old, Live: true}, {Fact: untouched, Live: true}}}, 10},
		{rows(correlate.Row[correlate.ChangeFact]{Fact: old}, correlate.Row[correlate.ChangeFact]{Fact: moved, Live: true}), 20},
		{rows(correlate.Row[correlate.ChangeFact]{Fact: elsewhere, Live: true}), 30},
	} {
		if err := s.Write(ctx, w.facts, w.version); err != nil {
			t.Fatal(err)
		}
	}
	got, err := s.WrittenSince(ctx, []string{"a/b"}, 15)
	if err != nil {
		t.Fatal(err)
	}
	slices.SortFunc(got.Changes, func(a, b correlate.Row[correlate.ChangeFact]) int {
		return a.Fact.DeployedAt.Compare(b.Fact.DeployedAt)
	})
	want := []correlate.Row[correlate.ChangeFact]{{Fact: old, Live: false}, {Fact: moved, Live: true}}
	if len(got.Deployments) != 0 || len(got.Changes) != 2 || got.Changes[0].Live || got.Changes[0].Fact.DeployedAt != old.DeployedAt ||
		!reflect.DeepEqual(got.Changes[1], want[1]) {
		t.Errorf("written since 15: %+v, want no deployments and changes %+v", got, want)
	}
	if got, err := s.WrittenSince(ctx, []string{"a/b"}, 5); err != nil || len(got.Deployments) != 1 || len(got.Changes) != 3 {
		t.Errorf("written since 5: %+v %v, want the deployment and all three change rows", got, err)
	}
}
