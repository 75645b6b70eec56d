// Package opsgenie collects Opsgenie's outgoing Webhook integration: alerts
// created and closed in Opsgenie become canonical incident snapshots.
//
// # Connect Opsgenie
//
// In Opsgenie, open Settings → Integrations (or a team's Integrations tab),
// click "Add integration" and pick "Webhook":
//
//   - Webhook URL: https://<your doraflow>/webhooks/opsgenie
//   - Custom headers: add X-Doraflow-Token with the shared secret as its
//     value (the header name is opsgenie.header in doraflow's config).
//     doraflow also accepts the secret as the password of HTTP basic auth
//     (Authorization: Basic, any user name), for a proxy in between that
//     can only do that.
//   - Leave "Add Alert Description/Details to Payload" as you like: doraflow
//     does not read them.
//   - Under "Opsgenie to Webhook", keep the action rules "Alert is created"
//     and "Alert is closed" (post to url); any other action is accepted and
//     ignored.
//
// Set the same secret as DORAFLOW_OPSGENIE_SECRET (or opsgenie.secret).
// Not every alert is an incident: opsgenie.tags (e.g. ["prod-incident"]) and
// opsgenie.priorities (e.g. ["P1", "P2"]) keep only the alerts that match, or
// filter with the integration's own alert filter in Opsgenie.
//
// An alert's service is its "entity" field, or else its first tag of the
// form "service:<name>"; list those names under teams[].services.
package opsgenie

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/doraflow/doraflow/collectors/webhook"
)

// DefaultHeader carries the shared secret unless Config names another.
const DefaultHeader = "X-Doraflow-Token"

// Config configures the Opsgenie collector.
type Config struct {
	// Secret is the shared secret the webhook sends; required.
	Secret string
	// Header is the custom header that carries Secret; DefaultHeader if
	// empty. HTTP basic auth whose password is Secret is accepted too.
	Header string
	// Tags keep only alerts carrying at least one of them
	// (case-insensitive); empty keeps all.
	Tags []string
	// Priorities keep only alerts of these priorities (P1..P5); empty keeps
	// all.
	Priorities []string
}

// Validate explains a configuration the collector cannot run with.
func (c Config) Validate() error {
	var errs []error
	if c.Secret == "" {
		errs = append(errs, errors.New("opsgenie: secret is empty; set DORAFLOW_OPSGENIE_SECRET (or opsgenie.secret) and send the same value from the Opsgenie Webhook integration in the "+DefaultHeader+" custom header"))
	}
	if c.Header != "" && !isToken(c.Header) {
		errs = append(errs, fmt.Errorf("opsgenie: header %q is not a valid HTTP header name", c.Header))
	}
	if strings.EqualFold(c.Header, "Authorization") {
		errs = append(errs, errors.New("opsgenie: header must not be Authorization: basic auth is accepted there already (the secret as the password)"))
	}
	for _, t := range c.Tags {
		if strings.TrimSpace(t) == "" {
			errs = append(errs, errors.New("opsgenie: tags has an empty tag"))
		}
	}
	for _, p := range c.Priorities {
		if !validPriority(p) {
			errs = append(errs, fmt.Errorf("opsgenie: priority %q is not one of Opsgenie's P1, P2, P3, P4, P5", p))
		}
	}
	return errors.Join(errs...)
}

func validPriority(p string) bool {
	switch strings.ToUpper(p) {
	case "P1", "P2", "P3", "P4", "P5":
		return true
	}
	return false
}

// isToken reports whether s is a valid header name (RFC 9110 token).
func isToken(s string) bool {
	for _, r := range s {
		if r > 0x7e || r <= ' ' || strings.ContainsRune(`"(),/:;<=>?@[\]{}`, r) {
			return false
		}
	}
	return s != ""
}

// Source is the Opsgenie webhook source.
type Source struct {
	// secret is kept as its digest: comparing digests takes the same time
	// whatever the length of the guess.
	secret     [sha256.Size]byte
	header     string
	tags       []string
	priorities []string
	kinds      webhook.Kinds
}

// New returns the Opsgenie source for a valid Config.
func New(cfg Config) (*Source, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	header := cfg.Header
	if header == "" {
		header = DefaultHeader
	}
	return &Source{
		secret:     sha256.Sum256([]byte(cfg.Secret)),
		header:     header,
		tags:       append([]string(nil), cfg.Tags...),
		priorities: append([]string(nil), cfg.Priorities...),
		kinds:      kinds(),
	}, nil
}

// Name is the source's name.
func (s *Source) Name() string { return "opsgenie" }

// Authenticate accepts the secret in the custom header or as the basic-auth
// password. Opsgenie does not sign its webhooks, so a shared secret over
// TLS is all there is.
func (s *Source) Authenticate(h http.Header, body []byte) ([]byte, error) {
	candidates := h.Values(s.header)
	if _, pass, ok := (&http.Request{Header: h}).BasicAuth(); ok {
		candidates = append(candidates, pass)
	}
	if len(candidates) == 0 {
		return nil, fmt.Errorf("opsgenie: missing %s header (or basic auth)", s.header)
	}
	for _, c := range candidates {
		sum := sha256.Sum256([]byte(c))
		if subtle.ConstantTimeCompare(sum[:], s.secret[:]) == 1 {
			return body, nil
		}
	}
	return nil, fmt.Errorf("opsgenie: wrong secret in %s header (or basic auth)", s.header)
}

// Identify names the event after the alert action. Opsgenie sends no
// delivery id, so the plumbing uses the body's hash: a retry sends the same
// body.
func (s *Source) Identify(_ http.Header, body []byte) (string, string, error) {
	var p struct {
		Action string `json:"action"`
	}
	if err := json.Unmarshal(body, &p); err != nil {
		return "", "", fmt.Errorf("opsgenie: malformed JSON body: %w", err)
	}
	if p.Action == "" {
		return "", "", errors.New("opsgenie: body has no action; is this an Opsgenie Webhook integration payload?")
	}
	return p.Action, "", nil
}

// kinds are the alert actions Opsgenie's Webhook integration posts: the
// ones parsed and those answered as ignored.
func kinds() webhook.Kinds {
	return webhook.NewKinds(actionCreate, actionClose, "Acknowledge", "UnAcknowledge", "Delete", "AddNote",
		"AddRecipient", "AddTeam", "AddResponder", "AddTags", "RemoveTags", "AddDetails", "RemoveDetails",
		"AssignOwnership", "TakeOwnership", "Snooze", "Escalate", "EscalateNext", "UpdatePriority",
		"UpdateMessage", "UpdateDescription", "CustomAction")
}

// Kind is action when it is one of Opsgenie's alert actions.
func (s *Source) Kind(action string) string { return s.kinds.Of(action) }
