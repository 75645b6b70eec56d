package main

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/doraflow/doraflow/internal/serve"
	"github.com/doraflow/doraflow/pkg/bus"
	"github.com/doraflow/doraflow/sinks/clickhouse"
)

func migrateCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "migrate",
		Short: "Create the ClickHouse database and apply the schema migrations (re-runnable)",
		Long: `Create the ClickHouse database and apply the schema migrations not yet applied.

With an external NATS (DORAFLOW_NATS_URL) it takes the same lock on the bus as
processors starting, so any number of migrate and serve processes starting
together apply each migration once. Without one there is no bus to share: the
embedded bus belongs to the one serve process, which migrates at its start.`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfig(cmd)
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			logger := newLogger()
			store, err := clickhouse.Open(ctx, cfg.ClickHouseDSN, logger)
			if err != nil {
				return err
			}
			store.OnCluster(cfg.ClickHouse.Cluster)
			defer store.Close()
			var applied []string
			apply := func(ctx context.Context) (err error) {
				applied, err = store.Migrate(ctx)
				return err
			}
			if cfg.NATSURL == "" {
				err = apply(ctx)
			} else {
				var b *bus.Bus
				if b, err = bus.Open(ctx, serve.BusOptions(cfg, logger)); err != nil {
					return err
				}
				defer b.Close()
				err = bus.WithLock(ctx, b.JS, serve.MigrationLock(store), cfg.NATS.Replicas, apply)
			}
			if err != nil {
				return err
			}
			if len(applied) == 0 {
				fmt.Fprintf(cmd.OutOrStdout(), "database %s is up to date\n", store.Database())
			}
			for _, m := range applied {
				fmt.Fprintf(cmd.OutOrStdout(), "applied %s to %s\n", m, store.Database())
			}
			return nil
		},
	}
}
