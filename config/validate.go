package config

import (
	"encoding/base64"
	"errors"
	"fmt"
	"math/bits"
	"net"
	"slices"
	"strconv"
	"strings"
	"unicode"
)

// Limits enforced by validation.
const (
	MinBufferSize = 2
	MaxBufferSize = 1 << 30
	maxNodeID     = 128
	maxLabel      = 255 // memberlist's label limit
)

// Validate checks c and returns every problem at once (errors.Join of
// *Error with Key set and no location). Load already validates; use this
// for a Config built in code.
func (c Config) Validate() error {
	var errs []error
	validate(&c, func(keys []string, msg string) {
		errs = append(errs, &Error{Key: keys[0], Msg: msg})
	})
	return errors.Join(errs...)
}

// validate checks every key; report receives the key(s) a problem is about
// (the first explicitly-set one is used as its location) and the message.
func validate(c *Config, report func(keys []string, msg string)) {
	bad := func(msg string, keys ...string) { report(keys, msg) }
	oneOf := func(key, v string, allowed []string) {
		if !slices.Contains(allowed, v) {
			bad(fmt.Sprintf("%q is not one of %s", v, strings.Join(allowed, ", ")), key)
		}
	}
	port := func(key string, p int, zeroOK bool) {
		if (p == 0 && zeroOK) || (p >= 1 && p <= 65535) {
			return
		}
		bad(fmt.Sprintf("port %d is out of range 1..65535", p), key)
	}
	atLeast := func(key string, v, lo int) {
		if v < lo {
			bad(fmt.Sprintf("must be at least %d (got %d)", lo, v), key)
		}
	}
	nonNegDur := func(key string, d Duration) {
		if d.Duration < 0 {
			bad(fmt.Sprintf("duration %s must not be negative", d), key)
		}
	}
	posDur := func(key string, d Duration) {
		if d.Duration <= 0 {
			bad(fmt.Sprintf("duration %s must be greater than zero", d), key)
		}
	}
	nonEmpty := func(key, v string) bool {
		if strings.TrimSpace(v) == "" {
			bad("must not be empty", key)
			return false
		}
		return true
	}

	// [node]
	if nonEmpty("node.id", c.Node.ID) {
		switch {
		case len(c.Node.ID) > maxNodeID:
			bad(fmt.Sprintf("node id is %d bytes long; the limit is %d", len(c.Node.ID), maxNodeID), "node.id")
		case strings.IndexFunc(c.Node.ID, func(r rune) bool { return unicode.IsSpace(r) || !unicode.IsPrint(r) }) >= 0:
			bad(fmt.Sprintf("node id %q must not contain spaces or control characters", c.Node.ID), "node.id")
		}
	}
	nonEmpty("node.data_dir", c.Node.DataDir)

	// [server]
	if nonEmpty("server.host", c.Server.Host) {
		if err := checkHost(c.Server.Host); err != nil {
			bad(err.Error(), "server.host")
		}
	}
	port("server.port", c.Server.Port, false)
	if c.Server.BodyLimit < 1 || c.Server.BodyLimit > 4*GiB {
		bad(fmt.Sprintf("body limit %s must be between 1 byte and 4GiB", c.Server.BodyLimit), "server.body_limit")
	}
	nonNegDur("server.read_timeout", c.Server.ReadTimeout)
	nonNegDur("server.write_timeout", c.Server.WriteTimeout)
	nonNegDur("server.idle_timeout", c.Server.IdleTimeout)
	posDur("server.shutdown_timeout", c.Server.ShutdownTimeout)

	// [ring]
	if n := c.Ring.BufferSize; n < MinBufferSize || n > MaxBufferSize || n&(n-1) != 0 {
		msg := fmt.Sprintf("%d is not a power of two between %d and %d", n, MinBufferSize, MaxBufferSize)
		if n > MinBufferSize && n < MaxBufferSize {
			lo := 1 << (bits.Len(uint(n)) - 1)
			msg += fmt.Sprintf(" (try %d or %d)", lo, lo*2)
		}
		bad(msg, "ring.buffer_size")
	}
	oneOf("ring.wait_strategy", c.Ring.WaitStrategy, waitStrategies)
	if c.Ring.MaxEventSize < 1 || c.Ring.MaxEventSize > GiB {
		bad(fmt.Sprintf("max event size %s must be between 1 byte and 1GiB", c.Ring.MaxEventSize), "ring.max_event_size")
	}
	nonNegDur("ring.publish_timeout", c.Ring.PublishTimeout)

	// [api]
	tokens := func(key string, ts []string) {
		for i, t := range ts {
			if t == "" || strings.IndexFunc(t, func(r rune) bool { return unicode.IsSpace(r) || !unicode.IsPrint(r) }) >= 0 {
				bad(fmt.Sprintf("token %d is empty or contains spaces or control characters", i+1), key)
			}
		}
	}
	tokens("api.publish_tokens", c.API.PublishTokens)
	tokens("api.admin_tokens", c.API.AdminTokens)
	atLeast("api.max_batch", c.API.MaxBatch, 1)
	atLeast("api.read_limit", c.API.ReadLimit, 1)
	atLeast("api.idempotency_window", c.API.IdempotencyWindow, 1)
	atLeast("api.max_producers", c.API.MaxProducers, 1)

	// [journal]
	oneOf("journal.fsync", c.Journal.Fsync, fsyncPolicies)
	if c.Journal.Fsync == "interval" {
		posDur("journal.fsync_interval", c.Journal.FsyncInterval)
	} else {
		nonNegDur("journal.fsync_interval", c.Journal.FsyncInterval)
	}
	switch {
	case c.Journal.SegmentSize < 64*KiB || c.Journal.SegmentSize > 4*GiB:
		bad(fmt.Sprintf("segment size %s must be between 64KiB and 4GiB", c.Journal.SegmentSize), "journal.segment_size")
	case c.Journal.SegmentSize < c.Ring.MaxEventSize:
		bad(fmt.Sprintf("segment size %s is smaller than ring.max_event_size %s; an event must fit in one segment",
			c.Journal.SegmentSize, c.Ring.MaxEventSize), "journal.segment_size", "ring.max_event_size")
	}
	if c.Journal.RetentionBytes < 0 {
		bad("must not be negative (0 = unlimited)", "journal.retention_bytes")
	}
	nonNegDur("journal.retention_age", c.Journal.RetentionAge)
	oneOf("journal.default_ack", c.Journal.DefaultAck, ackLevels)
	if !c.Journal.Enabled && c.Journal.DefaultAck == "durable" {
		bad(`default ack "durable" needs journal.enabled = true; set default_ack = "memory" or enable the journal`,
			"journal.default_ack", "journal.enabled")
	}

	// [modules]
	nonEmpty("modules.dir", c.Modules.Dir)
	nonNegDur("modules.debounce", c.Modules.Debounce)

	// [cluster]
	if nonEmpty("cluster.bind_addr", c.Cluster.BindAddr) && net.ParseIP(c.Cluster.BindAddr) == nil {
		bad(fmt.Sprintf("bind address %q must be an IP address (e.g. 0.0.0.0 or 127.0.0.1)", c.Cluster.BindAddr), "cluster.bind_addr")
	}
	port("cluster.bind_port", c.Cluster.BindPort, false)
	if a := c.Cluster.AdvertiseAddr; a != "" {
		if err := checkHost(a); err != nil {
			bad(err.Error(), "cluster.advertise_addr")
		}
	}
	port("cluster.advertise_port", c.Cluster.AdvertisePort, true)
	if c.Cluster.Enabled && c.Cluster.BindPort == c.Server.Port {
		bad(fmt.Sprintf("cluster bind port %d is the same as the HTTP server port", c.Cluster.BindPort),
			"cluster.bind_port", "server.port")
	}
	for _, s := range c.Cluster.Seeds {
		if err := checkSeed(s); err != nil {
			bad(err.Error(), "cluster.seeds")
		}
	}
	oneOf("cluster.preset", c.Cluster.Preset, presets)
	for _, d := range []struct {
		key string
		v   Duration
	}{
		{"cluster.probe_interval", c.Cluster.ProbeInterval},
		{"cluster.probe_timeout", c.Cluster.ProbeTimeout},
		{"cluster.gossip_interval", c.Cluster.GossipInterval},
		{"cluster.push_pull_interval", c.Cluster.PushPullInterval},
		{"cluster.rejoin_interval", c.Cluster.RejoinInterval},
		{"cluster.dead_node_reclaim_time", c.Cluster.DeadNodeReclaimTime},
	} {
		nonNegDur(d.key, d.v)
	}
	if c.Cluster.ProbeInterval.Duration > 0 && c.Cluster.ProbeTimeout.Duration >= c.Cluster.ProbeInterval.Duration {
		bad(fmt.Sprintf("probe timeout %s must be shorter than probe_interval %s", c.Cluster.ProbeTimeout, c.Cluster.ProbeInterval),
			"cluster.probe_timeout", "cluster.probe_interval")
	}
	if c.Cluster.SuspicionMult < 0 {
		bad("must not be negative (0 = the preset's value)", "cluster.suspicion_mult")
	}
	seenKeys := map[string]int{}
	for i, k := range c.Cluster.Keyring {
		key, err := base64.StdEncoding.DecodeString(k)
		switch {
		case err != nil:
			bad(fmt.Sprintf("key %d is not valid base64 (generate one with: head -c 32 /dev/urandom | base64)", i+1), "cluster.keyring")
		case len(key) != 16 && len(key) != 24 && len(key) != 32:
			bad(fmt.Sprintf("key %d decodes to %d bytes; AES keys are 16, 24 or 32 bytes", i+1, len(key)), "cluster.keyring")
		}
		if j, dup := seenKeys[k]; dup {
			bad(fmt.Sprintf("key %d repeats key %d", i+1, j+1), "cluster.keyring")
		}
		seenKeys[k] = i
	}
	if len(c.Cluster.Label) > maxLabel {
		bad(fmt.Sprintf("label is %d bytes long; the limit is %d", len(c.Cluster.Label), maxLabel), "cluster.label")
	}

	// [log]
	oneOf("log.level", c.Log.Level, logLevels)
	oneOf("log.format", c.Log.Format, logFormats)
	// [[sinks]]
	validateSinks(c, bad)
}

// checkHost accepts an IP address or a DNS host name, without a port.
func checkHost(h string) error {
	if net.ParseIP(h) != nil {
		return nil
	}
	if strings.Contains(h, ":") {
		return fmt.Errorf("host %q must not include a port (ports are separate keys)", h)
	}
	if len(h) > 253 {
		return fmt.Errorf("host name %q is too long", h)
	}
	for _, label := range strings.Split(strings.TrimSuffix(h, "."), ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return fmt.Errorf("%q is not a valid IP address or host name", h)
		}
		for _, r := range label {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
				return fmt.Errorf("%q is not a valid IP address or host name", h)
			}
		}
	}
	return nil
}

// checkSeed accepts the seed forms the cluster layer resolves: "host:port"
// (a gossip address, or another appliance's HTTP API address), a bare
// "host" (gossip on the default port), or "http(s)://host[:port]" (the API
// address only). IPv6 hosts are bracketed: "[::1]:7946".
func checkSeed(s string) error {
	hp := s
	for _, p := range []string{"http://", "https://"} {
		if strings.HasPrefix(s, p) {
			hp = strings.TrimSuffix(strings.TrimPrefix(s, p), "/")
		}
	}
	h, p, err := net.SplitHostPort(hp)
	if err != nil {
		bracketedIPv6 := strings.HasPrefix(hp, "[") && strings.HasSuffix(hp, "]") && net.ParseIP(hp[1:len(hp)-1]) != nil
		if !strings.Contains(hp, ":") || bracketedIPv6 { // a bare host: default gossip (or HTTP) port
			if err := checkHost(strings.Trim(hp, "[]")); err != nil {
				return fmt.Errorf("seed %q: %w", s, err)
			}
			return nil
		}
		return fmt.Errorf("seed %q must be host:port, host, or http://host:port (e.g. 10.0.0.2:7946)", s)
	}
	if h == "" {
		return fmt.Errorf("seed %q has no host", s)
	}
	if err := checkHost(h); err != nil {
		return fmt.Errorf("seed %q: %w", s, err)
	}
	n, err := strconv.Atoi(p)
	if err != nil || n < 1 || n > 65535 {
		return fmt.Errorf("seed %q: port %q is not in 1..65535", s, p)
	}
	return nil
}
