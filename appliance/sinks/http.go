package sinks

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/badbatch/badbatch/config"
)

// httpUpstream posts NDJSON in BadBatch's publish format to a hub: every
// event as {"producer": "<node>/<stream>", "sequence": <seq>, "key": ...,
// "data": ...}, so the hub's idempotency window drops re-sends, and
// GET /api/v1/producers/{producer} on the hub says where to resume.
type httpUpstream struct {
	cfg      config.SinkConfig
	producer string
	publish  string // the publish URL with ?ack=durable
	resume   string // the hub's producer endpoint
	client   *http.Client
	body     bytes.Buffer
	zbuf     bytes.Buffer
	zw       *gzip.Writer
}

func newHTTPUpstream(cfg config.SinkConfig, node string) (*httpUpstream, error) {
	u, err := url.Parse(cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("url: %w", err)
	}
	q := u.Query()
	if q.Get("ack") == "" {
		q.Set("ack", "durable")
	}
	u.RawQuery = q.Encode()
	producer := node + "/" + cfg.Source
	r := *u
	r.RawQuery = ""
	r.Path = strings.TrimSuffix(strings.TrimSuffix(u.Path, "/"), "/events") + "/producers/" + url.PathEscape(producer)
	r.RawPath = strings.TrimSuffix(strings.TrimSuffix(u.EscapedPath(), "/"), "/events") + "/producers/" + url.PathEscape(producer)
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 4
	if cfg.CAFile != "" || cfg.CertFile != "" {
		tc := &tls.Config{MinVersion: tls.VersionTLS12}
		if cfg.CAFile != "" {
			pem, err := os.ReadFile(cfg.CAFile)
			if err != nil {
				return nil, fmt.Errorf("ca_file: %w", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("ca_file %s holds no PEM certificate", cfg.CAFile)
			}
			tc.RootCAs = pool
		}
		if cfg.CertFile != "" {
			cert, err := tls.LoadX509KeyPair(cfg.CertFile, cfg.KeyFile)
			if err != nil {
				return nil, fmt.Errorf("cert_file/key_file: %w", err)
			}
			tc.Certificates = []tls.Certificate{cert}
		}
		tr.TLSClientConfig = tc
	}
	return &httpUpstream{
		cfg: cfg, producer: producer, publish: u.String(), resume: r.String(),
		client: &http.Client{Transport: tr, Timeout: cfg.Timeout.Duration},
	}, nil
}

func (u *httpUpstream) request(ctx context.Context, method, target string, body []byte) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, method, target, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	if u.cfg.Token != "" {
		req.Header.Set("Authorization", "Bearer "+u.cfg.Token)
	}
	req.Header.Set("User-Agent", "badbatch-sink/"+u.cfg.Name)
	return req, nil
}

// statusError turns an unsuccessful answer into the sink's error kinds.
func statusError(resp *http.Response, what string) error {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	msg := strings.TrimSpace(string(b))
	var e struct {
		Error string `json:"error"`
	}
	if json.Unmarshal(b, &e) == nil && e.Error != "" {
		msg = e.Error
	}
	err := fmt.Errorf("%s: HTTP %d: %s", what, resp.StatusCode, msg)
	switch {
	case resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden:
		return &FatalError{fmt.Errorf("the hub refused the sink's token: %w", err)}
	case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable:
		if s, perr := strconv.Atoi(resp.Header.Get("Retry-After")); perr == nil && s > 0 {
			return &RetryAfterError{After: time.Duration(s) * time.Second, Err: err}
		}
	}
	return err
}

// Connect asks the hub for the highest sequence it holds from this
// sink's producer id (404: none).
func (u *httpUpstream) Connect(ctx context.Context) (int64, error) {
	req, err := u.request(ctx, http.MethodGet, u.resume, nil)
	if err != nil {
		return -1, &FatalError{err}
	}
	resp, err := u.client.Do(req)
	if err != nil {
		return -1, fmt.Errorf("ask the hub where to resume: %w", err)
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusNotFound:
		var e struct {
			Producer string `json:"producer"`
		}
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		if json.Unmarshal(b, &e) == nil && e.Producer != "" {
			return -1, nil // the hub knows the endpoint but not the producer
		}
		return -1, &FatalError{fmt.Errorf("%s answers 404 without a producer: is it a BadBatch hub (GET /api/v1/producers/{producer})?", u.resume)}
	case resp.StatusCode != http.StatusOK:
		return -1, statusError(resp, "ask the hub where to resume")
	}
	var p struct {
		Highest *int64 `json:"highest_sequence"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<16)).Decode(&p); err != nil || p.Highest == nil {
		return -1, fmt.Errorf("the hub's producer answer is not {\"highest_sequence\": N}: %v", err)
	}
	return *p.Highest, nil
}

// Ship posts events in requests of cfg.Batch, one after the other (the hub
// stores each request in order).
func (u *httpUpstream) Ship(ctx context.Context, events []Event) (int, []Reject, error) {
	var rejects []Reject
	done := 0
	for done < len(events) {
		n := min(u.cfg.Batch, len(events)-done)
		k, rej, err := u.post(ctx, events[done:done+n])
		for _, r := range rej {
			r.Index += done
			rejects = append(rejects, r)
		}
		done += k
		if err != nil {
			return done, rejects, err
		}
	}
	return done, rejects, nil
}

// post sends one request; it returns how many events from the start are
// settled.
func (u *httpUpstream) post(ctx context.Context, events []Event) (int, []Reject, error) {
	u.body.Reset()
	for i := range events {
		u.appendEvent(&events[i])
	}
	body := u.body.Bytes()
	if u.cfg.Gzip {
		u.zbuf.Reset()
		if u.zw == nil {
			u.zw = gzip.NewWriter(&u.zbuf)
		} else {
			u.zw.Reset(&u.zbuf)
		}
		_, _ = u.zw.Write(body)
		_ = u.zw.Close()
		body = u.zbuf.Bytes()
	}
	req, err := u.request(ctx, http.MethodPost, u.publish, body)
	if err != nil {
		return 0, nil, &FatalError{err}
	}
	req.Header.Set("Content-Type", "application/x-ndjson")
	if u.cfg.Gzip {
		req.Header.Set("Content-Encoding", "gzip")
	}
	resp, err := u.client.Do(req)
	if err != nil {
		return 0, nil, fmt.Errorf("post %d events: %w", len(events), err)
	}
	defer resp.Body.Close()
	first := events[0].Sequence
	switch {
	case resp.StatusCode == http.StatusOK || resp.StatusCode == http.StatusCreated || resp.StatusCode == http.StatusAccepted:
	case resp.StatusCode == http.StatusRequestEntityTooLarge && len(events) > 1:
		// Too big for the hub's body limit: send it in halves.
		half := len(events) / 2
		k, rej, err := u.post(ctx, events[:half])
		if err != nil || k < half {
			return k, rej, err
		}
		k2, rej2, err := u.post(ctx, events[half:])
		for _, r := range rej2 {
			r.Index += half
			rej = append(rej, r)
		}
		return half + k2, rej, err
	case resp.StatusCode >= 400 && resp.StatusCode < 500 && resp.StatusCode != 408 && resp.StatusCode != 409 && resp.StatusCode != 429 &&
		resp.StatusCode != http.StatusUnauthorized && resp.StatusCode != http.StatusForbidden:
		// The hub refuses the request for good. With an index, only that
		// event is bad: dead-letter it, settle what precedes it.
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
		var e struct {
			Error string `json:"error"`
			Index *int   `json:"index"`
		}
		_ = json.Unmarshal(b, &e)
		reason := fmt.Sprintf("hub answered HTTP %d: %s", resp.StatusCode, strings.TrimSpace(firstNonEmpty(e.Error, string(b))))
		if e.Index != nil && *e.Index >= 0 && *e.Index < len(events) {
			return *e.Index + 1, []Reject{{Index: *e.Index, Reason: reason}}, errRetryRest(len(events) - *e.Index - 1)
		}
		if len(events) == 1 {
			return 1, []Reject{{Index: 0, Reason: reason}}, nil
		}
		// No index: find the bad event by sending one at a time.
		return u.oneByOne(ctx, events)
	default:
		return 0, nil, statusError(resp, fmt.Sprintf("post events %d..%d", first, events[len(events)-1].Sequence))
	}
	var ans struct {
		Sequence  *int64 `json:"sequence"`
		Duplicate bool   `json:"duplicate"`
		Results   []struct {
			Sequence  *int64 `json:"sequence"`
			Duplicate bool   `json:"duplicate"`
			Error     string `json:"error"`
		} `json:"results"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 64<<20)).Decode(&ans); err != nil {
		return 0, nil, fmt.Errorf("hub's answer to events %d..: %w", first, err)
	}
	if len(ans.Results) == 0 && len(events) == 1 && ans.Sequence != nil {
		return 1, nil, nil
	}
	for i, r := range ans.Results {
		if i >= len(events) {
			break
		}
		if r.Sequence == nil {
			return i, nil, fmt.Errorf("hub did not accept sequence %d: %s", events[i].Sequence, firstNonEmpty(r.Error, "no reason given"))
		}
	}
	if len(ans.Results) < len(events) {
		return len(ans.Results), nil, fmt.Errorf("hub answered %d results for %d events", len(ans.Results), len(events))
	}
	return len(events), nil, nil
}

// oneByOne posts events singly, so that the one the hub refuses is found.
func (u *httpUpstream) oneByOne(ctx context.Context, events []Event) (int, []Reject, error) {
	var rejects []Reject
	for i := range events {
		k, rej, err := u.post(ctx, events[i:i+1])
		for _, r := range rej {
			r.Index += i
			rejects = append(rejects, r)
		}
		if err != nil || k == 0 {
			return i + k, rejects, err
		}
	}
	return len(events), rejects, nil
}

// errRetryRest is returned with a partial settlement: the sink sends the
// rest again at once (no backoff needed, nothing is wrong upstream).
type retryRest int

func (r retryRest) Error() string {
	return fmt.Sprintf("%d events after a refused one are sent again", int(r))
}

func errRetryRest(n int) error {
	if n <= 0 {
		return nil
	}
	return retryRest(n)
}

// IsRetryRest reports whether err only asks to send the remaining events.
func isRetryRest(err error) bool {
	var r retryRest
	return errors.As(err, &r)
}

func firstNonEmpty(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// appendEvent appends one NDJSON line for e to u.body.
func (u *httpUpstream) appendEvent(e *Event) {
	b := u.body.AvailableBuffer()
	b = append(b, `{"producer":`...)
	b = strconv.AppendQuote(b, u.producer)
	b = append(b, `,"sequence":`...)
	b = strconv.AppendInt(b, e.Sequence, 10)
	if len(e.Key) > 0 {
		b = append(b, `,"key":`...)
		kb, _ := json.Marshal(string(e.Key))
		b = append(b, kb...)
	}
	b = append(b, `,"data":`...)
	if json.Valid(e.Data) {
		b = append(b, e.Data...)
	} else {
		db, _ := json.Marshal(string(e.Data))
		b = append(b, db...)
	}
	b = append(b, "}\n"...)
	u.body.Write(b)
}

// Close releases idle connections.
func (u *httpUpstream) Close() error {
	u.client.CloseIdleConnections()
	return nil
}
