package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/doraflow/doraflow/sinks/clickhouse"
)

func migrateCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "migrate",
		Short: "Create the ClickHouse database and apply the schema migrations (re-runnable)",
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfig(cmd)
			if err != nil {
				return err
			}
			store, err := clickhouse.Open(cmd.Context(), cfg.ClickHouseDSN, newLogger())
			if err != nil {
				return err
			}
			store.OnCluster(cfg.ClickHouse.Cluster)
			defer store.Close()
			applied, err := store.Migrate(cmd.Context())
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
