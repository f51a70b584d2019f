//go:build wasip1

// Command aggregator is a BadBatch handler module that counts events per key
// and, on every timer tick (manifest timer_interval), emits one event per key
// seen since the last tick: {"key":KEY,"count":N,"sum":S,"avg":A} where S sums
// the numeric top-level field config "field" (if set). Remaining counts are
// emitted on flush (hot swap, shutdown). Inputs themselves are dropped.
package main

import (
	"strconv"

	"github.com/badbatch/badbatch/modules/sdk"
)

type config struct {
	Field string `json:"field"`
}

type agg struct {
	count int64
	sum   float64
}

var (
	cfg     config
	window  = map[string]*agg{}
	order   []string
	scratch []byte
)

func init() {
	sdk.Register(sdk.Module{
		Init:    func(c *sdk.Config) error { return c.Decode(&cfg) },
		Process: process,
		Timer:   func(_ int64, out *sdk.Out) { emit(out) },
		Flush:   emit,
	})
}

func process(ev *sdk.Event, out *sdk.Out) {
	a, ok := window[string(ev.Key())]
	if !ok {
		a = &agg{}
		k := string(ev.Key())
		window[k] = a
		order = append(order, k)
	}
	a.count++
	if cfg.Field != "" {
		if raw, ok := sdk.Field(ev.Data(), cfg.Field); ok {
			if f, err := strconv.ParseFloat(string(raw), 64); err == nil {
				a.sum += f
			}
		}
	}
	out.Drop()
}

func emit(out *sdk.Out) {
	for _, k := range order {
		a := window[k]
		scratch = append(scratch[:0], `{"key":`...)
		scratch = strconv.AppendQuote(scratch, k)
		scratch = append(scratch, `,"count":`...)
		scratch = strconv.AppendInt(scratch, a.count, 10)
		scratch = append(scratch, `,"sum":`...)
		scratch = strconv.AppendFloat(scratch, a.sum, 'g', -1, 64)
		scratch = append(scratch, `,"avg":`...)
		scratch = strconv.AppendFloat(scratch, a.sum/float64(a.count), 'g', -1, 64)
		scratch = append(scratch, '}')
		out.EmitKeyTo(sdk.Default, []byte(k), scratch)
	}
	clear(window)
	order = order[:0]
}

func main() {}
