package load

import (
	"bytes"
	"encoding/json"
	"fmt"
	"testing"
)

func TestBodyFill(t *testing.T) {
	for _, tc := range []struct {
		batch, size int
		first       int64
	}{
		{1, 2, 0}, {1, 3, 7}, {1, 100, 123456789}, {3, 21, 9223372036854775000}, {10, 8, 5}, {2, 40, 0},
	} {
		t.Run(fmt.Sprintf("batch%d/size%d", tc.batch, tc.size), func(t *testing.T) {
			b, err := NewBody(tc.batch, Payload{Size: tc.size}, false)
			if err != nil {
				t.Fatal(err)
			}
			for round := range 2 { // a refill overwrites every digit
				first := tc.first + int64(round)*1000
				if first < 0 {
					first = tc.first
				}
				raw := b.Fill(first)
				var evs []struct {
					Sequence int64           `json:"sequence"`
					Data     json.RawMessage `json:"data"`
				}
				if tc.batch == 1 {
					evs = evs[:0]
					var one struct {
						Sequence int64           `json:"sequence"`
						Data     json.RawMessage `json:"data"`
					}
					if err := json.Unmarshal(raw, &one); err != nil {
						t.Fatalf("not JSON: %v: %s", err, raw)
					}
					evs = append(evs, one)
				} else if err := json.Unmarshal(raw, &evs); err != nil {
					t.Fatalf("not JSON: %v: %s", err, raw)
				}
				if len(evs) != tc.batch {
					t.Fatalf("%d events, want %d", len(evs), tc.batch)
				}
				p := Payload{Size: tc.size}
				for i, e := range evs {
					want := first + int64(i)
					if e.Sequence != want {
						t.Errorf("event %d: sequence %d, want %d", i, e.Sequence, want)
					}
					if len(e.Data) != tc.size {
						t.Errorf("event %d: payload %d bytes, want %d: %s", i, len(e.Data), tc.size, e.Data)
					}
					if exp := p.Append(nil, want); string(exp) != string(e.Data) {
						t.Errorf("event %d: payload %s, Append gives %s", i, e.Data, exp)
					}
				}
			}
		})
	}
}

func TestNewBodyErrors(t *testing.T) {
	if _, err := NewBody(0, Payload{Size: 10}, false); err == nil {
		t.Error("batch 0 accepted")
	}
	if _, err := NewBody(1, Payload{Size: 1}, false); err == nil {
		t.Error("payload size 1 accepted")
	}
}

func TestFillDoesNotAllocate(t *testing.T) {
	b, err := NewBody(100, Payload{Size: 64}, false)
	if err != nil {
		t.Fatal(err)
	}
	s := int64(0)
	if n := testing.AllocsPerRun(100, func() { b.Fill(s); s += 100 }); n != 0 {
		t.Errorf("Fill allocates %v times", n)
	}
}

func TestPayloadDecode(t *testing.T) {
	for _, tc := range []struct {
		size    int
		seq     int64
		claimed int64
		ok      bool
	}{
		{100, 42, 43, true},
		{100, 42, 42, false}, // never sent
		{21, 9223372036854775806, 9223372036854775807, true},
		{8, 999_999, 1_000_000, true}, // 6 digits hold every sequence sent
		{8, 5, 1_000_001, false},      // digits wrapped: ambiguous
		{2, 0, 1, true},               // no digits, one event
		{2, 0, 2, false},              // no digits, two events
	} {
		p := Payload{Size: tc.size}
		got, ok := p.Decode(p.Append(nil, tc.seq), tc.claimed)
		if ok != tc.ok || (ok && got != tc.seq) {
			t.Errorf("size %d seq %d claimed %d: got %d, %v", tc.size, tc.seq, tc.claimed, got, ok)
		}
	}
	p := Payload{Size: 10}
	for _, bad := range []string{`"00000a0x"`, `12345678xx`, `"0000"`, ``} {
		if _, ok := p.Decode([]byte(bad), 10); ok {
			t.Errorf("Decode(%q) ok", bad)
		}
	}
}

func TestGroup(t *testing.T) {
	for n, want := range map[int64]string{0: "0", 999: "999", 1000: "1,000", -1234567: "-1,234,567", 100000: "100,000"} {
		if got := Group(n); got != want {
			t.Errorf("Group(%d) = %q, want %q", n, got, want)
		}
	}
}

func TestBodyNDJSON(t *testing.T) {
	for _, batch := range []int{1, 3} {
		b, err := NewBody(batch, Payload{Size: 30}, true)
		if err != nil {
			t.Fatal(err)
		}
		raw := b.Fill(40)
		lines := bytes.Split(bytes.TrimSuffix(raw, []byte("\n")), []byte("\n"))
		if len(lines) != batch || raw[len(raw)-1] != '\n' {
			t.Fatalf("batch %d: %d lines: %q", batch, len(lines), raw)
		}
		for i, l := range lines {
			var e struct {
				Sequence int64 `json:"sequence"`
			}
			if err := json.Unmarshal(l, &e); err != nil || e.Sequence != 40+int64(i) {
				t.Errorf("line %d: %v, sequence %d: %s", i, err, e.Sequence, l)
			}
		}
	}
}
