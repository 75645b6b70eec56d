package dashboards

import (
	"context"
	"encoding/json"
	"fmt"
	"image/color"
	"io"
	"log/slog"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/font"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"

	"github.com/grafana/grafana-foundation-sdk/go/dashboard"

	"github.com/doraflow/doraflow/internal/demo"
	"github.com/doraflow/doraflow/internal/grafanatest"
	"github.com/doraflow/doraflow/internal/serve"
	"github.com/doraflow/doraflow/internal/testenv"
	"github.com/doraflow/doraflow/pkg/config"
	"github.com/doraflow/doraflow/pkg/dora"
)

// renderDirEnv names the directory TestRenderDashboards writes to.
const renderDirEnv = "DORAFLOW_DASHBOARD_PNG"

// TestRenderDashboards draws each dashboard as a PNG from its own queries,
// expanded as Grafana would over its default range, on the history `make
// demo` sends (60 days, seed 1) through the whole pipeline: what a panel
// will show, for the README, where no Grafana runs. Only when
// DORAFLOW_DASHBOARD_PNG names the directory (make dashboard-pngs).
func TestRenderDashboards(t *testing.T) {
	dir := os.Getenv(renderDirEnv)
	if dir == "" {
		t.Skip("set " + renderDirEnv + " to a directory to render the dashboards")
	}
	h := demoHistory(t, 60)
	ds, err := Build(h.db)
	if err != nil {
		t.Fatal(err)
	}
	// The dashboards' now: the time one looks at them, after the
	// processors counted what they took.
	v := grafanatest.Vars{To: time.Now().UTC().Truncate(time.Minute).Add(time.Minute), Benchmark: "2023"}
	for _, r := range h.rows(t, dora.TeamsSQL(h.db)) {
		v.AllTeams = append(v.AllTeams, r[0].(string))
	}
	for _, r := range h.rows(t, dora.ReposSQL(h.db, dora.AllTeams)) {
		v.AllRepos = append(v.AllRepos, r[0].(string))
	}
	for _, d := range ds {
		from := *d.Dashboard.Time
		days := 0
		fmt.Sscanf(from.From, "now-%dd", &days)
		v.From = v.To.Add(-time.Duration(days) * 24 * time.Hour)
		path := filepath.Join(dir, d.UID+".png")
		if err := renderDashboard(t, h, d, v, path); err != nil {
			t.Fatal(err)
		}
		t.Logf("wrote %s", path)
	}
}

// demoHistory runs the demo's history through collectors, JetStream, the
// processor and ClickHouse, as `doraflow demo` does, and returns the
// database.
func demoHistory(t *testing.T, days int) history {
	t.Helper()
	ctx := context.Background()
	dsn := testenv.ClickHouse(t)
	end := time.Now().UTC().Truncate(time.Hour)
	hooks, teams := demo.Generate(demo.Options{Seed: 1, Days: days, End: end})
	cfg := config.Default()
	cfg.Listen = "127.0.0.1:0"
	cfg.DataDir = t.TempDir()
	cfg.ClickHouseDSN = dsn
	cfg.GitHub.WebhookSecret = "doraflow-demo"
	for _, tm := range teams {
		cfg.Teams = append(cfg.Teams, config.Team{Name: tm.Name, Repos: tm.Repos})
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	srv, err := serve.Start(ctx, cfg, serve.RoleAll, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		stopCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		srv.Stop(stopCtx)
	}()
	client := &http.Client{Timeout: 30 * time.Second}
	if err := demo.Send(ctx, client, "http://"+srv.Addr()+"/webhooks/github", cfg.GitHub.WebhookSecret, hooks, 16, nil); err != nil {
		t.Fatal(err)
	}
	waitCtx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	if err := srv.WaitIdle(waitCtx); err != nil {
		t.Fatal(err)
	}
	conn, db := testenv.Conn(t, dsn)
	return history{conn: conn, db: db}
}

// The grid: Grafana's 24 columns and its row unit, in points.
const (
	colW  = vg.Length(40)
	unitH = vg.Length(22)
)

var (
	sans    = font.Font{Typeface: "Liberation", Variant: "Sans"}
	bold    = font.Font{Typeface: "Liberation", Variant: "Sans", Weight: 700}
	palette = []color.Color{rgb(0x73bf69), rgb(0xf2cc0c), rgb(0x8ab8ff), rgb(0xff780a), rgb(0xf2495c), rgb(0x5794f2), rgb(0xb877d9)}
	frameBG = rgb(0x181b1f)
	pageBG  = rgb(0x111217)
	textFG  = rgb(0xccccdc)
	dimFG   = rgb(0x8e8e9e)
	named   = map[string]color.Color{"dark-green": rgb(0x37872d), "green": rgb(0x73bf69), "yellow": rgb(0xfade2a),
		"red": rgb(0xf2495c), "orange": rgb(0xff9830)}
)

func rgb(v uint32) color.Color { return color.RGBA{uint8(v >> 16), uint8(v >> 8), uint8(v), 255} }

func style(f font.Font, size vg.Length, c color.Color) draw.TextStyle {
	return draw.TextStyle{Color: c, Font: font.From(f, size), Handler: plot.DefaultTextHandler}
}

// renderDashboard draws every panel where its gridPos puts it.
func renderDashboard(t *testing.T, h history, d Dashboard, v grafanatest.Vars, path string) error {
	var bottom uint32
	for _, p := range d.Dashboard.Panels {
		g := gridOf(p)
		bottom = max(bottom, g.Y+g.H)
	}
	W, H := 24*colW, vg.Length(bottom)*unitH+30
	img := vgimg.NewWith(vgimg.UseWH(W, H), vgimg.UseDPI(96))
	c := draw.New(img)
	fill(c, vg.Rectangle{Max: vg.Point{X: W, Y: H}}, pageBG)
	title := style(bold, 14, textFG)
	c.FillText(title, vg.Point{X: 8, Y: H - 20}, *d.Dashboard.Title+fmt.Sprintf("   %s → %s, all teams, benchmark %s",
		v.From.Format("2006-01-02"), v.To.Format("2006-01-02 15:04"), v.Benchmark))
	top := H - 30
	for _, p := range d.Dashboard.Panels {
		g := gridOf(p)
		r := vg.Rectangle{Min: vg.Point{X: vg.Length(g.X)*colW + 2, Y: top - vg.Length(g.Y+g.H)*unitH + 2},
			Max: vg.Point{X: vg.Length(g.X+g.W)*colW - 2, Y: top - vg.Length(g.Y)*unitH - 2}}
		if p.RowPanel != nil {
			c.FillText(style(bold, 11, textFG), vg.Point{X: r.Min.X + 4, Y: r.Min.Y + 6}, *p.RowPanel.Title)
			continue
		}
		if err := renderPanel(t, h, c, r, p.Panel, v); err != nil {
			return fmt.Errorf("%s %q: %w", d.UID, *p.Panel.Title, err)
		}
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = vgimg.PngCanvas{Canvas: img}.WriteTo(f)
	return err
}

func gridOf(p dashboard.PanelOrRowPanel) dashboard.GridPos {
	if p.RowPanel != nil {
		return *p.RowPanel.GridPos
	}
	return *p.Panel.GridPos
}

func fill(c draw.Canvas, r vg.Rectangle, clr color.Color) {
	c.FillPolygon(clr, []vg.Point{r.Min, {X: r.Max.X, Y: r.Min.Y}, r.Max, {X: r.Min.X, Y: r.Max.Y}})
}

// frame is what a query gave: column names and rows.
type frame struct {
	cols []string
	rows [][]any
}

func run(t *testing.T, h history, q Query, v grafanatest.Vars) (frame, error) {
	sql, err := grafanatest.Expand(q.RawSql, v)
	if err != nil {
		return frame{}, err
	}
	rows, err := h.conn.Query(context.Background(), sql)
	if err != nil {
		return frame{}, err
	}
	cols := rows.Columns()
	rows.Close()
	return frame{cols: cols, rows: h.rows(t, sql)}, nil
}

// fieldConfig is a panel's unit, decimals, display name and links of a
// column: its defaults, then its overrides by name.
func fieldConfig(p *dashboard.Panel, col string) (unit string, decimals float64, name string) {
	name, decimals = col, -1
	if p.FieldConfig == nil {
		return
	}
	if u := p.FieldConfig.Defaults.Unit; u != nil {
		unit = *u
	}
	if dd := p.FieldConfig.Defaults.Decimals; dd != nil {
		decimals = *dd
	}
	for _, o := range p.FieldConfig.Overrides {
		// The SDK's builders hold the name as a *string.
		if name, ok := o.Matcher.Options.(*string); o.Matcher.Id != "byName" || !ok || *name != col {
			continue
		}
		for _, prop := range o.Properties {
			switch prop.Id {
			case "unit":
				unit = prop.Value.(string)
			case "decimals":
				decimals = toFloat(prop.Value)
			case "displayName":
				name = prop.Value.(string)
			}
		}
	}
	return
}

func toFloat(v any) float64 {
	switch x := v.(type) {
	case int:
		return float64(x)
	case float64:
		return x
	}
	if f := number(v); f != nil {
		return *f
	}
	return math.NaN()
}

// format shows a value as Grafana's unit would.
func format(v any, unit string, decimals float64) string {
	if v == nil {
		return "-"
	}
	if tm, ok := v.(time.Time); ok {
		return tm.UTC().Format("2006-01-02 15:04")
	}
	if list, ok := v.([]string); ok {
		return strings.Join(list, " ")
	}
	f := number(v)
	if f == nil {
		return fmt.Sprint(v)
	}
	x := *f
	if decimals < 0 {
		decimals = 1
	}
	switch unit {
	case "s":
		for _, u := range []struct {
			name string
			secs float64
		}{{"week", 604800}, {"day", 86400}, {"hour", 3600}, {"min", 60}} {
			if math.Abs(x) >= u.secs {
				return fmt.Sprintf("%.*f %s", int(decimals), x/u.secs, u.name)
			}
		}
		return fmt.Sprintf("%.*f s", int(decimals), x)
	case "percentunit":
		return fmt.Sprintf("%.*f%%", int(decimals), x*100)
	case perDay:
		return fmt.Sprintf("%.2f /day", x)
	}
	if x == math.Trunc(x) {
		return fmt.Sprintf("%.0f", x)
	}
	return fmt.Sprintf("%.*f", int(decimals), x)
}

func renderPanel(t *testing.T, h history, c draw.Canvas, r vg.Rectangle, p *dashboard.Panel, v grafanatest.Vars) error {
	fill(c, r, frameBG)
	c.FillText(style(bold, 9, textFG), vg.Point{X: r.Min.X + 6, Y: r.Max.Y - 13}, *p.Title)
	body := vg.Rectangle{Min: vg.Point{X: r.Min.X + 4, Y: r.Min.Y + 4}, Max: vg.Point{X: r.Max.X - 4, Y: r.Max.Y - 18}}
	var frames []frame
	for _, tg := range p.Targets {
		q := tg.(Query)
		if q.RefId == "T" {
			continue // the thresholds: the static ones are the default benchmark's
		}
		f, err := run(t, h, q, v)
		if err != nil {
			return err
		}
		frames = append(frames, f)
	}
	switch p.Type {
	case "stat":
		return renderStat(c, body, p, frames[0])
	case "table":
		renderTable(c, body, p, frames[0])
		return nil
	}
	pl := plot.New()
	pl.BackgroundColor = frameBG
	for _, a := range []*plot.Axis{&pl.X, &pl.Y} {
		a.Color, a.Tick.Color, a.Tick.Label.Color, a.Label.TextStyle.Color = dimFG, dimFG, dimFG, dimFG
		a.Tick.Label.Font = font.From(sans, 7)
	}
	pl.Legend.TextStyle = style(sans, 7, textFG)
	pl.Legend.Top, pl.Legend.Left = true, true
	unit, decimals, _ := fieldConfig(p, "")
	pl.Y.Tick.Marker = unitTicks{unit, decimals}
	if p.Type == "barchart" {
		// Horizontal: the values run along x, the labels down y.
		pl.X.Tick.Marker = unitTicks{unit, decimals}
	}
	switch p.Type {
	case "timeseries":
		plotSeries(pl, p, frames)
		// The panel's range, as Grafana draws it, whatever has data.
		pl.X.Min, pl.X.Max = float64(v.From.Unix()), float64(v.To.Unix())
	case "barchart":
		plotBars(pl, frames[0])
	case "xychart":
		plotXY(pl, p, frames[0])
	case "histogram":
		plotHistogram(pl, frames[0])
	}
	pl.Draw(draw.Canvas{Canvas: c.Canvas, Rectangle: body})
	return nil
}

// unitTicks labels an axis in the panel's unit.
type unitTicks struct {
	unit     string
	decimals float64
}

func (u unitTicks) Ticks(min, max float64) []plot.Tick {
	ticks := plot.DefaultTicks{}.Ticks(min, max)
	for i := range ticks {
		if ticks[i].Label != "" {
			ticks[i].Label = format(ticks[i].Value, u.unit, u.decimals)
		}
	}
	return ticks
}

func renderStat(c draw.Canvas, r vg.Rectangle, p *dashboard.Panel, f frame) error {
	unit, decimals, _ := fieldConfig(p, "value")
	var first, last *float64
	if len(f.rows) > 0 {
		first, last = number(f.rows[0][1]), number(f.rows[len(f.rows)-1][1])
	}
	noValue := "No data"
	if p.FieldConfig.Defaults.NoValue != nil {
		noValue = *p.FieldConfig.Defaults.NoValue
	}
	text, fg := noValue, textFG
	if last != nil {
		text = format(*last, unit, decimals)
		if th := p.FieldConfig.Defaults.Thresholds; th != nil {
			bg := color.Color(frameBG)
			for _, s := range th.Steps {
				if s.Value == nil || *last >= *s.Value {
					bg = named[s.Color]
				}
			}
			fill(c, r, bg)
			fg = color.Black
		}
	}
	c.FillText(style(bold, 22, fg), vg.Point{X: r.Min.X + 8, Y: (r.Min.Y+r.Max.Y)/2 - 4}, text)
	if first != nil && last != nil && *first != 0 {
		c.FillText(style(sans, 9, fg), vg.Point{X: r.Min.X + 8, Y: r.Min.Y + 6},
			fmt.Sprintf("%+.0f%% against the period before", (*last / *first - 1)*100))
	}
	return nil
}

func renderTable(c draw.Canvas, r vg.Rectangle, p *dashboard.Panel, f frame) {
	if len(f.cols) == 0 {
		return
	}
	head, cell := style(bold, 7, textFG), style(sans, 7, textFG)
	w := (r.Max.X - r.Min.X) / vg.Length(len(f.cols))
	y := r.Max.Y - 10
	for i, col := range f.cols {
		_, _, name := fieldConfig(p, col)
		c.FillText(head, vg.Point{X: r.Min.X + vg.Length(i)*w + 2, Y: y}, clip(name, w))
	}
	for _, row := range f.rows {
		y -= 11
		if y < r.Min.Y {
			break
		}
		for i, val := range row {
			unit, decimals, _ := fieldConfig(p, f.cols[i])
			s := format(val, unit, decimals)
			clr := cell
			if tc, ok := named[map[string]string{"elite": "dark-green", "high": "green", "medium": "yellow", "low": "red",
				"failed": "red", "rollback": "orange"}[s]]; ok {
				clr = style(bold, 7, tc)
			}
			c.FillText(clr, vg.Point{X: r.Min.X + vg.Length(i)*w + 2, Y: y}, clip(s, w))
		}
	}
}

func clip(s string, w vg.Length) string {
	n := int(w / 3.6)
	if len(s) > n && n > 1 {
		return s[:n-1] + "…"
	}
	return s
}

// plotSeries draws time-series frames: wide (a column per series) or long
// (a label column: a series per label).
func plotSeries(pl *plot.Plot, p *dashboard.Panel, frames []frame) {
	pl.X.Tick.Marker = plot.TimeTicks{Format: "Jan 2"}
	custom, _ := json.Marshal(p.FieldConfig.Defaults.Custom)
	bars := strings.Contains(string(custom), `"drawStyle":"bars"`)
	n := 0
	for _, f := range frames {
		series := map[string]plotter.XYs{}
		var names []string
		label := -1
		for i, col := range f.cols {
			if i > 0 && len(f.rows) > 0 {
				if _, ok := f.rows[0][i].(string); ok {
					label = i
				}
			}
			_ = col
		}
		for _, row := range f.rows {
			x := float64(row[0].(time.Time).Unix())
			for i := 1; i < len(row); i++ {
				if i == label {
					continue
				}
				name := f.cols[i]
				if label >= 0 {
					name = row[label].(string)
				}
				if _, ok := series[name]; !ok {
					names = append(names, name)
				}
				y := math.NaN()
				if v := number(row[i]); v != nil {
					y = *v
				}
				series[name] = append(series[name], plotter.XY{X: x, Y: y})
			}
		}
		for _, name := range names {
			clr := palette[n%len(palette)]
			n++
			pts := series[name]
			if bars {
				for _, pt := range pts {
					if math.IsNaN(pt.Y) || pt.Y == 0 {
						continue
					}
					l, _ := plotter.NewLine(plotter.XYs{{X: pt.X, Y: 0}, {X: pt.X, Y: pt.Y}})
					l.Color, l.Width = clr, 2
					pl.Add(l)
				}
				thumb, _ := plotter.NewLine(plotter.XYs{})
				thumb.Color, thumb.Width = clr, 3
				pl.Legend.Add(name, thumb)
				continue
			}
			// Gaps where there is nothing to measure, as Grafana draws them.
			var seg plotter.XYs
			flush := func() {
				if len(seg) > 0 {
					l, s, _ := plotter.NewLinePoints(seg)
					l.Color, s.Color, s.Radius = clr, clr, 1.5
					pl.Add(l, s)
				}
				seg = nil
			}
			for _, pt := range pts {
				if math.IsNaN(pt.Y) {
					flush()
					continue
				}
				seg = append(seg, pt)
			}
			flush()
			thumb, _ := plotter.NewLine(plotter.XYs{})
			thumb.Color, thumb.Width = clr, 2
			pl.Legend.Add(name, thumb)
		}
	}
	pl.Y.Min = 0
}

// plotBars draws a table frame as horizontal bars: the first column the
// labels, a group per further column.
func plotBars(pl *plot.Plot, f frame) {
	if len(f.rows) == 0 {
		return
	}
	var labels []string
	for i := len(f.rows) - 1; i >= 0; i-- {
		labels = append(labels, fmt.Sprint(f.rows[i][0]))
	}
	groups := len(f.cols) - 1
	// A group's bars side by side around its label, within the space
	// between two labels.
	w := min(vg.Length(10), vg.Length(28)/vg.Length(groups))
	for g := 1; g <= groups; g++ {
		var vals plotter.Values
		for i := len(f.rows) - 1; i >= 0; i-- {
			x := 0.0
			if v := number(f.rows[i][g]); v != nil {
				x = *v
			}
			vals = append(vals, x)
		}
		b, _ := plotter.NewBarChart(vals, w)
		b.Horizontal = true
		b.Color = palette[(g-1)%len(palette)]
		b.LineStyle.Width = 0
		b.Offset = (vg.Length(groups-g) - vg.Length(groups-1)/2) * w
		pl.Add(b)
		if groups > 1 {
			pl.Legend.Add(f.cols[g], b)
		}
	}
	pl.NominalY(labels...)
	pl.X.Min = 0
	pl.Y.Tick.Label.Font = font.From(sans, 7)
	pl.Legend.Top, pl.Legend.Left = false, false
}

// plotXY draws a table frame (label, x, y) as labelled points.
func plotXY(pl *plot.Plot, p *dashboard.Panel, f frame) {
	xUnit, xDec, _ := fieldConfig(p, f.cols[1])
	yUnit, yDec, _ := fieldConfig(p, f.cols[2])
	pl.X.Tick.Marker, pl.Y.Tick.Marker = unitTicks{xUnit, xDec}, unitTicks{yUnit, yDec}
	pl.X.Label.Text, pl.Y.Label.Text = f.cols[1], f.cols[2]
	pl.X.Label.TextStyle.Font, pl.Y.Label.TextStyle.Font = font.From(sans, 7), font.From(sans, 7)
	var pts plotter.XYs
	var names []string
	for _, row := range f.rows {
		pts = append(pts, plotter.XY{X: *number(row[1]), Y: *number(row[2])})
		names = append(names, row[0].(string))
	}
	s, _ := plotter.NewScatter(pts)
	s.Color, s.Radius = palette[2], 3
	labels, _ := plotter.NewLabels(plotter.XYLabels{XYs: pts, Labels: names})
	for i := range labels.TextStyle {
		labels.TextStyle[i] = style(sans, 7, textFG)
	}
	pl.Add(s, labels)
}

// plotHistogram draws the frame's one column's values in 20 bins.
func plotHistogram(pl *plot.Plot, f frame) {
	var vals plotter.Values
	for _, row := range f.rows {
		vals = append(vals, *number(row[0]))
	}
	sort.Float64s(vals)
	if len(vals) == 0 {
		return
	}
	hist, _ := plotter.NewHist(vals, 20)
	hist.FillColor, hist.LineStyle.Width = palette[0], 0
	pl.Add(hist)
	pl.X.Tick.Marker = unitTicks{"s", 0}
	pl.Y.Tick.Marker = plot.DefaultTicks{}
}
