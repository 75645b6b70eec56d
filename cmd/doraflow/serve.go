package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/doraflow/doraflow/internal/serve"
	"github.com/doraflow/doraflow/pkg/memlimit"
)

func serveCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the collectors and/or the processor",
		Long: `Run doraflow. --role all (default) runs collectors and processor in one process
on an embedded JetStream server unless DORAFLOW_NATS_URL is set; --role collector
and --role processor run one side each against an external NATS.`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfig(cmd)
			if err != nil {
				return err
			}
			roleFlag, _ := cmd.Flags().GetString("role")
			role, err := serve.ParseRole(roleFlag)
			if err != nil {
				return fmt.Errorf("%w: %w", errConfig, err)
			}
			if role != serve.RoleAll && cfg.NATSURL == "" {
				return fmt.Errorf("%w: --role %s needs an external NATS (DORAFLOW_NATS_URL) shared with the other role", errConfig, role)
			}
			logger := newLogger()
			if limit, err := memlimit.Apply(os.Getenv, memlimit.CgroupFiles()); err != nil {
				logger.Warn("no memory limit for the Go runtime", "err", err)
			} else if limit > 0 {
				logger.Info("Go runtime memory limit", "bytes", limit)
			}
			return serve.Run(cmd.Context(), cfg, role, logger)
		},
	}
	cmd.Flags().String("role", "all", "which parts to run: all, collector or processor")
	return cmd
}
