package wasmhost

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
)

const hostileWasm = "testdata/hostile.wasm"

func TestOutputKinds(t *testing.T) {
	m := loadModule(t, hostileWasm, `name = "hostile"
routes = ["side"]`)
	var c collector
	evs := events("a", "D", "Mcopy", "E", "b")
	if err := m.Process(context.Background(), evs, c.emit); err != nil {
		t.Fatal(err)
	}
	type want struct {
		kind  OutputKind
		route string
		input int
		data  string
	}
	wants := []want{
		{OutputForward, "", 0, "a"},
		{OutputEmit, "", 2, "Mcopy"},
		{OutputForward, "side", 2, "Mcopy"},
		{OutputDeadLetter, "", 3, "E"},
		{OutputForward, "", 4, "b"},
	}
	if len(c.out) != len(wants) {
		t.Fatalf("got %d outputs %+v, want %d", len(c.out), c.out, len(wants))
	}
	for i, w := range wants {
		o := c.out[i]
		if o.Kind != w.kind || o.Route != w.route || o.Input != w.input || string(o.Data) != w.data {
			t.Errorf("output %d = {%v %q %d %q}, want %+v", i, o.Kind, o.Route, o.Input, o.Data, w)
		}
		if o.Event != &evs[o.Input] || o.Module != "hostile" {
			t.Errorf("output %d: Event/Module not set", i)
		}
		if string(o.Key) != fmt.Sprintf("k%d", w.input) {
			t.Errorf("output %d key %q", i, o.Key)
		}
	}
	var ge *GuestError
	if !errors.As(c.out[3].Err, &ge) || ge.Message != "bad event" {
		t.Errorf("dead letter err = %v, want guest error \"bad event\"", c.out[3].Err)
	}
	st := m.Stats()
	if st.EventsIn != 5 || st.Forwarded != 3 || st.Emitted != 1 || st.Dropped != 1 || st.DeadLettered != 1 || st.Errors != 1 || st.Calls != 1 {
		t.Errorf("stats %+v", st)
	}
}

// TestHostileIsolation: whatever one event does to the module, the other
// events of the batch are processed and the poison event is dead-lettered
// with the right reason.
func TestHostileIsolation(t *testing.T) {
	cases := []struct {
		poison  string
		wantErr error
		crash   bool
	}{
		{"T", ErrTrap, true},
		{"L", ErrTimeout, true},
		{"O", ErrTrap, true},
		{"B", ErrMalformedOutput, true},
		{"X", ErrGuestFailed, false},
		{"H", ErrOutputOverflow, false},
		{"U", ErrMalformedOutput, true},
	}
	for _, tc := range cases {
		t.Run(tc.poison, func(t *testing.T) {
			m := loadModule(t, hostileWasm, `name = "hostile"
timeout = "100ms"
memory_limit_pages = 16
max_batch_events = 64`)
			datas := make([]string, 20)
			for i := range datas {
				datas[i] = fmt.Sprintf("ok%d", i)
			}
			datas[3], datas[17] = tc.poison+"1", tc.poison+"2"
			evs := events(datas...)
			var c collector
			if err := m.Process(context.Background(), evs, c.emit); err != nil {
				t.Fatal(err)
			}
			var fwd []int
			var dead []Output
			for _, o := range c.out {
				switch o.Kind {
				case OutputForward:
					fwd = append(fwd, o.Input)
				case OutputDeadLetter:
					dead = append(dead, o)
				default:
					t.Errorf("unexpected output %+v", o)
				}
			}
			if len(fwd) != 18 {
				t.Errorf("forwarded %d events %v, want 18", len(fwd), fwd)
			}
			for i := 1; i < len(fwd); i++ {
				if fwd[i] <= fwd[i-1] {
					t.Errorf("forwards out of order: %v", fwd)
				}
			}
			if len(dead) != 2 || dead[0].Input != 3 || dead[1].Input != 17 {
				t.Fatalf("dead letters %+v, want inputs 3 and 17", dead)
			}
			for _, d := range dead {
				if !errors.Is(d.Err, tc.wantErr) {
					t.Errorf("dead letter reason %v, want %v", d.Err, tc.wantErr)
				}
			}
			st := m.Stats()
			if st.Quarantined || st.State != "running" {
				t.Errorf("state %s after 2 poison events", st.State)
			}
			if tc.crash && st.Restarts == 0 {
				t.Errorf("no instance restart recorded: %+v", st)
			}
			// The module still works afterwards.
			c = collector{}
			if err := m.Process(context.Background(), events("x", "y"), c.emit); err != nil || c.kinds()[OutputForward] != 2 {
				t.Errorf("after poison: err %v outputs %+v", err, c.out)
			}
		})
	}
}

func TestQuarantine(t *testing.T) {
	m := loadModule(t, hostileWasm, `name = "hostile"
quarantine_after = 3`)
	datas := make([]string, 16)
	for i := range datas {
		datas[i] = "T"
	}
	var c collector
	if err := m.Process(context.Background(), events(datas...), c.emit); err != nil {
		t.Fatal(err)
	}
	if n := c.kinds()[OutputDeadLetter]; n != 16 {
		t.Fatalf("%d dead letters, want 16", n)
	}
	st := m.Stats()
	if !st.Quarantined || st.State != "quarantined" {
		t.Fatalf("not quarantined: %+v", st)
	}
	if !errors.Is(c.out[15].Err, ErrQuarantined) {
		t.Errorf("last dead letter reason %v, want quarantined", c.out[15].Err)
	}
	calls := st.Calls
	c = collector{}
	if err := m.Process(context.Background(), events("fine"), c.emit); err != nil {
		t.Fatal(err)
	}
	if len(c.out) != 1 || !errors.Is(c.out[0].Err, ErrQuarantined) || m.Stats().Calls != calls {
		t.Errorf("quarantined module was called or event not dead-lettered: %+v", c.out)
	}
}

func TestErrorPolicyDrop(t *testing.T) {
	m := loadModule(t, hostileWasm, `name = "hostile"
error_policy = "drop"`)
	var c collector
	if err := m.Process(context.Background(), events("a", "T", "E", "b"), c.emit); err != nil {
		t.Fatal(err)
	}
	if k := c.kinds(); k[OutputForward] != 2 || k[OutputDeadLetter] != 0 {
		t.Errorf("outputs %v", k)
	}
	if st := m.Stats(); st.Errors != 2 || st.Dropped != 2 {
		t.Errorf("stats %+v", st)
	}
}

func TestErrorPolicyHalt(t *testing.T) {
	m := loadModule(t, hostileWasm, `name = "hostile"
error_policy = "halt"`)
	var c collector
	err := m.Process(context.Background(), events("a", "b", "T", "c"), c.emit)
	var ee *EventError
	if !errors.As(err, &ee) || ee.Index != 2 || ee.Seq != 3 || !errors.Is(err, ErrTrap) {
		t.Fatalf("err = %v, want EventError at index 2 wrapping a trap", err)
	}
	if k := c.kinds(); k[OutputForward] != 2 {
		t.Errorf("events before the poison not forwarded: %v", k)
	}
	if err := m.Process(context.Background(), events("d"), c.emit); !errors.As(err, &ee) {
		t.Errorf("halted module accepted a batch: %v", err)
	}
	if st := m.Stats(); st.State != "halted" {
		t.Errorf("state %s", st.State)
	}
}

func TestBatchLimits(t *testing.T) {
	m := loadModule(t, hostileWasm, `name = "hostile"
max_batch_events = 4`)
	var c collector
	evs := events("1", "2", "3", "4", "5", "6", "7", "8", "9", "10")
	evs[5].Data = make([]byte, 70000) // larger than the module's 64 KiB input buffer
	if err := m.Process(context.Background(), evs, c.emit); err != nil {
		t.Fatal(err)
	}
	if k := c.kinds(); k[OutputForward] != 9 || k[OutputDeadLetter] != 1 {
		t.Errorf("outputs %v", k)
	}
	for _, o := range c.out {
		if o.Kind == OutputDeadLetter && (o.Input != 5 || !errors.Is(o.Err, ErrEventTooLarge)) {
			t.Errorf("dead letter %+v", o)
		}
	}
	if st := m.Stats(); st.Calls != 3 {
		t.Errorf("%d calls, want 3 (4+1 events, oversize event, 4 events)", st.Calls)
	}
}

func TestConcurrentInstances(t *testing.T) {
	m := loadModule(t, hostileWasm, `name = "hostile"
instances = 2`)
	var wg sync.WaitGroup
	var mu sync.Mutex
	total := 0
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 25 {
				n := 0
				evs := events(fmt.Sprintf("g%d-%d", g, i), "x", "y")
				if err := m.Process(context.Background(), evs, func(o Output) {
					if o.Kind == OutputForward && o.Event == &evs[o.Input] {
						n++
					}
				}); err != nil {
					t.Error(err)
				}
				mu.Lock()
				total += n
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if total != 300 {
		t.Errorf("%d forwards, want 300", total)
	}
	if st := m.Stats(); st.Instances > 2 {
		t.Errorf("%d instances, limit 2", st.Instances)
	}
}

func TestContextCanceled(t *testing.T) {
	m := loadModule(t, hostileWasm, `name = "hostile"
timeout = "10s"`)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Process(ctx, events("a", "L"), func(Output) {}) }()
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	if st := m.Stats(); st.DeadLettered != 0 || st.Quarantined {
		t.Errorf("cancellation was treated as a module failure: %+v", st)
	}
}

func TestLoadErrors(t *testing.T) {
	cases := []struct {
		name, wasm, manifest, want string
		bytes                      []byte
	}{
		{"unknown import", "testdata/badimport.wasm", `name = "badimport"`, "env.launch_missiles", nil},
		{"abi version", "testdata/badversion.wasm", `name = "badversion"`, "bb_abi_version returned 2", nil},
		{"undeclared capability", "../modules/wat-counter.wasm", `name = "wat-counter"`, `capability "metrics"`, nil},
		{"not wasm", "", `name = "x"`, "not a WebAssembly binary", []byte("#!/bin/sh\necho hi\n")},
		{"half written", hostileWasm, `name = "hostile"`, "compile", nil},
		{"command not reactor", "testdata/command.wasm", `name = "command"`, "exports _start", nil},
		{"endless init", "testdata/initloop.wasm", "name = \"initloop\"\ninit_timeout = \"200ms\"", "bb_init: call timed out after 200ms", nil},
		{"endless start section", "testdata/startloop.wasm", "name = \"startloop\"\ninit_timeout = \"200ms\"", "__bb_start: call timed out after 200ms", nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			man, err := ParseManifest([]byte(tc.manifest), "t.toml")
			if err != nil {
				t.Fatal(err)
			}
			wasm := tc.bytes
			if tc.wasm != "" {
				wasm = mustRead(t, tc.wasm)
			}
			if tc.name == "half written" {
				wasm = wasm[:len(wasm)/2]
			}
			m, err := testHost(t).Load(context.Background(), man, wasm)
			if err == nil {
				_ = m.Close(context.Background(), nil)
				t.Fatal("loaded")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not mention %q", err, tc.want)
			}
		})
	}
}

func TestWatCounter(t *testing.T) {
	m := loadModule(t, "../modules/wat-counter.wasm", `name = "wat-counter"
capabilities = ["metrics"]`)
	var c collector
	// Guest counters belong to the module name on the (shared) host and
	// survive reloads, so compare against the value before this test.
	before := m.Stats().Counters["events"]
	for range 3 {
		if err := m.Process(context.Background(), events("a", "b"), c.emit); err != nil {
			t.Fatal(err)
		}
	}
	st := m.Stats()
	if st.Counters["events"]-before != 6 || st.Forwarded != 6 {
		t.Errorf("stats %+v (events counter was %d before)", st, before)
	}
}

// TestEndlessLoopsAreBounded: a module that loops on every event costs at
// most quarantine_after timeouts per batch, then is quarantined.
func TestEndlessLoopsAreBounded(t *testing.T) {
	m := loadModule(t, hostileWasm, `name = "hostile"
timeout = "50ms"
quarantine_after = 3`)
	datas := make([]string, 64)
	for i := range datas {
		datas[i] = "L"
	}
	var c collector
	if err := m.Process(context.Background(), events(datas...), c.emit); err != nil {
		t.Fatal(err)
	}
	st := m.Stats()
	if !st.Quarantined || c.kinds()[OutputDeadLetter] != 64 {
		t.Fatalf("quarantined %v, %d dead letters", st.Quarantined, c.kinds()[OutputDeadLetter])
	}
	// log2(64) calls to isolate the first event, then one per event until 3.
	if st.Timeouts > 12 {
		t.Errorf("%d timed-out calls for one batch; want the bisection bounded by the quarantine", st.Timeouts)
	}
}

// TestQuarantinedModuleWithLiveInstanceIsNotCalled: a pooled instance that
// survived does not let a quarantined module run.
func TestQuarantinedModuleWithLiveInstanceIsNotCalled(t *testing.T) {
	m := loadModule(t, hostileWasm, `name = "hostile"`)
	if err := m.Process(context.Background(), events("a"), func(Output) {}); err != nil {
		t.Fatal(err)
	}
	m.mu.Lock()
	m.quarantined = true // as if another instance had crashed it into quarantine
	m.mu.Unlock()
	calls := m.Stats().Calls
	var c collector
	if err := m.Process(context.Background(), events("b"), c.emit); err != nil {
		t.Fatal(err)
	}
	if m.Stats().Calls != calls || len(c.out) != 1 || !errors.Is(c.out[0].Err, ErrQuarantined) {
		t.Errorf("quarantined module called: calls %d -> %d, outputs %+v", calls, m.Stats().Calls, c.out)
	}
}

func TestCheckBuffers(t *testing.T) {
	const mem = 4 * 65536
	cases := []struct {
		name                         string
		inPtr, inCap, outPtr, outCap uint32
		want                         string
	}{
		{"ok", 64, 1024, 2048, 1024, ""},
		{"unaligned", 60, 1024, 2048, 1024, "aligned"},
		{"small", 64, 512, 2048, 1024, "at least 1024"},
		{"outside", 64, 1024, mem - 512, 1024, "outside memory"},
		{"overflowing", 64, 1024, 0xFFFFFC00, 0x800, "outside memory"},
		{"overlap", 64, 4096, 2048, 1024, "overlap"},
	}
	for _, tc := range cases {
		err := checkBuffers(mem, tc.inPtr, tc.inCap, tc.outPtr, tc.outCap)
		if (err == nil) != (tc.want == "") || (err != nil && !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
	}
}

func TestMemoryLimitBelowModuleMinimum(t *testing.T) {
	_, err := tryLoad(t, hostileWasm, "name = \"hostile\"\nmemory_limit_pages = 2")
	if err == nil {
		t.Fatal("module needing 3 pages loaded under a 2-page limit")
	}
	t.Log(err)
}
