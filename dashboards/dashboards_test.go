package dashboards

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/grafana/grafana-foundation-sdk/go/cog"
	"github.com/grafana/grafana-foundation-sdk/go/cog/plugins"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/generated")

var golden = Provisioning{DashboardsPath: "/var/lib/grafana/dashboards/doraflow", Host: "clickhouse", Port: 9000,
	User: "doraflow_reader", Database: "doraflow"}

// generate writes the golden arguments' files to a fresh directory and
// returns every file's bytes by its path below it.
func generate(t *testing.T) map[string][]byte {
	t.Helper()
	dir := t.TempDir()
	if _, err := Generate(dir, golden); err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{}
	err := filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		rel, _ := filepath.Rel(dir, path)
		files[rel] = b
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

// The generated files are the golden ones, byte for byte, and the same on
// every run: uids, layout, queries and provisioning change only on purpose
// (go test ./dashboards -run Golden -update rewrites them).
func TestGenerateGolden(t *testing.T) {
	files := generate(t)
	again := generate(t)
	want := []string{
		"dashboards/doraflow-overview.json", "dashboards/doraflow-teams.json", "dashboards/doraflow-team.json",
		"dashboards/doraflow-pipeline.json",
		"provisioning/dashboards/doraflow.yaml", "provisioning/datasources/doraflow.yaml",
	}
	if len(files) != len(want) {
		t.Errorf("wrote %d files, want %d", len(files), len(want))
	}
	for _, name := range want {
		got, ok := files[name]
		if !ok {
			t.Errorf("%s not written", name)
			continue
		}
		if !bytes.Equal(got, again[name]) {
			t.Errorf("%s differs between two runs", name)
		}
		path := filepath.Join("testdata", "generated", name)
		if *update {
			if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, got, 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		wantBytes, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("%v (run with -update to create it)", err)
		}
		if !bytes.Equal(got, wantBytes) {
			t.Errorf("%s differs from %s (run with -update if that is meant)", name, path)
		}
	}
}

// Each dashboard decodes strictly into the SDK's dashboard types (unknown
// or mistyped fields fail), with every target as a ClickHouse Query, and
// encodes back to the same bytes. No Grafana JSON schema of the dashboard
// can be had here: the SDK's types, generated from Grafana's schema, are
// the check.
func TestRoundTripThroughSDK(t *testing.T) {
	plugins.RegisterDefaultPlugins()
	cog.NewRuntime().RegisterDataqueryVariant(QueryVariant())
	ds, err := Build("doraflow")
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range ds {
		b, err := d.JSON()
		if err != nil {
			t.Fatal(err)
		}
		// The strict decoder checks; it leaves panels unset behind an
		// empty error, so the round trip takes the plain decoder.
		var checked, back dashboard.Dashboard
		if err := strict(checked.UnmarshalJSONStrict(b)); err != nil {
			t.Errorf("%s: strict decode: %v", d.UID, err)
			continue
		}
		if err := json.Unmarshal(b, &back); err != nil {
			t.Errorf("%s: decode: %v", d.UID, err)
			continue
		}
		again, err := Dashboard{UID: d.UID, Dashboard: back}.JSON()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(b, again) {
			t.Errorf("%s: does not encode back to the same JSON: %s", d.UID, firstDiff(b, again))
		}
		for _, p := range panels(Dashboard{UID: d.UID, Dashboard: back}) {
			if len(p.queries) != len(p.raw.Targets) {
				t.Errorf("%s %q: %d of %d targets decoded as ClickHouse queries", d.UID, p.title, len(p.queries), len(p.raw.Targets))
			}
		}
	}
}

// What Grafana and the plugin need of each dashboard and panel, and the
// SDK's traps: uid, tag, links shown (no placement) that keep time and
// variables; datasource and team variables; every target a v4 SQL target
// on ${datasource}; stats with explicit calcs and orientation; panels
// within the 24 columns, not overlapping (the SDK's layout places a panel
// after the previous one without wrapping it).
func TestDashboardShape(t *testing.T) {
	ds, err := Build("doraflow")
	if err != nil {
		t.Fatal(err)
	}
	uids := map[string]bool{}
	for _, d := range ds {
		db := d.Dashboard
		if db.Uid == nil || *db.Uid != d.UID || uids[d.UID] {
			t.Errorf("%s: uid %v", d.UID, db.Uid)
		}
		uids[d.UID] = true
		if len(db.Tags) == 0 || db.Tags[0] != Tag {
			t.Errorf("%s: tags %v", d.UID, db.Tags)
		}
		if len(db.Links) != 1 || db.Links[0].Placement != nil || !db.Links[0].KeepTime || !db.Links[0].IncludeVars {
			t.Errorf("%s: links %+v", d.UID, db.Links)
		}
		names := map[string]bool{}
		for _, v := range db.Templating.List {
			names[v.Name] = true
			if v.AllValue != nil {
				t.Errorf("%s: variable %s has a custom allValue, which Grafana would insert verbatim", d.UID, v.Name)
			}
		}
		if !names["datasource"] || (d.UID != PipelineUID && !names["team"]) {
			t.Errorf("%s: variables %v", d.UID, names)
		}
		type cell struct{ x, y uint32 }
		taken := map[cell]string{}
		for _, p := range panels(d) {
			if p.kind == "row" {
				continue
			}
			g := p.raw.GridPos
			if g.X+g.W > 24 {
				t.Errorf("%s: %q runs past Grafana's 24 columns (x %d, w %d)", d.UID, p.title, g.X, g.W)
			}
			for x := g.X; x < g.X+g.W; x++ {
				for y := g.Y; y < g.Y+g.H; y++ {
					if other, ok := taken[cell{x, y}]; ok {
						t.Errorf("%s: %q overlaps %q", d.UID, p.title, other)
					}
					taken[cell{x, y}] = p.title
				}
			}
			if len(p.queries) == 0 {
				t.Errorf("%s %q: no ClickHouse targets", d.UID, p.title)
			}
			for _, q := range p.queries {
				if q.PluginVersion < "4" || q.EditorType != "sql" || str(q.Datasource.Uid) != "${datasource}" ||
					str(q.Datasource.Type) != PluginID || (q.Format == FormatTable) != (q.QueryType == "table") {
					t.Errorf("%s %q %s: target %+v", d.UID, p.title, q.RefId, q)
				}
			}
			if p.kind == "stat" {
				opts, _ := json.Marshal(p.raw.Options)
				s := string(opts)
				if !strings.Contains(s, `"calcs":["last"]`) || !strings.Contains(s, `"orientation":"auto"`) {
					t.Errorf("%s %q: stat options %s", d.UID, p.title, s)
				}
			}
		}
	}
}

func str(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// strict is a strict decode's error, if any: the SDK's decoders return
// an empty cog.BuildErrors (a non-nil error) where nothing is wrong.
func strict(err error) error {
	var be cog.BuildErrors
	if errors.As(err, &be) && len(be) == 0 {
		return nil
	}
	return err
}

// firstDiff shows where two encodings part.
func firstDiff(a, b []byte) string {
	i := 0
	for i < len(a) && i < len(b) && a[i] == b[i] {
		i++
	}
	lo := max(0, i-150)
	return fmt.Sprintf("at byte %d: %q / %q", i, a[lo:min(len(a), i+80)], b[lo:min(len(b), i+80)])
}
