package load

import (
	"bytes"
	"fmt"
)

// seqWidth is the width of the space-padded "sequence" field: every int64
// fits, so a request body is built once and only digits change.
const seqWidth = 19

// Payload describes the "data" value of every generated event: a JSON
// string of exactly Size bytes (quotes included) that starts with the
// event's producer sequence as zero-padded decimal digits (as many as fit,
// at most 19; the sequence is taken modulo 10^width when the payload is
// smaller) followed by 'x' padding. It is a pure function of the producer
// sequence, so verification can recompute the expected bytes.
type Payload struct {
	Size int // bytes of the JSON value, at least MinPayloadSize
}

// MinPayloadSize is the smallest payload: an empty JSON string ("").
const MinPayloadSize = 2

// digits is how many sequence digits the payload holds.
func (p Payload) digits() int { return min(seqWidth, p.Size-2) }

// Append appends the payload of producer sequence seq to dst.
func (p Payload) Append(dst []byte, seq int64) []byte {
	n := len(dst)
	for range p.Size {
		dst = append(dst, 'x')
	}
	dst[n] = '"'
	dst[len(dst)-1] = '"'
	putZeroPadded(dst[n+1:n+1+p.digits()], seq)
	return dst
}

// Decode recovers the producer sequence from a payload read back, if the
// payload has this shape and its digits identify the sequence uniquely
// among 0..claimed-1.
func (p Payload) Decode(data []byte, claimed int64) (int64, bool) {
	d := p.digits()
	if len(data) != p.Size || data[0] != '"' || data[len(data)-1] != '"' {
		return 0, false
	}
	var v int64
	for _, c := range data[1 : 1+d] {
		if c < '0' || c > '9' {
			return 0, false
		}
		v = v*10 + int64(c-'0')
	}
	if d < seqWidth {
		limit := int64(1)
		for range d {
			limit *= 10
		}
		if claimed > limit {
			return 0, false // the digits wrapped: ambiguous
		}
	}
	if v >= claimed {
		return 0, false
	}
	return v, true
}

// putZeroPadded writes v (non-negative) into b as decimal, zero-padded on
// the left, keeping the lowest len(b) digits.
func putZeroPadded(b []byte, v int64) {
	for i := len(b) - 1; i >= 0; i-- {
		b[i] = byte('0' + v%10)
		v /= 10
	}
}

// putSpacePadded writes v (non-negative) into b as decimal, right-aligned
// and padded with spaces on the left (valid JSON whitespace). b must be wide
// enough; seqWidth always is for an int64.
func putSpacePadded(b []byte, v int64) {
	i := len(b) - 1
	for {
		b[i] = byte('0' + v%10)
		v /= 10
		i--
		if v == 0 {
			break
		}
	}
	for ; i >= 0; i-- {
		b[i] = ' '
	}
}

// Body is one preallocated publish request body of Batch events: a single
// JSON object when Batch is 1, otherwise a JSON array; or, with NDJSON,
// one object per line. Fill rewrites the
// sequence and payload digits in place, so sending a request allocates
// nothing for its body.
//
// Each event is {"sequence":<producer sequence>,"data":<payload>}; the
// producer id travels in the X-Producer-ID header.
type Body struct {
	buf     []byte
	seqOff  []int // offset of each event's space-padded sequence field
	dataOff []int // offset of each event's payload digits
	payload Payload
}

// NewBody builds the body template for batch events of the given payload,
// as JSON (ndjson false) or NDJSON.
func NewBody(batch int, p Payload, ndjson bool) (*Body, error) {
	if batch < 1 {
		return nil, fmt.Errorf("batch %d: want at least 1 event per request", batch)
	}
	if p.Size < MinPayloadSize {
		return nil, fmt.Errorf("payload size %d: want at least %d bytes", p.Size, MinPayloadSize)
	}
	b := &Body{payload: p, seqOff: make([]int, batch), dataOff: make([]int, batch)}
	per := len(`{"sequence":`) + seqWidth + len(`,"data":`) + p.Size + 1
	buf := make([]byte, 0, batch*(per+1)+2)
	array := batch > 1 && !ndjson
	if array {
		buf = append(buf, '[')
	}
	for i := range batch {
		if i > 0 && array {
			buf = append(buf, ',')
		}
		buf = append(buf, `{"sequence":`...)
		b.seqOff[i] = len(buf)
		buf = append(buf, bytes.Repeat([]byte{' '}, seqWidth)...)
		buf = append(buf, `,"data":`...)
		b.dataOff[i] = len(buf) + 1
		buf = p.Append(buf, 0)
		buf = append(buf, '}')
		if ndjson {
			buf = append(buf, '\n')
		}
	}
	if array {
		buf = append(buf, ']')
	}
	b.buf = buf
	return b, nil
}

// Fill sets the producer sequences first, first+1, ... of the events (and
// their payloads) and returns the body. The returned slice is the template
// itself: it is valid until the next Fill.
func (b *Body) Fill(first int64) []byte {
	d := b.payload.digits()
	for i := range b.seqOff {
		s := first + int64(i)
		putSpacePadded(b.buf[b.seqOff[i]:b.seqOff[i]+seqWidth], s)
		putZeroPadded(b.buf[b.dataOff[i]:b.dataOff[i]+d], s)
	}
	return b.buf
}

// Len is the body size in bytes.
func (b *Body) Len() int { return len(b.buf) }

// Batch is the number of events in the body.
func (b *Body) Batch() int { return len(b.seqOff) }
