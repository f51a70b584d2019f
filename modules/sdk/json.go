package sdk

// Field returns the raw JSON value of the top-level member name of the JSON
// object doc (strings keep their quotes, objects and arrays their brackets).
// It does not allocate and does not validate more of doc than it reads.
func Field(doc []byte, name string) ([]byte, bool) {
	i := skipWS(doc, 0)
	if i >= len(doc) || doc[i] != '{' {
		return nil, false
	}
	i++
	for {
		i = skipWS(doc, i)
		if i >= len(doc) || doc[i] != '"' {
			return nil, false // '}' (not found) or malformed
		}
		kend, ok := skipString(doc, i)
		if !ok {
			return nil, false
		}
		key := doc[i+1 : kend-1]
		i = skipWS(doc, kend)
		if i >= len(doc) || doc[i] != ':' {
			return nil, false
		}
		i = skipWS(doc, i+1)
		vend, ok := skipValue(doc, i)
		if !ok {
			return nil, false
		}
		if string(key) == name {
			return doc[i:vend], true
		}
		i = skipWS(doc, vend)
		if i >= len(doc) || doc[i] != ',' {
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

func skipWS(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// skipString expects b[i] == '"' and returns the index after the closing quote.
func skipString(b []byte, i int) (int, bool) {
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
func skipValue(b []byte, i int) (int, bool) {
	if i >= len(b) {
		return 0, false
	}
	switch b[i] {
	case '"':
		return skipString(b, i)
	case '{', '[':
		depth := 0
		for ; i < len(b); i++ {
			switch b[i] {
			case '"':
				end, ok := skipString(b, i)
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
