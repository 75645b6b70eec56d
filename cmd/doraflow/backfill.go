package main

import (
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/doraflow/doraflow/internal/backfill"
	"github.com/doraflow/doraflow/internal/serve"
	"github.com/doraflow/doraflow/pkg/config"
)

func backfillCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "backfill",
		Short: "Publish history from a Git host or incident tool's API as the events its webhooks would have sent",
		Long: `Fetches history through a vendor's API and publishes it on the bus as the same
canonical events, with the same ids, as the vendor's webhooks produce: a fact
reported both ways counts once. It reaches the bus at DORAFLOW_NATS_URL, or else
the embedded one of the doraflow serve running on the same DORAFLOW_DATA_DIR.
Progress is checkpointed on the bus: run the same command again after an
interruption and it resumes.`,
	}
	cmd.PersistentFlags().String("since", "90d", "start of the history: RFC 3339 or a span back from now (90d)")
	cmd.PersistentFlags().String("until", "", "end of the history (RFC 3339); default now")
	cmd.PersistentFlags().Bool("dry-run", false, "print the events that would be published (one JSON line each), publish nothing")
	cmd.PersistentFlags().Int("concurrency", backfill.DefaultConcurrency, "repositories or projects fetched at once")
	cmd.PersistentFlags().Float64("max-rate", backfill.DefaultMaxRate, "requests a second to the API, over all repositories (0: unpaced); the default stays under GitHub's, GitLab.com's and PagerDuty's per-minute limits")
	cmd.PersistentFlags().Bool("restart", false, "ignore the checkpoints: fetch everything again (events already published stay single)")
	cmd.AddCommand(backfillGitHubCmd(), backfillGitLabCmd(), backfillPagerDutyCmd())
	return cmd
}

func backfillGitLabCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "gitlab --project group/name ...",
		Short: "Backfill production deployments, their changes, merged merge requests and incidents from GitLab",
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfig(cmd)
			if err != nil {
				return err
			}
			projects, _ := cmd.Flags().GetStringArray("project")
			gcfg := backfill.GitLabConfig{Token: cfg.GitLab.Token, APIURL: cfg.GitLab.APIURL, Projects: projects, IsProduction: cfg.IsProduction}
			return runBackfill(cmd, cfg, "backfill:gitlab", gcfg.Validate, func(s *backfill.Session, _ backfill.Window) ([]backfill.Target, error) {
				g, err := backfill.NewGitLab(gcfg, s.Transport)
				if err != nil {
					return nil, fmt.Errorf("%w: %w", errConfig, err)
				}
				return g.Targets(), nil
			})
		},
	}
	cmd.Flags().StringArray("project", nil, "a project, group/name (repeat for several)")
	return cmd
}

func backfillGitHubCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "github (--repo owner/name ... | --org ORG)",
		Short: "Backfill production deployments, their changes, merged pull requests and incident issues from GitHub",
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfig(cmd)
			if err != nil {
				return err
			}
			repos, _ := cmd.Flags().GetStringArray("repo")
			org, _ := cmd.Flags().GetString("org")
			gcfg := backfill.GitHubConfig{Token: cfg.GitHub.Token, APIURL: cfg.GitHub.APIURL,
				Repos: repos, Org: org, IncidentLabels: cfg.GitHub.IncidentLabels, IsProduction: cfg.IsProduction}
			return runBackfill(cmd, cfg, "backfill:github", gcfg.Validate, func(s *backfill.Session, w backfill.Window) ([]backfill.Target, error) {
				g, err := backfill.NewGitHub(gcfg, s.Transport)
				if err != nil {
					return nil, fmt.Errorf("%w: %w", errConfig, err)
				}
				return g.Targets(cmd.Context(), w.Since)
			})
		},
	}
	cmd.Flags().StringArray("repo", nil, "a repository, owner/name (repeat for several)")
	cmd.Flags().String("org", "", "every repository of this organisation pushed to in the window")
	return cmd
}

func backfillPagerDutyCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "pagerduty",
		Short: "Backfill the account's incidents, with their services and resolve times, from PagerDuty",
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfig(cmd)
			if err != nil {
				return err
			}
			pcfg := backfill.PagerDutyConfig{Token: cfg.PagerDuty.Token, APIURL: cfg.PagerDuty.APIURL}
			return runBackfill(cmd, cfg, "backfill:pagerduty", pcfg.Validate, func(s *backfill.Session, _ backfill.Window) ([]backfill.Target, error) {
				p, err := backfill.NewPagerDuty(pcfg, s.Transport)
				if err != nil {
					return nil, fmt.Errorf("%w: %w", errConfig, err)
				}
				return p.Targets(), nil
			})
		},
	}
}

// runBackfill checks the flags and the vendor's configuration (check),
// sets up a session (the bus, or a listing for --dry-run), asks targets for
// what to fetch, runs it and prints what it did.
func runBackfill(cmd *cobra.Command, cfg config.Config, label string, check func() error,
	targets func(*backfill.Session, backfill.Window) ([]backfill.Target, error)) error {
	ctx := cmd.Context()
	flags := cmd.Flags()
	dryRun, _ := flags.GetBool("dry-run")
	concurrency, _ := flags.GetInt("concurrency")
	restart, _ := flags.GetBool("restart")
	maxRate, _ := flags.GetFloat64("max-rate")
	now := time.Now().UTC()
	since, until, err := window(cmd, now)
	if err != nil {
		return err
	}
	bcfg := backfill.Config{Since: since, Until: until.UTC(), Keep: cfg.Processor.Retention.Keep, Now: now, Concurrency: concurrency}
	if err := errors.Join(bcfg.Validate(), check()); err != nil {
		return fmt.Errorf("%w: %w", errConfig, err)
	}
	logger := newLogger()
	opts := backfill.SessionOptions{List: cmd.OutOrStdout(), Progress: cmd.ErrOrStderr(), Label: label, Replicas: cfg.NATS.Replicas, MaxRate: maxRate}
	if !dryRun {
		b, err := serve.Dial(ctx, cfg, logger)
		if err != nil {
			return err
		}
		defer b.Close()
		if err := serve.CheckPartitions(ctx, b.JS, cfg.Processor.Partitions); err != nil {
			return err
		}
		opts.JS, opts.Partitions = b.JS, cfg.Processor.Partitions
	}
	s, err := backfill.NewSession(ctx, bcfg, opts, logger)
	if err != nil {
		return err
	}
	s.Fresh = restart
	ts, err := targets(s, backfill.Window{Since: since, Until: until})
	if err != nil {
		return err
	}
	res, err := s.Run(ctx, ts)
	verb := "published"
	if dryRun {
		verb = "would publish"
	}
	fmt.Fprintf(cmd.ErrOrStderr(), "%s: %d targets fetched (%d resumed), %d already done, %d failed; %s %d events; %d older than processor.retention.keep left out\n",
		label, res.Targets, res.Resumed, res.Skipped, res.Failed, verb, res.Events, res.TooOld)
	return err
}
