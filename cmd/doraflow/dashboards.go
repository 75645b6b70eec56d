package main

import (
	"errors"
	"fmt"
	"net/http"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/doraflow/doraflow/dashboards"
)

func dashboardsCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "dashboards",
		Short: "Grafana dashboards: write them with their provisioning, or apply them to a Grafana",
	}
	cmd.PersistentFlags().String("clickhouse-database", "doraflow", "ClickHouse database the dashboards' SQL reads")
	cmd.AddCommand(dashboardsGenerateCmd(), dashboardsApplyCmd())
	return cmd
}

func dashboardsGenerateCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "generate --out DIR",
		Short: "Write the dashboards' JSON and Grafana provisioning of them and of the ClickHouse datasource",
		Long: `Writes DIR/dashboards/*.json, DIR/provisioning/dashboards/doraflow.yaml (a file
provider reading --dashboards-path) and DIR/provisioning/datasources/doraflow.yaml
(the ClickHouse datasource, uid doraflow-clickhouse, password from Grafana's
environment: DORAFLOW_CLICKHOUSE_READER_PASSWORD). The same flags write the same bytes.`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			f := cmd.Flags()
			out, _ := f.GetString("out")
			if out == "" {
				return fmt.Errorf("%w: --out is required", errConfig)
			}
			var p dashboards.Provisioning
			p.DashboardsPath, _ = f.GetString("dashboards-path")
			p.Host, _ = f.GetString("clickhouse-host")
			p.Port, _ = f.GetInt("clickhouse-port")
			p.User, _ = f.GetString("clickhouse-user")
			p.Database, _ = f.GetString("clickhouse-database")
			w, err := dashboards.Generate(out, p)
			if err != nil {
				return err
			}
			for _, path := range append(w.Dashboards, w.DashboardsProvider, w.DatasourceProvider) {
				fmt.Fprintln(cmd.OutOrStdout(), path)
			}
			return nil
		},
	}
	cmd.Flags().String("out", "", "directory to write to")
	cmd.Flags().String("dashboards-path", "", "the dashboards directory as Grafana sees it (default: the absolute path of DIR/dashboards)")
	cmd.Flags().String("clickhouse-host", "localhost", "ClickHouse host as Grafana reaches it")
	cmd.Flags().Int("clickhouse-port", 9000, "ClickHouse native-protocol port")
	cmd.Flags().String("clickhouse-user", "doraflow_reader", "read-only ClickHouse user of the datasource")
	return cmd
}

func dashboardsApplyCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "apply --grafana-url URL",
		Short: "Create the doraflow folder and create or overwrite the dashboards through Grafana's HTTP API",
		Long: `Uses the service account token in DORAFLOW_GRAFANA_TOKEN (role Editor). Idempotent:
applying again overwrites the dashboards with the same content. The dashboards select
the datasource with uid doraflow-clickhouse by default: provision it (dashboards generate)
or create it with that uid.`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			f := cmd.Flags()
			url, _ := f.GetString("grafana-url")
			db, _ := f.GetString("clickhouse-database")
			token := os.Getenv("DORAFLOW_GRAFANA_TOKEN")
			var problems []error
			if url == "" {
				problems = append(problems, errors.New("--grafana-url is required"))
			}
			if token == "" {
				problems = append(problems, errors.New("DORAFLOW_GRAFANA_TOKEN is not set (a Grafana service account token)"))
			}
			if len(problems) > 0 {
				return fmt.Errorf("%w: %w", errConfig, errors.Join(problems...))
			}
			ds, err := dashboards.Build(db)
			if err != nil {
				return err
			}
			client := &dashboards.Client{URL: url, Token: token, HTTP: &http.Client{Timeout: 30 * time.Second}}
			applied, err := client.Apply(cmd.Context(), ds)
			for _, a := range applied {
				fmt.Fprintf(cmd.OutOrStdout(), "%s version %d %s\n", a.UID, a.Version, a.URL)
			}
			return err
		},
	}
	cmd.Flags().String("grafana-url", "", "Grafana's root URL")
	return cmd
}
