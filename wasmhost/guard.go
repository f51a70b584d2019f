package wasmhost

import (
	"errors"
	"fmt"
	"strings"
)

// Endless-loop guard.
//
// wazero bounds a running call only with WithCloseOnContextDone, which
// compiles an indirect call to an exit-code check into every loop header and
// starts a watcher goroutine per call. Go's wasm code runs loop headers
// constantly (every function is a resumable loop), so that costs a Go guest
// ~8x (a pass-through module: ~210 ns/event instead of ~26 at batch 256;
// see BenchmarkGuardCost) plus ~1 µs per call.
//
// Instead, guard rewrites the module before compiling it: it appends two
// mutable i32 globals, $stop (exported as stopExport) and $ticks, and puts
//
//	if $ticks == 0 {
//		if $stop { unreachable }
//		$ticks = 0xFFFF
//		memory.grow 0; drop
//	} else {
//		$ticks -= 1
//	}
//
// at the top of every loop body and every function: two loads, a store and
// one branch on the fast path. The module's watchdog sets $stop of an
// instance whose call overran its timeout (or whose caller's context
// ended), so the guest traps within 65536 loop iterations or calls (well
// under a millisecond); code with neither runs in time linear in its size.
// (A first version checked $stop at every check: ~40% more per check, ~12
// ns/event more for the Go filter; see BenchmarkGuardCost.) The memory.grow of 0 pages every 65536 checks leaves
// native code for Go (wazero grows memory in Go): native code cannot be
// preempted, so without it a long guest call would hold up every garbage
// collection's stop-the-world (and with it the watchdog) until it returned;
// with it, the world stops within ~65536 loop iterations (well under a
// millisecond). A start section (which would run inside instantiation,
// before the host holds the global) is removed and its function exported
// as startExport, which the host calls first under the same guard.

const (
	stopExport  = "__bb_stop"
	startExport = "__bb_start"
)

// errGuard wraps every error of guard.
var errGuard = errors.New("cannot instrument module")

// Section ids of the WebAssembly binary format.
const (
	secCustom = 0
	secImport = 2
	secMemory = 5
	secGlobal = 6
	secExport = 7
	secStart  = 8
	secCode   = 10
)

// sectionRank is the required order of non-custom sections (tag, 13, sits
// between memory and global; data count, 12, between element and code).
var sectionRank = map[byte]int{1: 1, 2: 2, 3: 3, 4: 4, 5: 5, 13: 6, 6: 7, 7: 8, 8: 9, 9: 10, 12: 11, 10: 12, 11: 13}

type section struct {
	id   byte
	body []byte
}

// guardInfo describes an instrumented module.
type guardInfo struct {
	hasStart bool // the original start function is exported as startExport
}

// guard returns wasm with the loop guard inserted (see above).
func guard(wasm []byte) ([]byte, guardInfo, error) {
	var info guardInfo
	if len(wasm) < 8 || string(wasm[:4]) != "\x00asm" {
		return nil, info, fmt.Errorf("%w: not a WebAssembly binary (bad magic)", errGuard)
	}
	if string(wasm[4:8]) != "\x01\x00\x00\x00" {
		return nil, info, fmt.Errorf("%w: unsupported binary version", errGuard)
	}
	r := &reader{b: wasm, p: 8}
	var secs []section
	lastRank := 0
	for r.p < len(r.b) && r.err == nil {
		id := r.byte()
		n := r.u32()
		body := r.bytes(int(n))
		if r.err != nil {
			break
		}
		if id != secCustom {
			rank, ok := sectionRank[id]
			if !ok {
				return nil, info, fmt.Errorf("%w: unknown section id %d", errGuard, id)
			}
			if rank <= lastRank {
				return nil, info, fmt.Errorf("%w: section %d out of order or repeated", errGuard, id)
			}
			lastRank = rank
		}
		secs = append(secs, section{id, body})
	}
	if r.err != nil {
		return nil, info, r.err
	}
	var importedGlobals, definedGlobals, memories uint32
	startFunc, hasStart := uint32(0), false
	for _, s := range secs {
		switch s.id {
		case secImport:
			g, mem, err := countImports(s.body)
			if err != nil {
				return nil, info, err
			}
			importedGlobals = g
			memories += mem
		case secMemory:
			sr := &reader{b: s.body}
			memories += sr.u32()
			if sr.err != nil {
				return nil, info, sr.err
			}
		case secGlobal:
			sr := &reader{b: s.body}
			definedGlobals = sr.u32()
			if sr.err != nil {
				return nil, info, sr.err
			}
		case secStart:
			sr := &reader{b: s.body}
			startFunc, hasStart = sr.u32(), true
			if sr.err != nil {
				return nil, info, sr.err
			}
		}
	}
	if memories == 0 {
		return nil, info, fmt.Errorf("%w: the module has no memory (it must define and export one)", errGuard)
	}
	stopIdx := importedGlobals + definedGlobals
	ticksIdx := stopIdx + 1
	// The check inserted after each loop's block type and at the start of
	// each function body: a countdown; its slow path (every 65536th check)
	// looks at $stop and gives Go a chance to run.
	check := append([]byte{0x23}, leb(ticksIdx)...) // global.get $ticks
	check = append(check, 0x45, 0x04, 0x40, 0x23)   // i32.eqz; if; global.get $stop
	check = append(check, leb(stopIdx)...)
	check = append(check, 0x04, 0x40, 0x00, 0x0B) // if unreachable end
	check = append(check, 0x41, 0xFF, 0xFF, 0x03, 0x24)
	check = append(check, leb(ticksIdx)...)                   // i32.const 0xFFFF; global.set $ticks
	check = append(check, 0x41, 0x00, 0x40, 0x00, 0x1A, 0x05) // memory.grow 0; drop; else
	check = append(check, 0x23)
	check = append(check, leb(ticksIdx)...)       // global.get $ticks
	check = append(check, 0x41, 0x01, 0x6B, 0x24) // i32.const 1; i32.sub; global.set $ticks
	check = append(check, leb(ticksIdx)...)
	check = append(check, 0x0B)                                                     // end
	newGlobal := []byte{0x7F, 0x01, 0x41, 0x00, 0x0B, 0x7F, 0x01, 0x41, 0x00, 0x0B} // 2 x mut i32 = 0
	exports := exportEntry(stopExport, 3, stopIdx)
	if hasStart {
		exports = append(exports, exportEntry(startExport, 0, startFunc)...)
	}
	nExports := uint32(1)
	if hasStart {
		nExports = 2
	}

	out := append(make([]byte, 0, len(wasm)+len(wasm)/16+64), wasm[:8]...)
	put := func(id byte, body []byte) {
		out = append(out, id)
		out = append(out, leb(uint32(len(body)))...)
		out = append(out, body...)
	}
	doneGlobal, doneExport := false, false
	flushBefore := func(rank int) {
		if !doneGlobal && rank > sectionRank[secGlobal] {
			put(secGlobal, append(leb(2), newGlobal...))
			doneGlobal = true
		}
		if !doneExport && rank > sectionRank[secExport] {
			put(secExport, append(leb(nExports), exports...))
			doneExport = true
		}
	}
	for _, s := range secs {
		if s.id == secCustom {
			// DWARF offsets would no longer match the rewritten code.
			sr := &reader{b: s.body}
			name := sr.name()
			if sr.err == nil && strings.HasPrefix(name, ".debug_") {
				continue
			}
			put(s.id, s.body)
			continue
		}
		flushBefore(sectionRank[s.id])
		switch s.id {
		case secGlobal:
			sr := &reader{b: s.body}
			n := sr.u32()
			body := append(leb(n+2), s.body[sr.p:]...)
			put(s.id, append(body, newGlobal...))
			doneGlobal = true
		case secExport:
			sr := &reader{b: s.body}
			n := sr.u32()
			if sr.err != nil {
				return nil, info, sr.err
			}
			body := append(leb(n+nExports), s.body[sr.p:]...)
			put(s.id, append(body, exports...))
			doneExport = true
		case secStart:
			// removed: the host calls startExport
		case secCode:
			body, err := guardCode(s.body, check)
			if err != nil {
				return nil, info, err
			}
			put(s.id, body)
		default:
			put(s.id, s.body)
		}
	}
	flushBefore(1 << 30)
	info.hasStart = hasStart
	return out, info, nil
}

func exportEntry(name string, kind byte, idx uint32) []byte {
	b := append(leb(uint32(len(name))), name...)
	b = append(b, kind)
	return append(b, leb(idx)...)
}

func countImports(body []byte) (globals, memories uint32, err error) {
	r := &reader{b: body}
	n := r.u32()
	for i := uint32(0); i < n && r.err == nil; i++ {
		r.name()
		r.name()
		switch kind := r.byte(); kind {
		case 0: // func: type index
			r.u32()
		case 1: // table: reftype, limits
			r.refType()
			r.limits()
		case 2: // memory: limits
			r.limits()
			memories++
		case 3: // global: valtype, mutability
			r.valType()
			r.byte()
			globals++
		case 4: // tag: attribute, type index
			r.byte()
			r.u32()
		default:
			r.fail("unknown import kind %d", kind)
		}
	}
	return globals, memories, r.err
}

// guardCode inserts check after the block type of every loop instruction of
// every function body in the code section body.
func guardCode(body []byte, check []byte) ([]byte, error) {
	r := &reader{b: body}
	n := r.u32()
	out := append(make([]byte, 0, len(body)+len(body)/8), leb(n)...)
	var fn []byte
	for i := uint32(0); i < n && r.err == nil; i++ {
		size := r.u32()
		code := r.bytes(int(size))
		if r.err != nil {
			break
		}
		var err error
		fn, err = guardFunc(fn[:0], code, check)
		if err != nil {
			return nil, fmt.Errorf("function body %d: %w", i, err)
		}
		out = append(out, leb(uint32(len(fn)))...)
		out = append(out, fn...)
	}
	if r.err == nil && r.p != len(body) {
		r.fail("%d trailing bytes in the code section", len(body)-r.p)
	}
	return out, r.err
}

func guardFunc(dst, code, check []byte) ([]byte, error) {
	r := &reader{b: code}
	groups := r.u32()
	for i := uint32(0); i < groups && r.err == nil; i++ {
		r.u32()
		r.valType()
	}
	if r.err != nil {
		return nil, r.err
	}
	dst = append(dst, code[:r.p]...)
	dst = append(dst, check...)
	last := r.p
	for r.p < len(code) && r.err == nil {
		op := r.byte()
		switch {
		case op == 0x03: // loop
			r.s64()
			dst = append(dst, code[last:r.p]...)
			dst = append(dst, check...)
			last = r.p
		case op == 0x02 || op == 0x04 || op == 0x06: // block, if, try
			r.s64()
		case op == 0x07 || op == 0x08 || op == 0x09 || op == 0x18: // catch, throw, rethrow, delegate
			r.u32()
		case op == 0x0C || op == 0x0D || op == 0x10 || op == 0x12 || op == 0x14 || op == 0x15: // br, br_if, call, return_call, call_ref, return_call_ref
			r.u32()
		case op == 0x0E: // br_table
			for k := r.u32(); k > 0 && r.err == nil; k-- {
				r.u32()
			}
			r.u32()
		case op == 0x11 || op == 0x13: // call_indirect, return_call_indirect
			r.u32()
			r.u32()
		case op == 0x1C: // select t*
			for k := r.u32(); k > 0 && r.err == nil; k-- {
				r.valType()
			}
		case op == 0x1F: // try_table
			r.s64()
			for k := r.u32(); k > 0 && r.err == nil; k-- {
				switch c := r.byte(); c {
				case 0, 1:
					r.u32()
					r.u32()
				case 2, 3:
					r.u32()
				default:
					r.fail("unknown catch kind %d", c)
				}
			}
		case op >= 0x20 && op <= 0x26: // local.*, global.*, table.get/set
			r.u32()
		case op >= 0x28 && op <= 0x3E: // loads and stores
			r.memarg()
		case op == 0x3F || op == 0x40: // memory.size, memory.grow
			r.u32()
		case op == 0x41 || op == 0x42: // i32.const, i64.const
			r.s64()
		case op == 0x43:
			r.bytes(4)
		case op == 0x44:
			r.bytes(8)
		case op == 0xD0: // ref.null
			r.s64()
		case op == 0xD2 || op == 0xD5 || op == 0xD6: // ref.func, br_on_null, br_on_non_null
			r.u32()
		case op == 0xFC:
			guardMisc(r)
		case op == 0xFD:
			guardSIMD(r)
		case op == 0xFE:
			if sub := r.u32(); sub == 0x03 { // atomic.fence
				r.byte()
			} else {
				r.memarg()
			}
		case op <= 0x01 || op == 0x05 || op == 0x0A || op == 0x0B || op == 0x0F || op == 0x19 ||
			op == 0x1A || op == 0x1B || (op >= 0x45 && op <= 0xC4) || op == 0xD1 || op == 0xD3 || op == 0xD4:
			// no immediates
		default:
			r.fail("unsupported opcode %#x at offset %d", op, r.p-1)
		}
	}
	if r.err != nil {
		return nil, r.err
	}
	return append(dst, code[last:]...), nil
}

func guardMisc(r *reader) {
	switch sub := r.u32(); {
	case sub <= 7: // saturating truncations
	case sub == 8 || sub == 10 || sub == 12 || sub == 14: // memory.init, memory.copy, table.init, table.copy
		r.u32()
		r.u32()
	case sub == 9 || sub == 11 || sub == 13 || (sub >= 15 && sub <= 17): // data.drop, memory.fill, elem.drop, table.grow/size/fill
		r.u32()
	default:
		r.fail("unsupported opcode 0xfc %d", sub)
	}
}

func guardSIMD(r *reader) {
	switch sub := r.u32(); {
	case sub <= 11 || sub == 92 || sub == 93: // v128 loads and stores
		r.memarg()
	case sub == 12 || sub == 13: // v128.const, i8x16.shuffle
		r.bytes(16)
	case sub >= 21 && sub <= 34: // lane extract/replace
		r.byte()
	case sub >= 84 && sub <= 91: // load/store lane
		r.memarg()
		r.byte()
	}
}

// reader decodes the WebAssembly binary format; the first error sticks.
type reader struct {
	b   []byte
	p   int
	err error
}

func (r *reader) fail(format string, args ...any) {
	if r.err == nil {
		r.err = fmt.Errorf("%w: %s", errGuard, fmt.Sprintf(format, args...))
	}
	r.p = len(r.b)
}

func (r *reader) byte() byte {
	if r.err != nil || r.p >= len(r.b) {
		r.fail("unexpected end")
		return 0
	}
	c := r.b[r.p]
	r.p++
	return c
}

func (r *reader) bytes(n int) []byte {
	if r.err != nil || n < 0 || n > len(r.b)-r.p {
		r.fail("unexpected end")
		return nil
	}
	s := r.b[r.p : r.p+n]
	r.p += n
	return s
}

func (r *reader) u32() uint32 {
	var v uint64
	for shift := 0; shift < 35; shift += 7 {
		c := r.byte()
		v |= uint64(c&0x7F) << shift
		if c&0x80 == 0 {
			if v > 0xFFFFFFFF {
				r.fail("u32 out of range")
			}
			return uint32(v)
		}
	}
	r.fail("u32 too long")
	return 0
}

// s64 skips a signed LEB128 of up to 64 bits (also block types, s33).
func (r *reader) s64() {
	for i := 0; i < 10; i++ {
		if r.byte()&0x80 == 0 {
			return
		}
	}
	r.fail("integer too long")
}

func (r *reader) u64() {
	r.s64()
}

func (r *reader) name() string {
	n := r.u32()
	return string(r.bytes(int(n)))
}

func (r *reader) memarg() {
	align := r.u32()
	if align&0x40 != 0 { // multi-memory: memory index follows
		r.u32()
	}
	r.u64()
}

func (r *reader) limits() {
	flags := r.byte()
	r.u64()
	if flags&1 != 0 {
		r.u64()
	}
}

func (r *reader) valType() {
	switch c := r.byte(); c {
	case 0x63, 0x64: // (ref null? ht)
		r.s64()
	}
}

func (r *reader) refType() { r.valType() }

func leb(v uint32) []byte {
	var b []byte
	for {
		c := byte(v & 0x7F)
		v >>= 7
		if v != 0 {
			b = append(b, c|0x80)
			continue
		}
		return append(b, c)
	}
}
