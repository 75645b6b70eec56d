package generic

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
	"time"

	"github.com/doraflow/doraflow/pkg/event"
)

// deploymentBody is the JSON body of POST /api/v1/deployments.
type deploymentBody struct {
	ID          string
	Repo        string
	SHA         string
	Environment string
	Status      string
	StartedAt   string
	FinishedAt  string
	Service     string
	Rollback    bool
}

func (b *deploymentBody) fields() map[string]any {
	return map[string]any{
		"id":          &b.ID,
		"repo":        &b.Repo,
		"sha":         &b.SHA,
		"environment": &b.Environment,
		"status":      &b.Status,
		"started_at":  &b.StartedAt,
		"finished_at": &b.FinishedAt,
		"service":     &b.Service,
		"rollback":    &b.Rollback,
	}
}

// deploymentStatuses are the statuses a client may report, in the order the
// error message lists them.
var deploymentStatuses = []string{event.StatusSuccess, event.StatusFailure, event.StatusError, event.StatusPending}

func checkStatus(v string) error {
	for _, s := range deploymentStatuses {
		if v == s {
			return nil
		}
	}
	if v == "" {
		return problem("status", "required")
	}
	return problem("status", "%q is not one of %s", v, strings.Join(deploymentStatuses, ", "))
}

// parseDeployment validates a deployment report and turns it into its event.
// Every problem is reported, field by field.
func parseDeployment(body []byte) (event.Event, error) {
	var b deploymentBody
	errs := decodeObject(body, b.fields())
	var started, finished time.Time
	errs.collect(
		checkText("id", b.ID, false),
		checkRepo("repo", b.Repo, true),
		checkSHA("sha", b.SHA, true),
		checkText("environment", b.Environment, true),
		checkStatus(b.Status),
		parseTime("started_at", b.StartedAt, &started),
		parseTime("finished_at", b.FinishedAt, &finished),
		checkText("service", b.Service, false),
	)
	at, err := deploymentTime(&b, started, finished)
	errs.collect(err)
	if err := errs.orNil(); err != nil {
		return event.Event{}, fmt.Errorf("generic: invalid deployment: %w", err)
	}
	dep := &event.Deployment{
		ID:          b.ID,
		SHA:         strings.ToLower(b.SHA), // as Git spells ids, so they match pushed commits
		Environment: b.Environment,
		Status:      b.Status,
		Rollback:    b.Rollback,
	}
	if dep.ID == "" {
		anchor := started
		if b.StartedAt == "" {
			anchor = finished
		}
		dep.ID = deploymentHash(b.Repo, dep.SHA, b.Environment, anchor)
	}
	service := b.Service
	if service == "" {
		service = b.Repo
	}
	return event.Event{
		// The repo is part of the id: clients choose deployment ids, and two
		// repositories' deploy tools may well both count from 1.
		ID:         fmt.Sprintf("generic:deployment:%s:%s:%s", b.Repo, dep.ID, dep.Status),
		Source:     source,
		Type:       event.TypeDeployment,
		Repo:       b.Repo,
		Service:    service,
		OccurredAt: at,
		Deployment: dep,
	}, nil
}

// deploymentTime is when a deployment reached its status: finished_at, or
// for pending, started_at. It checks that the status has the time it needs
// and that the times are in order. A time that was sent but did not parse is
// zero here and already reported.
func deploymentTime(b *deploymentBody, started, finished time.Time) (time.Time, error) {
	switch {
	case !started.IsZero() && !finished.IsZero() && finished.Before(started):
		return time.Time{}, problem("finished_at", "before started_at")
	case b.Status == event.StatusPending && b.StartedAt == "":
		return time.Time{}, problem("started_at", "required when status is pending")
	case b.Status == event.StatusPending:
		return started, nil
	case b.FinishedAt == "" && checkStatus(b.Status) == nil:
		return time.Time{}, problem("finished_at", "required when status is %s", b.Status)
	}
	return finished, nil
}

// deploymentHash names a deployment attempt the client gave no id:
// what was deployed where, and when it started (or, without a start time,
// finished).
func deploymentHash(repo, sha, env string, at time.Time) string {
	sum := sha256.Sum256([]byte(strings.Join([]string{repo, sha, env, at.UTC().Format(time.RFC3339Nano)}, "\x00")))
	return hex.EncodeToString(sum[:12])
}
