// Package pagerduty collects PagerDuty Webhooks v3: it authenticates them
// with go-pagerduty's webhookv3 signature check and turns incident
// lifecycle events into canonical incident snapshots.
//
// # Connect PagerDuty
//
// In PagerDuty, open Integrations → Generic Webhooks (v3) and click
// "+ New Webhook":
//
//   - Webhook URL: https://<your doraflow>/webhooks/pagerduty
//   - Scope Type: Account (every service), or a Service or Team to limit it
//   - Event Subscription: incident.triggered, incident.resolved and
//     incident.reopened (doraflow accepts and ignores any other event)
//
// Click "Add Webhook". PagerDuty shows the subscription's signing secret
// once: set it as DORAFLOW_PAGERDUTY_WEBHOOK_SECRET (or
// pagerduty.webhook_secret). The same subscription can be created through
// the REST API with POST /webhook_subscriptions (delivery_method type
// http_delivery_method, the URL above, filter account_reference or
// service_reference, the events above); the secret is then in the
// response's delivery_method.secret.
//
// doraflow names an incident's service after the PagerDuty service's name
// (the name shown in PagerDuty, e.g. "API Service"): list that name under
// teams[].services to give the service's incidents to a team.
package pagerduty

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/PagerDuty/go-pagerduty/webhookv3"

	"github.com/doraflow/doraflow/collectors/webhook"
)

// Header names PagerDuty sends.
const (
	SignatureHeader = "X-PagerDuty-Signature"
	// DeliveryHeader is stable across PagerDuty's retries of one delivery.
	DeliveryHeader = "X-Webhook-Id"
)

// Config configures the PagerDuty collector.
type Config struct {
	// WebhookSecret is the signing secret of the webhook subscription;
	// required.
	WebhookSecret string
}

// Validate explains a configuration the collector cannot run with.
func (c Config) Validate() error {
	if c.WebhookSecret == "" {
		return errors.New("pagerduty: webhook secret is empty; set DORAFLOW_PAGERDUTY_WEBHOOK_SECRET (or pagerduty.webhook_secret) to the signing secret PagerDuty showed when the webhook subscription was created")
	}
	return nil
}

// Source is the PagerDuty webhook source.
type Source struct {
	secret string
	kinds  webhook.Kinds
}

// New returns the PagerDuty source for a valid Config.
func New(cfg Config) (*Source, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Source{secret: cfg.WebhookSecret, kinds: kinds()}, nil
}

// Name is the source's name.
func (s *Source) Name() string { return "pagerduty" }

// Authenticate checks X-PagerDuty-Signature with webhookv3.VerifySignature.
// During a secret rotation the header holds several comma-separated "v1="
// signatures; VerifySignature accepts any match, but it does not trim the
// blanks some proxies add after the commas, so the header is normalised
// first.
func (s *Source) Authenticate(h http.Header, body []byte) ([]byte, error) {
	sig := normaliseSignatures(h.Get(SignatureHeader))
	if sig == "" {
		return nil, fmt.Errorf("pagerduty: missing %s header", SignatureHeader)
	}
	r := &http.Request{Header: http.Header{}, Body: io.NopCloser(bytes.NewReader(body))}
	r.Header.Set(SignatureHeader, sig)
	switch err := webhookv3.VerifySignature(r, s.secret); {
	case err == nil:
		return body, nil
	case errors.Is(err, webhookv3.ErrNoValidSignatures):
		return nil, fmt.Errorf("pagerduty: no signature in %s matches the webhook secret", SignatureHeader)
	case errors.Is(err, webhookv3.ErrMalformedHeader):
		return nil, fmt.Errorf("pagerduty: %s holds no v1= signature", SignatureHeader)
	default:
		return nil, fmt.Errorf("pagerduty: %w", err)
	}
}

// normaliseSignatures drops blanks around the comma-separated signatures.
func normaliseSignatures(h string) string {
	parts := strings.Split(h, ",")
	kept := parts[:0]
	for _, p := range parts {
		if p = strings.TrimSpace(p); p != "" {
			kept = append(kept, p)
		}
	}
	return strings.Join(kept, ",")
}

// Identify reads event.event_type from the body and the delivery id from
// X-Webhook-Id. Without the header (a hand-made request) the plumbing falls
// back to the body's hash, which is as stable across retries.
func (s *Source) Identify(h http.Header, body []byte) (string, string, error) {
	var p struct {
		Event struct {
			EventType string `json:"event_type"`
		} `json:"event"`
	}
	if err := json.Unmarshal(body, &p); err != nil {
		return "", "", fmt.Errorf("pagerduty: malformed JSON body: %w", err)
	}
	if p.Event.EventType == "" {
		return "", "", errors.New("pagerduty: body has no event.event_type; is this a Webhooks v3 payload?")
	}
	return p.Event.EventType, h.Get(DeliveryHeader), nil
}

// kinds are the Webhooks v3 event types PagerDuty documents: the ones
// parsed and those answered as ignored.
func kinds() webhook.Kinds {
	return webhook.NewKinds(typeTriggered, typeResolved, typeReopened, typePing,
		"incident.acknowledged", "incident.unacknowledged", "incident.annotated", "incident.delegated",
		"incident.escalated", "incident.reassigned", "incident.priority_updated", "incident.responder.added",
		"incident.responder.replied", "incident.status_update_published", "incident.conference_bridge.updated",
		"incident.custom_field_values.updated", "incident.incident_type.changed", "incident.workflow.started",
		"incident.workflow.completed", "service.created", "service.updated", "service.deleted")
}

// Kind is typ when it is one of PagerDuty's v3 event types.
func (s *Source) Kind(typ string) string { return s.kinds.Of(typ) }
