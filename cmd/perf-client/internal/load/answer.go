package load

import (
	"errors"
	"fmt"
	"strconv"
)

// Rejected marks an event of an answer that has no ring sequence (the
// server did not accept it).
const Rejected int64 = -1

// errAnswer wraps every malformed-answer error.
var errAnswer = errors.New("malformed publish answer")

// ParseAnswer reads the appliance's publish answer (the body of a 200, 429
// or 503 to POST /api/v1/events) without allocating:
//
//	{"sequence":N,"ack":"memory"}                      one event
//	{"sequence":N,"duplicate":true,"ack":"memory"}
//	{"error":"...","accepted":false,"ack":"memory"}
//	{"ack":..,"accepted":..,"duplicates":..,"rejected":..,
//	 "results":[{"sequence":N},{"sequence":M,"duplicate":true},{"index":i,"error":"not accepted"}]}
//
// It stores each event's ring sequence (or Rejected) in seqs and whether it
// was a duplicate in dups, in request order, and returns how many results
// it found. For a batch the results array must have exactly len(seqs)
// entries; a single-event answer fills seqs[0].
func ParseAnswer(body []byte, batch bool, seqs []int64, dups []bool) (int, error) {
	if len(seqs) == 0 || len(dups) < len(seqs) {
		return 0, fmt.Errorf("%w: no room for results", errAnswer)
	}
	p := answerParser{b: body}
	p.ws()
	if !p.eat('{') {
		return 0, p.fail("want an object")
	}
	single := struct {
		seq int64
		dup bool
	}{seq: Rejected}
	n := 0
	sawResults := false
	p.ws()
	if p.eat('}') {
		return 0, p.fail("empty object")
	}
	for {
		p.ws()
		key, err := p.str()
		if err != nil {
			return 0, err
		}
		p.ws()
		if !p.eat(':') {
			return 0, p.fail("want ':'")
		}
		p.ws()
		switch {
		case batch && string(key) == "results":
			sawResults = true
			if n, err = p.results(seqs, dups); err != nil {
				return 0, err
			}
		case !batch && string(key) == "sequence":
			v, err := p.int()
			if err != nil {
				return 0, err
			}
			single.seq = v
		case !batch && string(key) == "duplicate":
			v, err := p.boolean()
			if err != nil {
				return 0, err
			}
			single.dup = v
		default:
			if err := p.skipValue(); err != nil {
				return 0, err
			}
		}
		p.ws()
		if p.eat('}') {
			break
		}
		if !p.eat(',') {
			return 0, p.fail("want ',' or '}'")
		}
	}
	p.ws()
	if p.i != len(p.b) {
		return 0, p.fail("trailing data")
	}
	if !batch {
		seqs[0], dups[0] = single.seq, single.dup && single.seq != Rejected
		return 1, nil
	}
	if !sawResults {
		return 0, fmt.Errorf("%w: batch answer without \"results\"", errAnswer)
	}
	if n != len(seqs) {
		return 0, fmt.Errorf("%w: %d results for %d events", errAnswer, n, len(seqs))
	}
	return n, nil
}

type answerParser struct {
	b []byte
	i int
}

func (p *answerParser) fail(msg string) error {
	return fmt.Errorf("%w at offset %d: %s", errAnswer, p.i, msg)
}

func (p *answerParser) ws() {
	for p.i < len(p.b) {
		switch p.b[p.i] {
		case ' ', '\t', '\n', '\r':
			p.i++
		default:
			return
		}
	}
}

func (p *answerParser) eat(c byte) bool {
	if p.i < len(p.b) && p.b[p.i] == c {
		p.i++
		return true
	}
	return false
}

// str reads a JSON string and returns its raw (still escaped) contents.
func (p *answerParser) str() ([]byte, error) {
	if !p.eat('"') {
		return nil, p.fail("want a string")
	}
	start := p.i
	for p.i < len(p.b) {
		switch p.b[p.i] {
		case '"':
			s := p.b[start:p.i]
			p.i++
			return s, nil
		case '\\':
			p.i += 2
		default:
			p.i++
		}
	}
	return nil, p.fail("unterminated string")
}

func (p *answerParser) int() (int64, error) {
	start := p.i
	if p.i < len(p.b) && p.b[p.i] == '-' {
		p.i++
	}
	for p.i < len(p.b) && p.b[p.i] >= '0' && p.b[p.i] <= '9' {
		p.i++
	}
	// Parse without allocating (the conversion below does not escape).
	v, err := strconv.ParseInt(string(p.b[start:p.i]), 10, 64)
	if err != nil || v < 0 {
		p.i = start
		return 0, p.fail("want a non-negative integer")
	}
	return v, nil
}

func (p *answerParser) boolean() (bool, error) {
	switch {
	case p.lit("true"):
		return true, nil
	case p.lit("false"):
		return false, nil
	}
	return false, p.fail("want true or false")
}

func (p *answerParser) lit(s string) bool {
	if len(p.b)-p.i >= len(s) && string(p.b[p.i:p.i+len(s)]) == s {
		p.i += len(s)
		return true
	}
	return false
}

// maxDepth bounds the nesting of skipped values.
const maxDepth = 64

// skipValue skips any JSON value (objects and arrays too: an ack=processed
// answer may carry handler output), without allocating.
func (p *answerParser) skipValue() error {
	var stack [maxDepth]byte // '}' or ']' expected per open container
	depth := 0
	for {
		// A value.
		p.ws()
		if p.i >= len(p.b) {
			return p.fail("want a value")
		}
		c := p.b[p.i]
		switch {
		case c == '{' || c == '[':
			if depth == maxDepth {
				return p.fail("nested too deeply")
			}
			p.i++
			closer := byte(']')
			if c == '{' {
				closer = '}'
			}
			stack[depth] = closer
			depth++
			p.ws()
			if p.eat(closer) {
				depth--
				break
			}
			if closer == '}' {
				if err := p.key(); err != nil {
					return err
				}
			}
			continue
		case c == '"':
			if _, err := p.str(); err != nil {
				return err
			}
		case c == '-' || (c >= '0' && c <= '9'):
			start := p.i
			for p.i < len(p.b) {
				d := p.b[p.i]
				if (d >= '0' && d <= '9') || d == '-' || d == '+' || d == '.' || d == 'e' || d == 'E' {
					p.i++
					continue
				}
				break
			}
			if p.i == start+1 && c == '-' {
				return p.fail("want a number")
			}
		case p.lit("true"), p.lit("false"), p.lit("null"):
		default:
			return p.fail("want a value")
		}
		// After a value: close containers, or move to the next member.
		for {
			if depth == 0 {
				return nil
			}
			p.ws()
			if p.eat(stack[depth-1]) {
				depth--
				continue
			}
			if !p.eat(',') {
				return p.fail("want ',' or the container's end")
			}
			if stack[depth-1] == '}' {
				if err := p.key(); err != nil {
					return err
				}
			}
			break
		}
	}
}

// key reads an object member's key and its colon.
func (p *answerParser) key() error {
	p.ws()
	if _, err := p.str(); err != nil {
		return err
	}
	p.ws()
	if !p.eat(':') {
		return p.fail("want ':'")
	}
	return nil
}

// results reads the "results" array.
func (p *answerParser) results(seqs []int64, dups []bool) (int, error) {
	if !p.eat('[') {
		return 0, p.fail("want '[' for results")
	}
	n := 0
	p.ws()
	if p.eat(']') {
		return 0, nil
	}
	for {
		p.ws()
		if n >= len(seqs) {
			return 0, fmt.Errorf("%w: more than %d results", errAnswer, len(seqs))
		}
		seq, dup, err := p.result()
		if err != nil {
			return 0, err
		}
		seqs[n], dups[n] = seq, dup
		n++
		p.ws()
		if p.eat(']') {
			return n, nil
		}
		if !p.eat(',') {
			return 0, p.fail("want ',' or ']' in results")
		}
	}
}

// result reads one flat result object.
func (p *answerParser) result() (int64, bool, error) {
	if !p.eat('{') {
		return 0, false, p.fail("want a result object")
	}
	seq, dup := Rejected, false
	p.ws()
	if p.eat('}') {
		return seq, false, nil
	}
	for {
		p.ws()
		key, err := p.str()
		if err != nil {
			return 0, false, err
		}
		p.ws()
		if !p.eat(':') {
			return 0, false, p.fail("want ':'")
		}
		p.ws()
		switch string(key) {
		case "sequence":
			if seq, err = p.int(); err != nil {
				return 0, false, err
			}
		case "duplicate":
			if dup, err = p.boolean(); err != nil {
				return 0, false, err
			}
		default:
			if err := p.skipValue(); err != nil {
				return 0, false, err
			}
		}
		p.ws()
		if p.eat('}') {
			return seq, dup && seq != Rejected, nil
		}
		if !p.eat(',') {
			return 0, false, p.fail("want ',' or '}' in a result")
		}
	}
}
