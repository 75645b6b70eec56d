package correlate

import (
	"cmp"
	"strings"
	"time"
)

// The correlation runs in two stages that exchange these records (over the
// bus when the stages run apart):
//
//   - the repository stage (Repos, one per partition of repositories) folds
//     pushes, merges and deployments, and hands on its production
//     deployments (ProductionDeployment) and which deployment first shipped
//     each commit an incident names (Ship);
//   - the attribution stage (Attribution, one for all incidents) blames
//     incidents on production deployments and hands every repository stage
//     each incident's blame as it changes (BlamedIncident), from which the
//     stage that holds the blamed repository completes its deployment facts
//     (failed, recovery, rework). A record per incident, to every stage,
//     so that moving an incident from one repository to another needs no
//     memory of where it was.
//
// Production deployments depend only on the repository's own events, never
// on blames, so the two stages always settle, on facts that are a function
// of the events alone.

// ProductionDeployment is a production deployment as attribution needs it.
// Withdrawn says it is no longer one (a later status, a moved time).
type ProductionDeployment struct {
	Repo      string    `json:"repo"`
	ID        string    `json:"id"`
	Service   string    `json:"service"`
	At        time.Time `json:"at"`
	Withdrawn bool      `json:"withdrawn,omitempty"`
}

// Key is the deployment's key.
func (d ProductionDeployment) Key() DeploymentKey { return DeploymentKey{d.Repo, d.ID} }

// Ship says which production deployment of Repo first shipped SHA, a commit
// an incident names; an empty DeploymentID withdraws an earlier Ship.
type Ship struct {
	Repo         string `json:"repo"`
	SHA          string `json:"sha"`
	DeploymentID string `json:"deployment_id,omitempty"`
}

// BlamedIncident is an incident's blame as the blamed repository needs it;
// an empty DeploymentRepo says it is blamed on no deployment (any more).
type BlamedIncident struct {
	ID             string     `json:"id"`
	DeploymentRepo string     `json:"deployment_repo,omitempty"`
	DeploymentID   string     `json:"deployment_id,omitempty"`
	OpenedAt       time.Time  `json:"opened_at"`
	ResolvedAt     *time.Time `json:"resolved_at,omitempty"`
}

func (b BlamedIncident) equal(o BlamedIncident) bool {
	return b.ID == o.ID && b.DeploymentRepo == o.DeploymentRepo && b.DeploymentID == o.DeploymentID &&
		b.OpenedAt.Equal(o.OpenedAt) && sameTimePtr(b.ResolvedAt, o.ResolvedAt)
}

// openAt reports whether the incident was open at t: opened at or before it
// and not resolved by then.
func (b BlamedIncident) openAt(t time.Time) bool {
	return !b.OpenedAt.After(t) && (b.ResolvedAt == nil || b.ResolvedAt.After(t))
}

func sameTimePtr(a, b *time.Time) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	return a.Equal(*b)
}

// deployOrder orders deployments by time, then id: the order in which
// production deployments ship commits.
func deployOrder(at time.Time, id string, bt time.Time, bid string) int {
	return cmp.Or(at.Compare(bt), strings.Compare(id, bid))
}
