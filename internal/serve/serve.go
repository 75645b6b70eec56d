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
	"time"

	"github.com/nats-io/nats.go"
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
	cfg       config.Config
	role      Role
	logger    *slog.Logger
	Metrics   *telemetry.Metrics
	Bus       *bus.Bus
	Store     *clickhouse.Store
	Processor *processor.Manager
	listener  net.Listener
	http      *http.Server
	wg        sync.WaitGroup
	errc      chan error
	cancel    context.CancelFunc
}

// Start brings up the parts of role and returns once they serve. Stop ends
// them.
func Start(ctx context.Context, cfg config.Config, role Role, logger *slog.Logger) (*Server, error) {
	// One slot per part that can fail (HTTP, processor, layout watch, bus
	// connection), so that none blocks on reporting.
	s := &Server{cfg: cfg, role: role, logger: logger, Metrics: telemetry.New(), errc: make(chan error, 4)}
	ok := false
	defer func() {
		if !ok {
			s.Stop(context.Background())
		}
	}()
	var err error
	s.Bus, err = bus.Open(ctx, BusOptions(cfg, logger))
	if err != nil {
		return nil, err
	}
	// Background work outlives Start's ctx, until Stop.
	bg, cancel := context.WithCancel(context.WithoutCancel(ctx))
	s.cancel = cancel
	s.wg.Add(1)
	go s.watchBus(bg)
	// Watched before it is checked, so that no change slips in between.
	if err := s.watchLayout(bg); err != nil {
		return nil, err
	}
	// Before anything is published, processed or written: under another
	// partition count than the bus's, both would rewrite history.
	if err := checkLayout(ctx, s.Bus.JS, cfg.Processor.Partitions, role); err != nil {
		return nil, err
	}
	if role != RoleCollector {
		s.Store, err = clickhouse.Open(ctx, cfg.ClickHouseDSN, logger)
		if err != nil {
			return nil, err
		}
		s.Store.OnCluster(cfg.ClickHouse.Cluster)
		if err := Migrate(ctx, s.Bus, s.Store, cfg.NATS.Replicas); err != nil {
			return nil, err
		}
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", s.healthz)
	mux.HandleFunc("GET /readyz", s.readyz)
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.Metrics.Registry, promhttp.HandlerOpts{}))
	if role != RoleProcessor {
		if err := s.mountCollectors(mux); err != nil {
			return nil, err
		}
	}
	if role != RoleCollector {
		popts, err := ProcessorOptions(cfg)
		if err != nil {
			return nil, err
		}
		s.Processor = processor.NewManager(s.Bus.JS, s.Store, popts, s.Metrics, logger)
	}
	s.listener, err = net.Listen("tcp", cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("serve: listen %s: %w", cfg.Listen, err)
	}
	s.http = webhook.NewServer(cfg.Listen, mux)
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		if err := s.http.Serve(s.listener); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.errc <- fmt.Errorf("serve: http: %w", err)
		}
	}()
	if role != RoleCollector {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			if err := s.Processor.Run(bg); err != nil {
				s.errc <- err
			}
		}()
		select {
		case <-s.Processor.Ready():
		case err := <-s.errc:
			return nil, err
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	ok = true
	logger.Info("doraflow serving", "role", role, "addr", s.Addr(), "nats", natsDesc(cfg.NATSURL), "clickhouse", config.Redacted(cfg.ClickHouseDSN))
	return s, nil
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
	return bus.WithLock(ctx, b.JS, "migrations."+store.Database(), replicas, func(ctx context.Context) error {
		_, err := store.Migrate(ctx)
		return err
	})
}

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

// watchLayout ends the server, through Err, when the bus is re-laid out
// under it (a replay re-partitioning it): whatever this process published
// or processed from then on would go to the wrong partitions.
func (s *Server) watchLayout(ctx context.Context) error {
	layouts, err := bus.WatchLayout(ctx, s.Bus.JS)
	if err != nil {
		return err
	}
	configured := s.cfg.Processor.Partitions
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for l := range layouts {
			if !fits(l, configured, s.role) {
				s.errc <- fmt.Errorf("serve: the bus was re-laid out under this process: %w",
					&PartitionsError{Recorded: l.Partitions, Configured: configured, Repartitioning: l.Repartitioning})
				return
			}
		}
	}()
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

// watchBus reports a bus connection closed for good as a fatal error: the
// collectors would answer 503 and the processor stand still until the
// process is restarted, so it had better exit (and be restarted).
func (s *Server) watchBus(ctx context.Context) {
	defer s.wg.Done()
	select {
	case <-s.Bus.Lost():
		s.errc <- s.Bus.LostErr()
	case <-ctx.Done():
	}
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
	return bus.Options{URL: cfg.NATSURL, DataDir: cfg.DataDir, MaxPayload: cfg.Collector.MaxBodyBytes + headerRoom,
		Replicas: cfg.NATS.Replicas, Limits: bus.Limits{Raw: limit(raw), Events: limit(events), DeadLetter: limit(deadLetter)}, Logger: logger}
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
		Budget: webhook.NewBudget(s.cfg.Collector.MaxInflightBytes),
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
	return nil
}

func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	var problems []error
	if err := s.Bus.Ready(ctx); err != nil {
		problems = append(problems, err)
	}
	if s.Store != nil {
		if err := s.Store.Ready(ctx); err != nil {
			problems = append(problems, err)
		}
	}
	// A processor is ready once the workers it owns have rebuilt their
	// state and consume.
	if s.Processor != nil && s.Processor.Rebuilding() {
		problems = append(problems, errors.New("processor: rebuilding its state"))
	}
	if err := errors.Join(problems...); err != nil {
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
		return
	}
	_, _ = w.Write([]byte("ready\n"))
}

// Addr is the address the HTTP server listens on.
func (s *Server) Addr() string {
	if s.listener == nil {
		return ""
	}
	return s.listener.Addr().String()
}

// Err delivers the first fatal error of a running part.
func (s *Server) Err() <-chan error { return s.errc }

// Stop shuts the HTTP server down (finishing requests in flight), stops the
// processor and closes the bus and store. Safe on a partly started Server.
func (s *Server) Stop(ctx context.Context) {
	if s.http != nil {
		_ = s.http.Shutdown(ctx)
	}
	if s.cancel != nil {
		s.cancel()
	}
	s.wg.Wait()
	if s.Bus != nil {
		s.Bus.Close()
	}
	if s.Store != nil {
		_ = s.Store.Close()
	}
}

// WaitIdle waits until the processor has processed everything on the bus.
func (s *Server) WaitIdle(ctx context.Context) error {
	if s.Processor == nil {
		return errors.New("serve: no processor in this role")
	}
	for {
		idle, err := s.Processor.Idle(ctx)
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
