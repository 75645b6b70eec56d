package githubtest

import (
	"crypto/sha1"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash/fnv"
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

// API is a fake of the parts of GitHub's REST API a backfill and a
// redelivery read, serving the JSON shapes GitHub documents under /api/v3
// (GitHub Enterprise Server's prefix; go-github's WithEnterpriseURLs adds
// it): deployments and their statuses, compare, commits, pull requests and
// their commits, issues, organisation repositories, hook deliveries and
// their redelivery. Lists are paged (page and per_page, at most PerPage
// items, with a Link header to the next and last pages; hook deliveries by
// cursor); every answer carries rate-limit headers unless NoRateHeaders,
// and the limits below make it answer as GitHub does when they are hit.
type API struct {
	*httptest.Server
	Token string
	// PerPage caps a page, whatever per_page asks (GitHub: 100).
	PerPage int
	// Latency is added to every answer: a real API's round trip.
	Latency time.Duration
	// Limit is the requests per window of Window (primary limit): past it
	// requests get 403 with X-RateLimit-Remaining: 0 until the window's
	// reset. 0: no limit.
	Limit  int
	Window time.Duration
	// SecondaryEvery makes every n-th request a secondary limit answer:
	// 403 with Retry-After: 1.
	SecondaryEvery int
	// FailEvery makes every n-th request a 502.
	FailEvery int
	// NoRateHeaders leaves the rate-limit headers out, as GitHub
	// Enterprise Server with rate limiting disabled does.
	NoRateHeaders bool

	Calls, Primary, Secondary, Failed atomic.Int64

	mu          sync.Mutex
	repos       map[string]*Repo
	orgs        map[string][]string
	orgHooks    map[string]map[int64][]APIDelivery
	windowStart time.Time
	used        int
	redelivered []int64
}

// Repo is a repository's history as the fake serves it.
type Repo struct {
	FullName    string
	PushedAt    time.Time
	Commits     map[string]APICommit
	Deployments []APIDeployment // any order; served newest first
	Pulls       []APIPull
	Issues      []APIIssue
	Hooks       map[int64][]APIDelivery // by hook id; served newest first
}

// APICommit is a commit with its parents.
type APICommit struct {
	SHA     string
	Time    time.Time
	Parents []string
}

// APIDeployment is a deployment with its statuses (oldest first).
type APIDeployment struct {
	ID          int64
	SHA, Env    string
	CreatedAt   time.Time
	Statuses    []APIStatus
	Description string
}

// APIStatus is one deployment status.
type APIStatus struct {
	ID    int64
	State string
	At    time.Time
}

// APIPull is a pull request; MergedAt zero for one closed unmerged.
type APIPull struct {
	Number            int
	MergedAt, Updated time.Time
	MergeSHA, Base    string
	Commits           []string // oldest first
}

// APIIssue is an issue (or, with PullRequest, a pull request as /issues
// lists it).
type APIIssue struct {
	Number           int
	Labels           []string
	Created, Updated time.Time
	Closed           time.Time // zero while open
	PullRequest      bool
}

// APIDelivery is a hook delivery.
type APIDelivery struct {
	ID         int64
	GUID       string
	At         time.Time
	StatusCode int
	Redelivery bool
	Event      string
}

// NewAPI starts a fake GitHub API that accepts token; it stops with Close.
func NewAPI(token string) *API {
	a := &API{Token: token, PerPage: 100, Window: time.Second, repos: map[string]*Repo{}, orgs: map[string][]string{},
		orgHooks: map[string]map[int64][]APIDelivery{}}
	a.Server = httptest.NewServer(http.HandlerFunc(a.serve))
	return a
}

// AddRepo adds (or replaces) a repository, in org owner.
func (a *API) AddRepo(r *Repo) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.repos[r.FullName] = r
	owner, _, _ := strings.Cut(r.FullName, "/")
	if !slices.Contains(a.orgs[owner], r.FullName) {
		a.orgs[owner] = append(a.orgs[owner], r.FullName)
	}
}

// AddOrgHook adds (or replaces) an organisation webhook's deliveries.
func (a *API) AddOrgHook(org string, hook int64, deliveries []APIDelivery) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.orgHooks[org] == nil {
		a.orgHooks[org] = map[int64][]APIDelivery{}
	}
	a.orgHooks[org][hook] = deliveries
}

// Redelivered are the delivery ids asked to be redelivered, in order.
func (a *API) Redelivered() []int64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.redelivered)
}

func (a *API) serve(w http.ResponseWriter, r *http.Request) {
	n := a.Calls.Add(1)
	if a.Latency > 0 {
		time.Sleep(a.Latency)
	}
	if r.Header.Get("Authorization") != "Bearer "+a.Token {
		writeJSON(w, http.StatusUnauthorized, map[string]any{"message": "Bad credentials"})
		return
	}
	if a.FailEvery > 0 && n%int64(a.FailEvery) == 0 {
		a.Failed.Add(1)
		http.Error(w, "bad gateway", http.StatusBadGateway)
		return
	}
	if a.SecondaryEvery > 0 && n%int64(a.SecondaryEvery) == 0 {
		a.Secondary.Add(1)
		w.Header().Set("Retry-After", "1")
		writeJSON(w, http.StatusForbidden, map[string]any{"message": "You have exceeded a secondary rate limit. Please wait a few minutes before you try again.",
			"documentation_url": "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api#about-secondary-rate-limits"})
		return
	}
	if !a.rateHeaders(w) {
		a.Primary.Add(1)
		writeJSON(w, http.StatusForbidden, map[string]any{"message": "API rate limit exceeded for user ID 1.",
			"documentation_url": "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api#about-primary-rate-limits"})
		return
	}
	path, ok := strings.CutPrefix(r.URL.EscapedPath(), "/api/v3/")
	if !ok {
		http.NotFound(w, r)
		return
	}
	parts := strings.Split(path, "/")
	for i := range parts {
		parts[i], _ = url.PathUnescape(parts[i])
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(parts) == 3 && parts[0] == "orgs" && parts[2] == "repos" {
		a.orgRepos(w, r, parts[1])
		return
	}
	if len(parts) >= 5 && parts[0] == "orgs" && parts[2] == "hooks" && parts[4] == "deliveries" {
		hooks := a.orgHooks[parts[1]]
		switch {
		case r.Method == http.MethodGet && len(parts) == 5:
			a.deliveries(w, r, hooks, parts[3])
		case r.Method == http.MethodPost && len(parts) == 7 && parts[6] == "attempts":
			a.redeliver(w, hooks, parts[3], parts[5])
		default:
			http.NotFound(w, r)
		}
		return
	}
	if len(parts) < 4 || parts[0] != "repos" {
		http.NotFound(w, r)
		return
	}
	repo := a.repos[parts[1]+"/"+parts[2]]
	if repo == nil {
		writeJSON(w, http.StatusNotFound, map[string]any{"message": "Not Found"})
		return
	}
	rest := parts[3:]
	switch {
	case r.Method == http.MethodGet && len(rest) == 1 && rest[0] == "deployments":
		a.deployments(w, r, repo)
	case r.Method == http.MethodGet && len(rest) == 3 && rest[0] == "deployments" && rest[2] == "statuses":
		a.statuses(w, r, repo, rest[1])
	case r.Method == http.MethodGet && len(rest) == 2 && rest[0] == "compare":
		a.compare(w, r, repo, rest[1])
	case r.Method == http.MethodGet && len(rest) == 1 && rest[0] == "commits":
		a.commits(w, r, repo)
	case r.Method == http.MethodGet && len(rest) == 1 && rest[0] == "pulls":
		a.pulls(w, r, repo)
	case r.Method == http.MethodGet && len(rest) == 3 && rest[0] == "pulls" && rest[2] == "commits":
		a.pullCommits(w, r, repo, rest[1])
	case r.Method == http.MethodGet && len(rest) == 1 && rest[0] == "issues":
		a.issues(w, r, repo)
	case r.Method == http.MethodGet && len(rest) == 3 && rest[0] == "hooks" && rest[2] == "deliveries":
		a.deliveries(w, r, repo.Hooks, rest[1])
	case r.Method == http.MethodPost && len(rest) == 5 && rest[0] == "hooks" && rest[2] == "deliveries" && rest[4] == "attempts":
		a.redeliver(w, repo.Hooks, rest[1], rest[3])
	default:
		http.NotFound(w, r)
	}
}

// rateHeaders counts the request against the primary limit and sets the
// headers; false when the limit is used up.
func (a *API) rateHeaders(w http.ResponseWriter) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.Limit <= 0 {
		if !a.NoRateHeaders {
			w.Header().Set("X-RateLimit-Limit", "5000")
			w.Header().Set("X-RateLimit-Remaining", "4999")
			w.Header().Set("X-RateLimit-Reset", strconv.FormatInt(time.Now().Add(time.Hour).Unix(), 10))
		}
		return true
	}
	now := time.Now()
	if now.Sub(a.windowStart) >= a.Window {
		// Windows start on whole seconds: X-RateLimit-Reset is in seconds.
		a.windowStart, a.used = now.Truncate(time.Second), 0
	}
	reset := a.windowStart.Add(a.Window)
	ok := a.used < a.Limit
	if ok {
		a.used++
	}
	if !a.NoRateHeaders {
		w.Header().Set("X-RateLimit-Limit", strconv.Itoa(a.Limit))
		w.Header().Set("X-RateLimit-Remaining", strconv.Itoa(a.Limit-a.used))
		w.Header().Set("X-RateLimit-Reset", strconv.FormatInt(reset.Unix(), 10))
		w.Header().Set("X-RateLimit-Resource", "core")
	}
	return ok
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

// page writes the page of items r asks for, with GitHub's Link header.
func (a *API) page(w http.ResponseWriter, r *http.Request, items []any) {
	q := r.URL.Query()
	per, _ := strconv.Atoi(q.Get("per_page"))
	if per <= 0 {
		per = 30
	}
	per = min(per, a.PerPage)
	p, _ := strconv.Atoi(q.Get("page"))
	p = max(p, 1)
	from, to := min((p-1)*per, len(items)), min(p*per, len(items))
	last := max((len(items)+per-1)/per, 1)
	if p < last {
		link := func(n int, rel string) string {
			u := *r.URL
			qq := u.Query()
			qq.Set("page", strconv.Itoa(n))
			u.RawQuery = qq.Encode()
			return fmt.Sprintf(`<http://%s%s>; rel="%s"`, r.Host, u.RequestURI(), rel)
		}
		w.Header().Set("Link", link(p+1, "next")+", "+link(last, "last"))
	}
	writeJSON(w, http.StatusOK, items[from:to])
}

func ts(t time.Time) string { return t.UTC().Format(time.RFC3339) }

func repoJSON(r *Repo) map[string]any {
	owner, name, _ := strings.Cut(r.FullName, "/")
	return map[string]any{"id": 1, "name": name, "full_name": r.FullName, "owner": map[string]any{"login": owner}, "pushed_at": ts(r.PushedAt)}
}

func (a *API) orgRepos(w http.ResponseWriter, r *http.Request, org string) {
	var repos []*Repo
	for _, name := range a.orgs[org] {
		repos = append(repos, a.repos[name])
	}
	slices.SortFunc(repos, func(x, y *Repo) int { return y.PushedAt.Compare(x.PushedAt) })
	items := make([]any, 0, len(repos))
	for _, rp := range repos {
		items = append(items, repoJSON(rp))
	}
	a.page(w, r, items)
}

func deploymentJSON(d APIDeployment) map[string]any {
	return map[string]any{"id": d.ID, "sha": d.SHA, "ref": "main", "task": "deploy", "environment": d.Env,
		"created_at": ts(d.CreatedAt), "updated_at": ts(d.CreatedAt), "description": d.Description}
}

func (a *API) deployments(w http.ResponseWriter, r *http.Request, repo *Repo) {
	ds := slices.Clone(repo.Deployments)
	slices.SortFunc(ds, func(x, y APIDeployment) int { return int(y.ID - x.ID) })
	env := r.URL.Query().Get("environment")
	items := []any{}
	for _, d := range ds {
		if env == "" || d.Env == env {
			items = append(items, deploymentJSON(d))
		}
	}
	a.page(w, r, items)
}

func (a *API) statuses(w http.ResponseWriter, r *http.Request, repo *Repo, id string) {
	for _, d := range repo.Deployments {
		if strconv.FormatInt(d.ID, 10) != id {
			continue
		}
		items := []any{}
		// Newest first, as GitHub lists them.
		for i := len(d.Statuses) - 1; i >= 0; i-- {
			st := d.Statuses[i]
			items = append(items, map[string]any{"id": st.ID, "state": st.State, "environment": d.Env,
				"created_at": ts(st.At), "updated_at": ts(st.At)})
		}
		a.page(w, r, items)
		return
	}
	writeJSON(w, http.StatusNotFound, map[string]any{"message": "Not Found"})
}

func commitJSON(c APICommit) map[string]any {
	parents := []any{}
	for _, p := range c.Parents {
		parents = append(parents, map[string]any{"sha": p})
	}
	return map[string]any{"sha": c.SHA, "commit": map[string]any{"message": "change " + c.SHA[:7],
		"author": map[string]any{"name": "dev", "date": ts(c.Time)}, "committer": map[string]any{"name": "dev", "date": ts(c.Time)}},
		"parents": parents}
}

// ancestors is every commit reachable from sha, sha included.
func ancestors(repo *Repo, sha string) map[string]bool {
	seen := map[string]bool{}
	stack := []string{sha}
	for len(stack) > 0 {
		s := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if seen[s] {
			continue
		}
		c, ok := repo.Commits[s]
		if !ok {
			continue
		}
		seen[s] = true
		stack = append(stack, c.Parents...)
	}
	return seen
}

// between is the commits reachable from head and not from base, oldest
// first (by time, then sha).
func between(repo *Repo, base, head string) []APICommit {
	fromBase := ancestors(repo, base)
	var out []APICommit
	for s := range ancestors(repo, head) {
		if !fromBase[s] {
			out = append(out, repo.Commits[s])
		}
	}
	slices.SortFunc(out, func(x, y APICommit) int {
		if c := x.Time.Compare(y.Time); c != 0 {
			return c
		}
		return strings.Compare(x.SHA, y.SHA)
	})
	return out
}

func (a *API) compare(w http.ResponseWriter, r *http.Request, repo *Repo, spec string) {
	base, head, ok := strings.Cut(spec, "...")
	_, kb := repo.Commits[base]
	_, kh := repo.Commits[head]
	if !ok || !kb || !kh {
		writeJSON(w, http.StatusNotFound, map[string]any{"message": "Not Found"})
		return
	}
	all := between(repo, base, head)
	behind := between(repo, head, base)
	// The merge base: base when head descends from it, else the newest
	// common ancestor.
	mergeBase := base
	if len(behind) > 0 {
		common := ancestors(repo, base)
		var best APICommit
		for s := range ancestors(repo, head) {
			if c := repo.Commits[s]; common[s] && c.Time.After(best.Time) {
				best = c
			}
		}
		mergeBase = best.SHA
	}
	status := "ahead"
	switch {
	case len(all) == 0 && len(behind) == 0:
		status = "identical"
	case len(all) == 0:
		status = "behind"
	case len(behind) > 0:
		status = "diverged"
	}
	// Paged only when asked: without page parameters GitHub returns the
	// first 250 commits.
	q := r.URL.Query()
	commits := all
	if q.Get("page") == "" && q.Get("per_page") == "" {
		commits = all[:min(250, len(all))]
	} else {
		per, _ := strconv.Atoi(q.Get("per_page"))
		per = min(max(per, 1), a.PerPage)
		p := max(atoi(q.Get("page")), 1)
		from, to := min((p-1)*per, len(all)), min(p*per, len(all))
		commits = all[from:to]
		if to < len(all) {
			u := *r.URL
			qq := u.Query()
			qq.Set("page", strconv.Itoa(p+1))
			u.RawQuery = qq.Encode()
			w.Header().Set("Link", fmt.Sprintf(`<http://%s%s>; rel="next"`, r.Host, u.RequestURI()))
		}
	}
	items := []any{}
	for _, c := range commits {
		items = append(items, commitJSON(c))
	}
	writeJSON(w, http.StatusOK, map[string]any{"status": status, "ahead_by": len(all), "behind_by": len(behind),
		"total_commits": len(all), "merge_base_commit": commitJSON(repo.Commits[mergeBase]),
		"base_commit": commitJSON(repo.Commits[base]), "commits": items})
}

func atoi(s string) int { n, _ := strconv.Atoi(s); return n }

func (a *API) commits(w http.ResponseWriter, r *http.Request, repo *Repo) {
	q := r.URL.Query()
	since, _ := time.Parse(time.RFC3339, q.Get("since"))
	var cs []APICommit
	for s := range ancestors(repo, q.Get("sha")) {
		if c := repo.Commits[s]; !c.Time.Before(since) {
			cs = append(cs, c)
		}
	}
	slices.SortFunc(cs, func(x, y APICommit) int { return y.Time.Compare(x.Time) })
	items := []any{}
	for _, c := range cs {
		items = append(items, commitJSON(c))
	}
	a.page(w, r, items)
}

func (a *API) pullJSON(repo *Repo, p APIPull) map[string]any {
	head := ""
	if len(p.Commits) > 0 {
		head = p.Commits[len(p.Commits)-1]
	}
	// The list has no merged flag and no commit count.
	out := map[string]any{"number": p.Number, "state": "closed", "title": fmt.Sprintf("change %d", p.Number),
		"updated_at": ts(p.Updated), "closed_at": ts(p.Updated), "merged_at": nil, "merge_commit_sha": p.MergeSHA,
		"head": map[string]any{"ref": fmt.Sprintf("feature-%d", p.Number), "sha": head},
		"base": map[string]any{"ref": p.Base, "repo": repoJSON(repo)}}
	if !p.MergedAt.IsZero() {
		out["merged_at"] = ts(p.MergedAt)
	}
	return out
}

func (a *API) pulls(w http.ResponseWriter, r *http.Request, repo *Repo) {
	q := r.URL.Query()
	if q.Get("state") != "closed" || q.Get("sort") != "updated" || q.Get("direction") != "desc" {
		writeJSON(w, http.StatusUnprocessableEntity, map[string]any{"message": "the fake serves state=closed&sort=updated&direction=desc only"})
		return
	}
	ps := slices.Clone(repo.Pulls)
	slices.SortFunc(ps, func(x, y APIPull) int { return y.Updated.Compare(x.Updated) })
	items := []any{}
	for _, p := range ps {
		items = append(items, a.pullJSON(repo, p))
	}
	a.page(w, r, items)
}

func (a *API) pullCommits(w http.ResponseWriter, r *http.Request, repo *Repo, number string) {
	for _, p := range repo.Pulls {
		if strconv.Itoa(p.Number) != number {
			continue
		}
		items := []any{}
		for _, s := range p.Commits {
			items = append(items, commitJSON(repo.Commits[s]))
		}
		a.page(w, r, items[:min(250, len(items))])
		return
	}
	writeJSON(w, http.StatusNotFound, map[string]any{"message": "Not Found"})
}

func (a *API) issues(w http.ResponseWriter, r *http.Request, repo *Repo) {
	q := r.URL.Query()
	state := q.Get("state")
	if state == "" {
		state = "open" // GitHub's default
	}
	since, _ := time.Parse(time.RFC3339, q.Get("since"))
	var want []string
	if l := q.Get("labels"); l != "" {
		want = strings.Split(l, ",")
	}
	is := slices.Clone(repo.Issues)
	slices.SortFunc(is, func(x, y APIIssue) int { return x.Updated.Compare(y.Updated) })
	items := []any{}
	for _, is := range is {
		open := is.Closed.IsZero()
		if (state == "open" && !open) || (state == "closed" && open) || is.Updated.Before(since) {
			continue
		}
		all := true
		for _, l := range want {
			all = all && slices.Contains(is.Labels, l)
		}
		if !all {
			continue
		}
		labels := []any{}
		for _, l := range is.Labels {
			labels = append(labels, map[string]any{"name": l})
		}
		item := map[string]any{"number": is.Number, "title": fmt.Sprintf("incident %d", is.Number), "state": "open",
			"labels": labels, "created_at": ts(is.Created), "updated_at": ts(is.Updated), "closed_at": nil}
		if !open {
			item["state"], item["closed_at"] = "closed", ts(is.Closed)
		}
		if is.PullRequest {
			item["pull_request"] = map[string]any{"url": fmt.Sprintf("https://api.github.com/repos/%s/pulls/%d", repo.FullName, is.Number)}
		}
		items = append(items, item)
	}
	a.page(w, r, items)
}

// deliveries serves a hook's deliveries newest first, paged by cursor as
// GitHub does (the Link header's next URL carries cursor=).
func (a *API) deliveries(w http.ResponseWriter, r *http.Request, hooks map[int64][]APIDelivery, hook string) {
	id, _ := strconv.ParseInt(hook, 10, 64)
	ds, ok := hooks[id]
	if !ok {
		writeJSON(w, http.StatusNotFound, map[string]any{"message": "Not Found"})
		return
	}
	ds = slices.Clone(ds)
	slices.SortFunc(ds, func(x, y APIDelivery) int { return int(y.ID - x.ID) })
	q := r.URL.Query()
	per := min(max(atoi(q.Get("per_page")), 1), a.PerPage)
	if q.Get("per_page") == "" {
		per = min(30, a.PerPage)
	}
	from := 0
	if c := q.Get("cursor"); c != "" {
		from = min(atoi(c), len(ds))
	}
	to := min(from+per, len(ds))
	if to < len(ds) {
		u := *r.URL
		qq := u.Query()
		qq.Set("cursor", strconv.Itoa(to))
		u.RawQuery = qq.Encode()
		w.Header().Set("Link", fmt.Sprintf(`<http://%s%s>; rel="next"`, r.Host, u.RequestURI()))
	}
	items := []any{}
	for _, d := range ds[from:to] {
		status := "OK"
		if d.StatusCode/100 != 2 {
			status = "failed"
		}
		items = append(items, map[string]any{"id": d.ID, "guid": d.GUID, "delivered_at": ts(d.At), "redelivery": d.Redelivery,
			"duration": 0.1, "status": status, "status_code": d.StatusCode, "event": d.Event, "action": nil})
	}
	writeJSON(w, http.StatusOK, items)
}

// redeliver answers 202 and records a new delivery of the same GUID,
// delivered successfully.
func (a *API) redeliver(w http.ResponseWriter, hooks map[int64][]APIDelivery, hook, delivery string) {
	hid, _ := strconv.ParseInt(hook, 10, 64)
	did, _ := strconv.ParseInt(delivery, 10, 64)
	ds := hooks[hid]
	for _, d := range ds {
		if d.ID != did {
			continue
		}
		next := int64(0)
		for _, o := range ds {
			next = max(next, o.ID)
		}
		hooks[hid] = append(ds, APIDelivery{ID: next + 1, GUID: d.GUID, At: time.Now().UTC(), StatusCode: 202, Redelivery: true, Event: d.Event})
		a.redelivered = append(a.redelivered, did)
		writeJSON(w, http.StatusAccepted, map[string]any{})
		return
	}
	writeJSON(w, http.StatusNotFound, map[string]any{"message": "Not Found"})
}

// Quarter is a generated 90-day history of repository name ending at end: a deployment before the window, then one
// every 10 commits (20 in the window), 200 commits on main of which 5 are
// squash merges of two-commit pull requests, 2 incidents: 96 events, 49
// requests to backfill.
func Quarter(name string, end time.Time) *Repo {
	const mainCommits, every = 200, 10
	start := end.Add(-90 * 24 * time.Hour)
	step := 90 * 24 * time.Hour / mainCommits
	r := &Repo{FullName: name, PushedAt: end, Commits: map[string]APICommit{}}
	s := func(kind string, i int) string {
		sum := sha1.Sum(fmt.Appendf(nil, "%s-%s-%d", name, kind, i))
		return hex.EncodeToString(sum[:])
	}
	prev := s("root", 0)
	r.Commits[prev] = APICommit{SHA: prev, Time: start.Add(-48 * time.Hour)}
	// Deployment (and status) ids are unique across repositories, as
	// GitHub's are.
	h := fnv.New32a()
	h.Write([]byte(name))
	dep := int64(h.Sum32()%1_000_000)*1000 + 1
	deploy := func(sha string, at time.Time) {
		r.Deployments = append(r.Deployments, APIDeployment{ID: dep, SHA: sha, Env: "production", CreatedAt: at.Add(-5 * time.Minute),
			Statuses: []APIStatus{{ID: dep * 10, State: "pending", At: at.Add(-4 * time.Minute)}, {ID: dep*10 + 1, State: "success", At: at}}})
		dep++
	}
	deploy(prev, start.Add(-47*time.Hour))
	for i := range mainCommits {
		at := start.Add(time.Duration(i) * step)
		sha := s("main", i)
		r.Commits[sha] = APICommit{SHA: sha, Time: at, Parents: []string{prev}}
		if i%40 == 20 {
			// A squash merge of a branch of two commits.
			b1, b2 := s("branch1", i), s("branch2", i)
			r.Commits[b1] = APICommit{SHA: b1, Time: at.Add(-6 * time.Hour), Parents: []string{prev}}
			r.Commits[b2] = APICommit{SHA: b2, Time: at.Add(-3 * time.Hour), Parents: []string{b1}}
			r.Pulls = append(r.Pulls, APIPull{Number: i, MergedAt: at, Updated: at, MergeSHA: sha, Base: "main", Commits: []string{b1, b2}})
		}
		prev = sha
		if i%every == every-1 {
			deploy(sha, at.Add(2*time.Hour))
		}
	}
	r.Issues = []APIIssue{
		{Number: 1, Labels: []string{"incident"}, Created: start.Add(30 * 24 * time.Hour), Updated: start.Add(30*24*time.Hour + time.Hour), Closed: start.Add(30*24*time.Hour + time.Hour)},
		{Number: 2, Labels: []string{"incident"}, Created: start.Add(60 * 24 * time.Hour), Updated: start.Add(60*24*time.Hour + 2*time.Hour), Closed: start.Add(60*24*time.Hour + 2*time.Hour)},
	}
	return r
}
