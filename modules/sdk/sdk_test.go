package sdk

import (
	"encoding/binary"
	"strings"
	"testing"
)

func TestInputRoundTrip(t *testing.T) {
	var buf []byte
	in := []Record{
		{Seq: 1, Timestamp: 10, Key: []byte("k"), Producer: []byte("p"), Data: []byte(`{"a":1}`)},
		{Seq: 2},
		{Seq: 3, Timestamp: -5, Producer: []byte("producer"), Data: []byte("1234567")},
	}
	for i := range in {
		buf = EncodeInput(buf, &in[i])
	}
	p := 0
	for i := range in {
		ev, n, err := DecodeInput(buf[p:])
		if err != nil || n%8 != 0 || ev.Seq() != in[i].Seq || ev.Timestamp() != in[i].Timestamp ||
			string(ev.Data()) != string(in[i].Data) || string(ev.Key()) != string(in[i].Key) ||
			string(ev.Producer()) != string(in[i].Producer) {
			t.Fatalf("record %d: %v seq %d key %q producer %q data %q", i, err, ev.Seq(), ev.Key(), ev.Producer(), ev.Data())
		}
		p += n
	}
	if p != len(buf) {
		t.Fatalf("consumed %d of %d", p, len(buf))
	}
	bad := EncodeInput(nil, &in[0])
	binary.LittleEndian.PutUint32(bad[32:], 1000)
	if _, _, err := DecodeInput(bad); err == nil {
		t.Error("bad data_len accepted")
	}
}

func TestOutErrorAndDropRewind(t *testing.T) {
	o := NewOut(make([]byte, 2048))
	o.Begin(0)
	o.Forward()
	o.Begin(1)
	o.Emit([]byte("x"))
	o.Error(strings.Repeat("e", 2000))
	if got := o.Len(); got != 24+Align8(24+MaxErrorMessage) {
		t.Fatalf("len %d after error rewind", got)
	}
	o.Reset()
	o.Begin(0)
	o.Emit([]byte("abc"))
	o.Drop()
	if o.Len() != 24 || o.Bytes()[4] != KindDrop {
		t.Fatalf("drop did not rewind: % x", o.Bytes())
	}
}

func TestOutOverflow(t *testing.T) {
	o := NewOut(make([]byte, 48))
	o.Begin(0)
	o.Forward()
	o.Forward()
	if o.Overflowed() {
		t.Fatal("overflow too early")
	}
	o.Forward()
	if !o.Overflowed() || o.Len() != 48 {
		t.Fatalf("overflow %v len %d", o.Overflowed(), o.Len())
	}
}

func TestProcessBatch(t *testing.T) {
	var in []byte
	for i := range 3 {
		in = EncodeInput(in, &Record{Seq: uint64(i), Data: []byte{byte('a' + i)}})
	}
	out := NewOut(make([]byte, 1024))
	n := ProcessBatch(func(ev *Event, o *Out) {
		if ev.Data()[0] == 'b' {
			o.Drop()
			return
		}
		o.EmitTo(1, ev.Data())
	}, in, 3, out)
	if n != int32(3*32-8) { // emit 'a' (32), drop (24), emit 'c' (32)
		t.Fatalf("returned %d", n)
	}
	if got := ProcessBatch(func(*Event, *Out) { panic("boom") }, in, 3, out); got != ErrFailed {
		t.Errorf("panic returned %d", got)
	}
	// A record whose lengths lie makes the accessor panic: the batch fails.
	lie := EncodeInput(nil, &Record{Data: []byte("x")})
	binary.LittleEndian.PutUint32(lie[32:], 1<<20)
	if got := ProcessBatch(func(ev *Event, o *Out) { o.Emit(ev.Data()) }, lie, 1, out); got != ErrFailed {
		t.Errorf("lying record returned %d", got)
	}
	if got := ProcessBatch(func(*Event, *Out) {}, in[:30], 1, out); got != ErrFailed {
		t.Errorf("short record returned %d", got)
	}
	small := NewOut(make([]byte, 24))
	if got := ProcessBatch(func(_ *Event, o *Out) { o.Forward() }, in, 3, small); got != ErrOutFull {
		t.Errorf("overflow returned %d", got)
	}
}

func TestField(t *testing.T) {
	doc := []byte(` { "a" : {"level":"x","b":[1,"}"]}, "esc\"aped":"q", "level": "warn" , "n": -1.5e3, "t":true}`)
	cases := []struct{ name, want string }{
		{"level", `"warn"`}, {"n", "-1.5e3"}, {"t", "true"}, {"a", `{"level":"x","b":[1,"}"]}`},
		{`esc\"aped`, `"q"`},
	}
	for _, tc := range cases {
		v, ok := Field(doc, tc.name)
		if !ok || string(v) != tc.want {
			t.Errorf("Field(%q) = %q %v, want %q", tc.name, v, ok, tc.want)
		}
	}
	if _, ok := Field(doc, "missing"); ok {
		t.Error("found missing")
	}
	if s, ok := FieldString(doc, "level"); !ok || string(s) != "warn" {
		t.Errorf("FieldString = %q %v", s, ok)
	}
	if _, ok := FieldString(doc, "n"); ok {
		t.Error("number returned as string")
	}
	for _, bad := range []string{"", "[1]", `{"a"`, `{"a":}`, `{"a":"x" "b":1}`, `{"a":[1,2}`} {
		if _, ok := Field([]byte(bad), "b"); ok {
			t.Errorf("malformed %q matched", bad)
		}
	}
}

func FuzzField(f *testing.F) {
	for _, s := range []string{`{"a":1,"b":"x"}`, `{"b":{"c":[1,2]}}`, `{"a":"\"b\"","b":null}`, `{`, `"x"`} {
		f.Add([]byte(s), "b")
	}
	f.Fuzz(func(t *testing.T, doc []byte, name string) {
		v, ok := Field(doc, name)
		if ok && len(v) == 0 {
			t.Fatal("empty value found")
		}
	})
}

func TestConfig(t *testing.T) {
	c, err := ParseConfig([]byte(`{"abi_version":1,"module":"r","version":"1","routes":["a","b"],"config":{"x":2}}`))
	if err != nil {
		t.Fatal(err)
	}
	if r, ok := c.Route("b"); !ok || r != 2 {
		t.Errorf("route b = %d %v", r, ok)
	}
	if _, ok := c.Route("z"); ok {
		t.Error("unknown route found")
	}
	var v struct{ X int }
	if err := c.Decode(&v); err != nil || v.X != 2 {
		t.Errorf("decode %v %+v", err, v)
	}
	if _, err := ParseConfig([]byte("{")); err == nil {
		t.Error("bad document accepted")
	}
}
