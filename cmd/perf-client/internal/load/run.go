// Package load drives the appliance's publish endpoint: closed-loop
// (as fast as the server answers) or open-loop (a constant arrival rate,
// with latency measured from each request's intended send time so that
// coordinated omission is corrected), with HDR-histogram latencies,
// per-status error counts, a progress display and a ledger of what the
// server acknowledged (for verification by read-back).
package load

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/url"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
	"github.com/valyala/fasthttp"
)

// Histogram bounds: microseconds from 1 µs to 100 s, 3 significant digits.
// Longer latencies are recorded as the maximum (and counted in Clamped).
const (
	histMinUS = 1
	histMaxUS = 100_000_000
)

// Config describes one run. Events and Duration bound the measured part of
// the run (whichever comes first; at least one must be set); Warmup runs
// before it, is published and acknowledged like the rest, but is not
// counted in the figures.
type Config struct {
	URL         string        // base URL of the appliance, e.g. http://127.0.0.1:8080
	Token       string        // bearer token (publish scope), optional
	Events      int64         // measured events (rounded up to whole requests); 0 = unbounded
	Duration    time.Duration // measured duration; 0 = unbounded
	Warmup      time.Duration // unmeasured run time before the measurement
	Rate        float64       // open loop: target events per second; 0 = closed loop
	Producers   int           // producer ids (each with its own sequence counter)
	Connections int           // concurrent requests, one keep-alive connection each (>= Producers)
	Batch       int           // events per request
	NDJSON      bool          // send application/x-ndjson instead of JSON
	Payload     Payload       // the "data" of each event
	Ack         string        // ?ack= level; "" = the node's default
	Timeout     time.Duration // per-request read/write timeout
	// Retries is how often a request is sent again after a transport error,
	// 429 or 5xx (same producer id and sequences, so the node acknowledges
	// what it already stored as a duplicate); 0 counts them as they are.
	Retries    int
	RetryDelay time.Duration // wait before each retry
	Record     bool          // keep a Ledger of every event's outcome (for verification)
	RunID      string        // prefix of the producer ids; must be unique per run

	Progress         io.Writer     // progress output (nil: none)
	ProgressInterval time.Duration // time between progress updates
	TTY              bool          // rewrite one progress line in place instead of printing lines
}

// Outcome is what the server said about one event.
type Outcome uint8

// Event outcomes.
const (
	// Acked: the server gave the event a ring sequence (a 200, or an event
	// with a sequence in a partly accepted 429/503 batch).
	Acked Outcome = iota + 1
	// Refused: the server answered and did not accept the event.
	Refused
	// Unknown: no usable answer (transport error, timeout, malformed
	// answer); the event may or may not be stored.
	Unknown
)

// Record is a run of consecutive events of one producer with the same
// outcome: producer sequences ProducerSeq..ProducerSeq+N-1 got ring
// sequences RingSeq..RingSeq+N-1 (RingSeq is Rejected unless Acked).
type Record struct {
	Producer    int32
	Outcome     Outcome
	N           int32
	ProducerSeq int64
	RingSeq     int64
}

// Ledger is what a run published and what the server answered, for
// verification.
type Ledger struct {
	Producers []string // producer ids, by index
	Claimed   []int64  // per producer: sequences 0..Claimed-1 were sent
	Payload   Payload  // the payload of producer sequence s is Payload.Append(nil, s)
	Records   []Record // in no particular order across workers
	MinRing   int64    // lowest acknowledged ring sequence (-1: none)
	MaxRing   int64    // highest acknowledged ring sequence (-1: none)
}

// Percentiles summarise a latency histogram in microseconds.
type Percentiles struct {
	Count   int64   `json:"count"`
	Mean    float64 `json:"mean_us"`
	P50     int64   `json:"p50_us"`
	P90     int64   `json:"p90_us"`
	P99     int64   `json:"p99_us"`
	P999    int64   `json:"p99_9_us"`
	P9999   int64   `json:"p99_99_us"`
	Max     int64   `json:"max_us"`
	Clamped int64   `json:"clamped,omitempty"` // values above 100 s, recorded as 100 s
}

// Counts are request and event counters.
type Counts struct {
	Requests        int64            `json:"requests"` // HTTP requests, retries included
	Retries         int64            `json:"retries"`  // of which retries (--retries)
	RequestsOK      int64            `json:"requests_ok"`
	Status          map[string]int64 `json:"status"` // HTTP status → requests; "transport" for no answer
	EventsSent      int64            `json:"events_sent"`
	EventsAcked     int64            `json:"events_acknowledged"`
	EventsDuplicate int64            `json:"events_duplicate"`
	EventsRefused   int64            `json:"events_refused"`
	EventsUnknown   int64            `json:"events_unknown"`
}

// CPU is the client process's CPU time during the run (getrusage).
type CPU struct {
	UserSeconds   float64 `json:"user_s"`
	SystemSeconds float64 `json:"system_s"`
	Cores         float64 `json:"cores_used"` // (user+system) / wall time
	NumCPU        int     `json:"num_cpu"`
	GOMAXPROCS    int     `json:"gomaxprocs"`
}

// Result is the outcome of a run.
type Result struct {
	Mode        string  `json:"mode"` // "closed-loop" or "open-loop"
	URL         string  `json:"url"`
	Producers   int     `json:"producers"`
	Connections int     `json:"connections"`
	Batch       int     `json:"batch"`
	Format      string  `json:"format"` // "json" or "ndjson"
	PayloadSize int     `json:"payload_size"`
	BodyBytes   int     `json:"request_body_bytes"`
	Ack         string  `json:"ack"`
	TargetRate  float64 `json:"target_events_per_s,omitempty"`
	WarmupS     float64 `json:"warmup_s"`
	ElapsedS    float64 `json:"elapsed_s"` // the measured window
	WallS       float64 `json:"wall_s"`    // the whole run, warmup included

	Measured Counts `json:"measured"` // requests started in the measured window
	Total    Counts `json:"total"`    // the whole run, warmup included

	EventsPerSec   float64 `json:"events_per_s"`   // acknowledged events / elapsed
	RequestsPerSec float64 `json:"requests_per_s"` // answered requests / elapsed

	// Latency is from the intended send time to the answer: in open loop
	// it includes time a request waited because earlier ones were slow
	// (coordinated omission corrected); in closed loop it equals
	// ServiceTime.
	Latency     Percentiles `json:"latency"`
	ServiceTime Percentiles `json:"service_time"` // from the actual send to the answer
	// SendLag is how late the client itself sent each request (actual −
	// intended send time; open loop only): timer wake-up jitter and waits
	// for a free connection. It is part of Latency.
	SendLag Percentiles `json:"send_lag,omitempty"`

	// NotSent counts open-loop requests that were scheduled but never
	// sent because the client fell more than a grace period behind: the
	// target rate was not sustained and latency is under-reported.
	NotSent int64 `json:"not_sent,omitempty"`

	ErrorSamples map[string]string `json:"error_samples,omitempty"` // first answer body / error per status
	ClientCPU    CPU               `json:"client_cpu"`
}

// producer is one producer id with its sequence counter.
type producer struct {
	id   string
	next atomic.Int64
	_    [48]byte // keep counters of different producers off one cache line
}

// counts is a worker's private counter set.
type counts struct {
	reqCounts
	status [600]int64 // by HTTP status (599: anything above)
}

// reqCounts are one request's (or many requests') event and request counts.
type reqCounts struct {
	requests, ok, sent, acked, dup, refused, unknown, transport, retries int64
}

func (c *counts) add(o *counts) {
	c.add1(&o.reqCounts, -1)
	for i := range c.status {
		c.status[i] += o.status[i]
	}
}

func (c *counts) export() Counts {
	out := Counts{
		Requests: c.requests, Retries: c.retries, RequestsOK: c.ok, EventsSent: c.sent, EventsAcked: c.acked,
		EventsDuplicate: c.dup, EventsRefused: c.refused, EventsUnknown: c.unknown,
		Status: map[string]int64{},
	}
	for s, n := range c.status {
		if n > 0 {
			out.Status[strconv.Itoa(s)] = n
		}
	}
	if c.transport > 0 {
		out.Status["transport"] = c.transport
	}
	return out
}

type worker struct {
	r        *runner
	prod     int
	req      *fasthttp.Request
	resp     *fasthttp.Response
	body     *Body
	seqs     []int64
	dups     []bool
	hist     *histShard
	measured counts
	total    counts
	lastDone time.Time
	timer    *time.Timer
	recs     []Record
	samples  map[string]string
	minRing  int64
	maxRing  int64
}

type runner struct {
	cfg    Config
	client *fasthttp.HostClient
	prods  []*producer
	uri    string
	shards []*histShard

	open         bool
	start        time.Time
	measureStart time.Time
	end          time.Time // zero: no time bound
	hardStop     time.Time // open loop: give up on requests this far behind
	intervalNs   float64   // open loop: time between request starts
	totalReqs    int64     // open loop: requests to schedule (0: time bound only)
	budget       int64     // closed loop: measured requests (0: time bound only)

	next      atomic.Int64 // open loop: next schedule slot
	attempted atomic.Int64 // open loop: slots actually sent
	claimed   atomic.Int64 // closed loop: measured requests claimed

	// Progress (whole run).
	pRequests atomic.Int64
	pAcked    atomic.Int64
	pErrors   atomic.Int64
	p429      atomic.Int64
}

// Validate checks a configuration (the main package maps these to flags).
func (c *Config) Validate() error {
	var errs []error
	u, err := url.Parse(c.URL)
	switch {
	case err != nil:
		errs = append(errs, fmt.Errorf("url %q: %w", c.URL, err))
	case u.Scheme != "http" && u.Scheme != "https":
		errs = append(errs, fmt.Errorf("url %q: scheme must be http or https", c.URL))
	case u.Host == "":
		errs = append(errs, fmt.Errorf("url %q: no host", c.URL))
	case u.Path != "" && u.Path != "/", u.RawQuery != "":
		errs = append(errs, fmt.Errorf("url %q: give the base URL only (no path or query)", c.URL))
	}
	if c.Events < 0 {
		errs = append(errs, fmt.Errorf("events %d: must not be negative", c.Events))
	}
	if c.Duration < 0 || c.Warmup < 0 {
		errs = append(errs, errors.New("durations must not be negative"))
	}
	if c.Events == 0 && c.Duration == 0 {
		errs = append(errs, errors.New("give a number of events or a duration"))
	}
	if c.Rate < 0 || math.IsNaN(c.Rate) || math.IsInf(c.Rate, 0) {
		errs = append(errs, fmt.Errorf("rate %v: must be a positive number of events per second", c.Rate))
	}
	if c.Producers < 1 {
		errs = append(errs, fmt.Errorf("producers %d: want at least 1", c.Producers))
	}
	if c.Connections < c.Producers {
		errs = append(errs, fmt.Errorf("connections %d: want at least one per producer (%d)", c.Connections, c.Producers))
	}
	if c.Batch < 1 {
		errs = append(errs, fmt.Errorf("batch %d: want at least 1 event per request", c.Batch))
	}
	if c.Payload.Size < MinPayloadSize {
		errs = append(errs, fmt.Errorf("payload size %d: want at least %d bytes", c.Payload.Size, MinPayloadSize))
	}
	switch c.Ack {
	case "", "memory", "durable", "processed":
	default:
		errs = append(errs, fmt.Errorf("ack %q: want memory, durable or processed", c.Ack))
	}
	if c.Retries < 0 || c.RetryDelay < 0 {
		errs = append(errs, fmt.Errorf("retries %d / retry delay %v: must not be negative", c.Retries, c.RetryDelay))
	}
	if c.Timeout <= 0 {
		errs = append(errs, fmt.Errorf("timeout %v: must be positive", c.Timeout))
	}
	if c.RunID == "" {
		errs = append(errs, errors.New("run id must not be empty"))
	}
	return errors.Join(errs...)
}

// Run publishes according to cfg until the run's bounds are reached or ctx
// ends (then it stops early and reports what was done). It returns the
// ledger when cfg.Record is set.
func Run(ctx context.Context, cfg Config) (*Result, *Ledger, error) {
	if err := cfg.Validate(); err != nil {
		return nil, nil, err
	}
	r := newRunner(cfg)
	defer r.client.CloseIdleConnections()
	workers := make([]*worker, cfg.Connections)
	for i := range workers {
		w, err := r.newWorker(i, i%cfg.Producers)
		if err != nil {
			return nil, nil, err
		}
		workers[i] = w
	}

	var cpu0 rusage
	cpu0.read()
	r.start = time.Now()
	r.measureStart = r.start.Add(cfg.Warmup)
	if cfg.Duration > 0 {
		r.end = r.measureStart.Add(cfg.Duration)
	}
	if r.open {
		r.intervalNs = float64(time.Second) * float64(cfg.Batch) / cfg.Rate
		stop := r.end
		if cfg.Events > 0 {
			warm := int64(math.Ceil(float64(cfg.Warmup) / r.intervalNs))
			r.totalReqs = warm + ceilDiv(cfg.Events, int64(cfg.Batch))
			if t := r.start.Add(time.Duration(float64(r.totalReqs) * r.intervalNs)); stop.IsZero() || t.Before(stop) {
				stop = t
			}
		}
		grace := max(time.Second, stop.Sub(r.start)/10)
		r.hardStop = stop.Add(grace)
	} else if cfg.Events > 0 {
		r.budget = ceilDiv(cfg.Events, int64(cfg.Batch))
	}

	runCtx, cancelRun := context.WithCancel(ctx)
	defer cancelRun()
	var wg sync.WaitGroup
	for _, w := range workers {
		wg.Go(func() { w.loop(runCtx) })
	}
	progDone := make(chan struct{})
	var pwg sync.WaitGroup
	if cfg.Progress != nil && cfg.ProgressInterval > 0 {
		pwg.Go(func() { r.progress(progDone) })
	}
	wg.Wait()
	wall := time.Since(r.start)
	close(progDone)
	pwg.Wait()
	var cpu1 rusage
	cpu1.read()

	res := r.result(workers, wall, cpu0, cpu1)
	var led *Ledger
	if cfg.Record {
		led = &Ledger{Payload: cfg.Payload, MinRing: -1, MaxRing: -1}
		for _, p := range r.prods {
			led.Producers = append(led.Producers, p.id)
			led.Claimed = append(led.Claimed, p.next.Load())
		}
		for _, w := range workers {
			led.Records = append(led.Records, w.recs...)
			if w.minRing >= 0 && (led.MinRing < 0 || w.minRing < led.MinRing) {
				led.MinRing = w.minRing
			}
			led.MaxRing = max(led.MaxRing, w.maxRing)
		}
	}
	return res, led, nil
}

type dialer struct{ d net.Dialer }

func (d *dialer) dial(addr string) (net.Conn, error) {
	c, err := d.d.Dial("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("connect %s: %w", addr, err)
	}
	return c, nil
}

// newRunner sets up the HTTP client and the producers of a valid cfg.
func newRunner(cfg Config) *runner {
	u, _ := url.Parse(cfg.URL)
	r := &runner{cfg: cfg, open: cfg.Rate > 0}
	r.client = &fasthttp.HostClient{
		Addr:                u.Host,
		IsTLS:               u.Scheme == "https",
		Name:                "badbatch-perf-client",
		MaxConns:            cfg.Connections,
		MaxConnWaitTimeout:  cfg.Timeout,
		ReadTimeout:         cfg.Timeout,
		WriteTimeout:        cfg.Timeout,
		MaxIdleConnDuration: time.Minute,
		// A plain dialer: fasthttp's default one starts a process-wide DNS
		// cache cleaner goroutine that never ends.
		Dial: (&dialer{d: net.Dialer{Timeout: cfg.Timeout}}).dial,
	}
	if u.Port() == "" {
		if u.Scheme == "https" {
			r.client.Addr += ":443"
		} else {
			r.client.Addr += ":80"
		}
	}
	q := ""
	if cfg.Ack != "" {
		q = "?ack=" + cfg.Ack
	}
	r.uri = u.Scheme + "://" + u.Host + "/api/v1/events" + q
	for i := range cfg.Producers {
		r.prods = append(r.prods, &producer{id: fmt.Sprintf("%s-p%d", cfg.RunID, i)})
	}
	for range min(cfg.Connections, 2*runtime.GOMAXPROCS(0)) {
		r.shards = append(r.shards, newHistShard(r.open))
	}

	return r
}

func ceilDiv(a, b int64) int64 { return (a + b - 1) / b }

// newWorker makes worker idx, publishing for producer prod.
func (r *runner) newWorker(idx, prod int) (*worker, error) {
	body, err := NewBody(r.cfg.Batch, r.cfg.Payload, r.cfg.NDJSON)
	if err != nil {
		return nil, err
	}
	w := &worker{
		r: r, prod: prod, body: body, hist: r.shards[idx%len(r.shards)],
		req: fasthttp.AcquireRequest(), resp: fasthttp.AcquireResponse(),
		seqs: make([]int64, r.cfg.Batch), dups: make([]bool, r.cfg.Batch),
		minRing: -1, maxRing: -1,
	}
	w.req.SetRequestURI(r.uri)
	w.req.Header.SetMethod(fasthttp.MethodPost)
	if r.cfg.NDJSON {
		w.req.Header.SetContentType("application/x-ndjson")
	} else {
		w.req.Header.SetContentType("application/json")
	}
	w.req.Header.Set("X-Producer-ID", r.prods[prod].id)
	if r.cfg.Token != "" {
		w.req.Header.Set("Authorization", "Bearer "+r.cfg.Token)
	}
	return w, nil
}

// loop sends requests until the run's bounds are reached or ctx ends.
func (w *worker) loop(ctx context.Context) {
	defer func() {
		fasthttp.ReleaseRequest(w.req)
		fasthttp.ReleaseResponse(w.resp)
	}()
	r := w.r
	w.timer = time.NewTimer(time.Hour)
	defer w.timer.Stop()
	timer := w.timer
	for ctx.Err() == nil {
		var intended time.Time
		var measured bool
		if r.open {
			k := r.next.Add(1) - 1
			if r.totalReqs > 0 && k >= r.totalReqs {
				return
			}
			intended = r.start.Add(time.Duration(float64(k) * r.intervalNs))
			if !r.end.IsZero() && !intended.Before(r.end) {
				return
			}
			if time.Until(intended) > 0 {
				if !sleepUntil(ctx, timer, intended) {
					return
				}
			} else if time.Now().After(r.hardStop) {
				return // too far behind schedule: the rest is counted as not sent
			}
			r.attempted.Add(1)
			measured = !intended.Before(r.measureStart)
		} else {
			intended = time.Now()
			measured = !intended.Before(r.measureStart)
			if measured {
				if !r.end.IsZero() && !intended.Before(r.end) {
					return
				}
				if r.budget > 0 && r.claimed.Add(1) > r.budget {
					return
				}
			}
		}
		w.send(ctx, intended, measured)
	}
}

// coarse is the part of a wait left to the runtime's timers, which wake
// up to ~1 ms late on Linux (they round to the poller's millisecond
// timeout); the last stretch is slept with nanosleep(2), which is accurate
// to tens of microseconds but holds an OS thread, so it is kept short.
const coarse = 2 * time.Millisecond

// sleepUntil waits until t; false when ctx ended first.
func sleepUntil(ctx context.Context, timer *time.Timer, t time.Time) bool {
	if d := time.Until(t) - coarse; d > 0 {
		timer.Reset(d)
		select {
		case <-timer.C:
		case <-ctx.Done():
			return false
		}
	}
	if d := time.Until(t); d > 0 {
		ts := syscall.NsecToTimespec(int64(d))
		for syscall.Nanosleep(&ts, &ts) == syscall.EINTR {
		}
	}
	return ctx.Err() == nil
}

// send publishes one request (retrying it as configured) and accounts for
// the answer.
func (w *worker) send(ctx context.Context, intended time.Time, measured bool) {
	r := w.r
	batch := int64(r.cfg.Batch)
	prod := r.prods[w.prod]
	first := prod.next.Add(batch) - batch
	w.req.SetBodyRaw(w.body.Fill(first))
	var t0, t1 time.Time
	var err error
	var status int
	for attempt := 0; ; attempt++ {
		ts := time.Now()
		if attempt == 0 {
			t0 = ts
		}
		err = r.client.Do(w.req, w.resp)
		t1 = time.Now()
		status = 0
		if err == nil {
			status = w.resp.StatusCode()
		}
		w.countAttempt(status, err, attempt > 0, measured)
		retryable := err != nil || status == fasthttp.StatusTooManyRequests || status >= 500
		if !retryable || attempt >= r.cfg.Retries || ctx.Err() != nil {
			break
		}
		if r.cfg.RetryDelay > 0 && !sleepUntil(ctx, w.timer, time.Now().Add(r.cfg.RetryDelay)) {
			break
		}
	}
	w.lastDone = t1

	var c reqCounts // this request's events
	c.sent = batch
	outcome := Unknown
	if err != nil {
		c.unknown = batch
		w.sample("transport", err.Error())
	} else {
		// Any answer may carry per-event results: 200, 429 and 503/507
		// (stored in the ring, durability not confirmed) do.
		n, perr := ParseAnswer(w.resp.Body(), batch > 1 || r.cfg.NDJSON, w.seqs, w.dups)
		switch {
		case perr == nil && n == int(batch):
			outcome = 0 // per event
			for i := range n {
				switch {
				case w.seqs[i] == Rejected:
					c.refused++
				case w.dups[i]:
					c.acked++
					c.dup++
				default:
					c.acked++
				}
			}
		case status == fasthttp.StatusOK:
			c.unknown = batch
			w.sample("200 (unparsed answer)", truncate(string(w.resp.Body())))
		case status >= 400 && status < 500, status == fasthttp.StatusServiceUnavailable:
			// Refused as a whole (invalid, unauthorised, shutting down...).
			outcome = Refused
			c.refused = batch
		default:
			c.unknown = batch
		}
		if status != fasthttp.StatusOK {
			w.sample(strconv.Itoa(status), truncate(string(w.resp.Body())))
		}
	}

	if measured {
		w.measured.add1(&c, -1)
		if err == nil { // transport failures are counted, not timed
			w.hist.record(t1.Sub(intended), t1.Sub(t0), t0.Sub(intended), r.open)
		}
	}
	w.total.add1(&c, -1)
	r.pAcked.Add(c.acked)
	if r.cfg.Record {
		w.ledger(first, outcome)
	}
}

// countAttempt counts one HTTP exchange.
func (w *worker) countAttempt(status int, err error, retry, measured bool) {
	var c reqCounts
	c.requests = 1
	if err != nil {
		c.transport = 1
	}
	if status == fasthttp.StatusOK {
		c.ok = 1
	}
	if retry {
		c.retries = 1
	}
	if measured {
		w.measured.add1(&c, status)
	}
	w.total.add1(&c, status)
	w.r.pRequests.Add(1)
	if status != fasthttp.StatusOK {
		w.r.pErrors.Add(1)
		if status == fasthttp.StatusTooManyRequests {
			w.r.p429.Add(1)
		}
	}
}

// add1 adds o; status >= 0 counts one request with that status.
func (c *counts) add1(o *reqCounts, status int) {
	c.requests += o.requests
	c.ok += o.ok
	c.sent += o.sent
	c.acked += o.acked
	c.dup += o.dup
	c.refused += o.refused
	c.unknown += o.unknown
	c.transport += o.transport
	c.retries += o.retries
	if status >= 0 && o.transport == 0 {
		c.status[min(max(status, 0), len(c.status)-1)]++
	}
}

// histShard holds latency histograms shared by a few workers: per-worker
// histograms (~150 KB each) would cost too much memory with many
// connections, one shared set too much contention.
type histShard struct {
	mu       sync.Mutex
	lat, svc *hdrhistogram.Histogram
	lag      *hdrhistogram.Histogram // open loop only
	clamped  [3]int64
	_        [64]byte
}

func newHistShard(open bool) *histShard {
	h := &histShard{lat: hdrhistogram.New(histMinUS, histMaxUS, 3), svc: hdrhistogram.New(histMinUS, histMaxUS, 3)}
	if open {
		h.lag = hdrhistogram.New(histMinUS, histMaxUS, 3)
	}
	return h
}

// record adds one answered request: latency from the intended send time,
// service time, and (open loop) the client's send lag.
func (h *histShard) record(lat, svc, lag time.Duration, open bool) {
	h.mu.Lock()
	h.add(h.lat, lat, 0)
	h.add(h.svc, svc, 1)
	if open {
		h.add(h.lag, lag, 2)
	}
	h.mu.Unlock()
}

func (h *histShard) add(hist *hdrhistogram.Histogram, d time.Duration, idx int) {
	us := int64(d / time.Microsecond)
	if us < histMinUS {
		us = histMinUS
	}
	if us > histMaxUS {
		us = histMaxUS
		h.clamped[idx]++
	}
	_ = hist.RecordValue(us)
}

// ledger appends the request's events to the worker's records. outcome is
// Unknown or Refused for the whole request, or 0 when w.seqs holds the
// per-event answer.
func (w *worker) ledger(first int64, outcome Outcome) {
	for i := range w.seqs {
		o, ring := outcome, Rejected
		if o == 0 {
			if ring = w.seqs[i]; ring == Rejected {
				o = Refused
			} else {
				o = Acked
				if w.minRing < 0 || ring < w.minRing {
					w.minRing = ring
				}
				w.maxRing = max(w.maxRing, ring)
			}
		}
		ps := first + int64(i)
		if n := len(w.recs); n > 0 {
			last := &w.recs[n-1]
			if int(last.Producer) == w.prod && last.Outcome == o && last.ProducerSeq+int64(last.N) == ps &&
				last.N < math.MaxInt32 && (o != Acked || last.RingSeq+int64(last.N) == ring) {
				last.N++
				continue
			}
		}
		w.recs = append(w.recs, Record{Producer: int32(w.prod), Outcome: o, N: 1, ProducerSeq: ps, RingSeq: ring})
	}
}

func (w *worker) sample(key, msg string) {
	if _, ok := w.samples[key]; ok {
		return
	}
	if w.samples == nil {
		w.samples = map[string]string{}
	}
	w.samples[key] = msg
}

func truncate(s string) string {
	if len(s) > 300 {
		return s[:300] + "..."
	}
	return s
}

func percentiles(h *hdrhistogram.Histogram, clamped int64) Percentiles {
	if h.TotalCount() == 0 {
		return Percentiles{}
	}
	return Percentiles{
		Count: h.TotalCount(), Mean: math.Round(h.Mean()*10) / 10,
		P50: h.ValueAtQuantile(50), P90: h.ValueAtQuantile(90), P99: h.ValueAtQuantile(99),
		P999: h.ValueAtQuantile(99.9), P9999: h.ValueAtQuantile(99.99), Max: h.Max(),
		Clamped: clamped,
	}
}

func (r *runner) result(workers []*worker, wall time.Duration, cpu0, cpu1 rusage) *Result {
	cfg := r.cfg
	res := &Result{
		Mode: "closed-loop", URL: cfg.URL, Producers: cfg.Producers, Connections: cfg.Connections,
		Batch: cfg.Batch, Format: "json", PayloadSize: cfg.Payload.Size, BodyBytes: workers[0].body.Len(), Ack: cfg.Ack,
		WarmupS: cfg.Warmup.Seconds(), WallS: wall.Seconds(),
	}
	if res.Ack == "" {
		res.Ack = "node default"
	}
	if cfg.NDJSON {
		res.Format = "ndjson"
	}
	if r.open {
		res.Mode = "open-loop"
		res.TargetRate = cfg.Rate
	}
	lat := hdrhistogram.New(histMinUS, histMaxUS, 3)
	svc := hdrhistogram.New(histMinUS, histMaxUS, 3)
	lag := hdrhistogram.New(histMinUS, histMaxUS, 3)
	var clamped [3]int64
	for _, h := range r.shards {
		lat.Merge(h.lat)
		svc.Merge(h.svc)
		if h.lag != nil {
			lag.Merge(h.lag)
		}
		for i := range clamped {
			clamped[i] += h.clamped[i]
		}
	}
	var m, t counts
	var last time.Time
	for _, w := range workers {
		m.add(&w.measured)
		t.add(&w.total)
		if w.lastDone.After(last) {
			last = w.lastDone
		}
		for k, v := range w.samples {
			if res.ErrorSamples == nil {
				res.ErrorSamples = map[string]string{}
			}
			if _, ok := res.ErrorSamples[k]; !ok {
				res.ErrorSamples[k] = v
			}
		}
	}
	res.Measured, res.Total = m.export(), t.export()
	if el := last.Sub(r.measureStart); el > 0 && m.requests > 0 {
		res.ElapsedS = el.Seconds()
		res.EventsPerSec = float64(m.acked) / el.Seconds()
		res.RequestsPerSec = float64(m.requests-m.transport) / el.Seconds()
	}
	res.Latency = percentiles(lat, clamped[0])
	res.ServiceTime = percentiles(svc, clamped[1])
	if r.open {
		res.SendLag = percentiles(lag, clamped[2])
	}
	if r.open {
		scheduled := r.totalReqs
		if !r.end.IsZero() {
			byTime := int64(math.Ceil(float64(r.end.Sub(r.start)) / r.intervalNs))
			if scheduled == 0 || byTime < scheduled {
				scheduled = byTime
			}
		}
		res.NotSent = max(0, scheduled-r.attempted.Load())
	}
	res.ClientCPU = cpuBetween(cpu0, cpu1, wall)
	return res
}

// progress prints the live rate until done is closed.
func (r *runner) progress(done <-chan struct{}) {
	t := time.NewTicker(r.cfg.ProgressInterval)
	defer t.Stop()
	lastT, lastAcked, lastReq := r.start, int64(0), int64(0)
	w := r.cfg.Progress
	for {
		select {
		case <-done:
			if r.cfg.TTY {
				fmt.Fprint(w, "\r\033[K")
			}
			return
		case now := <-t.C:
			acked, reqs := r.pAcked.Load(), r.pRequests.Load()
			dt := now.Sub(lastT).Seconds()
			phase := ""
			if now.Before(r.measureStart) {
				phase = " (warmup)"
			}
			line := fmt.Sprintf("[%6.1fs]%s %s events acked, %s events/s, %s req/s, errors %d (429: %d)",
				now.Sub(r.start).Seconds(), phase, Group(acked), Group(int64(float64(acked-lastAcked)/dt)),
				Group(int64(float64(reqs-lastReq)/dt)), r.pErrors.Load(), r.p429.Load())
			if r.cfg.TTY {
				fmt.Fprint(w, "\r\033[K"+line)
			} else {
				fmt.Fprintln(w, line)
			}
			lastT, lastAcked, lastReq = now, acked, reqs
		}
	}
}

// Group formats n with thousands separators.
func Group(n int64) string {
	s := strconv.FormatInt(n, 10)
	neg := n < 0
	if neg {
		s = s[1:]
	}
	out := make([]byte, 0, len(s)+len(s)/3+1)
	if neg {
		out = append(out, '-')
	}
	for i := range len(s) {
		if i > 0 && (len(s)-i)%3 == 0 {
			out = append(out, ',')
		}
		out = append(out, s[i])
	}
	return string(out)
}
