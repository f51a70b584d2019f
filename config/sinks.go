package config

import (
	"fmt"
	"net/url"
	"os"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"time"
)

// SinkConfig is one [[sinks]] entry: a store-and-forward shipper of one
// source stream to an upstream (NATS JetStream or an HTTP receiver such as
// another BadBatch). See docs/sinks.md.
type SinkConfig struct {
	// Name identifies the sink: [a-z0-9_-]{1,64}, unique.
	Name string `toml:"name"`
	// Type is "nats" or "http".
	Type string `toml:"type"`
	// Source is "events" (the input journal) or an output stream name.
	Source string `toml:"source"`
	// URL is, for nats, one or more comma-separated server URLs; for http
	// the publish endpoint (e.g. https://hub:8080/api/v1/events).
	URL string `toml:"url"`
	// Subject (nats) is the subject template; tokens {node}, {stream}, {key}.
	Subject string `toml:"subject"`
	// JetStreamStream (nats) is the JetStream stream that must capture Subject.
	JetStreamStream string `toml:"jetstream_stream"`
	// CreateStream (nats) creates JetStreamStream (file storage) when missing.
	CreateStream bool `toml:"create_stream"`
	// DuplicateWindow (nats) is the duplicate window of a stream the sink
	// creates; 0 means the server's default (2m).
	DuplicateWindow Duration `toml:"duplicate_window"`
	// Credentials (nats: at most one of creds_file, nkey_file, token,
	// user+password; http: token, sent as a bearer token).
	CredsFile string `toml:"creds_file"`
	NKeyFile  string `toml:"nkey_file"`
	Token     string `toml:"token" secret:"true"`
	User      string `toml:"user"`
	Password  string `toml:"password" secret:"true"`
	// TLS: CA bundle to verify the upstream, client certificate and key.
	CAFile   string `toml:"ca_file"`
	CertFile string `toml:"cert_file"`
	KeyFile  string `toml:"key_file"`
	// Batch is the number of events per upstream write; default 500.
	Batch int `toml:"batch"`
	// Linger is how long to wait to fill a batch; default 5ms.
	Linger Duration `toml:"linger"`
	// MaxInFlight bounds the unacknowledged events; default 4096.
	MaxInFlight int `toml:"max_in_flight"`
	// RetryMin and RetryMax bound the exponential backoff (with jitter).
	RetryMin Duration `toml:"retry_min"`
	RetryMax Duration `toml:"retry_max"`
	// Timeout bounds one upstream write or query; default 10s.
	Timeout Duration `toml:"timeout"`
	// MaxBytesPerSecond limits the payload rate (0 = unlimited).
	MaxBytesPerSecond ByteSize `toml:"max_bytes_per_second"`
	// Enabled ships when true; false keeps the sink (and its checkpoint)
	// paused. Default true.
	Enabled bool `toml:"enabled"`
	// Gzip (http) compresses request bodies.
	Gzip bool `toml:"gzip"`
	// OnBacklogFull is what happens when the journal reaches
	// journal.retention_bytes with events this sink has not shipped:
	// "reject" (default: new publishes get 507) or "drop_oldest".
	OnBacklogFull string `toml:"on_backlog_full"`
}

// Sink types and backlog policies.
var (
	sinkTypes    = []string{"nats", "http"}
	backlogModes = []string{"reject", "drop_oldest"}
)

// SinkSourceEvents is the source name of the input stream.
const SinkSourceEvents = "events"

// DefaultSink returns a sink with every default filled in (name, type and
// url left empty).
func DefaultSink() SinkConfig {
	return SinkConfig{
		Source:        SinkSourceEvents,
		Subject:       "badbatch.{node}.{stream}",
		CreateStream:  true,
		Batch:         500,
		Linger:        D(5 * time.Millisecond),
		MaxInFlight:   4096,
		RetryMin:      D(100 * time.Millisecond),
		RetryMax:      D(30 * time.Second),
		Timeout:       D(10 * time.Second),
		Enabled:       true,
		OnBacklogFull: "reject",
	}
}

// sinkField is one key of a [[sinks]] table.
type sinkField struct {
	name   string
	index  int
	secret bool
}

var sinkFields = func() []sinkField {
	t := reflect.TypeFor[SinkConfig]()
	out := make([]sinkField, 0, t.NumField())
	for i := range t.NumField() {
		f := t.Field(i)
		out = append(out, sinkField{name: tomlName(f), index: i, secret: f.Tag.Get("secret") == "true"})
	}
	return out
}()

func sinkFieldByName(name string) (sinkField, bool) {
	for _, f := range sinkFields {
		if f.name == name {
			return f, true
		}
	}
	return sinkField{}, false
}

// sinkKey is the dotted key of field name of sink i in messages.
func sinkKey(i int, name string) string {
	if name == "" {
		return fmt.Sprintf("sinks[%d]", i)
	}
	return fmt.Sprintf("sinks[%d].%s", i, name)
}

var headerRE = regexp.MustCompile(`^\s*\[\[?\s*([^\]]*?)\s*\]\]?`)
var keyLineRE = regexp.MustCompile(`^\s*("?)([A-Za-z0-9_-]+)("?)\s*=`)

// sinkLines finds, for every [[sinks]] table in the file, the line of its
// header and of each key in it (BurntSushi/toml records one position per
// key path, which all elements of an array of tables share).
func sinkLines(data []byte) []map[string]int {
	var out []map[string]int
	var cur map[string]int
	for n, line := range strings.Split(string(data), "\n") {
		if m := headerRE.FindStringSubmatch(line); m != nil {
			cur = nil
			if strings.HasPrefix(strings.TrimSpace(line), "[[") && strings.Trim(m[1], `"' `) == "sinks" {
				cur = map[string]int{"": n + 1}
				out = append(out, cur)
			}
			continue
		}
		if m := keyLineRE.FindStringSubmatch(line); m != nil && cur != nil {
			if _, seen := cur[m[2]]; !seen {
				cur[m[2]] = n + 1
			}
		}
	}
	return out
}

// readSinks decodes the [[sinks]] array of tables.
func (r *resolver) readSinks(cfg *Config, raw any, data []byte, path string, headerLine int) {
	arr, ok := raw.([]map[string]any)
	if !ok {
		r.errs = append(r.errs, &Error{File: path, Line: headerLine, Key: "sinks",
			Msg: fmt.Sprintf("sinks must be an array of tables ([[sinks]]), not %s", tomlTypeName(raw))})
		return
	}
	lines := sinkLines(data)
	cfg.Sinks = make([]SinkConfig, 0, len(arr))
	for i, tbl := range arr {
		sc := DefaultSink()
		ln := map[string]int{}
		if i < len(lines) {
			ln = lines[i]
		}
		r.origins[sinkKey(i, "")] = origin{line: ln[""]}
		v := reflect.ValueOf(&sc).Elem()
		for _, name := range sortedKeys(tbl) {
			key := sinkKey(i, name)
			line := ln[name]
			if line == 0 {
				line = ln[""]
			}
			f, known := sinkFieldByName(name)
			if !known {
				msg := fmt.Sprintf("unknown key %q in [[sinks]]", name)
				if s := suggestSinkKey(name); s != "" {
					msg += fmt.Sprintf(" (did you mean %q?)", s)
				}
				r.errs = append(r.errs, &Error{File: path, Line: line, Key: key, Msg: msg})
				continue
			}
			r.origins[key] = origin{line: line}
			if err := setTOMLValue(v.Field(f.index), tbl[name]); err != nil {
				r.bad[key] = true
				r.errs = append(r.errs, &Error{File: path, Line: line, Key: key, Msg: err.Error()})
			}
		}
		cfg.Sinks = append(cfg.Sinks, sc)
	}
}

func sortedKeys(m map[string]any) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func suggestSinkKey(name string) string {
	best, bestD := "", 3
	for _, f := range sinkFields {
		if d := editDistance(f.name, name); d < bestD {
			best, bestD = f.name, d
		}
	}
	return best
}

var (
	sinkNameRE   = regexp.MustCompile(`^[a-z0-9_-]{1,64}$`)
	streamNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)
	jsStreamRE   = regexp.MustCompile(`^[A-Za-z0-9_-]{1,255}$`)
	tokenRE      = regexp.MustCompile(`\{[^{}]*\}`)
)

// validateSinks checks every [[sinks]] entry.
func validateSinks(c *Config, bad func(msg string, keys ...string)) {
	seen := map[string]int{}
	anyEnabled := false
	for i := range c.Sinks {
		s := &c.Sinks[i]
		k := func(name string) string { return sinkKey(i, name) }
		label := fmt.Sprintf("sink %q", s.Name)
		switch {
		case s.Name == "":
			bad("a sink needs a name ([a-z0-9_-]{1,64})", k("name"), k(""))
			label = fmt.Sprintf("sinks[%d]", i)
		case !sinkNameRE.MatchString(s.Name):
			bad(fmt.Sprintf("sink name %q must match [a-z0-9_-]{1,64}", s.Name), k("name"))
		default:
			if j, dup := seen[s.Name]; dup {
				bad(fmt.Sprintf("sink name %q is already used by sinks[%d]", s.Name, j), k("name"))
			}
			seen[s.Name] = i
		}
		anyEnabled = anyEnabled || s.Enabled
		if s.Source != SinkSourceEvents && !streamNameRE.MatchString(s.Source) {
			bad(fmt.Sprintf("%s: source %q is neither \"events\" nor a valid output stream name ([a-z0-9][a-z0-9_-]{0,62}), so it can never exist", label, s.Source), k("source"), k(""))
		}
		switch s.Type {
		case "nats":
			validateNATSSink(s, label, k, bad)
		case "http":
			validateHTTPSink(s, label, k, bad)
		case "":
			bad(fmt.Sprintf("%s needs a type: \"nats\" or \"http\"", label), k("type"), k(""))
		default:
			bad(fmt.Sprintf("%s: type %q is not one of %s", label, s.Type, strings.Join(sinkTypes, ", ")), k("type"))
		}
		if (s.CertFile == "") != (s.KeyFile == "") {
			bad(fmt.Sprintf("%s: cert_file and key_file go together", label), k("cert_file"), k("key_file"))
		}
		for _, f := range []struct{ key, path string }{{"ca_file", s.CAFile}, {"cert_file", s.CertFile}, {"key_file", s.KeyFile}, {"creds_file", s.CredsFile}, {"nkey_file", s.NKeyFile}} {
			if f.path == "" {
				continue
			}
			if _, err := os.Stat(f.path); err != nil {
				bad(fmt.Sprintf("%s: cannot read %s: %v", label, f.key, err), k(f.key))
			}
		}
		if s.Batch < 1 || s.Batch > 100000 {
			bad(fmt.Sprintf("%s: batch %d is out of range 1..100000", label, s.Batch), k("batch"))
		}
		if s.MaxInFlight < s.Batch {
			bad(fmt.Sprintf("%s: max_in_flight %d must be at least batch (%d)", label, s.MaxInFlight, s.Batch), k("max_in_flight"), k("batch"))
		}
		if s.Linger.Duration < 0 {
			bad(fmt.Sprintf("%s: linger %s must not be negative", label, s.Linger), k("linger"))
		}
		if s.RetryMin.Duration <= 0 {
			bad(fmt.Sprintf("%s: retry_min %s must be greater than zero", label, s.RetryMin), k("retry_min"))
		}
		if s.RetryMax.Duration < s.RetryMin.Duration {
			bad(fmt.Sprintf("%s: retry_max %s must be at least retry_min %s", label, s.RetryMax, s.RetryMin), k("retry_max"), k("retry_min"))
		}
		if s.Timeout.Duration <= 0 {
			bad(fmt.Sprintf("%s: timeout %s must be greater than zero", label, s.Timeout), k("timeout"))
		}
		if s.DuplicateWindow.Duration < 0 {
			bad(fmt.Sprintf("%s: duplicate_window %s must not be negative", label, s.DuplicateWindow), k("duplicate_window"))
		}
		if !contains(backlogModes, s.OnBacklogFull) {
			bad(fmt.Sprintf("%s: on_backlog_full %q is not one of %s", label, s.OnBacklogFull, strings.Join(backlogModes, ", ")), k("on_backlog_full"))
		}
	}
	if anyEnabled && !c.Journal.Enabled {
		bad("sinks read their source from the journal: set journal.enabled = true or disable every sink", "journal.enabled")
	}
}

func validateNATSSink(s *SinkConfig, label string, k func(string) string, bad func(string, ...string)) {
	if strings.TrimSpace(s.URL) == "" {
		bad(fmt.Sprintf("%s needs url (e.g. \"nats://127.0.0.1:4222\")", label), k("url"), k(""))
	}
	for u := range strings.SplitSeq(s.URL, ",") {
		u = strings.TrimSpace(u)
		if u == "" {
			continue
		}
		pu, err := url.Parse(u)
		if err != nil || pu.Host == "" || !contains([]string{"nats", "tls", "ws", "wss"}, pu.Scheme) {
			bad(fmt.Sprintf("%s: %q is not a NATS server URL (nats://host:port, tls://, ws:// or wss://)", label, u), k("url"))
		}
	}
	if err := checkSubjectTemplate(s.Subject); err != nil {
		bad(fmt.Sprintf("%s: subject %q: %v", label, s.Subject, err), k("subject"))
	}
	if !jsStreamRE.MatchString(s.JetStreamStream) {
		bad(fmt.Sprintf("%s needs jetstream_stream, a JetStream stream name of letters, digits, '_' or '-' (got %q)", label, s.JetStreamStream), k("jetstream_stream"), k(""))
	}
	n := 0
	for _, v := range []string{s.CredsFile, s.NKeyFile, s.Token, s.User} {
		if v != "" {
			n++
		}
	}
	if n > 1 {
		bad(fmt.Sprintf("%s: give at most one of creds_file, nkey_file, token and user+password", label), k("creds_file"), k("nkey_file"), k("token"), k("user"))
	}
	if (s.User == "") != (s.Password == "") {
		bad(fmt.Sprintf("%s: user and password go together", label), k("user"), k("password"))
	}
	if s.Gzip {
		bad(fmt.Sprintf("%s: gzip applies to http sinks only", label), k("gzip"))
	}
}

func validateHTTPSink(s *SinkConfig, label string, k func(string) string, bad func(string, ...string)) {
	pu, err := url.Parse(strings.TrimSpace(s.URL))
	if s.URL == "" || err != nil || pu.Host == "" || (pu.Scheme != "http" && pu.Scheme != "https") {
		bad(fmt.Sprintf("%s: url %q must be an http:// or https:// URL of a publish endpoint (e.g. https://hub:8080/api/v1/events)", label, s.URL), k("url"), k(""))
	}
	for _, f := range []struct{ key, v string }{{"creds_file", s.CredsFile}, {"nkey_file", s.NKeyFile}, {"user", s.User}, {"password", s.Password}, {"jetstream_stream", s.JetStreamStream}} {
		if f.v != "" {
			bad(fmt.Sprintf("%s: %s applies to nats sinks only (http sinks authenticate with token)", label, f.key), k(f.key))
		}
	}
}

// checkSubjectTemplate checks a NATS subject template.
func checkSubjectTemplate(t string) error {
	if t == "" {
		return fmt.Errorf("must not be empty")
	}
	for _, tok := range tokenRE.FindAllString(t, -1) {
		if tok != "{node}" && tok != "{stream}" && tok != "{key}" {
			return fmt.Errorf("unknown token %s (allowed: {node}, {stream}, {key})", tok)
		}
	}
	plain := tokenRE.ReplaceAllString(t, "x")
	if strings.ContainsAny(plain, " \t\r\n*>{}") {
		return fmt.Errorf("must not contain spaces, wildcards (* >) or stray braces")
	}
	for p := range strings.SplitSeq(plain, ".") {
		if p == "" {
			return fmt.Errorf("has an empty token (leading, trailing or double '.')")
		}
	}
	return nil
}

func contains(list []string, v string) bool {
	for _, x := range list {
		if x == v {
			return true
		}
	}
	return false
}
