// Command doraflow is the single binary: it wires doraflow's packages into
// subcommands and holds no logic of its own.
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/doraflow/doraflow/internal/serve"
	"github.com/doraflow/doraflow/pkg/config"
)

// errConfig marks a bad configuration: exit status 2.
var errConfig = errors.New("configuration")

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := newRoot().ExecuteContext(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "doraflow:", err)
		os.Exit(exitCode(err))
	}
}

// exitCode is 2 for an error the configuration causes, 1 for any other.
func exitCode(err error) int {
	// A partition count other than the bus's is found only once the bus
	// answers, but it is the configuration that must change.
	var layout *serve.PartitionsError
	if errors.Is(err, errConfig) || errors.As(err, &layout) {
		return 2
	}
	return 1
}

func newRoot() *cobra.Command {
	root := &cobra.Command{
		Use:           "doraflow",
		Short:         "Live DORA metrics from webhooks: collectors → NATS JetStream → processor → ClickHouse",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.PersistentFlags().String("config", os.Getenv(config.FileEnv), "YAML configuration file (env "+config.FileEnv+")")
	root.AddCommand(serveCmd(), reportCmd(), migrateCmd(), demoCmd(), replayCmd(), dashboardsCmd(), backfillCmd(), redeliverCmd())
	return root
}

// loadConfig reads --config and the environment, and validates.
func loadConfig(cmd *cobra.Command) (config.Config, error) {
	path, _ := cmd.Flags().GetString("config")
	cfg, err := config.Load(path, os.Getenv)
	if err != nil {
		return cfg, fmt.Errorf("%w: %w", errConfig, err)
	}
	if err := cfg.Validate(); err != nil {
		return cfg, fmt.Errorf("%w:\n%w", errConfig, err)
	}
	return cfg, nil
}

func newLogger() *slog.Logger { return loggerAt(slog.LevelInfo) }

func loggerAt(level slog.Level) *slog.Logger {
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
}
