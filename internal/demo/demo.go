// Package demo generates a realistic, deterministic history of GitHub
// webhooks for a small organisation whose teams deliver very differently,
// and sends it, signed, to a collector. It lets doraflow be shown with
// believable DORA metrics without a real GitHub organisation.
package demo

import (
	"encoding/json"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"slices"
	"strings"
	"time"
)

// Options choose which history Generate makes.
type Options struct {
	Seed int64
	Days int       // length of the history; default 60
	End  time.Time // the history ends here; default the current hour (UTC)
}

// Webhook is one delivery as GitHub would send it.
type Webhook struct {
	Event    string    // X-GitHub-Event: push, deployment, deployment_status, pull_request, issues
	Delivery string    // X-GitHub-Delivery: UUID-shaped, deterministic from the seed
	Body     []byte    // JSON payload
	At       time.Time // when it happened; Generate returns webhooks in this order
}

// Team is one team of the history and the repositories it owns, so a
// caller can write a matching doraflow config.
type Team struct {
	Name  string
	Repos []string
}

// Generate makes the history: every team's pushes, merged pull requests,
// staging and production deployments with their statuses, rollbacks and
// incident issues, all within [End-Days, End] and in time order. The same
// options always give the same webhooks, byte for byte.
func Generate(opts Options) ([]Webhook, []Team) {
	if opts.Days <= 0 {
		opts.Days = 60
	}
	if opts.End.IsZero() {
		opts.End = time.Now().UTC().Truncate(time.Hour)
	}
	end := opts.End.UTC().Truncate(time.Second)
	start := end.AddDate(0, 0, -opts.Days)
	seed := uint64(opts.Seed)

	tl := &timeline{end: end}
	var teams []Team
	for _, p := range profiles() {
		for _, name := range p.repos {
			simulate(&p, name, seed, start, end, tl)
		}
		if p.team != "" {
			teams = append(teams, Team{Name: p.team, Repos: slices.Clone(p.repos)})
		}
	}
	return render(tl, seed), teams
}

// simulate plays one repository. Each has its own random stream, so the
// history of one does not change when another's profile does.
func simulate(p *profile, fullName string, seed uint64, start, end time.Time, tl *timeline) {
	h := fnv.New64a()
	h.Write([]byte(fullName))
	stream := h.Sum64()
	rng := rand.New(rand.NewPCG(seed, stream))
	s := &repoSim{
		p: p, rng: rng, tl: tl, start: start, end: end, shippedSHAs: map[string]bool{},
		repo: &repoInfo{
			fullName: fullName, name: strings.TrimPrefix(fullName, org+"/"),
			id: 600_000_000 + int64(stream%50_000_000), createdAt: start,
		},
	}
	s.run()
}

// render puts the records in time order and only then builds payloads and
// delivery ids, which therefore follow that order.
func render(tl *timeline, seed uint64) []Webhook {
	recs := tl.records
	slices.SortFunc(recs, func(a, b record) int {
		if c := a.at.Compare(b.at); c != 0 {
			return c
		}
		return a.seq - b.seq
	})
	rd := newRenderer(rand.New(rand.NewPCG(seed, 0x1d5)))
	ids := rand.New(rand.NewPCG(seed, 0xde11e7))
	out := make([]Webhook, len(recs))
	for i, r := range recs {
		body, err := json.Marshal(r.render(rd))
		if err != nil {
			panic(fmt.Sprintf("demo: encode %s payload: %v", r.event, err)) // maps of plain values always encode
		}
		out[i] = Webhook{Event: r.event, Delivery: deliveryID(ids), Body: body, At: r.at}
	}
	return out
}

// deliveryID is shaped like GitHub's X-GitHub-Delivery: a version 4 UUID.
func deliveryID(r *rand.Rand) string {
	var b [16]byte
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}
