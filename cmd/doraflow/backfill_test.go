package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/doraflow/doraflow/internal/githubtest"
	"github.com/doraflow/doraflow/internal/testenv"
)

// backfillProc runs `doraflow backfill github` as its own process, as a
// user runs it beside serve, with the environment given.
func backfillProc(t *testing.T, env []string, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], append([]string{"backfill", "github"}, args...)...)
	cmd.Env = append(append(os.Environ(), beMain+"=1"), env...)
	return cmd
}

var summaryLine = regexp.MustCompile(`backfill:github: (\d+) targets fetched \((\d+) resumed\), (\d+) already done, 0 failed; published (\d+) events`)

// The command reaches the bus embedded in a running serve through the
// loopback URL serve records in the data dir. Killed (SIGKILL) half-way
// and run again, it resumes: the targets it had finished are not fetched
// again, and the metrics are those of an uninterrupted backfill.
func TestBackfillKilledAndResumed(t *testing.T) {
	end := time.Now().UTC()
	api := githubtest.NewAPI("gh-token")
	defer api.Close()
	api.Latency = 20 * time.Millisecond
	var repoFlags []string
	for i := range 8 {
		r := githubtest.Quarter(fmt.Sprintf("acme/svc-%d", i), end)
		api.AddRepo(r)
		repoFlags = append(repoFlags, "--repo", r.FullName)
	}
	cfgFile := filepath.Join(t.TempDir(), "doraflow.yaml")
	if err := os.WriteFile(cfgFile, []byte(fmt.Sprintf("github:\n  api_url: %q\n", api.URL)), 0o600); err != nil {
		t.Fatal(err)
	}
	since := end.Add(-90 * 24 * time.Hour).Format(time.RFC3339)
	args := append([]string{"--since", since, "--until", end.Format(time.RFC3339), "--concurrency", "2", "--max-rate", "0"}, repoFlags...)

	// Each run on its own serve, data dir and database.
	backfilled := func(interrupt bool) (report string, summary []string) {
		dir := t.TempDir()
		dsn := testenv.ClickHouse(t)
		env := []string{"DORAFLOW_CONFIG=" + cfgFile, "DORAFLOW_DATA_DIR=" + dir, "DORAFLOW_CLICKHOUSE_DSN=" + dsn, "DORAFLOW_GITHUB_TOKEN=gh-token"}
		srv := startServe(t, "all", env...)
		defer srv.stop()
		if interrupt {
			cmd := backfillProc(t, env, args...)
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			// About half of the 8 × 49 requests at 20 ms, two at a time.
			deadline, from := time.Now().Add(30*time.Second), api.Calls.Load()
			for api.Calls.Load() < from+200 && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
		var stderr bytes.Buffer
		cmd := backfillProc(t, env, args...)
		cmd.Stderr = &stderr
		if err := cmd.Run(); err != nil {
			t.Fatalf("backfill: %v\n%s", err, stderr.String())
		}
		summary = summaryLine.FindStringSubmatch(stderr.String())
		if summary == nil {
			t.Fatalf("no summary line in\n%s", stderr.String())
		}
		t.Setenv("DORAFLOW_CLICKHOUSE_DSN", dsn)
		// serve processes in the background: wait until the report holds
		// every deployment, change and failure (githubtest.Quarter: 20
		// deployments in the window, 205 changes, one failed, a
		// repository) and stays put.
		var last string
		for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(300 * time.Millisecond) {
			out, err := run(t, "report", "--since", since, "--until", end.Format(time.RFC3339), "--format", "json")
			if err != nil {
				t.Fatal(err)
			}
			var r struct {
				Total struct {
					Deployments int `json:"deployments"`
					Changes     int `json:"changes"`
					Failed      int `json:"failed_deployments"`
				} `json:"total"`
			}
			if err := json.Unmarshal([]byte(out), &r); err != nil {
				t.Fatal(err)
			}
			if r.Total.Deployments == 8*20 && r.Total.Changes == 8*205 && r.Total.Failed == 8 && out == last {
				return out, summary
			}
			last = out
		}
		t.Fatalf("the report did not settle at 160 deployments, 1640 changes, 8 failed:\n%s\n%s", last, srv.logText())
		return "", nil
	}

	whole, summary := backfilled(false)
	if summary[1] != "8" || summary[2] != "0" || summary[4] != fmt.Sprint(8*96) {
		t.Errorf("uninterrupted: %s", summary[0])
	}
	resumed, summary := backfilled(true)
	if summary[3] == "0" {
		t.Errorf("after SIGKILL the backfill started over: %s", summary[0])
	}
	t.Log(summary[0])
	if resumed != whole {
		t.Errorf("resumed backfill's report differs\n got %s\nwant %s", resumed, whole)
	}
}

// --dry-run lists the events on stdout and needs no bus; a window beyond
// the retention, and a redelivery without its hook, are configuration
// errors (exit 2) that name what to change.
func TestBackfillDryRunAndRefusals(t *testing.T) {
	end := time.Now().UTC()
	api := githubtest.NewAPI("gh-token")
	defer api.Close()
	api.AddRepo(githubtest.Quarter("acme/svc", end))
	cfgFile := filepath.Join(t.TempDir(), "doraflow.yaml")
	if err := os.WriteFile(cfgFile, []byte(fmt.Sprintf("github:\n  api_url: %q\n", api.URL)), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("DORAFLOW_GITHUB_TOKEN", "gh-token")
	// No serve runs on this data dir: only a dry run can go on.
	t.Setenv("DORAFLOW_DATA_DIR", t.TempDir())
	out, err := run(t, "--config", cfgFile, "backfill", "github", "--repo", "acme/svc", "--since", "90d", "--dry-run")
	if err != nil {
		t.Fatal(err)
	}
	if lines := strings.Count(out, "\n"); lines != 96 || !strings.Contains(out, `"id":"github:deployment_status:`) {
		t.Errorf("dry run printed %d lines; want the 96 events:\n%.500s", lines, out)
	}
	if _, err := run(t, "--config", cfgFile, "backfill", "github", "--repo", "acme/svc", "--since", "90d"); err == nil || !strings.Contains(err.Error(), "doraflow serve") {
		t.Errorf("without a bus: %v; want it to say to start serve", err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"backfill", "github", "--repo", "acme/svc", "--since", "500d"}, "processor.retention.keep"},
		{[]string{"backfill", "github", "--since", "90d"}, "--repo"},
		{[]string{"backfill", "gitlab", "--project", "acme/svc"}, "DORAFLOW_GITLAB_TOKEN"},
		{[]string{"redeliver", "github", "--repo", "acme/svc"}, "--hook-id"},
	} {
		_, err := run(t, append([]string{"--config", cfgFile}, tc.args...)...)
		if exitCode(err) != 2 || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: exit %d, %v; want 2 naming %s", tc.args, exitCode(err), err, tc.want)
		}
	}
}
