package demo

import (
	"bytes"
	"context"
	"crypto/hmac"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-github/v60/github"
)

var testEnd = time.Date(2025, 3, 14, 17, 0, 0, 0, time.UTC)

// seeds are the histories every property is checked on.
var seeds = []int64{1, 2, 3, 42, -7}

// TestGenerate checks every property on each seed's history, generated and
// decoded once.
func TestGenerate(t *testing.T) {
	seen := map[string]bool{} // deliveries, across seeds
	for _, seed := range seeds {
		t.Run(fmt.Sprint("seed=", seed), func(t *testing.T) {
			hooks, teams := Generate(Options{Seed: seed, Days: 60, End: testEnd})
			again, teamsAgain := Generate(Options{Seed: seed, Days: 60, End: testEnd})
			h := decode(t, hooks)
			checks := []struct {
				name  string
				check func(t *testing.T)
			}{
				{"deterministic", func(t *testing.T) { checkSame(t, hooks, again, teams, teamsAgain) }},
				{"volume and order", func(t *testing.T) { checkVolumeAndOrder(t, hooks) }},
				{"deliveries unique", func(t *testing.T) { checkDeliveries(t, hooks, seen) }},
				{"payloads parse", func(t *testing.T) { checkPayloads(t, hooks) }},
				{"pushes chain", func(t *testing.T) { checkChains(t, h) }},
				{"teams deploy", func(t *testing.T) { checkTeams(t, h, teams) }},
				{"rollbacks and incidents", func(t *testing.T) { checkRollbacksAndIncidents(t, h) }},
				{"profiles differ", func(t *testing.T) { checkProfiles(t, h, teams) }},
			}
			for _, c := range checks {
				t.Run(c.name, c.check)
			}
		})
	}
	a, _ := Generate(Options{Seed: 1, Days: 60, End: testEnd})
	b, _ := Generate(Options{Seed: 2, Days: 60, End: testEnd})
	if bytes.Equal(a[0].Body, b[0].Body) || len(a) == len(b) && bytes.Equal(a[len(a)-1].Body, b[len(b)-1].Body) {
		t.Fatal("seeds 1 and 2 give the same history")
	}
}

func checkSame(t *testing.T, a, b []Webhook, teamsA, teamsB []Team) {
	if len(a) != len(b) {
		t.Fatalf("%d then %d webhooks", len(a), len(b))
	}
	for i := range a {
		if a[i].Event != b[i].Event || a[i].Delivery != b[i].Delivery || !a[i].At.Equal(b[i].At) || !bytes.Equal(a[i].Body, b[i].Body) {
			t.Fatalf("webhook %d differs between runs", i)
		}
	}
	if fmt.Sprint(teamsA) != fmt.Sprint(teamsB) {
		t.Fatalf("teams differ: %v vs %v", teamsA, teamsB)
	}
}

func checkVolumeAndOrder(t *testing.T, hooks []Webhook) {
	start := testEnd.AddDate(0, 0, -60)
	if len(hooks) < 3000 || len(hooks) > 6000 {
		t.Errorf("%d webhooks, want thousands (3000-6000)", len(hooks))
	}
	for i, h := range hooks {
		if h.At.Before(start) || h.At.After(testEnd) {
			t.Fatalf("webhook %d at %s, outside [%s, %s]", i, h.At, start, testEnd)
		}
		if h.At.Location() != time.UTC {
			t.Fatalf("webhook %d at %s, not UTC", i, h.At)
		}
		if i > 0 && h.At.Before(hooks[i-1].At) {
			t.Fatalf("webhook %d at %s before its predecessor at %s", i, h.At, hooks[i-1].At)
		}
	}
}

var uuid4 = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

func checkDeliveries(t *testing.T, hooks []Webhook, seen map[string]bool) {
	for _, h := range hooks {
		if !uuid4.MatchString(h.Delivery) {
			t.Fatalf("delivery %q is not a v4 UUID", h.Delivery)
		}
		if seen[h.Delivery] {
			t.Fatalf("delivery %s repeated", h.Delivery)
		}
		seen[h.Delivery] = true
	}
}

var sha40 = regexp.MustCompile(`^[0-9a-f]{40}$`)

// checkPayloads decodes every payload as doraflow's collector does, with
// go-github, and checks the fields it relies on, including that the
// webhook's At is the time the payload itself gives.
func checkPayloads(t *testing.T, hooks []Webhook) {
	start := testEnd.AddDate(0, 0, -60)
	events := map[string]int{}
	for i, h := range hooks {
		events[h.Event]++
		payload, err := github.ParseWebHook(h.Event, h.Body)
		if err != nil {
			t.Fatalf("webhook %d (%s): %v", i, h.Event, err)
		}
		at, err := checkPayload(payload, start)
		if err != nil {
			t.Fatalf("webhook %d (%s): %v\n%s", i, h.Event, err, h.Body)
		}
		if !at.Equal(h.At) {
			t.Fatalf("webhook %d (%s): At %s, payload says %s", i, h.Event, h.At, at)
		}
	}
	for _, e := range []string{"push", "pull_request", "deployment", "deployment_status", "issues"} {
		if events[e] == 0 {
			t.Errorf("no %s webhooks", e)
		}
	}
}

// checkPayload returns the time the payload says it happened.
func checkPayload(payload any, start time.Time) (time.Time, error) {
	repoOK := func(r *github.Repository) error {
		if r.GetID() == 0 || !strings.HasPrefix(r.GetFullName(), "acme/") || r.GetOwner().GetLogin() != "acme" ||
			r.GetDefaultBranch() != "main" || r.PushedAt == nil {
			return fmt.Errorf("repository incomplete: %+v", r)
		}
		return nil
	}
	switch p := payload.(type) {
	case *github.PushEvent:
		if err := repoOK(&github.Repository{ID: p.GetRepo().ID, FullName: p.GetRepo().FullName,
			Owner: &github.User{Login: p.GetRepo().GetOwner().Login}, DefaultBranch: p.GetRepo().DefaultBranch,
			PushedAt: p.GetRepo().PushedAt}); err != nil {
			return time.Time{}, err
		}
		if p.GetRef() != "refs/heads/main" || !sha40.MatchString(p.GetBefore()) || !sha40.MatchString(p.GetAfter()) {
			return time.Time{}, fmt.Errorf("ref %q before %q after %q", p.GetRef(), p.GetBefore(), p.GetAfter())
		}
		if n := len(p.Commits); n < 1 || n > 5 {
			return time.Time{}, fmt.Errorf("%d commits, want 1-5", n)
		}
		pushed := p.GetRepo().GetPushedAt().Time
		for _, c := range p.Commits {
			if !sha40.MatchString(c.GetID()) || !sha40.MatchString(c.GetTreeID()) || c.Timestamp == nil ||
				c.GetAuthor().GetEmail() == "" || c.GetMessage() == "" {
				return time.Time{}, fmt.Errorf("commit incomplete: %+v", c)
			}
			if c.Timestamp.Before(start) || c.Timestamp.After(pushed) {
				return time.Time{}, fmt.Errorf("commit at %s, outside [%s, %s]", c.Timestamp, start, pushed)
			}
		}
		if p.GetHeadCommit().GetID() != p.GetAfter() || p.Commits[len(p.Commits)-1].GetID() != p.GetAfter() {
			return time.Time{}, fmt.Errorf("after %s is not the head commit", p.GetAfter())
		}
		if p.GetSender().GetLogin() == "" || p.GetPusher().GetName() == "" {
			return time.Time{}, fmt.Errorf("no sender or pusher")
		}
		return pushed.UTC(), nil
	case *github.DeploymentEvent:
		d := p.GetDeployment()
		if err := repoOK(p.GetRepo()); err != nil {
			return time.Time{}, err
		}
		if d.GetID() == 0 || !sha40.MatchString(d.GetSHA()) || d.GetRef() != "main" ||
			(d.GetEnvironment() != "staging" && d.GetEnvironment() != "production") || d.CreatedAt == nil {
			return time.Time{}, fmt.Errorf("deployment incomplete: %+v", d)
		}
		return d.GetCreatedAt().UTC(), nil
	case *github.DeploymentStatusEvent:
		s, d := p.GetDeploymentStatus(), p.GetDeployment()
		if err := repoOK(p.GetRepo()); err != nil {
			return time.Time{}, err
		}
		if s.GetID() == 0 || s.CreatedAt == nil || s.GetEnvironment() != d.GetEnvironment() ||
			!slices.Contains([]string{"in_progress", "success", "failure", "error"}, s.GetState()) {
			return time.Time{}, fmt.Errorf("status incomplete: %+v", s)
		}
		if d.GetID() == 0 || !sha40.MatchString(d.GetSHA()) || !d.GetCreatedAt().Before(s.GetCreatedAt().Time) {
			return time.Time{}, fmt.Errorf("status's deployment incomplete or later: %+v", d)
		}
		return s.GetCreatedAt().UTC(), nil
	case *github.PullRequestEvent:
		pr := p.GetPullRequest()
		if err := repoOK(p.GetRepo()); err != nil {
			return time.Time{}, err
		}
		if p.GetAction() != "closed" || !pr.GetMerged() || pr.MergedAt == nil || !sha40.MatchString(pr.GetMergeCommitSHA()) ||
			!sha40.MatchString(pr.GetHead().GetSHA()) || pr.GetBase().GetRef() != "main" || pr.GetNumber() == 0 ||
			pr.GetNumber() != p.GetNumber() || pr.GetCommits() < 1 || pr.CreatedAt.After(pr.MergedAt.Time) {
			return time.Time{}, fmt.Errorf("pull request incomplete: %+v", pr)
		}
		return pr.GetMergedAt().UTC(), nil
	case *github.IssuesEvent:
		is := p.GetIssue()
		if err := repoOK(p.GetRepo()); err != nil {
			return time.Time{}, err
		}
		if is.GetNumber() == 0 || is.CreatedAt == nil || is.GetTitle() == "" || !hasLabel(is, "incident") {
			return time.Time{}, fmt.Errorf("issue incomplete: %+v", is)
		}
		switch p.GetAction() {
		case "opened":
			if is.GetState() != "open" || is.ClosedAt != nil {
				return time.Time{}, fmt.Errorf("opened issue state %q closed_at %v", is.GetState(), is.ClosedAt)
			}
			return is.GetCreatedAt().UTC(), nil
		case "closed":
			if is.GetState() != "closed" || is.ClosedAt == nil || !is.GetClosedAt().After(is.GetCreatedAt().Time) {
				return time.Time{}, fmt.Errorf("closed issue state %q closed_at %v", is.GetState(), is.ClosedAt)
			}
			return is.GetClosedAt().UTC(), nil
		}
		return time.Time{}, fmt.Errorf("issue action %q", p.GetAction())
	}
	return time.Time{}, fmt.Errorf("unexpected payload %T", payload)
}

func hasLabel(is *github.Issue, name string) bool {
	for _, l := range is.Labels {
		if l.GetName() == name {
			return true
		}
	}
	return false
}

// history is what a set of webhooks says, decoded, per repository.
type history struct {
	pushes     map[string][]*github.PushEvent
	prodOK     map[string][]*github.DeploymentStatusEvent // successful production statuses, in order
	deploys    map[string]map[string]int                  // repo → environment → deployments
	incidents  map[string][]*github.IssuesEvent
	closed     map[string]map[int]time.Time // repo → issue number → closed_at
	commitTime map[string]map[string]time.Time
	parent     map[string]map[string]string // repo → sha → previous sha on main
}

func decode(t *testing.T, hooks []Webhook) *history {
	t.Helper()
	h := &history{pushes: map[string][]*github.PushEvent{}, prodOK: map[string][]*github.DeploymentStatusEvent{},
		deploys: map[string]map[string]int{}, incidents: map[string][]*github.IssuesEvent{},
		closed: map[string]map[int]time.Time{}, commitTime: map[string]map[string]time.Time{},
		parent: map[string]map[string]string{}}
	for _, w := range hooks {
		payload, err := github.ParseWebHook(w.Event, w.Body)
		if err != nil {
			t.Fatal(err)
		}
		switch p := payload.(type) {
		case *github.PushEvent:
			repo := p.GetRepo().GetFullName()
			h.pushes[repo] = append(h.pushes[repo], p)
			if h.commitTime[repo] == nil {
				h.commitTime[repo], h.parent[repo] = map[string]time.Time{}, map[string]string{}
			}
			prev := p.GetBefore()
			for _, c := range p.Commits {
				h.commitTime[repo][c.GetID()], h.parent[repo][c.GetID()] = c.GetTimestamp().Time, prev
				prev = c.GetID()
			}
		case *github.DeploymentEvent:
			repo := p.GetRepo().GetFullName()
			if h.deploys[repo] == nil {
				h.deploys[repo] = map[string]int{}
			}
			h.deploys[repo][p.GetDeployment().GetEnvironment()]++
		case *github.DeploymentStatusEvent:
			if p.GetDeploymentStatus().GetState() == "success" && p.GetDeployment().GetEnvironment() == "production" {
				repo := p.GetRepo().GetFullName()
				h.prodOK[repo] = append(h.prodOK[repo], p)
			}
		case *github.IssuesEvent:
			repo := p.GetRepo().GetFullName()
			switch p.GetAction() {
			case "opened":
				h.incidents[repo] = append(h.incidents[repo], p)
			case "closed":
				if h.closed[repo] == nil {
					h.closed[repo] = map[int]time.Time{}
				}
				h.closed[repo][p.GetIssue().GetNumber()] = p.GetIssue().GetClosedAt().Time
			}
		}
	}
	return h
}

func checkChains(t *testing.T, h *history) {
	for repo, pushes := range h.pushes {
		for i, p := range pushes {
			want := "0000000000000000000000000000000000000000"
			if i > 0 {
				want = pushes[i-1].GetAfter()
			}
			if p.GetBefore() != want || p.GetCreated() != (i == 0) || p.GetForced() || p.GetDeleted() {
				t.Fatalf("%s push %d: before %s created %v, want before %s created %v",
					repo, i, p.GetBefore(), p.GetCreated(), want, i == 0)
			}
		}
	}
}

// checkTeams: the teams as named, each repository deployed to staging and
// production, and one repository with a history that no team claims.
func checkTeams(t *testing.T, h *history, teams []Team) {
	owned := map[string]bool{}
	var names []string
	for _, team := range teams {
		names = append(names, team.Name)
		for _, repo := range team.Repos {
			owned[repo] = true
			if h.deploys[repo]["staging"] == 0 || h.deploys[repo]["production"] == 0 || len(h.prodOK[repo]) == 0 {
				t.Errorf("%s (%s): deployments %v, %d successful in production",
					repo, team.Name, h.deploys[repo], len(h.prodOK[repo]))
			}
		}
	}
	if want := []string{"payments", "checkout", "platform", "data", "mobile"}; !slices.Equal(names, want) {
		t.Fatalf("teams %v, want %v", names, want)
	}
	if owned["acme/sandbox"] || len(h.pushes["acme/sandbox"]) == 0 || len(h.prodOK["acme/sandbox"]) == 0 {
		t.Fatal("acme/sandbox should have a history but no team")
	}
	for repo := range h.pushes {
		if !owned[repo] && repo != "acme/sandbox" {
			t.Errorf("%s has a history but is in no team", repo)
		}
	}
}

// checkRollbacksAndIncidents: the only redeployments of an earlier
// production sha are rollbacks; incidents open within hours of a
// production deployment of their repository, so they are blamed on it, and
// close after they open.
func checkRollbacksAndIncidents(t *testing.T, h *history) {
	rollbacks, incidents, closed := 0, 0, 0
	for repo, ok := range h.prodOK {
		shipped := map[string]bool{}
		for i, s := range ok {
			sha := s.GetDeployment().GetSHA()
			if i > 0 && sha != ok[i-1].GetDeployment().GetSHA() && shipped[sha] {
				rollbacks++
				if !strings.HasPrefix(s.GetDeployment().GetDescription(), "Rollback") {
					t.Errorf("%s redeployed %s without meaning to", repo, sha)
				}
			}
			shipped[sha] = true
		}
	}
	for repo, opened := range h.incidents {
		for _, is := range opened {
			incidents++
			n, at := is.GetIssue().GetNumber(), is.GetIssue().GetCreatedAt().Time
			var last time.Time
			for _, s := range h.prodOK[repo] {
				if d := s.GetDeploymentStatus().GetCreatedAt().Time; !d.After(at) {
					last = d
				}
			}
			if last.IsZero() || at.Sub(last) > 12*time.Hour {
				t.Errorf("%s incident #%d opened at %s, last production deployment %s", repo, n, at, last)
			}
			if c, ok := h.closed[repo][n]; ok {
				closed++
				if !c.After(at) {
					t.Errorf("%s incident #%d closed at %s, before it opened", repo, n, c)
				}
			}
		}
	}
	if rollbacks == 0 || incidents == 0 || closed == 0 {
		t.Errorf("%d rollbacks, %d incidents, %d closed; want some of each", rollbacks, incidents, closed)
	}
}

// checkProfiles: the teams are told apart by their metrics, more frequent
// deployments and shorter lead times best first.
func checkProfiles(t *testing.T, h *history, teams []Team) {
	deploys, lead := map[string]float64{}, map[string]time.Duration{}
	for _, team := range teams {
		var leads []time.Duration
		for _, repo := range team.Repos {
			deploys[team.Name] += float64(len(h.prodOK[repo])) / float64(len(team.Repos))
			leads = append(leads, h.leadTimes(repo)...)
		}
		slices.Sort(leads)
		lead[team.Name] = leads[len(leads)/2]
	}
	ranked := []string{"payments", "checkout", "platform", "data"}
	for i := 1; i < len(ranked); i++ {
		better, worse := ranked[i-1], ranked[i]
		if deploys[better] <= deploys[worse] || lead[better] >= lead[worse] {
			t.Errorf("%s (%.0f deploys, median lead %s) should beat %s (%.0f deploys, median lead %s)",
				better, deploys[better], lead[better], worse, deploys[worse], lead[worse])
		}
	}
	if lead["payments"] > 6*time.Hour || lead["data"] < 5*24*time.Hour {
		t.Errorf("median lead times %v: payments should take hours, data more than a week", lead)
	}
}

// leadTimes: for each commit, its first successful production deployment
// minus its time.
func (h *history) leadTimes(repo string) []time.Duration {
	var out []time.Duration
	covered := map[string]bool{}
	for _, s := range h.prodOK[repo] {
		for sha := s.GetDeployment().GetSHA(); !covered[sha]; sha = h.parent[repo][sha] {
			ct, ok := h.commitTime[repo][sha]
			if !ok {
				break
			}
			covered[sha] = true
			out = append(out, s.GetDeploymentStatus().GetCreatedAt().Sub(ct))
		}
	}
	return out
}

func TestGenerateDefaults(t *testing.T) {
	before := time.Now().UTC().Truncate(time.Hour)
	hooks, _ := Generate(Options{Seed: 5})
	after := time.Now().UTC().Truncate(time.Hour)
	first, last := hooks[0].At, hooks[len(hooks)-1].At
	if first.Before(before.AddDate(0, 0, -60)) || last.After(after) || last.Sub(first) < 50*24*time.Hour {
		t.Fatalf("default history spans %s to %s, want the 60 days to the current hour", first, last)
	}
	short, _ := Generate(Options{Seed: 5, Days: 7, End: testEnd})
	if len(short) == 0 || short[0].At.Before(testEnd.AddDate(0, 0, -7)) || len(short) > len(hooks)/4 {
		t.Fatalf("7 days: %d webhooks from %s", len(short), short[0].At)
	}
}

// collector is a test server that checks what GitHub would be checked for,
// answers 503 to the first attempt of every fifth delivery, and drops the
// connection on the first attempt of every seventh.
type collector struct {
	secret   string
	mu       sync.Mutex
	attempts map[string]int
	accepted map[string]int
}

func newCollector(secret string) *collector {
	return &collector{secret: secret, attempts: map[string]int{}, accepted: map[string]int{}}
}

func (c *collector) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	sig := r.Header.Get("X-Hub-Signature-256")
	if r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/json" ||
		!hmac.Equal([]byte(sig), []byte(Signature(c.secret, body))) {
		http.Error(w, "bad request or signature", http.StatusUnauthorized)
		return
	}
	var env struct {
		Action string `json:"action"`
	}
	if r.Header.Get("X-GitHub-Event") == "" || json.Unmarshal(body, &env) != nil {
		http.Error(w, "bad event", http.StatusBadRequest)
		return
	}
	id := r.Header.Get("X-GitHub-Delivery")
	c.mu.Lock()
	c.attempts[id]++
	n := c.attempts[id]
	c.mu.Unlock()
	hash := 0
	for _, b := range []byte(id) {
		hash = hash*31 + int(b)
	}
	switch {
	case n == 1 && hash%7 == 0:
		conn, _, err := w.(http.Hijacker).Hijack()
		if err == nil {
			conn.Close() // the collector went away mid-request
		}
		return
	case n == 1 && hash%5 == 0:
		http.Error(w, "starting up", http.StatusServiceUnavailable)
		return
	}
	c.mu.Lock()
	c.accepted[id]++
	c.mu.Unlock()
	w.WriteHeader(http.StatusAccepted)
}

func TestSendDeliversEachOnceDespiteRetries(t *testing.T) {
	all, _ := Generate(Options{Seed: 9, Days: 10, End: testEnd})
	// Send's real backoff makes each retry cost 50ms: one worker gets fewer.
	tests := []struct {
		name        string
		hooks       []Webhook
		concurrency int
	}{{"sequential", all[:80], 1}, {"concurrent", all, 16}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hooks := tt.hooks
			c := newCollector("s3cret")
			srv := httptest.NewServer(c)
			defer srv.Close()
			var calls []int
			err := Send(context.Background(), srv.Client(), srv.URL+"/webhooks/github", "s3cret", hooks, tt.concurrency,
				func(done, total int) {
					if total != len(hooks) {
						t.Errorf("progress total %d, want %d", total, len(hooks))
					}
					calls = append(calls, done)
				})
			if err != nil {
				t.Fatal(err)
			}
			if len(calls) != len(hooks) || calls[len(calls)-1] != len(hooks) {
				t.Fatalf("progress called %d times, last %v; want %d", len(calls), calls[len(calls)-1:], len(hooks))
			}
			srv.Close()
			c.mu.Lock()
			defer c.mu.Unlock()
			retried := 0
			for _, h := range hooks {
				if c.accepted[h.Delivery] != 1 {
					t.Fatalf("delivery %s accepted %d times", h.Delivery, c.accepted[h.Delivery])
				}
				if c.attempts[h.Delivery] > 1 {
					retried++
				}
			}
			if retried == 0 {
				t.Fatal("no delivery was retried: the test server did not exercise retries")
			}
		})
	}
}

func TestSendFails(t *testing.T) {
	hooks, _ := Generate(Options{Seed: 9, Days: 3, End: testEnd})
	tests := []struct {
		name    string
		status  int
		body    string
		attempt int // requests each delivery may see
		want    []string
	}{
		{"rejected", http.StatusUnauthorized, "signature mismatch", 1, []string{"401", "signature mismatch"}},
		{"server error", http.StatusInternalServerError, "boom", 1, []string{"500", "boom"}},
		{"unavailable for good", http.StatusServiceUnavailable, "overloaded", 4, []string{"giving up after 4 attempts", "503", "overloaded"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var mu sync.Mutex
			requests := map[string]int{}
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				mu.Lock()
				requests[r.Header.Get("X-GitHub-Delivery")]++
				mu.Unlock()
				http.Error(w, tt.body, tt.status)
			}))
			defer srv.Close()
			s := sender{client: srv.Client(), url: srv.URL, secret: "x", concurrency: 4,
				attempts: 4, backoff: time.Millisecond, maxBackoff: 4 * time.Millisecond}
			progressed := 0
			err := s.send(context.Background(), hooks, func(int, int) { progressed++ })
			if err == nil {
				t.Fatal("send succeeded")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
			if progressed != 0 {
				t.Errorf("progress called %d times for failed deliveries", progressed)
			}
			srv.Close() // waits for handlers still running for cancelled requests
			mu.Lock()
			defer mu.Unlock()
			for id, n := range requests {
				if n > tt.attempt {
					t.Errorf("delivery %s tried %d times, want at most %d", id, n, tt.attempt)
				}
			}
		})
	}
}

func TestSendStopsWhenCancelled(t *testing.T) {
	hooks, _ := Generate(Options{Seed: 9, Days: 3, End: testEnd})
	ctx, cancel := context.WithCancel(context.Background())
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer srv.Close()
	err := Send(ctx, srv.Client(), srv.URL, "x", hooks, 4, func(done, _ int) {
		if done == 10 {
			cancel()
		}
	})
	if err == nil {
		t.Fatal("cancelled send reported success")
	}
}

func TestSendWithBar(t *testing.T) {
	hooks, _ := Generate(Options{Seed: 9, Days: 3, End: testEnd})
	c := newCollector("s3cret")
	srv := httptest.NewServer(c)
	defer srv.Close()
	var out bytes.Buffer
	if err := SendWithBar(context.Background(), srv.Client(), srv.URL, "s3cret", hooks, 8, &out); err != nil {
		t.Fatal(err)
	}
	srv.Close()
	c.mu.Lock()
	defer c.mu.Unlock()
	want := fmt.Sprintf("(%d/%d", len(hooks), len(hooks))
	if !strings.Contains(out.String(), "sending webhooks") || !strings.Contains(out.String(), want) {
		t.Fatalf("bar output %q lacks description or %q", out.String(), want)
	}
	if len(c.accepted) != len(hooks) {
		t.Fatalf("%d of %d delivered", len(c.accepted), len(hooks))
	}
}
