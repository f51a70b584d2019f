package pipeline

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/badbatch/badbatch/appliance/event"
	"github.com/badbatch/badbatch/disruptor"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func newPipeline(t *testing.T, size int, stages ...[]Stage) *Pipeline {
	t.Helper()
	return newPipelineWindow(t, size, 8, stages...)
}

func newPipelineWindow(t *testing.T, size, window int, stages ...[]Stage) *Pipeline {
	t.Helper()
	p, err := New(Options{BufferSize: size, WaitStrategy: "blocking", MaxEventSize: 64, IdempotencyWindow: window, MaxProducers: 2, Stages: stages})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = p.Shutdown(ctx)
	})
	return p
}

func raw(data string, producer string, seq int64) event.Raw {
	r := event.Raw{Data: []byte(data)}
	if producer != "" {
		r.Producer, r.HasProducer = []byte(producer), true
	}
	if seq >= 0 {
		r.Sequence, r.HasSequence = seq, true
	}
	return r
}

func TestPublishReadIdempotent(t *testing.T) {
	p := newPipeline(t, 16)
	evs := []event.Raw{raw(`1`, "a", 1), raw(`2`, "a", 2), raw(`3`, "", -1), raw(`4`, "a", 1)}
	res := make([]Result, len(evs))
	if err := p.Publish(context.Background(), evs, nil, time.Second, res); err != nil {
		t.Fatal(err)
	}
	want := []Result{{0, Accepted}, {1, Accepted}, {2, Accepted}, {0, Duplicate}}
	for i := range want {
		if res[i] != want[i] {
			t.Errorf("result %d = %+v, want %+v", i, res[i], want[i])
		}
	}
	// Retry with the header default producer: same answers, nothing stored.
	retry := []event.Raw{raw(`2`, "", 2), raw(`1`, "", 1)}
	res2 := make([]Result, 2)
	if err := p.Publish(context.Background(), retry, []byte("a"), time.Second, res2); err != nil {
		t.Fatal(err)
	}
	if res2[0] != (Result{1, Duplicate}) || res2[1] != (Result{0, Duplicate}) {
		t.Errorf("retry results = %+v", res2)
	}
	var got []string
	var c event.Copy
	rg, err := p.Read(0, 100, 10, &c, func(c *event.Copy) error {
		got = append(got, fmt.Sprintf("%d:%s:%s", c.Seq, c.Producer, c.Data))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(got) != "[0:a:1 1:a:2 2::3]" || rg.Next != 3 {
		t.Errorf("Read = %v next %d", got, rg.Next)
	}
	if _, err := p.Read(5, 2, 10, &c, nil); !errors.Is(err, ErrBadRange) {
		t.Errorf("Read(5,2) = %v, want ErrBadRange", err)
	}
	st := p.Status()
	if st.EventsIn != 3 || st.Duplicates != 3 || st.Capacity != 16 || st.Cursor != 2 {
		t.Errorf("status = %+v", st)
	}
}

func TestWindowAndLRU(t *testing.T) {
	p := newPipeline(t, 64)
	pub := func(pr string, seq int64) Result {
		res := make([]Result, 1)
		if err := p.Publish(context.Background(), []event.Raw{raw(`0`, pr, seq)}, nil, time.Second, res); err != nil {
			t.Fatal(err)
		}
		return res[0]
	}
	for s := int64(0); s < 20; s++ {
		pub("a", s)
	}
	if r := pub("a", 15); r.Outcome != Duplicate { // in window (8)
		t.Errorf("seq 15 = %+v, want duplicate", r)
	}
	if r := pub("a", 3); r.Outcome != Accepted { // older than window: accepted as new
		t.Errorf("seq 3 = %+v, want accepted", r)
	}
	pub("b", 0)
	pub("c", 0) // evicts the least recently used producer (a)
	if n := p.idem.size(); n != 2 {
		t.Errorf("producers tracked = %d, want 2", n)
	}
	if r := pub("a", 19); r.Outcome != Accepted {
		t.Errorf("evicted producer's seq = %+v, want accepted", r)
	}
}

// gate is a stage that blocks until released.
type gate struct{ ch chan struct{} }

func (g *gate) OnEvent(*event.Slot, int64, bool) error { <-g.ch; return nil }

func TestFullRingRejectsAfterTimeoutAndGone(t *testing.T) {
	g := &gate{ch: make(chan struct{})}
	p := newPipeline(t, 4, []Stage{{Name: "slow", Handler: g}})
	var once sync.Once
	release := func() { once.Do(func() { close(g.ch) }) }
	defer release()
	evs := make([]event.Raw, 6)
	for i := range evs {
		evs[i] = raw(`0`, "", -1)
	}
	res := make([]Result, 6)
	err := p.Publish(context.Background(), evs, nil, 50*time.Millisecond, res)
	if !errors.Is(err, ErrFull) {
		t.Fatalf("Publish on full ring = %v, want ErrFull", err)
	}
	acc := 0
	for _, r := range res {
		if r.Outcome == Accepted {
			acc++
		}
	}
	if acc != 4 || res[5].Outcome != Rejected {
		t.Errorf("results = %+v, want 4 accepted then rejected", res)
	}
	release()
	// Overwrite the first events, then they are gone.
	for i := 0; i < 3; i++ {
		if err := p.Publish(context.Background(), evs[:4], nil, 5*time.Second, res); err != nil {
			t.Fatal(err)
		}
	}
	var c event.Copy
	_, err = p.Read(0, 10, 10, &c, func(*event.Copy) error { return nil })
	var gone *GoneError
	if !errors.As(err, &gone) || gone.Earliest != 12 {
		t.Fatalf("Read(0) = %v, want GoneError earliest 12", err)
	}
}

func TestShutdownDrainsThenRejects(t *testing.T) {
	var mu sync.Mutex
	seen := 0
	h := disruptor.Handler(func(*event.Slot, int64, bool) error {
		time.Sleep(time.Millisecond)
		mu.Lock()
		seen++
		mu.Unlock()
		return nil
	})
	p, err := New(Options{BufferSize: 64, WaitStrategy: "blocking", MaxEventSize: 16, IdempotencyWindow: 4, MaxProducers: 4, Stages: [][]Stage{{{Name: "sleepy", Handler: h}}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	evs := make([]event.Raw, 50)
	for i := range evs {
		evs[i] = raw(`0`, "", -1)
	}
	res := make([]Result, 50)
	if err := p.Publish(context.Background(), evs, nil, time.Second, res); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := p.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if seen != 50 || p.Pending() != 0 {
		t.Errorf("handled %d of 50, pending %d", seen, p.Pending())
	}
	if err := p.Publish(context.Background(), evs[:1], nil, time.Second, res); !errors.Is(err, ErrClosed) {
		t.Errorf("Publish after Shutdown = %v, want ErrClosed", err)
	}
}

func TestConcurrentDuplicatesStoredOnce(t *testing.T) {
	p := newPipelineWindow(t, 1024, 64)
	var wg sync.WaitGroup
	seqs := make([][]Result, 8)
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			evs := make([]event.Raw, 50)
			for i := range evs {
				evs[i] = raw(`0`, "dev", int64(i))
			}
			res := make([]Result, 50)
			if err := p.Publish(context.Background(), evs, nil, 5*time.Second, res); err != nil {
				t.Error(err)
			}
			seqs[w] = res
		}()
	}
	wg.Wait()
	if in := p.Status().EventsIn; in != 50 {
		t.Errorf("stored %d events, want 50", in)
	}
	for w := 1; w < 8; w++ {
		for i := range seqs[w] {
			if seqs[w][i].Sequence != seqs[0][i].Sequence {
				t.Fatalf("worker %d event %d got ring seq %d, worker 0 got %d", w, i, seqs[w][i].Sequence, seqs[0][i].Sequence)
			}
		}
	}
}

func TestPublishAllocs(t *testing.T) {
	p := newPipeline(t, 1024)
	evs := []event.Raw{raw(`{"a":1}`, "p", 1), raw(`2`, "", -1)}
	res := make([]Result, 2)
	seq := int64(1)
	allocs := testing.AllocsPerRun(200, func() {
		seq++
		evs[0].Sequence = seq
		if err := p.Publish(context.Background(), evs, nil, 0, res); err != nil {
			t.Fatal(err)
		}
	})
	if allocs > 0 {
		t.Errorf("Publish allocates %.1f per call (2 events, no timeout), want 0", allocs)
	}
}

func TestBaseOffsetsEverySequence(t *testing.T) {
	p, err := New(Options{BufferSize: 8, WaitStrategy: "blocking", MaxEventSize: 16, IdempotencyWindow: 4, MaxProducers: 4, Base: 100, PinCPUs: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = p.Shutdown(context.Background()) }()
	if d := p.PinDecisions(); len(d) != 1 || !strings.Contains(d[0], `wait strategy "blocking" does not spin`) {
		t.Errorf("pin decisions %q", d)
	}
	res := make([]Result, 3)
	if err := p.Publish(context.Background(), []event.Raw{raw(`1`, "a", 5), raw(`2`, "", -1), raw(`3`, "a", 5)}, nil, time.Second, res); err != nil {
		t.Fatal(err)
	}
	if res[0] != (Result{100, Accepted}) || res[1] != (Result{101, Accepted}) || res[2] != (Result{100, Duplicate}) {
		t.Errorf("results %+v", res)
	}
	var c event.Copy
	var seqs []int64
	if _, err := p.Read(100, 200, 10, &c, func(c *event.Copy) error { seqs = append(seqs, c.Seq); return nil }); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(seqs) != "[100 101]" {
		t.Errorf("read %v", seqs)
	}
	var gone *GoneError
	if _, err := p.Read(99, 200, 10, &c, func(*event.Copy) error { return nil }); !errors.As(err, &gone) || gone.Earliest != 100 {
		t.Errorf("Read(99) = %v, want gone with earliest 100", err)
	}
	if st := p.Status(); st.Cursor != 101 || st.Earliest != 100 {
		t.Errorf("status cursor %d earliest %d", st.Cursor, st.Earliest)
	}
	deadline := time.Now().Add(10 * time.Second)
	for p.Processed() != 101 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if p.Processed() != 101 {
		t.Errorf("Processed = %d", p.Processed())
	}
}
