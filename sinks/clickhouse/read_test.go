package clickhouse

import (
	"context"
	"fmt"
	"log/slog"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/doraflow/doraflow/internal/testenv"
	"github.com/doraflow/doraflow/pkg/config"
	"github.com/doraflow/doraflow/processor/correlate"
)

// A read cut in the middle of ClickHouse's answer is never taken for the
// whole answer: the reads the processor cannot go on without give the
// complete result once a retry gets through, or an error if none does —
// never a part of it.
func TestReadCutMidStream(t *testing.T) {
	ctx := context.Background()
	dsn := testenv.ClickHouse(t)
	direct := openDSN(t, dsn, quietLogger())
	if _, err := direct.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	// Big enough that each answer spans many packets and blocks, so a cut
	// lands inside one.
	if err := direct.Write(ctx, manyFacts(20000), 1); err != nil {
		t.Fatal(err)
	}
	d, err := config.ParseClickHouseDSN(dsn)
	if err != nil {
		t.Fatal(err)
	}
	proxy := testenv.NewProxy(t, d.Addr)
	logs := &testenv.LogBuffer{}
	viaProxy := openDSN(t, fmt.Sprintf("clickhouse://%s/%s", proxy.Addr(), d.Database),
		slog.New(slog.NewTextHandler(logs, nil)))

	since, until := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC)
	reads := []struct {
		name string
		// retried reads are the ones a caller cannot go on without: one cut
		// must not reach the caller. The others may fail, but only whole.
		retried bool
		read    func(context.Context, *Store) (any, error)
	}{
		{"Facts", true, func(ctx context.Context, s *Store) (any, error) {
			f, err := s.Facts(ctx)
			return sortedFacts(f), err
		}},
		{"Entities", true, func(ctx context.Context, s *Store) (any, error) {
			e, err := s.Entities(ctx)
			slices.Sort(e)
			return e, err
		}},
		{"Aggregates", false, func(ctx context.Context, s *Store) (any, error) {
			perTeam, total, err := s.Aggregates(ctx, since, until, "")
			return []any{perTeam, total}, err
		}},
	}
	for _, r := range reads {
		want, err := r.read(ctx, direct)
		if err != nil {
			t.Fatal(err)
		}
		// How long the whole answer is, through the proxy.
		before := proxy.FromTarget()
		if got, err := r.read(ctx, viaProxy); err != nil || !reflect.DeepEqual(got, want) {
			t.Fatalf("%s through the proxy, uncut: err %v, same result %t", r.name, err, reflect.DeepEqual(got, want))
		}
		size := proxy.FromTarget() - before
		for _, at := range []float64{0.02, 0.3, 0.6, 0.9} {
			cut := int64(float64(size) * at)
			t.Run(fmt.Sprintf("%s/once at %d of %d bytes", r.name, cut, size), func(t *testing.T) {
				logs.Reset()
				proxy.DropAfter(cut)
				got, err := r.read(ctx, viaProxy)
				switch {
				case err != nil && r.retried:
					t.Fatalf("a retry should get past one cut: %v", err)
				case err != nil:
					return // failed whole: the caller knows
				case !reflect.DeepEqual(got, want):
					t.Fatalf("partial result taken for the whole: %s", describe(got, want))
				case r.retried && !strings.Contains(logs.String(), "retrying"):
					t.Errorf("the failed read was not logged; logs:\n%s", logs)
				}
			})
			t.Run(fmt.Sprintf("%s/down at %d of %d bytes", r.name, cut, size), func(t *testing.T) {
				defer proxy.Restore()
				proxy.CutAfter(cut)
				readCtx, cancel := context.WithTimeout(ctx, 600*time.Millisecond)
				defer cancel()
				got, err := r.read(readCtx, viaProxy)
				if err == nil {
					t.Fatalf("no error from a read that never completed: %s", describe(got, want))
				}
				if !strings.HasPrefix(err.Error(), "clickhouse: ") {
					t.Errorf("error without context: %v", err)
				}
			})
		}
	}
}

// manyFacts are n deployments over n/10 repositories, a change each, and
// an incident per ten deployments.
func manyFacts(n int) correlate.Facts {
	var f correlate.Facts
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := range n {
		at := t0.Add(time.Duration(i) * time.Minute)
		repo := fmt.Sprintf("acme/repo-%04d", i/10)
		f.Deployments = append(f.Deployments, correlate.Row[correlate.DeploymentFact]{Live: true, Fact: correlate.DeploymentFact{
			Repo: repo, ID: fmt.Sprint(i), Service: repo, Environment: "production", SHA: fmt.Sprintf("%040x", i),
			Status: "success", FinishedAt: at, Production: true, Changes: 1}})
		f.Changes = append(f.Changes, correlate.Row[correlate.ChangeFact]{Live: true, Fact: correlate.ChangeFact{
			Repo: repo, SHA: fmt.Sprintf("%040x", i), DeploymentID: fmt.Sprint(i), CommittedAt: at.Add(-time.Hour), DeployedAt: at}})
		if i%10 == 0 {
			f.Incidents = append(f.Incidents, correlate.Row[correlate.IncidentFact]{Live: true, Fact: correlate.IncidentFact{
				ID: fmt.Sprint("pd:", i), Source: "pagerduty", Service: fmt.Sprintf("svc-%04d", i/10), OpenedAt: at,
				Attribution: "none"}})
		}
	}
	return f
}

// sortedFacts orders facts by key: ClickHouse returns them in no set order.
func sortedFacts(f correlate.Facts) correlate.Facts {
	slices.SortFunc(f.Deployments, func(a, b correlate.Row[correlate.DeploymentFact]) int { return a.Fact.Key().Compare(b.Fact.Key()) })
	slices.SortFunc(f.Changes, func(a, b correlate.Row[correlate.ChangeFact]) int { return a.Fact.Key().Compare(b.Fact.Key()) })
	slices.SortFunc(f.Incidents, func(a, b correlate.Row[correlate.IncidentFact]) int { return strings.Compare(a.Fact.ID, b.Fact.ID) })
	return f
}

func describe(got, want any) string {
	if g, ok := got.(correlate.Facts); ok {
		w := want.(correlate.Facts)
		return fmt.Sprintf("got %d/%d/%d deployments/changes/incidents, want %d/%d/%d",
			len(g.Deployments), len(g.Changes), len(g.Incidents), len(w.Deployments), len(w.Changes), len(w.Incidents))
	}
	return fmt.Sprintf("got %+v, want %+v", got, want)
}
