package main

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/doraflow/doraflow/internal/backfill"
	"github.com/doraflow/doraflow/internal/report"
)

func redeliverCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "redeliver",
		Short: "Ask a vendor to redeliver the webhooks that failed",
	}
	gh := &cobra.Command{
		Use:   "github (--repo owner/name | --org ORG) --hook-id N",
		Short: "Redeliver a GitHub webhook's deliveries that never succeeded (GitHub does not retry by itself)",
		Long: `Lists the hook's deliveries since --since (GitHub keeps three days of them) and
asks GitHub to redeliver, once, each delivery none of whose attempts succeeded.
A delivery that succeeded on a later attempt is left alone, so the command is
safe to run repeatedly (from cron, say). Needs DORAFLOW_GITHUB_TOKEN with admin
rights on the hook (repository or organisation webhooks: "admin:repo_hook" or
"admin:org_hook").`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfig(cmd)
			if err != nil {
				return err
			}
			flags := cmd.Flags()
			repo, _ := flags.GetString("repo")
			org, _ := flags.GetString("org")
			hook, _ := flags.GetInt64("hook-id")
			sinceFlag, _ := flags.GetString("since")
			dryRun, _ := flags.GetBool("dry-run")
			since, err := report.ParseSince(sinceFlag, time.Now().UTC())
			if err != nil {
				return fmt.Errorf("%w: %w", errConfig, err)
			}
			rcfg := backfill.RedeliverConfig{Repo: repo, Org: org, HookID: hook, Since: since, DryRun: dryRun}
			if err := rcfg.Validate(); err != nil {
				return fmt.Errorf("%w: %w", errConfig, err)
			}
			if cfg.GitHub.Token == "" {
				return fmt.Errorf("%w: redeliver github: set DORAFLOW_GITHUB_TOKEN (or github.token)", errConfig)
			}
			logger := newLogger()
			tr := &backfill.Transport{OnWait: func(w backfill.Wait) { logger.Warn("waiting for the API", "wait", w.String()) }}
			client, err := backfill.NewGitHubClient(cfg.GitHub.Token, cfg.GitHub.APIURL, tr)
			if err != nil {
				return fmt.Errorf("%w: %w", errConfig, err)
			}
			_, err = backfill.Redeliver(cmd.Context(), client, rcfg, cmd.OutOrStdout())
			return err
		},
	}
	gh.Flags().String("repo", "", "the repository whose webhook it is, owner/name")
	gh.Flags().String("org", "", "the organisation whose webhook it is")
	gh.Flags().Int64("hook-id", 0, "the webhook's id")
	gh.Flags().String("since", "24h", "deliveries since: RFC 3339 or a span back from now (24h, 3d)")
	gh.Flags().Bool("dry-run", false, "say what would be redelivered, ask nothing")
	cmd.AddCommand(gh)
	return cmd
}
