package disruptor

import (
	"context"
	"testing"
	"time"
)

type evt struct{ v int64 }

func TestQuickSmoke(t *testing.T) {
	for _, pt := range []ProducerType{SingleProducer, MultiProducer} {
		for _, name := range WaitStrategyNames() {
			ws, _ := ParseWaitStrategy(name)
			d, err := New(func() evt { return evt{} }, 64, WithProducerType(pt), WithWaitStrategy(ws))
			if err != nil {
				t.Fatal(err)
			}
			var sum, n int64
			h := Handler(func(e *evt, seq int64, _ bool) error { sum += e.v; n++; return nil })
			d.HandleEventsWith(h)
			if err := d.Start(); err != nil {
				t.Fatal(err)
			}
			const N = 10000
			for i := int64(0); i < N; i++ {
				if err := d.RingBuffer().PublishEvent(func(e *evt, seq int64) { e.v = seq }); err != nil {
					t.Fatal(err)
				}
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			if err := d.Shutdown(ctx); err != nil {
				t.Fatal(pt, name, err)
			}
			cancel()
			if n != N || sum != N*(N-1)/2 {
				t.Fatalf("%v %s: n=%d sum=%d", pt, name, n, sum)
			}
		}
	}
}
