package backfill

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	pd "github.com/PagerDuty/go-pagerduty"

	collector "github.com/doraflow/doraflow/collectors/pagerduty"
	"github.com/doraflow/doraflow/pkg/event"
)

// PagerDutyConfig configures a PagerDuty backfill.
type PagerDutyConfig struct {
	// Token is DORAFLOW_PAGERDUTY_TOKEN, a REST API key (read-only will do).
	Token string
	// APIURL is PagerDuty's REST API (https://api.pagerduty.com, or the EU
	// one, https://api.eu.pagerduty.com); empty for the default.
	APIURL string
}

// Validate explains every problem of the configuration at once.
func (c PagerDutyConfig) Validate() error {
	if c.Token == "" {
		return errors.New("backfill pagerduty: no token; set DORAFLOW_PAGERDUTY_TOKEN to a PagerDuty REST API key (read-only)")
	}
	return nil
}

// PagerDuty backfills an account's incidents through PagerDuty's REST API.
type PagerDuty struct {
	client *pd.Client
}

// NewPagerDuty returns a PagerDuty backfill for a valid cfg, its requests
// sent through rt.
func NewPagerDuty(cfg PagerDutyConfig, rt http.RoundTripper) (*PagerDuty, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	var opts []pd.ClientOptions
	if cfg.APIURL != "" {
		opts = append(opts, pd.WithAPIEndpoint(cfg.APIURL))
	}
	client := pd.NewClient(cfg.Token, opts...)
	client.HTTPClient = &http.Client{Transport: rt, Timeout: time.Minute}
	return &PagerDuty{client: client}, nil
}

// Targets is the account: one target.
func (p *PagerDuty) Targets() []Target {
	return []Target{{Key: "pagerduty/incidents", Name: "pagerduty incidents", Phases: []Phase{{Name: "incidents", Run: p.incidents}}}}
}

// pdChunk is the span of one incidents query: PagerDuty refuses ranges
// over 6 months, and offset paging stops at 10,000 results.
const pdChunk = 30 * 24 * time.Hour

// incidents publishes a snapshot of each incident created in the window
// (any status), with its service and, if resolved, when.
func (p *PagerDuty) incidents(ctx context.Context, w Window, emit func(...event.Event)) error {
	for from := w.Since; from.Before(w.Until); from = from.Add(pdChunk) {
		to := minTime(from.Add(pdChunk), w.Until)
		opts := pd.ListIncidentsOptions{Limit: 100, Since: from.Format(time.RFC3339), Until: to.Format(time.RFC3339), TimeZone: "UTC"}
		for {
			page, err := p.client.ListIncidentsWithContext(ctx, opts)
			if err != nil {
				return fmt.Errorf("list incidents %s to %s: %w", opts.Since, opts.Until, err)
			}
			for _, inc := range page.Incidents {
				e, err := pdSnapshot(inc)
				if err != nil {
					return err
				}
				emit(e)
			}
			if !page.More || len(page.Incidents) == 0 {
				break
			}
			opts.Offset += uint(len(page.Incidents))
		}
	}
	return nil
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// pdSnapshot is inc's state now as an incident event.
func pdSnapshot(inc pd.Incident) (event.Event, error) {
	parse := func(field, v string) (time.Time, error) {
		t, err := time.Parse(time.RFC3339, v)
		if err != nil {
			return time.Time{}, fmt.Errorf("incident %s: %s %q: %w", inc.ID, field, v, err)
		}
		return t.UTC(), nil
	}
	if !event.ValidID(inc.ID) || inc.Service.Summary == "" {
		return event.Event{}, fmt.Errorf("incident %q: id and service.summary are required", inc.ID)
	}
	opened, err := parse("created_at", inc.CreatedAt)
	if err != nil {
		return event.Event{}, err
	}
	at := opened
	if inc.LastStatusChangeAt != "" {
		if at, err = parse("last_status_change_at", inc.LastStatusChangeAt); err != nil {
			return event.Event{}, err
		}
	}
	var resolved *time.Time
	if inc.Status == "resolved" {
		t := at
		if inc.ResolvedAt != "" {
			if t, err = parse("resolved_at", inc.ResolvedAt); err != nil {
				return event.Event{}, err
			}
		}
		resolved = &t
	}
	id := fmt.Sprintf("pagerduty:backfill:%s:%s:%s", inc.ID, inc.Status, at.Format(time.RFC3339))
	e := collector.IncidentEvent(id, inc.ID, inc.Title, inc.Service.Summary, opened, at, resolved)
	return e, e.Validate()
}
