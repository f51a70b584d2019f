package appliance

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math/bits"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/badbatch/badbatch/appliance/api"
	"github.com/badbatch/badbatch/appliance/cluster"
	"github.com/badbatch/badbatch/appliance/event"
	"github.com/badbatch/badbatch/appliance/journal"
	"github.com/badbatch/badbatch/appliance/metrics"
	"github.com/badbatch/badbatch/appliance/streams"
	"github.com/badbatch/badbatch/config"
	"github.com/badbatch/badbatch/wasmhost"
)

// CheckpointStage is the journal checkpoint name of the WASM stage.
const CheckpointStage = "wasm"

// WithWasmCacheDir sets wazero's compilation cache directory (default
// <data_dir>/wasm-cache). Tests share one across nodes: compiling a Go
// guest takes seconds.
func WithWasmCacheDir(dir string) Option { return func(o *options) { o.wasmCache = dir } }

// wasmStage is the node's WASM handler stage: a wasmhost Registry over
// modules.dir whose GraphHandler runs as one ring consumer after the
// journal, the output streams its outputs land in, the processed sequence
// ack=processed waits on, and the journal checkpoint for replay.
type wasmStage struct {
	log     *slog.Logger
	host    *wasmhost.Host
	reg     *wasmhost.Registry
	streams *streams.Set
	j       *journal.Journal // nil when journal.enabled = false
	dir     string
	gh      *wasmhost.GraphHandler[event.Slot]

	ctx    context.Context // bounds module calls; cancelled when the stage closes
	cancel context.CancelFunc

	runMu     sync.Mutex
	runCancel context.CancelFunc
	runDone   chan struct{}
	watching  bool // modules.hot_reload in effect
	stopped   bool // close began: start no more

	processed atomic.Int64 // every event <= processed went through every module
	waiters   atomic.Int64
	notifyMu  sync.Mutex
	notifyCh  chan struct{}

	recording atomic.Int64 // ack=processed publishes in flight: keep outputs
	outs      *outputRing

	ckptEvery time.Duration
	ckptMu    sync.Mutex // lastCkpt: the stage and the final checkpoint at close
	lastCkpt  time.Time
	ckptSeq   atomic.Int64
	ckptErrs  atomic.Uint64
	failing   bool   // streams failing (log once per episode)
	now       int64  // clock reading of the running ring batch (0: none)
	lastName  string // emit's last stream, to skip the set's lookup
	lastSt    *streams.Stream
	pend      []pendingOut     // outputs of the running ring batch, appended by flush
	arena     []byte           // key and data of the inline outputs in pend
	flushOuts []streams.Output // flush's scratch
	origins   []origin         // module versions of the outputs in pend
	errs      []string         // error messages of the outputs in pend
	runSrc    []int64          // sources of the forward runs in pend
	refs      bool             // forwards may be stored by reference (see emit)
	durable   int64            // the input journal's durable sequence when last read (see refreshDurable)
	appendErr uint64           // AppendErrors at the previous batch end
	replayed  atomic.Int64
}

// newWasmStage creates the host (compile cache in cacheDir), opens the
// output streams under <dataDir>/streams and loads modules.dir. A missing
// modules directory means no modules (logged); modules that fail to load
// are logged and reported in their status, never fatal.
func newWasmStage(cfg config.Config, dataDir, cacheDir string, j *journal.Journal, log *slog.Logger) (_ *wasmStage, err error) {
	w := &wasmStage{log: log, j: j, dir: cfg.Modules.Dir, notifyCh: make(chan struct{}), ckptEvery: time.Second,
		// With fsync = "never" nothing is ever known durable: a power loss
		// could drop input events that outputs refer to, and their
		// sequences would be reused. Store every output inline then.
		refs: j != nil && cfg.Journal.Fsync != string(journal.FsyncNever), durable: -1}
	w.ctx, w.cancel = context.WithCancel(context.Background())
	w.ckptSeq.Store(-1)
	w.processed.Store(-1)
	w.outs = newOutputRing(max(8192, 4*cfg.Ring.BufferSize))
	defer func() {
		if err != nil {
			w.closeEarly()
		}
	}()
	if cacheDir == "" {
		cacheDir = filepath.Join(dataDir, "wasm-cache")
	}
	w.host, err = wasmhost.NewHost(wasmhost.HostConfig{CacheDir: cacheDir, Logger: log.With("component", "wasmhost")})
	if err != nil {
		return nil, err
	}
	sopts := streams.Options{
		Dir:            filepath.Join(dataDir, "streams"),
		SegmentSize:    int64(cfg.Journal.SegmentSize),
		RetentionBytes: int64(cfg.Journal.RetentionBytes),
		RetentionAge:   cfg.Journal.RetentionAge.Duration,
		Logger:         log.With("component", "streams"),
	}
	if j != nil {
		sopts.Source = j // forwards are stored by reference to the input journal
	}
	w.streams, err = streams.Open(sopts)
	if err != nil {
		return nil, err
	}
	w.reg, err = wasmhost.NewRegistry(wasmhost.RegistryConfig{
		Dir:      w.dir,
		Host:     w.host,
		Logger:   log.With("component", "modules"),
		Debounce: cfg.Modules.Debounce.Duration,
		Sink:     w.sink,
	})
	if err != nil {
		return nil, err
	}
	if !w.dirExists() {
		log.Info("modules directory does not exist: no handler modules loaded (uploading one over REST creates it)", "dir", w.dir)
	} else {
		start := time.Now()
		if err := w.reg.LoadAll(w.ctx); err != nil {
			log.Error("some modules failed to load; they are listed with their error in GET /api/v1/modules", "err", err)
		}
		graph, gerr := w.reg.Graph()
		log.Info("modules loaded", "dir", w.dir, "count", len(w.reg.Stages()), "graph", graph, "graph_err", gerr,
			"took", time.Since(start).Round(time.Millisecond))
	}
	// Up to 1024 ring events per module Process call: each module still
	// gets calls of at most its max_batch_events, and a module with
	// instances > 1 splits the 1024 across its instances.
	w.gh = wasmhost.NewGraphHandler(w.ctx, w.reg, viewSlot, w.emit, wasmhost.GraphOptions{MaxBatch: stageMaxBatch})
	return w, nil
}

func (w *wasmStage) dirExists() bool {
	fi, err := os.Stat(w.dir)
	return err == nil && fi.IsDir()
}

// viewSlot shows a ring slot to the modules without copying.
func viewSlot(e *event.Slot, _ int64, ev *wasmhost.Event) {
	ev.Seq = uint64(e.Seq)
	ev.Timestamp = e.Timestamp
	ev.Key = e.Key
	ev.Producer = e.Producer
	ev.Data = e.Data
}

// streamFor names the output stream of o.
func streamFor(o *wasmhost.Output) string {
	switch {
	case o.Kind == wasmhost.OutputDeadLetter:
		return streams.DeadLetter
	case o.Route == "":
		return streams.Default
	}
	return o.Route
}

// pendingOut is a module output waiting for the end of the ring batch,
// kept small (no pointers but the stream). An inline output's key and data
// are copied into the stage's arena (the module's output buffer is reused
// by its next call). Forwards stored by reference copy nothing: consecutive
// ones to one stream of one module version are one pendingOut, a run of
// sources (runLen of them from runStart in wasmStage.runSrc) appended with
// Stream.AppendForwards.
type pendingOut struct {
	st                               *streams.Stream
	source, ts                       int64
	origin                           int32 // index in wasmStage.origins
	errIdx                           int32 // index in wasmStage.errs, -1: none
	keyOff, keyLen, dataOff, dataLen int32
	runStart, runLen                 int32 // a run of forwards (runLen > 0)
	kind                             streams.Kind
}

// origin is the module version an output came from.
type origin struct{ module, version string }

// stageMaxBatch bounds the ring events the stage hands to the modules at
// once.
const stageMaxBatch = 1024

// maxPending bounds the outputs (and arena bytes) the stage holds before
// appending them to their streams mid-batch.
const (
	maxPending      = 4096
	maxPendingBytes = 1 << 20
)

// emit queues one module output for its stream (appended by flush at the
// end of the ring batch) and keeps it for ack=processed answers while one
// is waiting.
func (w *wasmStage) emit(o wasmhost.Output) {
	name := streamFor(&o)
	if w.lastSt == nil || name != w.lastName {
		st, err := w.streams.Ensure(name)
		if err != nil {
			out := w.output(&o)
			out.Key, out.Data = o.Key, o.Data
			_, err = w.streams.Append(name, &out) // fails again, and is counted
			w.appendFailed(name, err)
			return
		}
		w.lastName, w.lastSt = name, st
	}
	if n := len(w.origins); n == 0 || w.origins[n-1].module != o.Module || w.origins[n-1].version != o.Version {
		w.origins = append(w.origins, origin{o.Module, o.Version})
	}
	org := int32(len(w.origins) - 1)
	source, ts := w.sourceAndTime(&o)
	if w.recording.Load() > 0 && source >= 0 {
		out := w.output(&o)
		out.Key, out.Data = o.Key, o.Data
		w.outs.add(source, name, &out)
	}
	// A forward is stored by reference only to an input event that is
	// durable in the input journal (so it survives whatever its reference
	// survives, and its sequence is never reused). With fsync = "batch"
	// (the default) the journal stage fsyncs before this stage sees an
	// event; with "interval", events newer than the last fsync are stored
	// inline.
	if o.Kind == wasmhost.OutputForward && source >= 0 && w.refs && (source <= w.durable || source <= w.refreshDurable()) {
		w.queueForward(org, source, ts)
		return
	}
	p := pendingOut{st: w.lastSt, source: source, ts: ts, origin: org, errIdx: -1, kind: streams.Kind(o.Kind)}
	if o.Err != nil {
		p.errIdx = int32(len(w.errs))
		w.errs = append(w.errs, o.Err.Error())
	}
	p.keyOff, p.keyLen = int32(len(w.arena)), int32(len(o.Key))
	w.arena = append(w.arena, o.Key...)
	p.dataOff, p.dataLen = int32(len(w.arena)), int32(len(o.Data))
	w.arena = append(w.arena, o.Data...)
	w.pend = append(w.pend, p)
	if len(w.pend) >= maxPending || len(w.arena) >= maxPendingBytes {
		w.flush()
	}
}

// queueForward adds a forward by reference of input source to the run at
// the end of pend when it can extend it, else starts a run.
func (w *wasmStage) queueForward(org int32, source, ts int64) {
	if n := len(w.pend); n > 0 {
		if r := &w.pend[n-1]; r.runLen > 0 && r.st == w.lastSt && r.origin == org && r.ts == ts &&
			source > w.runSrc[len(w.runSrc)-1] {
			w.runSrc = append(w.runSrc, source)
			r.runLen++
			return
		}
	}
	w.pend = append(w.pend, pendingOut{st: w.lastSt, ts: ts, origin: org, errIdx: -1,
		runStart: int32(len(w.runSrc)), runLen: 1})
	w.runSrc = append(w.runSrc, source)
	if len(w.runSrc) >= maxPending {
		w.flush()
	}
}

// sourceAndTime is o's input sequence (-1 for timer and flush outputs) and
// its timestamp (the ring batch's clock reading).
func (w *wasmStage) sourceAndTime(o *wasmhost.Output) (source, ts int64) {
	source, ts = -1, w.now
	if o.Event != nil {
		source = int64(o.Event.Seq)
	}
	if ts == 0 {
		ts = time.Now().UnixNano()
	}
	return source, ts
}

// refreshDurable rereads the input journal's durable sequence. emit keeps
// it in w.durable and rereads it only when an output's source is past it:
// the journal stage writes the line it lives on at every append, so a read
// per output would be a cache miss per output.
func (w *wasmStage) refreshDurable() int64 {
	w.durable = w.j.Durable()
	return w.durable
}

// output is o as a stream output, without key and data.
func (w *wasmStage) output(o *wasmhost.Output) streams.Output {
	out := streams.Output{Kind: streams.Kind(o.Kind), Module: o.Module, Version: o.Version}
	out.Source, out.Timestamp = w.sourceAndTime(o)
	if o.Err != nil {
		out.Err = o.Err.Error()
	}
	return out
}

// flush appends the pending outputs to their streams, one batch per run of
// outputs to the same stream.
func (w *wasmStage) flush() {
	for i := 0; i < len(w.pend); {
		st := w.pend[i].st
		if p := &w.pend[i]; p.runLen > 0 {
			org := &w.origins[p.origin]
			if _, err := w.streams.AppendForwardsTo(st, org.module, org.version, p.ts, w.runSrc[p.runStart:p.runStart+p.runLen]); err != nil {
				w.appendFailed(st.Name(), err)
			}
			i++
			continue
		}
		w.flushOuts = w.flushOuts[:0]
		for ; i < len(w.pend) && w.pend[i].st == st && w.pend[i].runLen == 0; i++ {
			p := &w.pend[i]
			org := &w.origins[p.origin]
			o := streams.Output{Kind: p.kind, Module: org.module, Version: org.version, Source: p.source, Timestamp: p.ts,
				Key: w.arena[p.keyOff : p.keyOff+p.keyLen], Data: w.arena[p.dataOff : p.dataOff+p.dataLen]}
			if p.errIdx >= 0 {
				o.Err = w.errs[p.errIdx]
			}
			w.flushOuts = append(w.flushOuts, o)
		}
		if _, err := w.streams.AppendBatchTo(st, w.flushOuts); err != nil {
			w.appendFailed(st.Name(), err)
		}
	}
	clear(w.pend)
	clear(w.flushOuts)
	clear(w.origins)
	clear(w.errs)
	w.pend, w.arena, w.origins, w.errs, w.runSrc = w.pend[:0], w.arena[:0], w.origins[:0], w.errs[:0], w.runSrc[:0]
}

// appendFailed logs the first failed append of an episode.
func (w *wasmStage) appendFailed(stream string, err error) {
	if !w.failing {
		w.failing = true
		w.log.Error("output stream append failed (counted in badbatch_stream_append_errors_total; a failing stream journal holds the WASM checkpoint back)", "stream", stream, "err", err)
	}
}

// sink receives timer and flush outputs (from the registry's goroutines).
func (w *wasmStage) sink(o wasmhost.Output) {
	name := streamFor(&o)
	out := streams.Output{Kind: streams.Kind(o.Kind), Module: o.Module, Version: o.Version, Source: -1,
		Timestamp: time.Now().UnixNano(), Key: o.Key, Data: o.Data}
	if _, err := w.streams.Append(name, &out); err != nil {
		w.log.Error("output stream append failed (timer/flush output lost)", "stream", name, "module", o.Module, "err", err)
		return
	}
	if st, ok := w.streams.Get(name); ok {
		if err := st.Commit(); err != nil {
			w.log.Error("output stream commit failed", "stream", name, "err", err)
		}
	}
}

// OnEvent implements disruptor.EventHandler[event.Slot].
func (w *wasmStage) OnEvent(e *event.Slot, seq int64, endOfBatch bool) error {
	if w.now == 0 {
		w.now = time.Now().UnixNano() // one clock reading per ring batch
	}
	if w.recording.Load() > 0 {
		w.outs.reset(e.Seq)
	}
	if err := w.gh.OnEvent(e, seq, endOfBatch); err != nil {
		return fmt.Errorf("wasm stage at sequence %d: %w", e.Seq, err)
	}
	if endOfBatch {
		w.endBatch(e.Seq)
	}
	return nil
}

// endBatch writes the batch's outputs, publishes the processed sequence
// and, at most once per ckptEvery, saves the journal checkpoint.
func (w *wasmStage) endBatch(seq int64) {
	w.now = 0
	w.flush()
	if err := w.streams.Commit(); err != nil {
		if !w.failing {
			w.failing = true
			w.log.Error("output stream commit failed; the WASM checkpoint stays behind so a restart replays these events", "err", err)
		}
	} else if n := w.streams.AppendErrors(); w.failing && n == w.appendErr {
		w.failing = false
		w.log.Info("output streams store outputs again")
	} else {
		w.appendErr = n
	}
	w.processed.Store(seq)
	if w.waiters.Load() > 0 {
		w.notifyMu.Lock()
		close(w.notifyCh)
		w.notifyCh = make(chan struct{})
		w.notifyMu.Unlock()
	}
	if w.j != nil {
		w.ckptMu.Lock()
		due := time.Since(w.lastCkpt) >= w.ckptEvery
		w.ckptMu.Unlock()
		if due {
			w.checkpoint(seq)
		}
	}
}

// checkpoint saves seq as the stage's journal checkpoint once every output
// appended so far is durable in its stream (so a crash after the checkpoint
// cannot lose outputs of events the replay will skip).
func (w *wasmStage) checkpoint(seq int64) {
	w.ckptMu.Lock()
	defer w.ckptMu.Unlock()
	w.lastCkpt = time.Now()
	if seq <= w.ckptSeq.Load() {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	err := w.streams.WaitDurable(ctx)
	cancel()
	if err == nil {
		err = w.j.SaveCheckpoint(CheckpointStage, seq)
	}
	if err != nil {
		w.ckptErrs.Add(1)
		w.log.Warn("WASM stage checkpoint not saved; a restart replays from the previous one", "sequence", seq, "err", err)
		return
	}
	w.ckptSeq.Store(seq)
}

// replay feeds the stage every journal record after its checkpoint (up to
// the journal's last sequence), before the ring takes new events: delivery
// to modules is at-least-once. New events get sequences after the journal's
// last, so sequences stay unique and increasing.
func (w *wasmStage) replay() error {
	if w.j == nil {
		return nil
	}
	from := w.j.Checkpoint(CheckpointStage) + 1
	last := w.j.LastSequence()
	defer w.processed.Store(last)
	if from > last {
		return nil
	}
	if len(w.reg.Stages()) == 0 {
		w.log.Info("no modules loaded: skipping the replay of journal records into the WASM stage", "from", from, "to", last)
		w.checkpoint(last)
		return nil
	}
	start := time.Now()
	w.log.Info("replaying journal into the WASM stage", "from", from, "to", last)
	const batchMax = 256
	batch := make([]wasmhost.Event, 0, batchMax)
	var top int64 = -1
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		if err := w.gh.Process(batch); err != nil {
			return err
		}
		w.replayed.Add(int64(len(batch)))
		batch = batch[:0]
		w.endBatch(top)
		return nil
	}
	err := w.j.Replay(from, func(r journal.Record) error {
		if r.Sequence > last {
			return nil
		}
		batch = append(batch, wasmhost.Event{Seq: uint64(r.Sequence), Timestamp: r.Timestamp,
			Key: clone(r.Key), Producer: clone(r.Producer), Data: clone(r.Data)})
		top = r.Sequence
		if len(batch) == batchMax {
			return flush()
		}
		return nil
	})
	if err == nil {
		err = flush()
	}
	if err != nil {
		return fmt.Errorf("replay journal into the WASM stage: %w", err)
	}
	w.checkpoint(last)
	w.log.Info("replay done", "events", w.replayed.Load(), "took", time.Since(start).Round(time.Millisecond))
	return nil
}

func clone(b []byte) []byte { return append([]byte(nil), b...) }

// start runs the registry's watcher (hot reload and module timers) when
// modules.hot_reload is set and the directory exists, else a timer loop.
func (w *wasmStage) start(hotReload bool) {
	w.runMu.Lock()
	defer w.runMu.Unlock()
	if w.runDone != nil || w.stopped {
		return
	}
	ctx, cancel := context.WithCancel(w.ctx)
	done := make(chan struct{})
	w.runCancel, w.runDone, w.watching = cancel, done, hotReload
	watch := hotReload && w.dirExists()
	go func() {
		defer close(done)
		if watch {
			if err := w.reg.Run(ctx); err != nil {
				w.log.Error("module hot reload stopped; modules keep running without it", "err", err)
			} else {
				return
			}
		}
		// No watcher: still run the modules' timers.
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				for _, s := range w.reg.Stages() {
					s.Tick(ctx, w.sink)
				}
			}
		}
	}()
	w.log.Info("module watcher started", "hot_reload", watch, "dir", w.dir)
}

// setHotReload applies a changed modules.hot_reload (SIGHUP): the watcher
// goroutine is restarted with or without fsnotify.
func (w *wasmStage) setHotReload(on bool) {
	w.runMu.Lock()
	if w.watching == on || w.stopped {
		w.runMu.Unlock()
		return
	}
	if w.runCancel != nil {
		w.runCancel()
		<-w.runDone
		w.runCancel, w.runDone = nil, nil
	}
	w.runMu.Unlock()
	w.start(on)
}

// rescan reloads changed modules, loads new ones and unloads those whose
// manifest is gone (SIGHUP).
func (w *wasmStage) rescan() error {
	var errs []error
	if w.dirExists() {
		if err := w.reg.LoadAll(w.ctx); err != nil {
			errs = append(errs, err)
		}
	}
	for _, s := range w.reg.Stages() {
		if _, err := os.Stat(filepath.Join(w.dir, s.Name()+".toml")); errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, w.reg.Reload(w.ctx, s.Name()))
		}
	}
	w.log.Info("modules rescanned", "loaded", len(w.reg.Stages()), "digest", w.reg.Digest())
	return errors.Join(errs...)
}

// close stops the watcher, flushes the modules (their flush outputs land in
// the streams), saves the final checkpoint and closes streams and host.
// Call it after the ring drained and before the journal closes.
func (w *wasmStage) close(ctx context.Context) error {
	w.runMu.Lock()
	w.stopped = true
	if w.runCancel != nil {
		w.runCancel()
		<-w.runDone
	}
	w.runMu.Unlock()
	var errs []error
	if err := w.reg.Close(ctx); err != nil {
		errs = append(errs, fmt.Errorf("flush modules: %w", err))
	}
	if err := w.streams.Commit(); err != nil {
		errs = append(errs, err)
	}
	if w.j != nil {
		w.checkpoint(w.processed.Load())
	}
	if err := w.streams.Close(); err != nil {
		errs = append(errs, fmt.Errorf("close output streams: %w", err))
	}
	w.cancel()
	if err := w.host.Close(context.WithoutCancel(ctx)); err != nil {
		errs = append(errs, err)
	}
	w.log.Info("WASM stage closed", "processed_sequence", w.processed.Load(), "checkpoint", w.ckptSeq.Load())
	return errors.Join(errs...)
}

// closeEarly releases what newWasmStage acquired (New failed).
func (w *wasmStage) closeEarly() {
	ctx := context.Background()
	if w.reg != nil {
		_ = w.reg.Close(ctx)
	}
	if w.streams != nil {
		_ = w.streams.Close()
	}
	if w.host != nil {
		_ = w.host.Close(ctx)
	}
	w.cancel()
}

// Expect implements api.Processor: outputs are kept from now on.
func (w *wasmStage) Expect() { w.recording.Add(1) }

// Done implements api.Processor.
func (w *wasmStage) Done() { w.recording.Add(-1) }

// WaitProcessed implements api.Processor: it returns once every event up
// to seq went through the stage (woken by each batch end, no polling) and
// their outputs are durable, readable in their streams (the streams fsync
// every 10ms: the wait is on their durable sequences, not on the stage).
func (w *wasmStage) WaitProcessed(ctx context.Context, seq int64) error {
	w.waiters.Add(1)
	defer w.waiters.Add(-1)
	for {
		w.notifyMu.Lock()
		ch := w.notifyCh
		w.notifyMu.Unlock()
		if w.processed.Load() >= seq {
			if err := w.streams.WaitDurable(ctx); err != nil {
				return fmt.Errorf("waiting for the outputs of sequence %d to be stored: %w", seq, err)
			}
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("waiting for the WASM stage to process sequence %d (at %d): %w", seq, w.processed.Load(), ctx.Err())
		}
	}
}

// Outputs implements api.Processor.
func (w *wasmStage) Outputs(seq int64, fn func(api.ProcessedOutput)) bool { return w.outs.get(seq, fn) }

// Modules returns the number of loaded modules.
func (w *wasmStage) Modules() int { return len(w.reg.Stages()) }

// streamKnown reports whether name is a stream a reader may wait on before
// anything was written to it: the reserved streams and loaded modules' routes.
func (w *wasmStage) streamKnown(name string) bool {
	if name == streams.Default || name == streams.DeadLetter {
		return true
	}
	for _, s := range w.reg.Stages() {
		if m := s.Module(); m != nil {
			for _, r := range m.Manifest().Routes {
				if r == name {
					return true
				}
			}
		}
	}
	return false
}

// status is the "wasm" part of GET /api/v1/status.
func (w *wasmStage) status() map[string]any {
	graph, gerr := w.reg.Graph()
	mods := w.reg.Status()
	if mods == nil {
		mods = []wasmhost.ModuleStatus{}
	}
	st := map[string]any{
		"modules_dir":          w.dir,
		"modules":              mods,
		"graph":                graph,
		"digest":               w.reg.Digest(),
		"processed_sequence":   w.processed.Load(),
		"checkpoint":           w.ckptSeq.Load(),
		"replayed_at_start":    w.replayed.Load(),
		"stream_append_errors": w.streams.AppendErrors(),
	}
	if gerr != nil {
		st["graph_error"] = gerr.Error()
	}
	ss := []streams.Info{}
	for _, s := range w.streams.All() {
		ss = append(ss, s.Info())
	}
	st["streams"] = ss
	return st
}

// outputRing keeps the outputs of recent events, by sequence, for
// ack=processed answers (only while such a publish is in flight). An
// answer whose event was pushed out by later ones says so.
type outputRing struct {
	mu   sync.Mutex
	mask int64
	ents []outEntry
}

type outEntry struct {
	seq  int64
	outs []keptOutput
	buf  []byte
}

type keptOutput struct {
	kind                           streams.Kind
	module, version, stream, err   string
	keyOff, keyLen, dataOff, dataN int
}

func newOutputRing(n int) *outputRing {
	size := 1 << bits.Len(uint(n-1))
	r := &outputRing{mask: int64(size - 1), ents: make([]outEntry, size)}
	for i := range r.ents {
		r.ents[i].seq = -1
	}
	return r
}

func (r *outputRing) reset(seq int64) {
	r.mu.Lock()
	e := &r.ents[seq&r.mask]
	e.seq, e.outs, e.buf = seq, e.outs[:0], e.buf[:0]
	r.mu.Unlock()
}

func (r *outputRing) add(seq int64, stream string, o *streams.Output) {
	r.mu.Lock()
	defer r.mu.Unlock()
	e := &r.ents[seq&r.mask]
	if e.seq != seq {
		return
	}
	k := keptOutput{kind: o.Kind, module: o.Module, version: o.Version, stream: stream, err: o.Err,
		keyOff: len(e.buf), keyLen: len(o.Key)}
	e.buf = append(e.buf, o.Key...)
	k.dataOff, k.dataN = len(e.buf), len(o.Data)
	e.buf = append(e.buf, o.Data...)
	e.outs = append(e.outs, k)
}

func (r *outputRing) get(seq int64, fn func(api.ProcessedOutput)) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	e := &r.ents[seq&r.mask]
	if e.seq != seq {
		return false
	}
	for _, k := range e.outs {
		fn(api.ProcessedOutput{Kind: k.kind.String(), Module: k.module, Version: k.version, Stream: k.stream, Error: k.err,
			Key: e.buf[k.keyOff : k.keyOff+k.keyLen], Data: e.buf[k.dataOff : k.dataOff+k.dataN]})
	}
	return true
}

// wasmCollector exports module and stream statistics to /metrics.
type wasmCollector struct{ w *wasmStage }

var modLabels = []string{"module"}

func wasmDesc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc(prometheus.BuildFQName(metrics.Namespace, "", name), help, labels, nil)
}

var (
	descModCalls     = wasmDesc("module_calls_total", "Guest bb_process calls (current module version).", modLabels...)
	descModIn        = wasmDesc("module_events_in_total", "Events given to the module (current version).", modLabels...)
	descModOut       = wasmDesc("module_events_out_total", "Outputs emitted or forwarded by the module (current version).", modLabels...)
	descModDropped   = wasmDesc("module_events_dropped_total", "Events the module dropped (current version).", modLabels...)
	descModErrors    = wasmDesc("module_errors_total", "Events the module failed on, any error policy (current version).", modLabels...)
	descModDead      = wasmDesc("module_dead_lettered_total", "Events sent to the dead-letter stream (current version).", modLabels...)
	descModTraps     = wasmDesc("module_traps_total", "Guest traps (current version).", modLabels...)
	descModTimeouts  = wasmDesc("module_timeouts_total", "Guest calls stopped by the module's timeout (current version).", modLabels...)
	descModRestarts  = wasmDesc("module_restarts_total", "Instances recreated after a crash (current version).", modLabels...)
	descModQuar      = wasmDesc("module_quarantined", "1 while the module is quarantined after repeated crashes.", modLabels...)
	descModUp        = wasmDesc("module_loaded", "1 for a loaded module, 0 for one whose files failed to load.", modLabels...)
	descModLatency   = wasmDesc("module_call_latency_seconds", "Guest call latency quantiles (current version).", "module", "quantile")
	descModPages     = wasmDesc("module_memory_pages", "Largest linear memory of the module's instances, in 64 KiB pages.", modLabels...)
	descProcessed    = wasmDesc("wasm_processed_sequence", "Highest sequence every module has processed (ack=processed waits on it).")
	descCheckpoint   = wasmDesc("wasm_checkpoint_sequence", "Last WASM stage checkpoint saved in the journal (replay starts after it).")
	descStreamLast   = wasmDesc("stream_last_sequence", "Highest sequence appended to the output stream.", "stream")
	descStreamAppErr = wasmDesc("stream_append_errors_total", "Module outputs that could not be appended to their stream.")
)

// Describe implements prometheus.Collector.
func (c wasmCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descModCalls, descModIn, descModOut, descModDropped, descModErrors, descModDead,
		descModTraps, descModTimeouts, descModRestarts, descModQuar, descModUp, descModLatency, descModPages,
		descProcessed, descCheckpoint, descStreamLast, descStreamAppErr} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c wasmCollector) Collect(ch chan<- prometheus.Metric) {
	w := c.w
	counter := func(d *prometheus.Desc, v uint64, l ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), l...)
	}
	gauge := func(d *prometheus.Desc, v float64, l ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, l...)
	}
	b2f := func(b bool) float64 {
		if b {
			return 1
		}
		return 0
	}
	for _, st := range w.reg.Status() {
		n := st.Name
		gauge(descModUp, b2f(st.Loaded), n)
		if !st.Loaded {
			continue
		}
		counter(descModCalls, st.Calls, n)
		counter(descModIn, st.EventsIn, n)
		counter(descModOut, st.EventsOut, n)
		counter(descModDropped, st.Dropped, n)
		counter(descModErrors, st.Errors, n)
		counter(descModDead, st.DeadLettered, n)
		counter(descModTraps, st.Traps, n)
		counter(descModTimeouts, st.Timeouts, n)
		counter(descModRestarts, st.Restarts, n)
		gauge(descModQuar, b2f(st.Quarantined), n)
		gauge(descModPages, float64(st.MemoryPages), n)
		gauge(descModLatency, st.CallP50.Seconds(), n, "0.5")
		gauge(descModLatency, st.CallP99.Seconds(), n, "0.99")
	}
	gauge(descProcessed, float64(w.processed.Load()))
	gauge(descCheckpoint, float64(w.ckptSeq.Load()))
	counter(descStreamAppErr, w.streams.AppendErrors())
	for _, s := range w.streams.All() {
		gauge(descStreamLast, float64(s.Last()), s.Name())
	}
}

// ModuleStore is the node's module registry as fleet rollout sees it: it
// satisfies appliance/rollout.Local (List, Install, Remove).
type ModuleStore struct{ w *wasmStage }

// ModuleStore returns the node's module registry for fleet rollout.
func (a *Appliance) ModuleStore() ModuleStore { return ModuleStore{a.wasm} }

// List returns the loaded modules (name, version, sha256 of the wasm).
func (m ModuleStore) List() []cluster.ModuleInfo {
	out := []cluster.ModuleInfo{}
	for _, s := range m.w.reg.Stages() {
		if mod := s.Module(); mod != nil {
			out = append(out, cluster.ModuleInfo{Name: mod.Name(), Version: mod.Manifest().Version, SHA256: mod.SHA256()})
		}
	}
	return out
}

// Install validates module name (canary load), writes it into the modules
// directory (created if missing) and swaps it in; see Registry.Install.
func (m ModuleStore) Install(ctx context.Context, name string, manifest, wasm []byte) error {
	if err := os.MkdirAll(m.w.dir, 0o755); err != nil {
		return fmt.Errorf("create modules directory: %w", err)
	}
	return m.w.reg.Install(ctx, name, manifest, wasm)
}

// Remove deletes module name's files and unloads it.
func (m ModuleStore) Remove(ctx context.Context, name string) error { return m.w.reg.Remove(ctx, name) }

// Registry returns the node's module registry (nil never: a node always
// has one, possibly empty).
func (a *Appliance) Registry() *wasmhost.Registry { return a.wasm.reg }
