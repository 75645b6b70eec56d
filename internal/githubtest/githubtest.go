// Package githubtest builds signed GitHub webhook deliveries for tests:
// payloads in the shape GitHub documents (see collectors/github/testdata for
// real ones), small enough to write scenarios by hand.
package githubtest

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"
)

// Delivery is one webhook to post.
type Delivery struct {
	Event string
	ID    string
	Body  []byte
}

// Sign returns the X-Hub-Signature-256 value of body.
func Sign(secret string, body []byte) string {
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write(body)
	return "sha256=" + hex.EncodeToString(mac.Sum(nil))
}

// Request is the signed POST of d to url.
func Request(url, secret string, d Delivery) *http.Request {
	r, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(d.Body))
	r.Header.Set("Content-Type", "application/json")
	r.Header.Set("X-GitHub-Event", d.Event)
	r.Header.Set("X-GitHub-Delivery", d.ID)
	r.Header.Set("X-Hub-Signature-256", Sign(secret, d.Body))
	return r
}

func repo(fullName string) map[string]any {
	owner, name, _ := strings.Cut(fullName, "/")
	return map[string]any{"id": 1, "name": name, "full_name": fullName, "owner": map[string]any{"login": owner}}
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // test helper: the inputs are literals
	}
	return b
}

// Commit is a commit of a push.
type Commit struct {
	SHA  string
	Time time.Time
}

// Push is a push of commits (oldest first) to main.
func Push(id, fullName, before, after string, commits ...Commit) Delivery {
	return PushTo(id, fullName, "refs/heads/main", before, after, commits...)
}

// PushTo is a push of commits (oldest first) to ref.
func PushTo(id, fullName, ref, before, after string, commits ...Commit) Delivery {
	var cs []map[string]any
	for _, c := range commits {
		cs = append(cs, map[string]any{"id": c.SHA, "distinct": true, "message": "change " + c.SHA[:7],
			"timestamp": c.Time.Format(time.RFC3339)})
	}
	body := map[string]any{"ref": ref, "before": before, "after": after,
		"created": strings.Trim(before, "0") == "", "deleted": false, "forced": false,
		"commits": cs, "repository": repo(fullName)}
	return Delivery{Event: "push", ID: id, Body: mustJSON(body)}
}

// DeploymentStatus reports a deployment's state at a time.
func DeploymentStatus(id, fullName string, deploymentID, statusID int64, sha, env, state string, at time.Time) Delivery {
	body := map[string]any{
		"action": "created",
		"deployment_status": map[string]any{"id": statusID, "state": state, "environment": env,
			"created_at": at.Format(time.RFC3339), "updated_at": at.Format(time.RFC3339)},
		"deployment": map[string]any{"id": deploymentID, "sha": sha, "ref": "main", "environment": env,
			"created_at": at.Add(-5 * time.Minute).Format(time.RFC3339)},
		"repository": repo(fullName),
	}
	return Delivery{Event: "deployment_status", ID: id, Body: mustJSON(body)}
}

// Issue is an issues event on an issue labelled incident; closedAt is zero
// for an open one.
func Issue(id, fullName, action string, number int, opened, closedAt time.Time) Delivery {
	issue := map[string]any{"number": number, "title": fmt.Sprintf("incident %d", number), "state": "open",
		"created_at": opened.Format(time.RFC3339), "updated_at": opened.Format(time.RFC3339),
		"labels": []map[string]any{{"name": "incident"}}}
	if !closedAt.IsZero() {
		issue["state"] = "closed"
		issue["closed_at"] = closedAt.Format(time.RFC3339)
		issue["updated_at"] = closedAt.Format(time.RFC3339)
	}
	body := map[string]any{"action": action, "issue": issue, "repository": repo(fullName)}
	return Delivery{Event: "issues", ID: id, Body: mustJSON(body)}
}

// PullRequestMerged is the pull_request event of a pull request merged into
// main as mergeSHA, from a branch whose tip was headSHA, with commits
// commits.
func PullRequestMerged(id, fullName string, number int, mergeSHA, headSHA string, commits int, mergedAt time.Time) Delivery {
	body := map[string]any{"action": "closed", "number": number,
		"pull_request": map[string]any{"number": number, "state": "closed", "merged": true, "merged_at": mergedAt.Format(time.RFC3339),
			"merge_commit_sha": mergeSHA, "commits": commits, "head": map[string]any{"ref": fmt.Sprintf("feature-%d", number), "sha": headSHA},
			"base": map[string]any{"ref": "main"}},
		"repository": repo(fullName)}
	return Delivery{Event: "pull_request", ID: id, Body: mustJSON(body)}
}

// SHA makes a 40-hex sha from a short name, for readable scenarios.
func SHA(name string) string {
	s := hex.EncodeToString([]byte(name))
	return (s + strings.Repeat("0", 40))[:40]
}
