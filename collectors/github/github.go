// Package github collects GitHub webhooks: it authenticates them with
// go-github, and parses pushes, deployments, merged pull requests and issues
// labelled as incidents into canonical events.
package github

import (
	"bytes"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"strings"

	gh "github.com/google/go-github/v60/github"

	"github.com/doraflow/doraflow/collectors/webhook"
)

// Config configures the GitHub collector.
type Config struct {
	// WebhookSecret is the secret set on the GitHub webhook; required.
	WebhookSecret string
	// IncidentLabels mark an issue as an incident (case-insensitive).
	IncidentLabels []string
}

// DefaultIncidentLabels is used when Config names none.
var DefaultIncidentLabels = []string{"incident"}

// Validate explains a configuration the collector cannot run with.
func (c Config) Validate() error {
	if c.WebhookSecret == "" {
		return errors.New("github: webhook secret is empty; set DORAFLOW_GITHUB_WEBHOOK_SECRET (or github.webhook_secret) to the secret of the GitHub webhook")
	}
	return nil
}

// Source is the GitHub webhook source.
type Source struct {
	secret         []byte
	incidentLabels []string
	kinds          webhook.Kinds
}

// New returns the GitHub source for a valid Config.
func New(cfg Config) (*Source, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	labels := cfg.IncidentLabels
	if len(labels) == 0 {
		labels = DefaultIncidentLabels
	}
	// GitHub's event types as go-github knows them (push, ping, star, …):
	// the ones parsed and those answered as ignored.
	return &Source{secret: []byte(cfg.WebhookSecret), incidentLabels: labels, kinds: webhook.NewKinds(gh.MessageTypes()...)}, nil
}

// Name is the source's name.
func (s *Source) Name() string { return "github" }

// Authenticate checks X-Hub-Signature-256 (only SHA-256 is accepted) with
// go-github, as ValidatePayload does: a JSON body is checked in place (the
// body can be 25 MB: ValidatePayload would copy it), a form-encoded one is
// unwrapped by ValidatePayloadFromBody.
func (s *Source) Authenticate(h http.Header, body []byte) ([]byte, error) {
	sig := h.Get(gh.SHA256SignatureHeader)
	if sig == "" {
		return nil, fmt.Errorf("github: missing %s header", gh.SHA256SignatureHeader)
	}
	if !strings.HasPrefix(sig, "sha256=") {
		return nil, fmt.Errorf("github: %s is not a sha256= signature", gh.SHA256SignatureHeader)
	}
	contentType := "application/json"
	if ct := h.Get("Content-Type"); ct != "" {
		var err error
		if contentType, _, err = mime.ParseMediaType(ct); err != nil {
			return nil, fmt.Errorf("github: Content-Type %q: %w", ct, err)
		}
	}
	if contentType == "application/json" {
		if err := gh.ValidateSignature(sig, body, s.secret); err != nil {
			return nil, fmt.Errorf("github: %w", err)
		}
		return body, nil
	}
	payload, err := gh.ValidatePayloadFromBody(contentType, bytes.NewReader(body), sig, s.secret)
	if err != nil {
		return nil, fmt.Errorf("github: %w", err)
	}
	return payload, nil
}

// Identify reads X-GitHub-Event and X-GitHub-Delivery.
func (s *Source) Identify(h http.Header, _ []byte) (string, string, error) {
	typ := h.Get(gh.EventTypeHeader)
	if typ == "" {
		return "", "", fmt.Errorf("github: missing %s header", gh.EventTypeHeader)
	}
	id := h.Get(gh.DeliveryIDHeader)
	if id == "" {
		return "", "", fmt.Errorf("github: missing %s header", gh.DeliveryIDHeader)
	}
	return typ, id, nil
}

// Kind is typ when go-github knows it as a GitHub event type.
func (s *Source) Kind(typ string) string { return s.kinds.Of(typ) }
