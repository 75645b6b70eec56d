package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/doraflow/doraflow/collectors/generic"
	"github.com/doraflow/doraflow/collectors/github"
	"github.com/doraflow/doraflow/collectors/webhook"
	"github.com/doraflow/doraflow/internal/demo"
	"github.com/doraflow/doraflow/internal/serve"
	"github.com/doraflow/doraflow/internal/testenv"
	"github.com/doraflow/doraflow/pkg/bus"
	"github.com/doraflow/doraflow/pkg/config"
	"github.com/doraflow/doraflow/processor"
	"github.com/doraflow/doraflow/processor/correlate"
	"github.com/doraflow/doraflow/sinks/clickhouse"
)

// beMain lets the test binary run as doraflow itself, so the crash test
// kills a real processor process.
const beMain = "DORAFLOW_TEST_BE_MAIN"

// Two processor processes share the partitions while webhooks flow; one of
// them, at random, is SIGKILLed and restarted, again and again. ClickHouse
// ends up holding exactly the facts of a clean run: nothing acknowledged is
// lost, nothing is counted twice, and partitions move between the processes
// without two working on one.
func TestProcessorSurvivesSIGKILL(t *testing.T) {
	if testing.Short() {
		t.Skip("crash test runs in the full suite")
	}
	ctx := context.Background()
	natsSrv, err := bus.Open(ctx, bus.Options{DataDir: t.TempDir(), Port: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer natsSrv.Close()
	hooks, teams := demo.Generate(demo.Options{Seed: 7, Days: 6, End: time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)})

	cfg := config.Default()
	cfg.NATSURL = natsSrv.ClientURL()
	cfg.ClickHouseDSN = testenv.ClickHouse(t)
	cfg.GitHub.WebhookSecret = "crash"
	cfg.Listen = "127.0.0.1:0"
	var yaml strings.Builder
	yaml.WriteString("processor:\n  batch_size: 25\n  flush_interval: 20ms\n  snapshot_interval: 50ms\n  ack_wait: 2s\n  lease_ttl: 1s\nteams:\n")
	for _, tm := range teams {
		cfg.Teams = append(cfg.Teams, config.Team{Name: tm.Name, Repos: tm.Repos})
		fmt.Fprintf(&yaml, "  - name: %s\n    repos: [%q]\n", tm.Name, strings.Join(tm.Repos, `", "`))
	}
	cfgFile := filepath.Join(t.TempDir(), "doraflow.yaml")
	if err := os.WriteFile(cfgFile, []byte(yaml.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	collector, err := serve.Start(ctx, cfg, serve.RoleCollector, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer collector.Stop(ctx)

	sent := make(chan error, 1)
	go func() {
		// Paced, so that the kills land while events flow.
		pace := func(int, int) { time.Sleep(5 * time.Millisecond) }
		sent <- demo.Send(ctx, http.DefaultClient, "http://"+collector.Addr()+"/webhooks/github", cfg.GitHub.WebhookSecret, hooks, 4, pace)
	}()
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("DORAFLOW_CRASH_SEED"); s != "" {
		fmt.Sscan(s, &seed)
	}
	t.Logf("kill timings from seed %d (DORAFLOW_CRASH_SEED to repeat)", seed)
	rng := rand.New(rand.NewPCG(seed, seed))
	startProcessor := func() *exec.Cmd {
		cmd := exec.Command(os.Args[0], "serve", "--role", "processor", "--config", cfgFile)
		cmd.Env = append(os.Environ(), beMain+"=1", "DORAFLOW_NATS_URL="+cfg.NATSURL,
			"DORAFLOW_CLICKHOUSE_DSN="+cfg.ClickHouseDSN, "DORAFLOW_LISTEN=127.0.0.1:0")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		return cmd
	}
	// Two processor processes share the partitions; each round one of them,
	// at random, is killed and started again.
	procs := []*exec.Cmd{startProcessor(), startProcessor()}
	defer func() {
		for _, p := range procs {
			_ = p.Process.Signal(syscall.SIGTERM)
			_ = p.Wait()
		}
	}()
	kills, whileSending := 0, 0
	for done := false; !done || kills < 8; {
		time.Sleep(time.Duration(100+rng.IntN(600)) * time.Millisecond)
		victim := rng.IntN(len(procs))
		_ = procs[victim].Process.Signal(syscall.SIGKILL)
		_ = procs[victim].Wait()
		procs[victim] = startProcessor()
		kills++
		if !done {
			whileSending++
		}
		select {
		case err := <-sent:
			if err != nil {
				t.Fatal(err)
			}
			done = true
		default:
		}
	}
	if whileSending < 3 {
		t.Fatalf("only %d kills landed while webhooks were being sent", whileSending)
	}
	waitCtx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	caughtUp := func() bool {
		idle, err := processor.Idle(waitCtx, natsSrv.JS, cfg.Processor.Partitions)
		return err == nil && idle
	}
	for !caughtUp() {
		select {
		case <-waitCtx.Done():
			t.Fatal("processor did not catch up")
		case <-time.After(100 * time.Millisecond):
		}
	}

	store, err := clickhouse.Open(ctx, cfg.ClickHouseDSN, slog.Default())
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	want := cleanRun(t, cfg, hooks)
	for {
		got, err := store.Facts(ctx)
		if err != nil {
			t.Fatal(err)
		}
		g, w := digest(got), digest(want)
		if slices.Equal(g, w) {
			break
		}
		if waitCtx.Err() != nil {
			dead := "unknown"
			if dlq, err := natsSrv.JS.Stream(ctx, bus.DeadLetterStream); err == nil {
				dead = fmt.Sprint(dlq.CachedInfo().State.Msgs)
			}
			t.Fatalf("after %d kills ClickHouse holds other facts than a clean run: %d vs %d rows (%s dead-lettered)\nfirst difference: %s",
				kills, len(g), len(w), dead, firstDifference(g, w))
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Logf("%d webhooks, %d kills (%d while sending), %d facts identical to a clean run",
		len(hooks), kills, whileSending, len(want.Deployments)+len(want.Changes)+len(want.Incidents))
}

// cleanRun is what the pure correlation makes of the same webhooks (and
// generic-API incident reports).
func cleanRun(t *testing.T, cfg config.Config, hooks []demo.Webhook, incidents ...string) correlate.Facts {
	src, err := github.New(github.Config{WebhookSecret: "x"})
	if err != nil {
		t.Fatal(err)
	}
	api, err := generic.NewIncidents(generic.Config{APIToken: "x"})
	if err != nil {
		t.Fatal(err)
	}
	state := correlate.New(correlate.Config{IsProduction: cfg.IsProduction, TeamOfRepo: cfg.TeamOfRepo,
		TeamOfService: cfg.TeamOfService, Lookback: cfg.IncidentLookback})
	for _, h := range hooks {
		events, _ := src.Parse(webhook.Delivery{Event: h.Event, ID: h.Delivery, Body: h.Body})
		for _, e := range events {
			state.Apply(e)
		}
	}
	for _, body := range incidents {
		events, err := api.Parse(webhook.Delivery{Event: "incident", Body: []byte(body)})
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range events {
			state.Apply(e)
		}
	}
	state.Flush()
	return state.Current()
}

func digest(f correlate.Facts) []string {
	var out []string
	for _, r := range f.Deployments {
		d := r.Fact
		rec := "-"
		if d.RecoveredAt != nil {
			rec = d.RecoveredAt.UTC().Format(time.RFC3339)
		}
		d.RecoveredAt = nil
		out = append(out, fmt.Sprintf("deployment %+v recovered=%s", d, rec))
	}
	for _, r := range f.Changes {
		out = append(out, fmt.Sprintf("change %+v", r.Fact))
	}
	for _, r := range f.Incidents {
		i := r.Fact
		res := "-"
		if i.ResolvedAt != nil {
			res = i.ResolvedAt.UTC().Format(time.RFC3339)
		}
		i.ResolvedAt = nil
		out = append(out, fmt.Sprintf("incident %+v resolved=%s", i, res))
	}
	slices.Sort(out)
	return out
}

func firstDifference(a, b []string) string {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return fmt.Sprintf("\n got  %s\n want %s", a[i], b[i])
		}
	}
	return "one is a prefix of the other"
}
