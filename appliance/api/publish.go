package api

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"syscall"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/badbatch/badbatch/appliance/event"
	"github.com/badbatch/badbatch/appliance/pipeline"
)

// HeaderProducerID names the default producer for events without a
// "producer" field.
const HeaderProducerID = "X-Producer-ID"

// scratch is per-request memory, pooled so that a warm publish does not
// allocate per event.
type scratch struct {
	dec     event.Decoder
	results []pipeline.Result
	out     []byte
	gz      *gzip.Reader
	unz     bytes.Buffer
	copy    event.Copy
}

func newScratch() *scratch { return &scratch{out: make([]byte, 0, 4096)} }

func (s *Server) getScratch() *scratch { return s.pool.Get().(*scratch) }

func (s *Server) putScratch(sc *scratch) {
	if cap(sc.out) > 1<<20 {
		sc.out = make([]byte, 0, 4096)
	}
	if sc.unz.Cap() > 4<<20 {
		sc.unz = bytes.Buffer{}
	}
	s.pool.Put(sc)
}

// format picks the decoder from Content-Type (415 for anything else).
func format(ct []byte) (event.Format, error) {
	if i := bytes.IndexByte(ct, ';'); i >= 0 {
		ct = ct[:i]
	}
	ct = bytes.TrimSpace(ct)
	switch {
	case bytes.EqualFold(ct, []byte("application/json")):
		return event.FormatJSON, nil
	case bytes.EqualFold(ct, []byte("application/x-ndjson")), bytes.EqualFold(ct, []byte("application/ndjson")):
		return event.FormatNDJSON, nil
	case len(ct) == 0:
		return 0, apiErr(fiber.StatusUnsupportedMediaType, "missing Content-Type: use application/json (one event or an array) or application/x-ndjson")
	}
	return 0, apiErr(fiber.StatusUnsupportedMediaType, fmt.Sprintf("unsupported Content-Type %q: use application/json (one event or an array) or application/x-ndjson", ct))
}

// body returns the request body, gunzipped when Content-Encoding says so,
// bounded by the body limit.
func (s *Server) body(c *fiber.Ctx, sc *scratch) ([]byte, error) {
	// The raw body: fiber's c.Body() would decompress by itself, without a size bound.
	raw := c.Request().Body()
	enc := bytes.TrimSpace(c.Request().Header.Peek(fiber.HeaderContentEncoding))
	switch {
	case len(enc) == 0 || bytes.EqualFold(enc, []byte("identity")):
		return raw, nil
	case bytes.EqualFold(enc, []byte("gzip")):
	default:
		return nil, apiErr(fiber.StatusUnsupportedMediaType, fmt.Sprintf("unsupported Content-Encoding %q: only gzip is accepted", enc))
	}
	var err error
	if sc.gz == nil {
		sc.gz, err = gzip.NewReader(bytes.NewReader(raw))
	} else {
		err = sc.gz.Reset(bytes.NewReader(raw))
	}
	if err != nil {
		return nil, apiErr(fiber.StatusBadRequest, "invalid gzip body: "+err.Error())
	}
	sc.unz.Reset()
	limit := int64(s.opts.BodyLimit)
	n, err := sc.unz.ReadFrom(io.LimitReader(sc.gz, limit+1))
	if err != nil {
		return nil, apiErr(fiber.StatusBadRequest, "invalid gzip body: "+err.Error())
	}
	if n > limit {
		return nil, apiErr(fiber.StatusRequestEntityTooLarge, fmt.Sprintf("decompressed body exceeds the limit (server.body_limit) of %d bytes", limit))
	}
	return sc.unz.Bytes(), nil
}

func (s *Server) publish(c *fiber.Ctx) error {
	l := s.limits.Load()
	ack := c.Query("ack")
	if ack == "" {
		ack = l.DefaultAck
	}
	switch ack {
	case "memory":
	case "durable", "processed":
		if !s.ackSupported(ack) {
			return apiErr(fiber.StatusBadRequest, fmt.Sprintf("ack=%s is not available on this node (it needs the %s); use one of %v", ack, map[string]string{"durable": "journal (journal.enabled = true)", "processed": "WASM handler stage"}[ack], s.opts.AckLevels))
		}
		if ack == "processed" && s.opts.Processor == nil {
			return apiErr(fiber.StatusBadRequest, "ack=processed needs the WASM handler stage, which this server was built without")
		}
	default:
		return apiErr(fiber.StatusBadRequest, fmt.Sprintf("invalid ack %q: use memory, durable or processed", ack))
	}
	if s.opts.BacklogFull != nil {
		if b := s.opts.BacklogFull(); b != "" {
			return errBacklogFull(b)
		}
	}
	f, err := format(c.Request().Header.ContentType())
	if err != nil {
		return err
	}
	producer := c.Request().Header.Peek(HeaderProducerID)
	if len(producer) > event.MaxIDLen {
		return apiErr(fiber.StatusBadRequest, fmt.Sprintf("%s is longer than %d bytes", HeaderProducerID, event.MaxIDLen))
	}

	sc := s.getScratch()
	defer s.putScratch(sc)
	body, err := s.body(c, sc)
	if err != nil {
		return err
	}
	evs, err := sc.dec.Decode(body, f, l.MaxBatch)
	if err != nil {
		var de *event.Error
		if errors.As(err, &de) {
			if errors.Is(de, event.ErrTooMany) {
				return apiErr(fiber.StatusRequestEntityTooLarge, de.Msg+" (api.max_batch)", "index", de.Index)
			}
			return apiErr(fiber.StatusBadRequest, "invalid event: "+de.Msg, "index", de.Index, "offset", de.Offset)
		}
		return apiErr(fiber.StatusBadRequest, err.Error())
	}
	maxSize := s.p.MaxEventSize()
	for i := range evs {
		pr := producer
		if evs[i].HasProducer {
			pr = evs[i].Producer
		}
		if err := event.Fits(&evs[i], pr, maxSize); err != nil {
			return apiErr(fiber.StatusRequestEntityTooLarge, err.Error(), "index", i)
		}
	}
	if cap(sc.results) < len(evs) {
		sc.results = make([]pipeline.Result, len(evs))
	}
	res := sc.results[:len(evs)]

	if ack == "durable" && s.opts.DurableErr != nil {
		if derr := s.opts.DurableErr(); derr != nil {
			// Refuse before storing: nothing is accepted that cannot be confirmed.
			c.Set(fiber.HeaderRetryAfter, "1")
			return apiErr(durableErrStatus(derr), "not accepted: the journal cannot store events durably right now ("+derr.Error()+"); nothing was stored, retry later (ack=memory still works)")
		}
	}
	if ack == "processed" {
		// Keep the outputs of what this request publishes for the answer.
		s.opts.Processor.Expect()
		defer s.opts.Processor.Done()
	}
	// Intake: hold the read side while publishing so StopIntake can wait.
	s.intake.RLock()
	if s.closed.Load() {
		s.intake.RUnlock()
		c.Set(fiber.HeaderRetryAfter, "5")
		return apiErr(fiber.StatusServiceUnavailable, "node is shutting down; not accepting events")
	}
	// Not c.Context(): fasthttp's RequestCtx as a context parent races with
	// server shutdown. The wait is bounded by the publish timeout anyway.
	perr := s.p.Publish(context.Background(), evs, producer, l.PublishTimeout, res)
	s.intake.RUnlock()

	status := fiber.StatusOK
	var msg string
	if perr == nil && (ack == "durable" || ack == "processed" && s.opts.Durable != nil) {
		// Acknowledge only once the highest sequence of the request is
		// durable (sequences are durable in order).
		top := int64(-1)
		for _, r := range res {
			if r.Outcome != pipeline.Rejected {
				top = max(top, r.Sequence)
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), s.opts.DurableTimeout)
		derr := s.opts.Durable(ctx, top)
		cancel()
		if derr != nil {
			status = durableErrStatus(derr)
			c.Set(fiber.HeaderRetryAfter, "1")
			msg = "stored in the ring but not confirmed durable (" + derr.Error() + "); retry with the same producer and sequence to confirm"
		}
	}
	withOutputs := false
	if perr == nil && status == fiber.StatusOK && ack == "processed" {
		var werr error
		withOutputs, werr = s.waitProcessed(res)
		if werr != nil {
			status = fiber.StatusServiceUnavailable
			c.Set(fiber.HeaderRetryAfter, "1")
			msg = "stored but not confirmed processed by the WASM handlers (" + werr.Error() + "); the handlers will still process it; retry with the same producer and sequence to confirm"
			if s.opts.Durable != nil {
				msg = "stored durably but not confirmed processed by the WASM handlers (" + werr.Error() + "); the handlers will still process it; retry with the same producer and sequence to confirm"
			}
		}
	}
	switch {
	case perr == nil:
	case errors.Is(perr, pipeline.ErrFull):
		status = fiber.StatusTooManyRequests
		c.Set(fiber.HeaderRetryAfter, strconv.Itoa(retryAfter(l.PublishTimeout)))
		msg = perr.Error() + "; retry later (events with a result sequence were accepted)"
	case errors.Is(perr, pipeline.ErrClosed):
		status = fiber.StatusServiceUnavailable
		c.Set(fiber.HeaderRetryAfter, "5")
		msg = "node is shutting down; events without a result sequence were not accepted"
	default:
		return fmt.Errorf("publish: %w", perr)
	}
	if status != fiber.StatusOK && (ack == "durable" || ack == "processed") {
		ack = "memory" // what the accepted events reached; durability was not confirmed
	}
	out := appendResults(sc.out[:0], sc.dec.Batch(), ack, res, msg)
	if withOutputs {
		out = appendProcessed(out[:0], sc.dec.Batch(), res, s.opts.Processor)
	}
	sc.out = out
	c.Status(status)
	c.Response().Header.SetContentType(fiber.MIMEApplicationJSON)
	c.Response().SetBody(out)
	return nil
}

// durableErrStatus is the answer to an ack=durable publish that could not
// be confirmed: 507 Insufficient Storage when the disk is full, else 503.
func durableErrStatus(err error) int {
	if errors.Is(err, syscall.ENOSPC) {
		return fiber.StatusInsufficientStorage
	}
	return fiber.StatusServiceUnavailable
}

func retryAfter(d time.Duration) int {
	return int(math.Max(1, math.Ceil(d.Seconds())))
}

// appendResults renders the publish answer. A single event:
// {"sequence":N,"ack":"memory"} (+ "duplicate":true). A batch:
// {"ack":"memory","accepted":A,"duplicates":D,"rejected":R,"results":[{"sequence":N},...]}.
func appendResults(b []byte, batch bool, ack string, res []pipeline.Result, errMsg string) []byte {
	if !batch {
		r := res[0]
		b = append(b, '{')
		if errMsg != "" {
			b = append(b, `"error":`...)
			b = appendString(b, errMsg)
			b = append(b, ',')
		}
		if r.Outcome == pipeline.Rejected {
			b = append(b, `"accepted":false,"ack":`...)
			b = appendString(b, ack)
			return append(b, '}')
		}
		b = append(b, `"sequence":`...)
		b = strconv.AppendInt(b, r.Sequence, 10)
		if r.Outcome == pipeline.Duplicate {
			b = append(b, `,"duplicate":true`...)
		}
		b = append(b, `,"ack":`...)
		b = appendString(b, ack)
		return append(b, '}')
	}
	var acc, dup, rej int
	for _, r := range res {
		switch r.Outcome {
		case pipeline.Accepted:
			acc++
		case pipeline.Duplicate:
			dup++
		default:
			rej++
		}
	}
	b = append(b, '{')
	if errMsg != "" {
		b = append(b, `"error":`...)
		b = appendString(b, errMsg)
		b = append(b, ',')
	}
	b = append(b, `"ack":`...)
	b = appendString(b, ack)
	b = append(b, `,"accepted":`...)
	b = strconv.AppendInt(b, int64(acc), 10)
	b = append(b, `,"duplicates":`...)
	b = strconv.AppendInt(b, int64(dup), 10)
	b = append(b, `,"rejected":`...)
	b = strconv.AppendInt(b, int64(rej), 10)
	b = append(b, `,"results":[`...)
	for i, r := range res {
		if i > 0 {
			b = append(b, ',')
		}
		switch r.Outcome {
		case pipeline.Rejected:
			b = append(b, `{"index":`...)
			b = strconv.AppendInt(b, int64(i), 10)
			b = append(b, `,"error":"not accepted"}`...)
		case pipeline.Duplicate:
			b = append(b, `{"sequence":`...)
			b = strconv.AppendInt(b, r.Sequence, 10)
			b = append(b, `,"duplicate":true}`...)
		default:
			b = append(b, `{"sequence":`...)
			b = strconv.AppendInt(b, r.Sequence, 10)
			b = append(b, '}')
		}
	}
	return append(b, "]}"...)
}

const hexDigits = "0123456789abcdef"

// appendString appends s as a JSON string.
func appendString[S ~string | ~[]byte](b []byte, s S) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' && c != 0x7f {
			continue
		}
		b = append(b, s[start:i]...)
		switch c {
		case '"', '\\':
			b = append(b, '\\', c)
		case '\n':
			b = append(b, '\\', 'n')
		case '\r':
			b = append(b, '\\', 'r')
		case '\t':
			b = append(b, '\\', 't')
		default:
			b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
		}
		start = i + 1
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
