package clickhouse

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/doraflow/doraflow/processor/correlate"
)

// Store.Write is stated against bare ClickHouse inserts: BenchmarkBareInsert
// sends 1,000-row batches of the changes table's columns with PrepareBatch;
// BenchmarkWriteChanges writes 1,000 change facts through Store.Write.
// One op is one batch of 1,000 rows; compare their ns/op (same run, same
// server).

const benchRows = 1000

func benchChanges(i int) correlate.Facts {
	var f correlate.Facts
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(i) * time.Minute)
	for r := range benchRows {
		f.Changes = append(f.Changes, correlate.Row[correlate.ChangeFact]{Live: true, Fact: correlate.ChangeFact{
			Repo: "acme/api", SHA: fmt.Sprintf("%040d", i*benchRows+r), DeploymentID: "d",
			CommittedAt: at.Add(-time.Hour), DeployedAt: at}})
	}
	return f
}

func BenchmarkBareInsert(b *testing.B) {
	s := open(b)
	ctx := context.Background()
	if _, err := s.Migrate(ctx); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		f := benchChanges(i)
		batch, err := s.conn.PrepareBatch(ctx, "INSERT INTO "+s.table("changes")+
			" (repo, sha, deployment_id, committed_at, deployed_at, lead_time_seconds, live, version)")
		if err != nil {
			b.Fatal(err)
		}
		for _, r := range f.Changes {
			c := r.Fact
			if err := batch.Append(c.Repo, c.SHA, c.DeploymentID, c.CommittedAt, c.DeployedAt, uint64(3600), uint8(1), uint64(i)); err != nil {
				b.Fatal(err)
			}
		}
		if err := batch.Send(); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*benchRows)/b.Elapsed().Seconds(), "rows/s")
}

func BenchmarkWriteChanges(b *testing.B) {
	s := open(b)
	ctx := context.Background()
	if _, err := s.Migrate(ctx); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := s.Write(ctx, benchChanges(i), uint64(i)); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*benchRows)/b.Elapsed().Seconds(), "rows/s")
}
