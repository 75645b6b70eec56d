// Package webhook is the HTTP plumbing every collector shares: body limits,
// authentication, parsing into canonical events, publishing to JetStream and
// waiting for the acknowledgements, and mapping each failure to the status a
// webhook sender understands. A source only says how to authenticate,
// identify and parse its deliveries.
package webhook

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/doraflow/doraflow/pkg/bus"
	"github.com/doraflow/doraflow/pkg/event"
	"github.com/doraflow/doraflow/pkg/telemetry"
)

// Delivery is one authenticated webhook request.
type Delivery struct {
	Source string
	Event  string // the source's own name for the event type, checked by CheckEventType
	// Kind is Event's name in subjects and metric labels: one of the
	// source's fixed set (see Source.Kind). Parsers do not use it.
	Kind       string
	ID         string // the source's delivery id, stable across its retries
	Header     http.Header
	Body       []byte
	ReceivedAt time.Time
}

// Source is what a collector knows about its webhooks.
type Source interface {
	// Name is the source's name: the path segment and the metrics label.
	Name() string
	// Authenticate checks the request's credentials against its body and
	// returns the payload (the body, or the JSON inside a form-encoded one).
	Authenticate(h http.Header, body []byte) ([]byte, error)
	// Identify names the event type and the delivery id. A source whose
	// sender gives no delivery id may return "", and the body's hash is used.
	Identify(h http.Header, body []byte) (eventType, deliveryID string, err error)
	// Kind maps an event type, as Identify names it, to one of a fixed set
	// of names, the source's vocabulary: the types it parses and those it
	// knows but does not use. Only these names reach subjects and metric
	// labels, since the event type comes from the sender (often from a
	// header no signature covers). "" means the type is not known: the
	// delivery is answered as ignored and published nowhere.
	Kind(eventType string) string
	// Parse turns a delivery into canonical events. It must be pure. An error
	// wrapping ErrIgnored means the delivery is fine but carries nothing
	// doraflow uses.
	Parse(d Delivery) ([]event.Event, error)
}

// ErrIgnored marks a delivery that is accepted (2xx) but not used.
var ErrIgnored = errors.New("ignored")

// IgnoredError says why a delivery is not used. Reason is a short fixed
// phrase: it becomes a metrics label.
type IgnoredError struct{ Reason string }

func (e *IgnoredError) Error() string { return "ignored: " + e.Reason }

// Is makes errors.Is(err, ErrIgnored) hold.
func (e *IgnoredError) Is(target error) bool { return target == ErrIgnored }

// Ignored is the error a source returns for a delivery it does not use.
func Ignored(reason string) error { return &IgnoredError{Reason: reason} }

// Publisher publishes messages and returns once all are acknowledged.
type Publisher interface {
	Publish(ctx context.Context, msgs []*nats.Msg) error
}

// PublisherFunc adapts a function to Publisher.
type PublisherFunc func(ctx context.Context, msgs []*nats.Msg) error

// Publish calls f.
func (f PublisherFunc) Publish(ctx context.Context, msgs []*nats.Msg) error { return f(ctx, msgs) }

// Options are the limits the plumbing enforces.
type Options struct {
	MaxBodyBytes   int64
	PublishTimeout time.Duration
	Partitions     int
	// Budget bounds the body bytes held by all the handlers that share it
	// (one per process); nil bounds nothing.
	Budget *Budget
	// Retention is the processor's retention.keep: the events of a
	// delivery that all happened before it are not published, so they
	// yield no fact. The delivery is still archived (a longer retention
	// and a replay can use it), answered as ignored, counted, and logged at
	// most once an hour per source through RetentionLog. 0 checks nothing.
	Retention    time.Duration
	RetentionLog *Throttle
	// Pressure bounds the deliveries publishing at once over the handlers
	// that share it (one per process), and refuses deliveries while
	// JetStream is at its limits; nil bounds nothing.
	Pressure *Pressure
}

// Metric label values for event types that are not one of a source's
// kinds.
const (
	// LabelUnknown: the request was answered before its event type was
	// read (wrong method, too large, not authenticated).
	LabelUnknown = "unknown"
	// LabelOther: an event type the source does not know, or not a valid
	// one.
	LabelOther = "other"
)

// MaxEventTypeBytes bounds an event type. The longest real ones are
// versioned CDEvents types (dev.cdevents.testsuiterun.finished.0.2.0, 42
// bytes).
const MaxEventTypeBytes = 128

// CheckEventType refuses an event type no source sends: empty, longer than
// MaxEventTypeBytes, or with characters other than ASCII letters, digits,
// space (GitLab's "Push Hook") and . _ - : /. What it lets through is kept
// in the raw archive's headers, for replay.
func CheckEventType(typ string) error {
	if typ == "" {
		return errors.New("event type is empty")
	}
	if len(typ) > MaxEventTypeBytes {
		return fmt.Errorf("event type is %d bytes, longer than %d", len(typ), MaxEventTypeBytes)
	}
	for i := 0; i < len(typ); i++ {
		if !eventTypeByte(typ[i]) {
			return fmt.Errorf("event type %q has the character %q; only letters, digits, space and . _ - : / are allowed", typ, typ[i])
		}
	}
	return nil
}

func eventTypeByte(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte(" ._-:/", c) >= 0
}

// validKind reports whether a source's kind can be a subject token (after
// bus.Token) and a label: a short name of letters, digits, space, . _ -.
func validKind(kind string) bool {
	if kind == "" || len(kind) > 64 {
		return false
	}
	for i := 0; i < len(kind); i++ {
		if c := kind[i]; !eventTypeByte(c) || c == ':' || c == '/' {
			return false
		}
	}
	return true
}

// Kinds is a fixed vocabulary of event types, for a Source.Kind that maps
// each known type to itself.
type Kinds map[string]bool

// NewKinds is the vocabulary of names.
func NewKinds(names ...string) Kinds {
	k := make(Kinds, len(names))
	for _, n := range names {
		k[n] = true
	}
	return k
}

// Of is typ when it is one of k, else "".
func (k Kinds) Of(typ string) string {
	if k[typ] {
		return typ
	}
	return ""
}

// Handler serves one source's webhooks.
type Handler struct {
	src     Source
	pub     Publisher
	opts    Options
	metrics *telemetry.Metrics
	logger  *slog.Logger
	now     func() time.Time
}

// NewHandler returns the http.Handler for src.
func NewHandler(src Source, pub Publisher, opts Options, metrics *telemetry.Metrics, logger *slog.Logger) *Handler {
	return &Handler{src: src, pub: pub, opts: opts, metrics: metrics,
		logger: logger.With("component", "collector", "source", src.Name()), now: time.Now}
}

// answer is the JSON body of every reply.
type answer struct {
	Status string `json:"status"`
	Events int    `json:"events,omitempty"`
	Reason string `json:"reason,omitempty"`
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := h.now()
	label := LabelUnknown
	code, ans := h.serve(r, &label)
	h.metrics.Requests.WithLabelValues(h.src.Name(), label, strconv.Itoa(code)).Inc()
	h.metrics.RequestDuration.WithLabelValues(h.src.Name()).Observe(time.Since(start).Seconds())
	w.Header().Set("Content-Type", "application/json")
	if code == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", "5")
	}
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(ans)
}

// serve answers r. label becomes the event type's metrics label once the
// type is known.
func (h *Handler) serve(r *http.Request, label *string) (int, answer) {
	if r.Method != http.MethodPost {
		return http.StatusMethodNotAllowed, answer{Status: "error", Reason: "use POST"}
	}
	body, held, err := readBody(r, h.opts.MaxBodyBytes, h.opts.Budget)
	defer h.opts.Budget.give(held)
	if err != nil {
		var tooBig *http.MaxBytesError
		switch {
		case errors.As(err, &tooBig):
			return http.StatusRequestEntityTooLarge, answer{Status: "error",
				Reason: fmt.Sprintf("body over the limit of %d bytes", h.opts.MaxBodyBytes)}
		case errors.Is(err, errBusy):
			h.metrics.Errors.WithLabelValues("collector", "busy").Inc()
			return http.StatusServiceUnavailable, answer{Status: "error",
				Reason: "too many request bytes in flight (collector.max_inflight_bytes), retry later"}
		}
		return http.StatusBadRequest, answer{Status: "error", Reason: "reading body: " + err.Error()}
	}
	body, err = h.src.Authenticate(r.Header, body)
	if err != nil {
		h.logger.Warn("webhook refused", "reason", err, "remote", r.RemoteAddr)
		return http.StatusUnauthorized, answer{Status: "error", Reason: err.Error()}
	}
	typ, id, err := h.src.Identify(r.Header, body)
	if err != nil {
		return http.StatusBadRequest, answer{Status: "error", Reason: err.Error()}
	}
	*label = LabelOther
	if err := CheckEventType(typ); err != nil {
		return http.StatusBadRequest, answer{Status: "error", Reason: h.src.Name() + ": " + err.Error()}
	}
	kind := h.src.Kind(typ)
	if kind != "" && !validKind(kind) {
		// A source's vocabulary is a fixed list: this is a bug in it.
		h.logger.Error("source names an event kind that cannot be a subject token or label; treated as unknown", "kind", kind)
		kind = ""
	}
	if kind == "" {
		// Nothing is published: an unknown type must not reach a subject.
		const reason = "event type not known"
		h.metrics.Ignored.WithLabelValues(h.src.Name(), LabelOther, reason).Inc()
		return http.StatusOK, answer{Status: "ignored", Reason: reason}
	}
	*label = kind
	if err := checkJSON(body); err != nil {
		return http.StatusBadRequest, answer{Status: "error", Reason: err.Error()}
	}
	if id == "" {
		sum := sha256.Sum256(body)
		id = hex.EncodeToString(sum[:16])
	}
	d := Delivery{Source: h.src.Name(), Event: typ, Kind: kind, ID: id, Header: r.Header, Body: body, ReceivedAt: h.now().UTC()}
	events, parseErr := h.src.Parse(d)
	ignored := errors.Is(parseErr, ErrIgnored)
	if parseErr != nil && !ignored {
		return http.StatusBadRequest, answer{Status: "error", Reason: parseErr.Error()}
	}
	for i := range events {
		if err := events[i].Validate(); err != nil {
			return http.StatusBadRequest, answer{Status: "error", Reason: err.Error()}
		}
	}
	ctx, cancel := context.WithTimeout(r.Context(), h.opts.PublishTimeout)
	defer cancel()
	// Events from before the retention would make facts the processor no
	// longer recomputes (or not, depending on what else it holds): only
	// the raw delivery is archived, so that the outcome is the same every
	// time, and a longer retention and a replay can still use it.
	newest, old := h.beforeRetention(events, d.ReceivedAt)
	published := events
	if old {
		published = nil
	}
	msgs, err := Messages(d, published, h.opts.Partitions)
	if err != nil {
		return http.StatusInternalServerError, answer{Status: "error", Reason: err.Error()}
	}
	if err := h.opts.Pressure.acquire(); err != nil {
		h.metrics.Errors.WithLabelValues("collector", "backpressure").Inc()
		return http.StatusServiceUnavailable, answer{Status: "error", Reason: err.Error()}
	}
	err = h.pub.Publish(ctx, msgs)
	h.opts.Pressure.record(err)
	h.opts.Pressure.release()
	if err != nil {
		if bus.IsLimit(err) {
			h.metrics.Errors.WithLabelValues("collector", "bus limits").Inc()
			h.logger.Warn("JetStream refused the delivery for its limits; sender will retry", "delivery", id, "err", err)
			return http.StatusServiceUnavailable, answer{Status: "error", Reason: "the event bus is at its limits (JetStream storage full), retry later"}
		}
		h.metrics.Errors.WithLabelValues("collector", "publish").Inc()
		h.logger.Error("publish failed; sender will retry", "delivery", id, "err", err)
		return http.StatusServiceUnavailable, answer{Status: "error", Reason: "event bus unavailable, retry later"}
	}
	if ignored {
		h.metrics.Ignored.WithLabelValues(h.src.Name(), kind, ignoreReason(parseErr)).Inc()
		return http.StatusOK, answer{Status: "ignored", Reason: parseErr.Error()}
	}
	if old {
		h.metrics.Ignored.WithLabelValues(h.src.Name(), kind, ReasonOlderThanRetention).Inc()
		if h.opts.RetentionLog.Allow(h.src.Name(), d.ReceivedAt) {
			h.logger.Warn("delivery older than the processor's retention: archived, but no fact is derived from it (logged once an hour per source; doraflow_webhook_ignored_total counts them)",
				"delivery", id, "occurred_at", newest, "retention_keep", h.opts.Retention)
		}
		return http.StatusOK, answer{Status: "ignored", Reason: fmt.Sprintf("%s: it happened at %s, more than processor.retention.keep (%s) ago; archived, but no fact is derived from it",
			ReasonOlderThanRetention, newest.Format(time.RFC3339), h.opts.Retention)}
	}
	for _, e := range events {
		h.metrics.Published.WithLabelValues(e.Source, string(e.Type)).Inc()
	}
	return http.StatusAccepted, answer{Status: "accepted", Events: len(events)}
}

// ReasonOlderThanRetention is the ignored reason of a delivery whose events
// all happened before the processor's retention.
const ReasonOlderThanRetention = "older than retention"

// beforeRetention reports whether every event happened longer than the
// retention before now, and the newest event's time.
func (h *Handler) beforeRetention(events []event.Event, now time.Time) (time.Time, bool) {
	if h.opts.Retention <= 0 || len(events) == 0 {
		return time.Time{}, false
	}
	var newest time.Time
	for _, e := range events {
		if e.OccurredAt.After(newest) {
			newest = e.OccurredAt
		}
	}
	return newest, newest.Before(now.Add(-h.opts.Retention))
}

// Throttle lets through one occurrence per key and interval: a log line
// about something that may repeat with every delivery.
type Throttle struct {
	every time.Duration
	mu    sync.Mutex
	last  map[string]time.Time
}

// NewThrottle lets one occurrence per key through every interval.
func NewThrottle(every time.Duration) *Throttle {
	return &Throttle{every: every, last: map[string]time.Time{}}
}

// Allow reports whether key's occurrence at now goes through. A nil
// Throttle lets everything through.
func (t *Throttle) Allow(key string, now time.Time) bool {
	if t == nil {
		return true
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if last, ok := t.last[key]; ok && now.Sub(last) < t.every {
		return false
	}
	t.last[key] = now
	return true
}

func ignoreReason(err error) string {
	var ig *IgnoredError
	if errors.As(err, &ig) {
		return ig.Reason
	}
	return "ignored"
}

// Budget bounds the request body bytes that all handlers sharing it hold
// at once. A signature can be checked only once the body is read, so
// without it any sender, authenticated or not, could make the collector
// hold as many 25 MB bodies as it opens connections.
type Budget struct {
	limit int64
	used  atomic.Int64
}

// NewBudget returns a Budget of limit bytes.
func NewBudget(limit int64) *Budget { return &Budget{limit: limit} }

// take reserves n bytes, or reports that they would go over the limit.
func (b *Budget) take(n int64) bool {
	if b == nil {
		return true
	}
	for {
		used := b.used.Load()
		if used+n > b.limit {
			return false
		}
		if b.used.CompareAndSwap(used, used+n) {
			return true
		}
	}
}

// give returns n bytes taken before.
func (b *Budget) give(n int64) {
	if b != nil && n != 0 {
		b.used.Add(-n)
	}
}

// errBusy: reading the body would go over the process's budget.
var errBusy = errors.New("request bytes in flight over the budget")

// readBodyStep is how a body of unknown length (chunked) grows at first.
const readBodyStep = 64 << 10

// readBody reads the body, within limit, into a buffer whose bytes it takes
// from budget before reading into it: a declared Content-Length at once
// (nothing is read if it does not fit), a body of unknown length as its
// buffer grows. held is what to give back once the body is no longer used,
// also after an error.
func readBody(r *http.Request, limit int64, budget *Budget) (body []byte, held int64, err error) {
	if r.ContentLength > limit {
		return nil, 0, &http.MaxBytesError{Limit: limit}
	}
	rd := http.MaxBytesReader(nil, r.Body, limit)
	if r.ContentLength >= 0 {
		if !budget.take(r.ContentLength) {
			return nil, 0, errBusy
		}
		body = make([]byte, r.ContentLength)
		if _, err := io.ReadFull(rd, body); err != nil {
			return nil, r.ContentLength, err
		}
		return body, r.ContentLength, nil
	}
	for {
		if len(body) == cap(body) {
			// Doubling, up to the limit and one byte more: what
			// MaxBytesReader needs to tell that the limit is passed.
			grow := max(min(int64(max(cap(body), readBodyStep)), limit+1-int64(len(body))), 1)
			if !budget.take(grow) {
				return nil, held, errBusy
			}
			held += grow
			body = slices.Grow(body, int(grow))
		}
		n, err := rd.Read(body[len(body):cap(body)])
		body = body[:len(body)+n]
		if errors.Is(err, io.EOF) {
			return body, held, nil
		}
		if err != nil {
			return nil, held, err
		}
	}
}

// checkJSON reports where a body stops being JSON.
func checkJSON(body []byte) error {
	if json.Valid(body) {
		return nil
	}
	var v json.RawMessage
	if err := json.Unmarshal(body, &v); err != nil {
		return fmt.Errorf("malformed JSON body: %w", err)
	}
	return errors.New("malformed JSON body")
}

// Messages are what a delivery puts on the bus: its raw body for the archive
// (on its kind's subject; the event type itself is a header, for replay),
// then each canonical event. Ids make every message idempotent.
func Messages(d Delivery, events []event.Event, partitions int) ([]*nats.Msg, error) {
	received := d.ReceivedAt.Format(time.RFC3339Nano)
	raw := nats.NewMsg(bus.RawSubject(d.Source, d.Kind))
	raw.Data = d.Body
	raw.Header.Set(nats.MsgIdHdr, d.Source+":"+d.ID)
	raw.Header.Set(bus.HeaderSource, d.Source)
	raw.Header.Set(bus.HeaderEvent, d.Event)
	raw.Header.Set(bus.HeaderDelivery, d.ID)
	raw.Header.Set(bus.HeaderReceivedAt, received)
	for _, name := range archivedHeaders {
		if v := d.Header.Get(name); v != "" {
			raw.Header.Set(name, v)
		}
	}
	msgs := []*nats.Msg{raw}
	for _, e := range events {
		m, err := EventMessage(e, d.ID, d.ReceivedAt, partitions)
		if err != nil {
			return nil, err
		}
		msgs = append(msgs, m)
	}
	return msgs, nil
}

// EventMessage is the bus message of a canonical event: on its partition's
// subject, with the event id as Nats-Msg-Id.
func EventMessage(e event.Event, delivery string, received time.Time, partitions int) (*nats.Msg, error) {
	data, err := json.Marshal(e)
	if err != nil {
		return nil, fmt.Errorf("webhook: encode event %s: %w", e.ID, err)
	}
	m := nats.NewMsg(bus.EventSubject(event.Partition(e.Key(), partitions), string(e.Type)))
	m.Data = data
	m.Header.Set(nats.MsgIdHdr, e.ID)
	m.Header.Set(bus.HeaderSource, e.Source)
	m.Header.Set(bus.HeaderDelivery, delivery)
	m.Header.Set(bus.HeaderReceivedAt, received.Format(time.RFC3339Nano))
	return m, nil
}

// ArchiveSource is the source name, in the raw archive, of canonical
// events that came from no webhook delivery (a backfill through a vendor's
// API): the archived body is the event itself, and replay keeps it as it
// is, since there is no vendor payload to parse again.
const ArchiveSource = "backfill"

// ArchivedEventMessage is the raw archive's copy of canonical event e from
// no webhook delivery, so that a replay, which rebuilds the event stream
// from the archive, keeps it. Publish it before e's EventMessage, as the
// collectors publish the raw delivery before its events.
func ArchivedEventMessage(e event.Event, delivery string, received time.Time) (*nats.Msg, error) {
	data, err := json.Marshal(e)
	if err != nil {
		return nil, fmt.Errorf("webhook: encode event %s: %w", e.ID, err)
	}
	m := nats.NewMsg(bus.RawSubject(ArchiveSource, string(e.Type)))
	m.Data = data
	m.Header.Set(nats.MsgIdHdr, ArchiveSource+":"+e.ID)
	m.Header.Set(bus.HeaderSource, ArchiveSource)
	m.Header.Set(bus.HeaderEvent, string(e.Type))
	m.Header.Set(bus.HeaderDelivery, delivery)
	m.Header.Set(bus.HeaderReceivedAt, received.Format(time.RFC3339Nano))
	return m, nil
}

// ParseArchivedEvent reads back an ArchivedEventMessage's body.
func ParseArchivedEvent(body []byte) (event.Event, error) {
	var e event.Event
	if err := json.Unmarshal(body, &e); err != nil {
		return event.Event{}, fmt.Errorf("webhook: archived event: %w", err)
	}
	if err := e.Validate(); err != nil {
		return event.Event{}, fmt.Errorf("webhook: archived event: %w", err)
	}
	return e, nil
}

// archivedHeaders are kept with the raw body: what a parser may need on
// replay. Signatures and tokens are not kept.
var archivedHeaders = []string{"Content-Type", "User-Agent", "X-GitHub-Event", "X-GitHub-Hook-ID",
	"X-Gitlab-Event", "X-Gitlab-Instance", "X-Webhook-Subscription", "Ce-Type", "Ce-Source", "Ce-Id", "Ce-Specversion"}

// NewServer is an http.Server with timeouts that bound slow clients
// (slowloris) while leaving room for a 25 MB body on a slow link.
func NewServer(addr string, h http.Handler) *http.Server {
	return &http.Server{
		Addr:              addr,
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       2 * time.Minute,
		WriteTimeout:      2 * time.Minute,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
	}
}
