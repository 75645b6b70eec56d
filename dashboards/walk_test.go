package dashboards

import (
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
)

// panel is what the tests look at in a dashboard's panel.
type panel struct {
	title, kind string
	queries     []Query
	raw         *dashboard.Panel
}

// panels lists a dashboard's panels, those inside rows too.
func panels(d Dashboard) []panel {
	var out []panel
	add := func(p *dashboard.Panel) {
		pp := panel{kind: p.Type, raw: p}
		if p.Title != nil {
			pp.title = *p.Title
		}
		for _, t := range p.Targets {
			if q, ok := t.(Query); ok {
				pp.queries = append(pp.queries, q)
			}
		}
		out = append(out, pp)
	}
	for _, p := range d.Dashboard.Panels {
		if p.Panel != nil {
			add(p.Panel)
		}
		if p.RowPanel != nil {
			for i := range p.RowPanel.Panels {
				add(&p.RowPanel.Panels[i])
			}
		}
	}
	return out
}

type variableQuery struct{ name, sql string }

// variableQueries lists a dashboard's query variables' SQL.
func variableQueries(d Dashboard) []variableQuery {
	var out []variableQuery
	for _, v := range d.Dashboard.Templating.List {
		if v.Type == "query" && v.Query != nil && v.Query.String != nil {
			out = append(out, variableQuery{v.Name, *v.Query.String})
		}
	}
	return out
}
