package sdk

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
)

// Config is the init document the host passes to bb_init.
type Config struct {
	ABIVersion int             `json:"abi_version"`
	Module     string          `json:"module"`
	Version    string          `json:"version"`
	Routes     []string        `json:"routes"`
	Config     json.RawMessage `json:"config"`
}

// ParseConfig decodes an init document.
func ParseConfig(doc []byte) (*Config, error) {
	var c Config
	if err := json.Unmarshal(doc, &c); err != nil {
		return nil, fmt.Errorf("sdk: init document: %w", err)
	}
	return &c, nil
}

// Route returns the route with the given manifest name.
func (c *Config) Route(name string) (Route, bool) {
	for i, r := range c.Routes {
		if r == name {
			return Route(i + 1), true
		}
	}
	return 0, false
}

// Decode decodes the manifest's [config] table into v.
func (c *Config) Decode(v any) error {
	if len(c.Config) == 0 {
		return nil
	}
	if err := json.Unmarshal(c.Config, v); err != nil {
		return fmt.Errorf("sdk: module config: %w", err)
	}
	return nil
}

// Module is what a handler module registers. Process is required.
type Module struct {
	// Init receives the init document once per instance; an error refuses
	// to start the instance.
	Init func(cfg *Config) error
	// Process handles one input event; it writes the event's outputs to out.
	Process func(ev *Event, out *Out)
	// Timer runs every timer_interval (if the manifest sets one); it may
	// only Emit.
	Timer func(nowUnixNano int64, out *Out)
	// Flush runs before the instance is retired; it may only Emit.
	Flush func(out *Out)
}

// ProcessBatch runs h over the n input records in in, writing outputs to
// out, and returns what bb_process must return: the output length or a
// negative ABI error code. A panic in h fails the batch (ErrFailed).
func ProcessBatch(h func(*Event, *Out), in []byte, n int, out *Out) (ret int32) {
	defer func() {
		if recover() != nil {
			ret = ErrFailed
		}
	}()
	out.Reset()
	var ev Event
	p := 0
	for i := 0; i < n; i++ {
		// Everything here is inlined: a call per event costs several
		// nanoseconds in Go's wasm code.
		if len(in)-p < InputHeaderSize {
			return ErrFailed
		}
		size := int(binary.LittleEndian.Uint32(in[p:]))
		if size < InputHeaderSize || size > len(in)-p {
			return ErrFailed
		}
		// ev.set, by hand (it is too big for the inliner).
		rec := in[p : p+size : p+size]
		kl := uint64(binary.LittleEndian.Uint32(rec[24:]))
		pl := uint64(binary.LittleEndian.Uint32(rec[28:]))
		dl := uint64(binary.LittleEndian.Uint32(rec[32:]))
		if InputHeaderSize+kl+pl+dl > uint64(size) {
			return ErrFailed
		}
		ev.rec = rec
		ev.keyEnd = InputHeaderSize + int(kl)
		ev.prodEnd = ev.keyEnd + int(pl)
		ev.dataEnd = ev.prodEnd + int(dl)
		out.Begin(uint32(i))
		h(&ev, out)
		if out.Overflowed() {
			return ErrOutFull
		}
		p += size
	}
	return int32(out.Len())
}

// RunNoInput runs a timer or flush callback and returns the output length or
// a negative ABI error code.
func RunNoInput(f func(*Out), out *Out) (ret int32) {
	defer func() {
		if recover() != nil {
			ret = ErrFailed
		}
	}()
	out.Reset()
	out.Begin(NoInput)
	if f != nil {
		f(out)
	}
	if out.Overflowed() {
		return ErrOutFull
	}
	return int32(out.Len())
}
