package benchscale

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/doraflow/doraflow/pkg/dora"
)

// postgres is a throwaway PostgreSQL server (scripts/postgres.sh) holding
// the same facts as ClickHouse, driven through psql: COPY to load, and
// psql's own \timing for each query's round trip.
type postgres struct {
	port    int
	version string
	copies  []*pgCopy
}

// pgIndexes are the indexes the comparison gives PostgreSQL, each covering
// what its query reads so a window is an index-only scan: by time (the
// window's rows) and by natural key + version (the dedupe's order); the
// planner picks.
const pgIndexes = `
CREATE INDEX deployments_window ON deployments (finished_at) INCLUDE (repo, deployment_id, version, production, failed, rework, recovered_at, live);
CREATE INDEX deployments_key ON deployments (repo, deployment_id, finished_at, version DESC) INCLUDE (production, failed, rework, recovered_at, live);
CREATE INDEX changes_window ON changes (deployed_at) INCLUDE (repo, sha, version, live, lead_time_seconds);
CREATE INDEX changes_key ON changes (repo, sha, deployed_at, version DESC) INCLUDE (lead_time_seconds, live);
CREATE INDEX incidents_window ON incidents (opened_at) INCLUDE (incident_id, version, resolved_at, live, repo, service);
CREATE INDEX incidents_key ON incidents (incident_id, opened_at, version DESC) INCLUDE (resolved_at, live, repo, service);
CREATE INDEX teams_key ON teams (entity, version DESC) INCLUDE (team);`

const pgSchema = `
CREATE TABLE deployments (repo text, deployment_id text, service text, environment text, sha text, status text,
    finished_at timestamp, production boolean, rollback boolean, failed boolean, rework boolean, changes integer,
    approximate boolean, incidents integer, recovered_at timestamp, live boolean, version bigint);
CREATE TABLE changes (repo text, sha text, deployment_id text, committed_at timestamp, deployed_at timestamp,
    lead_time_seconds bigint, live boolean, version bigint);
CREATE TABLE incidents (incident_id text, source text, service text, repo text, opened_at timestamp,
    resolved_at timestamp, deployment_repo text, deployment_id text, attribution text, live boolean, version bigint);
CREATE TABLE teams (entity text, team text, version bigint);`

// startPostgres starts a server in a temporary directory, or returns nil
// (having said why) where PostgreSQL is not installed, outside CI.
func startPostgres(b *testing.B) *postgres {
	b.Helper()
	script, err := filepath.Abs("../../scripts/postgres.sh")
	if err != nil {
		b.Fatal(err)
	}
	out, err := exec.Command("bash", script, "version").CombinedOutput()
	if err != nil {
		if os.Getenv("CI") != "" {
			b.Fatalf("PostgreSQL is required in CI: %s", out)
		}
		b.Logf("PostgreSQL is not installed (%s): no comparison; run scripts/postgres.sh ensure", strings.TrimSpace(string(out)))
		return nil
	}
	dir, err := os.MkdirTemp("", "doraflow-postgres-")
	if err != nil {
		b.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	b.Cleanup(func() {
		if out, err := exec.Command("bash", script, "stop", dir).CombinedOutput(); err != nil {
			b.Errorf("stop PostgreSQL: %v: %s", err, out)
		}
		os.RemoveAll(dir)
	})
	if out, err := exec.Command("bash", script, "start", dir, strconv.Itoa(port)).CombinedOutput(); err != nil {
		b.Fatalf("start PostgreSQL: %v: %s", err, out)
	}
	p := &postgres{port: port}
	if _, err := p.psql(context.Background(), "postgres", "CREATE DATABASE bench"); err != nil {
		b.Fatal(err)
	}
	if _, err := p.psql(context.Background(), "bench", pgSchema); err != nil {
		b.Fatal(err)
	}
	v, err := p.psql(context.Background(), "bench", "SHOW server_version")
	if err != nil {
		b.Fatal(err)
	}
	p.version = strings.TrimSpace(v)
	return p
}

func (p *postgres) args(db string) []string {
	return []string{"-h", "127.0.0.1", "-p", strconv.Itoa(p.port), "-U", "postgres", "-d", db,
		"-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"}
}

// psql runs sql and returns what it printed.
func (p *postgres) psql(ctx context.Context, db, sql string) (string, error) {
	cmd := exec.CommandContext(ctx, "psql", p.args(db)...)
	cmd.Stdin = strings.NewReader(sql)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("psql: %w: %s", err, stderr.String())
	}
	return string(out), nil
}

// pgCopy streams CSV rows into one table through a psql COPY.
type pgCopy struct {
	cmd  *exec.Cmd
	in   io.WriteCloser
	w    *bufio.Writer
	errs *strings.Builder
}

// load starts a COPY into each table; write feeds them, finish ends them.
func (p *postgres) load(ctx context.Context) error {
	for _, t := range []struct{ table, columns string }{
		{"deployments", "repo, deployment_id, service, environment, sha, status, finished_at, production, rollback, failed, rework, changes, approximate, incidents, recovered_at, live, version"},
		{"changes", "repo, sha, deployment_id, committed_at, deployed_at, lead_time_seconds, live, version"},
		{"incidents", "incident_id, source, service, repo, opened_at, resolved_at, deployment_repo, deployment_id, attribution, live, version"},
		{"teams", "entity, team, version"},
	} {
		cmd := exec.CommandContext(ctx, "psql", append(p.args("bench"), "-c", "COPY "+t.table+" ("+t.columns+") FROM STDIN (FORMAT csv)")...)
		in, err := cmd.StdinPipe()
		if err != nil {
			return err
		}
		c := &pgCopy{cmd: cmd, in: in, w: bufio.NewWriterSize(in, 1<<20), errs: &strings.Builder{}}
		cmd.Stderr = c.errs
		if err := cmd.Start(); err != nil {
			return fmt.Errorf("psql COPY %s: %w", t.table, err)
		}
		p.copies = append(p.copies, c)
	}
	return nil
}

func pgTime(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05") }

func pgTimePtr(t *time.Time) string {
	if t == nil {
		return "" // NULL in CSV
	}
	return pgTime(*t)
}

func pgBool(v bool) string {
	if v {
		return "t"
	}
	return "f"
}

// write adds the batches' fact rows (ClickHouse's columns, as Store.Write
// computes them).
func (p *postgres) write(bs []Batch) error {
	dep, chg, inc := p.copies[0].w, p.copies[1].w, p.copies[2].w
	for _, b := range bs {
		v := strconv.FormatUint(b.Version, 10)
		for _, r := range b.Facts.Deployments {
			d := r.Fact
			fmt.Fprintf(dep, "%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%d,%s,%d,%s,%s,%s\n", d.Repo, d.ID, d.Service, d.Environment,
				d.SHA, d.Status, pgTime(d.FinishedAt), pgBool(d.Production), pgBool(d.Rollback), pgBool(d.Failed),
				pgBool(d.Rework), d.Changes, pgBool(d.Approximate), d.Incidents, pgTimePtr(d.RecoveredAt), pgBool(r.Live), v)
		}
		for _, r := range b.Facts.Changes {
			c := r.Fact
			fmt.Fprintf(chg, "%s,%s,%s,%s,%s,%d,%s,%s\n", c.Repo, c.SHA, c.DeploymentID, pgTime(c.CommittedAt),
				pgTime(c.DeployedAt), c.LeadTimeSeconds(), pgBool(r.Live), v)
		}
		for _, r := range b.Facts.Incidents {
			n := r.Fact
			fmt.Fprintf(inc, "%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s\n", n.ID, n.Source, n.Service, n.Repo, pgTime(n.OpenedAt),
				pgTimePtr(n.ResolvedAt), n.DeploymentRepo, n.DeploymentID, n.Attribution, pgBool(r.Live), v)
		}
	}
	return nil
}

func (p *postgres) writeTeams(teams map[string]string) {
	for e, t := range teams {
		fmt.Fprintf(p.copies[3].w, "%s,%s,1\n", e, t)
	}
}

// finish ends the COPYs, then indexes and analyses the tables (and sets
// the visibility map, which index-only scans need).
func (p *postgres) finish(ctx context.Context) error {
	var errs []error
	for _, c := range p.copies {
		if err := c.w.Flush(); err != nil {
			errs = append(errs, err)
		}
		c.in.Close()
		if err := c.cmd.Wait(); err != nil {
			errs = append(errs, fmt.Errorf("psql COPY: %w: %s", err, c.errs.String()))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	if _, err := p.psql(ctx, "bench", pgIndexes+"\nVACUUM ANALYZE;"); err != nil {
		return err
	}
	return nil
}

// pgDeployments, pgChanges and pgIncidents are the report's figures in PostgreSQL: the latest version of
// each fact in the window (DISTINCT ON the natural key, highest version),
// the team joined, per team and over all teams (GROUPING SETS), quantiles
// taken as ClickHouse's quantileExact takes them (the element at
// floor(level × n) of the sorted values), so the figures are the same.
const pgTeams = `repo_teams AS (SELECT DISTINCT ON (entity) substring(entity from 6) AS repo, team FROM teams
    WHERE entity LIKE 'repo:%' ORDER BY entity, version DESC)`

const pgDeployments = `
WITH latest AS (
    SELECT DISTINCT ON (repo, deployment_id, finished_at) repo, finished_at, production, failed, rework, recovered_at, live
    FROM deployments WHERE finished_at >= '{from}' AND finished_at < '{to}'
    ORDER BY repo, deployment_id, finished_at, version DESC),
` + pgTeams + `,
d AS (SELECT coalesce(nullif(t.team, ''), 'unassigned') AS team, l.failed, l.rework,
        CASE WHEN l.failed AND l.recovered_at IS NOT NULL THEN extract(epoch FROM l.recovered_at - l.finished_at)::bigint END AS recovery
    FROM latest l LEFT JOIN repo_teams t USING (repo) WHERE l.live AND l.production),
g AS (SELECT coalesce(team, '*') AS team, grouping(team) AS total, count(*) AS n,
        count(*) FILTER (WHERE failed) AS failed, count(*) FILTER (WHERE rework) AS rework,
        count(recovery) AS recovered, array_agg(recovery ORDER BY recovery) FILTER (WHERE recovery IS NOT NULL) AS rec
    FROM d GROUP BY GROUPING SETS ((team), ()))
SELECT 'd', total, team, n, failed, rework, recovered, coalesce(rec[floor(0.5::float8 * recovered)::int + 1], 0) FROM g;`

const pgChanges = `
WITH latest AS (
    SELECT DISTINCT ON (repo, sha, deployed_at) repo, lead_time_seconds, live
    FROM changes WHERE deployed_at >= '{from}' AND deployed_at < '{to}'
    ORDER BY repo, sha, deployed_at, version DESC),
` + pgTeams + `,
c AS (SELECT coalesce(nullif(t.team, ''), 'unassigned') AS team, l.lead_time_seconds
    FROM latest l LEFT JOIN repo_teams t USING (repo) WHERE l.live),
g AS (SELECT coalesce(team, '*') AS team, grouping(team) AS total, count(*) AS n,
        array_agg(lead_time_seconds ORDER BY lead_time_seconds) AS lt
    FROM c GROUP BY GROUPING SETS ((team), ()))
SELECT 'c', total, team, n, lt[floor(0.5::float8 * n)::int + 1], lt[floor(0.9::float8 * n)::int + 1] FROM g;`

const pgIncidents = `
WITH latest AS (
    SELECT DISTINCT ON (incident_id, opened_at) opened_at, resolved_at, live,
        CASE WHEN repo <> '' THEN 'repo:' || repo ELSE 'service:' || service END AS entity
    FROM incidents WHERE opened_at < '{to}'
    ORDER BY incident_id, opened_at, version DESC),
entity_teams AS (SELECT DISTINCT ON (entity) entity, team FROM teams ORDER BY entity, version DESC),
i AS (SELECT coalesce(nullif(t.team, ''), 'unassigned') AS team, l.opened_at,
        CASE WHEN l.resolved_at >= '{from}' AND l.resolved_at < '{to}' THEN extract(epoch FROM l.resolved_at - l.opened_at)::bigint END AS ttr
    FROM latest l LEFT JOIN entity_teams t USING (entity) WHERE l.live),
g AS (SELECT coalesce(team, '*') AS team, grouping(team) AS total, count(*) FILTER (WHERE opened_at >= '{from}') AS n,
        count(ttr) AS resolved, array_agg(ttr ORDER BY ttr) FILTER (WHERE ttr IS NOT NULL) AS ttrs
    FROM i GROUP BY GROUPING SETS ((team), ()))
SELECT 'i', total, team, n, resolved, coalesce(ttrs[floor(0.5::float8 * resolved)::int + 1], 0) FROM g;`

// pgRun runs the figures' queries n times in one psql session and returns
// each run's time (psql's \timing: the round trip of the three queries)
// and the figures of the first run.
func (p *postgres) pgRun(ctx context.Context, since, until time.Time, n int) ([]time.Duration, map[string]*dora.Aggregates, *dora.Aggregates, error) {
	r := strings.NewReplacer("{from}", pgTime(since), "{to}", pgTime(until))
	var script strings.Builder
	script.WriteString("\\timing on\n")
	queries := []string{pgDeployments, pgChanges, pgIncidents}
	for range n {
		for _, q := range queries {
			script.WriteString(r.Replace(q) + "\n")
		}
	}
	out, err := p.psql(ctx, "bench", script.String())
	if err != nil {
		return nil, nil, nil, err
	}
	timing := regexp.MustCompile(`^Time: ([0-9.]+) ms`)
	var times []time.Duration
	var sum time.Duration
	done := 0
	perTeam := map[string]*dora.Aggregates{}
	total := &dora.Aggregates{}
	for _, line := range strings.Split(out, "\n") {
		if m := timing.FindStringSubmatch(line); m != nil {
			ms, _ := strconv.ParseFloat(m[1], 64)
			sum += time.Duration(ms * float64(time.Millisecond))
			if done++; done%len(queries) == 0 {
				times = append(times, sum)
				sum = 0
			}
			continue
		}
		if line == "" || done >= len(queries) {
			continue
		}
		f := strings.Split(line, "|")
		a := total
		if f[1] == "0" {
			if a = perTeam[f[2]]; a == nil {
				a = &dora.Aggregates{}
				perTeam[f[2]] = a
			}
		}
		v := make([]uint64, len(f)-3)
		for i := range v {
			x, _ := strconv.ParseInt(f[i+3], 10, 64)
			v[i] = uint64(x)
		}
		switch f[0] {
		case "d":
			a.Deployments, a.Failed, a.Rework, a.Recovered, a.RecoveryMedianSeconds = v[0], v[1], v[2], v[3], v[4]
		case "c":
			a.Changes, a.LeadTimeMedianSeconds, a.LeadTimeP90 = v[0], v[1], v[2]
		case "i":
			a.Incidents, a.Resolved, a.TimeToRestoreMedianSeconds = v[0], v[1], v[2]
		}
	}
	if len(times) != n {
		return nil, nil, nil, fmt.Errorf("psql: %d timed runs of %d in:\n%s", len(times), n, out)
	}
	return times, perTeam, total, nil
}
