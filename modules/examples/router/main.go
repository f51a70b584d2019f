//go:build wasip1

// Command router is a BadBatch handler module that routes each event by a
// top-level JSON string field: config "field" names the field, config
// "routes" maps field values to route names declared in the manifest.
// A matched event is forwarded to its route and, if config "enrich" is true,
// an enriched copy {"routed_by":"router","route":NAME,"event":DATA} keyed by
// the field value is emitted to the default output. Unmatched events are
// forwarded to the default output; events whose payload has no such field
// are reported as errors (and dead-lettered by the host's default policy).
package main

import (
	"fmt"

	"github.com/badbatch/badbatch/modules/sdk"
)

type config struct {
	Field  string            `json:"field"`
	Routes map[string]string `json:"routes"`
	Enrich bool              `json:"enrich"`
}

type rule struct {
	value, name string
	route       sdk.Route
}

var (
	cfg     config
	rules   []rule
	scratch []byte // reused enrichment buffer: no allocation per event once grown
)

func init() {
	sdk.Register(sdk.Module{
		Init: func(c *sdk.Config) error {
			if err := c.Decode(&cfg); err != nil {
				return err
			}
			if cfg.Field == "" {
				return fmt.Errorf(`config "field" is required`)
			}
			for value, name := range cfg.Routes {
				r, ok := c.Route(name)
				if !ok {
					return fmt.Errorf("config routes: %q is not a route of the manifest %v", name, c.Routes)
				}
				rules = append(rules, rule{value: value, name: name, route: r})
			}
			return nil
		},
		Process: process,
	})
}

func process(ev *sdk.Event, out *sdk.Out) {
	v, ok := sdk.FieldString(ev.Data(), cfg.Field)
	if !ok {
		out.Error("no string field " + cfg.Field)
		return
	}
	for i := range rules {
		r := &rules[i]
		if string(v) != r.value {
			continue
		}
		out.ForwardTo(r.route)
		if cfg.Enrich {
			scratch = append(scratch[:0], `{"routed_by":"router","route":"`...)
			scratch = append(scratch, r.name...)
			scratch = append(scratch, `","event":`...)
			scratch = append(scratch, ev.Data()...)
			scratch = append(scratch, '}')
			out.EmitKeyTo(sdk.Default, v, scratch)
		}
		return
	}
	out.Forward()
}

func main() {}
