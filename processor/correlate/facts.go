// Package correlate is doraflow's correlation logic, pure and deterministic:
// canonical events go in (in any order, any number of times), facts come out.
// It does no I/O, so it is tested exhaustively and replayed as it runs live.
package correlate

import (
	"cmp"
	"strings"
	"time"
)

// DeploymentFact is one deployment attempt, production or not, with what the
// metrics need to know about it.
type DeploymentFact struct {
	Repo        string
	ID          string
	Service     string
	Environment string
	SHA         string
	Status      string
	FinishedAt  time.Time
	Production  bool // a successful deployment to a production environment
	Rollback    bool // re-deployed a sha an earlier production deployment had shipped
	Failed      bool // rolled back, or caused an incident
	Rework      bool // a rollback, or a fix while an earlier deployment's incident was open
	Changes     int
	Approximate bool // the push chain had a gap: changes may be missing
	Incidents   int
	RecoveredAt *time.Time // failed deployments: rollback or last incident resolved
}

// DeploymentKey identifies a deployment fact.
type DeploymentKey struct{ Repo, ID string }

// Compare orders keys by repository, then id.
func (k DeploymentKey) Compare(o DeploymentKey) int {
	return cmp.Or(strings.Compare(k.Repo, o.Repo), strings.Compare(k.ID, o.ID))
}

func (k DeploymentKey) String() string { return k.Repo + "\x00" + k.ID }

// Key is the fact's natural key.
func (f DeploymentFact) Key() DeploymentKey { return DeploymentKey{f.Repo, f.ID} }

// ChangeFact is one commit shipped to production: at the first production
// deployment that shipped it.
type ChangeFact struct {
	Repo         string
	SHA          string
	DeploymentID string
	CommittedAt  time.Time
	DeployedAt   time.Time
}

// LeadTime is the change's lead time; never negative (a commit clock ahead
// of the deployment's counts as zero).
func (f ChangeFact) LeadTime() time.Duration { return max(f.DeployedAt.Sub(f.CommittedAt), 0) }

// ChangeKey identifies a change fact.
type ChangeKey struct{ Repo, SHA string }

// Compare orders keys by repository, then sha.
func (k ChangeKey) Compare(o ChangeKey) int {
	return cmp.Or(strings.Compare(k.Repo, o.Repo), strings.Compare(k.SHA, o.SHA))
}

func (k ChangeKey) String() string { return k.Repo + "\x00" + k.SHA }

// Key is the fact's natural key.
func (f ChangeFact) Key() ChangeKey { return ChangeKey{f.Repo, f.SHA} }

// IncidentFact is one incident and the deployment it is attributed to.
type IncidentFact struct {
	ID         string
	Source     string
	Service    string
	Repo       string
	OpenedAt   time.Time
	ResolvedAt *time.Time
	// The deployment blamed, if any, and how it was found.
	DeploymentRepo string
	DeploymentID   string
	Attribution    string // explicit, sha, service, team, or none
}

// Facts is a set of fact rows to write. Live is false for a tombstone: a
// fact that no longer holds, or an old row of a fact whose time moved.
type Facts struct {
	Deployments []Row[DeploymentFact]
	Changes     []Row[ChangeFact]
	Incidents   []Row[IncidentFact]
	Days        []RepoDay // the per-day rollups the facts above changed
}

// Row is a fact to write, or (Live false) to retract.
type Row[F any] struct {
	Fact F
	Live bool
}

// Len is the number of rows.
func (f Facts) Len() int { return len(f.Deployments) + len(f.Changes) + len(f.Incidents) }

// Entities are the repositories and services the facts mention, for the team
// mapping.
func (f Facts) Entities() (repos, services []string) {
	seenR, seenS := map[string]bool{}, map[string]bool{}
	add := func(seen map[string]bool, out *[]string, v string) {
		if v != "" && !seen[v] {
			seen[v] = true
			*out = append(*out, v)
		}
	}
	for _, r := range f.Deployments {
		add(seenR, &repos, r.Fact.Repo)
		add(seenS, &services, r.Fact.Service)
	}
	for _, r := range f.Changes {
		add(seenR, &repos, r.Fact.Repo)
	}
	for _, r := range f.Incidents {
		add(seenR, &repos, r.Fact.Repo)
		add(seenS, &services, r.Fact.Service)
	}
	return repos, services
}
