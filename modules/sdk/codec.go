package sdk

import (
	"encoding/binary"
	"errors"
	"unsafe"
)

// ABIVersion is the ABI version this SDK implements.
const ABIVersion = 1

// Record header sizes and output kinds of ABI version 1.
const (
	InputHeaderSize  = 40
	OutputHeaderSize = 24

	KindEmit    = 1
	KindForward = 2
	KindDrop    = 3
	KindError   = 4

	FlagKeySet = 1

	// NoInput is the input index of outputs written by timer and flush calls.
	NoInput = 0xFFFFFFFF

	// MaxErrorMessage is the longest error message the host keeps.
	MaxErrorMessage = 1024
)

// Return codes of bb_process, bb_timer and bb_flush besides an output length.
const (
	ErrFailed  = -1
	ErrOutFull = -2
)

// Align8 rounds n up to a multiple of 8.
func Align8(n int) int { return (n + 7) &^ 7 }

// Event is a zero-copy view of one input record. What its accessors return
// is valid only until the handler returns. The field offsets are computed
// (and checked against the record size) once per event by ProcessBatch, so
// every accessor is a plain slice expression the compiler inlines: a call
// costs several nanoseconds in Go's wasm code.
type Event struct {
	rec             []byte // the whole record, at least InputHeaderSize bytes
	keyEnd, prodEnd int    // InputHeaderSize+key_len, keyEnd+producer_len
	dataEnd         int    // prodEnd+data_len <= len(rec)
}

// set points e at the record rec (len(rec) >= InputHeaderSize) and reports
// whether its lengths fit inside it.
func (e *Event) set(rec []byte) bool {
	kl := uint64(binary.LittleEndian.Uint32(rec[24:]))
	pl := uint64(binary.LittleEndian.Uint32(rec[28:]))
	dl := uint64(binary.LittleEndian.Uint32(rec[32:]))
	end := InputHeaderSize + kl + pl + dl
	if end > uint64(len(rec)) {
		return false
	}
	e.rec = rec
	e.keyEnd = InputHeaderSize + int(kl)
	e.prodEnd = e.keyEnd + int(pl)
	e.dataEnd = int(end)
	return true
}

// Seq is the event's sequence in the appliance's stream.
func (e *Event) Seq() uint64 { return binary.LittleEndian.Uint64(e.rec[8:]) }

// Timestamp is when the appliance accepted the event, in Unix nanoseconds.
func (e *Event) Timestamp() int64 { return int64(binary.LittleEndian.Uint64(e.rec[16:])) }

// Key is the event key (empty when none).
func (e *Event) Key() []byte { return e.rec[InputHeaderSize:e.keyEnd:e.keyEnd] }

// Producer is the producer id (empty when none).
func (e *Event) Producer() []byte { return e.rec[e.keyEnd:e.prodEnd:e.prodEnd] }

// Data is the event payload (for JSON events, the JSON document).
func (e *Event) Data() []byte { return e.rec[e.prodEnd:e.dataEnd:e.dataEnd] }

// Record is an input event as plain fields, for tests and tools.
type Record struct {
	Seq       uint64
	Timestamp int64
	Key       []byte
	Producer  []byte
	Data      []byte
}

// ErrBadInput reports an input buffer that does not follow the ABI.
var ErrBadInput = errors.New("sdk: malformed input record")

// DecodeInput checks the input record at the start of buf and returns a
// view of it and its size.
func DecodeInput(buf []byte) (Event, int, error) {
	if len(buf) < InputHeaderSize {
		return Event{}, 0, ErrBadInput
	}
	size := uint64(binary.LittleEndian.Uint32(buf[0:]))
	kl := uint64(binary.LittleEndian.Uint32(buf[24:]))
	pl := uint64(binary.LittleEndian.Uint32(buf[28:]))
	dl := uint64(binary.LittleEndian.Uint32(buf[32:]))
	if size > uint64(len(buf)) || size != (InputHeaderSize+kl+pl+dl+7)&^7 {
		return Event{}, 0, ErrBadInput
	}
	var ev Event
	ev.set(buf[:size:size])
	return ev, int(size), nil
}

// EncodeInput appends the input record for r to dst; the host does the
// same.
func EncodeInput(dst []byte, r *Record) []byte {
	n := InputHeaderSize + len(r.Key) + len(r.Producer) + len(r.Data)
	size := Align8(n)
	var h [InputHeaderSize]byte
	binary.LittleEndian.PutUint32(h[0:], uint32(size))
	binary.LittleEndian.PutUint64(h[8:], r.Seq)
	binary.LittleEndian.PutUint64(h[16:], uint64(r.Timestamp))
	binary.LittleEndian.PutUint32(h[24:], uint32(len(r.Key)))
	binary.LittleEndian.PutUint32(h[28:], uint32(len(r.Producer)))
	binary.LittleEndian.PutUint32(h[32:], uint32(len(r.Data)))
	dst = append(dst, h[:]...)
	dst = append(dst, r.Key...)
	dst = append(dst, r.Producer...)
	dst = append(dst, r.Data...)
	for i := n; i < size; i++ {
		dst = append(dst, 0)
	}
	return dst
}

// Route names an output: 0 is the module's default output, k is the k-th
// (1-based) entry of the manifest's routes.
type Route uint16

// Default is the module's default output.
const Default Route = 0

// Out writes the outputs of one input record (or of a timer/flush call) into
// the output buffer. Methods never allocate. If the buffer fills up, the
// call reports ErrOutFull to the host, which retries with fewer events.
type Out struct {
	buf      []byte
	pos      int    // end of written records
	start    int    // first record of the current input
	input    uint32 // current input index
	overflow bool
}

// NewOut returns an Out writing into buf (used by tests and the wasm glue).
func NewOut(buf []byte) *Out { return &Out{buf: buf} }

// Reset starts a new call.
func (o *Out) Reset() { o.pos, o.start, o.overflow = 0, 0, false }

// Begin starts the outputs of input index i.
func (o *Out) Begin(i uint32) { o.input, o.start = i, o.pos }

// Len is the number of bytes written so far.
func (o *Out) Len() int { return o.pos }

// Overflowed reports whether a record did not fit.
func (o *Out) Overflowed() bool { return o.overflow }

// Bytes returns the records written so far.
func (o *Out) Bytes() []byte { return o.buf[:o.pos] }

func (o *Out) put(kind, flags byte, r Route, key, data []byte) {
	if o.overflow {
		return
	}
	n := OutputHeaderSize + len(key) + len(data)
	size := (n + 7) &^ 7
	if size > len(o.buf)-o.pos {
		o.overflow = true
		return
	}
	b := o.buf[o.pos : o.pos+size]
	// Three 8-byte stores: size|kind|flags|route, input|key_len, data_len|reserved.
	binary.LittleEndian.PutUint64(b[0:], uint64(size)|uint64(kind)<<32|uint64(flags)<<40|uint64(r)<<48)
	binary.LittleEndian.PutUint64(b[8:], uint64(o.input)|uint64(len(key))<<32)
	binary.LittleEndian.PutUint64(b[16:], uint64(len(data)))
	if n > OutputHeaderSize {
		p := OutputHeaderSize + copy(b[OutputHeaderSize:], key)
		p += copy(b[p:], data)
		clear(b[p:])
	}
	o.pos += size
}

// putEmpty writes a record without key or data (forward, drop); small
// enough to be inlined into the handler.
func (o *Out) putEmpty(kind byte, r Route) {
	p := o.pos
	if o.overflow || p > len(o.buf)-OutputHeaderSize {
		o.overflow = true
		return
	}
	// Three native 8-byte stores (wasm and every host this is tested on are
	// little-endian): size|kind|flags|route, input|key_len, data_len|reserved.
	w := (*[3]uint64)(unsafe.Add(unsafe.Pointer(unsafe.SliceData(o.buf)), p))
	w[0] = OutputHeaderSize | uint64(kind)<<32 | uint64(r)<<48
	w[1] = uint64(o.input)
	w[2] = 0
	o.pos = p + OutputHeaderSize
}

// Emit writes a new event with payload data (keeping the input's key) to
// the default output.
func (o *Out) Emit(data []byte) { o.put(KindEmit, 0, Default, nil, data) }

// EmitTo writes a new event with payload data (keeping the input's key) to
// route r.
func (o *Out) EmitTo(r Route, data []byte) { o.put(KindEmit, 0, r, nil, data) }

// EmitKeyTo writes a new event with the given key and payload to route r.
func (o *Out) EmitKeyTo(r Route, key, data []byte) { o.put(KindEmit, FlagKeySet, r, key, data) }

// Forward passes the input event on unchanged to the default output.
func (o *Out) Forward() { o.putEmpty(KindForward, Default) }

// ForwardTo passes the input event on unchanged to route r.
func (o *Out) ForwardTo(r Route) { o.putEmpty(KindForward, r) }

// Drop discards the input, and any output already written for it.
func (o *Out) Drop() {
	o.pos = o.start
	o.putEmpty(KindDrop, Default)
}

// Error reports that the input failed with msg (cut to MaxErrorMessage
// bytes); outputs already written for it are discarded. The host applies the
// module's error policy to the input.
func (o *Out) Error(msg string) {
	o.pos = o.start
	if len(msg) > MaxErrorMessage {
		msg = msg[:MaxErrorMessage]
	}
	if o.overflow {
		return
	}
	size := Align8(OutputHeaderSize + len(msg))
	if size > len(o.buf)-o.pos {
		o.overflow = true
		return
	}
	b := o.buf[o.pos : o.pos+size]
	binary.LittleEndian.PutUint32(b[0:], uint32(size))
	b[4], b[5] = KindError, 0
	binary.LittleEndian.PutUint16(b[6:], 0)
	binary.LittleEndian.PutUint32(b[8:], o.input)
	binary.LittleEndian.PutUint32(b[12:], 0)
	binary.LittleEndian.PutUint32(b[16:], uint32(len(msg)))
	binary.LittleEndian.PutUint32(b[20:], 0)
	n := OutputHeaderSize + copy(b[OutputHeaderSize:], msg)
	clear(b[n:])
	o.pos += size
}
