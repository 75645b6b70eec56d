package dashboards

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"

	"go.yaml.in/yaml/v3"
)

// DatasourceUID is the provisioned ClickHouse datasource's uid, what the
// datasource variable selects by default.
const DatasourceUID = "doraflow-clickhouse"

// datasourceName is the provisioned datasource's name.
const datasourceName = "doraflow ClickHouse"

// Provisioning is where Grafana reads doraflow's ClickHouse from and the
// dashboards' files.
type Provisioning struct {
	// DashboardsPath is where Grafana finds the dashboards' JSON files
	// (the file provider's options.path): the generated directory's path
	// as Grafana sees it.
	DashboardsPath string
	// ClickHouse as Grafana reaches it, through the native protocol, as
	// a user that can only read (see the README).
	Host     string
	Port     int
	User     string
	Database string
}

// Written is what Generate wrote, by kind.
type Written struct {
	Dashboards         []string
	DashboardsProvider string
	DatasourceProvider string
}

// Generate writes the dashboards over database p.Database to
// out/dashboards/<uid>.json and Grafana's provisioning of them and of the
// datasource to out/provisioning/dashboards/doraflow.yaml and
// out/provisioning/datasources/doraflow.yaml. The same arguments write
// the same bytes.
func Generate(out string, p Provisioning) (Written, error) {
	var w Written
	ds, err := Build(p.Database)
	if err != nil {
		return w, err
	}
	dir := filepath.Join(out, "dashboards")
	for _, d := range ds {
		b, err := d.JSON()
		if err != nil {
			return w, err
		}
		path := filepath.Join(dir, d.UID+".json")
		if err := write(path, b); err != nil {
			return w, err
		}
		w.Dashboards = append(w.Dashboards, path)
	}
	if p.DashboardsPath == "" {
		if p.DashboardsPath, err = filepath.Abs(dir); err != nil {
			return w, fmt.Errorf("dashboards: %w", err)
		}
	}
	w.DashboardsProvider = filepath.Join(out, "provisioning", "dashboards", "doraflow.yaml")
	if err := writeYAML(w.DashboardsProvider, dashboardProvider(p.DashboardsPath)); err != nil {
		return w, err
	}
	w.DatasourceProvider = filepath.Join(out, "provisioning", "datasources", "doraflow.yaml")
	return w, writeYAML(w.DatasourceProvider, datasourceProvider(p))
}

// The provisioning files' shapes, as Grafana documents them
// (administration/provisioning): fields in the order written.
type (
	providerFile struct {
		APIVersion int        `yaml:"apiVersion"`
		Providers  []provider `yaml:"providers"`
	}
	provider struct {
		Name                  string          `yaml:"name"`
		OrgID                 int             `yaml:"orgId"`
		Folder                string          `yaml:"folder"`
		FolderUID             string          `yaml:"folderUid"`
		Type                  string          `yaml:"type"`
		DisableDeletion       bool            `yaml:"disableDeletion"`
		AllowUIUpdates        bool            `yaml:"allowUiUpdates"`
		UpdateIntervalSeconds int             `yaml:"updateIntervalSeconds"`
		Options               providerOptions `yaml:"options"`
	}
	providerOptions struct {
		Path                      string `yaml:"path"`
		FoldersFromFilesStructure bool   `yaml:"foldersFromFilesStructure"`
	}
	datasourceFile struct {
		APIVersion  int                     `yaml:"apiVersion"`
		Datasources []provisionedDatasource `yaml:"datasources"`
	}
	provisionedDatasource struct {
		Name           string            `yaml:"name"`
		Type           string            `yaml:"type"`
		UID            string            `yaml:"uid"`
		OrgID          int               `yaml:"orgId"`
		IsDefault      bool              `yaml:"isDefault"`
		Editable       bool              `yaml:"editable"`
		JSONData       datasourceJSON    `yaml:"jsonData"`
		SecureJSONData map[string]string `yaml:"secureJsonData"`
	}
	datasourceJSON struct {
		Host            string `yaml:"host"`
		Port            int    `yaml:"port"`
		Protocol        string `yaml:"protocol"`
		Secure          bool   `yaml:"secure"`
		Username        string `yaml:"username"`
		DefaultDatabase string `yaml:"defaultDatabase"`
	}
)

// FolderUID and FolderTitle name the folder the dashboards go to, by file
// provisioning and by apply alike.
const (
	FolderUID   = "doraflow"
	FolderTitle = "doraflow"
)

func dashboardProvider(path string) providerFile {
	return providerFile{APIVersion: 1, Providers: []provider{{
		Name: "doraflow", OrgID: 1, Folder: FolderTitle, FolderUID: FolderUID, Type: "file",
		// The files are generated: edits in the UI would be lost on the
		// next generate, so Grafana refuses them.
		AllowUIUpdates: false, UpdateIntervalSeconds: 60,
		Options: providerOptions{Path: path},
	}}}
}

func datasourceProvider(p Provisioning) datasourceFile {
	return datasourceFile{APIVersion: 1, Datasources: []provisionedDatasource{{
		Name: datasourceName, Type: PluginID, UID: DatasourceUID, OrgID: 1, Editable: false,
		JSONData: datasourceJSON{Host: p.Host, Port: p.Port, Protocol: "native", Username: p.User, DefaultDatabase: p.Database},
		// Grafana expands environment variables in provisioning files:
		// the password stays out of the file.
		SecureJSONData: map[string]string{"password": "$DORAFLOW_CLICKHOUSE_READER_PASSWORD"},
	}}}
}

func writeYAML(path string, v any) error {
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(v); err != nil {
		return fmt.Errorf("dashboards: %s: %w", path, err)
	}
	if err := enc.Close(); err != nil {
		return fmt.Errorf("dashboards: %s: %w", path, err)
	}
	return write(path, buf.Bytes())
}

func write(path string, b []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("dashboards: %w", err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		return fmt.Errorf("dashboards: %w", err)
	}
	return nil
}
