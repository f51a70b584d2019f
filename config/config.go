// Package config is BadBatch's configuration: the TOML schema, embedded
// defaults, the command-line flags and BADBATCH_* environment overlay, and
// validation that reports every problem at once with its file, line and key.
//
// Precedence is flags > environment > TOML file > defaults. The documented
// example file with every key is config/badbatch.example.toml.
package config

import (
	"os"
	"slices"
	"strconv"
	"time"
)

// Config is the whole effective configuration of one node.
type Config struct {
	Node    NodeConfig    `toml:"node"`
	Server  ServerConfig  `toml:"server"`
	Ring    RingConfig    `toml:"ring"`
	API     APIConfig     `toml:"api"`
	Journal JournalConfig `toml:"journal"`
	Modules ModulesConfig `toml:"modules"`
	Cluster ClusterConfig `toml:"cluster"`
	Log     LogConfig     `toml:"log"`
	// Sinks are the [[sinks]] tables (TOML file only; no flags or
	// environment variables). Changes apply on SIGHUP.
	Sinks []SinkConfig `toml:"sinks,omitempty"`
}

// NodeConfig identifies the node and where it keeps its state.
type NodeConfig struct {
	// ID is the node's unique name; default "<hostname>-<server.port>".
	ID string `toml:"id"`
	// DataDir holds the journal, checkpoints and peer list; default "./data",
	// or "./data-<port>" when server.port is not 8080 and data_dir is not set
	// explicitly, so several local nodes do not share state.
	DataDir string `toml:"data_dir"`
}

// ServerConfig is the HTTP API listener.
type ServerConfig struct {
	Host            string   `toml:"host"`             // default "0.0.0.0"
	Port            int      `toml:"port"`             // default 8080
	BodyLimit       ByteSize `toml:"body_limit"`       // default 16MiB; larger requests get 413
	ReadTimeout     Duration `toml:"read_timeout"`     // default 30s; 0 = none
	WriteTimeout    Duration `toml:"write_timeout"`    // default 30s; 0 = none
	IdleTimeout     Duration `toml:"idle_timeout"`     // default 120s; 0 = none
	ShutdownTimeout Duration `toml:"shutdown_timeout"` // default 30s; bound on the graceful drain
}

// RingConfig is the disruptor ring buffer.
type RingConfig struct {
	// BufferSize is the number of slots, a power of two in [2, 1<<30]; default 1024.
	BufferSize int `toml:"buffer_size"`
	// WaitStrategy is one of WaitStrategies(); default "blocking".
	WaitStrategy string `toml:"wait_strategy"`
	// MaxEventSize is preallocated per slot; a larger event is refused with 413. Default 64KiB.
	MaxEventSize ByteSize `toml:"max_event_size"`
	// PublishTimeout bounds the wait on a full ring before 429; default 1s.
	PublishTimeout Duration `toml:"publish_timeout" reload:"live"`
	// PinCPUs pins busy-spin consumers to distinct physical cores; default false.
	PinCPUs bool `toml:"pin_cpus"`
}

// APIConfig holds the REST API's credentials and limits.
type APIConfig struct {
	// PublishTokens are bearer tokens allowed to publish and read (secret).
	PublishTokens []string `toml:"publish_tokens" secret:"true" reload:"live"`
	// AdminTokens are bearer tokens allowed everything (secret).
	AdminTokens []string `toml:"admin_tokens" secret:"true" reload:"live"`
	// MaxBatch is the largest number of events in one request; default 10000.
	MaxBatch int `toml:"max_batch" reload:"live"`
	// ReadLimit caps the events returned by one GET; default 1000.
	ReadLimit int `toml:"read_limit" reload:"live"`
	// IdempotencyWindow is how many recent sequences are remembered per producer; default 4096.
	IdempotencyWindow int `toml:"idempotency_window"`
	// MaxProducers is how many producers are tracked (LRU); default 10000.
	MaxProducers int `toml:"max_producers"`
}

// JournalConfig is the durable event journal.
type JournalConfig struct {
	Enabled        bool     `toml:"enabled"`         // default true
	Fsync          string   `toml:"fsync"`           // one of FsyncPolicies(); default "batch"
	FsyncInterval  Duration `toml:"fsync_interval"`  // used by fsync = "interval"; default 10ms
	SegmentSize    ByteSize `toml:"segment_size"`    // default 64MiB
	RetentionBytes ByteSize `toml:"retention_bytes"` // default 1GiB; 0 = unlimited
	RetentionAge   Duration `toml:"retention_age"`   // default 168h; 0 = unlimited
	DefaultAck     string   `toml:"default_ack"`     // one of AckLevels(); default "durable"
}

// ModulesConfig is where WASM handlers come from.
type ModulesConfig struct {
	Dir       string   `toml:"dir"`                      // default "./modules"
	HotReload bool     `toml:"hot_reload" reload:"live"` // default true
	Debounce  Duration `toml:"debounce" reload:"live"`   // default 250ms
}

// ClusterConfig is gossip membership (hashicorp/memberlist). Zero durations
// and a zero SuspicionMult mean "the preset's value".
type ClusterConfig struct {
	Enabled             bool     `toml:"enabled"`                             // default false
	BindAddr            string   `toml:"bind_addr"`                           // default "0.0.0.0"
	BindPort            int      `toml:"bind_port"`                           // default 7946 + (server.port - 8080)
	AdvertiseAddr       string   `toml:"advertise_addr"`                      // default "" (memberlist picks)
	AdvertisePort       int      `toml:"advertise_port"`                      // default 0 = bind_port
	Seeds               []string `toml:"seeds" reload:"live"`                 // host:port of peers to join
	Preset              string   `toml:"preset"`                              // one of Presets(); default "lan"
	ProbeInterval       Duration `toml:"probe_interval"`                      // 0 = preset
	ProbeTimeout        Duration `toml:"probe_timeout"`                       // 0 = preset
	GossipInterval      Duration `toml:"gossip_interval"`                     // 0 = preset
	PushPullInterval    Duration `toml:"push_pull_interval"`                  // 0 = preset
	SuspicionMult       int      `toml:"suspicion_mult"`                      // 0 = preset
	RejoinInterval      Duration `toml:"rejoin_interval"`                     // 0 = preset
	DeadNodeReclaimTime Duration `toml:"dead_node_reclaim_time"`              // 0 = preset
	Keyring             []string `toml:"keyring" secret:"true" reload:"live"` // base64 AES keys (16/24/32 bytes); first is primary
	Label               string   `toml:"label"`                               // cluster label (≤ 255 bytes); default ""
	Rollout             bool     `toml:"rollout"`                             // opt in to fleet handler rollout; default false
	// RolloutToken is the bearer token sent to peers when fetching rolled-out
	// modules (their admin token); "" means api.admin_tokens[0].
	RolloutToken string `toml:"rollout_token" secret:"true" reload:"live"`
}

// LogConfig is the log/slog output.
type LogConfig struct {
	Level  string `toml:"level" reload:"live"` // "debug", "info", "warn" or "error"; default "info"
	Format string `toml:"format"`              // "text" or "json"; default "text"
}

// Allowed values of the enumerated settings (read-only; WaitStrategies etc.
// return copies).
var (
	waitStrategies = []string{"blocking", "yielding", "busy-spin", "sleeping", "lite-blocking", "timeout-blocking", "phased-backoff"}
	fsyncPolicies  = []string{"batch", "interval", "never"}
	ackLevels      = []string{"memory", "durable", "processed"}
	presets        = []string{"lan", "wan", "local"}
	logLevels      = []string{"debug", "info", "warn", "error"}
	logFormats     = []string{"text", "json"}
)

// WaitStrategies returns the accepted ring.wait_strategy names.
func WaitStrategies() []string { return slices.Clone(waitStrategies) }

// FsyncPolicies returns the accepted journal.fsync values.
func FsyncPolicies() []string { return slices.Clone(fsyncPolicies) }

// AckLevels returns the accepted journal.default_ack values.
func AckLevels() []string { return slices.Clone(ackLevels) }

// Presets returns the accepted cluster.preset values (memberlist's
// DefaultLANConfig, DefaultWANConfig and DefaultLocalConfig).
func Presets() []string { return slices.Clone(presets) }

// Port-related defaults.
const (
	DefaultPort        = 8080
	DefaultClusterPort = 7946
	DefaultDataDir     = "./data"
)

// Default returns the embedded defaults for a node on the default port 8080,
// with Node.ID "<hostname>-8080".
func Default() Config { return defaults(hostname(os.Hostname)) }

// hostname returns the host name from get (os.Hostname when nil), or
// "badbatch" when it fails.
func hostname(get func() (string, error)) string {
	if get == nil {
		get = os.Hostname
	}
	h, err := get()
	if err != nil || h == "" {
		return "badbatch"
	}
	return h
}

// defaultNodeID is the node id used when node.id is not set.
func defaultNodeID(host string, port int) string { return host + "-" + strconv.Itoa(port) }

// defaults returns the defaults with the given host name.
func defaults(host string) Config {
	return Config{
		Node: NodeConfig{ID: defaultNodeID(host, DefaultPort), DataDir: DefaultDataDir},
		Server: ServerConfig{
			Host:            "0.0.0.0",
			Port:            DefaultPort,
			BodyLimit:       16 * MiB,
			ReadTimeout:     D(30 * time.Second),
			WriteTimeout:    D(30 * time.Second),
			IdleTimeout:     D(120 * time.Second),
			ShutdownTimeout: D(30 * time.Second),
		},
		Ring: RingConfig{
			BufferSize:     1024,
			WaitStrategy:   "blocking",
			MaxEventSize:   64 * KiB,
			PublishTimeout: D(time.Second),
		},
		API: APIConfig{
			PublishTokens:     []string{},
			AdminTokens:       []string{},
			MaxBatch:          10000,
			ReadLimit:         1000,
			IdempotencyWindow: 4096,
			MaxProducers:      10000,
		},
		Journal: JournalConfig{
			Enabled:        true,
			Fsync:          "batch",
			FsyncInterval:  D(10 * time.Millisecond),
			SegmentSize:    64 * MiB,
			RetentionBytes: GiB,
			RetentionAge:   D(168 * time.Hour),
			DefaultAck:     "durable",
		},
		Modules: ModulesConfig{
			Dir:       "./modules",
			HotReload: true,
			Debounce:  D(250 * time.Millisecond),
		},
		Cluster: ClusterConfig{
			BindAddr: "0.0.0.0",
			BindPort: DefaultClusterPort,
			Seeds:    []string{},
			Preset:   "lan",
			Keyring:  []string{},
		},
		Log: LogConfig{Level: "info", Format: "text"},
	}
}
