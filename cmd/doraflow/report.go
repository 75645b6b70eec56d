package main

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/doraflow/doraflow/internal/report"
	"github.com/doraflow/doraflow/pkg/dora"
	"github.com/doraflow/doraflow/sinks/clickhouse"
)

func reportCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "report",
		Short: "Print the DORA metrics per team for a window",
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfig(cmd)
			if err != nil {
				return err
			}
			flags := cmd.Flags()
			team, _ := flags.GetString("team")
			format, _ := flags.GetString("format")
			benchFlag, _ := flags.GetString("benchmark")
			since, until, err := window(cmd, time.Now().UTC())
			if err != nil {
				return err
			}
			bench, ok := dora.BenchmarkNamed(benchFlag)
			if !ok {
				return fmt.Errorf("%w: --benchmark %q: want 2023 or 2021", errConfig, benchFlag)
			}
			if format != "table" && format != "json" {
				return fmt.Errorf("%w: --format %q: want table or json", errConfig, format)
			}
			store, err := clickhouse.Open(cmd.Context(), cfg.ClickHouseDSN, newLogger())
			if err != nil {
				return err
			}
			defer store.Close()
			var teams []string
			for _, t := range cfg.Teams {
				teams = append(teams, t.Name)
			}
			r, err := report.Build(cmd.Context(), store, bench, since, until.UTC(), teams, team)
			if err != nil {
				return err
			}
			if format == "json" {
				return r.WriteJSON(cmd.OutOrStdout())
			}
			return r.WriteTable(cmd.OutOrStdout())
		},
	}
	cmd.Flags().String("since", "30d", "start of the window: RFC 3339 or a span back from now (30d, 12h)")
	cmd.Flags().String("until", "", "end of the window (RFC 3339); default now")
	cmd.Flags().String("team", "", "only this team")
	cmd.Flags().String("format", "table", "table or json")
	cmd.Flags().String("benchmark", "2023", "DORA benchmark for the tiers: 2023 or 2021")
	return cmd
}

// window is the --since and --until of cmd as of now: a configuration error
// unless --until (RFC 3339, default now) comes after --since.
func window(cmd *cobra.Command, now time.Time) (since, until time.Time, err error) {
	sinceFlag, _ := cmd.Flags().GetString("since")
	untilFlag, _ := cmd.Flags().GetString("until")
	if since, err = report.ParseSince(sinceFlag, now); err != nil {
		return since, until, fmt.Errorf("%w: %w", errConfig, err)
	}
	until = now
	if untilFlag != "" {
		if until, err = time.Parse(time.RFC3339, untilFlag); err != nil {
			return since, until, fmt.Errorf("%w: --until %q: want RFC 3339", errConfig, untilFlag)
		}
	}
	if !until.After(since) {
		return since, until, fmt.Errorf("%w: --until must be after --since", errConfig)
	}
	return since, until, nil
}
