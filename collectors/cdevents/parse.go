package cdevents

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/cdevents/sdk-go/pkg/api"
	ce "github.com/cloudevents/sdk-go/v2/event"

	"github.com/doraflow/doraflow/collectors/webhook"
	"github.com/doraflow/doraflow/pkg/event"
)

// Parse turns a CDEvent into a canonical event. It is pure. The event id is
// "cdevents:<CloudEvent source>:<CloudEvent id>": the CloudEvents spec makes
// that pair unique per occurrence and has producers keep it on retries.
func (s *Source) Parse(d webhook.Delivery) ([]event.Event, error) {
	e, err := decode(d.Header, d.Body)
	if err != nil {
		return nil, err
	}
	if e.Type() != d.Event {
		// Only possible when a raw delivery is replayed under another name.
		return nil, fmt.Errorf("cdevents: parse %s: the CloudEvent's type is %q", d.Event, e.Type())
	}
	out, err := parseEvent(e)
	if err == nil {
		err = out.Validate()
	}
	switch {
	case errors.Is(err, webhook.ErrIgnored):
		return nil, err
	case err != nil:
		return nil, fmt.Errorf("cdevents: parse %s: %w", e.Type(), err)
	}
	return []event.Event{out}, nil
}

// parseEvent maps the CDEvent a CloudEvent carries. The CDEvents SDK gives
// the typed subjects; its own NewFromJsonBytes is not used, because it
// decodes into shared package-level instances (a data race between
// requests, and fields left over from the previous event).
func parseEvent(e *ce.Event) (event.Event, error) {
	t, err := api.ParseType(e.Type())
	switch {
	case err != nil && strings.HasPrefix(e.Type(), api.EventTypeRoot+"."):
		return event.Event{}, fmt.Errorf("malformed CDEvents type: %w", err)
	case err != nil:
		return event.Event{}, webhook.Ignored("not a CDEvent")
	case t.Custom != "":
		return event.Event{}, webhook.Ignored("event type not used")
	}
	data, err := cdeventData(e)
	if err != nil {
		return event.Event{}, err
	}
	// The CDEvent's own context: its type must be the CloudEvent's, and
	// its timestamp stands in for a CloudEvent without a time.
	var peek struct {
		Context api.Context `json:"context"`
	}
	if err := json.Unmarshal(data, &peek); err != nil {
		return event.Event{}, fmt.Errorf("data is not a CDEvent: %w", err)
	}
	if got := peek.Context.Type; got.Subject != t.Subject || got.Predicate != t.Predicate || got.Custom != t.Custom {
		return event.Event{}, fmt.Errorf("the CDEvent's context.type %q is not the CloudEvent's type", got.String())
	}
	at := e.Time()
	if at.IsZero() {
		at = peek.Context.Timestamp
	}
	if at.IsZero() {
		return event.Event{}, errors.New("neither the CloudEvent time nor the CDEvent context.timestamp is set")
	}
	base := event.Event{ID: "cdevents:" + e.Source() + ":" + e.ID(), Source: "cdevents", OccurredAt: at.UTC()}
	return mapCDEvent(base, e.Source(), *t, data)
}

// cdeventData is the CloudEvent's data: the whole CDEvent, as JSON.
func cdeventData(e *ce.Event) ([]byte, error) {
	if ct := e.DataContentType(); ct != "" && !isJSON(ct) {
		return nil, fmt.Errorf("data content type %q is not JSON", ct)
	}
	data := e.Data()
	if len(data) == 0 {
		return nil, errors.New("the CloudEvent has no data: it must carry the CDEvent")
	}
	return data, nil
}

// mapCDEvent dispatches on the CDEvent's subject and predicate.
func mapCDEvent(base event.Event, ceSource string, t api.CDEventType, data []byte) (event.Event, error) {
	switch t.Subject + "." + t.Predicate {
	case "service.deployed":
		ev, err := decodeAs[api.ServiceDeployedEventV0_2_0](t, api.ServiceDeployedEventTypeV0_2_0, data)
		if err != nil {
			return event.Event{}, err
		}
		c := ev.Subject.Content
		return deployment(base, ev, ev.Subject.Id, c.ArtifactId, c.Environment, false)
	case "service.upgraded":
		ev, err := decodeAs[api.ServiceUpgradedEventV0_2_0](t, api.ServiceUpgradedEventTypeV0_2_0, data)
		if err != nil {
			return event.Event{}, err
		}
		c := ev.Subject.Content
		return deployment(base, ev, ev.Subject.Id, c.ArtifactId, c.Environment, false)
	case "service.rolledback":
		ev, err := decodeAs[api.ServiceRolledbackEventV0_2_0](t, api.ServiceRolledbackEventTypeV0_2_0, data)
		if err != nil {
			return event.Event{}, err
		}
		c := ev.Subject.Content
		return deployment(base, ev, ev.Subject.Id, c.ArtifactId, c.Environment, true)
	case "change.merged":
		ev, err := decodeAs[api.ChangeMergedEventV0_2_0](t, api.ChangeMergedEventTypeV0_2_0, data)
		if err != nil {
			return event.Event{}, err
		}
		return merge(base, ev)
	case "incident.detected":
		ev, err := decodeAs[api.IncidentDetectedEventV0_2_0](t, api.IncidentDetectedEventTypeV0_2_0, data)
		if err != nil {
			return event.Event{}, err
		}
		c := ev.Subject.Content
		return incident(base, ev, ceSource, ev.Subject.Reference, incidentContent{c.ArtifactId, c.Description, c.Service}, false)
	case "incident.reported":
		// Reported by a person rather than detected by a tool: still the
		// incident opening.
		ev, err := decodeAs[api.IncidentReportedEventV0_2_0](t, api.IncidentReportedEventTypeV0_2_0, data)
		if err != nil {
			return event.Event{}, err
		}
		c := ev.Subject.Content
		return incident(base, ev, ceSource, ev.Subject.Reference, incidentContent{c.ArtifactId, c.Description, c.Service}, false)
	case "incident.resolved":
		ev, err := decodeAs[api.IncidentResolvedEventV0_2_0](t, api.IncidentResolvedEventTypeV0_2_0, data)
		if err != nil {
			return event.Event{}, err
		}
		c := ev.Subject.Content
		return incident(base, ev, ceSource, ev.Subject.Reference, incidentContent{c.ArtifactId, c.Description, c.Service}, true)
	}
	return event.Event{}, webhook.Ignored("event type not used")
}

// decodeAs decodes a CDEvent into a fresh SDK value of the version doraflow
// reads. Any version with the same major is read the same way (the SDK's
// own rule): minor versions only add fields. Spec 0.3's service.deployed
// 0.1.x, for one, has the same subject as 0.4's 0.2.0.
func decodeAs[T any](t, sdk api.CDEventType, data []byte) (*T, error) {
	if !t.IsCompatible(sdk) {
		return nil, fmt.Errorf("version %s is not supported: doraflow reads %s", t.Version, sdk.String())
	}
	v := new(T)
	if err := json.Unmarshal(data, v); err != nil {
		return nil, fmt.Errorf("data is not a %s CDEvent: %w", t.UnversionedString(), err)
	}
	return v, nil
}

func refID(r *api.Reference) string {
	if r == nil {
		return ""
	}
	return strings.TrimSpace(r.Id)
}

// deployment is one successful deployment: CDEvents reports a service as
// deployed (or upgraded, or rolled back) once it is, so every such event is
// a success. Its id is the event's own: subject.id names the service, which
// every deployment of it shares.
func deployment(base event.Event, ev api.CDEventReader, service, artifactID string, env *api.Reference, rollback bool) (event.Event, error) {
	custom, err := readCustomData(ev)
	if err != nil {
		return event.Event{}, err
	}
	repo, sha, err := commitOf(custom, artifactID)
	switch {
	case err != nil:
		return event.Event{}, err
	case repo == "":
		return event.Event{}, errNoRepo
	case sha == "":
		return event.Event{}, errNoCommit
	}
	base.Type = event.TypeDeployment
	base.Repo = repo
	base.Service = strings.TrimSpace(service)
	base.Deployment = &event.Deployment{
		ID:          base.ID,
		SHA:         sha,
		Environment: refID(env),
		Status:      event.StatusSuccess,
		Rollback:    rollback,
	}
	return base, nil
}

// merge is a merged change. A CDEvents change carries no commit of its own,
// so the merge commit must come in customData; without it the merge says
// nothing doraflow can correlate.
func merge(base event.Event, ev *api.ChangeMergedEventV0_2_0) (event.Event, error) {
	custom, err := readCustomData(ev)
	if err != nil {
		return event.Event{}, err
	}
	repo := repoName(refID(ev.Subject.Content.Repository))
	if repo == "" {
		repo = repoName(custom.Repo)
	}
	if repo == "" {
		return event.Event{}, errors.New("change.merged names no repository: set subject.content.repository.id (owner/name)")
	}
	sha := strings.ToLower(strings.TrimSpace(custom.SHA))
	if sha == "" {
		sha = strings.ToLower(strings.TrimSpace(custom.Commit))
	}
	switch {
	case sha == "":
		return event.Event{}, webhook.Ignored("merge names no commit sha")
	case !isFullSHA(sha):
		return event.Event{}, fmt.Errorf("customData sha %q is not a full commit sha (40 or 64 hex digits)", sha)
	}
	// A numeric change id is the pull/merge request number.
	number, _ := strconv.Atoi(ev.Subject.Id)
	base.Type = event.TypeMerge
	base.Repo = repo
	base.Merge = &event.Merge{Number: max(number, 0), MergeSHA: sha}
	return base, nil
}

// incidentContent is what the incident subjects share.
type incidentContent struct {
	artifactID, description string
	service                 *api.Reference
}

// incident is a snapshot of an incident. CDEvents' incident.resolved does
// not say when the incident opened, so its snapshot opens when it resolves;
// the processor keeps the earliest opening any snapshot reported, which is
// the detected one when doraflow saw it.
func incident(base event.Event, ev api.CDEventReader, ceSource string, subject api.Reference, c incidentContent, resolved bool) (event.Event, error) {
	if strings.TrimSpace(subject.Id) == "" || !printable(subject.Id) {
		return event.Event{}, errors.New("subject.id (the incident id) is missing or not printable")
	}
	custom, err := readCustomData(ev)
	if err != nil {
		return event.Event{}, err
	}
	// Attribution is optional: an incident naming no commit is still an
	// incident.
	repo, sha, err := commitOf(custom, c.artifactID)
	if err != nil {
		return event.Event{}, err
	}
	service := refID(c.service)
	if service == "" && repo == "" {
		return event.Event{}, errors.New("incident names no service: set subject.content.service.id")
	}
	// Incident ids are unique within the subject's source, which defaults to
	// the event's.
	src := subject.Source
	if src == "" {
		src = ceSource
	}
	at := base.OccurredAt
	inc := &event.Incident{
		ID:       "cdevents:" + src + ":" + subject.Id,
		Title:    c.description,
		OpenedAt: at,
		SHA:      sha,
	}
	if resolved {
		inc.ResolvedAt = &at
	}
	base.Type = event.TypeIncident
	base.Repo = repo
	base.Service = service
	base.Incident = inc
	return base, nil
}
