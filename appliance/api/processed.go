package api

import (
	"context"
	"strconv"

	"github.com/badbatch/badbatch/appliance/pipeline"
)

// waitProcessed waits (bounded by DurableTimeout) until the WASM stage has
// processed the request's highest sequence.
func (s *Server) waitProcessed(res []pipeline.Result) (bool, error) {
	top := int64(-1)
	for _, r := range res {
		if r.Outcome != pipeline.Rejected {
			top = max(top, r.Sequence)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.opts.DurableTimeout)
	defer cancel()
	if err := s.opts.Processor.WaitProcessed(ctx, top); err != nil {
		return false, err
	}
	return true, nil
}

// appendProcessed renders an ack=processed answer: the usual result shape
// with each event's module outputs. A single event:
// {"sequence":N,"ack":"processed","outputs":[...]}; a batch: the batch
// shape with "outputs" in each result. An event whose outputs are no longer
// held (a duplicate of an old event, or pushed out of the stage's recent
// outputs by a flood) has "outputs_evicted": true instead; its outputs are
// in the output streams (their source field is the event's sequence).
func appendProcessed(b []byte, batch bool, res []pipeline.Result, p Processor) []byte {
	one := func(b []byte, r pipeline.Result) []byte {
		b = append(b, `"sequence":`...)
		b = strconv.AppendInt(b, r.Sequence, 10)
		if r.Outcome == pipeline.Duplicate {
			b = append(b, `,"duplicate":true`...)
		}
		mark := len(b)
		b = append(b, `,"outputs":[`...)
		n := 0
		held := p.Outputs(r.Sequence, func(o ProcessedOutput) {
			if n > 0 {
				b = append(b, ',')
			}
			n++
			b = append(b, `{"module":`...)
			b = appendString(b, o.Module)
			b = append(b, `,"module_version":`...)
			b = appendString(b, o.Version)
			b = append(b, `,"kind":`...)
			b = appendString(b, o.Kind)
			b = append(b, `,"stream":`...)
			b = appendString(b, o.Stream)
			b = appendPayload(b, o.Key, o.Data, o.Error)
		})
		if !held {
			return append(b[:mark], `,"outputs_evicted":true`...)
		}
		return append(b, ']')
	}
	if !batch {
		b = append(b, '{')
		b = one(b, res[0])
		return append(b, `,"ack":"processed"}`...)
	}
	var acc, dup int
	for _, r := range res {
		if r.Outcome == pipeline.Duplicate {
			dup++
		} else {
			acc++
		}
	}
	b = append(b, `{"ack":"processed","accepted":`...)
	b = strconv.AppendInt(b, int64(acc), 10)
	b = append(b, `,"duplicates":`...)
	b = strconv.AppendInt(b, int64(dup), 10)
	b = append(b, `,"rejected":0,"results":[`...)
	for i, r := range res {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, '{')
		b = one(b, r)
		b = append(b, '}')
	}
	return append(b, "]}"...)
}
