package correlate

import "slices"

// settledSet holds the ids of a repository's settled commits by the day of
// the deployment that settled them (retention drops a day at a time). A
// year of a large organisation settles millions of them, so lookups go to
// one sorted array (8 bytes an id) and a small map of the ids added since
// the array was last merged, instead of a map of every id (about 40 bytes
// each).
type settledSet struct {
	byDay  map[int32][]uint64
	sorted []uint64
	recent map[uint64]struct{}
}

func newSettledSet() settledSet {
	return settledSet{byDay: map[int32][]uint64{}, recent: map[uint64]struct{}{}}
}

func (s *settledSet) has(id uint64) bool {
	if _, ok := s.recent[id]; ok {
		return true
	}
	_, ok := slices.BinarySearch(s.sorted, id)
	return ok
}

// add settles id on day, unless it is settled already.
func (s *settledSet) add(id uint64, day int32) {
	if s.has(id) {
		return
	}
	s.byDay[day] = append(s.byDay[day], id)
	s.recent[id] = struct{}{}
	// Merging costs the array's length: merge when the map holds an eighth
	// of it, so an id costs a few steps of merging on average.
	if len(s.recent) > max(64, len(s.sorted)/8) {
		s.merge()
	}
}

func (s *settledSet) merge() {
	if len(s.recent) == 0 {
		return
	}
	for id := range s.recent {
		s.sorted = append(s.sorted, id)
	}
	slices.Sort(s.sorted)
	clear(s.recent)
}

// restore puts back a day's ids from a snapshot; index must follow.
func (s *settledSet) restore(day int32, ids []uint64) {
	s.byDay[day] = ids
}

// index rebuilds the lookup array from the days, after restore.
func (s *settledSet) index() {
	n := 0
	for _, ids := range s.byDay {
		n += len(ids)
	}
	s.sorted = slices.Grow(s.sorted[:0], n)
	for _, ids := range s.byDay {
		s.sorted = append(s.sorted, ids...)
	}
	slices.Sort(s.sorted)
	s.sorted = slices.Compact(s.sorted)
	clear(s.recent)
}

// dropBefore forgets the ids settled on days before day, in one pass over
// the array: retention drops one day at a time, so no sort.
func (s *settledSet) dropBefore(day int32) {
	var gone map[uint64]struct{}
	for d, ids := range s.byDay {
		if d >= day {
			continue
		}
		if gone == nil {
			gone = map[uint64]struct{}{}
		}
		for _, id := range ids {
			gone[id] = struct{}{}
		}
		delete(s.byDay, d)
	}
	if gone == nil {
		return
	}
	s.sorted = slices.DeleteFunc(s.sorted, func(id uint64) bool {
		_, drop := gone[id]
		return drop
	})
	for id := range gone {
		delete(s.recent, id)
	}
}
