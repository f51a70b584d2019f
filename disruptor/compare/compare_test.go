// Package compare benchmarks package disruptor against the Go queues that
// were available from the Go module proxy on 2026-11-27 and do the same
// job: Workiva's lock-free RingBuffer (go-datastructures/queue) and
// ByteDance's LSCQ (gopkg/collection/lscq), with a buffered channel as the
// baseline of every round. It is a separate module so that the library
// keeps no dependency beyond the standard library, x/sys and cpuid; run it
// from this directory:
//
//	go test -run '^$' -bench . -benchtime 2000000x -benchmem
//
// Every case moves the int64s 0..n-1 from the producers to one consumer,
// which sums them; the sum is checked at the end.
package compare

import (
	"sync"
	"sync/atomic"
	"testing"

	"github.com/Workiva/go-datastructures/queue"
	"github.com/badbatch/badbatch/disruptor"
	"github.com/bytedance/gopkg/collection/lscq"
)

const ringSize = 1 << 16

func checkSum(b *testing.B, got, n int64) {
	b.Helper()
	if want := n * (n - 1) / 2; got != want {
		b.Fatalf("consumer summed %d, want %d", got, want)
	}
}

func report(b *testing.B, n int64) {
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "events/s")
}

// produce runs producers goroutines that share the values 0..n-1 and calls
// put for each; it returns when all have finished.
func produce(producers int, n int64, put func(v int64)) {
	var wg sync.WaitGroup
	per := n / int64(producers)
	for p := range producers {
		lo, hi := int64(p)*per, int64(p+1)*per
		if p == producers-1 {
			hi = n
		}
		wg.Go(func() {
			for v := lo; v < hi; v++ {
				put(v)
			}
		})
	}
	wg.Wait()
}

type payload struct{ v int64 }

type summer struct {
	acc int64
	sum atomic.Int64
}

func (s *summer) OnEvent(e *payload, _ int64, end bool) error {
	s.acc += e.v
	if end {
		s.sum.Store(s.acc)
	}
	return nil
}

func runChannel(b *testing.B, producers int) {
	n := int64(b.N)
	ch := make(chan int64, ringSize)
	done := make(chan int64)
	go func() {
		var acc int64
		for range n {
			acc += <-ch
		}
		done <- acc
	}()
	b.ResetTimer()
	produce(producers, n, func(v int64) { ch <- v })
	sum := <-done
	b.StopTimer()
	checkSum(b, sum, n)
	report(b, n)
}

func runDisruptor(b *testing.B, producers int, ws disruptor.WaitStrategy) {
	n := int64(b.N)
	pt := disruptor.SingleProducer
	if producers > 1 {
		pt = disruptor.MultiProducer
	}
	d, err := disruptor.New(func() payload { return payload{} }, ringSize,
		disruptor.WithProducerType(pt), disruptor.WithWaitStrategy(ws))
	if err != nil {
		b.Fatal(err)
	}
	h := &summer{}
	d.HandleEventsWith(h)
	if err := d.Start(); err != nil {
		b.Fatal(err)
	}
	defer d.Halt()
	rb := d.RingBuffer()
	b.ResetTimer()
	produce(producers, n, func(v int64) {
		seq, err := rb.Next()
		if err != nil {
			panic(err)
		}
		rb.Get(seq).v = v
		rb.Publish(seq)
	})
	for d.SequenceOf(h).Get() < n-1 {
	}
	b.StopTimer()
	checkSum(b, h.sum.Load(), n)
	report(b, n)
}

func runWorkiva(b *testing.B, producers int) {
	n := int64(b.N)
	rb := queue.NewRingBuffer(ringSize)
	done := make(chan int64)
	go func() {
		var acc int64
		for range n {
			v, err := rb.Get()
			if err != nil {
				panic(err)
			}
			acc += v.(int64)
		}
		done <- acc
	}()
	b.ResetTimer()
	produce(producers, n, func(v int64) {
		if err := rb.Put(v); err != nil {
			panic(err)
		}
	})
	sum := <-done
	b.StopTimer()
	checkSum(b, sum, n)
	report(b, n)
}

func runLSCQ(b *testing.B, producers int) {
	n := int64(b.N)
	q := lscq.NewUint64()
	done := make(chan int64)
	go func() {
		var acc int64
		for got := int64(0); got < n; {
			if v, ok := q.Dequeue(); ok {
				acc += int64(v)
				got++
			}
		}
		done <- acc
	}()
	b.ResetTimer()
	produce(producers, n, func(v int64) { q.Enqueue(uint64(v)) })
	sum := <-done
	b.StopTimer()
	checkSum(b, sum, n)
	report(b, n)
}

func benchAll(b *testing.B, producers int) {
	b.Run("channel", func(b *testing.B) { runChannel(b, producers) })
	b.Run("badbatch-yielding", func(b *testing.B) { runDisruptor(b, producers, disruptor.NewYieldingWaitStrategy()) })
	b.Run("badbatch-blocking", func(b *testing.B) { runDisruptor(b, producers, disruptor.NewBlockingWaitStrategy()) })
	b.Run("workiva-ringbuffer", func(b *testing.B) { runWorkiva(b, producers) })
	b.Run("bytedance-lscq", func(b *testing.B) { runLSCQ(b, producers) })
}

// BenchmarkOneProducer: one producer, one consumer, one event per call.
func BenchmarkOneProducer(b *testing.B) { benchAll(b, 1) }

// BenchmarkThreeProducers: three producers, one consumer.
func BenchmarkThreeProducers(b *testing.B) { benchAll(b, 3) }
