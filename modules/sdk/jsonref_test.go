package sdk

import "testing"

// refField is the straightforward implementation Field replaced (it makes
// a call per token, which Go's wasm code pays dearly for); FuzzFieldSame
// checks that Field answers exactly as it does.
// Field returns the raw JSON value of the top-level member name of the JSON
// object doc (strings keep their quotes, objects and arrays their brackets).
// It does not allocate and does not validate more of doc than it reads.
func refField(doc []byte, name string) ([]byte, bool) {
	i := refSkipWS(doc, 0)
	if i >= len(doc) || doc[i] != '{' {
		return nil, false
	}
	i++
	for {
		i = refSkipWS(doc, i)
		if i >= len(doc) || doc[i] != '"' {
			return nil, false // '}' (not found) or malformed
		}
		kend, ok := refSkipString(doc, i)
		if !ok {
			return nil, false
		}
		key := doc[i+1 : kend-1]
		i = refSkipWS(doc, kend)
		if i >= len(doc) || doc[i] != ':' {
			return nil, false
		}
		i = refSkipWS(doc, i+1)
		vend, ok := refSkipValue(doc, i)
		if !ok {
			return nil, false
		}
		if string(key) == name {
			return doc[i:vend], true
		}
		i = refSkipWS(doc, vend)
		if i >= len(doc) || doc[i] != ',' {
			return nil, false
		}
		i++
	}
}

func refSkipWS(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// skipString expects b[i] == '"' and returns the index after the closing quote.
func refSkipString(b []byte, i int) (int, bool) {
	for i++; i < len(b); i++ {
		switch b[i] {
		case '\\':
			i++
		case '"':
			return i + 1, true
		}
	}
	return 0, false
}

// skipValue returns the index after the JSON value starting at b[i].
func refSkipValue(b []byte, i int) (int, bool) {
	if i >= len(b) {
		return 0, false
	}
	switch b[i] {
	case '"':
		return refSkipString(b, i)
	case '{', '[':
		depth := 0
		for ; i < len(b); i++ {
			switch b[i] {
			case '"':
				end, ok := refSkipString(b, i)
				if !ok {
					return 0, false
				}
				i = end - 1
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return i + 1, true
				}
			}
		}
		return 0, false
	default:
		start := i
		for i < len(b) && b[i] != ',' && b[i] != '}' && b[i] != ']' && b[i] != ' ' &&
			b[i] != '\t' && b[i] != '\n' && b[i] != '\r' {
			i++
		}
		return i, i > start
	}
}

// FuzzFieldSame: Field agrees with refField on every input.
func FuzzFieldSame(f *testing.F) {
	for _, s := range []string{`{"a":1,"b":"x"}`, `{"b":{"c":[1,2]}}`, `{"a":"\"b\"","b":null}`, `{`, `"x"`,
		` { "a" : {"level":"x","b":[1,"}"]}, "esc\"aped":"q", "b": "warn" , "n": -1.5e3}`, `{"a":[1,2}`, `{"b":"\`} {
		f.Add([]byte(s), "b")
	}
	f.Fuzz(func(t *testing.T, doc []byte, name string) {
		v, ok := Field(doc, name)
		rv, rok := refField(doc, name)
		if ok != rok || string(v) != string(rv) {
			t.Fatalf("Field(%q, %q) = %q %v, reference %q %v", doc, name, v, ok, rv, rok)
		}
	})
}

func TestEqual(t *testing.T) {
	for _, tc := range []struct {
		b, s string
		want bool
	}{{"", "", true}, {"debug", "debug", true}, {"debug", "debuG", false}, {"deb", "debug", false}} {
		if got := Equal([]byte(tc.b), tc.s); got != tc.want {
			t.Errorf("Equal(%q, %q) = %v", tc.b, tc.s, got)
		}
	}
}
