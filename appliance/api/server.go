// Package api is the appliance's REST interface on gofiber/fiber v2:
// publish (single, JSON array, NDJSON; idempotent; bounded backpressure),
// range reads and a server-sent-events live tail from the ring, status,
// node and cluster information, health probes, Prometheus metrics and an
// OpenAPI document. Every error is JSON: {"error": "..."}.
package api

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/gofiber/fiber/v2/middleware/adaptor"

	"github.com/badbatch/badbatch/appliance/metrics"
	"github.com/badbatch/badbatch/appliance/pipeline"
	"github.com/badbatch/badbatch/appliance/streams"
	"github.com/badbatch/badbatch/wasmhost"
)

// Limits are the settings that may change while the server runs (SIGHUP).
type Limits struct {
	PublishTokens  []string      // bearer tokens allowed to publish
	AdminTokens    []string      // bearer tokens allowed everything
	MaxBatch       int           // events per request
	ReadLimit      int           // events per GET / SSE read
	PublishTimeout time.Duration // bounded wait on a full ring before 429
	DefaultAck     string        // ack level when the request names none
}

// Check is one named health or readiness check.
type Check struct {
	Name   string `json:"name"`
	OK     bool   `json:"ok"`
	Detail string `json:"detail,omitempty"`
}

// Options configures a Server.
type Options struct {
	Pipeline     *pipeline.Pipeline
	Metrics      *metrics.Metrics
	Logger       *slog.Logger
	BodyLimit    int
	ReadTimeout  time.Duration
	WriteTimeout time.Duration
	IdleTimeout  time.Duration
	Limits       Limits
	// AckLevels lists the ack levels this node can honour (always "memory";
	// "durable" once a journal is wired, "processed" once handlers are).
	AckLevels []string
	// NodeInfo, ClusterNodes and Status add to the JSON of their endpoints.
	NodeInfo     func() any
	ClusterNodes func() any
	Status       func() any
	// ClusterStatus is the body of GET /api/v1/cluster/status.
	ClusterStatus func() any
	// Live and Ready report the probes' checks.
	Live  func() []Check
	Ready func() []Check
	// Durable, if set, waits until seq is durable (ack=durable); it must
	// return when ctx ends. DurableTimeout bounds that wait (default 10s).
	Durable        func(ctx context.Context, seq int64) error
	DurableTimeout time.Duration
	// Processor, if set, is the WASM stage ack=processed waits on (the
	// wait is bounded by DurableTimeout too).
	Processor Processor
	// Modules and ModulesDir serve the module endpoints; Streams (with
	// StreamKnown naming the streams that may be read before they exist)
	// the output stream endpoints. Without them those endpoints answer 404.
	Modules     *wasmhost.Registry
	ModulesDir  string
	Streams     *streams.Set
	StreamKnown func(name string) bool
	// DurableErr, if set, reports why durable acks cannot be given right
	// now (the journal's write or fsync is failing), nil while they can.
	// An ack=durable publish is then refused before anything is stored:
	// 507 when the cause is ENOSPC, 503 otherwise.
	DurableErr func() error
	// Sinks serves the sink endpoints (404 without it).
	Sinks SinksAPI
	// BacklogFull, if set, names the sink that keeps the journal at its
	// cap (on_backlog_full = "reject"), "" otherwise: publishes get 507.
	BacklogFull func() string
}

// Server is the HTTP front end.
type Server struct {
	app     *fiber.App
	opts    Options
	log     *slog.Logger
	p       *pipeline.Pipeline
	limits  atomic.Pointer[Limits]
	intake  sync.RWMutex // publishers hold R; StopIntake takes W
	closed  atomic.Bool
	done    chan struct{} // closed by StopIntake: ends live tails
	doneOne sync.Once
	pool    sync.Pool

	connMu sync.Mutex
	conns  map[*trackedConn]struct{} // open connections (see closeSilent)
}

// New builds the server and its routes.
func New(o Options) (*Server, error) {
	if o.Pipeline == nil || o.Metrics == nil {
		return nil, errors.New("api: pipeline and metrics are required")
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if len(o.AckLevels) == 0 {
		o.AckLevels = []string{"memory"}
	}
	if o.DurableTimeout <= 0 {
		o.DurableTimeout = 10 * time.Second
	}
	if slices.Contains(o.AckLevels, "durable") && o.Durable == nil {
		return nil, errors.New("api: ack level durable needs Options.Durable")
	}
	s := &Server{opts: o, log: o.Logger, p: o.Pipeline, done: make(chan struct{})}
	if err := s.SetLimits(o.Limits); err != nil {
		return nil, err
	}
	s.pool.New = func() any { return newScratch() }
	s.app = fiber.New(fiber.Config{
		AppName:               "badbatch",
		BodyLimit:             o.BodyLimit,
		ReadTimeout:           o.ReadTimeout,
		WriteTimeout:          o.WriteTimeout,
		IdleTimeout:           o.IdleTimeout,
		DisableStartupMessage: true,
		ErrorHandler:          s.errorHandler,
		// Keep HEAD out of the way; 405 comes from fiber's method check.
		DisableHeaderNormalizing: false,
	})
	s.conns = map[*trackedConn]struct{}{}
	s.routes()
	return s, nil
}

// App returns the fiber application (for tests and for adding routes, such
// as module endpoints, before Serve).
func (s *Server) App() *fiber.App { return s.app }

// SetLimits replaces the live limits (tokens, batch and read sizes, publish
// timeout, default ack). It refuses a default ack this node cannot honour.
func (s *Server) SetLimits(l Limits) error {
	if l.MaxBatch < 1 || l.ReadLimit < 1 {
		return fmt.Errorf("api: max batch (%d) and read limit (%d) must be at least 1", l.MaxBatch, l.ReadLimit)
	}
	if l.DefaultAck == "" {
		l.DefaultAck = "memory"
	}
	if !s.ackSupported(l.DefaultAck) {
		return fmt.Errorf("api: default ack %q is not available on this node (available: %v)", l.DefaultAck, s.opts.AckLevels)
	}
	l.PublishTokens = append([]string(nil), l.PublishTokens...)
	l.AdminTokens = append([]string(nil), l.AdminTokens...)
	s.limits.Store(&l)
	return nil
}

func (s *Server) ackSupported(a string) bool {
	for _, v := range s.opts.AckLevels {
		if v == a {
			return true
		}
	}
	return false
}

// Route is one registered endpoint, with its access scope.
type Route struct {
	Method, Path string
	Scope        Scope
}

// Routes lists the API's endpoints (the OpenAPI document is tested against it).
func Routes() []Route {
	return []Route{
		{"POST", "/api/v1/events", ScopePublish},
		{"GET", "/api/v1/events", ScopePublish},
		{"GET", "/api/v1/events/stream", ScopePublish},
		{"GET", "/api/v1/status", ScopeAdmin},
		{"GET", "/api/v1/node/info", ScopeOpen},
		{"GET", "/api/v1/cluster/nodes", ScopeOpen},
		{"GET", "/api/v1/cluster/status", ScopeOpen},
		{"GET", "/health", ScopeOpen},
		{"GET", "/livez", ScopeOpen},
		{"GET", "/readyz", ScopeOpen},
		{"GET", "/metrics", ScopeOpen},
		{"GET", "/openapi.json", ScopeOpen},
		{"GET", "/api/v1/modules", ScopePublish},
		{"POST", "/api/v1/modules", ScopeAdmin},
		{"GET", "/api/v1/modules/:name", ScopePublish},
		{"PUT", "/api/v1/modules/:name", ScopeAdmin},
		{"DELETE", "/api/v1/modules/:name", ScopeAdmin},
		{"POST", "/api/v1/modules/:name/reload", ScopeAdmin},
		{"GET", "/api/v1/modules/:name/wasm", ScopeAdmin},
		{"GET", "/api/v1/modules/:name/manifest", ScopeAdmin},
		{"GET", "/api/v1/streams", ScopePublish},
		{"GET", "/api/v1/streams/:name/events", ScopePublish},
		{"GET", "/api/v1/streams/:name/stream", ScopePublish},
		{"GET", "/api/v1/sinks", ScopePublish},
		{"GET", "/api/v1/sinks/:name", ScopePublish},
		{"POST", "/api/v1/sinks/:name/pause", ScopeAdmin},
		{"POST", "/api/v1/sinks/:name/resume", ScopeAdmin},
		{"DELETE", "/api/v1/sinks/:name/checkpoint", ScopeAdmin},
		{"GET", "/api/v1/producers/:name", ScopePublish},
	}
}

func (s *Server) routes() {
	a := s.app
	a.Use(s.observe)
	a.Use(s.gate)
	handlers := map[string]fiber.Handler{
		"POST /api/v1/events":       s.publish,
		"GET /api/v1/events":        s.readEvents,
		"GET /api/v1/events/stream": s.stream,
		"GET /api/v1/status":        s.status,
		"GET /api/v1/node/info":     s.jsonOf(func() any { return call(s.opts.NodeInfo) }),
		"GET /api/v1/cluster/nodes": s.jsonOf(func() any { return call(s.opts.ClusterNodes) }),
		"GET /health":               s.live,
		"GET /livez":                s.live,
		"GET /readyz":               s.ready,
		"GET /metrics":              adaptor.HTTPHandler(s.opts.Metrics.Handler()),
		"GET /openapi.json":         s.openapi,

		"GET /api/v1/cluster/status": s.jsonOf(func() any { return call(s.opts.ClusterStatus) }),

		"GET /api/v1/modules":                s.listModules,
		"POST /api/v1/modules":               s.postModule,
		"GET /api/v1/modules/:name":          s.getModule,
		"PUT /api/v1/modules/:name":          s.putModule,
		"DELETE /api/v1/modules/:name":       s.deleteModule,
		"POST /api/v1/modules/:name/reload":  s.reloadModule,
		"GET /api/v1/modules/:name/wasm":     s.moduleWasm,
		"GET /api/v1/modules/:name/manifest": s.moduleManifest,
		"GET /api/v1/streams":                s.listStreams,
		"GET /api/v1/streams/:name/events":   s.readStream,
		"GET /api/v1/streams/:name/stream":   s.tailStream,

		"GET /api/v1/sinks":                     s.listSinks,
		"GET /api/v1/sinks/:name":               s.getSink,
		"POST /api/v1/sinks/:name/pause":        s.sinkAction(SinksAPI.Pause, "paused"),
		"POST /api/v1/sinks/:name/resume":       s.sinkAction(SinksAPI.Resume, "resumed"),
		"DELETE /api/v1/sinks/:name/checkpoint": s.sinkAction(SinksAPI.DeleteCheckpoint, "checkpoint deleted"),
		"GET /api/v1/producers/:name":           s.getProducer,
	}
	for _, r := range Routes() {
		h := handlers[r.Method+" "+r.Path]
		a.Add(r.Method, r.Path, s.auth(r.Scope), h)
	}
	// Anything else: JSON 404 (405 when the path exists with another method
	// is produced by fiber before this).
	allowed := map[string][]string{}
	for _, r := range Routes() {
		allowed[r.Path] = append(allowed[r.Path], r.Method)
	}
	a.Use(func(c *fiber.Ctx) error {
		if ms, ok := allowedMethods(allowed, c.Path()); ok {
			allow := strings.Join(ms, ", ")
			if slices.Contains(ms, "GET") {
				allow += ", HEAD"
			}
			c.Set(fiber.HeaderAllow, allow)
			return fiber.NewError(fiber.StatusMethodNotAllowed, "method "+c.Method()+" not allowed on "+c.Path()+"; allowed: "+allow)
		}
		return fiber.NewError(fiber.StatusNotFound, "no such endpoint: "+c.Method()+" "+c.Path())
	})
}

func call(f func() any) any {
	if f == nil {
		return fiber.Map{}
	}
	return f()
}

func (s *Server) jsonOf(f func() any) fiber.Handler {
	return func(c *fiber.Ctx) error { return c.JSON(f()) }
}

// observe records request latency by route.
func (s *Server) observe(c *fiber.Ctx) error {
	start := time.Now()
	err := c.Next()
	code := c.Response().StatusCode()
	if err != nil {
		var fe *fiber.Error
		if errors.As(err, &fe) {
			code = fe.Code
		} else {
			code = fiber.StatusInternalServerError
		}
	}
	route := "unmatched"
	if r := c.Route(); r != nil && r.Path != "/" {
		route = r.Path
	}
	s.opts.Metrics.HTTPDuration.WithLabelValues(methodLabel(c.Method()), route, strconv.Itoa(code)).Observe(time.Since(start).Seconds())
	return err
}

// methodLabel maps the request method to a constant string: fiber's strings
// point into reused buffers and must not be retained (prometheus keeps
// label values).
func methodLabel(m string) string {
	for _, k := range []string{"GET", "POST", "HEAD", "PUT", "DELETE", "PATCH", "OPTIONS"} {
		if m == k {
			return k
		}
	}
	return "OTHER"
}

// openPaths stay served while draining.
var openPaths = map[string]bool{"/health": true, "/livez": true, "/readyz": true, "/metrics": true, "/openapi.json": true}

// gate answers 503 to everything but probes and metrics once intake stopped.
func (s *Server) gate(c *fiber.Ctx) error {
	if s.closed.Load() && !openPaths[c.Path()] {
		c.Set(fiber.HeaderRetryAfter, "5")
		return fiber.NewError(fiber.StatusServiceUnavailable, "node is shutting down; not accepting requests")
	}
	return c.Next()
}

// errorHandler renders every error as {"error": "..."} (plus fields carried
// by *Error).
func (s *Server) errorHandler(c *fiber.Ctx, err error) error {
	code := fiber.StatusInternalServerError
	body := fiber.Map{"error": err.Error()}
	var ae *Error
	var fe *fiber.Error
	switch {
	case errors.As(err, &ae):
		code = ae.Status
		for k, v := range ae.Fields {
			body[k] = v
		}
		body["error"] = ae.Msg
	case errors.As(err, &fe):
		code = fe.Code
		body["error"] = fe.Message
		if code == fiber.StatusRequestEntityTooLarge {
			body["error"] = fmt.Sprintf("request body too large: the limit (server.body_limit) is %d bytes", s.opts.BodyLimit)
		}
	default:
		s.log.Error("request failed", "method", c.Method(), "path", c.Path(), "err", err)
	}
	c.Status(code)
	return c.JSON(body)
}

// Error is an API error with an HTTP status and extra JSON fields.
type Error struct {
	Status int
	Msg    string
	Fields map[string]any
}

// Error implements error.
func (e *Error) Error() string { return e.Msg }

func apiErr(status int, msg string, kv ...any) *Error {
	e := &Error{Status: status, Msg: msg}
	if len(kv) > 0 {
		e.Fields = map[string]any{}
		for i := 0; i+1 < len(kv); i += 2 {
			e.Fields[kv[i].(string)] = kv[i+1]
		}
	}
	return e
}

// Serve accepts connections on ln until Shutdown.
func (s *Server) Serve(ln net.Listener) error {
	if err := s.app.Listener(&trackingListener{Listener: ln, s: s}); err != nil {
		return fmt.Errorf("api: serve: %w", err)
	}
	return nil
}

// StopIntake makes every new request but probes and metrics answer 503,
// ends live tails, and waits (bounded by ctx) for in-flight publishes to
// finish. It returns how the wait ended.
func (s *Server) StopIntake(ctx context.Context) error {
	s.closed.Store(true)
	s.doneOne.Do(func() { close(s.done) })
	locked := make(chan struct{})
	go func() {
		s.intake.Lock()
		close(locked)
	}()
	select {
	case <-locked:
		// Keep it locked: publishers that got past the gate see closed.
		s.intake.Unlock()
		return nil
	case <-ctx.Done():
		// The goroutine gets the lock once the stragglers finish (they are
		// bounded by the publish timeout) and then releases it.
		go func() { <-locked; s.intake.Unlock() }()
		return fmt.Errorf("api: in-flight publishes still running: %w", ctx.Err())
	}
}

// Shutdown closes the listener and waits (bounded by ctx) for open
// connections to finish.
func (s *Server) Shutdown(ctx context.Context) error {
	s.closed.Store(true)
	s.doneOne.Do(func() { close(s.done) })
	start := time.Now()
	errc := make(chan error, 1)
	go func() { errc <- s.app.ShutdownWithContext(ctx) }()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case err := <-errc:
			if err != nil {
				return fmt.Errorf("api: shutdown: %w", err)
			}
			return nil
		case <-tick.C:
			// Listeners are closed by now. Connections that never sent a
			// byte (clients pre-dial them) would hold fasthttp's graceful
			// shutdown until server.read_timeout: close them.
			s.closeSilent(start)
		}
	}
}

func (s *Server) live(c *fiber.Ctx) error { return s.probe(c, s.opts.Live, "alive") }

func (s *Server) ready(c *fiber.Ctx) error { return s.probe(c, s.opts.Ready, "ready") }

func (s *Server) probe(c *fiber.Ctx, f func() []Check, okWord string) error {
	var checks []Check
	if f != nil {
		checks = f()
	}
	ok := true
	for _, ch := range checks {
		ok = ok && ch.OK
	}
	status := okWord
	if !ok {
		status = "not " + okWord
		c.Status(fiber.StatusServiceUnavailable)
	}
	if checks == nil {
		checks = []Check{}
	}
	return c.JSON(fiber.Map{"status": status, "checks": checks})
}

func (s *Server) status(c *fiber.Ctx) error {
	st := s.p.Status()
	if s.opts.Status != nil {
		return c.JSON(fiber.Map{"ring": st, "node": s.opts.Status()})
	}
	return c.JSON(fiber.Map{"ring": st})
}

// trackingListener records accepted connections so that Shutdown can close
// the ones that never sent anything.
type trackingListener struct {
	net.Listener
	s *Server
}

// Accept implements net.Listener.
func (l *trackingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	tc := &trackedConn{Conn: c, s: l.s, opened: time.Now()}
	l.s.connMu.Lock()
	l.s.conns[tc] = struct{}{}
	l.s.connMu.Unlock()
	return tc, nil
}

// trackedConn counts whether its peer ever sent a byte.
type trackedConn struct {
	net.Conn
	s       *Server
	opened  time.Time
	spoke   atomic.Bool
	closeMu sync.Once
}

// Read implements net.Conn.
func (c *trackedConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 && !c.spoke.Load() {
		c.spoke.Store(true)
	}
	return n, err
}

// Close implements net.Conn.
func (c *trackedConn) Close() error {
	c.closeMu.Do(func() {
		c.s.connMu.Lock()
		delete(c.s.conns, c)
		c.s.connMu.Unlock()
	})
	return c.Conn.Close()
}

// closeSilent closes connections opened before cutoff whose peer never sent
// a byte: nothing was asked on them, so nothing is lost.
func (s *Server) closeSilent(cutoff time.Time) {
	s.connMu.Lock()
	var silent []*trackedConn
	for c := range s.conns {
		if !c.spoke.Load() && c.opened.Before(cutoff) {
			silent = append(silent, c)
		}
	}
	s.connMu.Unlock()
	for _, c := range silent {
		_ = c.Close()
	}
}
