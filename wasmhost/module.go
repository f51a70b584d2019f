package wasmhost

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
)

// Errors reported by modules.
var (
	// ErrClosed is returned by calls on a closed Module.
	ErrClosed = errors.New("wasmhost: module closed")
	// ErrQuarantined is the reason given for events of a quarantined module.
	ErrQuarantined = errors.New("module quarantined after repeated crashes")
	// ErrEventTooLarge is the reason given for an event whose input record
	// does not fit the module's input buffer or max_batch_bytes.
	ErrEventTooLarge = errors.New("event too large for module input buffer")
	// ErrTimeout wraps a call that ran longer than the manifest's timeout.
	ErrTimeout = errors.New("call timed out")
	// ErrTrap wraps a guest trap (including proc_exit and out-of-memory).
	ErrTrap = errors.New("trap")
	// ErrOutputOverflow is the reason given for a single event whose outputs
	// do not fit the module's output buffer.
	ErrOutputOverflow = errors.New("output overflow")
	// ErrGuestFailed is the reason given for a single event the guest
	// returned BB_ERR_FAILED for.
	ErrGuestFailed = errors.New("guest reported failure")
)

// GuestError is an error record written by the guest for one event.
type GuestError struct{ Message string }

// Error implements error.
func (e *GuestError) Error() string { return "guest error: " + e.Message }

// EventError is returned by Process when an event fails under the halt
// policy; the module is then halted.
type EventError struct {
	Module string
	Index  int // index of the event in the batch passed to Process
	Seq    uint64
	Err    error
}

// Error implements error.
func (e *EventError) Error() string {
	return fmt.Sprintf("module %s halted at event seq %d (batch index %d): %v", e.Module, e.Seq, e.Index, e.Err)
}

// Unwrap returns the underlying error.
func (e *EventError) Unwrap() error { return e.Err }

// OutputKind says what an Output is.
type OutputKind uint8

// Output kinds.
const (
	// OutputEmit is a new event written by the guest (Data is its payload).
	OutputEmit OutputKind = 1
	// OutputForward is the input event passed on unchanged.
	OutputForward OutputKind = 2
	// OutputDeadLetter is an input event the module failed on (Err says why).
	OutputDeadLetter OutputKind = 5
)

// String names the output kind.
func (k OutputKind) String() string {
	switch k {
	case OutputEmit:
		return "emit"
	case OutputForward:
		return "forward"
	case OutputDeadLetter:
		return "dead-letter"
	}
	return fmt.Sprintf("OutputKind(%d)", uint8(k))
}

// Output is one result of a module call. Key and Data of an emit alias the
// guest's memory and are valid only during the emit callback: copy them if
// they are kept. Forward and dead-letter outputs carry the input's Key and
// Data.
type Output struct {
	Kind    OutputKind
	Module  string
	Version string // the module version that produced it
	Route   string // "" = the module's default output
	Input   int    // index of the input in the batch; -1 for timer/flush emits
	Event   *Event // the input event; nil for timer/flush emits
	Key     []byte
	Data    []byte
	Err     error // dead-letter only
}

// Module is one loaded version of a handler module: compiled code, a pool
// of instances and its counters. Its methods are safe for concurrent use;
// up to Manifest.Instances calls run in parallel.
type Module struct {
	host     *Host
	man      *Manifest
	sum      string
	state    *moduleState
	logger   *slog.Logger
	rt       wazero.Runtime
	compiled wazero.CompiledModule
	initDoc  []byte
	loadedAt time.Time

	hasInitialize, hasInit, hasTimer, hasFlush, hasStart bool
	// watchdog of running calls (guard.go, watchdog.go)
	epoch time.Time
	wd    watchdog
	// buffer layout, fixed by the canary instance
	inPtr, inCap, outPtr, outCap uint32

	tokens   chan struct{}  // one token per instance in use
	helpers  sync.WaitGroup // helper goroutines of parallel batches (parallel.go)
	closing  chan struct{}  // closed by Close: callers waiting for an instance give up
	parallel sync.Pool      // *parallelBatch (parallel.go)
	idleMu   sync.Mutex
	idle     []*instance
	closed   atomic.Bool

	mu          sync.Mutex
	consecutive int
	quarantined bool
	halted      error
	lastErr     string
	lastErrAt   time.Time
	hist        *hdrhistogram.Histogram

	calls, eventsIn, emitted, forwarded, dropped, errorsN, deadLettered,
	traps, timeouts, malformed, restarts, instancesN, memPages atomic.Uint64
}

type instance struct {
	mod                   api.Module
	mem                   api.Memory
	process, timer, flush api.Function
	stack                 [2]uint64
	touched               byte // see touch
	lastTimer             time.Time
	recs                  []outRec
	out                   []byte            // the output buffer recs were decoded from
	stop                  api.MutableGlobal // the loop guard's stop flag
	state                 atomic.Int64      // call state, see watchdog.go
	done                  <-chan struct{}   // the running call's ctx.Done(); guarded by wd.mu
}

// Manifest returns the module's manifest (do not modify it).
func (m *Module) Manifest() *Manifest { return m.man }

// Name is the module's name.
func (m *Module) Name() string { return m.man.Name }

// SHA256 is the hex sha256 of the module's wasm binary.
func (m *Module) SHA256() string { return m.sum }

// newInstance instantiates the module and runs the ABI start-up sequence.
func (m *Module) newInstance(ctx context.Context) (_ *instance, err error) {
	cfg := wazero.NewModuleConfig().
		WithName("").
		WithStartFunctions().
		WithStdout(&lineWriter{s: m.state, level: 1}).
		WithStderr(&lineWriter{s: m.state, level: 2}).
		WithSysWalltime().
		WithSysNanotime().
		WithRandSource(rand.Reader)
	// No guest code runs while instantiating: the guard moved any start
	// function to startExport.
	mod, err := m.rt.InstantiateModule(ctx, m.compiled, cfg)
	if err != nil {
		return nil, fmt.Errorf("instantiate: %w", err)
	}
	stop, ok := mod.ExportedGlobal(stopExport).(api.MutableGlobal)
	if !ok {
		_ = mod.Close(context.WithoutCancel(ctx))
		return nil, fmt.Errorf("instantiate: loop guard global %s missing", stopExport)
	}
	inst := &instance{mod: mod, stop: stop}
	m.watch(inst)
	defer func() {
		if err != nil {
			m.unwatch(inst)
			_ = mod.Close(context.WithoutCancel(ctx))
		}
	}()
	call := func(name string, args ...uint64) (uint64, error) {
		var st [2]uint64
		copy(st[:], args)
		if err := m.call(ctx, inst, mod.ExportedFunction(name), st[:], time.Duration(m.man.InitTimeout)); err != nil {
			return 0, fmt.Errorf("%s: %w", name, err)
		}
		return st[0], nil
	}
	if m.hasStart {
		if _, err := call(startExport); err != nil {
			return nil, err
		}
	}
	if m.hasInitialize {
		if _, err := call("_initialize"); err != nil {
			return nil, err
		}
	}
	v, err := call("bb_abi_version")
	if err != nil {
		return nil, err
	}
	if int32(v) != 1 {
		return nil, fmt.Errorf("bb_abi_version returned %d, this host speaks ABI version 1", int32(v))
	}
	d, err := call("bb_buffers")
	if err != nil {
		return nil, err
	}
	mem := mod.Memory()
	desc, ok := mem.Read(uint32(d), 16)
	if !ok {
		return nil, fmt.Errorf("bb_buffers returned %#x, outside memory", uint32(d))
	}
	inPtr, inCap := binary.LittleEndian.Uint32(desc[0:]), binary.LittleEndian.Uint32(desc[4:])
	outPtr, outCap := binary.LittleEndian.Uint32(desc[8:]), binary.LittleEndian.Uint32(desc[12:])
	if err := checkBuffers(mem.Size(), inPtr, inCap, outPtr, outCap); err != nil {
		return nil, err
	}
	if m.inCap == 0 {
		m.inPtr, m.inCap, m.outPtr, m.outCap = inPtr, inCap, outPtr, outCap
	} else if inPtr != m.inPtr || inCap != m.inCap || outPtr != m.outPtr || outCap != m.outCap {
		return nil, errors.New("bb_buffers reported a different layout than the first instance")
	}
	if m.hasInit {
		if uint32(len(m.initDoc)) > inCap {
			return nil, fmt.Errorf("init document (%d bytes) does not fit the input buffer (%d bytes)", len(m.initDoc), inCap)
		}
		mem.Write(inPtr, m.initDoc)
		r, err := call("bb_init", uint64(inPtr), uint64(len(m.initDoc)))
		if err != nil {
			return nil, err
		}
		if int32(r) != 0 {
			return nil, fmt.Errorf("bb_init refused the configuration (returned %d; see the module's log)", int32(r))
		}
	}
	inst.mem, inst.process = mem, mod.ExportedFunction("bb_process")
	if m.hasTimer {
		inst.timer = mod.ExportedFunction("bb_timer")
	}
	if m.hasFlush {
		inst.flush = mod.ExportedFunction("bb_flush")
	}
	inst.lastTimer = time.Now()
	m.instancesN.Add(1)
	m.notePages(mem)
	return inst, nil
}

func checkBuffers(memSize, inPtr, inCap, outPtr, outCap uint32) error {
	bad := func(why string) error {
		return fmt.Errorf("bb_buffers: in=[%#x,+%d) out=[%#x,+%d): %s", inPtr, inCap, outPtr, outCap, why)
	}
	switch {
	case inPtr%8 != 0 || outPtr%8 != 0:
		return bad("buffers must be 8-byte aligned")
	case inCap < 1024 || outCap < 1024 || inCap%8 != 0 || outCap%8 != 0:
		return bad("capacities must be multiples of 8 and at least 1024")
	case uint64(inPtr)+uint64(inCap) > uint64(memSize) || uint64(outPtr)+uint64(outCap) > uint64(memSize):
		return bad(fmt.Sprintf("outside memory of %d bytes", memSize))
	case uint64(inPtr) < uint64(outPtr)+uint64(outCap) && uint64(outPtr) < uint64(inPtr)+uint64(inCap):
		return bad("buffers overlap")
	}
	return nil
}

func (m *Module) notePages(mem api.Memory) {
	p := uint64(mem.Size() / 65536)
	for {
		old := m.memPages.Load()
		if p <= old || m.memPages.CompareAndSwap(old, p) {
			return
		}
	}
}

// slot is the right to use one instance; inst is nil until created.
// crashed is set once the slot's instance was discarded after a crash.
type slot struct {
	inst    *instance
	crashed bool
}

func (m *Module) acquire(ctx context.Context) (*slot, error) {
	select {
	case m.tokens <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-m.closing:
		return nil, ErrClosed
	}
	return m.idleSlot(), nil
}

// tryAcquire is acquire without waiting: false when every instance is in
// use (or the module is closed).
func (m *Module) tryAcquire() (*slot, bool) {
	if m.closed.Load() {
		return nil, false
	}
	select {
	case m.tokens <- struct{}{}:
		return m.idleSlot(), true
	default:
		return nil, false
	}
}

// idleSlot returns a slot with an idle instance, if there is one (the
// caller holds a token).
func (m *Module) idleSlot() *slot {
	s := &slot{}
	m.idleMu.Lock()
	if n := len(m.idle); n > 0 {
		s.inst = m.idle[n-1]
		m.idle = m.idle[:n-1]
	}
	m.idleMu.Unlock()
	return s
}

func (m *Module) release(s *slot) {
	if s.inst != nil {
		m.idleMu.Lock()
		m.idle = append(m.idle, s.inst)
		m.idleMu.Unlock()
	}
	<-m.tokens
}

// discard closes a crashed instance.
func (m *Module) discard(s *slot) {
	if s.inst != nil {
		m.unwatch(s.inst)
		_ = s.inst.mod.Close(context.Background())
		s.inst = nil
		s.crashed = true
		m.instancesN.Add(^uint64(0))
	}
}

// ensure creates the slot's instance if needed. A creation failure counts
// as a crash.
func (m *Module) ensure(ctx context.Context, s *slot) error {
	for s.inst == nil {
		if m.isQuarantined() {
			return ErrQuarantined
		}
		inst, err := m.newInstance(ctx)
		if err == nil {
			s.inst = inst
			if s.crashed {
				m.restarts.Add(1)
			}
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		m.noteCrash(fmt.Errorf("restart instance: %w", err))
	}
	return nil
}

// callKind classifies a bb_process call.
type callKind int

const (
	callOK       callKind = iota
	callFailed            // guest returned -1 (instance kept)
	callOutFull           // guest returned -2 (instance kept)
	callCrash             // trap, timeout, malformed output (instance discarded)
	callCanceled          // the caller's context ended
)

// Process runs the module over batch and reports each result through emit
// (synchronously, in input order per event). It returns an error only when
// ctx ends, the module is closed, or an event fails under the halt policy
// (an *EventError; the module then stays halted). Events are sent in calls
// of at most MaxBatchEvents events and MaxBatchBytes bytes. If the module
// has a timer that is due on the instance serving the call, its emits are
// reported first (Input -1, Event nil). emit must not call back into the
// Registry that owns the module (a swap waits for running batches).
func (m *Module) Process(ctx context.Context, batch []Event, emit func(Output)) error {
	if m.closed.Load() {
		return ErrClosed
	}
	if err := m.haltedErr(); err != nil {
		return err
	}
	if len(batch) == 0 {
		return nil
	}
	if k := m.parallelParts(len(batch)); k > 1 {
		return m.processParallel(ctx, batch, k, emit)
	}
	s, err := m.acquire(ctx)
	if err != nil {
		return err
	}
	defer m.release(s)
	if m.closed.Load() {
		return ErrClosed
	}
	m.eventsIn.Add(uint64(len(batch)))
	return m.processSlot(ctx, s, batch, 0, len(batch), emit)
}

// processSlot processes batch[lo:hi] on slot s: the instance's timer if
// due, then calls of at most max_batch_events / max_batch_bytes.
func (m *Module) processSlot(ctx context.Context, s *slot, batch []Event, lo, hi int, emit func(Output)) error {
	if m.hasTimer && m.man.TimerInterval > 0 && s.inst != nil {
		m.runTimer(ctx, s, time.Now(), emit)
	}
	limit := min(int(m.inCap), m.man.MaxBatchBytes)
	for lo < hi {
		end, size := lo, 0
		for end < hi && end-lo < m.man.MaxBatchEvents {
			sz := batch[end].recordSize()
			if size+sz > limit {
				break
			}
			size += sz
			end++
		}
		if end == lo {
			if err := m.fail(batch, lo, ErrEventTooLarge, emit); err != nil {
				return err
			}
			lo++
			continue
		}
		if err := m.runChunk(ctx, s, batch, lo, end, emit); err != nil {
			return err
		}
		lo = end
	}
	return nil
}

// runChunk calls the guest with batch[lo:hi], bisecting on failure.
func (m *Module) runChunk(ctx context.Context, s *slot, batch []Event, lo, hi int, emit func(Output)) error {
	err := ErrQuarantined
	if !m.isQuarantined() {
		err = m.ensure(ctx, s)
	}
	if err != nil {
		if errors.Is(err, ErrQuarantined) {
			for i := lo; i < hi; i++ {
				if err := m.fail(batch, i, ErrQuarantined, emit); err != nil {
					return err
				}
			}
			return nil
		}
		return err
	}
	kind, err := m.callProcess(ctx, s, batch[lo:hi])
	switch kind {
	case callOK:
		m.noteSuccess()
		return m.deliver(batch, lo, hi, s.inst.recs, s.inst.out, emit)
	case callCanceled:
		return err
	case callCrash:
		m.discard(s)
		if hi-lo == 1 {
			m.noteCrash(err)
		}
	case callOutFull:
		if hi-lo == 1 {
			err = ErrOutputOverflow
		}
	}
	if hi-lo == 1 {
		return m.fail(batch, lo, err, emit)
	}
	mid := lo + (hi-lo)/2
	if err := m.runChunk(ctx, s, batch, lo, mid, emit); err != nil {
		return err
	}
	return m.runChunk(ctx, s, batch, mid, hi, emit)
}

// callProcess encodes evs into the instance's input buffer, calls
// bb_process and decodes the outputs into s.inst.recs.
func (m *Module) callProcess(ctx context.Context, s *slot, evs []Event) (callKind, error) {
	inst := s.inst
	in, ok := inst.mem.Read(m.inPtr, m.inCap)
	if !ok {
		return callCrash, fmt.Errorf("%w: input buffer outside memory", ErrMalformedOutput)
	}
	inst.touched = touch(evs)
	p := 0
	for i := range evs {
		p += encodeInput(in[p:], &evs[i])
	}
	inst.stack[0], inst.stack[1] = uint64(len(evs)), uint64(p)
	m.calls.Add(1)
	start := time.Now()
	err := m.call(ctx, inst, inst.process, inst.stack[:], time.Duration(m.man.Timeout))
	m.observe(time.Since(start))
	if err != nil {
		switch {
		case ctx.Err() != nil || errors.Is(err, context.Canceled):
			m.discard(s)
			return callCanceled, err
		case errors.Is(err, ErrTimeout):
			m.timeouts.Add(1)
		default:
			m.traps.Add(1)
		}
		return callCrash, err
	}
	m.notePages(inst.mem)
	ret := int32(inst.stack[0])
	switch {
	case ret == -2:
		return callOutFull, ErrOutputOverflow
	case ret < 0:
		return callFailed, fmt.Errorf("%w (returned %d)", ErrGuestFailed, ret)
	case uint32(ret) > m.outCap:
		m.malformed.Add(1)
		return callCrash, fmt.Errorf("%w: out_len %d exceeds out_cap %d", ErrMalformedOutput, ret, m.outCap)
	}
	out, ok := inst.mem.Read(m.outPtr, uint32(ret))
	if !ok {
		m.malformed.Add(1)
		return callCrash, fmt.Errorf("%w: output buffer outside memory", ErrMalformedOutput)
	}
	inst.out = out
	inst.recs, err = decodeOutputs(out, decodeLimits{
		nIn: len(evs), routes: len(m.man.Routes), maxPerInput: m.man.MaxOutputsPerEvent,
	}, inst.recs[:0])
	if err != nil {
		m.malformed.Add(1)
		return callCrash, err
	}
	return callOK, nil
}

func (m *Module) route(r uint16) string {
	if r == 0 {
		return ""
	}
	return m.man.Routes[r-1]
}

// deliver reports the decoded outputs of batch[lo:hi]. Counters are
// summed locally and added once per call.
func (m *Module) deliver(batch []Event, lo, hi int, recs []outRec, out []byte, emit func(Output)) error {
	next := 0 // first input (relative) not yet accounted for
	var emitted, forwarded, dropped uint64
	defer func() {
		m.emitted.Add(emitted)
		m.forwarded.Add(forwarded)
		m.dropped.Add(dropped)
	}()
	name, version := m.man.Name, m.man.Version
	for i := range recs {
		r := &recs[i]
		in := int(r.input)
		if in >= next {
			dropped += uint64(in - next) // inputs without records
			next = in + 1
		}
		idx := lo + in
		ev := &batch[idx]
		switch r.kind {
		case kindEmit:
			key := ev.Key
			if r.keySet {
				key = r.key(out)
			}
			emitted++
			emit(Output{Kind: OutputEmit, Module: name, Version: version, Route: m.route(r.route), Input: idx, Event: ev, Key: key, Data: r.data(out)})
		case kindForward:
			forwarded++
			emit(Output{Kind: OutputForward, Module: name, Version: version, Route: m.route(r.route), Input: idx, Event: ev, Key: ev.Key, Data: ev.Data})
		case kindDrop:
			dropped++
		case kindError:
			if err := m.fail(batch, idx, &GuestError{Message: string(r.data(out))}, emit); err != nil {
				return err
			}
		}
	}
	dropped += uint64(hi - lo - next)
	return nil
}

// fail applies the error policy to batch[idx].
func (m *Module) fail(batch []Event, idx int, reason error, emit func(Output)) error {
	ev := &batch[idx]
	m.errorsN.Add(1)
	m.setLastErr(fmt.Errorf("event seq %d: %w", ev.Seq, reason))
	switch m.man.ErrorPolicy {
	case PolicyDrop:
		m.dropped.Add(1)
	case PolicyHalt:
		err := &EventError{Module: m.man.Name, Index: idx, Seq: ev.Seq, Err: reason}
		m.mu.Lock()
		m.halted = err
		m.mu.Unlock()
		m.logger.Error("module halted", "err", err)
		return err
	default:
		m.deadLettered.Add(1)
		emit(Output{Kind: OutputDeadLetter, Module: m.man.Name, Version: m.man.Version, Input: idx, Event: ev, Key: ev.Key, Data: ev.Data, Err: reason})
	}
	return nil
}

func (m *Module) observe(d time.Duration) {
	m.mu.Lock()
	_ = m.hist.RecordValue(max(1, d.Microseconds()))
	m.mu.Unlock()
}

func (m *Module) setLastErr(err error) {
	m.mu.Lock()
	m.lastErr, m.lastErrAt = err.Error(), time.Now()
	m.mu.Unlock()
}

func (m *Module) noteSuccess() {
	m.mu.Lock()
	m.consecutive = 0
	m.mu.Unlock()
}

// noteCrash counts a crash isolated to one event (or a failed restart);
// QuarantineAfter of them in a row quarantine the module.
func (m *Module) noteCrash(err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.consecutive++
	m.lastErr, m.lastErrAt = err.Error(), time.Now()
	if !m.quarantined && m.consecutive >= m.man.QuarantineAfter {
		m.quarantined = true
		m.logger.Error("module quarantined", "crashes_in_a_row", m.consecutive, "last_error", err)
	} else {
		m.logger.Warn("module instance crashed", "err", err)
	}
}

func (m *Module) isQuarantined() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.quarantined
}

func (m *Module) haltedErr() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.halted
}

// runTimer calls bb_timer on the slot's instance if its interval elapsed.
func (m *Module) runTimer(ctx context.Context, s *slot, now time.Time, emit func(Output)) {
	if s.inst == nil || s.inst.timer == nil || now.Sub(s.inst.lastTimer) < time.Duration(m.man.TimerInterval) {
		return
	}
	s.inst.lastTimer = now
	m.callNoInput(ctx, s, s.inst.timer, []uint64{uint64(now.UnixNano())}, "bb_timer", emit)
}

// callNoInput runs bb_timer or bb_flush and reports their emits.
func (m *Module) callNoInput(ctx context.Context, s *slot, fn api.Function, args []uint64, name string, emit func(Output)) {
	inst := s.inst
	copy(inst.stack[:], args)
	err := m.call(ctx, inst, fn, inst.stack[:], time.Duration(m.man.Timeout))
	if err != nil {
		m.setLastErr(fmt.Errorf("%s: %w", name, err))
		m.logger.Warn("call failed", "func", name, "err", err)
		m.discard(s)
		return
	}
	ret := int32(inst.stack[0])
	if ret < 0 || uint32(ret) > m.outCap {
		m.setLastErr(fmt.Errorf("%s returned %d", name, ret))
		return
	}
	out, _ := inst.mem.Read(m.outPtr, uint32(ret))
	recs, err := decodeOutputs(out, decodeLimits{routes: len(m.man.Routes), noInputOnly: true}, inst.recs[:0])
	inst.recs = recs
	if err != nil {
		m.malformed.Add(1)
		m.setLastErr(fmt.Errorf("%s: %w", name, err))
		m.discard(s)
		return
	}
	for i := range recs {
		r := &recs[i]
		var key []byte
		if r.keySet {
			key = r.key(out)
		}
		m.emitted.Add(1)
		emit(Output{Kind: OutputEmit, Module: m.man.Name, Version: m.man.Version, Route: m.route(r.route), Input: -1, Key: key, Data: r.data(out)})
	}
}

// Tick runs bb_timer on every idle instance whose timer_interval elapsed
// (busy instances run theirs at the start of their next batch). Call it
// periodically, e.g. every TimerInterval/2. Timer emits go to emit.
func (m *Module) Tick(ctx context.Context, emit func(Output)) {
	if !m.hasTimer || m.man.TimerInterval <= 0 || m.closed.Load() {
		return
	}
	var held []*slot
	defer func() {
		for _, s := range held {
			m.release(s)
		}
	}()
	now := time.Now()
	for range cap(m.tokens) {
		select {
		case m.tokens <- struct{}{}:
		default:
			return
		}
		s := &slot{}
		m.idleMu.Lock()
		if n := len(m.idle); n > 0 {
			s.inst = m.idle[n-1]
			m.idle = m.idle[:n-1]
		}
		m.idleMu.Unlock()
		held = append(held, s)
		m.runTimer(ctx, s, now, emit)
	}
}

// Close waits for running calls (bounded by ctx), calls bb_flush on each
// instance (reporting its emits to emit, which may be nil) and releases the
// module's runtime.
func (m *Module) Close(ctx context.Context, emit func(Output)) error {
	if m.closed.Swap(true) {
		return nil
	}
	close(m.closing)
	// Helpers of a parallel batch never wait for an instance, so they end
	// with the part they are on.
	defer m.helpers.Wait()
	if emit == nil {
		emit = func(Output) {}
	}
	var waitErr error
	for range cap(m.tokens) {
		select {
		case m.tokens <- struct{}{}:
		case <-ctx.Done():
			waitErr = fmt.Errorf("module %s: close: calls still running: %w", m.man.Name, ctx.Err())
		}
		if waitErr != nil {
			break
		}
	}
	if waitErr == nil {
		m.idleMu.Lock()
		idle := m.idle
		m.idle = nil
		m.idleMu.Unlock()
		for _, inst := range idle {
			if inst.flush != nil {
				m.callNoInput(ctx, &slot{inst: inst}, inst.flush, nil, "bb_flush", emit)
			}
		}
	}
	if waitErr != nil {
		m.checkCalls(true) // stop the calls still running
	}
	m.stopWatchdog()
	err := m.rt.Close(context.WithoutCancel(ctx))
	if err != nil {
		err = fmt.Errorf("module %s: close runtime: %w", m.man.Name, err)
	}
	m.logger.Info("module closed")
	return errors.Join(waitErr, err)
}

// Stats is a snapshot of a module's counters.
type Stats struct {
	Name         string           `json:"name"`
	Version      string           `json:"version"`
	SHA256       string           `json:"sha256"`
	State        string           `json:"state"` // running, quarantined, halted, closed
	LoadedAt     time.Time        `json:"loaded_at"`
	Calls        uint64           `json:"calls"`
	EventsIn     uint64           `json:"events_in"`
	EventsOut    uint64           `json:"events_out"` // emitted + forwarded
	Emitted      uint64           `json:"emitted"`
	Forwarded    uint64           `json:"forwarded"`
	Dropped      uint64           `json:"dropped"`
	Errors       uint64           `json:"errors"` // events that failed (any policy)
	DeadLettered uint64           `json:"dead_lettered"`
	Traps        uint64           `json:"traps"`
	Timeouts     uint64           `json:"timeouts"`
	Malformed    uint64           `json:"malformed_outputs"`
	Restarts     uint64           `json:"restarts"` // instances recreated after a crash
	Quarantined  bool             `json:"quarantined"`
	Instances    int              `json:"instances"` // live instances
	MemoryPages  uint64           `json:"memory_pages"`
	CallP50      time.Duration    `json:"call_p50_ns"`
	CallP99      time.Duration    `json:"call_p99_ns"`
	LastError    string           `json:"last_error,omitempty"`
	LastErrorAt  time.Time        `json:"last_error_at,omitzero"`
	Counters     map[string]int64 `json:"counters,omitempty"` // guest counters (bb.counter_add)
	LogsDropped  uint64           `json:"logs_suppressed"`
}

// Stats returns a snapshot of the module's counters.
func (m *Module) Stats() Stats {
	st := Stats{
		Name: m.man.Name, Version: m.man.Version, SHA256: m.sum, State: "running", LoadedAt: m.loadedAt,
		Calls: m.calls.Load(), EventsIn: m.eventsIn.Load(), Emitted: m.emitted.Load(),
		Forwarded: m.forwarded.Load(), Dropped: m.dropped.Load(), Errors: m.errorsN.Load(),
		DeadLettered: m.deadLettered.Load(), Traps: m.traps.Load(), Timeouts: m.timeouts.Load(),
		Malformed: m.malformed.Load(), Restarts: m.restarts.Load(), Instances: int(m.instancesN.Load()),
		MemoryPages: m.memPages.Load(), Counters: m.state.counterSnapshot(), LogsDropped: m.state.suppressed.Load(),
	}
	st.EventsOut = st.Emitted + st.Forwarded
	m.mu.Lock()
	st.Quarantined = m.quarantined
	st.LastError, st.LastErrorAt = m.lastErr, m.lastErrAt
	st.CallP50 = time.Duration(m.hist.ValueAtQuantile(50)) * time.Microsecond
	st.CallP99 = time.Duration(m.hist.ValueAtQuantile(99)) * time.Microsecond
	switch {
	case m.halted != nil:
		st.State = "halted"
	case m.quarantined:
		st.State = "quarantined"
	}
	m.mu.Unlock()
	if m.closed.Load() {
		st.State = "closed"
	}
	return st
}
