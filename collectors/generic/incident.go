package generic

import (
	"fmt"
	"strings"
	"time"

	"github.com/doraflow/doraflow/pkg/event"
)

// incidentBody is the JSON body of POST /api/v1/incidents.
type incidentBody struct {
	ID           string
	Service      string
	Repo         string
	Title        string
	OpenedAt     string
	ResolvedAt   string
	DeploymentID string
	SHA          string
}

func (b *incidentBody) fields() map[string]any {
	return map[string]any{
		"id":            &b.ID,
		"service":       &b.Service,
		"repo":          &b.Repo,
		"title":         &b.Title,
		"opened_at":     &b.OpenedAt,
		"resolved_at":   &b.ResolvedAt,
		"deployment_id": &b.DeploymentID,
		"sha":           &b.SHA,
	}
}

// maxTitle bounds a title: it is stored, not parsed, but an unbounded one
// would bloat every snapshot of the incident.
const maxTitle = 1024

// parseIncident validates an incident report and turns it into a snapshot
// event. Every problem is reported, field by field.
func parseIncident(body []byte) (event.Event, error) {
	var b incidentBody
	errs := decodeObject(body, b.fields())
	var opened, resolved time.Time
	errs.collect(
		checkText("id", b.ID, true),
		checkText("service", b.Service, false),
		checkRepo("repo", b.Repo, false),
		checkAffected(&b),
		checkTitle(b.Title),
		requireTime("opened_at", b.OpenedAt),
		parseTime("opened_at", b.OpenedAt, &opened),
		parseTime("resolved_at", b.ResolvedAt, &resolved),
		checkText("deployment_id", b.DeploymentID, false),
		checkSHA("sha", b.SHA, false),
	)
	if !opened.IsZero() && !resolved.IsZero() && resolved.Before(opened) {
		errs.collect(problem("resolved_at", "before opened_at"))
	}
	if err := errs.orNil(); err != nil {
		return event.Event{}, fmt.Errorf("generic: invalid incident: %w", err)
	}
	inc := &event.Incident{
		ID:           source + ":" + b.ID,
		Title:        b.Title,
		OpenedAt:     opened,
		DeploymentID: b.DeploymentID,
		SHA:          strings.ToLower(b.SHA), // as Git spells ids, so they match deployed commits
	}
	// One event per state: the open report, and each resolved time. A
	// corrected resolved_at is a new fact; a repeated report is a duplicate.
	id := fmt.Sprintf("generic:incident:%s:open", b.ID)
	at := opened
	if !resolved.IsZero() {
		inc.ResolvedAt = &resolved
		id = fmt.Sprintf("generic:incident:%s:resolved:%s", b.ID, resolved.Format(time.RFC3339Nano))
		at = resolved
	}
	return event.Event{
		ID:         id,
		Source:     source,
		Type:       event.TypeIncident,
		Repo:       b.Repo,
		Service:    b.Service,
		OccurredAt: at,
		Incident:   inc,
	}, nil
}

// checkAffected requires a service or a repo: an incident must be tied to
// something deployed.
func checkAffected(b *incidentBody) error {
	if b.Service == "" && b.Repo == "" {
		return problem("service", "required when repo is absent")
	}
	return nil
}

func checkTitle(v string) error {
	if len(v) > maxTitle {
		return problem("title", "longer than %d bytes", maxTitle)
	}
	return nil
}

func requireTime(field, v string) error {
	if v == "" {
		return problem(field, "required")
	}
	return nil
}
