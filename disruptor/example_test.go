package disruptor_test

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/badbatch/badbatch/disruptor"
)

// Trade is an example event: preallocated once per slot and reused.
type Trade struct {
	ID    int64
	Price int64
	Total int64 // written by a later stage
}

func newTrade() Trade { return Trade{} }

func shutdown(d *disruptor.Disruptor[Trade]) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := d.Shutdown(ctx); err != nil {
		fmt.Println("shutdown:", err)
	}
}

// One producer and one consumer: claim a slot, fill it in place, publish.
func Example_singleProducer() {
	d, err := disruptor.New(newTrade, 1024,
		disruptor.WithProducerType(disruptor.SingleProducer),
		disruptor.WithWaitStrategy(disruptor.NewBlockingWaitStrategy()))
	if err != nil {
		panic(err)
	}
	var sum int64
	d.HandleEventsWith(disruptor.Handler(func(t *Trade, seq int64, endOfBatch bool) error {
		sum += t.Price
		return nil
	}))
	if err := d.Start(); err != nil {
		panic(err)
	}
	rb := d.RingBuffer()
	for i := int64(1); i <= 100; i++ {
		seq, err := rb.Next()
		if err != nil {
			panic(err)
		}
		t := rb.Get(seq)
		t.ID, t.Price = i, i*10
		rb.Publish(seq)
	}
	shutdown(d) // drains: every published event is handled first
	fmt.Println("sum:", sum)
	// Output: sum: 50500
}

// Several goroutines publish into a multi-producer ring with a translator
// closure; batches of events are claimed and published together.
func Example_multiProducer() {
	d, _ := disruptor.New(newTrade, 256, disruptor.WithProducerType(disruptor.MultiProducer))
	var count int64
	d.HandleEventsWith(disruptor.Handler(func(*Trade, int64, bool) error { count++; return nil }))
	_ = d.Start()
	var wg sync.WaitGroup
	for p := 0; p < 4; p++ {
		wg.Add(1)
		go func(p int64) {
			defer wg.Done()
			for i := int64(0); i < 250; i++ {
				_ = d.RingBuffer().PublishEvent(func(t *Trade, seq int64) { t.ID = p*1000 + i })
			}
			_ = d.RingBuffer().PublishEvents(10, func(t *Trade, seq int64) { t.ID = -seq })
		}(int64(p))
	}
	wg.Wait()
	shutdown(d)
	fmt.Println("events:", count)
	// Output: events: 1040
}

// A pipeline: each stage sees an event only after the previous one.
func Example_pipeline() {
	d, _ := disruptor.New(newTrade, 64)
	price := disruptor.Handler(func(t *Trade, _ int64, _ bool) error { t.Price = t.ID * 2; return nil })
	total := disruptor.Handler(func(t *Trade, _ int64, _ bool) error { t.Total = t.Price + 1; return nil })
	var last int64
	report := disruptor.Handler(func(t *Trade, _ int64, _ bool) error { last = t.Total; return nil })
	d.HandleEventsWith(price).Then(total).Then(report)
	_ = d.Start()
	for i := int64(1); i <= 5; i++ {
		_ = d.RingBuffer().PublishEvent(func(t *Trade, _ int64) { t.ID = i })
	}
	shutdown(d)
	fmt.Println("last total:", last)
	// Output: last total: 11
}

// The diamond: two handlers run in parallel on every event, a third joins
// them and sees each event after both.
func Example_diamond() {
	d, _ := disruptor.New(newTrade, 64)
	var journalled, replicated, joined int64
	journal := disruptor.Handler(func(*Trade, int64, bool) error { journalled++; return nil })
	replicate := disruptor.Handler(func(*Trade, int64, bool) error { replicated++; return nil })
	business := disruptor.Handler(func(*Trade, int64, bool) error { joined++; return nil })
	d.HandleEventsWith(journal, replicate)
	if err := d.After(journal, replicate).HandleEventsWith(business).Err(); err != nil {
		panic(err)
	}
	_ = d.Start()
	_ = d.RingBuffer().PublishEvents(32, func(t *Trade, seq int64) { t.ID = seq })
	shutdown(d)
	fmt.Println(journalled, replicated, joined)
	// Output: 32 32 32
}

// An EventPoller consumes on the caller's goroutine, when it chooses.
func Example_poller() {
	rb, _ := disruptor.NewRingBuffer(16, newTrade, disruptor.SingleProducer, nil)
	poller := rb.NewPoller()
	defer poller.Close()
	for i := int64(1); i <= 3; i++ {
		_ = rb.PublishEvent(func(t *Trade, _ int64) { t.Price = i * 100 })
	}
	state, _ := poller.Poll(func(t *Trade, seq int64, endOfBatch bool) (bool, error) {
		fmt.Println(seq, t.Price, endOfBatch)
		return true, nil
	})
	fmt.Println(state)
	state, _ = poller.Poll(func(*Trade, int64, bool) (bool, error) { return true, nil })
	fmt.Println(state)
	// Output:
	// 0 100 false
	// 1 200 false
	// 2 300 true
	// processing
	// idle
}

// volume is a BatchHandler: the processor hands it each run of slots as a
// slice, so its loop keeps the running total in a register.
type volume struct{ total int64 }

// OnEvent is required of every handler; the processor calls OnBatch
// instead because volume implements BatchHandler.
func (v *volume) OnEvent(t *Trade, seq int64, end bool) error {
	_, err := v.OnBatch([]Trade{*t}, seq, end)
	return err
}

func (v *volume) OnBatch(trades []Trade, lo int64, end bool) (int, error) {
	total := v.total
	for i := range trades {
		total += trades[i].Price
	}
	v.total = total
	return len(trades), nil
}

// Batches on both sides: the producer claims 64 slots at a time and fills
// them through Slots (one or two slices); the consumer is a BatchHandler.
func Example_batches() {
	d, err := disruptor.New(newTrade, 256, disruptor.WithProducerType(disruptor.SingleProducer))
	if err != nil {
		panic(err)
	}
	v := &volume{}
	d.HandleEventsWith(v)
	if err := d.Start(); err != nil {
		panic(err)
	}
	rb := d.RingBuffer()
	id := int64(0)
	for range 10 {
		hi, err := rb.NextN(64)
		if err != nil {
			panic(err)
		}
		first, second := rb.Slots(hi-63, hi)
		for _, part := range [][]Trade{first, second} {
			for i := range part {
				id++
				part[i].ID, part[i].Price = id, 1
			}
		}
		rb.PublishRange(hi-63, hi)
	}
	shutdown(d)
	fmt.Println("volume:", v.total)
	// Output: volume: 640
}
