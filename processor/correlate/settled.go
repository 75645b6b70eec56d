package correlate

import (
	"cmp"
	"slices"
)

// settledSet holds the ids of a repository's settled commits, each with the
// day (Unix days) of the deployment that settled it: retention drops a day
// at a time. A year of a large organisation settles millions of them, so
// they are kept in sorted arrays of plain numbers (12 bytes an id, nothing
// for the garbage collector to scan) rather than in maps: the bulk, and a
// short tail of the ids added since the bulk was last merged, which keeps
// an addition from moving the whole bulk.
type settledSet struct {
	ids, tail        []uint64 // each sorted
	idDays, tailDays []int32  // idDays[i] is when ids[i] settled
	unindexed        []settledID
}

type settledID struct {
	id  uint64
	day int32
}

func newSettledSet() settledSet { return settledSet{} }

func (s *settledSet) has(id uint64) bool {
	if _, ok := slices.BinarySearch(s.tail, id); ok {
		return true
	}
	_, ok := slices.BinarySearch(s.ids, id)
	return ok
}

// add settles id on day, unless it is settled already.
func (s *settledSet) add(id uint64, day int32) {
	if _, ok := slices.BinarySearch(s.ids, id); ok {
		return
	}
	i, ok := slices.BinarySearch(s.tail, id)
	if ok {
		return
	}
	s.tail = slices.Insert(s.tail, i, id)
	s.tailDays = slices.Insert(s.tailDays, i, day)
	// Inserting moves the tail, merging moves the bulk: merge when the tail
	// is a sixteenth of it, so an id costs a few dozen moves either way.
	if len(s.tail) > max(64, len(s.ids)/16) {
		s.merge()
	}
}

// merge moves the tail into the bulk, from the back so that nothing is
// allocated but the bulk's growth.
func (s *settledSet) merge() {
	n, m := len(s.ids), len(s.tail)
	s.ids = slices.Grow(s.ids, m)[:n+m]
	s.idDays = slices.Grow(s.idDays, m)[:n+m]
	i, j := n-1, m-1
	for k := n + m - 1; j >= 0; k-- {
		if i >= 0 && s.ids[i] > s.tail[j] {
			s.ids[k], s.idDays[k] = s.ids[i], s.idDays[i]
			i--
		} else {
			s.ids[k], s.idDays[k] = s.tail[j], s.tailDays[j]
			j--
		}
	}
	s.tail, s.tailDays = s.tail[:0], s.tailDays[:0]
}

// restore puts back a day's ids from a snapshot; index must follow.
func (s *settledSet) restore(day int32, ids []uint64) {
	for _, id := range ids {
		s.unindexed = append(s.unindexed, settledID{id, day})
	}
}

// index sorts what restore put back into the bulk; an id restored under
// two days keeps the earlier.
func (s *settledSet) index() {
	s.merge()
	all := s.unindexed
	for i, id := range s.ids {
		all = append(all, settledID{id, s.idDays[i]})
	}
	slices.SortFunc(all, func(a, b settledID) int { return cmp.Or(cmp.Compare(a.id, b.id), cmp.Compare(a.day, b.day)) })
	all = slices.CompactFunc(all, func(a, b settledID) bool { return a.id == b.id })
	s.ids, s.idDays = make([]uint64, len(all)), make([]int32, len(all))
	for i, e := range all {
		s.ids[i], s.idDays[i] = e.id, e.day
	}
	s.unindexed = nil
}

// dropBefore forgets the ids settled on days before day, in one pass.
func (s *settledSet) dropBefore(day int32) {
	s.ids, s.idDays = keepFrom(s.ids, s.idDays, day)
	s.tail, s.tailDays = keepFrom(s.tail, s.tailDays, day)
}

func keepFrom(ids []uint64, days []int32, from int32) ([]uint64, []int32) {
	k := 0
	for i, d := range days {
		if d >= from {
			ids[k], days[k] = ids[i], d
			k++
		}
	}
	return ids[:k], days[:k]
}

// byDay groups the ids of the days keep wants by day, days in order and
// ids in order: what a snapshot saves.
func (s *settledSet) byDay(keep func(day int32) bool) (days []int32, ids [][]uint64) {
	index := map[int32]int{}
	add := func(id uint64, day int32) {
		if !keep(day) {
			return
		}
		k, ok := index[day]
		if !ok {
			k = len(days)
			index[day] = k
			days = append(days, day)
			ids = append(ids, nil)
		}
		ids[k] = append(ids[k], id)
	}
	for i, id := range s.ids {
		add(id, s.idDays[i])
	}
	for i, id := range s.tail {
		add(id, s.tailDays[i])
	}
	order := make([]int, len(days))
	for i := range order {
		order[i] = i
	}
	slices.SortFunc(order, func(a, b int) int { return cmp.Compare(days[a], days[b]) })
	sortedDays, sortedIDs := make([]int32, len(days)), make([][]uint64, len(days))
	for k, i := range order {
		sortedDays[k] = days[i]
		sortedIDs[k] = ids[i]
		slices.Sort(sortedIDs[k]) // the tail's come after the bulk's
	}
	return sortedDays, sortedIDs
}

// days lists the days that settled some id.
func (s *settledSet) days() []int32 {
	seen := map[int32]bool{}
	for _, ds := range [][]int32{s.idDays, s.tailDays} {
		for _, d := range ds {
			seen[d] = true
		}
	}
	return keysOf(seen)
}
