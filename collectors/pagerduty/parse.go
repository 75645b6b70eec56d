package pagerduty

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/doraflow/doraflow/collectors/webhook"
	"github.com/doraflow/doraflow/pkg/event"
)

// PagerDuty v3 event types doraflow uses.
const (
	typeTriggered = "incident.triggered"
	typeResolved  = "incident.resolved"
	typeReopened  = "incident.reopened"
	// typePing is the test event PagerDuty sends from the subscription's
	// "Send Test Event" button.
	typePing = "pagey.ping"
)

// payload is the part of a Webhooks v3 body doraflow reads. go-pagerduty has
// no v3 payload types, hence these local ones.
type payload struct {
	Event struct {
		ID           string    `json:"id"`
		EventType    string    `json:"event_type"`
		ResourceType string    `json:"resource_type"`
		OccurredAt   time.Time `json:"occurred_at"`
		Data         incident  `json:"data"`
	} `json:"event"`
}

type incident struct {
	ID        string     `json:"id"`
	Type      string     `json:"type"`
	Title     string     `json:"title"`
	CreatedAt *time.Time `json:"created_at"`
	Service   struct {
		ID      string `json:"id"`
		Summary string `json:"summary"`
	} `json:"service"`
}

// Parse turns a PagerDuty delivery into an incident snapshot. It is pure,
// and the event id is PagerDuty's own event id, which names one fact (a
// retry or a later re-send of the same event keeps it).
func (s *Source) Parse(d webhook.Delivery) ([]event.Event, error) {
	switch d.Event {
	case typeTriggered, typeResolved, typeReopened:
	case typePing:
		return nil, webhook.Ignored("ping")
	default:
		return nil, webhook.Ignored("event type not used")
	}
	var p payload
	if err := json.Unmarshal(d.Body, &p); err != nil {
		return nil, fmt.Errorf("pagerduty: parse %s: %w", d.Event, err)
	}
	if p.Event.EventType != d.Event {
		// Only possible when a raw delivery is replayed under another name.
		return nil, fmt.Errorf("pagerduty: parse %s: body's event.event_type is %q", d.Event, p.Event.EventType)
	}
	e, err := snapshot(&p)
	if err == nil {
		// Checked here too, so that Parse alone promises a usable event
		// (resolved before created is the one mistake the body can make).
		err = e.Validate()
	}
	if err != nil {
		return nil, fmt.Errorf("pagerduty: parse %s: %w", d.Event, err)
	}
	return []event.Event{e}, nil
}

// snapshot maps one incident event onto the incident's state after it:
// resolved at the event's time for incident.resolved, open otherwise
// (reopened clears an earlier resolution, since the latest snapshot wins).
func snapshot(p *payload) (event.Event, error) {
	ev := p.Event
	inc := ev.Data
	switch {
	case !event.ValidID(ev.ID):
		return event.Event{}, errors.New("event.id is missing or not printable")
	case ev.OccurredAt.IsZero():
		return event.Event{}, errors.New("event.occurred_at is missing")
	case inc.Type != "" && inc.Type != "incident":
		return event.Event{}, fmt.Errorf("event.data is a %q, not an incident", inc.Type)
	case !event.ValidID(inc.ID):
		return event.Event{}, errors.New("event.data.id (the incident id) is missing or not printable")
	case inc.Service.Summary == "":
		return event.Event{}, errors.New("event.data.service.summary (the service name) is missing")
	}
	occurred := ev.OccurredAt.UTC()
	opened := occurred
	if inc.CreatedAt != nil && !inc.CreatedAt.IsZero() {
		opened = inc.CreatedAt.UTC()
	}
	var resolved *time.Time
	if ev.EventType == typeResolved {
		// Webhooks v3 has no resolved_at: the resolution is the event.
		resolved = &occurred
	}
	return IncidentEvent("pagerduty:"+ev.ID, inc.ID, inc.Title, inc.Service.Summary, opened, occurred, resolved), nil
}

// IncidentEvent is the snapshot, at at, of PagerDuty incident incidentID
// on service (its name), as a webhook (id names the webhook event) and a
// backfill through the incidents API (id names the incident's last status
// change) both report it. The incident's id is PagerDuty's, so every
// snapshot of it is the same incident.
func IncidentEvent(id, incidentID, title, service string, opened, at time.Time, resolved *time.Time) event.Event {
	snap := &event.Incident{ID: "pagerduty:" + incidentID, Title: title, OpenedAt: opened.UTC()}
	if resolved != nil {
		r := resolved.UTC()
		snap.ResolvedAt = &r
	}
	return event.Event{
		ID:         id,
		Source:     "pagerduty",
		Type:       event.TypeIncident,
		Service:    service,
		OccurredAt: at.UTC(),
		Incident:   snap,
	}
}
