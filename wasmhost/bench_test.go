package wasmhost

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
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
