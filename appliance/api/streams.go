package api

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/gofiber/fiber/v2"

	"github.com/badbatch/badbatch/appliance/journal"
	"github.com/badbatch/badbatch/appliance/streams"
)

// stream finds the :name stream: an existing one, or (created on demand) a
// reserved or declared one a reader may wait on.
func (s *Server) outStream(c *fiber.Ctx) (*streams.Stream, error) {
	if s.opts.Streams == nil {
		return nil, apiErr(fiber.StatusNotFound, "no output streams on this node")
	}
	name := strings.Clone(c.Params("name"))
	if !streams.ValidName(name) {
		return nil, apiErr(fiber.StatusBadRequest, fmt.Sprintf("invalid stream name %q: want [a-z0-9][a-z0-9_-]{0,62}", name))
	}
	if st, ok := s.opts.Streams.Get(name); ok {
		return st, nil
	}
	if s.opts.StreamKnown == nil || !s.opts.StreamKnown(name) {
		return nil, apiErr(fiber.StatusNotFound, "no stream "+name+" (streams: default, dead-letter and the routes of loaded modules)")
	}
	st, err := s.opts.Streams.Ensure(name)
	if err != nil {
		if errors.Is(err, streams.ErrClosed) {
			return nil, apiErr(fiber.StatusServiceUnavailable, "node is shutting down")
		}
		return nil, fmt.Errorf("open stream: %w", err)
	}
	return st, nil
}

func (s *Server) listStreams(c *fiber.Ctx) error {
	if s.opts.Streams == nil {
		return c.JSON(fiber.Map{"streams": []streams.Info{}})
	}
	out := []streams.Info{}
	for _, st := range s.opts.Streams.All() {
		out = append(out, st.Info())
	}
	return c.JSON(fiber.Map{"streams": out})
}

// appendOutput renders one stream record as JSON. Data that is valid JSON
// is embedded as is; anything else (a module may emit any bytes) is given
// base64-encoded as data_base64.
func appendOutput(b []byte, r *streams.Record) []byte {
	b = append(b, `{"sequence":`...)
	b = strconv.AppendInt(b, r.Sequence, 10)
	b = append(b, `,"timestamp":"`...)
	b = time.Unix(0, r.Timestamp).UTC().AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","kind":`...)
	b = appendString(b, r.Kind.String())
	b = append(b, `,"module":`...)
	b = appendString(b, r.Module)
	b = append(b, `,"module_version":`...)
	b = appendString(b, r.Version)
	if r.Source >= 0 {
		b = append(b, `,"source":`...)
		b = strconv.AppendInt(b, r.Source, 10)
	}
	if r.SourceMissing {
		// A forward stored by reference whose input event is gone.
		b = append(b, `,"source_missing":true`...)
		if r.Err != "" {
			b = append(b, `,"error":`...)
			b = appendString(b, strings.ToValidUTF8(r.Err, "\uFFFD"))
		}
		return append(b, '}')
	}
	return appendPayload(b, r.Key, r.Data, r.Err)
}

// appendPayload writes ,"key":..,"data":..(,"error":..).
func appendPayload(b []byte, key, data []byte, errMsg string) []byte {
	if len(key) > 0 {
		if utf8.Valid(key) {
			b = append(b, `,"key":`...)
			b = appendString(b, key)
		} else {
			b = append(b, `,"key_base64":"`...)
			b = base64.StdEncoding.AppendEncode(b, key)
			b = append(b, '"')
		}
	}
	if json.Valid(data) {
		b = append(b, `,"data":`...)
		b = append(b, data...)
	} else {
		b = append(b, `,"data_base64":"`...)
		b = base64.StdEncoding.AppendEncode(b, data)
		b = append(b, '"')
	}
	if errMsg != "" {
		b = append(b, `,"error":`...)
		b = appendString(b, strings.ToValidUTF8(errMsg, "\uFFFD"))
	}
	return append(b, '}')
}

// readStream serves GET /api/v1/streams/{name}/events?from=&to=&limit=
// with the input stream's semantics: 400 for bad ranges, 410 (with
// earliest) for evicted ones.
func (s *Server) readStream(c *fiber.Ctx) error {
	st, err := s.outStream(c)
	if err != nil {
		return err
	}
	l := s.limits.Load()
	from, to, limit, err := parseRange(c, l.ReadLimit, st.Earliest())
	if err != nil {
		return err
	}
	b := []byte(`{"stream":`)
	b = appendString(b, st.Name())
	b = append(b, `,"events":[`...)
	n := 0
	next, err := st.Read(from, to, int(limit), func(r *streams.Record) error {
		if n > 0 {
			b = append(b, ',')
		}
		b = appendOutput(b, r)
		n++
		return nil
	})
	if err != nil {
		var gone *streams.GoneError
		if errors.As(err, &gone) {
			return apiErr(fiber.StatusGone, gone.Error(), "earliest", gone.Earliest)
		}
		return fmt.Errorf("read stream: %w", err)
	}
	if n == 0 {
		next = from
	}
	b = append(b, `],"count":`...)
	b = strconv.AppendInt(b, int64(n), 10)
	for _, kv := range []struct {
		k string
		v int64
	}{{"from", from}, {"to", to}, {"next", next}, {"earliest", st.Earliest()}, {"last", st.Durable()}} {
		b = append(b, `,"`...)
		b = append(b, kv.k...)
		b = append(b, `":`...)
		b = strconv.AppendInt(b, kv.v, 10)
	}
	b = append(b, '}')
	c.Response().Header.SetContentType(fiber.MIMEApplicationJSON)
	c.Response().SetBody(b)
	return nil
}

// tailStream serves GET /api/v1/streams/{name}/stream?from= as server-sent
// events, like the input tail: "event: output" (id = stream sequence),
// "event: gap" when retention deleted what the reader asked for, "event:
// end" at shutdown. Without from (or Last-Event-ID) it starts after the
// last readable record. It waits on the stream's durable sequence.
func (s *Server) tailStream(c *fiber.Ctx) error {
	st, err := s.outStream(c)
	if err != nil {
		return err
	}
	from, hasFrom, err := queryInt(c, "from")
	if err != nil {
		return err
	}
	if !hasFrom {
		from = st.Durable() + 1
		if id := c.Get("Last-Event-ID"); id != "" {
			if n, perr := strconv.ParseInt(id, 10, 64); perr == nil && n >= 0 {
				from = n + 1
			}
		}
	}
	batch := s.limits.Load().ReadLimit
	c.Set(fiber.HeaderContentType, "text/event-stream")
	c.Set(fiber.HeaderCacheControl, "no-cache")
	c.Set("X-Accel-Buffering", "no")
	conn := c.Context().Conn()
	writeTimeout := s.opts.WriteTimeout
	done := s.done
	c.Context().SetBodyStreamWriter(func(w *bufio.Writer) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		go func() {
			select {
			case <-done:
				cancel()
			case <-ctx.Done():
			}
		}()
		var b []byte
		next := from
		flush := func() bool {
			if writeTimeout > 0 {
				_ = conn.SetWriteDeadline(time.Now().Add(writeTimeout))
			}
			if _, err := w.Write(b); err != nil {
				return false
			}
			b = b[:0]
			return w.Flush() == nil
		}
		b = append(b, ": badbatch stream "...)
		b = append(b, st.Name()...)
		b = append(b, " from "...)
		b = strconv.AppendInt(b, next, 10)
		b = append(b, "\n\n"...)
		if !flush() {
			return
		}
		for {
			for next <= st.Durable() {
				n, err := st.Read(next, math.MaxInt64, batch, func(r *streams.Record) error {
					b = append(b, "id: "...)
					b = strconv.AppendInt(b, r.Sequence, 10)
					b = append(b, "\nevent: output\ndata: "...)
					b = appendOutput(b, r)
					b = append(b, "\n\n"...)
					return nil
				})
				var gone *streams.GoneError
				if errors.As(err, &gone) {
					b = appendSSEGap(b, next, gone.Earliest)
					next = gone.Earliest
					continue
				}
				if err != nil || n == next {
					break
				}
				next = n
				if !flush() {
					return
				}
			}
			if len(b) > 0 && !flush() {
				return
			}
			wctx, wcancel := context.WithTimeout(ctx, keepAlive)
			err := st.WaitDurable(wctx, next)
			wcancel()
			switch {
			case err == nil:
			case ctx.Err() != nil || errors.Is(err, journal.ErrClosed):
				b = append(b, "event: end\ndata: {\"reason\":\"node shutting down\"}\n\n"...)
				_ = flush()
				return
			case errors.Is(err, context.DeadlineExceeded):
				b = append(b, ": keep-alive\n\n"...)
				if !flush() {
					return
				}
			default:
				// The stream is failing: say so and check again shortly.
				b = append(b, "event: error\ndata: "...)
				b = append(b, `{"error":`...)
				b = appendString(b, err.Error())
				b = append(b, "}\n\n"...)
				if !flush() {
					return
				}
				select {
				case <-ctx.Done():
				case <-time.After(time.Second):
				}
			}
		}
	})
	return nil
}
