//go:build wasip1

// Command enricher is a BadBatch handler module that uses every host
// capability: it counts events per key in the host's kv store (kv), stamps
// them with the host clock (clock), counts what it did (metrics) and logs
// (log). For each input it emits
//
//	{"key":KEY,"count":N,"enriched_at":UNIX_NS,"event":DATA}
//
// to the default output, where N is how many events with that key it has
// seen (kept across instance restarts and hot reloads). Inputs whose payload
// is not a JSON object are forwarded unchanged to the route named by config
// "invalid_route" (if set) or reported as errors.
package main

import (
	"encoding/binary"
	"fmt"
	"strconv"

	"github.com/badbatch/badbatch/modules/sdk"
)

type config struct {
	InvalidRoute string `json:"invalid_route"`
}

var (
	cfg      config
	invalid  sdk.Route
	hasRoute bool
	scratch  []byte
	kvKey    []byte
	countBuf [8]byte
)

func init() {
	sdk.Register(sdk.Module{
		Init: func(c *sdk.Config) error {
			if err := c.Decode(&cfg); err != nil {
				return err
			}
			if cfg.InvalidRoute != "" {
				r, ok := c.Route(cfg.InvalidRoute)
				if !ok {
					return fmt.Errorf("invalid_route %q is not a route of the manifest", cfg.InvalidRoute)
				}
				invalid, hasRoute = r, true
			}
			sdk.Log(sdk.LevelInfo, "enricher "+c.Version+" ready")
			fmt.Println("enricher: stdout works") // WASI stdout goes to the module's log
			return nil
		},
		Process: process,
	})
}

func process(ev *sdk.Event, out *sdk.Out) {
	data, key := ev.Data(), ev.Key()
	if len(data) == 0 || data[0] != '{' {
		if hasRoute {
			out.ForwardTo(invalid)
			return
		}
		out.Error("payload is not a JSON object")
		return
	}
	kvKey = append(append(kvKey[:0], "count/"...), key...)
	var n uint64
	if l, ok := sdk.KVGet(kvKey, countBuf[:]); ok && l == 8 {
		n = binary.LittleEndian.Uint64(countBuf[:])
	}
	n++
	binary.LittleEndian.PutUint64(countBuf[:], n)
	if !sdk.KVSet(kvKey, countBuf[:]) {
		sdk.Log(sdk.LevelWarn, "kv store refused a key")
	}
	scratch = append(scratch[:0], `{"key":`...)
	scratch = strconv.AppendQuote(scratch, string(key))
	scratch = append(scratch, `,"count":`...)
	scratch = strconv.AppendUint(scratch, n, 10)
	scratch = append(scratch, `,"enriched_at":`...)
	scratch = strconv.AppendInt(scratch, sdk.Now(), 10)
	scratch = append(scratch, `,"event":`...)
	scratch = append(scratch, data...)
	scratch = append(scratch, '}')
	out.Emit(scratch)
	sdk.CounterAdd("enriched", 1)
}

func main() {}
