package wasmhost

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Record layout of ABI version 1 (modules/ABI.md §3).
const (
	inputHeader  = 40
	outputHeader = 24

	kindEmit    = 1
	kindForward = 2
	kindDrop    = 3
	kindError   = 4

	flagKeySet = 1
	noInput    = 0xFFFFFFFF

	maxErrorMessage = 1024
)

func align8(n int) int { return (n + 7) &^ 7 }

// Event is one input event of a batch.
type Event struct {
	Seq       uint64
	Timestamp int64 // Unix nanoseconds
	Key       []byte
	Producer  []byte
	Data      []byte
}

// recordSize is the size of ev's input record.
func (ev *Event) recordSize() int {
	return align8(inputHeader + len(ev.Key) + len(ev.Producer) + len(ev.Data))
}

// encodeInput writes ev's input record at the start of dst, which must hold
// ev.recordSize() bytes, and returns the size.
func encodeInput(dst []byte, ev *Event) int {
	size := ev.recordSize()
	b := dst[:size]
	binary.LittleEndian.PutUint32(b[0:], uint32(size))
	binary.LittleEndian.PutUint32(b[4:], 0)
	binary.LittleEndian.PutUint64(b[8:], ev.Seq)
	binary.LittleEndian.PutUint64(b[16:], uint64(ev.Timestamp))
	binary.LittleEndian.PutUint32(b[24:], uint32(len(ev.Key)))
	binary.LittleEndian.PutUint32(b[28:], uint32(len(ev.Producer)))
	binary.LittleEndian.PutUint32(b[32:], uint32(len(ev.Data)))
	binary.LittleEndian.PutUint32(b[36:], 0)
	n := inputHeader
	n += copy(b[n:], ev.Key)
	n += copy(b[n:], ev.Producer)
	n += copy(b[n:], ev.Data)
	clear(b[n:])
	return size
}

// outRec is one decoded output record: where its key and data lie in the
// output buffer it was decoded from (no pointers, so filling a batch of them
// costs no GC write barriers).
type outRec struct {
	kind   uint8
	keySet bool
	route  uint16
	input  uint32
	off    uint32 // start of the key (record offset + header)
	klen   uint32
	dlen   uint32 // cut to maxErrorMessage for error records
}

// key returns the record's key; buf is the buffer it was decoded from.
func (r *outRec) key(buf []byte) []byte {
	e := r.off + r.klen
	return buf[r.off:e:e]
}

// data returns the record's data; buf is the buffer it was decoded from.
func (r *outRec) data(buf []byte) []byte {
	o := r.off + r.klen
	e := o + r.dlen
	return buf[o:e:e]
}

// ErrMalformedOutput is wrapped by every output-decoding error.
var ErrMalformedOutput = errors.New("malformed output")

type decodeLimits struct {
	nIn         int  // inputs in the call (0 for timer/flush)
	routes      int  // number of manifest routes
	maxPerInput int  // max records per input
	noInputOnly bool // timer/flush call: only emits with input = noInput
}

// decodeOutputs validates and decodes the output records in buf, appending
// to recs. Nothing is emitted unless the whole buffer is valid.
func decodeOutputs(buf []byte, lim decodeLimits, recs []outRec) ([]outRec, error) {
	bad := func(off int, format string, args ...any) error {
		return fmt.Errorf("%w at offset %d: %s", ErrMalformedOutput, off, fmt.Sprintf(format, args...))
	}
	var (
		prevInput   = -1
		perInput    = 0
		exclusiveAt = -1 // input that already has a drop/error record
	)
	for off := 0; off < len(buf); {
		if len(buf)-off < outputHeader {
			return recs, bad(off, "%d trailing bytes, shorter than a record header", len(buf)-off)
		}
		b := buf[off:]
		size := int(binary.LittleEndian.Uint32(b[0:]))
		kind, flags := b[4], b[5]
		route := binary.LittleEndian.Uint16(b[6:])
		input := binary.LittleEndian.Uint32(b[8:])
		klen := uint64(binary.LittleEndian.Uint32(b[12:]))
		dlen := uint64(binary.LittleEndian.Uint32(b[16:]))
		if binary.LittleEndian.Uint32(b[20:]) != 0 {
			return recs, bad(off, "reserved field is not 0")
		}
		if want := uint64(align8(outputHeader)) + klen + dlen; size < outputHeader || size%8 != 0 ||
			uint64(size) != (want+7)&^7 {
			return recs, bad(off, "size %d does not match key_len %d and data_len %d", size, klen, dlen)
		}
		if size > len(b) {
			return recs, bad(off, "record of %d bytes overruns the output (%d left)", size, len(b))
		}
		if kind < kindEmit || kind > kindError {
			return recs, bad(off, "unknown kind %d", kind)
		}
		if flags&^flagKeySet != 0 || (flags&flagKeySet != 0 && kind != kindEmit) {
			return recs, bad(off, "invalid flags %#x for kind %d", flags, kind)
		}
		if int(route) > lim.routes {
			return recs, bad(off, "route %d but the manifest declares %d routes", route, lim.routes)
		}
		if kind != kindEmit && klen != 0 {
			return recs, bad(off, "kind %d carries a key", kind)
		}
		if (kind == kindForward || kind == kindDrop) && dlen != 0 {
			return recs, bad(off, "kind %d carries data", kind)
		}
		if (kind == kindDrop || kind == kindError) && route != 0 {
			return recs, bad(off, "kind %d names a route", kind)
		}
		if lim.noInputOnly {
			if input != noInput || kind != kindEmit {
				return recs, bad(off, "timer/flush outputs must be emits with input 0xFFFFFFFF")
			}
		} else {
			if input == noInput || int64(input) >= int64(lim.nIn) {
				return recs, bad(off, "input index %d outside the batch of %d", input, lim.nIn)
			}
			in := int(input)
			switch {
			case in < prevInput:
				return recs, bad(off, "input index %d after %d (must not decrease)", in, prevInput)
			case in == prevInput:
				perInput++
				if exclusiveAt == in || kind == kindDrop || kind == kindError {
					return recs, bad(off, "drop/error must be the only record of input %d", in)
				}
			default:
				prevInput, perInput = in, 1
			}
			if kind == kindDrop || kind == kindError {
				exclusiveAt = in
			}
			if perInput > lim.maxPerInput {
				return recs, bad(off, "more than %d outputs for input %d", lim.maxPerInput, in)
			}
		}
		if kind == kindError && dlen > maxErrorMessage {
			dlen = maxErrorMessage
		}
		recs = append(recs, outRec{kind: kind, keySet: flags&flagKeySet != 0, route: route, input: input,
			off: uint32(off + outputHeader), klen: uint32(klen), dlen: uint32(dlen)})
		off += size
	}
	return recs, nil
}

// touch reads the first byte of every event's data before the batch is
// encoded. In the appliance the events were written by another core, so
// each payload is a cache miss: these independent loads overlap the
// misses, where the copies one after the other would wait for each (CPU
// profile of BenchmarkPublishWithModules/wat-counter: encoding ~45 ns per
// event before, ~20 with the touch). It returns what it read, which the
// caller keeps so the loads are not optimised away.
func touch(evs []Event) byte {
	var x byte
	for i := range evs {
		if d := evs[i].Data; len(d) > 0 {
			x += d[0]
		}
	}
	return x
}
