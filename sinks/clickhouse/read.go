package clickhouse

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/cenkalti/backoff/v5"
)

// readRetryFor bounds how long a read the caller cannot do without is
// retried: long enough to ride out a server restart or a dropped
// connection, short enough that a processor whose store stays away fails
// visibly (and its manager starts it again).
const readRetryFor = 30 * time.Second

// query runs sql and hands each row to scan. A connection that breaks in
// the middle of the answer only ends rows.Next early; rows.Err is what
// tells a partial answer from a whole one, so it is checked before the
// caller may use what scan collected. rows is closed on every path.
func (s *Store) query(ctx context.Context, what, sql string, scan func(driver.Rows) error) error {
	rows, err := s.conn.Query(ctx, sql)
	if err != nil {
		return fmt.Errorf("clickhouse: %s: %w", what, err)
	}
	defer rows.Close()
	for rows.Next() {
		if err := scan(rows); err != nil {
			return fmt.Errorf("clickhouse: %s: %w", what, err)
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("clickhouse: %s: %w", what, err)
	}
	return nil
}

// retried runs read until it succeeds, ctx is done or readRetryFor has
// passed, backing off between attempts and logging each failure. read
// starts from nothing on every attempt: what a failed attempt got is
// dropped, never used in part.
func retried[T any](ctx context.Context, s *Store, what string, read func() (T, error)) (T, error) {
	var last error
	attempts := 0
	v, err := backoff.Retry(ctx, func() (T, error) {
		attempts++
		v, err := read()
		if err != nil {
			last = err
		}
		return v, err
	}, backoff.WithBackOff(readBackOff()), backoff.WithMaxElapsedTime(readRetryFor),
		backoff.WithNotify(func(err error, next time.Duration) {
			s.logger.Warn("clickhouse read failed; retrying", "read", what, "in", next, "err", err)
		}))
	if err != nil {
		var zero T
		if last == nil || errors.Is(err, last) {
			return zero, fmt.Errorf("%w (gave up after %d attempts)", err, attempts)
		}
		// Retry gives back only the context's error when that ends it:
		// keep the read's own too, which says what went wrong.
		return zero, fmt.Errorf("%w (gave up after %d attempts: %w)", last, attempts, err)
	}
	return v, nil
}

// readBackOff retries from 100 ms up to every 5 s.
func readBackOff() *backoff.ExponentialBackOff {
	b := backoff.NewExponentialBackOff()
	b.InitialInterval = 100 * time.Millisecond
	b.MaxInterval = 5 * time.Second
	return b
}
