package opsgenie

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/doraflow/doraflow/collectors/webhook"
	"github.com/doraflow/doraflow/pkg/event"
)

// Alert actions doraflow uses. Every other action (Acknowledge, AddNote,
// AddTags, Escalate, ...) changes nothing an incident metric needs. Delete
// is ignored on purpose: alerts are mostly deleted as housekeeping, long
// after they were closed, and that must not erase a real incident.
const (
	actionCreate = "Create"
	actionClose  = "Close"
)

// payload is the alert action data Opsgenie's Webhook integration posts, as
// Opsgenie documents it ("Alert action data" / sample alert action data):
//
//	{
//	  "action": "Create",
//	  "alert": {
//	    "alertId": "052652ac-5d1c-464a-812a-7dd18bbfba8c",
//	    "message": "test alert",
//	    "tags": ["tag1", "tag2"],
//	    "tinyId": "23",
//	    "entity": "payments-api",
//	    "alias": "aliastest",
//	    "createdAt": 1420452191104,
//	    "updatedAt": 1420452193166002000,
//	    "priority": "P1",
//	    "source": "fili@ifountain.com",
//	    "username": "fili@ifountain.com",
//	    "userId": "daed1180-0ce8-438b-8f8e-57e1a5920a2d"
//	  },
//	  "source": {"name": "", "type": "web"},
//	  "integrationName": "Webhook",
//	  "integrationId": "37c8f316-17c6-49d7-899b-9c7e540c048d"
//	}
//
// Beware the units: createdAt is in epoch milliseconds, but Opsgenie's own
// samples give updatedAt in epoch nanoseconds. epochTime tells them apart
// by magnitude.
type payload struct {
	Action string `json:"action"`
	Alert  alert  `json:"alert"`
}

type alert struct {
	AlertID   string      `json:"alertId"`
	Message   string      `json:"message"`
	Tags      []string    `json:"tags"`
	Entity    string      `json:"entity"`
	Priority  priority    `json:"priority"`
	CreatedAt json.Number `json:"createdAt"`
	UpdatedAt json.Number `json:"updatedAt"`
}

// Parse turns an Opsgenie alert action into an incident snapshot. It is
// pure: times come from the payload, never from the clock, so a retry gives
// the same event under the same id ("opsgenie:<alertId>:<action>"; an alert
// is created and closed once, a re-raised alert gets a new alertId).
func (s *Source) Parse(d webhook.Delivery) ([]event.Event, error) {
	if d.Event != actionCreate && d.Event != actionClose {
		return nil, webhook.Ignored("action not used")
	}
	var p payload
	if err := json.Unmarshal(d.Body, &p); err != nil {
		return nil, fmt.Errorf("opsgenie: parse %s: %w", d.Event, err)
	}
	if p.Action != d.Event {
		// Only possible when a raw delivery is replayed under another name.
		return nil, fmt.Errorf("opsgenie: parse %s: body's action is %q", d.Event, p.Action)
	}
	if !s.matches(p.Alert) {
		return nil, webhook.Ignored("alert filtered out")
	}
	service := serviceOf(p.Alert)
	if service == "" {
		return nil, webhook.Ignored("alert names no service")
	}
	e, err := snapshot(p, service)
	if err == nil {
		err = e.Validate()
	}
	if err != nil {
		return nil, fmt.Errorf("opsgenie: parse %s: %w", d.Event, err)
	}
	return []event.Event{e}, nil
}

// matches applies the configured filters. An alert without a priority does
// not match a priority filter: counting an alert we cannot classify would
// inflate the metrics, and Opsgenie sends the priority with every action.
func (s *Source) matches(a alert) bool {
	return (len(s.tags) == 0 || anyEqualFold(a.Tags, s.tags)) &&
		(len(s.priorities) == 0 || anyEqualFold([]string{string(a.Priority)}, s.priorities))
}

func anyEqualFold(have, want []string) bool {
	for _, h := range have {
		for _, w := range want {
			if strings.EqualFold(strings.TrimSpace(h), strings.TrimSpace(w)) {
				return true
			}
		}
	}
	return false
}

// serviceOf names the alert's service: its entity (the field Opsgenie meant
// for "which component"), else its first "service:<name>" tag.
func serviceOf(a alert) string {
	if e := strings.TrimSpace(a.Entity); e != "" {
		return e
	}
	for _, t := range a.Tags {
		if name, ok := strings.CutPrefix(strings.TrimSpace(t), "service:"); ok && strings.TrimSpace(name) != "" {
			return strings.TrimSpace(name)
		}
	}
	return ""
}

// snapshot is the incident after the action: open since createdAt, and for
// Close resolved at updatedAt (the close is the alert's last update). A
// Close without updatedAt falls back to createdAt rather than the time of
// receipt, which would make the event differ between retries.
func snapshot(p payload, service string) (event.Event, error) {
	a := p.Alert
	if !event.ValidID(a.AlertID) {
		return event.Event{}, errors.New("alert.alertId is missing or not printable")
	}
	opened, err := epochTime(a.CreatedAt)
	if err != nil {
		return event.Event{}, fmt.Errorf("alert.createdAt: %w", err)
	}
	if opened.IsZero() {
		return event.Event{}, errors.New("alert.createdAt is missing")
	}
	inc := &event.Incident{ID: "opsgenie:" + a.AlertID, Title: a.Message, OpenedAt: opened}
	at := opened
	if p.Action == actionClose {
		updated, err := epochTime(a.UpdatedAt)
		if err != nil {
			return event.Event{}, fmt.Errorf("alert.updatedAt: %w", err)
		}
		if !updated.IsZero() {
			at = updated
		}
		inc.ResolvedAt = &at
	}
	return event.Event{
		ID:         "opsgenie:" + a.AlertID + ":" + p.Action,
		Source:     "opsgenie",
		Type:       event.TypeIncident,
		Service:    service,
		OccurredAt: at,
		Incident:   inc,
	}, nil
}

// Magnitudes that tell epoch units apart: any time from 1973 to 5138 is
// below 1e11 in seconds, between 1e11 and 1e14 in milliseconds, between 1e14
// and 1e17 in microseconds, and above 1e17 in nanoseconds.
const (
	minMillis = 1e11
	minMicros = 1e14
	minNanos  = 1e17
)

// epochTime reads an epoch timestamp in whichever unit its magnitude says.
// A missing (or zero) value is the zero time.
func epochTime(n json.Number) (time.Time, error) {
	if n == "" {
		return time.Time{}, nil
	}
	v, err := strconv.ParseInt(string(n), 10, 64)
	if err != nil {
		return time.Time{}, fmt.Errorf("%s is not a whole number of epoch milliseconds", n)
	}
	switch {
	case v < 0:
		return time.Time{}, fmt.Errorf("%d is before 1970", v)
	case v == 0:
		return time.Time{}, nil
	case v < minMillis:
		return time.Unix(v, 0).UTC(), nil
	case v < minMicros:
		return time.UnixMilli(v).UTC(), nil
	case v < minNanos:
		return time.UnixMicro(v).UTC(), nil
	default:
		return time.Unix(0, v).UTC(), nil
	}
}

// priority is an alert's priority, decoded leniently: Opsgenie sends "P1"
// to "P5", but integrations relaying alerts send the number alone (1 for
// P1). It only feeds the priority filter, so a value of another shape
// (null, a boolean, an object) is no priority rather than a refused
// delivery.
type priority string

func (p *priority) UnmarshalJSON(raw []byte) error {
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		return err
	}
	switch v := v.(type) {
	case string:
		*p = priority(v)
	case float64:
		if v == float64(int(v)) && v >= 1 && v <= 5 {
			*p = priority(fmt.Sprintf("P%d", int(v)))
		} else {
			*p = priority(strconv.FormatFloat(v, 'f', -1, 64))
		}
	default:
		*p = ""
	}
	return nil
}
