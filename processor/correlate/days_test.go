package correlate

import (
	"bytes"
	"encoding/gob"
	"fmt"
	"reflect"
	"slices"
	"testing"
	"time"

	"pgregory.net/rapid"
)

var day0 = time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)

func at(day int, hour int) time.Time { return day0.Add(time.Duration(day*24+hour) * time.Hour) }

func TestRepoDays(t *testing.T) {
	recovered := at(0, 12)
	dep := DeploymentFact{Repo: "a/b", ID: "1", Production: true, FinishedAt: at(0, 10)}
	failed := dep
	failed.Failed, failed.Rework, failed.RecoveredAt = true, true, &recovered
	staging := DeploymentFact{Repo: "a/b", ID: "2", FinishedAt: at(0, 11)}
	change := ChangeFact{Repo: "a/b", SHA: "c1", CommittedAt: at(0, 7), DeployedAt: at(0, 10)}
	moved := change
	moved.DeployedAt = at(1, 1)
	ahead := change // a commit clock ahead of the deployment's
	ahead.SHA, ahead.CommittedAt = "c2", at(0, 11)

	type step struct {
		dep    *DeploymentFact
		change *ChangeFact
		sign   int
		flush  bool
		drop   time.Time
	}
	tests := []struct {
		name  string
		steps []step
		want  []RepoDay // what the last flush returns
	}{
		{"a deployment and its change", []step{{dep: &dep, sign: 1}, {change: &change, sign: 1}, {flush: true}},
			[]RepoDay{{Repo: "a/b", Day: at(0, 0), Deployments: 1, LeadTimeSeconds: []uint64{3 * 3600}}}},
		{"non-production deployments do not count", []step{{dep: &staging, sign: 1}, {flush: true}}, []RepoDay{}},
		{"a deployment becomes failed and recovered", []step{{dep: &dep, sign: 1}, {flush: true}, {dep: &dep, sign: -1}, {dep: &failed, sign: 1}, {flush: true}},
			[]RepoDay{{Repo: "a/b", Day: at(0, 0), Deployments: 1, Failed: 1, Rework: 1, RecoverySeconds: []int64{2 * 3600}}}},
		{"a change moves to the next day: both days are rewritten", []step{{change: &change, sign: 1}, {flush: true}, {change: &change, sign: -1}, {change: &moved, sign: 1}, {flush: true}},
			[]RepoDay{{Repo: "a/b", Day: at(0, 0)}, {Repo: "a/b", Day: at(1, 0), LeadTimeSeconds: []uint64{18 * 3600}}}},
		{"a retracted deployment leaves a zero row", []step{{dep: &failed, sign: 1}, {flush: true}, {dep: &failed, sign: -1}, {flush: true}},
			[]RepoDay{{Repo: "a/b", Day: at(0, 0)}}},
		{"a negative lead time counts as zero, lists stay sorted", []step{{change: &change, sign: 1}, {change: &ahead, sign: 1}, {flush: true}},
			[]RepoDay{{Repo: "a/b", Day: at(0, 0), LeadTimeSeconds: []uint64{0, 3 * 3600}}}},
		{"a flush with nothing changed returns nothing", []step{{change: &change, sign: 1}, {flush: true}, {flush: true}}, []RepoDay{}},
		{"dropped days are no longer flushed", []step{{change: &change, sign: 1}, {change: &moved, sign: 1}, {drop: at(1, 5)}, {flush: true}},
			[]RepoDay{{Repo: "a/b", Day: at(1, 0), LeadTimeSeconds: []uint64{18 * 3600}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var d RepoDays
			got := []RepoDay{}
			for _, s := range tt.steps {
				switch {
				case s.dep != nil:
					d.Add(*s.dep, s.sign)
				case s.change != nil:
					d.AddChange(*s.change, s.sign)
				case s.flush:
					got = normalDays(d.Flush("a/b"))
				case !s.drop.IsZero():
					d.Drop(s.drop)
				}
			}
			if want := normalDays(tt.want); !reflect.DeepEqual(got, want) {
				t.Errorf("flush:\n got %+v\nwant %+v", got, want)
			}
		})
	}
}

// TestRepoDaysMatchLiveFacts drives RepoDays as the repository stage does —
// each fact handed out live, replaced (same time, new content), moved
// (retracted at the old time, live at the new one) or retracted, with
// flushes, snapshots and retention in between — and checks after every
// flush that the rows written so far, latest per day, are what a brute-force
// recomputation from the live facts gives.
func TestRepoDaysMatchLiveFacts(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		const repo = "a/b"
		var days RepoDays
		live := map[string]DeploymentFact{} // by id: what the store holds live
		liveChanges := map[string]ChangeFact{}
		stored := map[int32]RepoDay{} // the rollup rows written, latest per day
		floor := 0                    // days before it are frozen and dropped
		drawTime := func(name string) time.Time {
			return at(rapid.IntRange(floor, floor+6).Draw(t, name+"Day"), 0).Add(time.Duration(rapid.IntRange(0, 86399).Draw(t, name+"Sec")) * time.Second)
		}
		frozen := func(ts time.Time) bool { return ts.Before(at(floor, 0)) }
		for step := rapid.IntRange(1, 80).Draw(t, "steps"); step > 0; step-- {
			switch rapid.IntRange(0, 9).Draw(t, "op") {
			case 0, 1, 2: // a deployment fact handed out again
				id := fmt.Sprint(rapid.IntRange(0, 5).Draw(t, "id"))
				old, hadOld := live[id]
				if hadOld && frozen(old.FinishedAt) {
					continue
				}
				cur := DeploymentFact{Repo: repo, ID: id, FinishedAt: drawTime("finished"),
					Production: rapid.IntRange(0, 4).Draw(t, "prod") > 0, Failed: rapid.Bool().Draw(t, "failed"),
					Rework: rapid.Bool().Draw(t, "rework")}
				if hadOld && rapid.Bool().Draw(t, "sameTime") {
					cur.FinishedAt = old.FinishedAt
				}
				if cur.Failed && rapid.Bool().Draw(t, "recovered") {
					r := cur.FinishedAt.Add(time.Duration(rapid.IntRange(-60, 100000).Draw(t, "recovery")) * time.Second)
					cur.RecoveredAt = &r
				}
				retract := rapid.IntRange(0, 5).Draw(t, "retract") == 0
				if hadOld {
					days.Add(old, -1)
					delete(live, id)
				}
				if !retract {
					days.Add(cur, 1)
					live[id] = cur
				}
			case 3, 4, 5: // a change fact likewise
				sha := fmt.Sprint(rapid.IntRange(0, 15).Draw(t, "sha"))
				old, hadOld := liveChanges[sha]
				if hadOld && frozen(old.DeployedAt) {
					continue
				}
				cur := ChangeFact{Repo: repo, SHA: sha, DeployedAt: drawTime("deployed")}
				if hadOld && rapid.Bool().Draw(t, "sameTime") {
					cur.DeployedAt = old.DeployedAt
				}
				cur.CommittedAt = cur.DeployedAt.Add(-time.Duration(rapid.IntRange(-100, 1000000).Draw(t, "lead")) * time.Second)
				retract := rapid.IntRange(0, 5).Draw(t, "retract") == 0
				if hadOld {
					days.AddChange(old, -1)
					delete(liveChanges, sha)
				}
				if !retract {
					days.AddChange(cur, 1)
					liveChanges[sha] = cur
				}
			case 6, 7: // a flush, written to the store
				for _, row := range days.Flush(repo) {
					if row.Repo != repo || !row.Day.Equal(row.Day.Truncate(24*time.Hour)) {
						t.Fatalf("row %+v: want repo %s and a midnight", row, repo)
					}
					stored[unixDay(row.Day)] = row
				}
				want := bruteDays(repo, live, liveChanges)
				for day := unixDay(at(floor, 0)); day < unixDay(at(floor+8, 0)); day++ {
					w, ok := want[day]
					if !ok {
						w = RepoDay{Repo: repo, Day: time.Unix(int64(day)*86400, 0).UTC()}
					}
					g, ok := stored[day]
					if !ok {
						g = RepoDay{Repo: repo, Day: w.Day}
					}
					if !reflect.DeepEqual(normalDays([]RepoDay{g}), normalDays([]RepoDay{w})) {
						t.Fatalf("day %s: stored %+v, live facts give %+v", w.Day.Format(time.DateOnly), g, w)
					}
				}
			case 8: // a snapshot and restart between flushes
				var buf bytes.Buffer
				if err := gob.NewEncoder(&buf).Encode(&days); err != nil {
					t.Fatal(err)
				}
				days = RepoDays{}
				if err := gob.NewDecoder(&buf).Decode(&days); err != nil {
					t.Fatal(err)
				}
			case 9: // retention, after a flush as the stage does it
				for _, row := range days.Flush(repo) {
					stored[unixDay(row.Day)] = row
				}
				floor += rapid.IntRange(0, 2).Draw(t, "advance")
				days.Drop(at(floor, 0).Add(time.Duration(rapid.IntRange(0, 86399).Draw(t, "dropSec")) * time.Second))
				for day := range days.Days {
					if day < unixDay(at(floor, 0)) {
						t.Fatalf("day %d kept after dropping before day %d", day, unixDay(at(floor, 0)))
					}
				}
			}
		}
	})
}

// bruteDays recomputes every day's row from the live facts.
func bruteDays(repo string, deps map[string]DeploymentFact, changes map[string]ChangeFact) map[int32]RepoDay {
	out := map[int32]RepoDay{}
	get := func(ts time.Time) RepoDay {
		r, ok := out[unixDay(ts)]
		if !ok {
			r = RepoDay{Repo: repo, Day: ts.UTC().Truncate(24 * time.Hour)}
		}
		return r
	}
	for _, f := range deps {
		if !f.Production {
			continue
		}
		r := get(f.FinishedAt)
		r.Deployments++
		if f.Failed {
			r.Failed++
			if f.RecoveredAt != nil {
				r.RecoverySeconds = append(r.RecoverySeconds, f.RecoveredAt.Unix()-f.FinishedAt.Unix())
			}
		}
		if f.Rework {
			r.Rework++
		}
		out[unixDay(f.FinishedAt)] = r
	}
	for _, f := range changes {
		r := get(f.DeployedAt)
		r.LeadTimeSeconds = append(r.LeadTimeSeconds, uint64(max(f.DeployedAt.Sub(f.CommittedAt), 0)/time.Second))
		out[unixDay(f.DeployedAt)] = r
	}
	for day, r := range out {
		slices.Sort(r.RecoverySeconds)
		slices.Sort(r.LeadTimeSeconds)
		out[day] = r
	}
	return out
}

// normalDays makes empty lists nil, so rows compare by content.
func normalDays(rows []RepoDay) []RepoDay {
	out := []RepoDay{}
	for _, r := range rows {
		if len(r.RecoverySeconds) == 0 {
			r.RecoverySeconds = nil
		}
		if len(r.LeadTimeSeconds) == 0 {
			r.LeadTimeSeconds = nil
		}
		out = append(out, r)
	}
	return out
}
