package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/doraflow/doraflow/internal/demo"
	"github.com/doraflow/doraflow/internal/replay"
	"github.com/doraflow/doraflow/internal/serve"
	"github.com/doraflow/doraflow/internal/testenv"
	"github.com/doraflow/doraflow/pkg/bus"
	"github.com/doraflow/doraflow/pkg/config"
	"github.com/doraflow/doraflow/sinks/clickhouse"
)

// Attribution is a function of the events alone: replaying the same
// archive again and again — and after a replay killed half-way — gives the
// same fact rows, the ones the pure correlation gives. The history puts
// every repository in one team with a 2 h look-back, so most incidents fall
// back to the team's latest deployment, in another partition.
func TestReplayIsDeterministic(t *testing.T) {
	if testing.Short() {
		t.Skip("replays a generated history several times")
	}
	ctx := context.Background()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	natsSrv, err := bus.Open(ctx, bus.Options{DataDir: t.TempDir(), Port: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer natsSrv.Close()
	hooks, teams := demo.Generate(demo.Options{Seed: 11, Days: 8, End: time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)})
	var repos []string
	for _, tm := range teams {
		repos = append(repos, tm.Repos...)
	}
	cfg := config.Default()
	cfg.NATSURL = natsSrv.ClientURL()
	cfg.ClickHouseDSN = testenv.ClickHouse(t)
	cfg.GitHub.WebhookSecret = "replay"
	cfg.Listen = "127.0.0.1:0"
	cfg.IncidentLookback = 2 * time.Hour
	cfg.Processor.FlushInterval = 20 * time.Millisecond
	cfg.API.Token = "replay-api"
	cfg.Teams = []config.Team{{Name: "everyone", Repos: repos, Services: []string{"svc-*"}}}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	cfgFile := filepath.Join(t.TempDir(), "doraflow.yaml")
	yaml := fmt.Sprintf("incident_lookback: 2h\nteams:\n  - name: everyone\n    repos: [%q]\n    services: [\"svc-*\"]\n", strings.Join(repos, `", "`))
	if err := os.WriteFile(cfgFile, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}

	srv, err := serve.Start(ctx, cfg, serve.RoleAll, quiet)
	if err != nil {
		t.Fatal(err)
	}
	if err := demo.Send(ctx, http.DefaultClient, "http://"+srv.Addr()+"/webhooks/github", cfg.GitHub.WebhookSecret, hooks, 8, nil); err != nil {
		t.Fatal(err)
	}
	// Incidents of services no deployment names: blamed on the team's
	// latest deployment within the look-back, whichever repository (and
	// partition) it was in — or on none.
	incidents := teamIncidents(hooks[0].At, hooks[len(hooks)-1].At, 60)
	for _, body := range incidents {
		req, _ := http.NewRequest(http.MethodPost, "http://"+srv.Addr()+"/api/v1/incidents", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+cfg.API.Token)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusAccepted {
			t.Fatalf("incident: %s", resp.Status)
		}
	}
	waitCtx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := srv.WaitIdle(waitCtx); err != nil {
		t.Fatal(err)
	}
	srv.Stop(ctx)

	store, err := clickhouse.Open(ctx, cfg.ClickHouseDSN, quiet)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	facts := func() []string {
		t.Helper()
		f, err := store.Facts(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return digest(f)
	}
	want := digest(cleanRun(t, cfg, hooks, incidents...))
	attributedByTeam := 0
	for _, row := range want {
		if strings.Contains(row, "Attribution:team") {
			attributedByTeam++
		}
	}
	if attributedByTeam < 5 {
		t.Fatalf("the history attributes only %d incidents by team; the test needs cross-partition attribution", attributedByTeam)
	}
	if got := facts(); !slices.Equal(got, want) {
		t.Fatalf("served facts differ from the pure correlation: %d vs %d rows%s", len(got), len(want), firstDifference(got, want))
	}
	replayOnce := func() {
		t.Helper()
		routes, _, err := serve.Sources(cfg)
		if err != nil {
			t.Fatal(err)
		}
		popts, err := serve.ProcessorOptions(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := replay.Run(ctx, natsSrv.JS, store, routes, popts, false, io.Discard, quiet); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 3 {
		replayOnce()
		if got := facts(); !slices.Equal(got, want) {
			t.Fatalf("replay %d gave other facts: %d vs %d rows%s", i+1, len(got), len(want), firstDifference(got, want))
		}
	}

	// A replay SIGKILLed half-way: nothing but a replay may start until one
	// finishes, and that one gives the same facts again.
	cmd := exec.Command(os.Args[0], "replay", "--config", cfgFile)
	cmd.Env = append(os.Environ(), beMain+"=1", "DORAFLOW_NATS_URL="+cfg.NATSURL,
		"DORAFLOW_CLICKHOUSE_DSN="+cfg.ClickHouseDSN, "DORAFLOW_GITHUB_WEBHOOK_SECRET="+cfg.GitHub.WebhookSecret)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(30 * time.Second); ; {
		if l, _, _, err := bus.ReadLayout(ctx, natsSrv.JS); err == nil && l.Repartitioning != 0 {
			break // the replay has begun
		}
		if time.Now().After(deadline) {
			t.Fatal("the replay did not begin")
		}
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond)
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	if _, err := serve.Start(ctx, cfg, serve.RoleAll, quiet); !errors.As(err, new(*serve.PartitionsError)) {
		t.Fatalf("serve after a killed replay: %v; want it refused until a replay finishes", err)
	}
	replayOnce()
	if got := facts(); !slices.Equal(got, want) {
		t.Fatalf("the replay after a killed one gave other facts: %d vs %d rows%s", len(got), len(want), firstDifference(got, want))
	}
	srv, err = serve.Start(ctx, cfg, serve.RoleAll, quiet)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Stop(ctx)
	if err := srv.WaitIdle(waitCtx); err != nil {
		t.Fatal(err)
	}
	if got := facts(); !slices.Equal(got, want) {
		t.Fatalf("serve after the replays changed the facts: %d vs %d rows%s", len(got), len(want), firstDifference(got, want))
	}
}

// teamIncidents are n generic-API incident reports spread over [from, to),
// each of one of a few services, resolved within a day, in a fixed order.
func teamIncidents(from, to time.Time, n int) []string {
	var out []string
	span := to.Sub(from)
	for i := range n {
		opened := from.Add(span * time.Duration(i) / time.Duration(n)).Add(time.Duration(i*37%60) * time.Minute).Truncate(time.Second)
		resolved := opened.Add(time.Duration(10+i*53%600) * time.Minute)
		out = append(out, fmt.Sprintf(`{"id": "INC-%d", "service": "svc-%d", "opened_at": %q, "resolved_at": %q}`,
			i, i%4, opened.Format(time.RFC3339), resolved.Format(time.RFC3339)))
	}
	return out
}
