package appliance

import (
	"context"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/badbatch/badbatch/appliance/api"
	"github.com/badbatch/badbatch/appliance/cluster"
	"github.com/badbatch/badbatch/appliance/metrics"
	"github.com/badbatch/badbatch/appliance/rollout"
	"github.com/badbatch/badbatch/config"
)

// clusterWire is the node's gossip membership when [cluster] enabled: the
// cluster.Node built from config.ClusterConfig, started once HTTP serves,
// left before the drain and closed after it; plus fleet rollout.
type clusterWire struct {
	a    *Appliance
	node *cluster.Node

	mu      sync.Mutex
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	started bool
	stopped bool

	ro          atomic.Pointer[rollout.Rollout]
	aloneWarned atomic.Bool
}

// clusterOptions maps the configuration onto cluster.Options (see
// appliance/cluster/README.md). metaFn and onModules are the live parts.
func clusterOptions(cfg config.Config, dataDir string, metaFn func() cluster.Meta, onModules func(string, []cluster.ModuleInfo)) (cluster.Options, error) {
	c := cfg.Cluster
	keys, err := cluster.DecodeKeys(c.Keyring)
	if err != nil {
		return cluster.Options{}, err
	}
	return cluster.Options{
		NodeID:              cfg.Node.ID,
		BindAddr:            c.BindAddr,
		BindPort:            c.BindPort,
		AdvertiseAddr:       c.AdvertiseAddr,
		AdvertisePort:       c.AdvertisePort,
		Seeds:               c.Seeds,
		Preset:              c.Preset,
		ProbeInterval:       c.ProbeInterval.Duration,
		ProbeTimeout:        c.ProbeTimeout.Duration,
		GossipInterval:      c.GossipInterval.Duration,
		PushPullInterval:    c.PushPullInterval.Duration,
		SuspicionMult:       c.SuspicionMult,
		RejoinInterval:      c.RejoinInterval.Duration,
		DeadNodeReclaimTime: c.DeadNodeReclaimTime.Duration,
		Keyring:             keys,
		Label:               c.Label,
		StateDir:            filepath.Join(dataDir, "cluster"),
		MetaFunc:            metaFn,
		OnModulesChanged:    onModules,
	}, nil
}

// newClusterWire builds (but does not start) the cluster node.
func newClusterWire(a *Appliance, cfg config.Config) (*clusterWire, error) {
	w := &clusterWire{a: a}
	opts, err := clusterOptions(cfg, a.lock.Dir(), w.meta, w.onModules)
	if err != nil {
		return nil, fmt.Errorf("[cluster]: %w", err)
	}
	w.node, err = cluster.New(opts, a.log)
	if err != nil {
		return nil, fmt.Errorf("[cluster]: %w", err)
	}
	return w, nil
}

// ClusterNode returns the cluster node (nil unless [cluster] enabled).
func (a *Appliance) ClusterNode() *cluster.Node {
	if a.cw == nil {
		return nil
	}
	return a.cw.node
}

// Rollout returns the fleet rollout (nil unless clustering runs with a module store).
func (a *Appliance) Rollout() *rollout.Rollout {
	if a.cw == nil {
		return nil
	}
	return a.cw.ro.Load()
}

// meta is the node metadata gossiped to the cluster.
func (w *clusterWire) meta() cluster.Meta {
	a := w.a
	cfg := a.Config()
	st := a.pipe.Status()
	fill := 0
	if st.Capacity > 0 {
		fill = min(100, max(0, int(100*(st.Capacity-st.RemainingCapacity)/st.Capacity)))
	}
	ready := a.Phase() == PhaseRunning
	if ok, _ := a.pipe.ProcessorsOK(); !ok {
		ready = false
	}
	if a.journal != nil && a.journal.Err() != nil {
		ready = false
	}
	return cluster.Meta{APIURL: w.apiURL(), Version: a.build.Version, RingFill: fill, Ready: ready, Rollout: cfg.Cluster.Rollout}
}

// apiURL is the URL peers use for this node's API: the advertised host (the
// gossip advertise address when the API listens on every address and no
// advertise_addr is set) and the HTTP port.
func (w *clusterWire) apiURL() string {
	u := w.a.apiURL()
	cfg := w.a.Config()
	ta, ok := w.a.ln.Addr().(*net.TCPAddr)
	if !ok || !ta.IP.IsUnspecified() || cfg.Cluster.AdvertiseAddr != "" {
		return u
	}
	if host, _, err := net.SplitHostPort(w.node.GossipAddr()); err == nil && host != "" {
		return "http://" + net.JoinHostPort(host, strconv.Itoa(ta.Port))
	}
	return u
}

func (w *clusterWire) onModules(nodeID string, mods []cluster.ModuleInfo) {
	if ro := w.ro.Load(); ro != nil {
		ro.OnModulesChanged(nodeID, mods)
	}
}

// start binds gossip and joins in the background (called once HTTP serves, so
// peers resolving API-address seeds find this node's gossip address).
func (w *clusterWire) start() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	// The node's background work ends with Close; rollout's with Leave.
	if err := w.node.Start(context.Background()); err != nil {
		return fmt.Errorf("appliance: %w", err)
	}
	w.started = true
	ctx, cancel := context.WithCancel(context.Background())
	w.cancel = cancel
	// Gossip "ready" as soon as the node serves (else at the next MetaRefresh).
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		select {
		case <-w.a.ready:
			if err := w.node.RefreshMeta(); err != nil {
				w.a.log.Warn("cluster metadata not refreshed", "err", err)
			}
		case <-ctx.Done():
		}
	}()
	cfg := w.a.Config()
	if l := w.a.moduleStore(); l != nil {
		ro, err := rollout.New(rollout.Options{
			Local:     l,
			Cluster:   w.node,
			Fetcher:   &rollout.Fetcher{TokenFunc: w.a.rolloutToken},
			Receive:   cfg.Cluster.Rollout,
			Logger:    w.a.log,
			StateFile: filepath.Join(w.a.lock.Dir(), "cluster", rollout.StateFileName),
		})
		if err != nil {
			return fmt.Errorf("appliance: %w", err)
		}
		w.ro.Store(ro)
		w.wg.Add(1)
		go func() {
			defer w.wg.Done()
			ro.Run(ctx)
		}()
	} else if cfg.Cluster.Rollout {
		w.a.log.Warn("cluster.rollout is set but no module registry is wired into this build; modules are neither announced nor received")
	}
	return nil
}

// moduleStore is the node's WASM registry as rollout's Local: its module
// set is announced to the cluster and, with [cluster] rollout = true, modules
// rolled out by peers are installed into it.
func (a *Appliance) moduleStore() rollout.Local {
	if a.wasm == nil || a.wasm.reg == nil {
		return nil
	}
	return rollout.RegistryLocal(a.wasm.reg)
}

// rolloutToken is the token sent to peers for module downloads.
func (a *Appliance) rolloutToken() string {
	cfg := a.Config()
	if cfg.Cluster.RolloutToken != "" {
		return cfg.Cluster.RolloutToken
	}
	if len(cfg.API.AdminTokens) > 0 {
		return cfg.API.AdminTokens[0]
	}
	return ""
}

// stopRollout ends the rollout loop (no installs while draining).
func (w *clusterWire) stopRollout() {
	w.mu.Lock()
	cancel := w.cancel
	w.mu.Unlock()
	if cancel != nil {
		cancel()
	}
	w.wg.Wait()
}

// Members implements Cluster: the body of GET /api/v1/cluster/nodes.
func (w *clusterWire) Members() any { return map[string]any{"nodes": w.node.Members()} }

// GossipAddr implements Cluster: the advertised gossip address (before Start,
// what the configuration says it will be).
func (w *clusterWire) GossipAddr() string {
	if g := w.node.GossipAddr(); g != "" {
		return g
	}
	return configuredGossipAddr(w.a.Config().Cluster)
}

// Leave implements Cluster: the first shutdown step. Rollout stops, then the
// node leaves gracefully (peers show it "left") within the shutdown deadline.
func (w *clusterWire) Leave(ctx context.Context) error {
	w.stopRollout()
	w.mu.Lock()
	started := w.started
	w.mu.Unlock()
	if !started {
		return nil
	}
	timeout := 5 * time.Second
	if dl, ok := ctx.Deadline(); ok {
		timeout = min(timeout, time.Until(dl))
	}
	if err := w.node.Leave(timeout); err != nil {
		// Nobody confirmed the leave (typically: the peers are shutting
		// down too). It changes only how peers label this node (dead
		// instead of left), never what happens to events, so the
		// shutdown goes on and stays clean.
		w.a.log.Warn("leave not confirmed by any peer; they will see this node as dead rather than left", "err", err)
	}
	return nil
}

// close stops gossip after the drain (persisting the last-known peers).
func (w *clusterWire) close(context.Context) error {
	w.stopRollout()
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.stopped {
		return nil
	}
	w.stopped = true
	return w.node.Close()
}

// check is the cluster part of /readyz.
func (w *clusterWire) check() api.Check {
	ok, reason := w.node.Ready()
	if ok && strings.HasPrefix(reason, "alone: no seed") && w.aloneWarned.CompareAndSwap(false, true) {
		w.a.log.Warn("cluster: ready alone; no seed or last-known peer answered (still retrying)", "seeds", w.a.Config().Cluster.Seeds, "reason", reason)
	}
	return api.Check{Name: "cluster", OK: ok, Detail: reason}
}

// clusterStatus is the body of GET /api/v1/cluster/status.
type clusterStatus struct {
	Enabled bool `json:"enabled"`
	cluster.Status
	Rollout *rollout.Stats `json:"rollout,omitempty"`
}

func (a *Appliance) clusterStatus() any {
	if a.cw == nil {
		cfg := a.Config()
		reason := "clustering disabled ([cluster] enabled = false)"
		if a.opts.cluster != nil {
			reason = "membership provided by the embedding program"
		}
		return clusterStatus{Status: cluster.Status{NodeID: cfg.Node.ID, GossipAddr: a.gossipAddr(), Size: 1, Alive: 1,
			Ready: true, Reason: reason}}
	}
	st := clusterStatus{Enabled: true, Status: a.cw.node.Status()}
	if ro := a.cw.ro.Load(); ro != nil {
		s := ro.Stats()
		st.Rollout = &s
	}
	return st
}

func (a *Appliance) clusterChecks() []api.Check {
	if a.cw == nil {
		return nil
	}
	return []api.Check{a.cw.check()}
}

// clusterCollectors are the cluster and rollout metrics (none when clustering
// is off). They read the node at scrape time.
func (a *Appliance) clusterCollectors() []prometheus.Collector {
	w := a.cw
	if w == nil {
		return nil
	}
	ns := metrics.Namespace
	status := func(f func(cluster.Status) float64) func() float64 {
		return func() float64 { return f(w.node.Status()) }
	}
	var cs []prometheus.Collector
	for _, s := range []cluster.State{cluster.StateAlive, cluster.StateSuspect, cluster.StateDead, cluster.StateLeft} {
		cs = append(cs, prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: ns, Name: "cluster_members",
			Help: "Cluster members known to this node, by state (this node included).", ConstLabels: prometheus.Labels{"state": string(s)}},
			status(func(st cluster.Status) float64 {
				switch s {
				case cluster.StateAlive:
					return float64(st.Alive)
				case cluster.StateSuspect:
					return float64(st.Suspect)
				case cluster.StateDead:
					return float64(st.Dead)
				}
				return float64(st.Left)
			})))
	}
	gauge := func(name, help string, f func(cluster.Status) float64) {
		cs = append(cs, prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: ns, Name: name, Help: help}, status(f)))
	}
	counter := func(name, help string, f func() float64) {
		cs = append(cs, prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: ns, Name: name, Help: help}, f))
	}
	gauge("cluster_health_score", "memberlist awareness score: 0 is healthy, higher means this node misses its probe deadlines.",
		func(st cluster.Status) float64 { return float64(st.HealthScore) })
	gauge("cluster_broadcast_queue", "Depth of this node's gossip broadcast queue (module announcements).",
		func(st cluster.Status) float64 { return float64(st.BroadcastQueue) })
	gauge("cluster_ready", "1 while the cluster part of /readyz passes.",
		func(st cluster.Status) float64 { return b2f(st.Ready) })
	counter("cluster_decrypt_failures_total", "Gossip messages received that could not be decrypted (wrong key or plain text).",
		status(func(st cluster.Status) float64 { return float64(st.DecryptFailures) }))
	counter("cluster_label_failures_total", "Gossip packets and streams refused for a wrong cluster label.",
		status(func(st cluster.Status) float64 { return float64(st.LabelFailures) }))
	counter("cluster_conflicts_total", "Node id conflicts (the same id claimed from another address).",
		status(func(st cluster.Status) float64 { return float64(st.Conflicts) }))
	counter("cluster_gossip_sent_bytes_total", "Gossip bytes sent (UDP payloads and TCP streams, after encryption).",
		status(func(st cluster.Status) float64 { return float64(st.GossipBytesSent) }))
	counter("cluster_gossip_received_bytes_total", "Gossip bytes received.",
		status(func(st cluster.Status) float64 { return float64(st.GossipBytesReceived) }))
	ro := func(f func(rollout.Stats) uint64) func() float64 {
		return func() float64 {
			if r := w.ro.Load(); r != nil {
				return float64(f(r.Stats()))
			}
			return 0
		}
	}
	counter("rollout_installed_total", "Modules installed on this node by fleet rollout.", ro(func(s rollout.Stats) uint64 { return s.Installed }))
	counter("rollout_removed_total", "Modules removed on this node by fleet rollout.", ro(func(s rollout.Stats) uint64 { return s.Removed }))
	counter("rollout_rejected_total", "Rolled-out module downloads refused for a sha256 mismatch.", ro(func(s rollout.Stats) uint64 { return s.Rejected }))
	counter("rollout_failed_total", "Rollout changes given up after retries (fetch or install errors).", ro(func(s rollout.Stats) uint64 { return s.Failed }))
	counter("rollout_conflicts_total", "Peer module changes not applied because this node ran another version.", ro(func(s rollout.Stats) uint64 { return s.Conflicts }))
	return cs
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// prepareClusterReload checks the reloadable [cluster] keys (seeds, keyring)
// of cfg and returns what applies them; nothing changes on error.
func (a *Appliance) prepareClusterReload(cfg config.Config) (func() error, error) {
	w := a.cw
	if w == nil {
		return func() error { return nil }, nil
	}
	keys, err := cluster.DecodeKeys(cfg.Cluster.Keyring)
	if err != nil {
		return nil, fmt.Errorf("cluster.keyring: %w", err)
	}
	if enc := w.node.Status().Encrypted; enc != (len(keys) > 0) {
		return nil, errors.New("cluster.keyring: gossip encryption cannot be switched on or off by a reload; restart the node")
	}
	seeds := cfg.Cluster.Seeds
	return func() error {
		if err := w.node.SetSeeds(seeds); err != nil {
			return err
		}
		if len(keys) > 0 {
			if err := w.node.ApplyKeyring(keys); err != nil {
				return err
			}
		}
		a.log.Info("cluster: seeds and keyring reloaded", "seeds", seeds, "keys", len(keys))
		return nil
	}, nil
}

// clusterLive reports whether a reloadable cluster key is applied by this
// build's reload (only when clustering runs).
func (a *Appliance) clusterLive(key string) bool {
	switch key {
	case "cluster.seeds", "cluster.keyring":
		return a.cw != nil
	case "cluster.rollout_token":
		return true
	}
	return false
}
