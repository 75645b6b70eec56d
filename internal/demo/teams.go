package demo

import (
	"math/rand/v2"
	"slices"
	"time"
)

// org owns every demo repository.
const org = "acme"

// span is a range of durations that the generator draws from uniformly.
type span struct{ min, max time.Duration }

func minutes(lo, hi float64) span {
	return span{time.Duration(lo * float64(time.Minute)), time.Duration(hi * float64(time.Minute))}
}

func hours(lo, hi float64) span {
	return span{time.Duration(lo * float64(time.Hour)), time.Duration(hi * float64(time.Hour))}
}

func days(lo, hi float64) span { return hours(24*lo, 24*hi) }

// draw is rounded to whole seconds: GitHub's timestamps have no fractions.
func (s span) draw(r *rand.Rand) time.Duration {
	d := s.min
	if s.max > s.min {
		d += time.Duration(r.Int64N(int64(s.max - s.min)))
	}
	return d.Round(time.Second)
}

// cadence lists when a repository starts its releases, in time order. A
// release ships main's head at that moment, so the wait between a commit
// and the next scheduled release is what separates the teams' lead times.
type cadence func(s *repoSim) []time.Time

// profile is how one team works: how often it pushes, how long code sits
// before it is pushed, when it releases and how often that goes wrong.
type profile struct {
	team   string // "" for the repository no team claims
	repos  []string
	zone   *time.Location // working hours are local
	people []person
	topics []string // what commit messages and incidents talk about
	files  []string

	pushesPerDay float64 // mean on a workday, per repository
	prShare      float64 // pushes that are a pull request being merged
	coding       span    // how long before its push each commit was made

	cadence     cadence
	soak        span    // staging success → production deployment
	deployTime  span    // in_progress → final state of one attempt
	stagingFail float64 // a staging attempt fails
	prodFail    float64 // a production attempt fails
	changeFail  float64 // a successful production release causes an incident
	detect      span    // production release → incident opened
	restore     span    // incident opened → closed
	rollback    float64 // incidents resolved by redeploying the previous sha
}

// profiles is the demo organisation. It is a function, not a variable, so
// that nothing at package level can be changed by a caller.
func profiles() []profile {
	return []profile{
		{
			team: "payments", repos: []string{"acme/payments-api", "acme/billing"},
			zone: time.FixedZone("CET", 3600),
			people: []person{
				{"Ana Lima", "analima", 5120331}, {"Jonas Weber", "jweber", 7731209},
				{"Priya Raman", "priyar", 3309817}, {"Tomás Ruiz", "truiz", 9021554},
			},
			topics: []string{"refund flow", "idempotency keys", "ledger reconciliation", "currency rounding",
				"3DS challenge", "payout batching", "card tokenisation", "invoice PDFs"},
			files: []string{"internal/ledger/ledger.go", "internal/refunds/refunds.go", "api/charges.go",
				"api/payouts.go", "internal/fx/rounding.go", "migrations/0042_payouts.sql"},
			// Elite: small changes, shipped by CD minutes after each merge.
			pushesPerDay: 3.2, prShare: 0.8, coding: minutes(15, 180),
			cadence: everyPush(minutes(3, 12)), soak: minutes(5, 20), deployTime: minutes(2, 6),
			stagingFail: 0.03, prodFail: 0.02, changeFail: 0.04,
			detect: minutes(4, 30), restore: minutes(12, 90), rollback: 0.7,
		},
		{
			team: "checkout", repos: []string{"acme/checkout-web", "acme/cart"},
			zone: time.FixedZone("EST", -5*3600),
			people: []person{
				{"Maya Chen", "mayachen", 4410982}, {"Sam Okafor", "sokafor", 6620117},
				{"Lena Fischer", "lfischer", 2287465}, {"Diego Alvarez", "dalvarez", 8814002},
			},
			topics: []string{"cart totals", "promo codes", "address form", "shipping estimates",
				"guest checkout", "payment step", "order summary", "stock reservation"},
			files: []string{"src/pages/checkout.tsx", "src/components/CartLine.tsx", "src/api/cart.ts",
				"src/lib/promo.ts", "src/styles/checkout.css", "package.json"},
			// High: a daily release train in the afternoon.
			pushesPerDay: 2.6, prShare: 0.75, coding: hours(2, 30),
			cadence: daily(14, hours(0, 2.5), 0.1), soak: minutes(30, 150), deployTime: minutes(3, 9),
			stagingFail: 0.06, prodFail: 0.05, changeFail: 0.12,
			detect: minutes(10, 90), restore: hours(1, 8), rollback: 0.5,
		},
		{
			team: "platform", repos: []string{"acme/infra", "acme/auth"},
			zone: time.UTC,
			people: []person{
				{"Ivan Petrov", "ipetrov", 1190433}, {"Noor Haddad", "nhaddad", 3378120},
				{"Kenji Sato", "ksato", 5561290},
			},
			topics: []string{"token refresh", "SSO login", "node pool sizing", "TLS certificates",
				"rate limiter", "session store", "DNS records", "audit log"},
			files: []string{"terraform/eks.tf", "terraform/dns.tf", "auth/token.go", "auth/sso/saml.go",
				"helm/auth/values.yaml", "auth/session/store.go"},
			// Medium: weekly-ish releases after a day on staging.
			pushesPerDay: 1.6, prShare: 0.7, coding: days(1, 3),
			cadence: periodic(days(4, 9), 11), soak: hours(3, 24), deployTime: minutes(5, 15),
			stagingFail: 0.1, prodFail: 0.08, changeFail: 0.2,
			detect: minutes(20, 180), restore: hours(4, 40), rollback: 0.5,
		},
		{
			team: "data", repos: []string{"acme/etl", "acme/warehouse"},
			zone: time.FixedZone("PST", -8*3600),
			people: []person{
				{"Olivia Brown", "obrown", 2847710}, {"Rahul Mehta", "rmehta", 6093318},
				{"Emma Larsen", "elarsen", 4472905},
			},
			topics: []string{"orders pipeline", "dedup step", "schema migration", "late-arriving events",
				"partition pruning", "dbt models", "backfill job", "revenue mart"},
			files: []string{"dags/orders.py", "dags/backfill.py", "models/marts/revenue.sql",
				"models/staging/stg_orders.sql", "etl/dedup.py", "warehouse/schema.sql"},
			// Low: big releases every couple of weeks, slow to recover.
			pushesPerDay: 1.3, prShare: 0.6, coding: days(2, 6),
			cadence: periodic(days(10, 17), 10), soak: days(1, 2), deployTime: minutes(8, 25),
			stagingFail: 0.15, prodFail: 0.15, changeFail: 0.35,
			detect: hours(1, 8), restore: days(1, 4), rollback: 0.3,
		},
		{
			team: "mobile", repos: []string{"acme/ios-app"},
			zone: time.FixedZone("IST", 5*3600+1800),
			people: []person{
				{"Arjun Nair", "anair", 7210045}, {"Sofia Rossi", "srossi", 3920716},
				{"Wei Zhang", "wzhang", 5518834},
			},
			topics: []string{"onboarding screens", "push notifications", "offline cart", "dark mode",
				"Apple Pay sheet", "deep links", "crash on launch", "image cache"},
			files: []string{"App/Onboarding/OnboardingView.swift", "App/Cart/CartStore.swift",
				"App/Push/NotificationService.swift", "App/Settings/Theme.swift", "App/Info.plist", "Podfile.lock"},
			// Batchy: many merges, one weekly release train, a long beta soak.
			pushesPerDay: 3.5, prShare: 0.85, coding: hours(4, 48),
			cadence: weekly(time.Thursday, 10), soak: hours(20, 44), deployTime: minutes(20, 90),
			stagingFail: 0.1, prodFail: 0.1, changeFail: 0.25,
			detect: hours(2, 12), restore: days(1, 3), rollback: 0,
		},
		{
			// Nobody's: the report shows it as unassigned.
			repos: []string{"acme/sandbox"},
			zone:  time.UTC,
			people: []person{
				{"Chris Doe", "cdoe", 9930127}, {"Ivan Petrov", "ipetrov", 1190433},
			},
			topics: []string{"hello world", "experiment flag", "demo endpoint", "README"},
			files:  []string{"main.go", "README.md", "Makefile"},

			pushesPerDay: 0.8, prShare: 0.2, coding: hours(1, 24),
			cadence: periodic(days(2, 5), 16), soak: minutes(5, 60), deployTime: minutes(1, 4),
			stagingFail: 0.05, prodFail: 0.05, changeFail: 0.1,
			detect: minutes(30, 240), restore: hours(2, 24), rollback: 0.5,
		},
	}
}

// everyPush is continuous deployment: each push starts a release shortly
// after it lands (pushes in quick succession share one).
func everyPush(delay span) cadence {
	return func(s *repoSim) []time.Time {
		var out []time.Time
		for _, p := range s.pushes {
			out = append(out, p.at.Add(delay.draw(s.rng)))
		}
		slices.SortFunc(out, time.Time.Compare)
		return out
	}
}

// daily is a release train on workdays at a local hour, skipped now and
// then when nobody has time.
func daily(hour int, jitter span, skip float64) cadence {
	return func(s *repoSim) []time.Time {
		var out []time.Time
		for day := range s.localDays() {
			if !workday(day) || s.rng.Float64() < skip {
				continue
			}
			out = append(out, day.Add(time.Duration(hour)*time.Hour+jitter.draw(s.rng)))
		}
		return out
	}
}

// periodic releases when the team gets round to it: every gap, on the next
// workday at a local hour.
func periodic(gap span, hour int) cadence {
	return func(s *repoSim) []time.Time {
		var out []time.Time
		at := s.start.Add(gap.draw(s.rng) / 2)
		for at.Before(s.end) {
			day := startOfDay(at.In(s.p.zone))
			for !workday(day) {
				day = day.AddDate(0, 0, 1)
			}
			out = append(out, day.Add(time.Duration(hour)*time.Hour+hours(0, 3).draw(s.rng)))
			at = at.Add(gap.draw(s.rng))
		}
		return out
	}
}

// weekly is a fixed release train: the release candidate goes to staging on
// the same weekday every week.
func weekly(wd time.Weekday, hour int) cadence {
	return func(s *repoSim) []time.Time {
		var out []time.Time
		for day := range s.localDays() {
			if day.Weekday() == wd {
				out = append(out, day.Add(time.Duration(hour)*time.Hour+minutes(0, 60).draw(s.rng)))
			}
		}
		return out
	}
}

func workday(t time.Time) bool {
	return t.Weekday() != time.Saturday && t.Weekday() != time.Sunday
}

func startOfDay(t time.Time) time.Time {
	y, m, d := t.Date()
	return time.Date(y, m, d, 0, 0, 0, 0, t.Location())
}
