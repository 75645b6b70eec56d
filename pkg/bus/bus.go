// Package bus connects doraflow to NATS JetStream: an embedded in-process
// server when no URL is configured, an external server or cluster otherwise,
// with the same code path after connecting.
package bus

import (
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Streams and subjects (contract for other consumers, see README "The bus").
const (
	RawStream     = "DORAFLOW_RAW"
	RawSubjects   = "doraflow.raw.>"
	EventStream   = "DORAFLOW_EVENTS"
	EventSubjects = "doraflow.events.>"
	// DeadLetterStream keeps messages the processor could not use, with the
	// reason, for a person to look at (and replay after a fix).
	DeadLetterStream   = "DORAFLOW_DLQ"
	DeadLetterSubjects = "doraflow.dlq.>"

	// StateBucket is the object store holding processor state snapshots,
	// one object per consumer.
	StateBucket = "doraflow_state"

	// PayloadBucket is the object store holding the data of messages too
	// large for the connection's max_payload (a 25 MB push on a server that
	// takes 1 MB); the message on the stream then references it (see
	// PublishAll and Data).
	PayloadBucket = "doraflow_payloads"

	// DuplicateWindow is how long JetStream drops a re-published Nats-Msg-Id.
	// Webhook senders retry within hours; beyond the window the processor's
	// own idempotence takes over.
	DuplicateWindow = 24 * time.Hour
)

// Headers set on every message.
const (
	HeaderSource     = "Doraflow-Source"
	HeaderEvent      = "Doraflow-Event" // the source's own event name (raw archive)
	HeaderDelivery   = "Doraflow-Delivery"
	HeaderReceivedAt = "Doraflow-Received-At"
	// On dead letters: why, and where the message came from.
	HeaderReason          = "Doraflow-Reason"
	HeaderOriginalSubject = "Doraflow-Original-Subject"
	HeaderOriginalSeq     = "Doraflow-Original-Sequence"
)

// Options says where the bus is.
type Options struct {
	// URL of an external NATS server or cluster; empty starts an embedded one.
	URL string
	// DataDir holds the embedded server's JetStream files.
	DataDir string
	// Port for the embedded server to listen on: 0 for in-process only, -1
	// for a random free port (so another process can connect).
	Port int
	// Token, when set, is the token a client of the embedded server must
	// present: the loopback listener of `serve` is not open to every local
	// user. ClientURL carries it.
	Token string
	// Replicas of each stream; 1 for a single node, 3 on a cluster.
	Replicas int
	// Limits bound what the raw archive, the event stream and the
	// dead-letter stream keep; zero keeps everything.
	Limits Limits
	// MaxPayload is the largest message the embedded server takes; 0
	// keeps NATS's default (1 MB). It is capped at maxEmbeddedPayload:
	// larger messages go by reference (see PublishAll), as they do on an
	// external server whose limit is lower.
	MaxPayload int64
	// Auth is how to authenticate to the external server at URL.
	Auth Auth
	// MaxStore bounds the embedded server's JetStream file storage, in
	// bytes; 0 leaves JetStream's default (most of the disk).
	MaxStore int64
	Logger   *slog.Logger
}

// Auth is how doraflow authenticates to an external NATS server, as
// nats.go supports it: at most one of user and password, a token, an NKey
// seed file or a .creds file; and TLS.
type Auth struct {
	User, Password string
	Token          string
	NKeySeedFile   string
	CredsFile      string
	TLS            *TLS
}

// TLS is a TLS connection's settings: the CA file that signed the server's
// certificate (empty: the system's roots), a client certificate and key,
// and the name the server's certificate must bear.
type TLS struct {
	CAFile, CertFile, KeyFile string
	ServerName                string
}

// options are a's connection options.
func (a Auth) options() ([]nats.Option, error) {
	var opts []nats.Option
	if a.User != "" {
		opts = append(opts, nats.UserInfo(a.User, a.Password))
	}
	if a.Token != "" {
		opts = append(opts, nats.Token(a.Token))
	}
	if a.NKeySeedFile != "" {
		o, err := nats.NkeyOptionFromSeed(a.NKeySeedFile)
		if err != nil {
			// The error names the file, never the seed.
			return nil, fmt.Errorf("bus: nkey seed file %s: %w", a.NKeySeedFile, err)
		}
		opts = append(opts, o)
	}
	if a.CredsFile != "" {
		opts = append(opts, nats.UserCredentials(a.CredsFile))
	}
	if t := a.TLS; t != nil {
		// Secure first: it sets the TLS configuration the others fill in.
		opts = append(opts, nats.Secure(&tls.Config{ServerName: t.ServerName, MinVersion: tls.VersionTLS12}))
		if t.CAFile != "" {
			opts = append(opts, nats.RootCAs(t.CAFile))
		}
		if t.CertFile != "" {
			opts = append(opts, nats.ClientCert(t.CertFile, t.KeyFile))
		}
	}
	return opts, nil
}

// maxEmbeddedPayload is NATS's default max_pending, which max_payload may
// not exceed.
const maxEmbeddedPayload = 64 << 20

// Bus is a connection to JetStream and, when embedded, the server behind it.
type Bus struct {
	Conn   *nats.Conn
	JS     jetstream.JetStream
	server *server.Server
	token  string

	// closing is set by Close, so that its own closing of the connection
	// is not taken for a lost one.
	closing  atomic.Bool
	lost     chan struct{}
	lostOnce sync.Once
	lostErr  error // written before lost is closed
}

// Open connects to the bus, starting the embedded server if needed, and makes
// sure doraflow's streams exist.
func Open(ctx context.Context, opts Options) (*Bus, error) {
	b := &Bus{lost: make(chan struct{}), token: opts.Token}
	logger := opts.Logger
	if logger == nil {
		logger = slog.Default()
	}
	// NATS does not reconnect after some protocol errors (a control line
	// over its limit, an unknown -ERR): the connection is then closed for
	// good, and only a new process gets a new one. Lost says so.
	conOpts := []nats.Option{
		nats.Name("doraflow"),
		nats.ClosedHandler(func(c *nats.Conn) {
			if b.closing.Load() {
				return
			}
			b.lostOnce.Do(func() {
				b.lostErr = fmt.Errorf("bus: connection closed for good: %w", cmp.Or(c.LastError(), errors.New("closed by the server")))
				logger.Error("bus connection lost", "err", b.lostErr)
				close(b.lost)
			})
		}),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			logger.Warn("bus error", "err", err)
		}),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				logger.Warn("bus disconnected", "err", err)
			}
		}),
		nats.ReconnectHandler(func(c *nats.Conn) { logger.Info("bus reconnected", "url", c.ConnectedUrlRedacted()) }),
	}
	var err error
	if opts.URL == "" {
		b.server, err = startEmbedded(opts)
		if err != nil {
			return nil, err
		}
		if opts.Token != "" {
			conOpts = append(conOpts, nats.Token(opts.Token))
		}
		b.Conn, err = nats.Connect(b.server.ClientURL(), append(conOpts, nats.InProcessServer(b.server))...)
	} else {
		auth, aerr := opts.Auth.options()
		if aerr != nil {
			b.Close()
			return nil, aerr
		}
		b.Conn, err = connectExternal(ctx, opts.URL, append(append(conOpts, auth...), nats.MaxReconnects(-1)))
	}
	if err != nil {
		b.Close()
		return nil, fmt.Errorf("bus: connect: %w", err)
	}
	b.JS, err = jetstream.New(b.Conn)
	if err != nil {
		b.Close()
		return nil, fmt.Errorf("bus: jetstream: %w", err)
	}
	if err := EnsureStreams(ctx, b.JS, max(opts.Replicas, 1), opts.Limits); err != nil {
		b.Close()
		return nil, err
	}
	return b, nil
}

// connectRetry is how long a start waits between attempts to reach an
// external server that does not answer.
const connectRetry = time.Second

// connectExternal connects to an external server, retrying while it is
// not reachable (until ctx is done), and failing at once on what a retry
// cannot cure: credentials refused, a certificate not trusted. Once
// connected, the connection reconnects on its own (MaxReconnects -1).
func connectExternal(ctx context.Context, url string, opts []nats.Option) (*nats.Conn, error) {
	for {
		nc, err := nats.Connect(url, opts...)
		if err == nil {
			return nc, nil
		}
		if permanentConnectError(err) {
			return nil, err
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("%w (still not reachable when the start gave up: %w)", err, ctx.Err())
		case <-time.After(connectRetry):
		}
	}
}

// permanentConnectError reports whether a failed connect would fail again
// the same way: the server refused the credentials, or TLS failed.
func permanentConnectError(err error) bool {
	if errors.Is(err, nats.ErrAuthorization) || errors.Is(err, nats.ErrAuthExpired) || errors.Is(err, nats.ErrAuthRevoked) ||
		errors.Is(err, nats.ErrSecureConnRequired) || errors.Is(err, nats.ErrSecureConnWanted) || errors.Is(err, nats.ErrNkeysNotSupported) {
		return true
	}
	var unknownCA x509.UnknownAuthorityError
	var hostname x509.HostnameError
	var invalid x509.CertificateInvalidError
	var recordHeader tls.RecordHeaderError
	if errors.As(err, &unknownCA) || errors.As(err, &hostname) || errors.As(err, &invalid) || errors.As(err, &recordHeader) {
		return true
	}
	msg := strings.ToLower(err.Error())
	return strings.Contains(msg, "authorization violation") || strings.Contains(msg, "tls:") || strings.Contains(msg, "x509:") ||
		strings.Contains(msg, "loading") || strings.Contains(msg, "parsing") || strings.Contains(msg, "no such file")
}

func startEmbedded(opts Options) (*server.Server, error) {
	sopts := &server.Options{
		ServerName: "doraflow-embedded",
		JetStream:  true,
		StoreDir:   filepath.Join(opts.DataDir, "jetstream"),
		NoSigs:     true,
		NoLog:      true,
	}
	if opts.Token != "" {
		sopts.Authorization = opts.Token
	}
	if opts.MaxStore > 0 {
		sopts.JetStreamMaxStore = opts.MaxStore
	}
	if opts.MaxPayload > 0 {
		sopts.MaxPayload = int32(min(opts.MaxPayload, maxEmbeddedPayload))
	}
	switch opts.Port {
	case 0:
		sopts.DontListen = true
	default:
		sopts.Host = "127.0.0.1"
		sopts.Port = opts.Port
	}
	ns, err := server.NewServer(sopts)
	if err != nil {
		return nil, fmt.Errorf("bus: embedded server: %w", err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(30 * time.Second) {
		ns.Shutdown()
		return nil, errors.New("bus: embedded server not ready after 30s")
	}
	return ns, nil
}

// Limits bound the streams that grow with the deliveries.
type Limits struct {
	Raw, Events, DeadLetter StreamLimit
}

// StreamLimit is how long and how much a stream keeps: older messages (or,
// past MaxBytes, the oldest) are discarded. Zero is no limit.
type StreamLimit struct {
	MaxAge   time.Duration
	MaxBytes int64
}

func (l StreamLimit) apply(cfg *jetstream.StreamConfig) {
	cfg.MaxAge = l.MaxAge
	cfg.MaxBytes = -1
	if l.MaxBytes > 0 {
		cfg.MaxBytes = l.MaxBytes
	}
}

// EnsureStreams creates or updates the streams, object stores and buckets
// doraflow uses, with the replicas and limits given.
func EnsureStreams(ctx context.Context, js jetstream.JetStream, replicas int, limits Limits) error {
	streams := []jetstream.StreamConfig{
		{
			Name:        RawStream,
			Description: "raw webhook deliveries, kept to re-derive facts (replay)",
			Subjects:    []string{RawSubjects},
			Storage:     jetstream.FileStorage,
			Duplicates:  DuplicateWindow,
			Replicas:    replicas,
		},
		{
			Name:        EventStream,
			Description: "canonical doraflow events",
			Subjects:    []string{EventSubjects},
			Storage:     jetstream.FileStorage,
			Duplicates:  DuplicateWindow,
			Replicas:    replicas,
		},
		{
			Name:        DeadLetterStream,
			Description: "messages the processor could not use, with the reason",
			Subjects:    []string{DeadLetterSubjects},
			Storage:     jetstream.FileStorage,
			Replicas:    replicas,
		},
	}
	limits.Raw.apply(&streams[0])
	limits.Events.apply(&streams[1])
	limits.DeadLetter.apply(&streams[2])
	for _, cfg := range streams {
		if _, err := js.CreateOrUpdateStream(ctx, cfg); err != nil {
			return fmt.Errorf("bus: stream %s: %w", cfg.Name, replicasHint(err, replicas))
		}
		if err := awaitReplicas(ctx, js, cfg.Name, replicas); err != nil {
			return err
		}
	}
	for _, cfg := range []jetstream.ObjectStoreConfig{
		{
			Bucket:      StateBucket,
			Description: "processor state snapshots: a restart folds only the events after them",
			Storage:     jetstream.FileStorage,
			Replicas:    replicas,
		},
		{
			Bucket:      PayloadBucket,
			Description: "data of messages too large for the connection's max_payload, named by their SHA-256",
			Storage:     jetstream.FileStorage,
			Replicas:    replicas,
		},
	} {
		if _, err := js.CreateOrUpdateObjectStore(ctx, cfg); err != nil {
			return fmt.Errorf("bus: object store %s: %w", cfg.Bucket, replicasHint(err, replicas))
		}
		if err := awaitReplicas(ctx, js, "OBJ_"+cfg.Bucket, replicas); err != nil {
			return err
		}
	}
	return ensureProcessorStreams(ctx, js, replicas)
}

// replicasWait bounds how long a start waits for a stream's copies.
const replicasWait = 30 * time.Second

// awaitReplicas waits until the stream has a leader and every other copy is
// current. Right after a stream gains replicas the cluster moves it to a
// new peer set, and a publish in that moment can go unanswered.
func awaitReplicas(ctx context.Context, js jetstream.JetStream, name string, replicas int) error {
	if replicas <= 1 {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, replicasWait)
	defer cancel()
	for {
		stream, err := js.Stream(ctx, name)
		if err == nil && replicasCurrent(stream.CachedInfo(), replicas) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("bus: stream %s: %d replicas not all current after %s (last error: %v): are %d JetStream nodes up?", name, replicas, replicasWait, err, replicas)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func replicasCurrent(info *jetstream.StreamInfo, replicas int) bool {
	if info.Cluster == nil || info.Cluster.Leader == "" || len(info.Cluster.Replicas) < replicas-1 {
		return false
	}
	for _, r := range info.Cluster.Replicas {
		if !r.Current {
			return false
		}
	}
	return true
}

// replicasHint says which setting to change when the server refuses the
// replicas asked for: a single server holds one copy, a cluster at most as
// many as it has nodes.
func replicasHint(err error, replicas int) error {
	if replicas <= 1 || !strings.Contains(strings.ToLower(err.Error()), "replica") {
		return err
	}
	return fmt.Errorf("%w (nats.replicas is %d: the server must be a JetStream cluster of at least %d nodes; set nats.replicas, DORAFLOW_NATS_REPLICAS, to 1 on a single server)", err, replicas, replicas)
}

// ClientURL is where another process can connect to the embedded server,
// with its token if it has one (empty when the bus is external or the
// server does not listen).
func (b *Bus) ClientURL() string {
	if b.server == nil || b.server.Addr() == nil {
		return ""
	}
	u := b.server.ClientURL()
	if b.token != "" {
		u = strings.Replace(u, "://", "://"+url.User(b.token).String()+"@", 1)
	}
	return u
}

// Ready reports whether the bus answers.
func (b *Bus) Ready(ctx context.Context) error {
	if !b.Conn.IsConnected() {
		return fmt.Errorf("bus: not connected (%s)", b.Conn.Status())
	}
	if _, err := b.JS.AccountInfo(ctx); err != nil {
		return fmt.Errorf("bus: %w", err)
	}
	return nil
}

// Lost is closed when the connection is closed for good by anything but
// Close; LostErr then says why. A process should stop (and be restarted by
// its supervisor) rather than answer 503 forever.
func (b *Bus) Lost() <-chan struct{} { return b.lost }

// LostErr is why the connection was lost, once Lost is closed; else nil.
func (b *Bus) LostErr() error {
	select {
	case <-b.lost:
		return b.lostErr
	default:
		return nil
	}
}

// Close drains the connection and stops the embedded server. Safe on a
// partly opened Bus.
func (b *Bus) Close() {
	b.closing.Store(true)
	if b.Conn != nil {
		_ = b.Conn.Drain()
		b.Conn.Close()
	}
	if b.server != nil {
		b.server.Shutdown()
		b.server.WaitForShutdown()
	}
}

// PublishAll publishes every message and returns once JetStream has
// acknowledged all of them, or the first error. Messages should carry a
// Nats-Msg-Id so that a retry after a partial failure is deduplicated. A
// message too large for the connection is stored in PayloadBucket first
// and published as a reference to it (see Data).
func PublishAll(ctx context.Context, js jetstream.JetStream, msgs []*nats.Msg) error {
	futures := make([]jetstream.PubAckFuture, 0, len(msgs))
	for _, m := range msgs {
		m, err := fit(ctx, js, m)
		if err != nil {
			return err
		}
		f, err := publishAsync(ctx, js, m)
		if err != nil {
			return fmt.Errorf("bus: publish %s: %w", m.Subject, err)
		}
		futures = append(futures, f)
	}
	for i, f := range futures {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			return fmt.Errorf("bus: publish %s: %w", msgs[i].Subject, err)
		case <-ctx.Done():
			return fmt.Errorf("bus: publish %s: %w", msgs[i].Subject, ctx.Err())
		}
	}
	return nil
}

// publishAsync publishes m asynchronously. The client holds a bounded
// number of publishes awaiting acknowledgement (4,000 by default) and
// refuses one more once no slot frees within its stall wait (200 ms): on a
// busy server that is backpressure, not a failure, so publishAsync waits
// for a slot for as long as ctx allows. Otherwise a PublishAll of more
// messages than the bound fails whenever the server is slow, and fails
// again on every retry while it stays slow (a processor's rebuild
// republishes tens of thousands of links at once).
func publishAsync(ctx context.Context, js jetstream.JetStream, m *nats.Msg) (jetstream.PubAckFuture, error) {
	for {
		f, err := js.PublishMsgAsync(m)
		if !errors.Is(err, jetstream.ErrTooManyStalledMsgs) {
			return f, err
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("waiting for acknowledgements: %w", ctx.Err())
		}
	}
}

// Publish publishes one message as PublishAll does and returns JetStream's
// acknowledgement.
func Publish(ctx context.Context, js jetstream.JetStream, m *nats.Msg) (*jetstream.PubAck, error) {
	m, err := fit(ctx, js, m)
	if err != nil {
		return nil, err
	}
	ack, err := js.PublishMsg(ctx, m)
	if err != nil {
		return nil, fmt.Errorf("bus: publish %s: %w", m.Subject, err)
	}
	return ack, nil
}

// Token makes s safe as one subject token.
func Token(s string) string {
	if s == "" {
		return "_"
	}
	return strings.Map(func(r rune) rune {
		switch r {
		case '.', '*', '>', ' ', '\t', '\r', '\n':
			return '_'
		}
		return r
	}, s)
}

// EventSubject is the subject of a canonical event of the given type in a
// partition: doraflow.events.<partition>.<type>.
func EventSubject(partition int, typ string) string {
	return fmt.Sprintf("doraflow.events.%d.%s", partition, Token(typ))
}

// RawSubject is the archive subject of a delivery:
// doraflow.raw.<source>.<kind>, the kind one of the source's fixed names for
// its event types (never the event type as sent: see collectors/webhook).
func RawSubject(source, kind string) string {
	return "doraflow.raw." + Token(source) + "." + Token(kind)
}

// JetStream's error codes for a server or account out of storage or
// memory (nats-server errors.json).
const (
	codeInsufficientResources = 10023
	codeMemoryExceeded        = 10028
	codeStorageExceeded       = 10047
)

// IsLimit reports whether err is JetStream refusing a publish because it
// is at its limits: out of storage or memory, or a stream that discards
// new messages full. Retrying at once cannot help; the sender should come
// back later.
func IsLimit(err error) bool {
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) {
		switch apiErr.ErrorCode {
		case codeInsufficientResources, codeMemoryExceeded, codeStorageExceeded:
			return true
		}
	}
	if err == nil {
		return false
	}
	msg := err.Error()
	for _, s := range []string{"insufficient resources", "insufficient storage", "maximum bytes exceeded", "maximum messages exceeded", "resource limits exceeded"} {
		if strings.Contains(msg, s) {
			return true
		}
	}
	return false
}

// StorageFull reports, as an error, whether JetStream has no room left to
// store a message of the largest size the connection takes: the account's
// storage limit (nearly) reached, or (embedded) the server's. JetStream
// refuses a message that would pass the limit, so the use stays below it:
// what matters is whether the next message fits. nil when there is room or
// no limit is known.
func (b *Bus) StorageFull(ctx context.Context) error {
	info, err := b.JS.AccountInfo(ctx)
	if err != nil {
		return fmt.Errorf("bus: %w", err)
	}
	room := b.Conn.MaxPayload()
	if max := info.Limits.MaxStore; max > 0 && max-int64(info.Store) < room {
		return fmt.Errorf("bus: JetStream storage full: the account stores %d bytes of its limit of %d", info.Store, max)
	}
	if b.server != nil {
		if js, err := b.server.Jsz(nil); err == nil && js.Config.MaxStore > 0 && js.Config.MaxStore-int64(js.Store) < room {
			return fmt.Errorf("bus: JetStream storage full: the embedded server stores %d bytes of its limit of %d", js.Store, js.Config.MaxStore)
		}
	}
	return nil
}
