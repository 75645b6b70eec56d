package correlate

import (
	"cmp"
	"slices"
	"time"
)

// RepoDay is what one repository's facts of one UTC day add up to: a row of
// the per-day rollup the store keeps beside the facts, so that queries read
// whole days from it instead of deduplicating every fact. It holds the
// figures exactly (every lead time, not a histogram), so any quantile over
// whole days is the one the facts give. Team is not in it: the store joins
// the team mapping at query time.
type RepoDay struct {
	Repo string
	Day  time.Time // midnight UTC
	// Production deployments that finished that day, and the failed and
	// rework ones among them.
	Deployments, Failed, Rework int
	// RecoverySeconds, ascending: per failed deployment with a recovery
	// time, recovered − finished in whole seconds (signed, as the store's
	// queries compute it from the facts).
	RecoverySeconds []int64
	// LeadTimeSeconds, ascending: per change first deployed that day, its
	// lead time in whole seconds as the store writes it.
	LeadTimeSeconds []uint64
}

// RepoDays keeps a repository's RepoDay rows up to date as its facts are handed
// out, at a cost proportional to the facts that change (the day's sorted
// lists are kept sorted, never rebuilt). Its fields are exported for gob
// snapshots; the zero value (as gob decodes an empty one) is ready to use.
type RepoDays struct {
	// Days by Unix day. A day whose facts are all gone is deleted once
	// flushed.
	Days map[int32]*dayTally
	// Dirty are the days changed since the last flush.
	Dirty map[int32]bool
}

type dayTally struct {
	Deployments, Failed, Rework int
	RecoverySeconds             []int64
	LeadTimeSeconds             []uint64
}

// Add counts a deployment fact (sign +1) as handed out live, or uncounts it
// (sign -1) when the row last handed out for it is retracted or replaced.
// Only production deployments count. A -1 must name a fact counted before.
func (d *RepoDays) Add(f DeploymentFact, sign int) {
	if !f.Production {
		return
	}
	t := d.day(f.FinishedAt)
	t.Deployments += sign
	if f.Failed {
		t.Failed += sign
		if f.RecoveredAt != nil {
			t.RecoverySeconds = updateSorted(t.RecoverySeconds, f.RecoverySeconds(), sign)
		}
	}
	if f.Rework {
		t.Rework += sign
	}
}

// AddChange is Add for a change fact.
func (d *RepoDays) AddChange(f ChangeFact, sign int) {
	t := d.day(f.DeployedAt)
	t.LeadTimeSeconds = updateSorted(t.LeadTimeSeconds, f.LeadTimeSeconds(), sign)
}

// day returns the tally of the day t falls on, marking it changed.
func (d *RepoDays) day(t time.Time) *dayTally {
	if d.Days == nil {
		d.Days = map[int32]*dayTally{}
	}
	if d.Dirty == nil {
		d.Dirty = map[int32]bool{}
	}
	day := unixDay(t)
	d.Dirty[day] = true
	tally := d.Days[day]
	if tally == nil {
		tally = &dayTally{}
		d.Days[day] = tally
	}
	return tally
}

// Flush returns the days of repo changed since the last flush, in day
// order: each as a whole row that replaces the stored one (all zero where
// the day has nothing left, so the stored row stops counting).
func (d *RepoDays) Flush(repo string) []RepoDay {
	if len(d.Dirty) == 0 {
		return nil
	}
	days := make([]int32, 0, len(d.Dirty))
	for day := range d.Dirty {
		days = append(days, day)
	}
	slices.Sort(days)
	out := make([]RepoDay, 0, len(days))
	for _, day := range days {
		row := RepoDay{Repo: repo, Day: time.Unix(int64(day)*86400, 0).UTC()}
		if t := d.Days[day]; t != nil {
			// Copies: the rows are written after later folds may have
			// changed the tally.
			row.Deployments, row.Failed, row.Rework = t.Deployments, t.Failed, t.Rework
			row.RecoverySeconds = slices.Clone(t.RecoverySeconds)
			row.LeadTimeSeconds = slices.Clone(t.LeadTimeSeconds)
			if t.empty() {
				delete(d.Days, day)
			}
		}
		out = append(out, row)
	}
	clear(d.Dirty)
	return out
}

// Drop forgets the days that end at or before before: their facts are
// frozen (never rewritten or retracted), so their stored rows are final.
// Call it after a flush: a dropped day's unflushed change would be lost.
func (d *RepoDays) Drop(before time.Time) {
	last := unixDay(before)
	for day := range d.Days {
		if day < last {
			delete(d.Days, day)
		}
	}
	for day := range d.Dirty {
		if day < last {
			delete(d.Dirty, day)
		}
	}
}

func (t *dayTally) empty() bool {
	return t.Deployments == 0 && t.Failed == 0 && t.Rework == 0 && len(t.RecoverySeconds) == 0 && len(t.LeadTimeSeconds) == 0
}

// updateSorted inserts v into the ascending list s (sign > 0) or removes
// one occurrence of it (sign < 0; nothing if absent).
func updateSorted[T cmp.Ordered](s []T, v T, sign int) []T {
	i, found := slices.BinarySearch(s, v)
	switch {
	case sign > 0:
		return slices.Insert(s, i, v)
	case sign < 0 && found:
		return slices.Delete(s, i, i+1)
	}
	return s
}

// RecoverySeconds is a recovered deployment's recovery time as the store's
// queries compute it from the stored seconds (toUInt64(recovered_at) -
// toUInt64(finished_at) is an Int64 there); zero without a recovery time.
func (f DeploymentFact) RecoverySeconds() int64 {
	if f.RecoveredAt == nil {
		return 0
	}
	return f.RecoveredAt.Unix() - f.FinishedAt.Unix()
}

// LeadTimeSeconds is the lead time in whole seconds, as the store writes it.
func (f ChangeFact) LeadTimeSeconds() uint64 { return uint64(f.LeadTime() / time.Second) }
