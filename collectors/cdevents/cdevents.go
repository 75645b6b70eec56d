// Package cdevents collects CDEvents sent over the CloudEvents HTTP binding,
// in structured mode (Content-Type: application/cloudevents+json, the whole
// CloudEvent in the body) or binary mode (ce-* headers, the CDEvent as the
// body). Deployments (service.deployed, service.upgraded,
// service.rolledback), merged changes (change.merged) and incidents
// (incident.detected, incident.reported, incident.resolved) become
// canonical events; every other CDEvent is accepted and ignored.
//
// # Connect a CDEvents producer
//
// Point the producer's CloudEvents sink (the URL it posts CDEvents to) at
// https://<your doraflow>/webhooks/cdevents and have it send the header
// "Authorization: Bearer <token>", with the same token set as
// DORAFLOW_CDEVENTS_TOKEN (or cdevents.token) in doraflow. With the
// CloudEvents Go SDK, for instance, that is a client made with
// cehttp.WithTarget(url) and cehttp.WithHeader("Authorization", "Bearer
// "+token). A producer whose sink setting takes only a URL needs a small
// proxy in front of doraflow that adds the header. Both binding modes work;
// send one event per request (batches are refused).
//
// Which events doraflow needs, and what it reads from them:
//
//   - dev.cdevents.service.deployed / upgraded / rolledback: one successful
//     deployment of subject.id (the service) to subject.content.environment.id.
//     Its repository and commit come from customData or from the purl in
//     subject.content.artifactId, see commitOf; a deployment without both is
//     refused (400), because doraflow cannot correlate it.
//   - dev.cdevents.change.merged: the repository is
//     subject.content.repository.id, the merge commit customData.sha (or
//     customData.commit); a merge without a sha is ignored.
//   - dev.cdevents.incident.detected / reported / resolved: the service is
//     subject.content.service.id (list it under teams[].services); an
//     artifactId (or customData) naming a commit attributes the incident to
//     the deployment that shipped it.
//
// Recommended customData for deployments, when the artifact purl does not
// name the commit: {"repo": "owner/name", "sha": "<full commit sha>"}.
package cdevents

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"unicode"

	"github.com/cdevents/sdk-go/pkg/api"
	"github.com/cdevents/sdk-go/pkg/api/v04"
	"github.com/cloudevents/sdk-go/v2/binding"
	ce "github.com/cloudevents/sdk-go/v2/event"
	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"

	"github.com/doraflow/doraflow/collectors/webhook"
)

// Config configures the CDEvents collector.
type Config struct {
	// Token is the bearer token senders must present; required.
	Token string
}

// Validate explains a configuration the collector cannot run with.
func (c Config) Validate() error {
	if c.Token == "" {
		return errors.New("cdevents: token is empty; set DORAFLOW_CDEVENTS_TOKEN (or cdevents.token) and have the CDEvents producer send it as \"Authorization: Bearer <token>\"")
	}
	return nil
}

// Source is the CDEvents webhook source.
type Source struct {
	// token is kept as its digest: comparing digests takes the same time
	// whatever the length of the guess.
	token [sha256.Size]byte
	kinds webhook.Kinds
}

// New returns the CDEvents source for a valid Config.
func New(cfg Config) (*Source, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Source{token: sha256.Sum256([]byte(cfg.Token)), kinds: kinds()}, nil
}

// Name is the source's name.
func (s *Source) Name() string { return "cdevents" }

// Authenticate checks "Authorization: Bearer <token>" in constant time.
func (s *Source) Authenticate(h http.Header, body []byte) ([]byte, error) {
	auth := h.Get("Authorization")
	if auth == "" {
		return nil, errors.New("cdevents: missing Authorization header (want Bearer <token>)")
	}
	scheme, token, _ := strings.Cut(auth, " ")
	if !strings.EqualFold(scheme, "Bearer") {
		return nil, errors.New("cdevents: Authorization is not a Bearer token")
	}
	sum := sha256.Sum256([]byte(strings.TrimSpace(token)))
	if subtle.ConstantTimeCompare(sum[:], s.token[:]) != 1 {
		return nil, errors.New("cdevents: wrong bearer token")
	}
	return body, nil
}

// Identify names the event after the CloudEvent's type; its delivery id is
// the CloudEvent's source and id, which the CloudEvents spec makes unique
// (ids alone are unique only per source).
func (s *Source) Identify(h http.Header, body []byte) (string, string, error) {
	e, err := decode(h, body)
	if err != nil {
		return "", "", err
	}
	if strings.HasPrefix(e.Type(), api.EventTypeRoot+".") {
		if _, err := api.ParseType(e.Type()); err != nil {
			return "", "", fmt.Errorf("cdevents: malformed CDEvents type %q: %w", e.Type(), err)
		}
	}
	return e.Type(), deliveryID(e), nil
}

// kindCustom is the one kind of every custom CDEvent
// (dev.cdeventsx.<tool>-<subject>.<predicate>.<version>).
const kindCustom = "custom"

// kinds are the CDEvents of the newest spec the CDEvents SDK knows, by
// subject and predicate ("service.deployed"), and kindCustom.
func kinds() webhook.Kinds {
	k := webhook.NewKinds(kindCustom)
	for _, e := range v04.CDEventsTypes {
		if t := e.GetType(); t.Custom == "" {
			k[t.Subject+"."+t.Predicate] = true
		}
	}
	return k
}

// Kind names a CDEvents type without its version: "service.deployed" for
// dev.cdevents.service.deployed.0.2.0, since versions would make the names
// unbounded. A CloudEvent type that is no known CDEvent has no kind.
func (s *Source) Kind(typ string) string {
	t, err := api.ParseType(typ)
	switch {
	case err != nil:
		return ""
	case t.Custom != "":
		return kindCustom
	}
	return s.kinds.Of(t.Subject + "." + t.Predicate)
}

func deliveryID(e *ce.Event) string { return e.Source() + ":" + e.ID() }

// decode reads the CloudEvent in either binding mode with the CloudEvents
// SDK. It is called by both Identify and Parse, since Parse must work from
// the delivery alone (replays).
func decode(h http.Header, body []byte) (*ce.Event, error) {
	if cehttp.IsHTTPBatch(h) {
		return nil, errors.New("cdevents: batched CloudEvents are not supported; send one event per request")
	}
	h, err := cleanHeader(h)
	if err != nil {
		return nil, err
	}
	msg := cehttp.NewMessage(h, io.NopCloser(bytes.NewReader(body)))
	if msg.ReadEncoding() == binding.EncodingUnknown {
		return nil, errors.New("cdevents: not a CloudEvent: send Content-Type: application/cloudevents+json (structured mode) or the ce-specversion, ce-id, ce-source and ce-type headers (binary mode)")
	}
	e, err := binding.ToEvent(context.Background(), msg)
	if err != nil {
		return nil, fmt.Errorf("cdevents: read CloudEvent: %w", err)
	}
	if err := e.Validate(); err != nil {
		return nil, fmt.Errorf("cdevents: invalid CloudEvent: %w", err)
	}
	// id and source end up in message headers (ids of deliveries and
	// events): refuse what would break them. The SDK already refuses a
	// source that is not a URI reference.
	if !printable(e.ID()) || !printable(e.Source()) {
		return nil, errors.New("cdevents: CloudEvent id or source has control characters")
	}
	return e, nil
}

// cleanHeader copies h without what makes the SDK's binary reader panic:
// a bare "Ce-" header (it indexes the first letter after the prefix) and a
// header without values (it reads the first).
func cleanHeader(h http.Header) (http.Header, error) {
	out := make(http.Header, len(h))
	for k, v := range h {
		if len(v) == 0 {
			continue
		}
		if strings.EqualFold(k, "Ce-") {
			return nil, errors.New("cdevents: header \"ce-\" names no CloudEvents attribute")
		}
		out[k] = v
	}
	return out, nil
}

// printable reports whether s has no control characters and a sane length.
func printable(s string) bool {
	if len(s) > 1024 {
		return false
	}
	for _, r := range s {
		if unicode.IsControl(r) {
			return false
		}
	}
	return true
}
