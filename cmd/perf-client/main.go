// Command perf-client is BadBatch's load and latency tool. It publishes
// events to a running appliance (POST /api/v1/events) and reports
// throughput, HDR-histogram latency percentiles, errors by HTTP status and
// its own CPU use; with --verify it reads the published range back and
// checks that every acknowledged event is stored exactly once.
//
//	perf-client --url http://localhost:8080 --events 1000000 --producers 4
//	perf-client --url http://localhost:8080 --latency-test --duration 60s
//	perf-client --url http://localhost:8080 --throughput-test --rate 100000
//
// Exit status: 0 on success, 1 when nothing was acknowledged, the node
// cannot be reached or verification fails, 2 on usage errors.
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/mattn/go-isatty"
	"github.com/spf13/pflag"

	"github.com/badbatch/badbatch/cmd/perf-client/internal/load"
	"github.com/badbatch/badbatch/cmd/perf-client/internal/verify"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	// After the first signal the run winds down (requests in flight finish,
	// bounded by --timeout) and reports; a second one kills the process.
	go func() { <-ctx.Done(); stop() }()
	code := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr, isatty.IsTerminal(os.Stderr.Fd()))
	stop()
	os.Exit(code)
}

// Defaults.
const (
	defaultURL           = "http://localhost:8080"
	defaultEvents        = 100_000
	defaultTestDuration  = 10 * time.Second
	defaultLatencyRate   = 1000.0
	defaultOpenLoopConns = 32
)

// options are the parsed command line.
type options struct {
	url            string
	token          string
	events         int64
	duration       time.Duration
	warmup         time.Duration
	rate           float64
	latencyTest    bool
	throughputTest bool
	producers      int
	connections    int
	batch          int
	ndjson         bool
	payloadSize    int
	ack            string
	timeout        time.Duration
	retries        int
	retryDelay     time.Duration
	jsonOut        bool
	out            string
	verify         bool
	pageSize       int
	progress       time.Duration
	quiet          bool
	help           bool
}

// usageError is a command-line mistake (exit status 2).
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error {
	return &usageError{msg: fmt.Sprintf(format, args...)}
}

func newFlagSet(o *options) *pflag.FlagSet {
	fs := pflag.NewFlagSet("perf-client", pflag.ContinueOnError)
	fs.SortFlags = false
	fs.StringVar(&o.url, "url", defaultURL, "base URL of the appliance")
	fs.Int64Var(&o.events, "events", 0, fmt.Sprintf("events to publish in the measured part (rounded up to whole requests); default %d unless --duration is given", defaultEvents))
	fs.DurationVar(&o.duration, "duration", 0, fmt.Sprintf("length of the measured part (e.g. 60s); --latency-test and --throughput-test default to %s", defaultTestDuration))
	fs.Int64Var(&o.events, "num-events", 0, "alias of --events")
	_ = fs.MarkHidden("num-events")
	fs.IntVar(&o.producers, "producers", 1, "producer ids publishing concurrently, each with its own sequence numbers")
	fs.IntVar(&o.connections, "connections", 0, fmt.Sprintf("concurrent requests, one keep-alive connection each (at least --producers; default --producers in closed loop, max(--producers, %d) in open loop)", defaultOpenLoopConns))
	fs.IntVar(&o.batch, "batch", 1, "events per request (1 sends a JSON object, more a JSON array)")
	fs.BoolVar(&o.ndjson, "ndjson", false, "send application/x-ndjson (one event per line) instead of JSON")
	fs.IntVar(&o.payloadSize, "payload-size", 100, fmt.Sprintf("bytes of each event's \"data\" JSON value (at least %d)", load.MinPayloadSize))
	fs.StringVar(&o.ack, "ack", "durable", "acknowledgement level: memory, durable or processed")
	fs.BoolVar(&o.latencyTest, "latency-test", false, fmt.Sprintf("open loop at --rate (default %g events/s) for --duration: latency below saturation", defaultLatencyRate))
	fs.BoolVar(&o.throughputTest, "throughput-test", false, "run for --duration: at --rate events/s (open loop) when given, else as fast as the node answers (closed loop)")
	fs.Float64Var(&o.rate, "rate", 0, "open loop: target events per second (latency measured from each request's intended send time)")
	fs.DurationVar(&o.warmup, "warmup", 0, "run this long before measuring (published, not counted)")
	fs.DurationVar(&o.timeout, "timeout", 30*time.Second, "per-request timeout")
	fs.IntVar(&o.retries, "retries", 0, "send a request again (same producer id and sequences: idempotent) after a transport error, 429 or 5xx, up to this many times; 0 counts them as they are")
	fs.DurationVar(&o.retryDelay, "retry-delay", 10*time.Millisecond, "wait before each retry (the node's Retry-After, whole seconds, is not used)")
	fs.StringVar(&o.token, "token", "", "bearer token (a publish token publishes and reads back; the node counters need an admin token); default $BADBATCH_TOKEN")
	fs.BoolVar(&o.verify, "verify", false, "after the run, read the published range back and check every acknowledged event is stored exactly once with its payload")
	fs.IntVar(&o.pageSize, "page-size", 1000, "events per read-back request (--verify)")
	fs.BoolVar(&o.jsonOut, "json", false, "print the result as JSON instead of text")
	fs.StringVar(&o.out, "out", "", "also write the JSON result to this file")
	fs.DurationVar(&o.progress, "progress-interval", 0, "time between progress updates (default 1s on a terminal, 5s otherwise)")
	fs.BoolVar(&o.quiet, "quiet", false, "no progress output")
	fs.BoolVarP(&o.help, "help", "h", false, "show this help")
	return fs
}

// parse reads args into a load configuration.
func parse(args []string, getenv func(string) string, tty bool) (*options, load.Config, *pflag.FlagSet, error) {
	var o options
	fs := newFlagSet(&o)
	fs.SetOutput(io.Discard)
	// "go run ./cmd/perf-client -- --url ..." passes the "--" on: skip it.
	if len(args) > 0 && args[0] == "--" {
		args = args[1:]
	}
	if err := fs.Parse(args); err != nil {
		return nil, load.Config{}, fs, &usageError{msg: err.Error()}
	}
	if o.help {
		return &o, load.Config{}, fs, nil
	}
	if fs.NArg() > 0 {
		return nil, load.Config{}, fs, usagef("unexpected argument %q (all options are flags, e.g. --events 1000)", fs.Arg(0))
	}
	set := func(name string) bool { return fs.Changed(name) }
	var errs []string
	bad := func(format string, args ...any) { errs = append(errs, fmt.Sprintf(format, args...)) }

	if u, err := url.Parse(o.url); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		bad("invalid --url %q: want http://host:port or https://host:port", o.url)
	} else if (u.Path != "" && u.Path != "/") || u.RawQuery != "" {
		bad("invalid --url %q: give the base URL only, without a path or query", o.url)
	}
	if o.latencyTest && o.throughputTest {
		bad("--latency-test and --throughput-test are exclusive: choose one")
	}
	if o.events < 0 || (set("events") || set("num-events")) && o.events == 0 {
		bad("invalid --events %d: want at least 1", o.events)
	}
	if o.duration < 0 || set("duration") && o.duration == 0 {
		bad("invalid --duration %s: want a positive duration such as 60s", o.duration)
	}
	if o.warmup < 0 {
		bad("invalid --warmup %s: must not be negative", o.warmup)
	}
	if set("rate") && (o.rate <= 0 || math.IsInf(o.rate, 0) || math.IsNaN(o.rate)) {
		bad("invalid --rate %v: want a positive number of events per second", o.rate)
	}
	if o.producers < 1 {
		bad("invalid --producers %d: want at least 1", o.producers)
	}
	if set("connections") && o.connections < max(1, o.producers) {
		bad("invalid --connections %d: want at least one per producer (--producers %d)", o.connections, o.producers)
	}
	if o.batch < 1 {
		bad("invalid --batch %d: want at least 1 event per request", o.batch)
	}
	if o.payloadSize < load.MinPayloadSize {
		bad("invalid --payload-size %d: want at least %d bytes", o.payloadSize, load.MinPayloadSize)
	}
	switch o.ack {
	case "memory", "durable", "processed":
	default:
		bad("invalid --ack %q: want memory, durable or processed", o.ack)
	}
	if o.timeout <= 0 {
		bad("invalid --timeout %s: want a positive duration", o.timeout)
	}
	if o.retries < 0 {
		bad("invalid --retries %d: must not be negative", o.retries)
	}
	if o.retryDelay < 0 {
		bad("invalid --retry-delay %s: must not be negative", o.retryDelay)
	}
	if o.pageSize < 1 {
		bad("invalid --page-size %d: want at least 1", o.pageSize)
	}
	if o.progress < 0 {
		bad("invalid --progress-interval %s: must not be negative", o.progress)
	}
	if len(errs) > 0 {
		return nil, load.Config{}, fs, &usageError{msg: strings.Join(errs, "\nperf-client: ")}
	}

	rate := o.rate
	if o.latencyTest && !set("rate") {
		rate = defaultLatencyRate
	}
	if o.events == 0 && o.duration == 0 {
		if o.latencyTest || o.throughputTest {
			o.duration = defaultTestDuration
		} else {
			o.events = defaultEvents
		}
	}
	conns := o.connections
	if conns == 0 {
		conns = o.producers
		if rate > 0 {
			conns = max(o.producers, defaultOpenLoopConns)
		}
	}
	token := o.token
	if token == "" {
		token = getenv("BADBATCH_TOKEN")
	}
	runID, err := newRunID()
	if err != nil {
		return nil, load.Config{}, fs, err
	}
	cfg := load.Config{
		URL: strings.TrimSuffix(o.url, "/"), Token: token, Events: o.events, Duration: o.duration,
		Warmup: o.warmup, Rate: rate, Producers: o.producers, Connections: conns, Batch: o.batch, NDJSON: o.ndjson,
		Payload: load.Payload{Size: o.payloadSize}, Ack: o.ack, Timeout: o.timeout,
		Retries: o.retries, RetryDelay: o.retryDelay, Record: o.verify,
		RunID: runID,
	}
	if !o.quiet {
		cfg.TTY = tty
		cfg.ProgressInterval = o.progress
		if cfg.ProgressInterval == 0 {
			cfg.ProgressInterval = 5 * time.Second
			if tty {
				cfg.ProgressInterval = time.Second
			}
		}
	}
	if err := cfg.Validate(); err != nil {
		return nil, load.Config{}, fs, &usageError{msg: err.Error()}
	}
	return &o, cfg, fs, nil
}

func newRunID() (string, error) {
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("run id: %w", err)
	}
	return "perf-" + hex.EncodeToString(b[:]), nil
}

// output is the JSON document of --json and --out.
type output struct {
	*load.Result
	Node        *nodeDelta     `json:"node,omitempty"` // the node's own counters over the run
	Verify      *verify.Report `json:"verify,omitempty"`
	VerifyError string         `json:"verify_error,omitempty"`
	OK          bool           `json:"ok"`
}

func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer, tty bool) int {
	o, cfg, fs, err := parse(args, getenv, tty)
	if err != nil {
		var ue *usageError
		if errors.As(err, &ue) {
			fmt.Fprintln(stderr, "perf-client:", err)
			fmt.Fprintln(stderr, "Run 'perf-client --help' for usage.")
			return 2
		}
		fmt.Fprintln(stderr, "perf-client:", err)
		return 1
	}
	if o.help {
		fmt.Fprintf(stdout, "Usage: perf-client [flags]\n\nLoad and latency tool for a BadBatch appliance.\n\n%s", fs.FlagUsages())
		fmt.Fprint(stdout, helpTail)
		return 0
	}
	var outFile *os.File
	if o.out != "" {
		if outFile, err = os.Create(o.out); err != nil {
			fmt.Fprintf(stderr, "perf-client: --out: %v\n", err)
			return 2
		}
		defer outFile.Close()
	}
	if !o.quiet {
		cfg.Progress = stderr
	}
	if err := preflight(ctx, cfg.URL); err != nil {
		fmt.Fprintln(stderr, "perf-client:", err)
		return 1
	}

	before, haveBefore := nodeCounters(ctx, cfg.URL, cfg.Token)
	res, led, err := load.Run(ctx, cfg)
	if err != nil {
		fmt.Fprintln(stderr, "perf-client:", err)
		return 1
	}
	doc := output{Result: res, OK: res.Total.EventsAcked > 0}
	if after, ok := nodeCounters(ctx, cfg.URL, cfg.Token); ok && haveBefore {
		doc.Node = &nodeDelta{EventsIn: after.EventsIn - before.EventsIn, Duplicates: after.Duplicates - before.Duplicates}
	}
	if o.verify && ctx.Err() == nil {
		rep, verr := verify.Check(ctx, verify.Options{URL: cfg.URL, Token: cfg.Token, PageSize: o.pageSize}, led)
		if verr != nil {
			doc.VerifyError = verr.Error()
			doc.OK = false
		} else {
			doc.Verify = rep
			doc.OK = doc.OK && rep.OK()
		}
	}

	if o.jsonOut {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(doc); err != nil {
			fmt.Fprintln(stderr, "perf-client:", err)
			return 1
		}
	} else {
		_ = res.WriteText(stdout)
		if d := doc.Node; d != nil {
			note := "matches the events acknowledged"
			if int64(d.EventsIn) != res.Total.EventsAcked-res.Total.EventsDuplicate {
				note = fmt.Sprintf("acknowledged as new: %d; other clients or unanswered requests make a difference", res.Total.EventsAcked-res.Total.EventsDuplicate)
			}
			fmt.Fprintf(stdout, "node counters (/api/v1/status, whole run): %s events stored, %s duplicates (%s)\n",
				load.Group(int64(d.EventsIn)), load.Group(int64(d.Duplicates)), note)
		}
		switch {
		case doc.VerifyError != "":
			fmt.Fprintf(stdout, "verification: FAILED: %s\n", doc.VerifyError)
		case doc.Verify != nil:
			verdict := "OK"
			if !doc.Verify.OK() {
				verdict = "FAILED"
			}
			fmt.Fprintf(stdout, "verification: %s (read back %d..%d in %d pages): %s\n", verdict, doc.Verify.From, doc.Verify.To, doc.Verify.Pages, doc.Verify)
			for _, s := range doc.Verify.Samples {
				fmt.Fprintf(stdout, "  %s\n", s)
			}
		}
	}
	if outFile != nil {
		enc := json.NewEncoder(outFile)
		enc.SetIndent("", "  ")
		if err := enc.Encode(doc); err != nil {
			fmt.Fprintf(stderr, "perf-client: --out: %v\n", err)
			return 1
		}
		if err := outFile.Close(); err != nil {
			fmt.Fprintf(stderr, "perf-client: --out: %v\n", err)
			return 1
		}
	}
	switch {
	case ctx.Err() != nil:
		fmt.Fprintln(stderr, "perf-client: interrupted; the figures cover the part that ran")
		return 1
	case res.Total.EventsAcked == 0:
		fmt.Fprintln(stderr, "perf-client: the node acknowledged no event (see the errors above)")
		return 1
	case !doc.OK:
		fmt.Fprintln(stderr, "perf-client: verification failed")
		return 1
	}
	return 0
}

// nodeDelta is how much the node's own counters moved during the run.
type nodeDelta struct {
	EventsIn   uint64 `json:"events_in"`
	Duplicates uint64 `json:"duplicates"`
}

// nodeCounters reads events_in and duplicates from GET /api/v1/status
// (admin scope); false when they are not available.
func nodeCounters(ctx context.Context, base, token string) (nodeDelta, bool) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/api/v1/status", nil)
	if err != nil {
		return nodeDelta{}, false
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Do(req)
	if err != nil {
		return nodeDelta{}, false
	}
	defer resp.Body.Close()
	var st struct {
		Ring *nodeDelta `json:"ring"`
	}
	if resp.StatusCode != http.StatusOK || json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&st) != nil || st.Ring == nil {
		return nodeDelta{}, false
	}
	return *st.Ring, true
}

// preflight checks that the node answers at all, for a clear error.
func preflight(ctx context.Context, base string) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/health", nil)
	if err != nil {
		return fmt.Errorf("--url %s: %w", base, err)
	}
	c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Do(req)
	if err != nil {
		return fmt.Errorf("cannot reach the node at %s: %w", base, err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	return nil
}

const helpTail = `
Modes:
  default            closed loop: --events (default 100000) as fast as the node answers
  --throughput-test  for --duration (default 10s); closed loop, or open loop with --rate
  --latency-test     open loop at --rate (default 1000 events/s) for --duration (default 10s)
  any --rate         open loop: requests start on a fixed schedule whether or not earlier
                     ones were answered; latency runs from the scheduled (intended) send
                     time, so a stall shows in the percentiles (coordinated omission
                     corrected); "service time" is measured from the actual send.

Exit status: 0 ok, 1 nothing acknowledged / node unreachable / verification failed, 2 usage.
`
