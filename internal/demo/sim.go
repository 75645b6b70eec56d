package demo

import (
	"fmt"
	"iter"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"time"
)

type person struct {
	name  string
	login string
	id    int64
}

func (p person) email() string { return fmt.Sprintf("%d+%s@users.noreply.github.com", p.id, p.login) }

// webFlow commits merges made with GitHub's merge button.
var webFlow = person{name: "GitHub", login: "web-flow", id: 19864447}

// deployBot creates the deployments: CI deploys, people only merge.
var deployBot = person{name: "github-actions[bot]", login: "github-actions[bot]", id: 41898282}

type commit struct {
	sha, tree string
	message   string
	at        time.Time
	author    person
	committer person
	added     []string
	modified  []string
	// merge is set on the commit the merge button made; its message names
	// the pull request's number, which is only known once rendered.
	merge *pullRequest
}

type push struct {
	at      time.Time
	commits []*commit
	pusher  person
	before  string // set by chain once every push of the repository is known
	created bool   // the repository's first push
	pr      *pullRequest
}

func (p *push) after() string { return p.commits[len(p.commits)-1].sha }

type pullRequest struct {
	number, id          int64 // assigned when rendered, so they grow with time
	title, branch       string
	author, merger      person
	createdAt, mergedAt time.Time
	headSHA, mergeSHA   string
	commits             int
	additions           int
	deletions           int
	push                *push // brought the merge to main; its before is the base
}

type deployment struct {
	id          int64 // assigned when rendered
	sha, env    string
	description string
	createdAt   time.Time
	statusAt    time.Time // the latest status so far: the deployment's updated_at
}

type issue struct {
	number, id int64 // assigned when rendered
	title      string
	body       string
	severity   string
	author     person
	openedAt   time.Time
	closedAt   time.Time // zero while open
}

// repoInfo is what every payload says about its repository.
type repoInfo struct {
	fullName, name string
	id             int64
	createdAt      time.Time
	pushes         []*push // in time order, chained
}

// lastPushAt is the repository's pushed_at as of t.
func (r *repoInfo) lastPushAt(t time.Time) time.Time {
	i, _ := slices.BinarySearchFunc(r.pushes, t, func(p *push, t time.Time) int {
		if p.at.After(t) {
			return 1
		}
		return -1
	})
	if i == 0 {
		return r.createdAt
	}
	return r.pushes[i-1].at
}

// repoSim plays one repository's history: its pushes first, then its
// releases in time order, each of which ships main's head at that moment.
// Incidents hold further releases back until they are resolved, so an
// incident is always blamed on the release that caused it.
type repoSim struct {
	p          *profile
	repo       *repoInfo
	rng        *rand.Rand
	tl         *timeline
	start, end time.Time
	pushes     []*push // in time order

	free        time.Time // no release starts before: the last one, and its incident, is over
	prodSHA     string    // what production runs
	prevProdSHA string    // what it ran before: the rollback target
	// shippedSHAs went to production once: shipping one again would be a
	// rollback, which only an incident does on purpose.
	shippedSHAs map[string]bool
}

func (s *repoSim) run() {
	s.planPushes()
	for _, at := range s.p.cadence(s) {
		if at.Before(s.free) {
			at = s.free.Add(minutes(2, 20).draw(s.rng))
		}
		if at.After(s.end) {
			break
		}
		s.release(at)
	}
	s.chain()
	for _, p := range s.pushes {
		s.emitPush(p)
	}
}

func (s *repoSim) chance(p float64) bool { return s.rng.Float64() < p }

func pick[T any](r *rand.Rand, xs []T) T { return xs[r.IntN(len(xs))] }

// localDays yields the start of every local day the history touches.
func (s *repoSim) localDays() iter.Seq[time.Time] {
	return func(yield func(time.Time) bool) {
		for day := startOfDay(s.start.In(s.p.zone)); day.Before(s.end); day = day.AddDate(0, 0, 1) {
			if !yield(day) {
				return
			}
		}
	}
}

// poisson draws how many pushes a day has (Knuth's method; rates are small).
func poisson(r *rand.Rand, mean float64) int {
	limit, k, p := math.Exp(-mean), 0, r.Float64()
	for p > limit {
		k++
		p *= r.Float64()
	}
	return k
}

// planPushes creates the repository with its first push, then spreads
// pushes over local working hours, with a trickle at weekends.
func (s *repoSim) planPushes() {
	first := s.start.Add(minutes(5, 45).draw(s.rng))
	s.addPush(s.initialPush(first))
	for day := range s.localDays() {
		rate := s.p.pushesPerDay
		if !workday(day) {
			rate *= 0.08
		}
		for range poisson(s.rng, rate) {
			at := day.Add(8*time.Hour + hours(0, 10).draw(s.rng))
			if at.After(first) && !at.After(s.end) {
				s.addPush(s.regularPush(at))
			}
		}
	}
}

// addPush keeps pushes in time order; hotfixes arrive while releasing.
func (s *repoSim) addPush(p *push) bool {
	if p.at.After(s.end) {
		return false
	}
	i, _ := slices.BinarySearchFunc(s.pushes, p.at, func(q *push, t time.Time) int {
		if q.at.After(t) {
			return 1
		}
		return -1
	})
	s.pushes = slices.Insert(s.pushes, i, p)
	return true
}

// headAt is main's head at t: what a release starting then ships.
func (s *repoSim) headAt(t time.Time) string {
	head := ""
	for _, p := range s.pushes {
		if p.at.After(t) {
			break
		}
		head = p.after()
	}
	return head
}

// chain links each push to the one before, as main's history is linear.
func (s *repoSim) chain() {
	prev := zeroSHA
	for i, p := range s.pushes {
		p.before, p.created = prev, i == 0
		prev = p.after()
	}
	s.repo.pushes = s.pushes
}

const zeroSHA = "0000000000000000000000000000000000000000"

func (s *repoSim) sha() string {
	return fmt.Sprintf("%016x%016x%08x", s.rng.Uint64(), s.rng.Uint64(), s.rng.Uint32())
}

func (s *repoSim) initialPush(at time.Time) *push {
	dev := s.p.people[0]
	c := s.newCommit(s.start.Add(time.Duration(s.rng.Int64N(int64(at.Sub(s.start)))).Round(time.Second)), dev, "Initial commit")
	c.added, c.modified = append([]string{"README.md", ".gitignore"}, s.p.files...), nil
	return &push{at: at, commits: []*commit{c}, pusher: dev}
}

func (s *repoSim) regularPush(at time.Time) *push {
	dev := pick(s.rng, s.p.people)
	if s.chance(s.p.prShare) {
		return s.mergePush(at, dev)
	}
	return &push{at: at, commits: s.code(at, 1+s.rng.IntN(3), dev, s.p.coding), pusher: dev}
}

// mergePush is a pull request merged with the merge button: its commits,
// then the merge commit, land on main together.
func (s *repoSim) mergePush(mergedAt time.Time, dev person) *push {
	branch := s.code(mergedAt, 1+s.rng.IntN(4), dev, s.p.coding)
	merger := pick(s.rng, s.p.people)
	topic := pick(s.rng, s.p.topics)
	pr := &pullRequest{
		title:    branch[len(branch)-1].message,
		branch:   strings.ReplaceAll(strings.ToLower(topic), " ", "-") + fmt.Sprintf("-%d", s.rng.IntN(900)+100),
		author:   dev,
		merger:   merger,
		mergedAt: mergedAt,
		headSHA:  branch[len(branch)-1].sha,
		commits:  len(branch),
		// Small changes for fast teams, big ones for slow: loosely, the coding time.
		additions: 5 + s.rng.IntN(20+int(s.p.coding.max/time.Hour)*8),
		deletions: s.rng.IntN(10 + int(s.p.coding.max/time.Hour)*3),
	}
	last := branch[len(branch)-1].at
	pr.createdAt = last.Add(time.Duration(float64(mergedAt.Sub(last)) * (0.05 + 0.45*s.rng.Float64()))).Round(time.Second)
	m := s.newCommit(mergedAt, merger, "")
	m.committer, m.merge, m.modified = webFlow, pr, nil
	pr.mergeSHA = m.sha
	// GitHub delivers the push a moment after the pull request closes.
	p := &push{at: mergedAt.Add(2 * time.Second), commits: append(branch, m), pusher: merger, pr: pr}
	pr.push = p
	return p
}

// code makes n commits by dev, each coding before its push, in time order.
func (s *repoSim) code(pushAt time.Time, n int, dev person, coding span) []*commit {
	times := make([]time.Time, n)
	for i := range times {
		t := pushAt.Add(-coding.draw(s.rng))
		if t.Before(s.start) {
			// The history starts here: squeeze older work into it.
			t = s.start.Add(time.Duration(s.rng.Int64N(int64(pushAt.Sub(s.start)))).Round(time.Second))
		}
		times[i] = t
	}
	slices.SortFunc(times, time.Time.Compare)
	out := make([]*commit, n)
	for i, t := range times {
		out[i] = s.newCommit(t, dev, s.message())
	}
	return out
}

func (s *repoSim) message() string {
	verbs := []string{"Add", "Fix", "Refactor", "Improve", "Handle errors in", "Add tests for", "Simplify", "Speed up", "Log", "Clean up"}
	return pick(s.rng, verbs) + " " + pick(s.rng, s.p.topics)
}

func (s *repoSim) newCommit(at time.Time, author person, message string) *commit {
	c := &commit{sha: s.sha(), tree: s.sha(), message: message, at: at, author: author, committer: author}
	for range 1 + s.rng.IntN(3) {
		if f := pick(s.rng, s.p.files); !slices.Contains(c.modified, f) {
			c.modified = append(c.modified, f)
		}
	}
	return c
}

// release ships main's head: staging first, production after a soak. It
// may cause an incident, which blocks further releases until resolved.
func (s *repoSim) release(at time.Time) {
	sha := s.headAt(at)
	if sha == "" || s.shippedSHAs[sha] {
		return // nothing new to ship
	}
	done, ok := s.deploy(at, sha, "staging", s.p.stagingFail, "")
	s.free = done
	if !ok {
		return // abandoned: the next release ships a fix
	}
	done, ok = s.deploy(done.Add(s.p.soak.draw(s.rng)), sha, "production", s.p.prodFail, "")
	s.free = done
	if !ok {
		return
	}
	s.shipped(sha)
	if s.prevProdSHA != "" && s.chance(s.p.changeFail) {
		s.incident(done)
	}
}

func (s *repoSim) shipped(sha string) {
	s.prevProdSHA, s.prodSHA = s.prodSHA, sha
	s.shippedSHAs[sha] = true
}

// deploy creates deployments of sha to env until one succeeds; a failed
// attempt is usually retried, sometimes given up on.
func (s *repoSim) deploy(at time.Time, sha, env string, failRate float64, description string) (time.Time, bool) {
	for attempt := 0; ; attempt++ {
		done, ok := s.attempt(at, sha, env, attempt < 2 && s.chance(failRate), description)
		if ok {
			return done, true
		}
		if !s.chance(0.85) {
			return done, false
		}
		at = done.Add(minutes(5, 45).draw(s.rng)) // someone reads the logs, then retries
	}
}

// attempt is one deployment: created, in_progress, then its outcome.
func (s *repoSim) attempt(at time.Time, sha, env string, fail bool, description string) (time.Time, bool) {
	if description == "" {
		description = "Deploy " + sha[:7] + " to " + env
	}
	d := &deployment{sha: sha, env: env, description: description, createdAt: at, statusAt: at}
	s.emitDeployment(d)
	running := at.Add(span{15 * time.Second, 90 * time.Second}.draw(s.rng))
	s.emitStatus(d, "in_progress", running)
	done := running.Add(s.p.deployTime.draw(s.rng))
	state := "success"
	if fail {
		state = "failure"
		if s.chance(0.25) {
			state = "error" // the deploy job itself broke, not the change
		}
	}
	s.emitStatus(d, state, done)
	return done, state == "success"
}

// incident is an issue labelled "incident", opened shortly after the
// release that caused it and closed once service is restored: by rolling
// back to the previous sha, or by a hotfix shipped straight through.
func (s *repoSim) incident(releasedAt time.Time) {
	topic := pick(s.rng, s.p.topics)
	symptoms := []string{"Elevated 5xx in %s after deploy", "Latency spike in %s", "%s broken in production",
		"Errors in %s since last release", "Customers report %s failures"}
	title := fmt.Sprintf(pick(s.rng, symptoms), topic)
	is := &issue{
		title:    title,
		severity: pick(s.rng, []string{"sev1", "sev2", "sev2", "sev3"}),
		author:   pick(s.rng, s.p.people),
		openedAt: releasedAt.Add(s.p.detect.draw(s.rng)),
	}
	is.body = fmt.Sprintf("Started after %s was deployed to production.\n\nImpact: %s.", s.prodSHA[:7], topic)
	target := is.openedAt.Add(s.p.restore.draw(s.rng))
	var restored time.Time
	if s.prevProdSHA != "" && s.chance(s.p.rollback) {
		restored = s.rollBack(is, target)
	} else {
		restored = s.fixForward(is, target)
	}
	// Closed once both the restore time has passed and the fix is out. Past
	// the end of the history it stays open.
	is.closedAt = later(target, restored).Add(minutes(2, 20).draw(s.rng))
	s.emitIssue(is, "opened", is.openedAt)
	s.emitIssue(is, "closed", is.closedAt)
	s.free = later(s.free, is.closedAt)
}

// rollBack redeploys what production ran before; the real fix is pushed
// later and ships with the next release.
func (s *repoSim) rollBack(is *issue, target time.Time) time.Time {
	at := is.openedAt.Add(time.Duration(float64(target.Sub(is.openedAt)) * (0.2 + 0.3*s.rng.Float64()))).Round(time.Second)
	to := s.prevProdSHA
	done, _ := s.deploy(at, to, "production", 0, "Rollback to "+to[:7])
	s.prodSHA, s.prevProdSHA = to, ""
	fixAt := done.Add(hours(1, 20).draw(s.rng))
	s.addPush(s.hotfixPush(fixAt, done, "Fix regression: "+is.title))
	// Until the fix lands main still holds the bad change: hold releases.
	s.free = later(s.free, fixAt)
	return done
}

// fixForward pushes a hotfix and ships it through staging at once.
func (s *repoSim) fixForward(is *issue, target time.Time) time.Time {
	at := is.openedAt.Add(time.Duration(float64(target.Sub(is.openedAt)) * (0.3 + 0.4*s.rng.Float64()))).Round(time.Second)
	if !s.addPush(s.hotfixPush(at, is.openedAt, "Hotfix: "+is.title)) {
		return time.Time{}
	}
	sha := s.headAt(at)
	done, _ := s.deploy(at.Add(minutes(3, 10).draw(s.rng)), sha, "staging", 0, "")
	done, _ = s.deploy(done.Add(minutes(2, 10).draw(s.rng)), sha, "production", 0, "Hotfix "+sha[:7])
	s.shipped(sha)
	return done
}

// hotfixPush is one commit written between since and at, pushed straight
// to main.
func (s *repoSim) hotfixPush(at, since time.Time, message string) *push {
	dev := pick(s.rng, s.p.people)
	c := s.newCommit(since.Add(time.Duration(float64(at.Sub(since))*(0.3+0.6*s.rng.Float64()))).Round(time.Second), dev, message)
	return &push{at: at, commits: []*commit{c}, pusher: dev}
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}
