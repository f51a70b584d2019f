package config

import (
	"strings"
	"testing"
	"time"
)

func TestSinksLoad(t *testing.T) {
	p := writeTOML(t, `
[journal]
retention_bytes = "1GiB"

[[sinks]]
name = "hub"
type = "nats"
url = "nats://10.0.0.5:4222, nats://10.0.0.6:4222"
subject = "badbatch.{node}.{stream}.{key}"
jetstream_stream = "EDGE"
token = "s3cret"
linger = "2ms"

[[sinks]]
name = "upstream"
type = "http"
source = "alerts"
url = "https://hub.example:8080/api/v1/events"
token = "t0ken"
gzip = true
on_backlog_full = "drop_oldest"
enabled = false
`)
	l := mustLoad(t, []string{"--config", p}, nil)
	s := l.Config.Sinks
	if len(s) != 2 {
		t.Fatalf("got %d sinks, want 2", len(s))
	}
	if s[0].Name != "hub" || s[0].Batch != 500 || s[0].Linger.Duration != 2*time.Millisecond || s[0].Source != "events" || !s[0].Enabled || s[0].OnBacklogFull != "reject" {
		t.Errorf("sink 0 = %+v", s[0])
	}
	if s[1].Source != "alerts" || !s[1].Gzip || s[1].Enabled || s[1].OnBacklogFull != "drop_oldest" {
		t.Errorf("sink 1 = %+v", s[1])
	}
	red := l.Config.Redacted()
	if red.Sinks[0].Token != Redacted || l.Config.Sinks[0].Token != "s3cret" {
		t.Errorf("redaction: %q / %q", red.Sinks[0].Token, l.Config.Sinks[0].Token)
	}
	out, err := red.TOML()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(out), "s3cret") || !strings.Contains(string(out), "[[sinks]]") {
		t.Errorf("TOML output:\n%s", out)
	}
	// The rendered document loads back to the same sinks.
	again := mustLoad(t, []string{"--config", writeTOML(t, string(mustTOML(t, l.Config)))}, nil)
	if len(again.Config.Sinks) != 2 || again.Config.Sinks[1].URL != s[1].URL {
		t.Errorf("round trip: %+v", again.Config.Sinks)
	}
}

func mustTOML(t *testing.T, c Config) []byte {
	t.Helper()
	b, err := c.TOML()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestSinksErrorsHaveLines(t *testing.T) {
	p := writeTOML(t, `[[sinks]]
name = "hub"
type = "nats"
url = "http://wrong"
jetstream_stream = "EDGE"
subject = "a.{nodes}"
bach = 5

[[sinks]]
name = "hub"
type = "kafka"
url = "x"

[[sinks]]
name = "Bad Name"
type = "http"
url = "ftp://hub"
source = "No Such!"
retry_min = 100
user = "u"
`)
	_, err := load([]string{"--config", p}, nil, testHost)
	if err == nil {
		t.Fatal("no error")
	}
	got := err.Error()
	for _, want := range []string{
		p + `:4: sinks[0].url: sink "hub": "http://wrong" is not a NATS server URL`,
		p + `:6: sinks[0].subject: sink "hub": subject "a.{nodes}": unknown token {nodes}`,
		p + `:7: sinks[0].bach: unknown key "bach" in [[sinks]] (did you mean "batch"?)`,
		p + `:10: sinks[1].name: sink name "hub" is already used by sinks[0]`,
		p + `:11: sinks[1].type: sink "hub": type "kafka" is not one of nats, http`,
		p + `:15: sinks[2].name: sink name "Bad Name" must match`,
		p + `:17: sinks[2].url: sink "Bad Name": url "ftp://hub" must be an http:// or https:// URL`,
		p + `:18: sinks[2].source: sink "Bad Name": source "No Such!" is neither`,
		p + `:19: sinks[2].retry_min: durations are strings with a unit`,
		p + `:20: sinks[2].user: sink "Bad Name": user applies to nats sinks only`,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("missing %q in:\n%s", want, got)
		}
	}
}

func TestSinksNeedJournal(t *testing.T) {
	c := Default()
	s := DefaultSink()
	s.Name, s.Type, s.URL = "up", "http", "http://127.0.0.1:1/api/v1/events"
	c.Sinks = []SinkConfig{s}
	if err := c.Validate(); err != nil {
		t.Fatalf("valid sink refused: %v", err)
	}
	c.Journal.Enabled = false
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "journal.enabled") {
		t.Fatalf("sink without journal: %v", err)
	}
}

func TestSinksDiff(t *testing.T) {
	a := Default()
	s := DefaultSink()
	s.Name, s.Type, s.URL = "up", "http", "http://127.0.0.1:1/api/v1/events"
	b := a
	b.Sinks = []SinkConfig{s}
	ch := Diff(a, b)
	if len(ch) != 1 || ch[0].Key != "sinks.up" || !ch[0].Live || ch[0].Old != "(none)" {
		t.Fatalf("add: %+v", ch)
	}
	c := b
	c.Sinks = []SinkConfig{s}
	c.Sinks[0].Token = "new"
	ch = Diff(b, c)
	if len(ch) != 1 || !strings.Contains(ch[0].New, "credentials changed") || strings.Contains(ch[0].New, "new") {
		t.Fatalf("change: %+v", ch)
	}
	if ch := Diff(b, a); len(ch) != 1 || ch[0].New != "(removed)" {
		t.Fatalf("remove: %+v", ch)
	}
}
