package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/spf13/cobra"

	"github.com/doraflow/doraflow/internal/demo"
	"github.com/doraflow/doraflow/internal/report"
	"github.com/doraflow/doraflow/internal/serve"
	"github.com/doraflow/doraflow/pkg/config"
	"github.com/doraflow/doraflow/pkg/dora"
)

func demoCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Run the whole pipeline on a generated history and print the DORA table",
		Long: `Starts doraflow (collectors, embedded JetStream, processor) against the configured
ClickHouse, sends a generated history of signed GitHub webhooks through the HTTP
collector, waits until every event is processed and prints the per-team report.`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfig(cmd)
			if err != nil {
				return err
			}
			days, _ := cmd.Flags().GetInt("days")
			seed, _ := cmd.Flags().GetInt64("seed")
			end := time.Now().UTC().Truncate(time.Hour)
			hooks, teams := demo.Generate(demo.Options{Seed: seed, Days: days, End: end})
			if len(cfg.Teams) == 0 {
				for _, t := range teams {
					cfg.Teams = append(cfg.Teams, config.Team{Name: t.Name, Repos: t.Repos})
				}
			}
			if cfg.GitHub.WebhookSecret == "" {
				cfg.GitHub.WebhookSecret = "doraflow-demo"
			}
			if err := cfg.Validate(); err != nil {
				return fmt.Errorf("%w: %w", errConfig, err)
			}
			ctx := cmd.Context()
			out := cmd.OutOrStdout()
			// Warnings only: the progress bar and the table are the output.
			srv, err := serve.Start(ctx, cfg, serve.RoleAll, loggerAt(slog.LevelWarn))
			if err != nil {
				return err
			}
			defer func() {
				stopCtx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				srv.Stop(stopCtx)
			}()
			url := "http://" + srv.Addr() + "/webhooks/github"
			fmt.Fprintf(out, "sending %d GitHub webhooks (%d days, %d teams) to %s\n", len(hooks), days, len(teams), url)
			start := time.Now()
			client := &http.Client{Timeout: 30 * time.Second}
			if err := demo.SendWithBar(ctx, client, url, cfg.GitHub.WebhookSecret, hooks, 16, cmd.ErrOrStderr()); err != nil {
				return err
			}
			sent := time.Since(start)
			waitCtx, cancel := context.WithTimeout(ctx, 5*time.Minute)
			defer cancel()
			if err := srv.WaitIdle(waitCtx); err != nil {
				return err
			}
			fmt.Fprintf(out, "\nsent in %s (%.0f webhooks/s); all processed after %s\n\n",
				sent.Round(time.Millisecond), float64(len(hooks))/sent.Seconds(), time.Since(start).Round(time.Millisecond))
			var names []string
			for _, t := range cfg.Teams {
				names = append(names, t.Name)
			}
			r, err := report.Build(ctx, srv.Store(), dora.Benchmark2023, end.Add(-time.Duration(days)*24*time.Hour), end.Add(time.Second), names, "")
			if err != nil {
				return err
			}
			if err := r.WriteTable(out); err != nil {
				return err
			}
			fmt.Fprintf(out, "\nThe facts stay in %s: try `doraflow report --since %dd --format json` with the same DORAFLOW_CLICKHOUSE_DSN.\n", config.Redacted(cfg.ClickHouseDSN), days)
			return nil
		},
	}
	cmd.Flags().Int("days", 60, "days of history to generate")
	cmd.Flags().Int64("seed", 1, "seed of the generated history")
	return cmd
}
