package event

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

func TestDecodeValid(t *testing.T) {
	tests := []struct {
		name   string
		body   string
		format Format
		batch  bool
		want   []Raw
	}{
		{"seed example", "{\n  \"data\": \"your_event_data\",\n  \"sequence\": 12345\n}", FormatJSON, false,
			[]Raw{{Data: []byte(`"your_event_data"`), Sequence: 12345, HasSequence: true}}},
		{"all fields", `{"data":{"t":21.5,"a":[1,true,null]},"sequence":0,"producer":"p1","key":"k"}`, FormatJSON, false,
			[]Raw{{Data: []byte(`{"t":21.5,"a":[1,true,null]}`), HasSequence: true, Producer: []byte("p1"), HasProducer: true, Key: []byte("k"), HasKey: true}}},
		{"escaped producer", `{"data":1,"producer":"a\u00e9\n\ud83d\ude00"}`, FormatJSON, false,
			[]Raw{{Data: []byte(`1`), Producer: []byte("aé\n😀"), HasProducer: true}}},
		{"array", ` [ {"data":1} , {"data":"x","sequence":7} ] `, FormatJSON, true,
			[]Raw{{Data: []byte(`1`)}, {Data: []byte(`"x"`), Sequence: 7, HasSequence: true}}},
		{"ndjson", "{\"data\":1}\n\n{\"data\":[2]}\r\n{\"data\":null}", FormatNDJSON, true,
			[]Raw{{Data: []byte(`1`)}, {Data: []byte(`[2]`)}, {Data: []byte(`null`)}}},
		{"ndjson trailing newline", "{\"data\":-1.5e3}\n", FormatNDJSON, true,
			[]Raw{{Data: []byte(`-1.5e3`)}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var d Decoder
			got, err := d.Decode([]byte(tt.body), tt.format, 0)
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			if d.Batch() != tt.batch {
				t.Errorf("Batch() = %v, want %v", d.Batch(), tt.batch)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("got %d events, want %d", len(got), len(tt.want))
			}
			for i := range got {
				g, w := got[i], tt.want[i]
				if string(g.Data) != string(w.Data) || string(g.Producer) != string(w.Producer) || string(g.Key) != string(w.Key) ||
					g.Sequence != w.Sequence || g.HasSequence != w.HasSequence || g.HasProducer != w.HasProducer || g.HasKey != w.HasKey {
					t.Errorf("event %d = %+v, want %+v", i, g, w)
				}
			}
		})
	}
}

func TestDecodeInvalid(t *testing.T) {
	tests := []struct {
		name    string
		body    string
		format  Format
		max     int
		index   int
		contain string
	}{
		{"empty", "", FormatJSON, 0, 0, "empty body"},
		{"whitespace", " \n ", FormatJSON, 0, 0, "empty body"},
		{"empty ndjson", "\n\n", FormatNDJSON, 0, 0, "empty body"},
		{"malformed", `{"data":`, FormatJSON, 0, 0, "unexpected end"},
		{"missing data", `{"sequence":1}`, FormatJSON, 0, 0, `missing "data"`},
		{"empty object", `{}`, FormatJSON, 0, 0, `missing "data"`},
		{"unknown field", `{"data":1,"extra":2}`, FormatJSON, 0, 0, `unknown field "extra"`},
		{"sequence string", `{"data":1,"sequence":"12"}`, FormatJSON, 0, 0, "non-negative integer"},
		{"sequence negative", `{"data":1,"sequence":-1}`, FormatJSON, 0, 0, "non-negative integer"},
		{"sequence float", `{"data":1,"sequence":1.5}`, FormatJSON, 0, 0, "integer"},
		{"sequence overflow", `{"data":1,"sequence":9223372036854775808}`, FormatJSON, 0, 0, "below 2^63"},
		{"producer number", `{"data":1,"producer":5}`, FormatJSON, 0, 0, `"producer" must be a string`},
		{"key too long", `{"data":1,"key":"` + strings.Repeat("k", MaxIDLen+1) + `"}`, FormatJSON, 0, 0, "longer than"},
		{"array of scalars", `[1,2]`, FormatJSON, 0, 0, "expected an event object"},
		{"scalar body", `"x"`, FormatJSON, 0, 0, "expected a JSON object or array"},
		{"empty array", `[]`, FormatJSON, 0, 0, "empty batch"},
		{"bad second", `[{"data":1},{"data":tru}]`, FormatJSON, 0, 1, "invalid JSON literal"},
		{"trailing garbage", `{"data":1} x`, FormatJSON, 0, 0, "after the JSON value"},
		{"two objects json", "{\"data\":1}\n{\"data\":2}", FormatJSON, 0, 0, "x-ndjson"},
		{"ndjson bad line", "{\"data\":1}\n{\"data\":}\n", FormatNDJSON, 0, 1, "invalid JSON value"},
		{"ndjson split object", "{\"data\":\n1}", FormatNDJSON, 0, 0, "unexpected end"},
		{"too many", `[{"data":1},{"data":2},{"data":3}]`, FormatJSON, 2, 2, "too many"},
		{"duplicate data", `{"data":1,"data":2}`, FormatJSON, 0, 0, "duplicate"},
		{"control char", "{\"data\":\"a\x01\"}", FormatJSON, 0, 0, "control character"},
		{"bad escape", `{"data":"\x"}`, FormatJSON, 0, 0, "invalid escape"},
		{"lone surrogate producer", `{"data":1,"producer":"\ud800"}`, FormatJSON, 0, 0, "surrogate"},
		{"invalid utf8", "{\"data\":\"\xff\"}", FormatJSON, 0, 0, "UTF-8"},
		{"leading zero", `{"data":01}`, FormatJSON, 0, 0, "expected ','"},
		{"deep", `{"data":` + strings.Repeat("[", maxDepth+2) + strings.Repeat("]", maxDepth+2) + `}`, FormatJSON, 0, 0, "nested deeper"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var d Decoder
			_, err := d.Decode([]byte(tt.body), tt.format, tt.max)
			if err == nil {
				t.Fatal("Decode succeeded, want error")
			}
			if !strings.Contains(err.Error(), tt.contain) {
				t.Errorf("error %q does not contain %q", err, tt.contain)
			}
			var de *Error
			if errors.As(err, &de) && de.Index != tt.index {
				t.Errorf("error index = %d, want %d", de.Index, tt.index)
			}
		})
	}
}

func TestDecodeReuseDoesNotAllocate(t *testing.T) {
	body := []byte(`[{"data":{"temp":21.5,"unit":"C"},"sequence":1,"producer":"sensor-1"},{"data":[1,2,3],"sequence":2,"producer":"sensor-1","key":"a"}]`)
	nd := []byte("{\"data\":1,\"producer\":\"p\\u00e9\"}\n{\"data\":2}\n")
	var d Decoder
	if _, err := d.Decode(body, FormatJSON, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Decode(nd, FormatNDJSON, 0); err != nil {
		t.Fatal(err)
	}
	allocs := testing.AllocsPerRun(100, func() {
		if _, err := d.Decode(body, FormatJSON, 0); err != nil {
			t.Fatal(err)
		}
		if _, err := d.Decode(nd, FormatNDJSON, 0); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("Decode allocates %.1f times per call after warm-up, want 0", allocs)
	}
}

func TestSlotFillSnapshot(t *testing.T) {
	s := NewSlotFactory(8)()
	r := Raw{Data: []byte(`"abcdef"`), Key: []byte("k"), Sequence: 3, HasSequence: true}
	if err := Fits(&r, []byte("p"), 8); err != nil {
		t.Fatal(err)
	}
	big := Raw{Data: []byte(`"abcdefgh"`)}
	if err := Fits(&big, nil, 8); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("Fits(big) = %v, want ErrTooLarge", err)
	}
	data := s.Data
	allocs := testing.AllocsPerRun(100, func() { s.Fill(5, 99, &r, []byte("p")) })
	if allocs != 0 {
		t.Errorf("Fill allocates %.1f times", allocs)
	}
	if &s.Data[:1][0] != &data[:1][0] {
		t.Error("Fill replaced the preallocated data buffer")
	}
	var c Copy
	if got := s.Snapshot(4, &c); got != 5 {
		t.Errorf("Snapshot(4) = %d, want 5 (overwritten)", got)
	}
	if got := s.Snapshot(5, &c); got != 5 || string(c.Data) != `"abcdef"` || string(c.Producer) != "p" || string(c.Key) != "k" || c.ProducerSeq != 3 || c.Timestamp != 99 {
		t.Errorf("Snapshot(5) = %d, %+v", got, c)
	}
}

// FuzzDecode checks that the decoder never panics, that everything it
// accepts is valid JSON, and that it rejects every body encoding/json rejects.
func FuzzDecode(f *testing.F) {
	seeds := []string{
		`{"data":"your_event_data","sequence":12345}`,
		`[{"data":1},{"data":{"a":[true,false,null]},"producer":"p","key":"k","sequence":3}]`,
		"{\"data\":1}\n{\"data\":2}\n",
		`{"data":"\u00e9\ud83d\ude00","producer":"\t"}`,
		`{"data":-0.5E+10}`, `[]`, `{}`, `{"data":}`, `[{"data":1},]`, `{"data":1,"extra":1}`,
		"{\"data\":\"\xff\"}", `{"data":1e}`, `{"data":[[[[]]]]}`,
	}
	for _, s := range seeds {
		f.Add([]byte(s), false)
		f.Add([]byte(s), true)
	}
	f.Fuzz(func(t *testing.T, body []byte, ndjson bool) {
		format := FormatJSON
		if ndjson {
			format = FormatNDJSON
		}
		var d Decoder
		evs, err := d.Decode(body, format, 100)
		if err != nil {
			var de *Error
			if !errors.As(err, &de) && !errors.Is(err, ErrEmpty) {
				t.Fatalf("error of unexpected type %T: %v", err, err)
			}
			return
		}
		if len(evs) == 0 {
			t.Fatal("no events and no error")
		}
		if format == FormatJSON && !json.Valid(body) {
			t.Fatalf("accepted invalid JSON body %q", body)
		}
		for i, ev := range evs {
			if !json.Valid(ev.Data) {
				t.Fatalf("event %d: data %q is not valid JSON", i, ev.Data)
			}
			if ev.HasSequence && ev.Sequence < 0 {
				t.Fatalf("event %d: negative sequence", i)
			}
			if len(ev.Producer) > MaxIDLen || len(ev.Key) > MaxIDLen {
				t.Fatalf("event %d: id too long", i)
			}
		}
		if format == FormatJSON && !d.Batch() {
			var v struct {
				Data     json.RawMessage `json:"data"`
				Sequence *int64          `json:"sequence"`
				Producer *string         `json:"producer"`
				Key      *string         `json:"key"`
			}
			if err := json.Unmarshal(body, &v); err != nil {
				t.Fatalf("encoding/json rejects what we accepted: %v", err)
			}
			if v.Producer != nil && *v.Producer != string(evs[0].Producer) {
				t.Fatalf("producer %q, encoding/json says %q", evs[0].Producer, *v.Producer)
			}
		}
	})
}
