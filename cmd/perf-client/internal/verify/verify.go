// Package verify reads back what a load run published (GET /api/v1/events,
// page by page) and checks that every acknowledged event is stored exactly
// once, under the ring sequence it was acknowledged with, with the payload
// that was sent.
package verify

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/badbatch/badbatch/cmd/perf-client/internal/load"
)

// Options configures a read-back.
type Options struct {
	URL      string       // base URL of the appliance
	Token    string       // bearer token (one that may read events, when the node has tokens)
	PageSize int          // events per GET (the server may cap it at api.read_limit)
	Client   *http.Client // nil: a client without a timeout (the context bounds the read)
}

// Report is the verdict. Lost, Duplicated, Mismatched, Misplaced and
// StoredRefused must all be zero for OK.
type Report struct {
	Acknowledged  int64 `json:"acknowledged"`   // events the server acknowledged
	Found         int64 `json:"found"`          // acknowledged events read back (first copy)
	Lost          int64 `json:"lost"`           // acknowledged, not read back
	Duplicated    int64 `json:"duplicated"`     // extra copies of events of this run
	Mismatched    int64 `json:"mismatched"`     // read back with a different payload
	Misplaced     int64 `json:"misplaced"`      // read back under another ring sequence than acknowledged
	StoredRefused int64 `json:"stored_refused"` // refused by the server, yet stored
	StoredUnknown int64 `json:"stored_unknown"` // sent without a usable answer, and stored (allowed)
	Foreign       int64 `json:"foreign"`        // events of other producers in the range (ignored)
	// WithoutProducerSeq counts events of this run read back without a
	// producer_sequence (the node's journal reads omit it); they were
	// identified by their ring sequence or their payload instead.
	WithoutProducerSeq int64 `json:"without_producer_sequence,omitempty"`
	// Unidentified counts events of this run's producers that could not be
	// matched to a sent event at all.
	Unidentified int64 `json:"unidentified,omitempty"`
	unanswered   int64
	From         int64 `json:"from"` // ring range read
	To           int64 `json:"to"`
	Pages        int   `json:"pages"`
	// Samples names a few problems (producer/sequence), for the report.
	Samples []string `json:"samples,omitempty"`
}

// OK reports whether nothing acknowledged was lost, duplicated or altered.
func (r *Report) OK() bool {
	return r.Lost == 0 && r.Duplicated == 0 && r.Mismatched == 0 && r.Misplaced == 0 && r.StoredRefused == 0 &&
		(r.Unidentified == 0 || r.unanswered > 0)
}

// String is the one-line verdict.
func (r *Report) String() string {
	s := fmt.Sprintf("acknowledged %d, lost %d, duplicated %d", r.Acknowledged, r.Lost, r.Duplicated)
	if r.Mismatched > 0 {
		s += fmt.Sprintf(", payload mismatched %d", r.Mismatched)
	}
	if r.Misplaced > 0 {
		s += fmt.Sprintf(", under another sequence %d", r.Misplaced)
	}
	if r.StoredRefused > 0 {
		s += fmt.Sprintf(", refused but stored %d", r.StoredRefused)
	}
	if r.Unidentified > 0 {
		s += fmt.Sprintf(", unidentified %d", r.Unidentified)
	}
	if r.StoredUnknown > 0 {
		s += fmt.Sprintf(" (%d sent without an answer were stored)", r.StoredUnknown)
	}
	if r.WithoutProducerSeq > 0 {
		s += fmt.Sprintf(" (%d read back without producer_sequence, identified by ring sequence or payload)", r.WithoutProducerSeq)
	}
	return s
}

// Page is one answer of GET /api/v1/events.
type Page struct {
	Events   []Event `json:"events"`
	Count    int     `json:"count"`
	Next     int64   `json:"next"`
	Earliest int64   `json:"earliest"`
	Cursor   int64   `json:"cursor"`
}

// Event is one event as read back.
type Event struct {
	Sequence         int64           `json:"sequence"`
	Producer         string          `json:"producer"`
	ProducerSequence *int64          `json:"producer_sequence"`
	Data             json.RawMessage `json:"data"`
}

// ParsePage decodes a read answer and checks its shape.
func ParsePage(body []byte) (*Page, error) {
	var p Page
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(&p); err != nil {
		return nil, fmt.Errorf("decode events page: %w", err)
	}
	if p.Count != len(p.Events) {
		return nil, fmt.Errorf("events page: count %d but %d events", p.Count, len(p.Events))
	}
	for i := 1; i < len(p.Events); i++ {
		if p.Events[i].Sequence <= p.Events[i-1].Sequence {
			return nil, fmt.Errorf("events page: sequence %d after %d (not increasing)", p.Events[i].Sequence, p.Events[i-1].Sequence)
		}
	}
	return &p, nil
}

// state per event of the ledger.
const (
	notAcked   int64 = -1 // sent, refused
	unanswered int64 = -2 // sent, no usable answer
)

// Check reads back the ring range the ledger's acknowledgements span (up
// to the node's cursor at the first read, to catch late duplicates) and
// checks it against the ledger.
func Check(ctx context.Context, o Options, led *load.Ledger) (*Report, error) {
	rep := &Report{From: led.MinRing, To: led.MaxRing}
	// expected ring sequence per producer sequence (or notAcked/unanswered)
	byID := make(map[string]int, len(led.Producers))
	want := make([][]int64, len(led.Producers))
	seen := make([][]uint8, len(led.Producers))
	for i, id := range led.Producers {
		byID[id] = i
		want[i] = make([]int64, led.Claimed[i])
		seen[i] = make([]uint8, led.Claimed[i])
		for j := range want[i] {
			want[i][j] = unanswered
		}
	}
	for _, r := range led.Records {
		w := want[r.Producer]
		for k := int64(0); k < int64(r.N); k++ {
			ps := r.ProducerSeq + k
			if ps < 0 || ps >= int64(len(w)) {
				return nil, fmt.Errorf("ledger: producer %d sequence %d outside 0..%d", r.Producer, ps, len(w)-1)
			}
			switch r.Outcome {
			case load.Acked:
				w[ps] = r.RingSeq + k
				rep.Acknowledged++
			case load.Refused:
				w[ps] = notAcked
			default:
				w[ps] = unanswered
			}
		}
	}
	for _, w := range want {
		for _, ws := range w {
			if ws == unanswered {
				rep.unanswered++
			}
		}
	}
	acked := make([]load.Record, 0, len(led.Records))
	for _, r := range led.Records {
		if r.Outcome == load.Acked {
			acked = append(acked, r)
		}
	}
	slices.SortFunc(acked, func(a, b load.Record) int { return cmp.Compare(a.RingSeq, b.RingSeq) })
	// identify finds the producer sequence of an event read back without one.
	identify := func(pi int, e *Event) (int64, bool) {
		i, _ := slices.BinarySearchFunc(acked, e.Sequence, func(r load.Record, s int64) int {
			switch {
			case r.RingSeq+int64(r.N) <= s:
				return -1
			case r.RingSeq > s:
				return 1
			}
			return 0
		})
		if i < len(acked) && acked[i].RingSeq <= e.Sequence && e.Sequence < acked[i].RingSeq+int64(acked[i].N) && int(acked[i].Producer) == pi {
			return acked[i].ProducerSeq + e.Sequence - acked[i].RingSeq, true
		}
		return led.Payload.Decode(e.Data, led.Claimed[pi])
	}
	if led.MinRing < 0 {
		return rep, nil
	}
	if o.PageSize < 1 {
		o.PageSize = 1000
	}
	client := o.Client
	if client == nil {
		tr := &http.Transport{MaxIdleConnsPerHost: 1}
		defer tr.CloseIdleConnections()
		client = &http.Client{Transport: tr}
	}
	base := strings.TrimSuffix(o.URL, "/") + "/api/v1/events"
	var expect []byte
	to := led.MaxRing
	for from := led.MinRing; from <= to; {
		page, err := fetch(ctx, client, base, o.Token, from, min(to, from+int64(o.PageSize)-1), o.PageSize)
		if err != nil {
			return nil, err
		}
		rep.Pages++
		if rep.Pages == 1 && page.Cursor > to {
			to = page.Cursor // read on to the cursor: a duplicate may have been stored later
			rep.To = to
		}
		for _, e := range page.Events {
			pi, ok := byID[e.Producer]
			if !ok {
				rep.Foreign++
				continue
			}
			var ps int64
			if e.ProducerSequence != nil {
				ps = *e.ProducerSequence
			} else {
				rep.WithoutProducerSeq++
				if ps, ok = identify(pi, &e); !ok {
					rep.Unidentified++
					rep.sample("producer %s: event at %d has no producer_sequence and matches no sent event", e.Producer, e.Sequence)
					continue
				}
			}
			if ps < 0 || ps >= int64(len(want[pi])) {
				rep.Duplicated++ // a sequence this run never sent under its id
				rep.sample("producer %s sequence %d was never sent but is stored at %d", e.Producer, ps, e.Sequence)
				continue
			}
			if seen[pi][ps] < 255 {
				seen[pi][ps]++
			}
			if seen[pi][ps] > 1 {
				rep.Duplicated++
				rep.sample("producer %s sequence %d stored again at %d", e.Producer, ps, e.Sequence)
				continue
			}
			switch ws := want[pi][ps]; {
			case ws == notAcked:
				rep.StoredRefused++
				rep.sample("producer %s sequence %d was refused but is stored at %d", e.Producer, ps, e.Sequence)
				continue
			case ws == unanswered:
				rep.StoredUnknown++
				continue
			case ws != e.Sequence:
				rep.Misplaced++
				rep.sample("producer %s sequence %d acknowledged as %d, stored at %d", e.Producer, ps, ws, e.Sequence)
			}
			rep.Found++
			expect = led.Payload.Append(expect[:0], ps)
			if !bytes.Equal(expect, e.Data) {
				rep.Mismatched++
				rep.sample("producer %s sequence %d: payload %.60q, sent %.60q", e.Producer, ps, e.Data, expect)
			}
		}
		if page.Next <= from {
			return nil, fmt.Errorf("read back from %d: the node's next (%d) does not advance", from, page.Next)
		}
		from = page.Next
	}
	for pi, w := range want {
		for ps, ws := range w {
			if ws >= 0 && seen[pi][ps] == 0 {
				rep.Lost++
				rep.sample("producer %s sequence %d acknowledged as %d, not read back", led.Producers[pi], ps, ws)
			}
		}
	}
	return rep, nil
}

func (r *Report) sample(format string, args ...any) {
	if len(r.Samples) < 10 {
		r.Samples = append(r.Samples, fmt.Sprintf(format, args...))
	}
}

// GoneError is a 410: the range is no longer held by the node.
type GoneError struct {
	From, Earliest int64
}

// Error says which range is gone and what to do about it.
func (e *GoneError) Error() string {
	return fmt.Sprintf("events from %d are no longer held by the node (earliest available %d): the ring wrapped and no journal holds them; enable the journal, use a larger ring (-b) or publish fewer events", e.From, e.Earliest)
}

func fetch(ctx context.Context, c *http.Client, base, token string, from, to int64, limit int) (*Page, error) {
	q := url.Values{}
	q.Set("from", strconv.FormatInt(from, 10))
	q.Set("to", strconv.FormatInt(to, 10))
	q.Set("limit", strconv.Itoa(limit))
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"?"+q.Encode(), nil)
	if err != nil {
		return nil, fmt.Errorf("read back: %w", err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, fmt.Errorf("read back %d..%d: %w", from, to, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("read back %d..%d: %w", from, to, err)
	}
	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusGone:
		var g struct {
			Earliest int64 `json:"earliest"`
		}
		_ = json.Unmarshal(body, &g)
		return nil, &GoneError{From: from, Earliest: g.Earliest}
	case http.StatusUnauthorized, http.StatusForbidden:
		return nil, fmt.Errorf("read back: %s: reading events needs a token that may read them (--token or $BADBATCH_TOKEN): %s", resp.Status, bytes.TrimSpace(body))
	default:
		return nil, fmt.Errorf("read back %d..%d: %s: %s", from, to, resp.Status, bytes.TrimSpace(body))
	}
	p, err := ParsePage(body)
	if err != nil {
		return nil, fmt.Errorf("read back %d..%d: %w", from, to, err)
	}
	return p, nil
}
