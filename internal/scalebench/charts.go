package scalebench

import (
	"fmt"
	"image/color"
	"path/filepath"
	"slices"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
)

// chart is a PNG written beside the document.
type chart struct {
	File, Title string
}

// writeCharts draws the run's charts into dir as prefix-*.png.
func writeCharts(r *Result, dir, prefix string) ([]chart, error) {
	var out []chart
	for _, c := range []struct {
		name, title string
		draw        func(*Result) (*plot.Plot, error)
	}{
		{"fold", "Pure correlation: cost of a batch against the history held", foldChart},
		{"rate", "Processing rate per twelfth of the history, with the bare baselines", rateChart},
		{"memory", "Memory during the history's processing", memoryChart},
		{"queries", "Report latency against the rows of the window", queryChart},
	} {
		p, err := c.draw(r)
		if err != nil {
			return nil, fmt.Errorf("scalebench: chart %s: %w", c.name, err)
		}
		file := prefix + "-" + c.name + ".png"
		if err := p.Save(18*vg.Centimeter, 10*vg.Centimeter, filepath.Join(dir, file)); err != nil {
			return nil, fmt.Errorf("scalebench: chart %s: %w", c.name, err)
		}
		out = append(out, chart{File: file, Title: c.title})
	}
	return out, nil
}

func newPlot(title, x, y string) *plot.Plot {
	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text = x
	p.Y.Label.Text = y
	p.Add(plotter.NewGrid())
	p.Legend.Top = true
	return p
}

// foldChart: every batch's cost (dots) and its running median over 50
// batches (line), against the events held after it, on a log scale.
func foldChart(r *Result) (*plot.Plot, error) {
	p := newPlot("Pure correlation, one batch (an eighth of a day)", "events held (log scale)", "ms per batch")
	p.X.Scale = plot.LogScale{}
	p.X.Tick.Marker = plot.LogTicks{Prec: -1}
	dots := make(plotter.XYs, 0, len(r.Fold.Batches))
	var median plotter.XYs
	const window = 50
	for i, b := range r.Fold.Batches {
		x := float64(b.Held + b.Events)
		dots = append(dots, plotter.XY{X: x, Y: ms(b.Took)})
		if i >= window-1 {
			var w []time.Duration
			for _, c := range r.Fold.Batches[i-window+1 : i+1] {
				w = append(w, c.Took)
			}
			median = append(median, plotter.XY{X: x, Y: ms(quantile(w, 0.5))})
		}
	}
	s, err := plotter.NewScatter(dots)
	if err != nil {
		return nil, err
	}
	s.GlyphStyle.Radius = vg.Points(1)
	s.GlyphStyle.Color = color.RGBA{R: 120, G: 120, B: 220, A: 255}
	p.Add(s)
	p.Legend.Add("batch", s)
	if len(median) > 1 {
		l, err := plotter.NewLine(median)
		if err != nil {
			return nil, err
		}
		l.LineStyle.Width = vg.Points(2)
		l.LineStyle.Color = plotutil.Color(0)
		p.Add(l)
		p.Legend.Add(fmt.Sprintf("median of %d batches", window), l)
	}
	p.Y.Min = 0
	return p, nil
}

// rateChart: events per second per twelfth, and the bare baselines' rates
// over the same events.
func rateChart(r *Result) (*plot.Plot, error) {
	p := newPlot("Processor (serve --role processor) over the history", "twelfth of the history (first day)", "events/s")
	var values plotter.Values
	var names []string
	for _, m := range r.Year.Months {
		values = append(values, m.rate())
		names = append(names, m.First.Format("Jan 2"))
	}
	bars, err := plotter.NewBarChart(values, vg.Points(14))
	if err != nil {
		return nil, err
	}
	bars.Color = plotutil.Color(1)
	p.Add(bars)
	p.Legend.Add(fmt.Sprintf("processor (whole history %s/s)", thousands(r.processorRate())), bars)
	p.NominalX(names...)
	// The lines are not data ranges: the axis is set to show the bars and
	// the slower baseline; a faster one off the chart is only named.
	top := max(slices.Max(values), r.baselineRate()) * 1.4
	p.Y.Min, p.Y.Max = 0, top
	p.Y.Tick.Marker = thousandsTicks{}
	for i, b := range []struct {
		name string
		rate float64
	}{
		{"bare JetStream consume, processor's consumers", r.consumeRate()},
		{"bare ClickHouse insert of the same rows", r.insertRate()},
		{"50 % of the slower", r.baselineRate() / 2},
	} {
		rate := b.rate
		f := plotter.NewFunction(func(float64) float64 { return rate })
		f.LineStyle.Width = vg.Points(1.5)
		f.LineStyle.Color = plotutil.Color(2 + i)
		f.LineStyle.Dashes = plotutil.Dashes(i + 1)
		name := fmt.Sprintf("%s (%s/s)", b.name, thousands(rate))
		if rate > top {
			name = fmt.Sprintf("%s (%s/s, above the chart)", b.name, thousands(rate))
		} else {
			p.Add(f)
		}
		p.Legend.Add(name, f)
	}
	return p, nil
}

// memoryChart: VmRSS of the processor and of the NATS server over the run.
func memoryChart(r *Result) (*plot.Plot, error) {
	p := newPlot("Resident memory (VmRSS)", "seconds since the processor started", "MiB")
	var proc, nats plotter.XYs
	if len(r.Year.Samples) == 0 {
		return p, nil
	}
	t0 := r.Year.Samples[0].At
	for _, s := range r.Year.Samples {
		x := s.At.Sub(t0).Seconds()
		if s.ProcRSS > 0 {
			proc = append(proc, plotter.XY{X: x, Y: float64(s.ProcRSS) / (1 << 20)})
		}
		nats = append(nats, plotter.XY{X: x, Y: float64(s.NATSRSS) / (1 << 20)})
	}
	for i, l := range []struct {
		name string
		xys  plotter.XYs
	}{{"processor process", proc}, {"NATS server process", nats}} {
		if len(l.xys) < 2 {
			continue
		}
		line, err := plotter.NewLine(l.xys)
		if err != nil {
			return nil, err
		}
		line.LineStyle.Width = vg.Points(1.5)
		line.LineStyle.Color = plotutil.Color(i)
		p.Add(line)
		p.Legend.Add(l.name, line)
	}
	limit := plotter.NewFunction(func(float64) float64 { return 2048 })
	limit.LineStyle.Dashes = plotutil.Dashes(1)
	p.Add(limit)
	p.Legend.Add("2 GiB", limit)
	p.Y.Min = 0
	return p, nil
}

// queryChart: p50 of the report and of the bare scan against the rows in
// the window.
func queryChart(r *Result) (*plot.Plot, error) {
	p := newPlot("Over what the processor stored", "fact rows in the window (deployments + changes, every version)", "ms (p50)")
	for i, s := range []struct {
		name string
		of   func(queryPoint) []time.Duration
	}{
		{"report, all teams", func(q queryPoint) []time.Duration { return q.Report }},
		{"report --team", func(q queryPoint) []time.Duration { return q.ReportTeam }},
		{"bare aggregate scan", func(q queryPoint) []time.Duration { return q.Bare }},
	} {
		var xys plotter.XYs
		for _, q := range r.Queries {
			xys = append(xys, plotter.XY{X: float64(q.Rows), Y: ms(quantile(s.of(q), 0.5))})
		}
		if len(xys) == 0 {
			continue
		}
		line, points, err := plotter.NewLinePoints(xys)
		if err != nil {
			return nil, err
		}
		line.LineStyle.Color, points.GlyphStyle.Color = plotutil.Color(i), plotutil.Color(i)
		points.GlyphStyle.Shape = plotutil.Shape(i)
		p.Add(line, points)
		p.Legend.Add(s.name, line, points)
	}
	p.Y.Min, p.X.Min = 0, 0
	p.X.Tick.Marker = thousandsTicks{}
	return p, nil
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// thousands writes a number as 12.3k or 4.5M.
func thousands(v float64) string {
	switch {
	case v >= 1e6:
		return fmt.Sprintf("%.1fM", v/1e6)
	case v >= 1000:
		return fmt.Sprintf("%.1fk", v/1000)
	}
	return fmt.Sprintf("%.0f", v)
}

// thousandsTicks are the default ticks labelled as thousands.
type thousandsTicks struct{}

func (thousandsTicks) Ticks(min, max float64) []plot.Tick {
	ticks := plot.DefaultTicks{}.Ticks(min, max)
	for i := range ticks {
		if ticks[i].Label != "" {
			ticks[i].Label = thousands(ticks[i].Value)
		}
	}
	return ticks
}
