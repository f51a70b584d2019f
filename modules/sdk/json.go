package sdk

import (
	"math/bits"
	"unsafe"
)

// Byte masks of the SWAR string scan: a byte of w is '"' or '\\' iff the
// corresponding byte of ((x-ones) &^ x) & highs is set for x = w^quotes or
// x = w^backslashes; the lowest set byte is exact (the loads are
// little-endian: wasm and every host this is tested on).
const (
	ones        = 0x0101010101010101
	highs       = 0x8080808080808080
	quotes      = 0x2222222222222222
	backslashes = 0x5C5C5C5C5C5C5C5C
)

// Field returns the raw JSON value of the top-level member name of the JSON
// object doc (strings keep their quotes, objects and arrays their brackets).
// It does not allocate and does not validate more of doc than it reads.
//
// It is one function with no calls on purpose: in Go's wasm code every
// non-inlined call costs several nanoseconds (spilling to the linear-memory
// stack), so a per-token helper call made the filter module's scan ~4x
// slower.
func Field(doc []byte, name string) ([]byte, bool) {
	n := len(doc)
	i := 0
	for i < n && isSpace(doc[i]) {
		i++
	}
	if i >= n || doc[i] != '{' {
		return nil, false
	}
	i++
	for {
		for i < n && isSpace(doc[i]) {
			i++
		}
		if i >= n || doc[i] != '"' {
			return nil, false // '}' (not found) or malformed
		}
		i++
		ks := i
		for i < n {
			// Eight bytes at a time up to the first '"' or '\\' (SWAR).
			if n-i >= 8 {
				w := *(*uint64)(unsafe.Pointer(&doc[i]))
				q, e := w^quotes, w^backslashes
				m := ((q-ones)&^q | (e-ones)&^e) & highs
				if m == 0 {
					i += 8
					continue
				}
				i += bits.TrailingZeros64(m) >> 3
			}
			if c := doc[i]; c == '"' {
				break
			} else if c == '\\' {
				i++
			}
			i++
		}
		if i >= n {
			return nil, false
		}
		// One runtime call (memequal, a wasm loop of its own) instead of
		// a Go loop whose every iteration is a br_table dispatch.
		match := string(doc[ks:i]) == name
		i++
		for i < n && isSpace(doc[i]) {
			i++
		}
		if i >= n || doc[i] != ':' {
			return nil, false
		}
		i++
		for i < n && isSpace(doc[i]) {
			i++
		}
		if i >= n {
			return nil, false
		}
		vs := i
		switch doc[i] {
		case '"':
			i++
			for i < n {
				if n-i >= 8 {
					w := *(*uint64)(unsafe.Pointer(&doc[i]))
					q, e := w^quotes, w^backslashes
					m := ((q-ones)&^q | (e-ones)&^e) & highs
					if m == 0 {
						i += 8
						continue
					}
					i += bits.TrailingZeros64(m) >> 3
				}
				if c := doc[i]; c == '"' {
					break
				} else if c == '\\' {
					i++
				}
				i++
			}
			if i >= n {
				return nil, false
			}
			i++
		case '{', '[':
			depth := 0
			for ; i < n; i++ {
				c := doc[i]
				if c == '"' {
					i++
					for i < n && doc[i] != '"' {
						if doc[i] == '\\' {
							i++
						}
						i++
					}
					if i >= n {
						return nil, false
					}
				} else if c == '{' || c == '[' {
					depth++
				} else if c == '}' || c == ']' {
					depth--
					if depth == 0 {
						break
					}
				}
			}
			if i >= n {
				return nil, false
			}
			i++
		default:
			for i < n {
				c := doc[i]
				if c == ',' || c == '}' || c == ']' || isSpace(c) {
					break
				}
				i++
			}
			if i == vs {
				return nil, false
			}
		}
		if match {
			return doc[vs:i], true
		}
		for i < n && isSpace(doc[i]) {
			i++
		}
		if i >= n || doc[i] != ',' {
			return nil, false
		}
		i++
	}
}

// FieldString returns the content of the top-level string member name of
// doc, without its quotes and with escape sequences left as they are.
func FieldString(doc []byte, name string) ([]byte, bool) {
	v, ok := Field(doc, name)
	if !ok || len(v) < 2 || v[0] != '"' {
		return nil, false
	}
	return v[1 : len(v)-1], true
}

// Equal reports whether b holds the bytes of s, without a call to the
// runtime (cheaper than string(b) == s for short values in wasm).
func Equal(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := 0; i < len(b) && i < len(s); i++ {
		if b[i] != s[i] {
			return false
		}
	}
	return true
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }
