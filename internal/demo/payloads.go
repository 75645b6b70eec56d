package demo

import (
	"encoding/base64"
	"fmt"
	"math/rand/v2"
	"strings"
	"time"
)

// obj is a JSON object under construction.
type obj = map[string]any

// record is one webhook before its payload exists. Payloads are rendered
// only once every record is in time order, so that ids and issue numbers
// grow with time across repositories, as GitHub's do.
type record struct {
	at     time.Time
	seq    int // creation order: breaks ties between equal times
	event  string
	render func(rd *renderer) obj
}

// timeline collects records; anything after the end of the history did not
// happen yet and is dropped.
type timeline struct {
	end     time.Time
	records []record
}

func (tl *timeline) add(at time.Time, event string, render func(rd *renderer) obj) {
	if at.After(tl.end) {
		return
	}
	// Working hours are planned in local time; deliveries are told in UTC.
	tl.records = append(tl.records, record{at: at.UTC(), seq: len(tl.records), event: event, render: render})
}

// renderer hands out GitHub's global ids and each repository's numbers
// (issues and pull requests share them) in time order.
type renderer struct {
	rng     *rand.Rand
	ids     map[string]int64
	numbers map[string]int64
}

func newRenderer(rng *rand.Rand) *renderer {
	return &renderer{rng: rng, numbers: map[string]int64{}, ids: map[string]int64{
		"deployment": 1_830_000_000, "status": 5_410_000_000, "issue": 2_710_000_000, "pull": 1_960_000_000,
	}}
}

// id assigns *slot the next id of kind once; GitHub's ids are global, so
// other repositories' objects leave gaps.
func (rd *renderer) id(kind string, slot *int64) int64 {
	if *slot == 0 {
		rd.ids[kind] += 1 + rd.rng.Int64N(40)
		*slot = rd.ids[kind]
	}
	return *slot
}

func (rd *renderer) number(repo string, slot *int64) int64 {
	if *slot == 0 {
		rd.numbers[repo]++
		*slot = rd.numbers[repo]
	}
	return *slot
}

func ts(t time.Time) string { return t.UTC().Format(time.RFC3339) }

// nodeID is GitHub's legacy global node id: base64 of "0<len>:<Type><id>".
func nodeID(typ string, id int64) string {
	return base64.StdEncoding.EncodeToString(fmt.Appendf(nil, "0%d:%s%d", len(typ), typ, id))
}

func userJSON(p person) obj {
	typ := "User"
	if strings.HasSuffix(p.login, "[bot]") {
		typ = "Bot"
	}
	return obj{
		"login": p.login, "id": p.id, "node_id": nodeID(typ, p.id), "type": typ, "site_admin": false,
		"avatar_url": fmt.Sprintf("https://avatars.githubusercontent.com/u/%d?v=4", p.id), "gravatar_id": "",
		"url": "https://api.github.com/users/" + p.login, "html_url": "https://github.com/" + p.login,
	}
}

const orgID = 91520873

func orgJSON() obj {
	return obj{
		"login": org, "id": orgID, "node_id": nodeID("Organization", orgID),
		"url": "https://api.github.com/orgs/" + org, "description": "Acme Corp",
	}
}

// repoJSON is the repository as payloads carry it. Push events give its
// created_at and pushed_at as unix seconds, every other event as strings.
func repoJSON(r *repoInfo, at time.Time, unixTimes bool) obj {
	pushedAt := r.lastPushAt(at)
	o := obj{
		"id": r.id, "node_id": nodeID("Repository", r.id), "name": r.name, "full_name": r.fullName,
		"private": true, "fork": false, "archived": false, "disabled": false, "visibility": "private",
		"owner": obj{
			"login": org, "id": orgID, "node_id": nodeID("Organization", orgID), "type": "Organization",
			"site_admin": false, "url": "https://api.github.com/users/" + org, "html_url": "https://github.com/" + org,
		},
		"html_url":       "https://github.com/" + r.fullName,
		"url":            "https://api.github.com/repos/" + r.fullName,
		"description":    nil,
		"default_branch": "main",
		"updated_at":     ts(pushedAt),
		"created_at":     ts(r.createdAt),
		"pushed_at":      ts(pushedAt),
	}
	if unixTimes {
		o["created_at"], o["pushed_at"] = r.createdAt.Unix(), pushedAt.Unix()
		o["master_branch"] = "main"
	}
	return o
}

// envelope adds what every event carries.
func envelope(r *repoInfo, at time.Time, sender person, fields obj) obj {
	fields["repository"] = repoJSON(r, at, false)
	fields["organization"] = orgJSON()
	fields["sender"] = userJSON(sender)
	return fields
}

func gitUser(p person) obj {
	return obj{"name": p.name, "email": p.email(), "username": p.login}
}

func (s *repoSim) commitJSON(rd *renderer, c *commit) obj {
	msg := c.message
	if pr := c.merge; pr != nil {
		msg = fmt.Sprintf("Merge pull request #%d from %s/%s\n\n%s",
			rd.number(s.repo.fullName, &pr.number), org, pr.branch, pr.title)
	}
	return obj{
		"id": c.sha, "tree_id": c.tree, "distinct": true, "message": msg,
		// Commits carry their author's local offset, as git records it.
		"timestamp": c.at.In(s.p.zone).Format(time.RFC3339),
		"url":       fmt.Sprintf("https://github.com/%s/commit/%s", s.repo.fullName, c.sha),
		"author":    gitUser(c.author), "committer": gitUser(c.committer),
		"added": nonNil(c.added), "removed": []string{}, "modified": nonNil(c.modified),
	}
}

func nonNil(xs []string) []string {
	if xs == nil {
		return []string{}
	}
	return xs
}

func (s *repoSim) emitPush(p *push) {
	s.tl.add(p.at, "push", func(rd *renderer) obj {
		commits := make([]obj, len(p.commits))
		for i, c := range p.commits {
			commits[i] = s.commitJSON(rd, c)
		}
		compare := fmt.Sprintf("https://github.com/%s/compare/%s...%s", s.repo.fullName, p.before[:12], p.after()[:12])
		if p.created {
			compare = fmt.Sprintf("https://github.com/%s/commit/%s", s.repo.fullName, p.after())
		}
		return obj{
			"ref": "refs/heads/main", "before": p.before, "after": p.after(),
			"created": p.created, "deleted": false, "forced": false, "base_ref": nil, "compare": compare,
			"commits": commits, "head_commit": commits[len(commits)-1],
			"repository":   repoJSON(s.repo, p.at, true),
			"pusher":       obj{"name": p.pusher.login, "email": p.pusher.email()},
			"organization": orgJSON(),
			"sender":       userJSON(p.pusher),
		}
	})
	if p.pr != nil {
		s.emitPullRequest(p.pr)
	}
}

// emitPullRequest is the merged pull request's "closed" event.
func (s *repoSim) emitPullRequest(pr *pullRequest) {
	s.tl.add(pr.mergedAt, "pull_request", func(rd *renderer) obj {
		n := rd.number(s.repo.fullName, &pr.number)
		id := rd.id("pull", &pr.id)
		base := fmt.Sprintf("https://api.github.com/repos/%s", s.repo.fullName)
		ref := func(label, name, sha string) obj {
			return obj{"label": org + ":" + label, "ref": name, "sha": sha, "user": userJSON(person{login: org, id: orgID}),
				"repo": repoJSON(s.repo, pr.mergedAt, false)}
		}
		return envelope(s.repo, pr.mergedAt, pr.merger, obj{
			"action": "closed", "number": n,
			"pull_request": obj{
				"url": fmt.Sprintf("%s/pulls/%d", base, n), "id": id, "node_id": nodeID("PullRequest", id),
				"html_url": fmt.Sprintf("https://github.com/%s/pull/%d", s.repo.fullName, n),
				"number":   n, "state": "closed", "locked": false, "title": pr.title, "draft": false,
				"user": userJSON(pr.author), "body": "Part of ongoing work on " + pr.branch + ".",
				"created_at": ts(pr.createdAt), "updated_at": ts(pr.mergedAt),
				"closed_at": ts(pr.mergedAt), "merged_at": ts(pr.mergedAt),
				"merge_commit_sha": pr.mergeSHA, "merged": true, "mergeable": nil, "merged_by": userJSON(pr.merger),
				"head": ref(pr.branch, pr.branch, pr.headSHA), "base": ref("main", "main", pr.push.before),
				"labels": []obj{}, "assignees": []obj{}, "requested_reviewers": []obj{},
				"comments": 0, "review_comments": 0, "commits": pr.commits,
				"additions": pr.additions, "deletions": pr.deletions, "changed_files": 1 + pr.commits,
				"author_association": "MEMBER",
			},
		})
	})
}

func (s *repoSim) deploymentJSON(rd *renderer, d *deployment) obj {
	id := rd.id("deployment", &d.id)
	url := fmt.Sprintf("https://api.github.com/repos/%s/deployments/%d", s.repo.fullName, id)
	return obj{
		"url": url, "id": id, "node_id": nodeID("Deployment", id),
		"sha": d.sha, "ref": "main", "task": "deploy", "payload": obj{},
		"original_environment": d.env, "environment": d.env, "description": d.description,
		"transient_environment": false, "production_environment": d.env == "production",
		"creator":    userJSON(deployBot),
		"created_at": ts(d.createdAt), "updated_at": ts(d.statusAt),
		"statuses_url": url + "/statuses", "repository_url": "https://api.github.com/repos/" + s.repo.fullName,
	}
}

func (s *repoSim) emitDeployment(d *deployment) {
	s.tl.add(d.createdAt, "deployment", func(rd *renderer) obj {
		return envelope(s.repo, d.createdAt, deployBot, obj{
			"action": "created", "deployment": s.deploymentJSON(rd, d), "workflow": nil, "workflow_run": nil,
		})
	})
}

func (s *repoSim) emitStatus(d *deployment, state string, at time.Time) {
	var id int64
	s.tl.add(at, "deployment_status", func(rd *renderer) obj {
		d.statusAt = at // rendered in time order: the deployment is as of this status
		dep := s.deploymentJSON(rd, d)
		sid := rd.id("status", &id)
		logURL := fmt.Sprintf("https://github.com/%s/actions/runs/%d", s.repo.fullName, 9_000_000_000+sid)
		return envelope(s.repo, at, deployBot, obj{
			"action": "created",
			"deployment_status": obj{
				"url": fmt.Sprintf("%s/statuses/%d", dep["url"], sid), "id": sid, "node_id": nodeID("DeploymentStatus", sid),
				"state": state, "creator": userJSON(deployBot), "description": statusDescription(state),
				"environment": d.env, "target_url": logURL, "log_url": logURL,
				"environment_url": fmt.Sprintf("https://%s.%s.acme.example", d.env, s.repo.name),
				"created_at":      ts(at), "updated_at": ts(at),
				"deployment_url": dep["url"], "repository_url": dep["repository_url"],
			},
			"deployment": dep,
		})
	})
}

func statusDescription(state string) string {
	switch state {
	case "in_progress":
		return "Deployment started"
	case "success":
		return "Deployment finished successfully."
	case "failure":
		return "Health checks failed; deployment aborted."
	default:
		return "Deployment job errored."
	}
}

func (s *repoSim) emitIssue(is *issue, action string, at time.Time) {
	s.tl.add(at, "issues", func(rd *renderer) obj {
		n := rd.number(s.repo.fullName, &is.number)
		id := rd.id("issue", &is.id)
		base := fmt.Sprintf("https://api.github.com/repos/%s/issues/%d", s.repo.fullName, n)
		o := obj{
			"url": base, "repository_url": "https://api.github.com/repos/" + s.repo.fullName,
			"html_url": fmt.Sprintf("https://github.com/%s/issues/%d", s.repo.fullName, n),
			"id":       id, "node_id": nodeID("Issue", id), "number": n, "title": is.title, "body": is.body,
			"user": userJSON(is.author), "labels": []obj{
				labelJSON(s.repo, 1, "incident", "b60205", "Production incident"),
				labelJSON(s.repo, 2, is.severity, "d93f0b", "Incident severity"),
			},
			"state": "open", "locked": false, "assignee": userJSON(is.author), "assignees": []obj{userJSON(is.author)},
			"comments": 0, "created_at": ts(is.openedAt), "updated_at": ts(at), "closed_at": nil,
			"author_association": "MEMBER",
		}
		if action == "closed" {
			o["state"], o["closed_at"], o["state_reason"] = "closed", ts(at), "completed"
		}
		return envelope(s.repo, at, is.author, obj{"action": action, "issue": o})
	})
}

func labelJSON(r *repoInfo, n int64, name, color, description string) obj {
	id := r.id*10 + n
	return obj{
		"id": id, "node_id": nodeID("Label", id), "name": name, "color": color, "default": false,
		"description": description, "url": fmt.Sprintf("https://api.github.com/repos/%s/labels/%s", r.fullName, name),
	}
}
