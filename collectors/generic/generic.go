// Package generic is doraflow's JSON API for any CI/CD or incident tool that
// can send an HTTP request: a deploy script, Argo CD or Spinnaker
// notifications, an incident bot. Each request reports one deployment status
// or one incident snapshot and carries `Authorization: Bearer <api token>`.
//
// # Deployments
//
// POST /api/v1/deployments reports that a deployment attempt reached a status:
//
//	curl -sS https://doraflow.example.com/api/v1/deployments \
//	  -H "Authorization: Bearer $DORAFLOW_API_TOKEN" \
//	  -H 'Content-Type: application/json' \
//	  -d '{"id": "deploy-4711", "repo": "acme/api",
//	       "sha": "9fceb02d0ae598e95dc970b74767f19372d61af8",
//	       "environment": "production", "status": "success",
//	       "started_at": "2026-01-05T10:00:00Z", "finished_at": "2026-01-05T10:04:30Z"}'
//
// Fields:
//
//   - repo (required): the repository the deployed commit belongs to, as
//     owner/name or group/subgroup/project, spelled as GitHub or GitLab
//     report it so the deployment meets the commits pushed there.
//   - sha (required): the deployed commit, hexadecimal. Send the full id:
//     a short one cannot be matched with pushed commits.
//   - environment (required): e.g. production, staging.
//   - status (required): success, failure, error or pending.
//   - finished_at: RFC 3339 time the status was reached; required unless
//     the status is pending.
//   - started_at: RFC 3339 time the attempt started; required for pending.
//   - id: your id of the deployment attempt. Send the same id with each of
//     its statuses (pending, then success). Without one, the attempt is
//     named by repo, sha, environment and started_at (else finished_at), so
//     send the same started_at with each status.
//   - service: the service deployed, when it is not named like the repo.
//   - rollback: true when the deployment rolls back to an earlier version
//     (otherwise doraflow infers rollbacks from the shas).
//
// # Incidents
//
// POST /api/v1/incidents reports an incident as it is now: post it when it
// opens, and again, with resolved_at, when it is resolved:
//
//	curl -sS https://doraflow.example.com/api/v1/incidents \
//	  -H "Authorization: Bearer $DORAFLOW_API_TOKEN" \
//	  -H 'Content-Type: application/json' \
//	  -d '{"id": "INC-1234", "service": "checkout", "title": "Checkout returns 500",
//	       "opened_at": "2026-01-05T11:00:00Z", "resolved_at": "2026-01-05T12:15:00Z"}'
//
// Fields:
//
//   - id (required): the incident's id, unique across all incidents posted.
//   - service or repo (at least one): what the incident affected; a repo
//     ties it to that repository's deployments.
//   - opened_at (required): RFC 3339 time the incident started.
//   - resolved_at: RFC 3339 time it was resolved; absent while open.
//   - title: a short description.
//   - deployment_id, sha: the deployment (its id as reported to doraflow) or
//     commit that caused the incident, when known; otherwise doraflow blames
//     the last production deployment of its service (or team) before it
//     opened.
//
// # Answers
//
// 202 when accepted; 400 with every problem of the body listed, field by
// field, e.g. `generic: invalid deployment: sha: "xyz" is not a hex commit
// sha; finished_at: required when status is success`; 401 when the token is
// missing or wrong; 503 when doraflow cannot store the report right now
// (retry). Unknown fields are refused, so a misspelt field is not silently
// lost. Posting the same report twice is harmless.
package generic

import (
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"net/http"
	"strings"

	"github.com/doraflow/doraflow/collectors/webhook"
	"github.com/doraflow/doraflow/pkg/event"
)

const source = "generic"

// Event types, as Identify names them.
const (
	eventDeployment = "deployment"
	eventIncident   = "incident"
)

// Config configures the generic API.
type Config struct {
	// APIToken is the bearer token clients send; required.
	APIToken string
}

// Validate explains a configuration the API cannot run with.
func (c Config) Validate() error {
	if c.APIToken == "" {
		return errors.New("generic: API token is empty; set DORAFLOW_API_TOKEN to a secret that clients of /api/v1 send as `Authorization: Bearer <token>`")
	}
	return nil
}

// auth checks bearer tokens. It holds the token's digest: comparing digests
// in constant time reveals neither the token's content nor its length.
type auth struct {
	tokenSum [sha256.Size]byte
}

func newAuth(cfg Config) (auth, error) {
	if err := cfg.Validate(); err != nil {
		return auth{}, err
	}
	return auth{tokenSum: sha256.Sum256([]byte(cfg.APIToken))}, nil
}

// Name is the source's name.
func (auth) Name() string { return source }

// Authenticate checks `Authorization: Bearer <token>` and returns the body.
func (a auth) Authenticate(h http.Header, body []byte) ([]byte, error) {
	scheme, token, _ := strings.Cut(h.Get("Authorization"), " ")
	// The scheme is case-insensitive (RFC 9110, section 11.1).
	if !strings.EqualFold(scheme, "Bearer") || token == "" {
		return nil, errors.New("generic: missing `Authorization: Bearer <token>` header")
	}
	sum := sha256.Sum256([]byte(strings.TrimSpace(token)))
	if subtle.ConstantTimeCompare(sum[:], a.tokenSum[:]) != 1 {
		return nil, errors.New("generic: bearer token does not match the configured API token")
	}
	return body, nil
}

// Deployments serves POST /api/v1/deployments.
type Deployments struct{ auth }

// NewDeployments returns the deployments source for a valid Config.
func NewDeployments(cfg Config) (*Deployments, error) {
	a, err := newAuth(cfg)
	if err != nil {
		return nil, err
	}
	return &Deployments{a}, nil
}

// Identify names the delivery by the fact it reports (its event id), not by
// the client's id: a deployment's id is the same in each of its statuses,
// and the archive drops a delivery whose id it has seen, so it would keep
// only the first status. A body that does not parse gets the body's hash;
// Parse then explains what is wrong with it.
func (s *Deployments) Identify(_ http.Header, body []byte) (string, string, error) {
	return eventDeployment, idOf(parseDeployment(body)), nil
}

// Kind: a deployment report is the one kind of this path.
func (s *Deployments) Kind(typ string) string {
	if typ == eventDeployment {
		return typ
	}
	return ""
}

// Parse turns a deployment report into its canonical event.
func (s *Deployments) Parse(d webhook.Delivery) ([]event.Event, error) {
	e, err := parseDeployment(d.Body)
	if err != nil {
		return nil, err
	}
	return []event.Event{e}, nil
}

// Incidents serves POST /api/v1/incidents.
type Incidents struct{ auth }

// NewIncidents returns the incidents source for a valid Config.
func NewIncidents(cfg Config) (*Incidents, error) {
	a, err := newAuth(cfg)
	if err != nil {
		return nil, err
	}
	return &Incidents{a}, nil
}

// Identify names the delivery by the fact it reports, like
// Deployments.Identify: an incident is posted open, then resolved, with the
// same id.
func (s *Incidents) Identify(_ http.Header, body []byte) (string, string, error) {
	return eventIncident, idOf(parseIncident(body)), nil
}

// Kind: an incident report is the one kind of this path.
func (s *Incidents) Kind(typ string) string {
	if typ == eventIncident {
		return typ
	}
	return ""
}

// Parse turns an incident report into its canonical event.
func (s *Incidents) Parse(d webhook.Delivery) ([]event.Event, error) {
	e, err := parseIncident(d.Body)
	if err != nil {
		return nil, err
	}
	return []event.Event{e}, nil
}

// idOf is the delivery id of a parsed body: its event's id, or "" (the
// body's hash) when it does not parse.
func idOf(e event.Event, err error) string {
	if err != nil {
		return ""
	}
	return e.ID
}
