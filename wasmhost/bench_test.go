package wasmhost

import (
	"context"
	"encoding/binary"
	"fmt"
	"testing"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"
)

func benchEvents(n int) []Event {
	evs := make([]Event, n)
	for i := range evs {
		evs[i] = Event{Seq: uint64(i), Timestamp: time.Now().UnixNano(), Key: []byte("sensor-17"),
			Producer: []byte("plc-bridge"), Data: []byte(`{"level":"info","temp":21.5,"unit":"C","line":4}`)}
	}
	return evs
}

// benchModule measures Process per event at several batch sizes; batch 1
// is the one-call-per-event ABI shape.
func benchModule(b *testing.B, wasm, manifest string) {
	m := loadModule(b, wasm, manifest)
	for _, size := range []int{1, 16, 256} {
		b.Run(fmt.Sprintf("batch=%d", size), func(b *testing.B) {
			evs := benchEvents(size)
			out := 0
			emit := func(o Output) { out++ }
			ctx := context.Background()
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				if err := m.Process(ctx, evs, emit); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*size), "ns/event")
			if out != b.N*size {
				b.Fatalf("%d outputs for %d events", out, b.N*size)
			}
		})
	}
}

// BenchmarkPassthroughGoGuest: the Go SDK passthrough module, compiled.
func BenchmarkPassthroughGoGuest(b *testing.B) {
	benchModule(b, "../modules/passthrough.wasm", `name = "passthrough"`)
}

// BenchmarkPassthroughWAT: the same forward logic hand-written in WAT.
func BenchmarkPassthroughWAT(b *testing.B) {
	benchModule(b, hostileWasm, `name = "hostile"`)
}

// BenchmarkFilterGoGuest: the repo's filter module (Go SDK, JSON field
// scan) on events it forwards (level "info") and events it drops ("debug").
func BenchmarkFilterGoGuest(b *testing.B) {
	benchModuleOut(b, "../modules/filter.wasm", `name = "filter"
[config]
field = "level"
drop = ["debug", "trace"]`, true)
}

// benchModuleOut is benchModule; with mixed, every other event is one the
// module drops (level "debug").
func benchModuleOut(b *testing.B, wasm, manifest string, mixed bool) {
	m := loadModule(b, wasm, manifest)
	for _, size := range []int{1, 16, 256} {
		b.Run(fmt.Sprintf("batch=%d", size), func(b *testing.B) {
			evs := benchEvents(size)
			want := size
			if mixed {
				want = 0
				for i := range evs {
					if i%2 == 1 {
						evs[i].Data = []byte(`{"level":"debug","temp":21.5,"unit":"C","line":4}`)
					} else {
						want++
					}
				}
			}
			out := 0
			emit := func(o Output) { out++ }
			ctx := context.Background()
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				if err := m.Process(ctx, evs, emit); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*size), "ns/event")
			if out != b.N*want {
				b.Fatalf("%d outputs for %d events, want %d per batch", out, b.N*size, want)
			}
		})
	}
}

// processor is the stage signature shared by Module, Stage and a native
// handler.
type processor interface {
	Process(ctx context.Context, batch []Event, emit func(Output)) error
}

// nativeForward is the passthrough logic as a native Go handler.
type nativeForward struct{}

func (nativeForward) Process(_ context.Context, batch []Event, emit func(Output)) error {
	for i := range batch {
		emit(Output{Kind: OutputForward, Module: "native", Input: i, Event: &batch[i], Key: batch[i].Key, Data: batch[i].Data})
	}
	return nil
}

// nativeStage is a variable so the call is dynamic, as a stage call is.
var nativeStage processor = nativeForward{}

// BenchmarkPassthroughNative is the baseline: the same logic as a native Go
// handler behind the same stage signature.
func BenchmarkPassthroughNative(b *testing.B) {
	for _, size := range []int{1, 16, 256} {
		b.Run(fmt.Sprintf("batch=%d", size), func(b *testing.B) {
			evs := benchEvents(size)
			out := 0
			emit := func(o Output) {
				if o.Kind == OutputForward {
					out++
				}
			}
			b.ReportAllocs()
			for b.Loop() {
				_ = nativeStage.Process(context.Background(), evs, emit)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*size), "ns/event")
			if out != b.N*size {
				b.Fatalf("%d outputs", out)
			}
		})
	}
}

// BenchmarkCallOverhead measures one guest call (bb_abi_version of the WAT
// module) with and without the endless-loop protection the host uses:
// WithCloseOnContextDone(true) plus a context.WithTimeout per call.
func BenchmarkCallOverhead(b *testing.B) {
	wasm := mustRead(b, "../modules/wat-counter.wasm")
	for _, tc := range []struct {
		name           string
		closeOnDone    bool
		perCallTimeout bool
	}{
		{"unprotected", false, false},
		{"closeOnDone", true, false},
		{"closeOnDone+timeout", true, true},
	} {
		b.Run(tc.name, func(b *testing.B) {
			ctx := context.Background()
			rt := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfig().WithCloseOnContextDone(tc.closeOnDone))
			defer rt.Close(ctx)
			_, err := rt.NewHostModuleBuilder("bb").NewFunctionBuilder().
				WithGoModuleFunction(api.GoModuleFunc(func(context.Context, api.Module, []uint64) {}),
					[]api.ValueType{api.ValueTypeI32, api.ValueTypeI32, api.ValueTypeI64}, nil).
				Export("counter_add").Instantiate(ctx)
			if err != nil {
				b.Fatal(err)
			}
			mod, err := rt.Instantiate(ctx, wasm)
			if err != nil {
				b.Fatal(err)
			}
			fn := mod.ExportedFunction("bb_abi_version")
			var stack [1]uint64
			b.ReportAllocs()
			for b.Loop() {
				if tc.perCallTimeout {
					cctx, cancel := context.WithTimeout(ctx, time.Second)
					err = fn.CallWithStack(cctx, stack[:])
					cancel()
				} else {
					err = fn.CallWithStack(ctx, stack[:])
				}
				if err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkGuardCost measures the raw bb_process call of a Go guest over a
// batch of 256 events (no host encoding or decoding) under the three ways
// of bounding a call: none, the host's loop guard (guard.go), and wazero's
// WithCloseOnContextDone (the previous mechanism). Its numbers are why the
// host instruments modules instead of using WithCloseOnContextDone.
func BenchmarkGuardCost(b *testing.B) {
	for _, f := range []string{"passthrough", "filter"} {
		for _, mode := range []string{"none", "guard", "closeOnDone"} {
			b.Run(f+"/"+mode, func(b *testing.B) {
				ctx := context.Background()
				rt := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfig().WithCloseOnContextDone(mode == "closeOnDone"))
				defer rt.Close(ctx)
				wasi_snapshot_preview1.MustInstantiate(ctx, rt)
				wasm := mustRead(b, "../modules/"+f+".wasm")
				if mode == "guard" {
					var err error
					if wasm, _, err = guard(wasm); err != nil {
						b.Fatal(err)
					}
				}
				mod, err := rt.InstantiateWithConfig(ctx, wasm, wazero.NewModuleConfig().WithStartFunctions())
				if err != nil {
					b.Fatal(err)
				}
				var st [2]uint64
				call := func(name string, args ...uint64) uint64 {
					copy(st[:], args)
					if err := mod.ExportedFunction(name).CallWithStack(ctx, st[:]); err != nil {
						b.Fatal(name, err)
					}
					return st[0]
				}
				call("_initialize")
				d, _ := mod.Memory().Read(uint32(call("bb_buffers")), 16)
				inPtr := binary.LittleEndian.Uint32(d)
				doc := []byte(`{"abi_version":1,"module":"filter","version":"1","routes":[],"config":{"field":"level","drop":["debug","trace"]}}`)
				mod.Memory().Write(inPtr, doc)
				if r := call("bb_init", uint64(inPtr), uint64(len(doc))); r != 0 {
					b.Fatal("bb_init", r)
				}
				evs := benchEvents(256)
				in, _ := mod.Memory().Read(inPtr, 1<<20)
				p := 0
				for i := range evs {
					p += encodeInput(in[p:], &evs[i])
				}
				fn := mod.ExportedFunction("bb_process")
				for b.Loop() {
					st[0], st[1] = 256, uint64(p)
					if err := fn.CallWithStack(ctx, st[:]); err != nil {
						b.Fatal(err)
					}
				}
				if int32(st[0]) != 256*24 {
					b.Fatalf("bb_process returned %d", int32(st[0]))
				}
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*256), "ns/event")
			})
		}
	}
}

// BenchmarkColdEvents: the WAT pass-through over a 65536-event ring of
// separately allocated 256-byte payload buffers walked in batches of 256,
// as the appliance's WASM stage reads a full ring: the events are no longer
// in the CPU caches, so this is the host's input encoding at memory speed.
func BenchmarkColdEvents(b *testing.B) {
	m := loadModule(b, hostileWasm, `name = "hostile"`)
	const ring, batch = 1 << 16, 256
	evs := make([]Event, ring)
	for i := range evs {
		d := make([]byte, 0, 256)
		evs[i] = Event{Seq: uint64(i), Timestamp: int64(i), Data: append(d, `{"level":"info","temp":21.5,"sensor":"s-17"}`...)}
	}
	ctx := context.Background()
	emit := func(Output) {}
	b.ResetTimer()
	pos := 0
	for b.Loop() {
		if err := m.Process(ctx, evs[pos:pos+batch], emit); err != nil {
			b.Fatal(err)
		}
		pos = (pos + batch) % ring
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*batch), "ns/event")
}
