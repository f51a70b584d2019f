// Package event defines the appliance's ring slot type and the decoder that
// turns an HTTP request body (one JSON object, a JSON array of objects, or
// NDJSON) into events without allocating per event.
//
// The decoder never copies payload bytes: every decoded [Raw] points into the
// request body (or, for producer/key strings containing escapes, into a
// per-decoder scratch arena). Callers must copy what they keep (see
// [Slot.Fill]) before the body is reused.
package event

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"strconv"
	"unicode/utf8"
)

// Format is the framing of a request body.
type Format int

const (
	// FormatJSON is one JSON object, or a JSON array of objects.
	FormatJSON Format = iota
	// FormatNDJSON is newline-delimited JSON: one object per line; blank lines are ignored.
	FormatNDJSON
)

// MaxIDLen is the longest producer id or key accepted, in bytes (after unescaping).
const MaxIDLen = 256

// maxDepth bounds JSON nesting inside "data".
const maxDepth = 512

// Raw is one decoded event. Its byte slices point into the request body or
// the decoder's arena and are only valid until the next Decode call.
type Raw struct {
	Data        []byte // the raw JSON value of "data" (validated JSON)
	Producer    []byte // producer id (unescaped); empty when absent
	Key         []byte // key (unescaped); empty when absent
	Sequence    int64  // producer sequence, valid when HasSequence
	HasSequence bool
	HasProducer bool
	HasKey      bool
}

// Error describes why a body could not be decoded. Index is the position of
// the offending event in the batch (0 for a single event), Offset the byte
// offset in the body.
type Error struct {
	Index  int
	Offset int
	Msg    string
	Err    error // a sentinel such as ErrTooMany, or nil
}

// Unwrap returns the sentinel error, if any.
func (e *Error) Unwrap() error { return e.Err }

// Error implements error.
func (e *Error) Error() string {
	return fmt.Sprintf("event %d: %s (at byte %d)", e.Index, e.Msg, e.Offset)
}

// ErrEmpty is returned for a body with no events.
var ErrEmpty = errors.New("empty body: expected a JSON event object, a JSON array of events or NDJSON")

// ErrTooMany is wrapped by the error returned when a batch exceeds the limit.
var ErrTooMany = errors.New("too many events in one request")

// Decoder decodes request bodies. It keeps its scratch memory between calls;
// a Decoder must not be used concurrently (pool them).
type Decoder struct {
	events []Raw
	arena  []byte
	body   []byte
	pos    int
	index  int
	batch  bool
}

// Batch reports whether the last decoded body was a batch (a JSON array or
// NDJSON) rather than a single JSON object.
func (d *Decoder) Batch() bool { return d.batch }

// Decode parses body in the given format and returns the events in order.
// maxEvents bounds the batch size (0 = unlimited). The returned slice and all
// byte slices in it are valid until the next call on d.
func (d *Decoder) Decode(body []byte, format Format, maxEvents int) ([]Raw, error) {
	d.events = d.events[:0]
	d.arena = d.arena[:0]
	d.body = body
	d.pos = 0
	d.index = 0
	d.batch = false
	if !utf8.Valid(body) {
		return nil, &Error{Msg: "body is not valid UTF-8", Offset: invalidUTF8At(body)}
	}
	switch format {
	case FormatNDJSON:
		d.batch = true
		return d.decodeNDJSON(maxEvents)
	default:
		return d.decodeJSON(maxEvents)
	}
}

func invalidUTF8At(b []byte) int {
	for i := 0; i < len(b); {
		r, n := utf8.DecodeRune(b[i:])
		if r == utf8.RuneError && n <= 1 {
			return i
		}
		i += n
	}
	return len(b)
}

func (d *Decoder) fail(msg string) error {
	return &Error{Index: d.index, Offset: d.pos, Msg: msg}
}

func (d *Decoder) failf(format string, args ...any) error {
	return &Error{Index: d.index, Offset: d.pos, Msg: fmt.Sprintf(format, args...)}
}

func (d *Decoder) add(maxEvents int) (*Raw, error) {
	if maxEvents > 0 && len(d.events) >= maxEvents {
		return nil, &Error{Index: d.index, Offset: d.pos, Msg: fmt.Sprintf("%v: limit is %d", ErrTooMany, maxEvents), Err: ErrTooMany}
	}
	if len(d.events) < cap(d.events) {
		d.events = d.events[:len(d.events)+1]
	} else {
		d.events = append(d.events, Raw{})
	}
	r := &d.events[len(d.events)-1]
	*r = Raw{}
	return r, nil
}

func (d *Decoder) decodeJSON(maxEvents int) ([]Raw, error) {
	d.skipWS()
	if d.pos >= len(d.body) {
		return nil, ErrEmpty
	}
	switch d.body[d.pos] {
	case '{':
		r, err := d.add(maxEvents)
		if err != nil {
			return nil, err
		}
		if err := d.object(r); err != nil {
			return nil, err
		}
	case '[':
		d.batch = true
		d.pos++
		d.skipWS()
		if d.pos < len(d.body) && d.body[d.pos] == ']' {
			d.pos++
			d.skipWS()
			if d.pos != len(d.body) {
				return nil, d.fail("unexpected data after the JSON array")
			}
			return nil, d.fail("empty batch: the array holds no events")
		}
		for {
			d.skipWS()
			if d.pos >= len(d.body) {
				return nil, d.fail("unexpected end of body inside the JSON array")
			}
			if d.body[d.pos] != '{' {
				return nil, d.failf("expected an event object, found %s", d.describe())
			}
			r, err := d.add(maxEvents)
			if err != nil {
				return nil, err
			}
			if err := d.object(r); err != nil {
				return nil, err
			}
			d.skipWS()
			if d.pos >= len(d.body) {
				return nil, d.fail("unexpected end of body inside the JSON array")
			}
			c := d.body[d.pos]
			if c == ']' {
				d.pos++
				break
			}
			if c != ',' {
				return nil, d.failf("expected ',' or ']' after an event, found %s", d.describe())
			}
			d.pos++
			d.index++
		}
	default:
		return nil, d.failf("expected a JSON object or array, found %s", d.describe())
	}
	d.skipWS()
	if d.pos != len(d.body) {
		return nil, d.failf("unexpected %s after the JSON value (use application/x-ndjson for one event per line)", d.describe())
	}
	return d.events, nil
}

func (d *Decoder) decodeNDJSON(maxEvents int) ([]Raw, error) {
	body := d.body
	for d.pos < len(body) {
		end := bytes.IndexByte(body[d.pos:], '\n')
		if end < 0 {
			end = len(body)
		} else {
			end += d.pos
		}
		// Skip blank lines (including "\r").
		blank := true
		for i := d.pos; i < end; i++ {
			if !isWS(body[i]) {
				blank = false
				break
			}
		}
		if blank {
			d.pos = end + 1
			continue
		}
		d.skipWS()
		if body[d.pos] != '{' {
			return nil, d.failf("expected an event object on this line, found %s", d.describe())
		}
		r, err := d.add(maxEvents)
		if err != nil {
			return nil, err
		}
		// Parse within the line only: a newline inside a value is invalid
		// JSON anyway (strings cannot hold raw newlines), but objects may not
		// span lines in NDJSON.
		saved := d.body
		d.body = body[:end]
		err = d.object(r)
		if err == nil {
			d.skipWS()
			if d.pos != end {
				err = d.failf("unexpected %s after the event on the same line", d.describe())
			}
		}
		d.body = saved
		if err != nil {
			return nil, err
		}
		d.pos = end + 1
		d.index++
	}
	if len(d.events) == 0 {
		return nil, ErrEmpty
	}
	return d.events, nil
}

func isWS(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

func (d *Decoder) skipWS() {
	for d.pos < len(d.body) && isWS(d.body[d.pos]) {
		d.pos++
	}
}

func (d *Decoder) describe() string {
	if d.pos >= len(d.body) {
		return "end of body"
	}
	c := d.body[d.pos]
	if c >= 0x20 && c < 0x7f {
		return strconv.QuoteRune(rune(c))
	}
	return fmt.Sprintf("byte 0x%02x", c)
}

// object parses one event object at d.pos.
func (d *Decoder) object(r *Raw) error {
	d.pos++ // '{'
	hasData := false
	d.skipWS()
	if d.pos < len(d.body) && d.body[d.pos] == '}' {
		d.pos++
		return d.fail(`missing "data"`)
	}
	for {
		d.skipWS()
		if d.pos >= len(d.body) {
			return d.fail("unexpected end of event object")
		}
		if d.body[d.pos] != '"' {
			return d.failf("expected a field name, found %s", d.describe())
		}
		nameStart := d.pos
		name, escaped, err := d.str()
		if err != nil {
			return err
		}
		if escaped {
			// Field names are plain ASCII; an escaped name is never one of ours.
			d.pos = nameStart
			return d.failf("unknown field %s", d.body[nameStart:nameStart+len(name)+2])
		}
		d.skipWS()
		if d.pos >= len(d.body) || d.body[d.pos] != ':' {
			return d.failf("expected ':' after field name, found %s", d.describe())
		}
		d.pos++
		d.skipWS()
		switch string(name) {
		case "data":
			if hasData {
				return d.fail(`duplicate field "data"`)
			}
			start := d.pos
			if err := d.value(0); err != nil {
				return err
			}
			r.Data = d.body[start:d.pos]
			hasData = true
		case "sequence":
			if r.HasSequence {
				return d.fail(`duplicate field "sequence"`)
			}
			n, err := d.uint()
			if err != nil {
				return err
			}
			r.Sequence, r.HasSequence = n, true
		case "producer":
			if r.HasProducer {
				return d.fail(`duplicate field "producer"`)
			}
			b, err := d.id("producer")
			if err != nil {
				return err
			}
			r.Producer, r.HasProducer = b, true
		case "key":
			if r.HasKey {
				return d.fail(`duplicate field "key"`)
			}
			b, err := d.id("key")
			if err != nil {
				return err
			}
			r.Key, r.HasKey = b, true
		default:
			d.pos = nameStart
			return d.failf(`unknown field %q (allowed: "data", "sequence", "producer", "key")`, name)
		}
		d.skipWS()
		if d.pos >= len(d.body) {
			return d.fail("unexpected end of event object")
		}
		c := d.body[d.pos]
		d.pos++
		if c == '}' {
			break
		}
		if c != ',' {
			d.pos--
			return d.failf("expected ',' or '}' in event object, found %s", d.describe())
		}
	}
	if !hasData {
		return d.fail(`missing "data"`)
	}
	return nil
}

// uint parses a non-negative integer that fits in int64.
func (d *Decoder) uint() (int64, error) {
	start := d.pos
	if d.pos >= len(d.body) {
		return 0, d.fail(`"sequence" must be a non-negative integer`)
	}
	c := d.body[d.pos]
	if c < '0' || c > '9' {
		if c == '-' {
			return 0, d.fail(`"sequence" must be a non-negative integer`)
		}
		return 0, d.failf(`"sequence" must be a non-negative integer, found %s`, d.describe())
	}
	if err := d.number(); err != nil {
		return 0, err
	}
	var n int64
	for _, c := range d.body[start:d.pos] {
		if c < '0' || c > '9' {
			d.pos = start
			return 0, d.fail(`"sequence" must be an integer (no fraction or exponent)`)
		}
		if n > (math.MaxInt64-int64(c-'0'))/10 {
			d.pos = start
			return 0, d.fail(`"sequence" must be below 2^63`)
		}
		n = n*10 + int64(c-'0')
	}
	return n, nil
}

// id parses a producer/key string, unescaping into the arena when needed.
func (d *Decoder) id(field string) ([]byte, error) {
	if d.pos >= len(d.body) || d.body[d.pos] != '"' {
		return nil, d.failf("%q must be a string, found %s", field, d.describe())
	}
	start := d.pos
	s, escaped, err := d.str()
	if err != nil {
		return nil, err
	}
	if escaped {
		off := len(d.arena)
		d.arena, err = appendUnescaped(d.arena, s)
		if err != nil {
			d.pos = start
			return nil, d.failf("%q: %v", field, err)
		}
		s = d.arena[off:len(d.arena):len(d.arena)]
	}
	if len(s) > MaxIDLen {
		d.pos = start
		return nil, d.failf("%q is longer than %d bytes", field, MaxIDLen)
	}
	return s, nil
}

// str parses a JSON string at d.pos and returns its raw contents (without
// quotes) and whether it contains escapes.
func (d *Decoder) str() ([]byte, bool, error) {
	start := d.pos
	d.pos++ // opening quote
	escaped := false
	for d.pos < len(d.body) {
		c := d.body[d.pos]
		switch {
		case c == '"':
			d.pos++
			return d.body[start+1 : d.pos-1], escaped, nil
		case c == '\\':
			escaped = true
			d.pos++
			if d.pos >= len(d.body) {
				return nil, false, d.fail("unterminated string")
			}
			switch d.body[d.pos] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				d.pos++
			case 'u':
				if d.pos+4 >= len(d.body) {
					d.pos = len(d.body)
					return nil, false, d.fail("unterminated \\u escape")
				}
				for i := 1; i <= 4; i++ {
					if !isHex(d.body[d.pos+i]) {
						d.pos += i
						return nil, false, d.fail("invalid \\u escape")
					}
				}
				d.pos += 5
			default:
				return nil, false, d.failf("invalid escape \\%c", d.body[d.pos])
			}
		case c < 0x20:
			return nil, false, d.fail("control character in string")
		default:
			d.pos++
		}
	}
	return nil, false, d.fail("unterminated string")
}

func isHex(c byte) bool {
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')
}

// number validates a JSON number at d.pos.
func (d *Decoder) number() error {
	b := d.body
	if d.pos < len(b) && b[d.pos] == '-' {
		d.pos++
	}
	if d.pos >= len(b) {
		return d.fail("invalid number")
	}
	switch {
	case b[d.pos] == '0':
		d.pos++
	case b[d.pos] >= '1' && b[d.pos] <= '9':
		for d.pos < len(b) && b[d.pos] >= '0' && b[d.pos] <= '9' {
			d.pos++
		}
	default:
		return d.fail("invalid number")
	}
	if d.pos < len(b) && b[d.pos] == '.' {
		d.pos++
		n := d.pos
		for d.pos < len(b) && b[d.pos] >= '0' && b[d.pos] <= '9' {
			d.pos++
		}
		if d.pos == n {
			return d.fail("invalid number: digits expected after '.'")
		}
	}
	if d.pos < len(b) && (b[d.pos] == 'e' || b[d.pos] == 'E') {
		d.pos++
		if d.pos < len(b) && (b[d.pos] == '+' || b[d.pos] == '-') {
			d.pos++
		}
		n := d.pos
		for d.pos < len(b) && b[d.pos] >= '0' && b[d.pos] <= '9' {
			d.pos++
		}
		if d.pos == n {
			return d.fail("invalid number: digits expected in exponent")
		}
	}
	return nil
}

// value validates any JSON value at d.pos.
func (d *Decoder) value(depth int) error {
	if depth > maxDepth {
		return d.failf("JSON nested deeper than %d levels", maxDepth)
	}
	if d.pos >= len(d.body) {
		return d.fail("unexpected end of body: value expected")
	}
	switch c := d.body[d.pos]; {
	case c == '"':
		_, _, err := d.str()
		return err
	case c == '{':
		d.pos++
		d.skipWS()
		if d.pos < len(d.body) && d.body[d.pos] == '}' {
			d.pos++
			return nil
		}
		for {
			d.skipWS()
			if d.pos >= len(d.body) || d.body[d.pos] != '"' {
				return d.failf("expected a string key in object, found %s", d.describe())
			}
			if _, _, err := d.str(); err != nil {
				return err
			}
			d.skipWS()
			if d.pos >= len(d.body) || d.body[d.pos] != ':' {
				return d.failf("expected ':' in object, found %s", d.describe())
			}
			d.pos++
			d.skipWS()
			if err := d.value(depth + 1); err != nil {
				return err
			}
			d.skipWS()
			if d.pos >= len(d.body) {
				return d.fail("unexpected end of body inside object")
			}
			c := d.body[d.pos]
			d.pos++
			if c == '}' {
				return nil
			}
			if c != ',' {
				d.pos--
				return d.failf("expected ',' or '}' in object, found %s", d.describe())
			}
		}
	case c == '[':
		d.pos++
		d.skipWS()
		if d.pos < len(d.body) && d.body[d.pos] == ']' {
			d.pos++
			return nil
		}
		for {
			d.skipWS()
			if err := d.value(depth + 1); err != nil {
				return err
			}
			d.skipWS()
			if d.pos >= len(d.body) {
				return d.fail("unexpected end of body inside array")
			}
			c := d.body[d.pos]
			d.pos++
			if c == ']' {
				return nil
			}
			if c != ',' {
				d.pos--
				return d.failf("expected ',' or ']' in array, found %s", d.describe())
			}
		}
	case c == '-' || (c >= '0' && c <= '9'):
		return d.number()
	case c == 't':
		return d.literal("true")
	case c == 'f':
		return d.literal("false")
	case c == 'n':
		return d.literal("null")
	default:
		return d.failf("invalid JSON value starting with %s", d.describe())
	}
}

func (d *Decoder) literal(lit string) error {
	if len(d.body)-d.pos < len(lit) || string(d.body[d.pos:d.pos+len(lit)]) != lit {
		return d.failf("invalid JSON literal (expected %s)", lit)
	}
	d.pos += len(lit)
	return nil
}

// appendUnescaped appends the unescaped form of a JSON string's raw contents.
func appendUnescaped(dst, s []byte) ([]byte, error) {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '\\' {
			dst = append(dst, c)
			continue
		}
		i++
		switch s[i] {
		case '"', '\\', '/':
			dst = append(dst, s[i])
		case 'b':
			dst = append(dst, '\b')
		case 'f':
			dst = append(dst, '\f')
		case 'n':
			dst = append(dst, '\n')
		case 'r':
			dst = append(dst, '\r')
		case 't':
			dst = append(dst, '\t')
		case 'u':
			r := hex4(s[i+1 : i+5])
			i += 4
			if utf16IsSurrogate(r) {
				// Expect a low surrogate next.
				if r < 0xDC00 && i+6 < len(s) && s[i+1] == '\\' && s[i+2] == 'u' {
					r2 := hex4(s[i+3 : i+7])
					if r2 >= 0xDC00 && r2 <= 0xDFFF {
						r = (r-0xD800)<<10 + (r2 - 0xDC00) + 0x10000
						i += 6
						dst = utf8.AppendRune(dst, r)
						continue
					}
				}
				return dst, errors.New("invalid UTF-16 surrogate in \\u escape")
			}
			dst = utf8.AppendRune(dst, r)
		}
	}
	return dst, nil
}

func utf16IsSurrogate(r rune) bool { return r >= 0xD800 && r <= 0xDFFF }

func hex4(b []byte) rune {
	var r rune
	for _, c := range b[:4] {
		r <<= 4
		switch {
		case c >= '0' && c <= '9':
			r |= rune(c - '0')
		case c >= 'a' && c <= 'f':
			r |= rune(c-'a') + 10
		default:
			r |= rune(c-'A') + 10
		}
	}
	return r
}
