package scalebench

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	ch "github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/doraflow/doraflow/pkg/bus"
	"github.com/doraflow/doraflow/pkg/config"
	"github.com/doraflow/doraflow/processor"
)

// The bare baselines: what the processor's two ends cost with nothing in
// between, measured on the same messages and rows in the same run.

// consumeBaseline is a bare JetStream consume of the event stream.
type consumeBaseline struct {
	Consumers int
	Messages  int
	Batch     int // messages a fetch asks for
	Took      time.Duration
}

// processorFilters are the subjects of the processor's event consumers, by
// worker: each partition's own and every incident, and the incidents alone
// for attribution.
func processorFilters(partitions int) map[string][]string {
	filters := map[string][]string{"attribution": {"doraflow.events.*.incident"}}
	for p := range partitions {
		filters[processor.PartitionWorker(p)] = processor.PartitionSubjects(p)
	}
	return filters
}

// bareConsume pulls the event stream's messages through one durable
// consumer per filter, all at once (batches of batchSize, the processor's
// ack-pending limit), acknowledging each message, and times it until every
// consumer has nothing pending or unacknowledged.
func bareConsume(ctx context.Context, js jetstream.JetStream, filters map[string][]string, batchSize int) (consumeBaseline, error) {
	var consumers []jetstream.Consumer
	for name, subjects := range filters {
		c, err := js.CreateOrUpdateConsumer(ctx, bus.EventStream, jetstream.ConsumerConfig{
			Durable:        "scalebench-bare-" + name,
			AckPolicy:      jetstream.AckExplicitPolicy,
			AckWait:        30 * time.Second,
			MaxAckPending:  max(batchSize*2, 1000),
			FilterSubjects: subjects,
			DeliverPolicy:  jetstream.DeliverAllPolicy,
		})
		if err != nil {
			return consumeBaseline{}, fmt.Errorf("scalebench: bare consumer: %w", err)
		}
		consumers = append(consumers, c)
	}
	defer func() {
		for _, c := range consumers {
			_ = js.DeleteConsumer(context.WithoutCancel(ctx), bus.EventStream, c.CachedInfo().Name)
		}
	}()
	start := time.Now()
	var wg sync.WaitGroup
	counts := make([]int, len(consumers))
	errs := make([]error, len(consumers))
	for i, c := range consumers {
		wg.Go(func() { counts[i], errs[i] = drain(ctx, c, batchSize) })
	}
	wg.Wait()
	took := time.Since(start)
	if err := errors.Join(errs...); err != nil {
		return consumeBaseline{}, err
	}
	total := 0
	for _, n := range counts {
		total += n
	}
	return consumeBaseline{Consumers: len(consumers), Messages: total, Batch: batchSize, Took: took}, nil
}

// drain fetches and acknowledges until the consumer has nothing left.
func drain(ctx context.Context, c jetstream.Consumer, batchSize int) (int, error) {
	n := 0
	for {
		batch, err := c.Fetch(batchSize, jetstream.FetchMaxWait(200*time.Millisecond))
		if err != nil {
			return n, fmt.Errorf("scalebench: bare fetch: %w", err)
		}
		got := 0
		for m := range batch.Messages() {
			// As the processor does: one acknowledgement per message, not
			// waited for.
			if err := m.Ack(); err != nil {
				return n, fmt.Errorf("scalebench: bare ack: %w", err)
			}
			got++
		}
		n += got
		if got > 0 {
			continue
		}
		info, err := c.Info(ctx)
		if err != nil {
			return n, fmt.Errorf("scalebench: bare consumer: %w", err)
		}
		if info.NumPending == 0 && info.NumAckPending == 0 {
			return n, nil
		}
	}
}

// The processor's rows, read back from its database, to insert them again
// bare. Columns are held typed, one slice per column, so that ten million
// rows fit in a few GB.

type column interface {
	dest() any // what Scan fills
	keep()     // appends what Scan filled
	value(i int) any
	reset()
}

type col[T any] struct {
	cur  T
	vals []T
}

func (c *col[T]) dest() any       { return &c.cur }
func (c *col[T]) keep()           { c.vals = append(c.vals, c.cur) }
func (c *col[T]) value(i int) any { return c.vals[i] }
func (c *col[T]) reset()          { c.vals = nil }

// table is one of the processor's tables, its columns as migrations
// define them.
type table struct {
	name    string
	columns []string
	make    []func() column
}

func str() column     { return &col[string]{} }
func u8() column      { return &col[uint8]{} }
func u32() column     { return &col[uint32]{} }
func u64() column     { return &col[uint64]{} }
func at() column      { return &col[time.Time]{} }
func maybeAt() column { return &col[*time.Time]{} }
func i64s() column    { return &col[[]int64]{} }
func u64s() column    { return &col[[]uint64]{} }

// factTables are the processor's tables.
func factTables() []table {
	return []table{
		{"deployments", []string{"repo", "deployment_id", "service", "environment", "sha", "status", "finished_at", "production",
			"rollback", "failed", "rework", "changes", "approximate", "incidents", "recovered_at", "live", "version"},
			[]func() column{str, str, str, str, str, str, at, u8, u8, u8, u8, u32, u8, u32, maybeAt, u8, u64}},
		{"changes", []string{"repo", "sha", "deployment_id", "committed_at", "deployed_at", "lead_time_seconds", "live", "version"},
			[]func() column{str, str, str, at, at, u64, u8, u64}},
		{"incidents", []string{"incident_id", "source", "service", "repo", "opened_at", "resolved_at", "deployment_repo",
			"deployment_id", "attribution", "live", "version"},
			[]func() column{str, str, str, str, at, maybeAt, str, str, str, u8, u64}},
		{"repo_days", []string{"repo", "day", "deployments", "failed", "rework", "recovery_seconds", "changes",
			"lead_time_seconds", "version"},
			[]func() column{str, at, u32, u32, u32, i64s, u32, u64s, u64}},
		{"teams", []string{"entity", "team", "version"}, []func() column{str, str, u64}},
	}
}

// insertBaseline is a bare batched insert of the processor's rows.
type insertBaseline struct {
	Rows      map[string]int // by table
	Took      map[string]time.Duration
	Total     int
	TotalTook time.Duration
	// Read is how long reading the rows back took (not part of the
	// baseline).
	Read time.Duration
}

// bareInsert reads every row the processor wrote to its database, table by
// table, and inserts them again into another database of the same schema,
// batchRows rows an insert (PrepareBatch, Append, Send: no Store code),
// timing the inserts alone.
func bareInsert(ctx context.Context, from, to string, batchRows int) (insertBaseline, error) {
	src, err := rawConn(from)
	if err != nil {
		return insertBaseline{}, err
	}
	defer src.Close()
	dst, err := rawConn(to)
	if err != nil {
		return insertBaseline{}, err
	}
	defer dst.Close()
	fromDB, toDB := database(from), database(to)
	out := insertBaseline{Rows: map[string]int{}, Took: map[string]time.Duration{}}
	for _, t := range factTables() {
		cols := make([]column, len(t.make))
		for i, mk := range t.make {
			cols[i] = mk()
		}
		start := time.Now()
		n, err := readTable(ctx, src, fromDB, t, cols)
		if err != nil {
			return out, err
		}
		out.Read += time.Since(start)
		start = time.Now()
		if err := insertTable(ctx, dst, toDB, t, cols, n, batchRows); err != nil {
			return out, err
		}
		took := time.Since(start)
		out.Rows[t.name], out.Took[t.name] = n, took
		out.Total += n
		out.TotalTook += took
		for _, c := range cols {
			c.reset()
		}
	}
	return out, nil
}

func readTable(ctx context.Context, conn driver.Conn, db string, t table, cols []column) (int, error) {
	rows, err := conn.Query(ctx, "SELECT "+strings.Join(t.columns, ", ")+" FROM "+db+"."+t.name)
	if err != nil {
		return 0, fmt.Errorf("scalebench: read %s: %w", t.name, err)
	}
	defer rows.Close()
	dest := make([]any, len(cols))
	for i, c := range cols {
		dest[i] = c.dest()
	}
	n := 0
	for rows.Next() {
		if err := rows.Scan(dest...); err != nil {
			return n, fmt.Errorf("scalebench: read %s: %w", t.name, err)
		}
		for _, c := range cols {
			c.keep()
		}
		n++
	}
	if err := rows.Err(); err != nil {
		return n, fmt.Errorf("scalebench: read %s: %w", t.name, err)
	}
	return n, nil
}

func insertTable(ctx context.Context, conn driver.Conn, db string, t table, cols []column, n, batchRows int) error {
	row := make([]any, len(cols))
	for start := 0; start < n; start += batchRows {
		// 18.16 needs the columns named, or the batch has none.
		batch, err := conn.PrepareBatch(ctx, "INSERT INTO "+db+"."+t.name+" ("+strings.Join(t.columns, ", ")+")")
		if err != nil {
			return fmt.Errorf("scalebench: insert %s: %w", t.name, err)
		}
		for i := start; i < min(start+batchRows, n); i++ {
			for j, c := range cols {
				row[j] = c.value(i)
			}
			if err := batch.Append(row...); err != nil {
				_ = batch.Abort()
				return fmt.Errorf("scalebench: insert %s row %d: %w", t.name, i, err)
			}
		}
		if err := batch.Send(); err != nil {
			return fmt.Errorf("scalebench: insert %s: %w", t.name, err)
		}
	}
	return nil
}

// rawConn is a plain clickhouse-go connection to the server of dsn.
func rawConn(dsn string) (driver.Conn, error) {
	d, err := config.ParseClickHouseDSN(dsn)
	if err != nil {
		return nil, err
	}
	conn, err := ch.Open(&ch.Options{Addr: []string{d.Addr}, Auth: ch.Auth{Username: d.User, Password: d.Password},
		DialTimeout: 5 * time.Second, ReadTimeout: 10 * time.Minute})
	if err != nil {
		return nil, fmt.Errorf("scalebench: clickhouse %s: %w", d.Addr, err)
	}
	return conn, nil
}

// database is the database a DSN names.
func database(dsn string) string {
	d, err := config.ParseClickHouseDSN(dsn)
	if err != nil {
		return ""
	}
	return d.Database
}

// tableRows counts the rows of the processor's tables.
func tableRows(ctx context.Context, conn driver.Conn, db string) (map[string]uint64, error) {
	out := map[string]uint64{}
	for _, t := range factTables() {
		var n uint64
		if err := conn.QueryRow(ctx, "SELECT count() FROM "+db+"."+t.name).Scan(&n); err != nil {
			return nil, fmt.Errorf("scalebench: count %s: %w", t.name, err)
		}
		out[t.name] = n
	}
	return out, nil
}

// waitForMerges waits, up to limit, until the server merges nothing: both
// the processor's run and the bare insert then start from a settled
// server.
func waitForMerges(ctx context.Context, conn driver.Conn, limit time.Duration) error {
	for deadline := time.Now().Add(limit); time.Now().Before(deadline); {
		var n uint64
		if err := conn.QueryRow(ctx, "SELECT count() FROM system.merges").Scan(&n); err != nil {
			return fmt.Errorf("scalebench: merges: %w", err)
		}
		if n == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
	}
	return nil
}
