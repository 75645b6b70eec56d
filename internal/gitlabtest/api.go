// Package gitlabtest fakes the parts of GitLab's REST API (v4) a backfill
// reads, in the JSON shapes GitLab documents, for tests.
package gitlabtest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// API serves projects under /api/v4. Lists are paged (page, per_page, at
// most PerPage items) with GitLab's X-Page, X-Per-Page, X-Next-Page,
// X-Total and X-Total-Pages headers and a Link header; every
// LimitEvery-th request is refused with 429, RateLimit-Remaining: 0,
// RateLimit-Reset and Retry-After, as GitLab.com does.
type API struct {
	*httptest.Server
	Token      string
	PerPage    int
	Latency    time.Duration
	LimitEvery int

	Calls, Limited atomic.Int64

	mu       sync.Mutex
	projects map[string]*Project
}

// Project is a project's history.
type Project struct {
	Path          string
	Commits       map[string]Commit
	Deployments   []Deployment
	MergeRequests []MergeRequest
	Issues        []Issue
}

// Commit is a commit with its parents.
type Commit struct {
	SHA     string
	Time    time.Time
	Parents []string
}

// Deployment is a deployment in its current status.
type Deployment struct {
	ID              int
	SHA, Env        string
	Status          string
	Created, Finish time.Time
}

// MergeRequest is a merged merge request.
type MergeRequest struct {
	IID                 int
	Merged              time.Time
	MergeSHA, SquashSHA string
	Commits             []string // oldest first
	Target              string
}

// Issue is an issue; Incident marks issue_type incident.
type Issue struct {
	IID              int
	Incident         bool
	Created, Updated time.Time
	Closed           time.Time // zero while open
}

// NewAPI starts a fake GitLab accepting token.
func NewAPI(token string) *API {
	a := &API{Token: token, PerPage: 100, projects: map[string]*Project{}}
	a.Server = httptest.NewServer(http.HandlerFunc(a.serve))
	return a
}

// AddProject adds (or replaces) a project.
func (a *API) AddProject(p *Project) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.projects[p.Path] = p
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func ts(t time.Time) string { return t.UTC().Format(time.RFC3339) }

func (a *API) serve(w http.ResponseWriter, r *http.Request) {
	n := a.Calls.Add(1)
	if a.Latency > 0 {
		time.Sleep(a.Latency)
	}
	if r.Header.Get("PRIVATE-TOKEN") != a.Token {
		writeJSON(w, http.StatusUnauthorized, map[string]any{"message": "401 Unauthorized"})
		return
	}
	if a.LimitEvery > 0 && n%int64(a.LimitEvery) == 0 {
		a.Limited.Add(1)
		w.Header().Set("RateLimit-Remaining", "0")
		w.Header().Set("RateLimit-Reset", strconv.FormatInt(time.Now().Add(time.Second).Unix(), 10))
		w.Header().Set("Retry-After", "1")
		writeJSON(w, http.StatusTooManyRequests, map[string]any{"message": "Retry later"})
		return
	}
	rest, ok := strings.CutPrefix(r.URL.EscapedPath(), "/api/v4/projects/")
	if !ok {
		http.NotFound(w, r)
		return
	}
	parts := strings.Split(rest, "/")
	for i := range parts {
		parts[i], _ = url.PathUnescape(parts[i])
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	p := a.projects[parts[0]]
	if p == nil {
		writeJSON(w, http.StatusNotFound, map[string]any{"message": "404 Project Not Found"})
		return
	}
	q := r.URL.Query()
	switch sub := strings.Join(parts[1:], "/"); {
	case sub == "deployments":
		a.deployments(w, r, p)
	case sub == "repository/compare":
		a.compare(w, p, q.Get("from"), q.Get("to"))
	case sub == "repository/commits":
		a.commits(w, r, p)
	case strings.HasPrefix(sub, "repository/commits/"):
		c, ok := p.Commits[strings.TrimPrefix(sub, "repository/commits/")]
		if !ok {
			writeJSON(w, http.StatusNotFound, map[string]any{"message": "404 Commit Not Found"})
			return
		}
		writeJSON(w, http.StatusOK, commitJSON(c))
	case sub == "merge_requests":
		a.mergeRequests(w, r, p)
	case len(parts) == 4 && parts[1] == "merge_requests" && parts[3] == "commits":
		a.mrCommits(w, r, p, parts[2])
	case sub == "issues":
		a.issues(w, r, p)
	default:
		http.NotFound(w, r)
	}
}

// page writes the page of items r asks for with GitLab's headers.
func (a *API) page(w http.ResponseWriter, r *http.Request, items []any) {
	q := r.URL.Query()
	per, _ := strconv.Atoi(q.Get("per_page"))
	if per <= 0 {
		per = 20
	}
	per = min(per, a.PerPage)
	p, _ := strconv.Atoi(q.Get("page"))
	p = max(p, 1)
	pages := max((len(items)+per-1)/per, 1)
	from, to := min((p-1)*per, len(items)), min(p*per, len(items))
	w.Header().Set("X-Page", strconv.Itoa(p))
	w.Header().Set("X-Per-Page", strconv.Itoa(per))
	w.Header().Set("X-Total", strconv.Itoa(len(items)))
	w.Header().Set("X-Total-Pages", strconv.Itoa(pages))
	if p < pages {
		w.Header().Set("X-Next-Page", strconv.Itoa(p+1))
		u := *r.URL
		qq := u.Query()
		qq.Set("page", strconv.Itoa(p+1))
		u.RawQuery = qq.Encode()
		w.Header().Set("Link", fmt.Sprintf(`<http://%s%s>; rel="next"`, r.Host, u.RequestURI()))
	} else {
		w.Header().Set("X-Next-Page", "")
	}
	writeJSON(w, http.StatusOK, items[from:to])
}

func commitJSON(c Commit) map[string]any {
	parents := c.Parents
	if parents == nil {
		parents = []string{}
	}
	return map[string]any{"id": c.SHA, "short_id": c.SHA[:8], "title": "change", "message": "change",
		"authored_date": ts(c.Time), "committed_date": ts(c.Time), "created_at": ts(c.Time), "parent_ids": parents}
}

func (a *API) deployments(w http.ResponseWriter, r *http.Request, p *Project) {
	ds := slices.Clone(p.Deployments)
	slices.SortFunc(ds, func(x, y Deployment) int { return y.ID - x.ID })
	items := []any{}
	for _, d := range ds {
		items = append(items, map[string]any{"id": d.ID, "iid": d.ID, "ref": "main", "sha": d.SHA, "status": d.Status,
			"created_at": ts(d.Created), "updated_at": ts(d.Finish),
			"environment": map[string]any{"id": 1, "name": d.Env},
			"deployable":  map[string]any{"id": d.ID, "status": d.Status, "created_at": ts(d.Created), "finished_at": ts(d.Finish)}})
	}
	a.page(w, r, items)
}

func ancestors(p *Project, sha string) map[string]bool {
	seen := map[string]bool{}
	stack := []string{sha}
	for len(stack) > 0 {
		s := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		c, ok := p.Commits[s]
		if seen[s] || !ok {
			continue
		}
		seen[s] = true
		stack = append(stack, c.Parents...)
	}
	return seen
}

func (a *API) compare(w http.ResponseWriter, p *Project, from, to string) {
	if _, ok := p.Commits[from]; !ok {
		writeJSON(w, http.StatusNotFound, map[string]any{"message": "404 Ref Not Found"})
		return
	}
	base := ancestors(p, from)
	var cs []Commit
	for s := range ancestors(p, to) {
		if !base[s] {
			cs = append(cs, p.Commits[s])
		}
	}
	slices.SortFunc(cs, func(x, y Commit) int { return x.Time.Compare(y.Time) })
	items := []any{}
	for _, c := range cs {
		items = append(items, commitJSON(c))
	}
	writeJSON(w, http.StatusOK, map[string]any{"commits": items, "diffs": []any{}, "compare_timeout": false, "compare_same_ref": from == to})
}

func (a *API) commits(w http.ResponseWriter, r *http.Request, p *Project) {
	since, _ := time.Parse(time.RFC3339, r.URL.Query().Get("since"))
	var cs []Commit
	for s := range ancestors(p, r.URL.Query().Get("ref_name")) {
		if c := p.Commits[s]; !c.Time.Before(since) {
			cs = append(cs, c)
		}
	}
	slices.SortFunc(cs, func(x, y Commit) int { return y.Time.Compare(x.Time) })
	items := []any{}
	for _, c := range cs {
		items = append(items, commitJSON(c))
	}
	a.page(w, r, items)
}

func (a *API) mergeRequests(w http.ResponseWriter, r *http.Request, p *Project) {
	q := r.URL.Query()
	if q.Get("state") != "merged" {
		writeJSON(w, http.StatusBadRequest, map[string]any{"message": "the fake serves state=merged only"})
		return
	}
	since, _ := time.Parse(time.RFC3339, q.Get("updated_after"))
	ms := slices.Clone(p.MergeRequests)
	slices.SortFunc(ms, func(x, y MergeRequest) int { return y.Merged.Compare(x.Merged) })
	items := []any{}
	for _, m := range ms {
		if m.Merged.Before(since) {
			continue
		}
		head := m.Commits[len(m.Commits)-1]
		var merge, squash any
		if m.MergeSHA != "" {
			merge = m.MergeSHA
		}
		if m.SquashSHA != "" {
			squash = m.SquashSHA
		}
		items = append(items, map[string]any{"id": m.IID, "iid": m.IID, "state": "merged", "title": "change",
			"merged_at": ts(m.Merged), "updated_at": ts(m.Merged), "created_at": ts(m.Merged.Add(-time.Hour)),
			"sha": head, "merge_commit_sha": merge, "squash_commit_sha": squash, "squash": squash != nil,
			"target_branch": m.Target, "source_branch": fmt.Sprintf("feature-%d", m.IID)})
	}
	a.page(w, r, items)
}

func (a *API) mrCommits(w http.ResponseWriter, r *http.Request, p *Project, iid string) {
	for _, m := range p.MergeRequests {
		if strconv.Itoa(m.IID) != iid {
			continue
		}
		items := []any{}
		// Newest first, as GitLab lists them.
		for i := len(m.Commits) - 1; i >= 0; i-- {
			items = append(items, commitJSON(p.Commits[m.Commits[i]]))
		}
		a.page(w, r, items)
		return
	}
	writeJSON(w, http.StatusNotFound, map[string]any{"message": "404 Not found"})
}

func (a *API) issues(w http.ResponseWriter, r *http.Request, p *Project) {
	q := r.URL.Query()
	since, _ := time.Parse(time.RFC3339, q.Get("updated_after"))
	is := slices.Clone(p.Issues)
	slices.SortFunc(is, func(x, y Issue) int { return x.Updated.Compare(y.Updated) })
	items := []any{}
	for _, i := range is {
		if i.Updated.Before(since) || (q.Get("issue_type") == "incident" && !i.Incident) {
			continue
		}
		typ := "issue"
		if i.Incident {
			typ = "incident"
		}
		item := map[string]any{"id": i.IID, "iid": i.IID, "title": fmt.Sprintf("incident %d", i.IID), "state": "opened",
			"issue_type": typ, "type": strings.ToUpper(typ[:1]) + typ[1:], "created_at": ts(i.Created), "updated_at": ts(i.Updated), "closed_at": nil}
		if !i.Closed.IsZero() {
			item["state"], item["closed_at"] = "closed", ts(i.Closed)
		}
		items = append(items, item)
	}
	a.page(w, r, items)
}
