package correlate

import (
	"math/rand/v2"
	"testing"
)

// The set answers as a map of every id to its first day would, through
// merges, drops and a restore from its days.
func TestSettledSetAgainstAMap(t *testing.T) {
	for seed := range uint64(50) {
		rng := rand.New(rand.NewPCG(seed, 1))
		set, model := newSettledSet(), map[uint64]int32{}
		day := int32(100)
		for step := range 3000 {
			switch op := rng.IntN(100); {
			case op < 80:
				id := rng.Uint64N(2000)
				set.add(id, day)
				if _, ok := model[id]; !ok {
					model[id] = day
				}
			case op < 95:
				day++
			case op < 98:
				cut := day - int32(rng.IntN(5))
				set.dropBefore(cut)
				for id, d := range model {
					if d < cut {
						delete(model, id)
					}
				}
			default:
				restored := newSettledSet()
				days, ids := set.byDay(func(int32) bool { return true })
				for i, d := range days {
					restored.restore(d, ids[i])
				}
				restored.index()
				set = restored
			}
			if step%100 == 0 || step == 2999 {
				for id := range uint64(2000) {
					_, want := model[id]
					if got := set.has(id); got != want {
						t.Fatalf("seed %d step %d: has(%d) = %v, want %v", seed, step, id, got, want)
					}
				}
			}
		}
	}
}
