package load

import (
	"bytes"
	"encoding/json"
	"strconv"
	"strings"
	"testing"
)

func TestParseAnswer(t *testing.T) {
	for _, tc := range []struct {
		name  string
		body  string
		batch int // 0: single event
		seqs  []int64
		dups  []bool
		err   bool
	}{
		{name: "single", body: `{"sequence":41,"ack":"durable"}`, seqs: []int64{41}, dups: []bool{false}},
		{name: "single dup", body: `{"sequence":7,"duplicate":true,"ack":"memory"}`, seqs: []int64{7}, dups: []bool{true}},
		{name: "single refused", body: `{"error":"ring full; retry later \"sequence\":3","accepted":false,"ack":"memory"}`, seqs: []int64{Rejected}, dups: []bool{false}},
		{name: "single 503 stored", body: `{"error":"not confirmed durable","sequence":12,"ack":"memory"}`, seqs: []int64{12}, dups: []bool{false}},
		{name: "batch", batch: 3, body: `{"ack":"memory","accepted":2,"duplicates":1,"rejected":0,"results":[{"sequence":1},{"sequence":2,"duplicate":true},{"sequence":3}]}`,
			seqs: []int64{1, 2, 3}, dups: []bool{false, true, false}},
		{name: "batch partial", batch: 3, body: ` { "error" : "full" , "ack":"memory","accepted":1,"duplicates":0,"rejected":2,"results":[ {"sequence":10} , {"index":1,"error":"not accepted"},{"index":2,"error":"not accepted"} ] } `,
			seqs: []int64{10, Rejected, Rejected}, dups: []bool{false, false, false}},
		{name: "batch too few", batch: 3, body: `{"results":[{"sequence":1}]}`, err: true},
		{name: "batch too many", batch: 1 + 1, body: `{"results":[{"sequence":1},{"sequence":2},{"sequence":3}]}`, err: true},
		{name: "batch without results", batch: 2, body: `{"error":"node is shutting down"}`, err: true},
		{name: "negative", body: `{"sequence":-1}`, err: true},
		{name: "not json", body: `<html>`, err: true},
		{name: "empty", body: ``, err: true},
		{name: "empty object", body: `{}`, err: true},
		{name: "trailing", body: `{"sequence":1}x`, err: true},
		{name: "unterminated", body: `{"sequence":1,"ack":"mem`, err: true},
		{name: "nested output", body: `{"sequence":1,"outputs":[{"kind":"emit","data":{"a":[1,2,{"b":null}],"s":"}]"}},{"kind":"drop"}],"ack":"processed"}`,
			seqs: []int64{1}, dups: []bool{false}},
		{name: "batch nested", batch: 2, body: `{"results":[{"sequence":4,"outputs":[{"x":[[],{}]}]},{"sequence":5,"outputs":[]}],"ack":"processed"}`,
			seqs: []int64{4, 5}, dups: []bool{false, false}},
		{name: "mismatched brackets", body: `{"sequence":1,"x":{"a":1]}`, err: true},
		{name: "unclosed nested", body: `{"sequence":1,"x":[1,2`, err: true},
		{name: "too deep", body: `{"sequence":1,"x":` + strings.Repeat("[", 100) + strings.Repeat("]", 100) + `}`, err: true},
		{name: "lone minus", body: `{"sequence":1,"x":-}`, err: true},
		{name: "bad bool", body: `{"sequence":1,"duplicate":yes}`, err: true},
		{name: "overflow", body: `{"sequence":99999999999999999999}`, err: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := max(1, tc.batch)
			seqs, dups := make([]int64, n), make([]bool, n)
			got, err := ParseAnswer([]byte(tc.body), tc.batch > 0, seqs, dups)
			if tc.err {
				if err == nil {
					t.Fatalf("no error; seqs %v", seqs)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != n {
				t.Fatalf("%d results, want %d", got, n)
			}
			for i := range n {
				if seqs[i] != tc.seqs[i] || dups[i] != tc.dups[i] {
					t.Errorf("result %d: %d/%v, want %d/%v", i, seqs[i], dups[i], tc.seqs[i], tc.dups[i])
				}
			}
		})
	}
}

func TestParseAnswerDoesNotAllocate(t *testing.T) {
	body := []byte(`{"ack":"memory","accepted":2,"duplicates":0,"rejected":0,"results":[{"sequence":100},{"sequence":101}]}`)
	seqs, dups := make([]int64, 2), make([]bool, 2)
	if n := testing.AllocsPerRun(100, func() {
		if _, err := ParseAnswer(body, true, seqs, dups); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Errorf("ParseAnswer allocates %v times", n)
	}
}

// FuzzParseAnswer: no panic on any input, and whatever it accepts is a
// JSON object whose results agree with encoding/json's reading.
func FuzzParseAnswer(f *testing.F) {
	for _, s := range []string{
		`{"sequence":41,"ack":"durable"}`,
		`{"sequence":7,"duplicate":true,"ack":"memory"}`,
		`{"error":"x","accepted":false,"ack":"memory"}`,
		`{"ack":"memory","accepted":1,"duplicates":0,"rejected":1,"results":[{"sequence":10},{"index":1,"error":"not accepted"}]}`,
		`{"results":[{"sequence":1,"duplicate":true},{}]}`,
		`{"a":"\"\\","sequence":1}`,
		`{"sequence":1,"outputs":[{"kind":"emit","data":{"a":[1,{"b":null}]}}]}`,
	} {
		f.Add([]byte(s), false)
		f.Add([]byte(s), true)
	}
	f.Fuzz(func(t *testing.T, body []byte, batch bool) {
		seqs, dups := make([]int64, 2), make([]bool, 2)
		if !batch {
			seqs, dups = seqs[:1], dups[:1]
		}
		n, err := ParseAnswer(body, batch, seqs, dups)
		if err != nil {
			return
		}
		if n != len(seqs) {
			t.Fatalf("n %d for %d slots", n, len(seqs))
		}
		if !batch && !bytes.ContainsRune(body, '\\') {
			// Compare with encoding/json (exact key; escaped keys are skipped).
			var m map[string]json.RawMessage
			if json.Unmarshal(body, &m) == nil {
				if raw, ok := m["sequence"]; ok {
					var v int64
					if json.Unmarshal(raw, &v) == nil && v != seqs[0] {
						t.Fatalf("sequence %d, encoding/json says %d", seqs[0], v)
					}
				}
			}
		}
		for i := range n {
			if seqs[i] < Rejected {
				t.Fatalf("sequence %d", seqs[i])
			}
			if dups[i] && seqs[i] == Rejected {
				t.Fatal("duplicate without a sequence")
			}
		}
	})
}

// BenchmarkClientRequestWork is the client's own CPU work per request
// besides HTTP: refill the preallocated body and parse the answer
// (single events and batches of 100).
func BenchmarkClientRequestWork(b *testing.B) {
	for _, batch := range []int{1, 100} {
		b.Run(strconv.Itoa(batch), func(b *testing.B) {
			body, err := NewBody(batch, Payload{Size: 100}, false)
			if err != nil {
				b.Fatal(err)
			}
			var ans []byte
			if batch == 1 {
				ans = []byte(`{"sequence":123456,"ack":"memory"}`)
			} else {
				ans = []byte(`{"ack":"memory","accepted":100,"duplicates":0,"rejected":0,"results":[`)
				for i := range batch {
					if i > 0 {
						ans = append(ans, ',')
					}
					ans = append(ans, `{"sequence":`+strconv.Itoa(1000000+i)+`}`...)
				}
				ans = append(ans, "]}"...)
			}
			seqs, dups := make([]int64, batch), make([]bool, batch)
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				body.Fill(int64(i * batch))
				if _, err := ParseAnswer(ans, batch > 1, seqs, dups); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
