//go:build wasip1

// Command filter is a BadBatch handler module that drops events whose JSON
// payload has a top-level string field (config "field") equal to one of the
// configured values (config "drop"); every other event is forwarded.
// Payloads that are not JSON objects are forwarded unless config
// "drop_invalid" is true.
package main

import (
	"errors"

	"github.com/badbatch/badbatch/modules/sdk"
)

type config struct {
	Field       string   `json:"field"`
	Drop        []string `json:"drop"`
	DropInvalid bool     `json:"drop_invalid"`
}

var cfg config

func init() {
	sdk.Register(sdk.Module{
		Init: func(c *sdk.Config) error {
			if err := c.Decode(&cfg); err != nil {
				return err
			}
			if cfg.Field == "" {
				return errors.New(`config "field" is required`)
			}
			return nil
		},
		Process: process,
	})
}

func process(ev *sdk.Event, out *sdk.Out) {
	v, ok := sdk.FieldString(ev.Data(), cfg.Field)
	if !ok {
		if _, isField := sdk.Field(ev.Data(), cfg.Field); !isField && cfg.DropInvalid {
			out.Drop()
			return
		}
		out.Forward()
		return
	}
	for _, d := range cfg.Drop {
		if string(v) == d {
			out.Drop()
			return
		}
	}
	out.Forward()
}

func main() {}
