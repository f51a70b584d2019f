package api

import (
	"bufio"
	"errors"
	"fmt"
	"math"
	"strconv"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/badbatch/badbatch/appliance/event"
	"github.com/badbatch/badbatch/appliance/pipeline"
)

// queryInt parses an optional non-negative integer query parameter.
func queryInt(c *fiber.Ctx, name string) (int64, bool, error) {
	v := c.Query(name)
	if v == "" {
		return 0, false, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 {
		return 0, false, apiErr(fiber.StatusBadRequest, fmt.Sprintf("invalid %s=%q: want a non-negative integer", name, v))
	}
	return n, true, nil
}

// appendEvent renders one event as JSON.
func appendEvent(b []byte, e *event.Copy) []byte {
	b = append(b, `{"sequence":`...)
	b = strconv.AppendInt(b, e.Seq, 10)
	b = append(b, `,"timestamp":"`...)
	b = time.Unix(0, e.Timestamp).UTC().AppendFormat(b, time.RFC3339Nano)
	b = append(b, '"')
	if len(e.Producer) > 0 {
		b = append(b, `,"producer":`...)
		b = appendString(b, e.Producer)
	}
	if e.HasProducerSeq {
		b = append(b, `,"producer_sequence":`...)
		b = strconv.AppendInt(b, e.ProducerSeq, 10)
	}
	if len(e.Key) > 0 {
		b = append(b, `,"key":`...)
		b = appendString(b, e.Key)
	}
	b = append(b, `,"data":`...)
	b = append(b, e.Data...)
	return append(b, '}')
}

// readEvents serves GET /api/v1/events?from=&to=&limit=.
func (s *Server) readEvents(c *fiber.Ctx) error {
	l := s.limits.Load()
	st := s.p.Status()
	from, to, limit, err := parseRange(c, l.ReadLimit, st.Earliest)
	if err != nil {
		return err
	}
	sc := s.getScratch()
	defer s.putScratch(sc)
	b := append(sc.out[:0], `{"events":[`...)
	n := 0
	rg, err := s.p.Read(from, to, int(limit), &sc.copy, func(e *event.Copy) error {
		if n > 0 {
			b = append(b, ',')
		}
		b = appendEvent(b, e)
		n++
		return nil
	})
	sc.out = b
	if err != nil {
		var gone *pipeline.GoneError
		if errors.As(err, &gone) {
			return apiErr(fiber.StatusGone, gone.Error(), "earliest", gone.Earliest)
		}
		if errors.Is(err, pipeline.ErrBadRange) {
			return apiErr(fiber.StatusBadRequest, err.Error())
		}
		return fmt.Errorf("read events: %w", err)
	}
	b = append(b, `],"count":`...)
	b = strconv.AppendInt(b, int64(n), 10)
	b = append(b, `,"from":`...)
	b = strconv.AppendInt(b, from, 10)
	b = append(b, `,"to":`...)
	b = strconv.AppendInt(b, to, 10)
	b = append(b, `,"next":`...)
	b = strconv.AppendInt(b, rg.Next, 10)
	b = append(b, `,"earliest":`...)
	b = strconv.AppendInt(b, rg.Earliest, 10)
	b = append(b, `,"cursor":`...)
	b = strconv.AppendInt(b, rg.Cursor, 10)
	b = append(b, '}')
	sc.out = b
	c.Response().Header.SetContentType(fiber.MIMEApplicationJSON)
	c.Response().SetBody(b)
	return nil
}

// keepAlive is how often an idle live tail sends a comment line (which also
// detects clients that went away).
const keepAlive = 15 * time.Second

// stream serves GET /api/v1/events/stream?from= as server-sent events:
// "event: event" with the event JSON (id = ring sequence), "event: gap" when
// the reader fell behind the ring and skipped to the earliest held event,
// and "event: end" when the node shuts down.
func (s *Server) stream(c *fiber.Ctx) error {
	from, hasFrom, err := queryInt(c, "from")
	if err != nil {
		return err
	}
	if !hasFrom {
		from = s.p.Processed() + 1
	}
	if id := c.Get("Last-Event-ID"); id != "" && !hasFrom {
		if n, perr := strconv.ParseInt(id, 10, 64); perr == nil && n >= 0 {
			from = n + 1
		}
	}
	batch := s.limits.Load().ReadLimit
	c.Set(fiber.HeaderContentType, "text/event-stream")
	c.Set(fiber.HeaderCacheControl, "no-cache")
	c.Set("X-Accel-Buffering", "no")
	conn := c.Context().Conn()
	writeTimeout := s.opts.WriteTimeout
	p := s.p
	done := s.done
	c.Context().SetBodyStreamWriter(func(w *bufio.Writer) {
		p.Subscribe()
		defer p.Unsubscribe()
		var cp event.Copy
		var b []byte
		next := from
		timer := time.NewTimer(keepAlive)
		defer timer.Stop()
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
		b = append(b, ": badbatch live tail from "...)
		b = strconv.AppendInt(b, next, 10)
		b = append(b, "\n\n"...)
		if !flush() {
			return
		}
		for {
			updated := p.Updated()
			processed := p.Processed()
			for next <= processed {
				rg, err := p.Read(next, processed, batch, &cp, func(e *event.Copy) error {
					b = append(b, "id: "...)
					b = strconv.AppendInt(b, e.Seq, 10)
					b = append(b, "\nevent: event\ndata: "...)
					b = appendEvent(b, e)
					b = append(b, "\n\n"...)
					return nil
				})
				var gone *pipeline.GoneError
				if errors.As(err, &gone) {
					b = appendSSEGap(b, next, gone.Earliest)
					next = gone.Earliest
					continue
				}
				if err != nil || rg.Next == next {
					break
				}
				next = rg.Next
				if !flush() {
					return
				}
			}
			if len(b) > 0 && !flush() {
				return
			}
			if !timer.Stop() {
				select {
				case <-timer.C:
				default:
				}
			}
			timer.Reset(keepAlive)
			select {
			case <-updated:
			case <-done:
				b = append(b, "event: end\ndata: {\"reason\":\"node shutting down\"}\n\n"...)
				_ = flush()
				return
			case <-timer.C:
				b = append(b, ": keep-alive\n\n"...)
				if !flush() {
					return
				}
			}
		}
	})
	return nil
}

// appendSSEGap appends a server-sent "gap" event: the reader asked for from,
// which is no longer held; it continues at earliest.
func appendSSEGap(b []byte, from, earliest int64) []byte {
	b = append(b, "event: gap\ndata: {\"from\":"...)
	b = strconv.AppendInt(b, from, 10)
	b = append(b, `,"earliest":`...)
	b = strconv.AppendInt(b, earliest, 10)
	return append(b, "}\n\n"...)
}

// parseRange reads the from, to and limit query parameters of a range read:
// from defaults to earliest, limit to (and is capped at) readLimit, to to
// from+limit-1. A limit below 1 or a to before from is a 400.
func parseRange(c *fiber.Ctx, readLimit int, earliest int64) (from, to, limit int64, err error) {
	from, hasFrom, err := queryInt(c, "from")
	if err != nil {
		return 0, 0, 0, err
	}
	to, hasTo, err := queryInt(c, "to")
	if err != nil {
		return 0, 0, 0, err
	}
	limit, hasLimit, err := queryInt(c, "limit")
	if err != nil {
		return 0, 0, 0, err
	}
	if hasLimit && limit < 1 {
		return 0, 0, 0, apiErr(fiber.StatusBadRequest, "invalid limit=0: want at least 1")
	}
	if !hasLimit || limit > int64(readLimit) {
		limit = int64(readLimit)
	}
	if !hasFrom {
		from = earliest
	}
	if !hasTo {
		to = from + limit - 1
		if to < from { // overflow near MaxInt64
			to = math.MaxInt64
		}
	}
	if to < from {
		return 0, 0, 0, apiErr(fiber.StatusBadRequest, fmt.Sprintf("invalid range: to (%d) is before from (%d)", to, from))
	}
	return from, to, limit, nil
}
