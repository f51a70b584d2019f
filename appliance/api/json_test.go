package api

import (
	"encoding/json"
	"testing"
)

// FuzzAppendString checks the hand-written JSON string encoder against
// encoding/json: the output must be valid JSON decoding to the input (for
// valid UTF-8 input, which is all the decoder lets through).
func FuzzAppendString(f *testing.F) {
	for _, s := range []string{"", "plain", `q"uote`, `back\slash`, "ctl\x00\x1f\x7f", "tab\tnl\nr\r", "é😀", "</script>"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		b := appendString(nil, s)
		var got string
		if err := json.Unmarshal(b, &got); err != nil {
			t.Fatalf("appendString(%q) = %s: invalid JSON: %v", s, b, err)
		}
		var want string
		ref, _ := json.Marshal(s)
		_ = json.Unmarshal(ref, &want)
		if got != want {
			t.Fatalf("appendString(%q) decodes to %q, encoding/json round-trips to %q", s, got, want)
		}
	})
}

func TestFormat(t *testing.T) {
	for _, tt := range []struct {
		ct   string
		ok   bool
		want string
	}{
		{"application/json", true, "json"}, {"application/json; charset=utf-8", true, "json"}, {"Application/JSON", true, "json"},
		{"application/x-ndjson", true, "ndjson"}, {"application/ndjson", true, "ndjson"},
		{"", false, ""}, {"text/plain", false, ""}, {"application/jsonx", false, ""},
	} {
		f, err := format([]byte(tt.ct))
		if (err == nil) != tt.ok {
			t.Errorf("format(%q) error = %v", tt.ct, err)
			continue
		}
		if err == nil && map[string]int{"json": 0, "ndjson": 1}[tt.want] != int(f) {
			t.Errorf("format(%q) = %v", tt.ct, f)
		}
	}
}
