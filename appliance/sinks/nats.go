package sinks

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/badbatch/badbatch/config"
)

// Headers every NATS message carries besides Nats-Msg-Id.
const (
	HeaderNode        = "Badbatch-Node"
	HeaderStream      = "Badbatch-Stream"
	HeaderSequence    = "Badbatch-Sequence"
	HeaderKey         = "Badbatch-Key"
	HeaderProducer    = "Badbatch-Producer"
	HeaderProducerSeq = "Badbatch-Producer-Sequence"
	HeaderTimestamp   = "Badbatch-Timestamp"
)

// MsgID is the Nats-Msg-Id of an event: "<node>/<stream>/<sequence>".
func MsgID(node, stream string, seq int64) string {
	return node + "/" + stream + "/" + strconv.FormatInt(seq, 10)
}

// natsUpstream ships to a JetStream stream. It connects without automatic
// reconnection and without a reconnect buffer: every connection is one
// ordered session, so what JetStream stored of it is always a prefix of
// what was sent, and the sink resumes after the last stored message when
// it reconnects (exactly-once beyond the duplicate window too).
type natsUpstream struct {
	cfg    config.SinkConfig
	node   string
	stream string // the source's name in ids and subjects
	tmpl   subjectTemplate
	filter string // subject filter of everything this sink publishes

	nc      *nats.Conn
	js      jetstream.JetStream
	maxSize int64 // the smaller of the server's max payload and the stream's max_msg_size
}

func newNATSUpstream(cfg config.SinkConfig, node string) *natsUpstream {
	t := parseSubject(cfg.Subject)
	return &natsUpstream{cfg: cfg, node: node, stream: cfg.Source, tmpl: t, filter: t.filter(node, cfg.Source)}
}

func (u *natsUpstream) options() ([]nats.Option, error) {
	c := u.cfg
	opts := []nats.Option{
		nats.Name("badbatch sink " + c.Name + " on " + u.node),
		nats.NoReconnect(),
		nats.ReconnectBufSize(-1),
		nats.Timeout(c.Timeout.Duration),
		nats.NoCallbacksAfterClientClose(),
	}
	switch {
	case c.CredsFile != "":
		opts = append(opts, nats.UserCredentials(c.CredsFile))
	case c.NKeyFile != "":
		o, err := nats.NkeyOptionFromSeed(c.NKeyFile)
		if err != nil {
			return nil, &FatalError{fmt.Errorf("nkey_file: %w", err)}
		}
		opts = append(opts, o)
	case c.Token != "":
		opts = append(opts, nats.Token(c.Token))
	case c.User != "":
		opts = append(opts, nats.UserInfo(c.User, c.Password))
	}
	if c.CAFile != "" {
		opts = append(opts, nats.RootCAs(c.CAFile))
	}
	if c.CertFile != "" {
		opts = append(opts, nats.ClientCert(c.CertFile, c.KeyFile))
	}
	return opts, nil
}

// Connect dials, checks (or creates) the stream and asks it for the last
// message this sink stored.
func (u *natsUpstream) Connect(ctx context.Context) (int64, error) {
	_ = u.Close()
	opts, err := u.options()
	if err != nil {
		return -1, err
	}
	nc, err := nats.Connect(u.cfg.URL, opts...)
	if err != nil {
		if errors.Is(err, nats.ErrAuthorization) || errors.Is(err, nats.ErrAuthExpired) || errors.Is(err, nats.ErrAuthRevoked) {
			return -1, &FatalError{fmt.Errorf("NATS refused the credentials: %w", err)}
		}
		return -1, fmt.Errorf("connect to %s: %w", redactURL(u.cfg.URL), err)
	}
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(u.cfg.MaxInFlight), jetstream.WithPublishAsyncTimeout(u.cfg.Timeout.Duration))
	if err != nil {
		nc.Close()
		return -1, fmt.Errorf("jetstream: %w", err)
	}
	u.nc, u.js = nc, js
	st, err := u.ensureStream(ctx)
	if err != nil {
		_ = u.Close()
		return -1, err
	}
	u.maxSize = nc.MaxPayload()
	if ms := st.CachedInfo().Config.MaxMsgSize; ms > 0 && int64(ms) < u.maxSize {
		u.maxSize = int64(ms)
	}
	msg, err := st.GetLastMsgForSubject(ctx, u.filter)
	switch {
	case errors.Is(err, jetstream.ErrMsgNotFound):
		return -1, nil
	case err != nil:
		_ = u.Close()
		return -1, fmt.Errorf("ask stream %s for the last message on %s: %w", u.cfg.JetStreamStream, u.filter, err)
	}
	seq, err := strconv.ParseInt(msg.Header.Get(HeaderSequence), 10, 64)
	if err != nil {
		_ = u.Close()
		return -1, &FatalError{fmt.Errorf("the last message on %s (stream sequence %d) has no valid %s header: is another publisher using this sink's subjects?", u.filter, msg.Sequence, HeaderSequence)}
	}
	return seq, nil
}

func (u *natsUpstream) ensureStream(ctx context.Context) (jetstream.Stream, error) {
	name := u.cfg.JetStreamStream
	st, err := u.js.Stream(ctx, name)
	switch {
	case errors.Is(err, jetstream.ErrStreamNotFound) && u.cfg.CreateStream:
		st, err = u.js.CreateStream(ctx, jetstream.StreamConfig{
			Name:       name,
			Subjects:   []string{u.filter},
			Storage:    jetstream.FileStorage,
			Duplicates: u.cfg.DuplicateWindow.Duration,
		})
		if err != nil {
			return nil, fmt.Errorf("create JetStream stream %s for %s: %w", name, u.filter, err)
		}
		return st, nil
	case errors.Is(err, jetstream.ErrStreamNotFound):
		return nil, &FatalError{fmt.Errorf("JetStream stream %s does not exist and create_stream = false: create it with subjects %q", name, u.filter)}
	case errors.Is(err, jetstream.ErrJetStreamNotEnabled), errors.Is(err, jetstream.ErrJetStreamNotEnabledForAccount):
		return nil, &FatalError{fmt.Errorf("JetStream is not enabled on %s (start nats-server with -js)", redactURL(u.cfg.URL))}
	case err != nil:
		return nil, fmt.Errorf("look up JetStream stream %s: %w", name, err)
	}
	for _, s := range st.CachedInfo().Config.Subjects {
		if subjectCovers(s, u.filter) {
			return st, nil
		}
	}
	return nil, &FatalError{fmt.Errorf("JetStream stream %s (subjects %v) does not capture %s: add that subject to the stream or change the sink's subject", name, st.CachedInfo().Config.Subjects, u.filter)}
}

// Ship publishes events asynchronously (up to max_in_flight outstanding)
// and waits for each acknowledgment in order.
func (u *natsUpstream) Ship(ctx context.Context, events []Event) (int, []Reject, error) {
	if u.js == nil {
		return 0, nil, errors.New("not connected")
	}
	ctx, cancel := context.WithTimeout(ctx, u.cfg.Timeout.Duration)
	defer cancel()
	futures := make([]jetstream.PubAckFuture, len(events))
	var rejects []Reject
	var pubErr error
	limit := len(events)
	for i := range events {
		m := u.message(&events[i])
		if size := int64(len(m.Data) + headerSize(m.Header) + len(m.Subject)); size > u.maxSize {
			rejects = append(rejects, Reject{Index: i, Reason: fmt.Sprintf("message of %d bytes exceeds the upstream's limit of %d bytes", size, u.maxSize)})
			continue
		}
		f, err := u.js.PublishMsgAsync(m, jetstream.WithMsgID(m.Header.Get(nats.MsgIdHdr)), jetstream.WithExpectStream(u.cfg.JetStreamStream), jetstream.WithRetryAttempts(0))
		if err != nil {
			// The connection broke: settle what was sent, retry the rest.
			pubErr, limit = fmt.Errorf("publish sequence %d: %w", events[i].Sequence, err), i
			break
		}
		futures[i] = f
	}
	for i := range limit {
		f := futures[i]
		if f == nil {
			continue // rejected before sending
		}
		select {
		case <-f.Ok():
		case err := <-f.Err():
			var apiErr *jetstream.APIError
			if errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamMessageExceedsMaximum {
				rejects = append(rejects, Reject{Index: i, Reason: "JetStream: " + apiErr.Description})
				continue
			}
			return i, rejects, fmt.Errorf("publish sequence %d: %w", events[i].Sequence, err)
		case <-ctx.Done():
			return i, rejects, fmt.Errorf("no acknowledgment for sequence %d within %s: %w", events[i].Sequence, u.cfg.Timeout, ctx.Err())
		}
	}
	return limit, rejects, pubErr
}

func (u *natsUpstream) message(e *Event) *nats.Msg {
	h := nats.Header{}
	h.Set(nats.MsgIdHdr, MsgID(u.node, u.stream, e.Sequence))
	h.Set(HeaderNode, u.node)
	h.Set(HeaderStream, u.stream)
	h.Set(HeaderSequence, strconv.FormatInt(e.Sequence, 10))
	h.Set(HeaderTimestamp, time.Unix(0, e.Timestamp).UTC().Format(time.RFC3339Nano))
	if len(e.Key) > 0 {
		h.Set(HeaderKey, string(e.Key))
	}
	if len(e.Producer) > 0 {
		h.Set(HeaderProducer, string(e.Producer))
	}
	if e.HasProducerSeq {
		h.Set(HeaderProducerSeq, strconv.FormatInt(e.ProducerSeq, 10))
	}
	return &nats.Msg{Subject: u.tmpl.render(u.node, u.stream, e.Key), Header: h, Data: e.Data}
}

func headerSize(h nats.Header) int {
	n := 12
	for k, vs := range h {
		for _, v := range vs {
			n += len(k) + len(v) + 4
		}
	}
	return n
}

// Close closes the connection.
func (u *natsUpstream) Close() error {
	if u.nc != nil {
		u.nc.Close()
	}
	u.nc, u.js = nil, nil
	return nil
}

// subjectTemplate is a parsed subject: literal parts between tokens.
type subjectTemplate struct{ parts []string } // literal, token, literal, token, ...

func parseSubject(t string) subjectTemplate {
	var parts []string
	for {
		i := strings.IndexByte(t, '{')
		if i < 0 {
			break
		}
		j := strings.IndexByte(t[i:], '}')
		if j < 0 {
			break
		}
		parts = append(parts, t[:i], t[i:i+j+1])
		t = t[i+j+1:]
	}
	return subjectTemplate{parts: append(parts, t)}
}

func (t subjectTemplate) build(node, stream, key string) string {
	var b strings.Builder
	for i, p := range t.parts {
		if i%2 == 0 {
			b.WriteString(p)
			continue
		}
		switch p {
		case "{node}":
			b.WriteString(SubjectToken(node))
		case "{stream}":
			b.WriteString(SubjectToken(stream))
		case "{key}":
			b.WriteString(key)
		}
	}
	return b.String()
}

func (t subjectTemplate) render(node, stream string, key []byte) string {
	return t.build(node, stream, SubjectToken(string(key)))
}

// filter is the subject filter matching every subject of node's stream.
func (t subjectTemplate) filter(node, stream string) string { return t.build(node, stream, "*") }

// SubjectToken makes s one NATS subject token: characters other than
// letters, digits, '-' and '_' become '_'; an empty s becomes "_".
func SubjectToken(s string) string {
	if s == "" {
		return "_"
	}
	b := []byte(s)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			b[i] = '_'
		}
	}
	return string(b)
}

// subjectCovers reports whether stream subject pattern p matches every
// subject matched by filter f (tokens, '*' and '>').
func subjectCovers(p, f string) bool {
	pt, ft := strings.Split(p, "."), strings.Split(f, ".")
	for i, tok := range pt {
		if tok == ">" {
			return i < len(ft)
		}
		if i >= len(ft) {
			return false
		}
		if tok == "*" {
			if ft[i] == ">" {
				return false
			}
			continue
		}
		if tok != ft[i] {
			return false
		}
	}
	return len(pt) == len(ft)
}
