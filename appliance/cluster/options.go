package cluster

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/hashicorp/memberlist"
)

// Preset names accepted in Options.Preset.
const (
	PresetLAN   = "lan"
	PresetWAN   = "wan"
	PresetLocal = "local"
)

// SeedResolver turns one configured seed into a gossip address ("host:port").
// The default, HTTPSeedResolver, asks the seed's HTTP API for its node info.
type SeedResolver func(ctx context.Context, seed string) (gossipAddr string, err error)

// Options configures a Node. The daemon maps config.ClusterConfig onto it; the
// zero value of every duration or count means "the preset's value".
type Options struct {
	// NodeID is the unique member name (required): letters, digits, '.', '_', '-', ':', '@'; at most 128 bytes.
	NodeID string
	// BindAddr is the IP to bind gossip (TCP and UDP) on; "" means "0.0.0.0".
	BindAddr string
	// BindPort is the gossip port (TCP and UDP); 0 picks a free port (tests).
	BindPort int
	// AdvertiseAddr is the IP other members use to reach this node. It must be
	// an IP literal. Empty means the bind address, or when bound to 0.0.0.0 the
	// first private IP of the machine (an error if there is none).
	AdvertiseAddr string
	// AdvertisePort is the advertised gossip port; 0 means the bound port.
	AdvertisePort int
	// Seeds are gossip addresses ("host:port", "host") or HTTP API addresses of
	// other appliances ("host:port" answered by /api/v1/node/info, or
	// "http://host:port"); see resolveSeed for the exact rule.
	Seeds []string
	// Preset is lan (default), wan or local: memberlist's DefaultLANConfig,
	// DefaultWANConfig or DefaultLocalConfig.
	Preset string

	// ProbeInterval overrides the preset's failure-probe interval.
	ProbeInterval time.Duration
	// ProbeTimeout overrides the preset's probe ack timeout.
	ProbeTimeout time.Duration
	// GossipInterval overrides the preset's gossip interval.
	GossipInterval time.Duration
	// PushPullInterval overrides the preset's full state sync interval.
	PushPullInterval time.Duration
	// SuspicionMult overrides the preset's suspicion multiplier.
	SuspicionMult int
	// DeadNodeReclaimTime is how long a dead member's name stays bound to its
	// old address before a node of the same name may return on a new one.
	// Zero means the default for the preset (lan/local 10s, wan 60s).
	DeadNodeReclaimTime time.Duration
	// RejoinInterval is how often seeds and last-known peers that are not alive
	// members are joined again (partition healing, restarts). Zero means the
	// default (lan 10s, wan 30s, local 5s). Negative disables re-joining.
	RejoinInterval time.Duration
	// ReadyTimeout bounds how long Ready reports "waiting to join" when seeds
	// or known peers exist but none answers; after it the node is ready alone
	// (a warning is logged). Zero means 10s.
	ReadyTimeout time.Duration
	// MetaRefresh is how often MetaFunc is polled and the metadata re-gossiped
	// when it changed. Zero means 5s.
	MetaRefresh time.Duration

	// Keyring holds AES keys (16, 24 or 32 bytes); the first is the primary
	// used to encrypt, all are tried to decrypt. Empty disables encryption
	// (it cannot be enabled later without a restart).
	Keyring [][]byte
	// Label is an optional cluster label; members with another label are refused.
	Label string
	// StateDir, if set, holds peers.json (last-known peers, written atomically).
	StateDir string

	// MetaFunc supplies live metadata (API URL, version, ring fill, readiness).
	// A ModulesDigest left empty is filled from the announced modules.
	MetaFunc func() Meta
	// OnModulesChanged is called (from one goroutine owned by the Node, never
	// concurrently) when another member's announced module set changes.
	OnModulesChanged func(nodeID string, mods []ModuleInfo)
	// SeedResolver overrides how seeds are resolved (nil: HTTPSeedResolver).
	SeedResolver SeedResolver
	// ResolveTimeout bounds one seed resolution; zero means 1s.
	ResolveTimeout time.Duration
}

// DecodeKeys decodes base64 (standard or URL encoding, padded or not) AES keys
// as written in the TOML keyring, checking each is 16, 24 or 32 bytes.
func DecodeKeys(encoded []string) ([][]byte, error) {
	out := make([][]byte, 0, len(encoded))
	for i, s := range encoded {
		s = strings.TrimSpace(s)
		var key []byte
		var err error
		for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
			if key, err = enc.DecodeString(s); err == nil {
				break
			}
		}
		if err != nil {
			return nil, fmt.Errorf("cluster keyring[%d]: not base64: %w", i, err)
		}
		if err := memberlist.ValidateKey(key); err != nil {
			return nil, fmt.Errorf("cluster keyring[%d]: %d bytes: key must be 16, 24 or 32 bytes (AES-128/192/256)", i, len(key))
		}
		out = append(out, key)
	}
	return out, nil
}

func validNodeID(id string) error {
	if id == "" {
		return errors.New("node id is empty")
	}
	if len(id) > 128 {
		return fmt.Errorf("node id %q is longer than 128 bytes", id)
	}
	for _, r := range id {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
		case r == '.', r == '_', r == '-', r == ':', r == '@':
		default:
			return fmt.Errorf("node id %q contains %q (allowed: letters, digits, . _ - : @)", id, r)
		}
	}
	return nil
}

// settings is Options after validation and defaults.
type settings struct {
	opts           Options
	rejoin         time.Duration
	readyTimeout   time.Duration
	metaRefresh    time.Duration
	resolveTimeout time.Duration
}

// validate checks opts and fills in defaults. Every problem is reported.
func validate(opts Options) (settings, error) {
	var errs []error
	if err := validNodeID(opts.NodeID); err != nil {
		errs = append(errs, err)
	}
	if opts.BindAddr == "" {
		opts.BindAddr = "0.0.0.0"
	}
	if net.ParseIP(opts.BindAddr) == nil {
		errs = append(errs, fmt.Errorf("bind_addr %q is not an IP address", opts.BindAddr))
	}
	if opts.BindPort < 0 || opts.BindPort > 65535 {
		errs = append(errs, fmt.Errorf("bind_port %d is out of range 0-65535", opts.BindPort))
	}
	if opts.AdvertiseAddr != "" {
		ip := net.ParseIP(opts.AdvertiseAddr)
		switch {
		case ip == nil:
			errs = append(errs, fmt.Errorf("advertise_addr %q is not an IP address (a host name is not accepted; give the IP peers should use)", opts.AdvertiseAddr))
		case ip.IsUnspecified():
			errs = append(errs, fmt.Errorf("advertise_addr %q is unspecified; give the IP peers should use", opts.AdvertiseAddr))
		}
	}
	if opts.AdvertisePort < 0 || opts.AdvertisePort > 65535 {
		errs = append(errs, fmt.Errorf("advertise_port %d is out of range 0-65535", opts.AdvertisePort))
	}
	if opts.AdvertisePort != 0 && opts.AdvertiseAddr == "" {
		errs = append(errs, fmt.Errorf("advertise_port %d needs advertise_addr (memberlist ignores the port without an address)", opts.AdvertisePort))
	}
	if opts.Preset == "" {
		opts.Preset = PresetLAN
	}
	opts.Preset = strings.ToLower(opts.Preset)
	switch opts.Preset {
	case PresetLAN, PresetWAN, PresetLocal:
	default:
		errs = append(errs, fmt.Errorf("preset %q is not one of lan, wan, local", opts.Preset))
	}
	for name, d := range map[string]time.Duration{
		"probe_interval": opts.ProbeInterval, "probe_timeout": opts.ProbeTimeout,
		"gossip_interval": opts.GossipInterval, "push_pull_interval": opts.PushPullInterval,
		"dead_node_reclaim_time": opts.DeadNodeReclaimTime, "ready_timeout": opts.ReadyTimeout,
		"meta_refresh": opts.MetaRefresh, "resolve_timeout": opts.ResolveTimeout,
	} {
		if d < 0 {
			errs = append(errs, fmt.Errorf("%s %s is negative", name, d))
		}
	}
	if opts.SuspicionMult < 0 {
		errs = append(errs, fmt.Errorf("suspicion_mult %d is negative", opts.SuspicionMult))
	}
	if opts.ProbeTimeout > 0 && opts.ProbeInterval > 0 && opts.ProbeTimeout > opts.ProbeInterval {
		errs = append(errs, fmt.Errorf("probe_timeout %s exceeds probe_interval %s", opts.ProbeTimeout, opts.ProbeInterval))
	}
	for i, k := range opts.Keyring {
		if err := memberlist.ValidateKey(k); err != nil {
			errs = append(errs, fmt.Errorf("keyring[%d]: %d bytes: key must be 16, 24 or 32 bytes (AES-128/192/256)", i, len(k)))
		}
	}
	if len(opts.Label) > memberlist.LabelMaxSize {
		errs = append(errs, fmt.Errorf("label is %d bytes; at most %d", len(opts.Label), memberlist.LabelMaxSize))
	}
	for i, s := range opts.Seeds {
		if strings.TrimSpace(s) == "" {
			errs = append(errs, fmt.Errorf("seeds[%d] is empty", i))
		}
	}
	if len(errs) > 0 {
		return settings{}, fmt.Errorf("cluster options: %w", errors.Join(errs...))
	}
	s := settings{opts: opts, rejoin: opts.RejoinInterval, readyTimeout: opts.ReadyTimeout,
		metaRefresh: opts.MetaRefresh, resolveTimeout: opts.ResolveTimeout}
	if s.rejoin == 0 {
		switch opts.Preset {
		case PresetWAN:
			s.rejoin = 30 * time.Second
		case PresetLocal:
			s.rejoin = 5 * time.Second
		default:
			s.rejoin = 10 * time.Second
		}
	}
	if s.readyTimeout == 0 {
		s.readyTimeout = 10 * time.Second
	}
	if s.metaRefresh == 0 {
		s.metaRefresh = 5 * time.Second
	}
	if s.resolveTimeout == 0 {
		s.resolveTimeout = time.Second
	}
	return s, nil
}

// memberlistConfig builds the memberlist configuration (delegates are set by the caller).
func (s settings) memberlistConfig() (*memberlist.Config, error) {
	o := s.opts
	var c *memberlist.Config
	switch o.Preset {
	case PresetWAN:
		c = memberlist.DefaultWANConfig()
		c.DeadNodeReclaimTime = 60 * time.Second
	case PresetLocal:
		c = memberlist.DefaultLocalConfig()
		c.DeadNodeReclaimTime = 10 * time.Second
	default:
		c = memberlist.DefaultLANConfig()
		c.DeadNodeReclaimTime = 10 * time.Second
	}
	c.Name = o.NodeID
	c.BindAddr = o.BindAddr
	c.BindPort = o.BindPort
	c.AdvertiseAddr = o.AdvertiseAddr
	c.AdvertisePort = o.AdvertisePort
	if c.AdvertisePort == 0 {
		c.AdvertisePort = o.BindPort
	}
	if o.ProbeInterval > 0 {
		c.ProbeInterval = o.ProbeInterval
	}
	if o.ProbeTimeout > 0 {
		c.ProbeTimeout = o.ProbeTimeout
	}
	if c.ProbeTimeout > c.ProbeInterval {
		return nil, fmt.Errorf("cluster options: probe_timeout %s exceeds probe_interval %s (preset %s)", c.ProbeTimeout, c.ProbeInterval, o.Preset)
	}
	if o.GossipInterval > 0 {
		c.GossipInterval = o.GossipInterval
	}
	if o.PushPullInterval > 0 {
		c.PushPullInterval = o.PushPullInterval
		if c.GossipToTheDeadTime > o.PushPullInterval {
			c.GossipToTheDeadTime = o.PushPullInterval
		}
	}
	if o.SuspicionMult > 0 {
		c.SuspicionMult = o.SuspicionMult
	}
	if o.DeadNodeReclaimTime > 0 {
		c.DeadNodeReclaimTime = o.DeadNodeReclaimTime
	}
	if len(o.Keyring) > 0 {
		kr, err := memberlist.NewKeyring(o.Keyring, o.Keyring[0])
		if err != nil {
			return nil, fmt.Errorf("cluster keyring: %w", err)
		}
		c.Keyring = kr
	}
	c.Label = o.Label
	return c, nil
}
