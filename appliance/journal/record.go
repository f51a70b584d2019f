package journal

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math"
)

// Record is one journaled event.
//
// When a Record is passed to [Journal.Append] its byte slices are copied into
// the journal's write buffer before Append returns, so the caller may reuse
// them. Records returned by [Journal.ReadRange] own their memory; records
// passed to a [Journal.Replay] callback alias an internal buffer and are only
// valid during the call.
type Record struct {
	// Sequence is the ring sequence of the event. Sequences in a journal are
	// non-negative and strictly increasing (gaps are allowed).
	Sequence int64
	// Timestamp is the event's time in Unix nanoseconds. Append fills in the
	// current time when it is zero.
	Timestamp int64
	// Producer is the producer id (at most 65535 bytes), possibly empty.
	Producer []byte
	// Key is the event key, possibly empty.
	Key []byte
	// Data is the event payload, possibly empty.
	Data []byte
	// Head, when set, is written just before Data and read back as the
	// first bytes of Data: a writer that frames its own header in front of
	// a payload (the output streams) appends both without first copying
	// them into one buffer. Records read from a journal never set it.
	Head []byte
	// ProducerSeq is the producer's own sequence number for the event (the
	// "sequence" field of the published event), valid when HasProducerSeq.
	// The appliance rebuilds its per-producer idempotency windows from it
	// at start.
	ProducerSeq    int64
	HasProducerSeq bool
}

// On-disk framing (all integers little endian):
//
//	frame  = length:u32 crc:u32 body          (length = len(body), crc = CRC32C(body))
//	body   = seq:i64 ts:i64 plen:u16 kword:u32 [pseq:i64] producer key data
//	kword  = flags (top bit) | klen (low 31 bits)
//
// The record format is versioned per record by the flag bits of kword,
// which the CRC covers. Version 1 (the first release) has no flag set and
// no pseq. Version 2 sets flagProducerSeq and carries the producer's own
// sequence (pseq) after kword. A version-1 record decodes as a record
// without HasProducerSeq, so segments written before the producer sequence
// existed, and segments that mix both versions (a journal upgraded in
// place keeps appending to its active segment), stay readable. Keys are
// bounded by MaxRecordSize (at most 1 GiB), so klen never reaches the flag
// bit. Writers emit version 1 for records without a producer sequence, so
// such records stay byte-identical to the old format. (A binary older than
// version 2 reads a version-2 record as corrupt: downgrading a journal is
// not supported.)
//
// A segment file starts with a 16-byte header: the magic "BBJSEG01" and the
// segment's base (first) sequence as i64.
const (
	frameHeaderSize = 8
	bodyFixedSize   = 8 + 8 + 2 + 4
	minFrameSize    = frameHeaderSize + bodyFixedSize
	pseqSize        = 8

	// flagProducerSeq in kword marks a version-2 record (pseq present).
	flagProducerSeq uint32 = 1 << 31
	klenMask        uint32 = 1<<31 - 1

	segmentMagic      = "BBJSEG01"
	segmentHeaderSize = 16

	maxProducerLen = math.MaxUint16
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// frameSize returns the encoded size of rec.
func frameSize(rec *Record) int {
	n := frameHeaderSize + bodyFixedSize + len(rec.Producer) + len(rec.Key) + len(rec.Head) + len(rec.Data)
	if rec.HasProducerSeq {
		n += pseqSize
	}
	return n
}

// appendFrame encodes rec at the end of dst, growing it only when its
// capacity is exhausted.
func appendFrame(dst []byte, rec *Record) []byte {
	n := frameSize(rec)
	start := len(dst)
	if cap(dst)-start < n {
		grown := make([]byte, start, 2*cap(dst)+n)
		copy(grown, dst)
		dst = grown
	}
	dst = dst[:start+n]
	f := dst[start:]
	body := f[frameHeaderSize:]
	binary.LittleEndian.PutUint64(body[0:], uint64(rec.Sequence))
	binary.LittleEndian.PutUint64(body[8:], uint64(rec.Timestamp))
	binary.LittleEndian.PutUint16(body[16:], uint16(len(rec.Producer)))
	kword := uint32(len(rec.Key))
	p := bodyFixedSize
	if rec.HasProducerSeq {
		kword |= flagProducerSeq
		binary.LittleEndian.PutUint64(body[p:], uint64(rec.ProducerSeq))
		p += pseqSize
	}
	binary.LittleEndian.PutUint32(body[18:], kword)
	p += copy(body[p:], rec.Producer)
	p += copy(body[p:], rec.Key)
	p += copy(body[p:], rec.Head)
	copy(body[p:], rec.Data)
	binary.LittleEndian.PutUint32(f[0:], uint32(len(body)))
	binary.LittleEndian.PutUint32(f[4:], crc32.Checksum(body, castagnoli))
	return dst
}

// Frame decoding errors. errTorn means the bytes end before the frame does
// (a write that did not complete); errCorrupt means the frame is complete
// but invalid.
var (
	errTorn    = errors.New("incomplete record")
	errCorrupt = errors.New("corrupt record")
)

// decodeFrame decodes the frame at the start of b. The returned record
// aliases b. n is the frame's size. maxBody bounds the length field so that a
// corrupt length cannot make a reader wait for (or allocate) gigabytes.
func decodeFrame(b []byte, maxBody int) (rec Record, n int, err error) {
	if len(b) < frameHeaderSize {
		return Record{}, 0, errTorn
	}
	length := binary.LittleEndian.Uint32(b[0:])
	if length < bodyFixedSize || uint64(length) > uint64(maxBody) {
		return Record{}, 0, fmt.Errorf("%w: invalid length %d", errCorrupt, length)
	}
	n = frameHeaderSize + int(length)
	if len(b) < n {
		return Record{}, 0, errTorn
	}
	body := b[frameHeaderSize:n]
	if got, want := crc32.Checksum(body, castagnoli), binary.LittleEndian.Uint32(b[4:]); got != want {
		return Record{}, 0, fmt.Errorf("%w: crc mismatch (stored %08x, computed %08x)", errCorrupt, want, got)
	}
	rec.Sequence = int64(binary.LittleEndian.Uint64(body[0:]))
	rec.Timestamp = int64(binary.LittleEndian.Uint64(body[8:]))
	plen := int(binary.LittleEndian.Uint16(body[16:]))
	kword := binary.LittleEndian.Uint32(body[18:])
	klen := uint64(kword & klenMask)
	p := bodyFixedSize
	if kword&flagProducerSeq != 0 {
		if len(body) < p+pseqSize {
			return Record{}, 0, fmt.Errorf("%w: version-2 record of %d bytes has no room for the producer sequence", errCorrupt, len(body))
		}
		rec.ProducerSeq = int64(binary.LittleEndian.Uint64(body[p:]))
		rec.HasProducerSeq = true
		p += pseqSize
	}
	if uint64(plen)+klen > uint64(len(body)-p) {
		return Record{}, 0, fmt.Errorf("%w: producer/key lengths %d+%d exceed body %d", errCorrupt, plen, klen, len(body))
	}
	if rec.Sequence < 0 {
		return Record{}, 0, fmt.Errorf("%w: negative sequence %d", errCorrupt, rec.Sequence)
	}
	rec.Producer = body[p : p+plen : p+plen]
	p += plen
	rec.Key = body[p : p+int(klen) : p+int(klen)]
	p += int(klen)
	rec.Data = body[p:len(body):len(body)]
	return rec, n, nil
}

// clone returns a copy of r that owns its memory (one allocation).
func (r Record) clone() Record {
	buf := make([]byte, len(r.Producer)+len(r.Key)+len(r.Data))
	out := Record{Sequence: r.Sequence, Timestamp: r.Timestamp, ProducerSeq: r.ProducerSeq, HasProducerSeq: r.HasProducerSeq}
	p := copy(buf, r.Producer)
	out.Producer = buf[:p:p]
	k := copy(buf[p:], r.Key)
	out.Key = buf[p : p+k : p+k]
	copy(buf[p+k:], r.Data)
	out.Data = buf[p+k:]
	return out
}

func encodeSegmentHeader(dst []byte, base int64) {
	copy(dst, segmentMagic)
	binary.LittleEndian.PutUint64(dst[8:], uint64(base))
}

func decodeSegmentHeader(b []byte) (base int64, err error) {
	if len(b) < segmentHeaderSize {
		return 0, errTorn
	}
	if string(b[:8]) != segmentMagic {
		return 0, fmt.Errorf("%w: bad segment magic %q", errCorrupt, b[:8])
	}
	return int64(binary.LittleEndian.Uint64(b[8:])), nil
}
