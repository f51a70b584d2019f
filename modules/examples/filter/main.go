//go:build wasip1

// Command filter is a BadBatch handler module that drops events whose JSON
// payload has a top-level string field (config "field") equal to one of the
// configured values (config "drop"); every other event is forwarded.
// Payloads that are not JSON objects are forwarded unless config
// "drop_invalid" is true.
package main

import (
	"errors"
	"fmt"

	"github.com/badbatch/badbatch/modules/sdk"
)

type config struct {
	Field       string   `json:"field"`
	Drop        []string `json:"drop"`
	DropInvalid bool     `json:"drop_invalid"`
}

var cfg config

// dropLen[n] says some drop value is n bytes long (n < len(dropLen)): most
// values are then rejected without comparing bytes.
var dropLen [64]bool

func init() {
	sdk.Register(sdk.Module{
		Init: func(c *sdk.Config) error {
			if err := c.Decode(&cfg); err != nil {
				return err
			}
			if cfg.Field == "" {
				return errors.New(`config "field" is required`)
			}
			for _, d := range cfg.Drop {
				if len(d) >= len(dropLen) {
					return fmt.Errorf("drop value %q is longer than %d bytes", d, len(dropLen)-1)
				}
				dropLen[len(d)] = true
			}
			return nil
		},
		Process: process,
	})
}

// process makes one call per event (Field); everything else is inlined,
// since each call costs several nanoseconds in Go's wasm code.
func process(ev *sdk.Event, out *sdk.Out) {
	v, ok := sdk.Field(ev.Data(), cfg.Field)
	if !ok {
		if cfg.DropInvalid {
			out.Drop()
			return
		}
		out.Forward()
		return
	}
	if len(v) >= 2 && v[0] == '"' && len(v)-2 < len(dropLen) && dropLen[len(v)-2] {
		v = v[1 : len(v)-1]
		for _, d := range cfg.Drop {
			if sdk.Equal(v, d) {
				out.Drop()
				return
			}
		}
	}
	out.Forward()
}

func main() {}
