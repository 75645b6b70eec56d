package correlate

import (
	"cmp"
	"slices"
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
//     incidents on production deployments and hands each repository the
//     incidents blamed on its deployments (Outcome), from which the
//     repository stage completes its deployment facts (failed, recovery,
//     rework).
//
// Production deployments depend only on the repository's own events, never
// on outcomes, so the two stages always settle, on facts that are a function
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

// Outcome lists every incident blamed on a deployment of Repo, in id order.
type Outcome struct {
	Repo      string           `json:"repo"`
	Incidents []BlamedIncident `json:"incidents"`
}

// BlamedIncident is an incident as the blamed repository needs it.
type BlamedIncident struct {
	ID           string     `json:"id"`
	DeploymentID string     `json:"deployment_id"`
	OpenedAt     time.Time  `json:"opened_at"`
	ResolvedAt   *time.Time `json:"resolved_at,omitempty"`
}

func (b BlamedIncident) equal(o BlamedIncident) bool {
	return b.ID == o.ID && b.DeploymentID == o.DeploymentID && b.OpenedAt.Equal(o.OpenedAt) && sameTimePtr(b.ResolvedAt, o.ResolvedAt)
}

// openAt reports whether the incident was open at t: opened at or before it
// and not resolved by then.
func (b BlamedIncident) openAt(t time.Time) bool {
	return !b.OpenedAt.After(t) && (b.ResolvedAt == nil || b.ResolvedAt.After(t))
}

func sortBlamed(list []BlamedIncident) {
	slices.SortFunc(list, func(a, b BlamedIncident) int { return strings.Compare(a.ID, b.ID) })
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
