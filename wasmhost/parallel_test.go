package wasmhost

import (
	"context"
	"fmt"
	"runtime"
	"testing"
)

// TestParallelMatchesSerial: a module with instances > 1 processes a large
// batch in parts at once, and reports exactly what a serial call reports,
// in the same order: every output kind, and poison events (trap, error,
// failed batch, malformed output) in different parts, each dead-lettered
// while the rest of its part is processed.
func TestParallelMatchesSerial(t *testing.T) {
	if runtime.GOMAXPROCS(0) < 2 {
		t.Skip("needs GOMAXPROCS >= 2 to split a batch")
	}
	datas := make([]string, 600)
	for i := range datas {
		switch i {
		case 5:
			datas[i] = "T" // trap
		case 170:
			datas[i] = "E" // error record
		case 333:
			datas[i] = "X" // batch failed
		case 480:
			datas[i] = "B" // malformed output
		default:
			datas[i] = []string{"a", "D", "Mcopy", "b"}[i%4] + fmt.Sprint(i)
		}
	}
	run := func(instances int) ([]Output, Stats) {
		m := loadModule(t, hostileWasm, fmt.Sprintf(`name = "hostile"
routes = ["side"]
instances = %d
max_batch_events = 64`, instances))
		if k := m.parallelParts(len(datas)); (instances > 1) != (k > 1) {
			t.Fatalf("instances %d: %d parts", instances, k)
		}
		var c collector
		evs := events(datas...)
		for range 3 { // the same batch three times: instances are reused
			if err := m.Process(context.Background(), evs, c.emit); err != nil {
				t.Fatal(err)
			}
		}
		for _, o := range c.out {
			if o.Event != &evs[o.Input] {
				t.Fatalf("output for input %d does not point at its event", o.Input)
			}
		}
		return c.out, m.Stats()
	}
	serial, sst := run(1)
	for _, instances := range []int{2, 4} {
		par, pst := run(instances)
		if len(par) != len(serial) {
			t.Fatalf("instances %d: %d outputs, serial %d", instances, len(par), len(serial))
		}
		for i := range serial {
			s, p := serial[i], par[i]
			if s.Kind != p.Kind || s.Input != p.Input || s.Route != p.Route || string(s.Data) != string(p.Data) ||
				string(s.Key) != string(p.Key) || (s.Err == nil) != (p.Err == nil) {
				t.Fatalf("instances %d, output %d: %v %d %q %q, serial %v %d %q %q", instances, i,
					p.Kind, p.Input, p.Route, p.Data, s.Kind, s.Input, s.Route, s.Data)
			}
		}
		if pst.EventsIn != sst.EventsIn || pst.Forwarded != sst.Forwarded || pst.Emitted != sst.Emitted ||
			pst.Dropped != sst.Dropped || pst.DeadLettered != sst.DeadLettered {
			t.Errorf("instances %d: stats %+v, serial %+v", instances, pst, sst)
		}
	}
	dead := 0
	for _, o := range serial {
		if o.Kind == OutputDeadLetter {
			dead++
		}
	}
	if dead != 3*4 {
		t.Errorf("%d dead letters, want 12 (4 poison events x 3 batches)", dead)
	}
}

// TestParallelClose: closing a module while parallel batches run ends
// every helper goroutine (goleak checks the package at exit) and the
// batches end with ErrClosed or complete.
func TestParallelClose(t *testing.T) {
	m, err := tryLoad(t, "../modules/passthrough.wasm", "name = \"passthrough\"\ninstances = 2")
	if err != nil {
		t.Fatal(err)
	}
	evs := benchEvents(512)
	done := make(chan error)
	go func() {
		for {
			if err := m.Process(context.Background(), evs, func(Output) {}); err != nil {
				done <- err
				return
			}
		}
	}()
	if err := m.Close(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != ErrClosed {
		t.Fatalf("Process after Close: %v", err)
	}
}
