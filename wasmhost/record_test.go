package wasmhost

import (
	"encoding/binary"
	"errors"
	"testing"

	"github.com/badbatch/badbatch/modules/sdk"
)

// guestOut builds an output buffer with the Go SDK's encoder.
func guestOut(f func(o *sdk.Out)) []byte {
	o := sdk.NewOut(make([]byte, 4096))
	f(o)
	return o.Bytes()
}

func TestInputRecordMatchesSDK(t *testing.T) {
	ev := Event{Seq: 42, Timestamp: -7, Key: []byte("key"), Producer: []byte("prod"), Data: []byte("payload!!")}
	buf := make([]byte, ev.recordSize())
	n := encodeInput(buf, &ev)
	want := sdk.EncodeInput(nil, &sdk.Record{Seq: 42, Timestamp: -7, Key: ev.Key, Producer: ev.Producer, Data: ev.Data})
	if n != len(want) || string(buf) != string(want) {
		t.Fatalf("host record %x != sdk record %x", buf, want)
	}
	got, size, err := sdk.DecodeInput(buf)
	if err != nil || size != n || got.Seq() != 42 || got.Timestamp() != -7 ||
		string(got.Key()) != "key" || string(got.Producer()) != "prod" || string(got.Data()) != "payload!!" {
		t.Fatalf("decode: %v %+v", err, got)
	}
}

func TestDecodeOutputs(t *testing.T) {
	lim := decodeLimits{nIn: 3, routes: 1, maxPerInput: 2}
	ok := []struct {
		name string
		buf  []byte
		n    int
	}{
		{"empty", nil, 0},
		{"all kinds", guestOut(func(o *sdk.Out) {
			o.Begin(0)
			o.EmitKeyTo(1, []byte("k"), []byte("hello"))
			o.Forward()
			o.Begin(1)
			o.Drop()
			o.Begin(2)
			o.Error("boom")
		}), 4},
	}
	for _, tc := range ok {
		recs, err := decodeOutputs(tc.buf, lim, nil)
		if err != nil || len(recs) != tc.n {
			t.Errorf("%s: %v %d records", tc.name, err, len(recs))
		}
	}
	recs, _ := decodeOutputs(ok[1].buf, lim, nil)
	b := ok[1].buf
	if !recs[0].keySet || string(recs[0].key(b)) != "k" || string(recs[0].data(b)) != "hello" || recs[0].route != 1 ||
		recs[3].kind != kindError || string(recs[3].data(b)) != "boom" {
		t.Errorf("decoded %+v", recs)
	}

	patch := func(f func(o *sdk.Out), off int, v uint32) []byte {
		b := guestOut(f)
		binary.LittleEndian.PutUint32(b[off:], v)
		return b
	}
	fwd := func(o *sdk.Out) { o.Begin(0); o.Forward() }
	bad := []struct {
		name string
		buf  []byte
		lim  decodeLimits
	}{
		{"short", make([]byte, 10), lim},
		{"size 7", patch(fwd, 0, 7), lim},
		{"size overruns", patch(fwd, 0, 32), lim},
		{"size zero", patch(fwd, 0, 0), lim},
		{"kind 9", patch(fwd, 4, 9), lim},
		{"flags on forward", patch(fwd, 4, 2|1<<8), lim},
		{"route 2 of 1", patch(fwd, 4, 2|2<<16), lim},
		{"input out of batch", patch(fwd, 8, 3), lim},
		{"reserved", patch(fwd, 20, 1), lim},
		{"huge key_len", patch(fwd, 12, 0xFFFFFFF0), lim},
		{"forward with data", guestOut(func(o *sdk.Out) { o.Begin(0); o.Emit([]byte("x")) }), decodeLimits{nIn: 1}},
		{"decreasing input", guestOut(func(o *sdk.Out) { o.Begin(1); o.Forward(); o.Begin(0); o.Forward() }), lim},
		{"drop not alone", guestOut(func(o *sdk.Out) { o.Begin(0); o.Forward(); o.Begin(0); o.Drop() }), lim},
		{"too many", guestOut(func(o *sdk.Out) { o.Begin(0); o.Forward(); o.Forward(); o.Forward() }), lim},
		{"timer forward", guestOut(func(o *sdk.Out) { o.Begin(sdk.NoInput); o.Forward() }), decodeLimits{noInputOnly: true}},
		{"noInput in batch", guestOut(func(o *sdk.Out) { o.Begin(sdk.NoInput); o.Emit(nil) }), lim},
	}
	for _, tc := range bad {
		if tc.name == "forward with data" {
			// turn the emit into a forward that carries data
			tc.buf[4] = kindForward
			tc.lim = lim
		}
		if _, err := decodeOutputs(tc.buf, tc.lim, nil); !errors.Is(err, ErrMalformedOutput) {
			t.Errorf("%s: err = %v, want malformed", tc.name, err)
		}
	}
}

func FuzzDecodeOutputs(f *testing.F) {
	f.Add(guestOut(func(o *sdk.Out) { o.Begin(0); o.Forward(); o.Begin(1); o.EmitTo(1, []byte("data")) }), uint8(2))
	f.Add(guestOut(func(o *sdk.Out) { o.Begin(0); o.Error("x"); o.Begin(1); o.Drop() }), uint8(2))
	f.Add(guestOut(func(o *sdk.Out) { o.Begin(sdk.NoInput); o.EmitKeyTo(0, []byte("k"), []byte("v")) }), uint8(0))
	f.Add([]byte{24, 0, 0, 0, 1}, uint8(1))
	f.Fuzz(func(t *testing.T, buf []byte, nIn uint8) {
		lim := decodeLimits{nIn: int(nIn), routes: 2, maxPerInput: 3, noInputOnly: nIn == 0}
		recs, err := decodeOutputs(buf, lim, nil)
		if err != nil {
			if !errors.Is(err, ErrMalformedOutput) {
				t.Fatalf("error does not wrap ErrMalformedOutput: %v", err)
			}
			return
		}
		total, cut := 0, false
		prev := -1
		for _, r := range recs {
			cut = cut || (r.kind == kindError && len(r.data(buf)) == maxErrorMessage)
			total += align8(outputHeader + len(r.key(buf)) + len(r.data(buf)))
			if r.kind < kindEmit || r.kind > kindError || int(r.route) > 2 {
				t.Fatalf("invalid record accepted: %+v", r)
			}
			if !lim.noInputOnly {
				if int(r.input) >= int(nIn) || int(r.input) < prev {
					t.Fatalf("bad input index accepted: %+v", r)
				}
				prev = int(r.input)
			}
		}
		if total != len(buf) && !cut {
			t.Fatalf("records cover %d of %d bytes", total, len(buf))
		}
	})
}
