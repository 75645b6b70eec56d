package bus

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Group membership and partition ownership on a JetStream key-value bucket.
//
// Every member of a group heartbeats a key "member.<id>" in the bucket
// "doraflow_group_<group>". The bucket's TTL (the maximum age of a revision)
// makes the key of a member that stopped heartbeating disappear. Each member
// lists the live members, sorts their ids, and wants the partitions p with
// p % len(members) == its index. A partition is owned through a lease, the key
// "lease.<p>" holding the owner's id: created with Create (which fails while
// another member holds it), renewed with a compare-and-set Update on every
// heartbeat, released with a compare-and-set Delete, and gone by itself a TTL
// after its owner's last renewal.
//
// Safety does not rest on the server expiring keys on time alone: a member
// counts a lease as valid only until leaseValidity after it SENT its last
// successful renewal, which is before the server stamped that revision, so
// the member stops using a lease it could not renew before the server can
// hand it to anyone else (up to clock rate differences, and provided onChange
// returns within the remaining margin, TTL/4).

const (
	membershipBucketPrefix = "doraflow_group_"
	memberKeyPrefix        = "member."
	leaseKeyPrefix         = "lease."
	defaultMembershipTTL   = 6 * time.Second
	minMembershipTTL       = 200 * time.Millisecond
)

// MembershipOptions configure a member.
type MembershipOptions struct {
	// Group is the bucket name suffix: "processor" gives the bucket
	// "doraflow_group_processor". Only [A-Za-z0-9_-].
	Group string
	// ID is the member's unique id (only [A-Za-z0-9_-]); default
	// hostname-pid-random.
	ID string
	// Partitions is the number of partitions, 0..Partitions-1. All members of
	// a group must agree on it.
	Partitions int
	// TTL: a member or lease not refreshed for this long is gone; default 6s.
	// Members heartbeat every TTL/4. All members of a group must use the same
	// TTL (it is the bucket's configuration).
	TTL time.Duration
	// Replicas of the bucket (1 on a single node, 3 on a cluster); default 1.
	Replicas int
	Logger   *slog.Logger
}

// Membership is one member of a group. Create it with Join.
type Membership struct {
	kv       jetstream.KeyValue
	id       string
	opts     MembershipOptions
	log      *slog.Logger
	onChange func(owned []int)

	interval time.Duration // heartbeat and renewal period
	validity time.Duration // how long a lease counts as ours after sending its renewal

	cancel context.CancelFunc
	done   chan struct{}
	nudge  chan struct{}
	// reports carry the owned sets to the goroutine that calls onChange,
	// so that leases are renewed while it runs; applied is the generation
	// of the last report onChange has returned from.
	reports  chan ownedReport
	reported chan struct{} // closed when that goroutine is done
	applied  atomic.Uint64

	mu     sync.Mutex
	owned  []int // as last reported through onChange
	wanted []int // the partitions due to this member, as of its last round

	leaveMu sync.Mutex
	left    bool

	// Owned by the run goroutine, then by Leave once that goroutine is done.
	leases     map[int]*lease
	lastReport []int
	generation uint64 // of the last report
	first      bool
}

type lease struct {
	rev        uint64
	validUntil time.Time
	// givenUp: the generation of the first report without this partition;
	// the lease is released once onChange has returned from it, and renewed
	// until then (0: kept).
	givenUp uint64
}

// ownedReport is a set of owned partitions for onChange, and its
// generation.
type ownedReport struct {
	owned      []int
	generation uint64
}

// Join starts a member. onChange is called (from one goroutine, never
// concurrently) with the sorted list of partitions this member now owns,
// every time that set changes, including the first time (possibly empty).
//
//   - A partition is reported owned only once this member holds its lease.
//   - Before a lease is given up voluntarily (rebalance, Leave), onChange is
//     called without that partition and has returned before the lease is
//     released: the caller stops its worker inside the callback. Until
//     then the lease is renewed.
//   - A lease lost involuntarily (a renewal found another revision or no key,
//     or the lease could not be renewed for 3/4 of the TTL) is reported
//     without it as soon as that is noticed.
//   - When ctx is cancelled the member stops heartbeating and reports an empty
//     set (its leases then expire, or Leave releases them).
//
// onChange must not call Leave. It runs on its own goroutine, so leases are
// renewed however long it takes (a slow stop delays only the hand-over of
// the partitions it stops). Partitions are rebalanced within a heartbeat
// (TTL/4) of a member joining or leaving, and within about TTL + TTL/4 of a
// member dying.
func Join(ctx context.Context, js jetstream.JetStream, opts MembershipOptions, onChange func(owned []int)) (*Membership, error) {
	if !validToken(opts.Group) {
		return nil, fmt.Errorf("bus: membership: invalid group %q (want [A-Za-z0-9_-]+)", opts.Group)
	}
	if opts.Partitions <= 0 {
		return nil, fmt.Errorf("bus: membership: partitions must be positive, got %d", opts.Partitions)
	}
	if opts.ID == "" {
		opts.ID = defaultMemberID()
	} else if !validToken(opts.ID) {
		return nil, fmt.Errorf("bus: membership: invalid member id %q (want [A-Za-z0-9_-]+)", opts.ID)
	}
	if opts.TTL == 0 {
		opts.TTL = defaultMembershipTTL
	}
	if opts.TTL < minMembershipTTL {
		return nil, fmt.Errorf("bus: membership: TTL %s below the minimum %s", opts.TTL, minMembershipTTL)
	}
	opts.Replicas = max(opts.Replicas, 1)
	logger := opts.Logger
	if logger == nil {
		logger = slog.Default()
	}
	if onChange == nil {
		onChange = func([]int) {}
	}
	bucket := membershipBucketPrefix + opts.Group
	cfg := jetstream.KeyValueConfig{
		Bucket:      bucket,
		Description: "doraflow group membership and partition leases",
		TTL:         opts.TTL,
		History:     1,
		Storage:     jetstream.FileStorage,
		Replicas:    opts.Replicas,
		// Expiry by TTL leaves a marker that watchers see, so a dead
		// member's leases are taken over as soon as they expire rather than
		// at the next heartbeat. Servers before 2.11 cannot; polling then
		// does it alone.
		LimitMarkerTTL: max(opts.TTL, time.Second),
	}
	kv, err := js.CreateOrUpdateKeyValue(ctx, cfg)
	if errors.Is(err, jetstream.ErrLimitMarkerTTLNotSupported) {
		cfg.LimitMarkerTTL = 0
		kv, err = js.CreateOrUpdateKeyValue(ctx, cfg)
	}
	if err != nil {
		return nil, fmt.Errorf("bus: membership: bucket %s: %w", bucket, replicasHint(err, opts.Replicas))
	}
	if err := awaitReplicas(ctx, js, "KV_"+bucket, opts.Replicas); err != nil {
		return nil, err
	}
	m := &Membership{
		kv:       kv,
		id:       opts.ID,
		opts:     opts,
		log:      logger.With("component", "membership", "group", opts.Group, "member", opts.ID),
		onChange: onChange,
		interval: opts.TTL / 4,
		validity: opts.TTL * 3 / 4,
		done:     make(chan struct{}),
		nudge:    make(chan struct{}, 1),
		reports:  make(chan ownedReport, 1),
		reported: make(chan struct{}),
		leases:   map[int]*lease{},
		first:    true,
	}
	if _, err := kv.Put(ctx, m.memberKey(), []byte(m.id)); err != nil {
		return nil, fmt.Errorf("bus: membership: announce %s: %w", m.id, err)
	}
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	m.cancel = cancel
	// Stop with the caller's ctx as well as with Leave.
	stop := context.AfterFunc(ctx, cancel)
	go m.callOnChange()
	go func() {
		defer stop()
		m.run(runCtx)
	}()
	m.log.Info("joined", "partitions", opts.Partitions, "ttl", opts.TTL)
	return m, nil
}

// Owned returns the partitions this member owns, as last reported through
// onChange (a copy).
func (m *Membership) Owned() []int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.owned)
}

// Settled reports whether the member owns every partition it wants, as of
// its last round: not while another member (or a dead one's lease) still
// holds one it is due, nor before its first round.
func (m *Membership) Settled() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.wanted == nil {
		return false
	}
	for _, p := range m.wanted {
		if !slices.Contains(m.owned, p) {
			return false
		}
	}
	return true
}

// Leave stops heartbeating, reports an empty set through onChange (unless
// the last report was already empty), releases all leases and deletes the
// member key. Safe to call twice; the second call does nothing. If ctx ends
// while onChange is still running, Leave returns ctx's error without
// releasing anything (the leases then expire).
func (m *Membership) Leave(ctx context.Context) error {
	m.leaveMu.Lock()
	defer m.leaveMu.Unlock()
	if m.left {
		return nil
	}
	m.cancel()
	select {
	case <-m.done:
	case <-ctx.Done():
		return fmt.Errorf("bus: membership: leave: %w", ctx.Err())
	}
	m.left = true
	var errs []error
	for _, p := range sortedKeys(m.leases) {
		l := m.leases[p]
		delete(m.leases, p)
		err := m.kv.Delete(ctx, leaseKey(p), jetstream.LastRevision(l.rev))
		if err != nil && !errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			errs = append(errs, fmt.Errorf("release partition %d: %w", p, err))
		}
	}
	if err := m.kv.Delete(ctx, m.memberKey()); err != nil {
		errs = append(errs, fmt.Errorf("delete member key: %w", err))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("bus: membership: leave: %w", err)
	}
	m.log.Info("left")
	return nil
}

func (m *Membership) run(ctx context.Context) {
	var watching sync.WaitGroup
	defer close(m.done)
	defer watching.Wait()
	watching.Go(func() { m.watch(ctx) })
	ticker := time.NewTicker(m.interval)
	defer ticker.Stop()
	expiry := time.NewTimer(time.Hour)
	defer expiry.Stop()
	for {
		m.round(ctx)
		// Wake up when a lease is about to lapse, even between ticks.
		if next, ok := m.nextExpiry(); ok {
			expiry.Reset(max(time.Until(next), time.Millisecond))
		} else {
			expiry.Reset(time.Hour)
		}
		select {
		case <-ctx.Done():
			// We no longer renew: stop using every partition now. The leases
			// stay in m.leases for Leave to release once onChange returned.
			m.leasesToReport(nil)
			close(m.reports)
			<-m.reported
			return
		case <-ticker.C:
		case <-m.nudge:
		case <-expiry.C:
		}
	}
}

// watch nudges the run loop when the group changes: a member key appears or
// any key is deleted (a member left, a lease was released) or expires (a
// marker, when the server supports them). It is only a speed-up: without
// limit markers expiry by TTL produces no watch event, so the run loop also
// lists the members on every tick.
func (m *Membership) watch(ctx context.Context) {
	w, err := m.kv.WatchAll(ctx, jetstream.UpdatesOnly(), jetstream.MetaOnly())
	if err != nil {
		m.log.Warn("watch failed; relying on polling", "err", err)
		return
	}
	defer func() { _ = w.Stop() }()
	seen := map[string]bool{}
	for {
		select {
		case <-ctx.Done():
			return
		case e, ok := <-w.Updates():
			if !ok {
				return
			}
			if e == nil {
				continue
			}
			key := e.Key()
			switch e.Operation() {
			case jetstream.KeyValueDelete, jetstream.KeyValuePurge:
				delete(seen, key)
			default:
				if !strings.HasPrefix(key, memberKeyPrefix) || key == m.memberKey() || seen[key] {
					continue
				}
				if len(seen) > 4096 {
					clear(seen)
				}
				seen[key] = true
			}
			select {
			case m.nudge <- struct{}{}:
			default:
			}
		}
	}
}

// round heartbeats, renews the leases, and moves towards the desired
// partitions.
func (m *Membership) round(ctx context.Context) {
	if ctx.Err() != nil {
		return
	}
	m.dropExpired(ctx)
	// No step may block past the first lease's validity: it must be reported
	// lost in time.
	deadline := time.Now().Add(m.interval)
	if next, ok := m.nextExpiry(); ok && next.Before(deadline) {
		deadline = next
	}
	rctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()

	if _, err := m.kv.Put(rctx, m.memberKey(), []byte(m.id)); err != nil {
		m.log.Warn("heartbeat failed", "err", err)
	}
	lost := false
	for _, p := range sortedKeys(m.leases) {
		if !m.renew(rctx, p) {
			lost = true
		}
	}
	if lost {
		m.report()
	}
	m.dropExpired(ctx)

	members, err := m.listMembers(rctx)
	if err != nil {
		m.log.Warn("listing members failed", "err", err)
		m.report() // at least the first report
		return
	}
	desired := m.desired(members)
	for _, p := range desired {
		if _, held := m.leases[p]; !held {
			m.acquire(rctx, p)
		}
	}
	m.mu.Lock()
	m.wanted = append([]int{}, desired...)
	m.mu.Unlock()
	for p, l := range m.leases {
		switch due := slices.Contains(desired, p); {
		case !due && l.givenUp == 0:
			l.givenUp = m.generation + 1 // the report below is the first without it
		case due && l.givenUp != 0:
			l.givenUp = 0 // due again before it was released: kept
		}
	}
	m.report()
	// The caller stops the given-up partitions' workers inside onChange;
	// only once it has returned are the leases given back.
	var release []int
	releaseRev := map[int]uint64{}
	applied := m.applied.Load()
	for _, p := range sortedKeys(m.leases) {
		if l := m.leases[p]; l.givenUp != 0 && l.givenUp <= applied {
			release = append(release, p)
			releaseRev[p] = l.rev
			delete(m.leases, p)
		}
	}
	if len(release) > 0 {
		dctx, cancel := context.WithTimeout(ctx, m.interval)
		defer cancel()
		for _, p := range release {
			if err := m.kv.Delete(dctx, leaseKey(p), jetstream.LastRevision(releaseRev[p])); err != nil {
				m.log.Warn("releasing a lease failed; it will expire", "partition", p, "err", err)
			}
		}
		m.log.Info("released partitions", "partitions", release, "members", len(members))
	}
}

// renew refreshes lease p and reports whether it is still held. A renewal
// that fails without an answer (timeout, disconnected) keeps the lease until
// its validity runs out.
func (m *Membership) renew(ctx context.Context, p int) bool {
	l := m.leases[p]
	sent := time.Now()
	rev, err := m.kv.Update(ctx, leaseKey(p), []byte(m.id), l.rev)
	if err == nil {
		l.rev, l.validUntil = rev, sent.Add(m.validity)
		return true
	}
	if !errors.Is(err, jetstream.ErrKeyRevisionMismatch) && !errors.Is(err, jetstream.ErrKeyNotFound) {
		m.log.Warn("renewing a lease failed; retrying", "partition", p, "err", err, "valid_for", time.Until(l.validUntil))
		return true
	}
	// The revision moved. If the latest revision still carries our id, it is
	// an earlier renewal of ours whose answer was lost (only this member
	// writes its id, and only by renewing or creating), so nobody else held
	// the lease in between: take it up again.
	if rev, ok := m.reclaim(ctx, p, sent); ok {
		l.rev, l.validUntil = rev, sent.Add(m.validity)
		return true
	}
	m.log.Warn("lost a lease", "partition", p, "err", err)
	delete(m.leases, p)
	return false
}

// acquire tries to take lease p.
func (m *Membership) acquire(ctx context.Context, p int) {
	sent := time.Now()
	rev, err := m.kv.Create(ctx, leaseKey(p), []byte(m.id))
	if err == nil {
		m.leases[p] = &lease{rev: rev, validUntil: sent.Add(m.validity)}
		return
	}
	if !errors.Is(err, jetstream.ErrKeyExists) {
		m.log.Warn("acquiring a lease failed", "partition", p, "err", err)
		return
	}
	// Held by someone else, or by us through a Create whose answer was lost.
	if rev, ok := m.reclaim(ctx, p, sent); ok {
		m.leases[p] = &lease{rev: rev, validUntil: sent.Add(m.validity)}
	}
}

// reclaim renews lease p if its latest revision carries our id.
func (m *Membership) reclaim(ctx context.Context, p int, sent time.Time) (uint64, bool) {
	e, err := m.kv.Get(ctx, leaseKey(p))
	if err != nil || e.Operation() != jetstream.KeyValuePut || string(e.Value()) != m.id {
		return 0, false
	}
	rev, err := m.kv.Update(ctx, leaseKey(p), []byte(m.id), e.Revision())
	if err != nil {
		return 0, false
	}
	m.log.Info("took up a lease of ours again", "partition", p, "sent", sent)
	return rev, true
}

// dropExpired reports lost the leases whose validity ran out, then gives
// them back if they are still ours.
func (m *Membership) dropExpired(ctx context.Context) {
	now := time.Now()
	expired := map[int]uint64{}
	for p, l := range m.leases {
		if !now.Before(l.validUntil) {
			expired[p] = l.rev
			delete(m.leases, p)
		}
	}
	if len(expired) == 0 {
		return
	}
	m.log.Warn("leases could not be renewed in time; stopping them", "partitions", sortedKeys(expired))
	m.report()
	dctx, cancel := context.WithTimeout(ctx, m.interval)
	defer cancel()
	for _, p := range sortedKeys(expired) {
		_ = m.kv.Delete(dctx, leaseKey(p), jetstream.LastRevision(expired[p]))
	}
}

func (m *Membership) nextExpiry() (time.Time, bool) {
	var next time.Time
	for _, l := range m.leases {
		if next.IsZero() || l.validUntil.Before(next) {
			next = l.validUntil
		}
	}
	return next, !next.IsZero()
}

// listMembers returns the sorted ids of the live members, always including
// this one. It fails rather than return a partial list.
func (m *Membership) listMembers(ctx context.Context) ([]string, error) {
	w, err := m.kv.WatchFiltered(ctx, []string{memberKeyPrefix + ">"}, jetstream.IgnoreDeletes(), jetstream.MetaOnly())
	if err != nil {
		return nil, err
	}
	defer func() { _ = w.Stop() }()
	ids := []string{m.id}
	for {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case e, ok := <-w.Updates():
			if !ok {
				return nil, errors.New("member listing closed")
			}
			if e == nil {
				slices.Sort(ids)
				return slices.Compact(ids), nil
			}
			ids = append(ids, strings.TrimPrefix(e.Key(), memberKeyPrefix))
		}
	}
}

// desired returns the partitions this member should own among the members.
func (m *Membership) desired(members []string) []int {
	i := slices.Index(members, m.id)
	var ps []int
	for p := i; p < m.opts.Partitions; p += len(members) {
		ps = append(ps, p)
	}
	return ps
}

// report hands onChange the leases held and not given up, if that set
// changed (or never was reported).
func (m *Membership) report() {
	var owned []int
	for _, p := range sortedKeys(m.leases) {
		if m.leases[p].givenUp == 0 {
			owned = append(owned, p)
		}
	}
	m.leasesToReport(owned)
}

// leasesToReport queues owned for onChange if it differs from the last
// report; a report still queued is replaced, as it is out of date.
func (m *Membership) leasesToReport(owned []int) {
	if owned == nil {
		owned = []int{}
	}
	if !m.first && slices.Equal(owned, m.lastReport) {
		return
	}
	m.first = false
	m.lastReport = owned
	m.generation++
	select {
	case <-m.reports:
	default:
	}
	m.reports <- ownedReport{owned: slices.Clone(owned), generation: m.generation}
}

// callOnChange calls onChange with each report, one at a time, and wakes
// the run loop to release what it no longer reports.
func (m *Membership) callOnChange() {
	defer close(m.reported)
	for r := range m.reports {
		m.mu.Lock()
		m.owned = slices.Clone(r.owned)
		m.mu.Unlock()
		m.log.Info("owned partitions", "partitions", r.owned)
		m.onChange(r.owned)
		m.applied.Store(r.generation)
		select {
		case m.nudge <- struct{}{}:
		default:
		}
	}
}

func (m *Membership) memberKey() string { return memberKeyPrefix + m.id }

func leaseKey(p int) string { return leaseKeyPrefix + strconv.Itoa(p) }

func sortedKeys[V any](mp map[int]V) []int {
	ks := make([]int, 0, len(mp))
	for k := range mp {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

func validToken(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-') {
			return false
		}
	}
	return true
}

func defaultMemberID() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "host"
	}
	host = strings.Map(func(r rune) rune {
		if validToken(string(r)) {
			return r
		}
		return '_'
	}, host)
	var b [4]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("%s-%d-%s", host, os.Getpid(), hex.EncodeToString(b[:]))
}
