// Package gitlab collects GitLab project webhooks: it authenticates them by
// their secret token, and parses pushes, merged merge requests, deployments,
// (optionally) default-branch pipelines and incidents into canonical events.
package gitlab

import (
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"net/http"

	gl "github.com/xanzy/go-gitlab"

	"github.com/doraflow/doraflow/collectors/webhook"
)

// Header names GitLab sets on webhook deliveries.
const (
	tokenHeader = "X-Gitlab-Token"
	eventHeader = "X-Gitlab-Event"
	// idempotencyHeader is stable across GitLab's retries of one delivery
	// (GitLab 17.4+).
	idempotencyHeader = "Idempotency-Key"
	// eventUUIDHeader names the event; older GitLab versions send only this.
	eventUUIDHeader = "X-Gitlab-Event-UUID"
)

// Config configures the GitLab collector.
type Config struct {
	// WebhookToken is the secret token set on the GitLab webhook; required.
	WebhookToken string
	// PipelineDeployments treats a finished pipeline on the project's
	// default branch as a deployment to "production", for teams that deploy
	// from pipelines without GitLab environments. Off by default: with
	// environments, Deployment Hooks already report each deployment.
	PipelineDeployments bool
}

// Validate explains a configuration the collector cannot run with.
func (c Config) Validate() error {
	if c.WebhookToken == "" {
		return errors.New("gitlab: webhook token is empty; set DORAFLOW_GITLAB_WEBHOOK_TOKEN to the secret token of the GitLab webhook")
	}
	return nil
}

// Source is the GitLab webhook source.
type Source struct {
	tokenSum            [sha256.Size]byte
	pipelineDeployments bool
	kinds               webhook.Kinds
}

// New returns the GitLab source for a valid Config.
func New(cfg Config) (*Source, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Source{tokenSum: sha256.Sum256([]byte(cfg.WebhookToken)), pipelineDeployments: cfg.PipelineDeployments, kinds: kinds()}, nil
}

// Name is the source's name.
func (s *Source) Name() string { return "gitlab" }

// Authenticate checks X-Gitlab-Token. GitLab sends the secret itself, not a
// signature, so the body is returned as is. The digests are compared rather
// than the tokens so that the comparison's time reveals neither the token's
// content nor its length.
func (s *Source) Authenticate(h http.Header, body []byte) ([]byte, error) {
	token := h.Get(tokenHeader)
	if token == "" {
		return nil, fmt.Errorf("gitlab: missing %s header", tokenHeader)
	}
	sum := sha256.Sum256([]byte(token))
	if subtle.ConstantTimeCompare(sum[:], s.tokenSum[:]) != 1 {
		return nil, fmt.Errorf("gitlab: %s does not match the configured token", tokenHeader)
	}
	return body, nil
}

// Identify reads the event type from X-Gitlab-Event ("Push Hook", ...) and
// the delivery id from Idempotency-Key, else X-Gitlab-Event-UUID; without
// either the plumbing uses the body's hash.
func (s *Source) Identify(h http.Header, _ []byte) (string, string, error) {
	typ := h.Get(eventHeader)
	if typ == "" {
		return "", "", fmt.Errorf("gitlab: missing %s header", eventHeader)
	}
	id := h.Get(idempotencyHeader)
	if id == "" {
		id = h.Get(eventUUIDHeader)
	}
	return typ, id, nil
}

// kinds are the X-Gitlab-Event values go-gitlab knows: the ones parsed and
// those answered as ignored.
func kinds() webhook.Kinds {
	k := webhook.NewKinds()
	for _, t := range []gl.EventType{
		gl.EventConfidentialIssue, gl.EventConfidentialNote, gl.EventTypeBuild, gl.EventTypeDeployment,
		gl.EventTypeFeatureFlag, gl.EventTypeIssue, gl.EventTypeJob, gl.EventTypeMember, gl.EventTypeMergeRequest,
		gl.EventTypeNote, gl.EventTypePipeline, gl.EventTypePush, gl.EventTypeRelease, gl.EventTypeResourceAccessToken,
		gl.EventTypeServiceHook, gl.EventTypeSubGroup, gl.EventTypeSystemHook, gl.EventTypeTagPush, gl.EventTypeWikiPage,
	} {
		k[string(t)] = true
	}
	return k
}

// Kind is typ when it is one of GitLab's event types ("Push Hook", …).
func (s *Source) Kind(typ string) string { return s.kinds.Of(typ) }
