// Package serve assembles doraflow's components — bus, collectors,
// processor, store, HTTP — for `doraflow serve`, `doraflow demo` and the
// end-to-end tests, so they all run the same thing.
package serve

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/oklog/run"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/doraflow/doraflow/collectors/github"
	"github.com/doraflow/doraflow/collectors/gitlab"
	"github.com/doraflow/doraflow/collectors/webhook"
	"github.com/doraflow/doraflow/pkg/bus"
	"github.com/doraflow/doraflow/pkg/config"
	"github.com/doraflow/doraflow/pkg/telemetry"
	"github.com/doraflow/doraflow/processor"
	"github.com/doraflow/doraflow/processor/correlate"
	"github.com/doraflow/doraflow/sinks/clickhouse"
)

// Role says which parts run in this process.
type Role string

const (
	RoleAll       Role = "all"
	RoleCollector Role = "collector"
	RoleProcessor Role = "processor"
)

// ParseRole checks a --role value.
func ParseRole(s string) (Role, error) {
	switch r := Role(s); r {
	case RoleAll, RoleCollector, RoleProcessor:
		return r, nil
	}
	return "", fmt.Errorf("role %q: want all, collector or processor", s)
}

// Server is a running doraflow.
type Server struct {
	cfg      config.Config
	role     Role
	logger   *slog.Logger
	Metrics  *telemetry.Metrics
	Bus      *bus.Bus
	pressure *webhook.Pressure
	// store and processor are set once ClickHouse answers, which may be
	// after Start returned (see connectStore).
	store     atomic.Pointer[clickhouse.Store]
	processor atomic.Pointer[processor.Manager]
	// storeDown is why ClickHouse was last not reachable, while the
	// processor waits for it; nil once it is.
	storeDown atomic.Pointer[storeWait]
	listener  net.Listener
	admin     net.Listener
	servers   []*http.Server
	// parts are the actors of the running parts (oklog/run, as Prometheus
	// wires its own): the first to end stops the others, except the HTTP
	// servers, which Stop shuts down (so that /healthz can answer 503
	// after a part failed, until the process exits).
	parts    run.Group
	running  bool          // parts were started
	stopping chan struct{} // closed by Stop: the stop actor ends
	stopOnce sync.Once
	finished chan struct{} // closed once every part has ended
	errc     chan error    // the first part's error, as soon as it fails
	failOnce sync.Once
	cancel   context.CancelFunc
	routes   []Route
	localURL string // the embedded bus's URL recorded in the data dir
}

// storeWait is what /readyz says while the processor waits for ClickHouse.
type storeWait struct {
	err     error
	attempt int
	next    time.Duration
}

// Store is the fact store, once ClickHouse answered (nil before, and in a
// collector).
func (s *Server) Store() *clickhouse.Store { return s.store.Load() }

// Processor is the processor, once ClickHouse answered (nil before, and in
// a collector).
func (s *Server) Processor() *processor.Manager { return s.processor.Load() }

// Start brings up the parts of role and returns once they serve. Stop ends
// them. A processor whose ClickHouse does not answer at start does not hold
// the collectors up: it retries with backoff in the background, and says
// so in the log and on /readyz.
func Start(ctx context.Context, cfg config.Config, role Role, logger *slog.Logger) (*Server, error) {
	s := &Server{cfg: cfg, role: role, logger: logger, Metrics: telemetry.New(), errc: make(chan error, 1),
		stopping: make(chan struct{}), finished: make(chan struct{}),
		pressure: webhook.NewPressure(cfg.Collector.MaxInflightPublishes)}
	// The stop actor first: Stop (and the caller's signal, see Run) ends
	// it, and with it every part; interrupts then go in the order added,
	// so the HTTP servers finish the requests in flight before the
	// processor and the watches are cancelled.
	s.parts.Add(func() error {
		<-s.stopping
		return nil
	}, func(error) { s.stopOnce.Do(func() { close(s.stopping) }) })
	ok := false
	defer func() {
		if !ok {
			s.Stop(context.Background())
		}
	}()
	for _, w := range cfg.Warnings() {
		logger.Warn("configuration: " + w)
	}
	bopts := BusOptions(cfg, logger)
	if cfg.NATSURL == "" {
		// The embedded server also listens on loopback, behind a token,
		// so that the other commands of this install (backfill) reach it.
		token, err := bus.NewToken()
		if err != nil {
			return nil, err
		}
		bopts.Port, bopts.Token = -1, token
	}
	var err error
	s.Bus, err = bus.Open(ctx, bopts)
	if err != nil {
		return nil, err
	}
	if u := s.Bus.ClientURL(); u != "" {
		if err := bus.WriteLocalURL(cfg.DataDir, u); err != nil {
			return nil, err
		}
		s.localURL = u
	}
	// Background work outlives Start's ctx, until Stop.
	bg, cancel := context.WithCancel(context.WithoutCancel(ctx))
	s.cancel = cancel
	// Watched before it is checked, so that no change slips in between.
	if err := s.watchLayout(bg); err != nil {
		return nil, err
	}
	// Before anything is published, processed or written: under another
	// partition count than the bus's, both would rewrite history.
	if err := checkLayout(ctx, s.Bus.JS, cfg.Processor.Partitions, role); err != nil {
		return nil, err
	}
	var popts processor.Options
	if role != RoleCollector {
		if popts, err = ProcessorOptions(cfg); err != nil {
			return nil, err
		}
	}
	mux := http.NewServeMux()
	admin := mux
	if cfg.AdminListen != "" {
		admin = http.NewServeMux()
	}
	admin.HandleFunc("GET /healthz", s.healthz)
	admin.HandleFunc("GET /readyz", s.readyz(role))
	admin.HandleFunc("GET /readyz/collector", s.readyz(RoleCollector))
	admin.HandleFunc("GET /readyz/processor", s.readyz(RoleProcessor))
	admin.Handle("GET /metrics", promhttp.HandlerFor(s.Metrics.Registry, promhttp.HandlerOpts{}))
	if role != RoleProcessor {
		if err := s.mountCollectors(mux); err != nil {
			return nil, err
		}
	}
	s.watchBus(bg)
	s.listener, err = net.Listen("tcp", cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("serve: listen %s: %w", cfg.Listen, err)
	}
	s.serveHTTP(s.listener, mux)
	if cfg.AdminListen != "" {
		s.admin, err = net.Listen("tcp", cfg.AdminListen)
		if err != nil {
			return nil, fmt.Errorf("serve: listen %s (admin_listen): %w", cfg.AdminListen, err)
		}
		s.serveHTTP(s.admin, admin)
	}
	if role != RoleCollector {
		if err := s.openStore(ctx); err != nil {
			if ctx.Err() != nil {
				return nil, err
			}
			wait := &storeWait{err: err, attempt: 1, next: storeRetryFirst}
			s.storeDown.Store(wait)
			logger.Warn("clickhouse not reachable at start: the processor retries with backoff; the collectors serve meanwhile",
				"err", err, "retry_in", wait.next)
			s.add(func() error { return s.connectStore(bg, popts) }, func(error) { cancel() })
			s.runParts()
		} else {
			p := s.newProcessor(popts)
			s.add(func() error { return p.Run(bg) }, func(error) { cancel() })
			s.runParts()
			select {
			case <-s.Processor().Ready():
			case err := <-s.errc:
				return nil, err
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
	}
	if !s.running {
		s.runParts()
	}
	ok = true
	logger.Info("doraflow serving", "role", role, "addr", s.Addr(), "admin", s.AdminAddr(), "nats", natsDesc(cfg.NATSURL), "clickhouse", config.Redacted(cfg.ClickHouseDSN))
	if role != RoleProcessor && len(s.routes) == 0 {
		logger.Warn("every source is disabled: no webhook is accepted; set a source's secret (see README \"Connect your sources\")")
	}
	return s, nil
}

// add adds a part: execute runs until it fails or interrupt stops it. The
// first failure goes to Err at once.
func (s *Server) add(execute func() error, interrupt func(error)) {
	s.parts.Add(func() error {
		err := execute()
		if err != nil {
			s.failOnce.Do(func() {
				s.logger.Error("a part failed: the others stop", "err", err)
				s.errc <- err
			})
		}
		return err
	}, interrupt)
}

// runParts starts the parts added.
func (s *Server) runParts() {
	s.running = true
	go func() {
		defer close(s.finished)
		_ = s.parts.Run() // its error went to Err as it happened
	}()
}

// httpShutdown bounds how long the HTTP servers finish the requests in
// flight once the parts stop.
const httpShutdown = 30 * time.Second

// serveHTTP adds the part serving h on ln.
func (s *Server) serveHTTP(ln net.Listener, h http.Handler) {
	srv := webhook.NewServer(ln.Addr().String(), h)
	s.servers = append(s.servers, srv)
	s.add(func() error {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("serve: http %s: %w", ln.Addr(), err)
		}
		return nil
	}, func(err error) {
		// A part failed: serve /healthz's 503 until Stop shuts the server
		// down. Anything else ends this part (the stop actor first).
		if err == nil {
			ctx, cancel := context.WithTimeout(context.Background(), httpShutdown)
			defer cancel()
			_ = srv.Shutdown(ctx)
		}
	})
}

// openStore connects to ClickHouse and applies the migrations.
func (s *Server) openStore(ctx context.Context) error {
	store, err := clickhouse.Open(ctx, s.cfg.ClickHouseDSN, s.logger)
	if err != nil {
		return err
	}
	store.OnCluster(s.cfg.ClickHouse.Cluster)
	if err := Migrate(ctx, s.Bus, store, s.cfg.NATS.Replicas); err != nil {
		_ = store.Close()
		return err
	}
	s.store.Store(store)
	s.warnUnmatchedGlobs(ctx, store)
	return nil
}

// warnUnmatchedGlobs logs the team globs that match none of the
// repositories and services the store knows.
func (s *Server) warnUnmatchedGlobs(ctx context.Context, store *clickhouse.Store) {
	if len(s.cfg.Teams) == 0 {
		return
	}
	entities, err := store.Entities(ctx)
	if err != nil {
		s.logger.Warn("could not check the team globs against the repositories seen", "err", err)
		return
	}
	for _, w := range s.cfg.UnmatchedGlobs(entities) {
		s.logger.Warn("configuration: " + w)
	}
}

// The processor's retries while ClickHouse does not answer: doubling from
// the first to the last, which it keeps.
const (
	storeRetryFirst = time.Second
	storeRetryLast  = 30 * time.Second
)

// connectStore retries openStore with backoff until it succeeds or ctx is
// done, then runs the processor until ctx is done.
func (s *Server) connectStore(ctx context.Context, popts processor.Options) error {
	wait := s.storeDown.Load()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait.next):
		}
		attemptCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
		err := s.openStore(attemptCtx)
		cancel()
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return nil
		}
		wait = &storeWait{err: err, attempt: wait.attempt + 1, next: min(2*wait.next, storeRetryLast)}
		s.storeDown.Store(wait)
		s.logger.Warn("clickhouse still not reachable: the processor waits", "err", err, "attempt", wait.attempt, "retry_in", wait.next)
	}
	s.storeDown.Store(nil)
	s.logger.Info("clickhouse reachable: the processor starts", "attempts", wait.attempt+1)
	return s.newProcessor(popts).Run(ctx)
}

// newProcessor is the processor on the store, for Processor.
func (s *Server) newProcessor(popts processor.Options) *processor.Manager {
	store := newObservedStore(s.Store(), s.Metrics.CommittedAfterDeployment)
	p := processor.NewManager(s.Bus.JS, store, popts, s.Metrics, s.logger)
	s.processor.Store(p)
	return p
}

// Run serves role until ctx is done or a part fails, then stops it (within
// 30 s) and returns the failure, if any.
func Run(ctx context.Context, cfg config.Config, role Role, logger *slog.Logger) error {
	srv, err := Start(ctx, cfg, role, logger)
	if err != nil {
		return err
	}
	select {
	case <-ctx.Done():
	case err = <-srv.Err():
	}
	stopCtx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	srv.Stop(stopCtx)
	return err
}

// Migrate applies the store's migrations under a lock on the bus, so that of
// any number of processes starting together one runs them and the others
// find them applied.
func Migrate(ctx context.Context, b *bus.Bus, store *clickhouse.Store, replicas int) error {
	return bus.WithLock(ctx, b.JS, MigrationLock(store), replicas, func(ctx context.Context) error {
		_, err := store.Migrate(ctx)
		return err
	})
}

// MigrationLock names the lock on the bus under which store's migrations
// run, whichever command runs them.
func MigrationLock(store *clickhouse.Store) string { return "migrations." + store.Database() }

// ProcessorOptions are the processor's options from the configuration,
// with a compare API client for each Git host that has a token.
func ProcessorOptions(cfg config.Config) (processor.Options, error) {
	comparers := map[string]processor.Comparer{}
	if cfg.GitHub.Token != "" {
		c, err := github.NewComparer(cfg.GitHub.Token, cfg.GitHub.APIURL)
		if err != nil {
			return processor.Options{}, err
		}
		comparers["github"] = c
	}
	if cfg.GitLab.Token != "" {
		c, err := gitlab.NewComparer(cfg.GitLab.Token, cfg.GitLab.APIURL)
		if err != nil {
			return processor.Options{}, err
		}
		comparers["gitlab"] = c
	}
	return processor.Options{
		Correlate: correlate.Config{
			IsProduction:  cfg.IsProduction,
			TeamOfRepo:    cfg.TeamOfRepo,
			TeamOfService: cfg.TeamOfService,
			Lookback:      cfg.IncidentLookback,
			Retention:     correlate.Retention{Keep: cfg.Processor.Retention.Keep, Margin: cfg.Processor.Retention.Margin},
		},
		BatchSize:        cfg.Processor.BatchSize,
		FlushInterval:    cfg.Processor.FlushInterval,
		SnapshotInterval: cfg.Processor.SnapshotInterval,
		AckWait:          cfg.Processor.AckWait,
		Comparers:        comparers,
		Partitions:       cfg.Processor.Partitions,
		LeaseTTL:         cfg.Processor.LeaseTTL,
		Replicas:         cfg.NATS.Replicas,
	}, nil
}

// watchLayout adds the part that ends the server, through Err, when the
// bus is re-laid out under it (a replay re-partitioning it): whatever this
// process published or processed from then on would go to the wrong
// partitions.
func (s *Server) watchLayout(ctx context.Context) error {
	layouts, err := bus.WatchLayout(ctx, s.Bus.JS)
	if err != nil {
		return err
	}
	configured := s.cfg.Processor.Partitions
	s.add(func() error {
		for l := range layouts {
			if !fits(l, configured, s.role) {
				return fmt.Errorf("serve: the bus was re-laid out under this process: %w",
					&PartitionsError{Recorded: l.Partitions, Configured: configured, Repartitioning: l.Repartitioning})
			}
		}
		// The watch ends with its connection; the bus's own part says
		// when that is for good.
		<-ctx.Done()
		return nil
	}, func(error) { s.cancel() })
	return nil
}

// fits reports whether a process of role may run on a bus laid out as l: a
// collector may go on publishing while a replay keeps the count (what it
// publishes after the replay's start is kept), nothing else may.
func fits(l bus.Layout, configured int, role Role) bool {
	if l.Partitions != configured {
		return false
	}
	return l.Repartitioning == 0 || (role == RoleCollector && l.Repartitioning == configured)
}

// watchBus adds the part that reports a bus connection closed for good as
// a fatal error: the collectors would answer 503 and the processor stand
// still until the process is restarted, so it had better exit (and be
// restarted).
func (s *Server) watchBus(ctx context.Context) {
	s.add(func() error {
		select {
		case <-s.Bus.Lost():
			return s.Bus.LostErr()
		case <-ctx.Done():
			return nil
		}
	}, func(error) { s.cancel() })
}

// healthz says whether the process can do its work at all: not once its
// bus connection is closed for good.
func (s *Server) healthz(w http.ResponseWriter, _ *http.Request) {
	if err := s.Bus.LostErr(); err != nil {
		http.Error(w, err.Error()+"; the process must be restarted", http.StatusServiceUnavailable)
		return
	}
	_, _ = w.Write([]byte("ok\n"))
}

// headerRoom is what a raw delivery's message takes beside its body: the
// HTTP headers kept with it (at most webhook.NewServer's 64 KB) and
// doraflow's own.
const headerRoom = 1 << 20

// BusOptions are the bus options of cfg: the embedded server takes a raw
// delivery of the largest body allowed (an external server's own limit is
// read at connect; larger messages go by reference, see bus.PublishAll).
func BusOptions(cfg config.Config, logger *slog.Logger) bus.Options {
	raw, events, deadLetter := cfg.StreamLimits()
	limit := func(l config.StreamLimit) bus.StreamLimit {
		return bus.StreamLimit{MaxAge: l.MaxAge, MaxBytes: l.MaxBytes}
	}
	n := cfg.NATS
	auth := bus.Auth{User: n.User, Password: n.Password, Token: n.Token, NKeySeedFile: n.NKeySeedFile, CredsFile: n.CredsFile}
	if n.TLS.Set() {
		auth.TLS = &bus.TLS{CAFile: n.TLS.CAFile, CertFile: n.TLS.CertFile, KeyFile: n.TLS.KeyFile, ServerName: n.TLS.ServerName}
	}
	return bus.Options{URL: cfg.NATSURL, Auth: auth, DataDir: cfg.DataDir, MaxPayload: cfg.Collector.MaxBodyBytes + headerRoom,
		Replicas: cfg.NATS.Replicas, Limits: bus.Limits{Raw: limit(raw), Events: limit(events), DeadLetter: limit(deadLetter)}, Logger: logger}
}

// Dial connects a command other than serve to the bus of cfg: the
// external NATS when DORAFLOW_NATS_URL is set, else the embedded server of
// the serve running on the same data directory, through the loopback URL
// it records there (bus.LocalURLFile).
func Dial(ctx context.Context, cfg config.Config, logger *slog.Logger) (*bus.Bus, error) {
	opts := BusOptions(cfg, logger)
	if opts.URL == "" {
		u, err := bus.LocalURL(cfg.DataDir)
		if err != nil {
			return nil, err
		}
		opts.URL = u
	}
	return bus.Open(ctx, opts)
}

func natsDesc(url string) string {
	if url == "" {
		return "embedded"
	}
	return config.Redacted(url)
}

// mountCollectors serves each source that is configured; the others are
// refused (404) and said so once at start.
func (s *Server) mountCollectors(mux *http.ServeMux) error {
	opts := webhook.Options{
		MaxBodyBytes:   s.cfg.Collector.MaxBodyBytes,
		PublishTimeout: s.cfg.Collector.PublishTimeout,
		Partitions:     s.cfg.Processor.Partitions,
		// One budget for every source: it bounds the process.
		Budget:       webhook.NewBudget(s.cfg.Collector.MaxInflightBytes),
		Pressure:     s.pressure,
		Retention:    s.cfg.Processor.Retention.Keep,
		RetentionLog: webhook.NewThrottle(time.Hour),
	}
	pub := webhook.PublisherFunc(func(ctx context.Context, msgs []*nats.Msg) error {
		return bus.PublishAll(ctx, s.Bus.JS, msgs)
	})
	routes, off, err := Sources(s.cfg)
	if err != nil {
		return err
	}
	for _, d := range off {
		s.logger.Info("collector disabled: no secret configured (requests get 404)", "path", d.Path, "set", d.Setting)
	}
	for _, r := range routes {
		mux.Handle(r.Path, webhook.NewHandler(r.Source, pub, opts, s.Metrics, s.logger))
	}
	s.routes = routes
	return nil
}

// readyBudget bounds each of /readyz's checks, on its own: a stalled bus
// must not make ClickHouse look down, nor the other way round.
const readyBudget = 2 * time.Second

// readyz says whether the parts of role are ready, each check with its own
// budget and its own reason: the bus answers and has room (every role),
// ClickHouse answers and the processor consumes (a processor). A part role
// names that this process does not run is 404.
func (s *Server) readyz(role Role) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		collector, proc := role != RoleProcessor, role != RoleCollector
		if collector && s.role == RoleProcessor || proc && s.role == RoleCollector {
			http.Error(w, "this process does not run that part (--role "+string(s.role)+")", http.StatusNotFound)
			return
		}
		checks := []func(context.Context) error{s.busReady(collector)}
		if proc {
			checks = append(checks, s.storeReady, s.processorReady)
		}
		problems := make([]error, len(checks))
		var wg sync.WaitGroup
		for i, check := range checks {
			wg.Go(func() {
				ctx, cancel := context.WithTimeout(r.Context(), readyBudget)
				defer cancel()
				problems[i] = check(ctx)
			})
		}
		wg.Wait()
		if err := errors.Join(problems...); err != nil {
			http.Error(w, "not ready\n"+err.Error(), http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ready\n"))
	}
}

// busReady: the bus answers and has room to store; for a collector, also
// JetStream has not just refused its publishes for its limits.
func (s *Server) busReady(collector bool) func(context.Context) error {
	return func(ctx context.Context) error {
		if err := s.Bus.Ready(ctx); err != nil {
			return err
		}
		if err := s.Bus.StorageFull(ctx); err != nil {
			return err
		}
		if collector {
			return s.pressure.Limited()
		}
		return nil
	}
}

func (s *Server) storeReady(ctx context.Context) error {
	if w := s.storeDown.Load(); w != nil {
		return fmt.Errorf("clickhouse: not reachable (%d attempts, next in %s): %w", w.attempt, w.next, w.err)
	}
	store := s.Store()
	if store == nil {
		return errors.New("clickhouse: not connected yet")
	}
	return store.Ready(ctx)
}

// processorReady: the workers this process owns have rebuilt their state
// and consume.
func (s *Server) processorReady(context.Context) error {
	p := s.Processor()
	switch {
	case p == nil:
		return errors.New("processor: waiting for clickhouse")
	case p.Rebuilding():
		return errors.New("processor: rebuilding its state")
	}
	return nil
}

// Addr is the address the HTTP server listens on.
func (s *Server) Addr() string {
	if s.listener == nil {
		return ""
	}
	return s.listener.Addr().String()
}

// AdminAddr is where /metrics, /healthz and /readyz are served: Addr unless
// admin_listen is set.
func (s *Server) AdminAddr() string {
	if s.admin == nil {
		return s.Addr()
	}
	return s.admin.Addr().String()
}

// Err delivers the first error of a part that failed; the other parts
// are then stopped, but for the HTTP servers (/healthz says 503): Stop
// ends them and closes the bus and the store.
func (s *Server) Err() <-chan error { return s.errc }

// Stop shuts the HTTP servers down (finishing requests in flight, until
// ctx is done), stops the processor and closes the bus and store. Safe on
// a partly started Server, and after the parts stopped on their own.
func (s *Server) Stop(ctx context.Context) {
	if s.running {
		// The HTTP servers first, finishing the requests in flight while
		// the bus and the processor still work.
		for _, srv := range s.servers {
			_ = srv.Shutdown(ctx)
		}
		s.stopOnce.Do(func() { close(s.stopping) })
		select {
		case <-s.finished:
		case <-ctx.Done():
			// Past the caller's patience the requests in flight are cut.
			for _, srv := range s.servers {
				_ = srv.Close()
			}
			<-s.finished
		}
	} else {
		// Nothing was started: the listeners opened are closed here.
		for _, ln := range []net.Listener{s.listener, s.admin} {
			if ln != nil {
				_ = ln.Close()
			}
		}
	}
	if s.cancel != nil {
		s.cancel()
	}
	if s.localURL != "" {
		bus.RemoveLocalURL(s.cfg.DataDir, s.localURL)
	}
	if s.Bus != nil {
		s.Bus.Close()
	}
	if store := s.Store(); store != nil {
		_ = store.Close()
	}
}

// WaitIdle waits until the processor has processed everything on the bus.
func (s *Server) WaitIdle(ctx context.Context) error {
	if s.role == RoleCollector {
		return errors.New("serve: no processor in this role")
	}
	for {
		p := s.Processor()
		if p == nil {
			select {
			case <-ctx.Done():
				return fmt.Errorf("serve: waiting for the processor (clickhouse not reachable): %w", ctx.Err())
			case <-time.After(50 * time.Millisecond):
			}
			continue
		}
		idle, err := p.Idle(ctx)
		if err == nil && idle {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("serve: waiting for the processor: %w", ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}
