package main

import (
	"fmt"
	"slices"

	"github.com/spf13/cobra"

	"github.com/doraflow/doraflow/internal/replay"
	"github.com/doraflow/doraflow/internal/serve"
	"github.com/doraflow/doraflow/pkg/bus"
	"github.com/doraflow/doraflow/sinks/clickhouse"
)

func replayCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "replay",
		Short: "Re-derive every fact from the raw webhook archive (after a parser fix)",
		Long: `Parses every archived delivery again with the current parsers and configuration,
replaces the event stream with the result and brings the stored facts in line
(writing tombstones for facts that no longer hold). Stop the processors first;
collectors may keep running against an external NATS.

With --repartition it also moves the bus to the configured partition count
(DORAFLOW_PARTITIONS), the one safe way to change it: stop every doraflow
process, collectors included, run it, then start everything with the new count.`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfig(cmd)
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			logger := newLogger()
			routes, _, err := serve.Sources(cfg)
			if err != nil {
				return fmt.Errorf("%w: %w", errConfig, err)
			}
			b, err := bus.Open(ctx, serve.BusOptions(cfg, logger))
			if err != nil {
				return err
			}
			defer b.Close()
			store, err := clickhouse.Open(ctx, cfg.ClickHouseDSN, logger)
			if err != nil {
				return err
			}
			store.OnCluster(cfg.ClickHouse.Cluster)
			defer store.Close()
			if err := serve.Migrate(ctx, b, store, cfg.NATS.Replicas); err != nil {
				return err
			}
			popts, err := serve.ProcessorOptions(cfg)
			if err != nil {
				return fmt.Errorf("%w: %w", errConfig, err)
			}
			repartition, _ := cmd.Flags().GetBool("repartition")
			res, err := replay.Run(ctx, b.JS, store, routes, popts, repartition, cmd.ErrOrStderr(), logger)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "replayed %d deliveries into %d events; %d fact rows written, %d of them retracting stale facts\n",
				res.Deliveries, res.Events, res.Written, res.Retracted)
			reasons := make([]string, 0, len(res.Skipped))
			for r := range res.Skipped {
				reasons = append(reasons, r)
			}
			slices.Sort(reasons)
			for _, r := range reasons {
				fmt.Fprintf(out, "  %d deliveries skipped: %s\n", res.Skipped[r], r)
			}
			return nil
		},
	}
	cmd.Flags().Bool("repartition", false, "move the bus to the configured partition count (stop every doraflow process first)")
	return cmd
}
