package clickhouse

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/doraflow/doraflow/pkg/dora"
	"github.com/doraflow/doraflow/processor/correlate"
)

// Aggregates runs the metric SQL over [since, until) and returns the
// aggregates per team, and over all teams; with team set, only over that
// team's facts (and the total is that team's). One query per table kind,
// each giving the per-team rows and the total in one scan.
func (s *Store) Aggregates(ctx context.Context, since, until time.Time, team string) (map[string]*dora.Aggregates, *dora.Aggregates, error) {
	w := dora.Between(since, until)
	scope := dora.AllTeams
	if team != "" {
		scope = dora.OneTeam(team)
	}
	queries := []struct {
		what, sql string
		fields    func(a *dora.Aggregates) []*uint64
	}{
		{"delivery metrics", dora.DeliverySQL(s.database, w, scope, dora.ByTeam), func(a *dora.Aggregates) []*uint64 {
			return []*uint64{&a.Deployments, &a.Failed, &a.Rework, &a.Recovered, &a.RecoveryMedianSeconds,
				&a.Changes, &a.LeadTimeMedianSeconds, &a.LeadTimeP90}
		}},
		{"incident metrics", dora.IncidentsSQL(s.database, w, scope, dora.ByTeam), func(a *dora.Aggregates) []*uint64 {
			return []*uint64{&a.Incidents, &a.Resolved, &a.TimeToRestoreMedianSeconds}
		}},
	}
	// The queries read different tables: they run side by side, each into
	// aggregates of its own, which are then put together.
	type result struct {
		perTeam map[string]*dora.Aggregates
		total   dora.Aggregates
		err     error
	}
	results := make([]result, len(queries))
	var wg sync.WaitGroup
	for i, q := range queries {
		wg.Go(func() {
			res := &results[i]
			res.perTeam = map[string]*dora.Aggregates{}
			var totals []*uint64
			if team == "" {
				totals = q.fields(&res.total)
			}
			res.err = s.scanTeams(ctx, q.what, q.sql, func(team string) []*uint64 {
				a := res.perTeam[team]
				if a == nil {
					a = &dora.Aggregates{}
					res.perTeam[team] = a
				}
				return q.fields(a)
			}, totals)
		})
	}
	wg.Wait()
	perTeam := map[string]*dora.Aggregates{}
	total := &dora.Aggregates{}
	for i, q := range queries {
		if results[i].err != nil {
			return nil, nil, results[i].err
		}
		copyFields(q.fields(total), q.fields(&results[i].total))
		for name, a := range results[i].perTeam {
			dst := perTeam[name]
			if dst == nil {
				dst = &dora.Aggregates{}
				perTeam[name] = dst
			}
			copyFields(q.fields(dst), q.fields(a))
		}
	}
	if team != "" {
		if a := perTeam[team]; a != nil {
			total = a
		}
	}
	return perTeam, total, nil
}

func copyFields(dst, src []*uint64) {
	for i := range dst {
		*dst[i] = *src[i]
	}
}

// scanTeams runs a query whose first column is the team and the others
// UInt64 aggregates, scanning each row into the fields fields(team) names,
// and its WITH TOTALS row (if totals is not nil) into totals. Not retried:
// a report fails rather than wait for a server that is away.
func (s *Store) scanTeams(ctx context.Context, what, query string, fields func(team string) []*uint64, totals []*uint64) error {
	rows, err := s.conn.Query(ctx, query)
	if err != nil {
		return fmt.Errorf("clickhouse: %s: %w", what, err)
	}
	defer rows.Close()
	var team string
	vals := make([]uint64, len(rows.Columns())-1)
	dest := []any{&team}
	for i := range vals {
		dest = append(dest, &vals[i])
	}
	set := func(into []*uint64) {
		for i, f := range into {
			*f = vals[i]
		}
	}
	for rows.Next() {
		if err := rows.Scan(dest...); err != nil {
			return fmt.Errorf("clickhouse: %s: %w", what, err)
		}
		set(fields(team))
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("clickhouse: %s: %w", what, err)
	}
	if totals == nil {
		return nil
	}
	switch err := rows.Totals(dest...); {
	case errors.Is(err, sql.ErrNoRows): // no rows: nothing to total
	case err != nil:
		return fmt.Errorf("clickhouse: %s totals: %w", what, err)
	default:
		set(totals)
	}
	return nil
}

// Facts reads the latest live version of every stored fact, so a restarted
// processor knows what is already written. The processor writes diffs
// against this view, so a partial one would retract what it missed: each
// table is read whole or retried, and an error is returned if it cannot be.
func (s *Store) Facts(ctx context.Context) (correlate.Facts, error) {
	var out correlate.Facts
	var err error
	if out.Deployments, err = retried(ctx, s, "read deployments", func() ([]correlate.Row[correlate.DeploymentFact], error) {
		return s.deployments(ctx, "1", true)
	}); err != nil {
		return correlate.Facts{}, err
	}
	if out.Changes, err = retried(ctx, s, "read changes", func() ([]correlate.Row[correlate.ChangeFact], error) {
		return s.changes(ctx, "1", true)
	}); err != nil {
		return correlate.Facts{}, err
	}
	if out.Incidents, err = retried(ctx, s, "read incidents", func() ([]correlate.Row[correlate.IncidentFact], error) {
		return s.incidents(ctx, "1")
	}); err != nil {
		return correlate.Facts{}, err
	}
	return out, nil
}

// FactsOf reads the latest live version of the stored facts of the
// repositories and incidents named — what a restarted processor compares
// with the events it folded again — a few hundred names at a time.
func (s *Store) FactsOf(ctx context.Context, repos, incidents []string) (correlate.Facts, error) {
	const chunk = 500
	var out correlate.Facts
	for start := 0; start < len(repos); start += chunk {
		part := repos[start:min(start+chunk, len(repos))]
		deps, err := retried(ctx, s, "read deployments", func() ([]correlate.Row[correlate.DeploymentFact], error) {
			return s.deployments(ctx, "repo IN ("+quoted(part)+")", true)
		})
		if err != nil {
			return correlate.Facts{}, err
		}
		changes, err := retried(ctx, s, "read changes", func() ([]correlate.Row[correlate.ChangeFact], error) {
			return s.changes(ctx, "repo IN ("+quoted(part)+")", true)
		})
		if err != nil {
			return correlate.Facts{}, err
		}
		out.Deployments, out.Changes = append(out.Deployments, deps...), append(out.Changes, changes...)
	}
	for start := 0; start < len(incidents); start += chunk {
		part := incidents[start:min(start+chunk, len(incidents))]
		rows, err := retried(ctx, s, "read incidents", func() ([]correlate.Row[correlate.IncidentFact], error) {
			return s.incidents(ctx, "incident_id IN ("+quoted(part)+")")
		})
		if err != nil {
			return correlate.Facts{}, err
		}
		out.Incidents = append(out.Incidents, rows...)
	}
	return out, nil
}

// WrittenSince reads, of the repositories named, every fact written at a
// version above since: all of its stored rows as their latest versions say,
// retracted ones too. What a worker's snapshot (taken at version since)
// holds of any other fact is what the store holds, so a rebuild compares
// only these.
func (s *Store) WrittenSince(ctx context.Context, repos []string, since uint64) (correlate.Facts, error) {
	const chunk = 500
	var out correlate.Facts
	for start := 0; start < len(repos); start += chunk {
		in := "repo IN (" + quoted(repos[start:min(start+chunk, len(repos))]) + ")"
		written := func(table, key string) string {
			return fmt.Sprintf("%s AND (repo, %s) IN (SELECT repo, %s FROM %s WHERE %s AND version > %d)",
				in, key, key, s.table(table), in, since)
		}
		deps, err := retried(ctx, s, "read deployments", func() ([]correlate.Row[correlate.DeploymentFact], error) {
			return s.deployments(ctx, written("deployments", "deployment_id"), false)
		})
		if err != nil {
			return correlate.Facts{}, err
		}
		changes, err := retried(ctx, s, "read changes", func() ([]correlate.Row[correlate.ChangeFact], error) {
			return s.changes(ctx, written("changes", "sha"), false)
		})
		if err != nil {
			return correlate.Facts{}, err
		}
		out.Deployments, out.Changes = append(out.Deployments, deps...), append(out.Changes, changes...)
	}
	return out, nil
}

// quoted is a list of SQL string literals. Binding a slice gives an array,
// which 18.16 refuses after IN; a literal list uses the primary key.
func quoted(values []string) string {
	escape := strings.NewReplacer(`\`, `\\`, `'`, `\'`)
	var b strings.Builder
	for i, v := range values {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString("'" + escape.Replace(v) + "'")
	}
	return b.String()
}

// The reads of facts take a condition on the table's rows for the facts
// to read, and whether to read only the live ones.

// liveOnly is the outer condition of a read of facts.
func liveOnly(only bool) string {
	if only {
		return "live = 1"
	}
	return "1"
}

func (s *Store) deployments(ctx context.Context, where string, live bool) ([]correlate.Row[correlate.DeploymentFact], error) {
	var out []correlate.Row[correlate.DeploymentFact]
	err := s.query(ctx, "read deployments", `SELECT repo, deployment_id, service, environment, sha, status, finished_at,
		production, rollback, failed, rework, changes, approximate, incidents, recovered_at, live FROM (
		SELECT * FROM `+s.table("deployments")+` WHERE `+where+` ORDER BY version DESC LIMIT 1 BY repo, deployment_id, finished_at)
		WHERE `+liveOnly(live), func(rows driver.Rows) error {
		var d correlate.DeploymentFact
		var prod, rb, failed, rework, approx, isLive uint8
		var changes, incidents uint32
		if err := rows.Scan(&d.Repo, &d.ID, &d.Service, &d.Environment, &d.SHA, &d.Status, &d.FinishedAt,
			&prod, &rb, &failed, &rework, &changes, &approx, &incidents, &d.RecoveredAt, &isLive); err != nil {
			return err
		}
		d.Production, d.Rollback, d.Failed, d.Rework, d.Approximate = prod == 1, rb == 1, failed == 1, rework == 1, approx == 1
		d.Changes, d.Incidents = int(changes), int(incidents)
		d.FinishedAt = d.FinishedAt.UTC()
		if d.RecoveredAt != nil {
			t := d.RecoveredAt.UTC()
			d.RecoveredAt = &t
		}
		out = append(out, correlate.Row[correlate.DeploymentFact]{Fact: d, Live: isLive == 1})
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

func (s *Store) changes(ctx context.Context, where string, live bool) ([]correlate.Row[correlate.ChangeFact], error) {
	var out []correlate.Row[correlate.ChangeFact]
	err := s.query(ctx, "read changes", `SELECT repo, sha, deployment_id, committed_at, deployed_at, live FROM (
		SELECT * FROM `+s.table("changes")+` WHERE `+where+` ORDER BY version DESC LIMIT 1 BY repo, sha, deployed_at)
		WHERE `+liveOnly(live),
		func(rows driver.Rows) error {
			var c correlate.ChangeFact
			var isLive uint8
			if err := rows.Scan(&c.Repo, &c.SHA, &c.DeploymentID, &c.CommittedAt, &c.DeployedAt, &isLive); err != nil {
				return err
			}
			c.CommittedAt, c.DeployedAt = c.CommittedAt.UTC(), c.DeployedAt.UTC()
			out = append(out, correlate.Row[correlate.ChangeFact]{Fact: c, Live: isLive == 1})
			return nil
		})
	if err != nil {
		return nil, err
	}
	return out, nil
}

func (s *Store) incidents(ctx context.Context, where string) ([]correlate.Row[correlate.IncidentFact], error) {
	var out []correlate.Row[correlate.IncidentFact]
	err := s.query(ctx, "read incidents", `SELECT incident_id, source, service, repo, opened_at, resolved_at,
		deployment_repo, deployment_id, attribution FROM (
		SELECT * FROM `+s.table("incidents")+` WHERE `+where+` ORDER BY version DESC LIMIT 1 BY incident_id, opened_at) WHERE live = 1`,
		func(rows driver.Rows) error {
			var n correlate.IncidentFact
			if err := rows.Scan(&n.ID, &n.Source, &n.Service, &n.Repo, &n.OpenedAt, &n.ResolvedAt,
				&n.DeploymentRepo, &n.DeploymentID, &n.Attribution); err != nil {
				return err
			}
			n.OpenedAt = n.OpenedAt.UTC()
			if n.ResolvedAt != nil {
				t := n.ResolvedAt.UTC()
				n.ResolvedAt = &t
			}
			out = append(out, correlate.Row[correlate.IncidentFact]{Fact: n, Live: true})
			return nil
		})
	if err != nil {
		return nil, err
	}
	return out, nil
}
