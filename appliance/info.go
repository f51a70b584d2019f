package appliance

import (
	"net"
	"strconv"
	"time"

	"github.com/klauspost/cpuid/v2"

	"github.com/badbatch/badbatch/appliance/api"
	"github.com/badbatch/badbatch/config"
	"github.com/badbatch/badbatch/disruptor"
)

func cpuCacheLine() int { return cpuid.CPU.CacheLine }

// notableFeatures are the cpuid features worth showing in node info.
var notableFeatures = []cpuid.FeatureID{
	cpuid.SSE4, cpuid.SSE42, cpuid.AVX, cpuid.AVX2, cpuid.AVX512F, cpuid.BMI1, cpuid.BMI2, cpuid.POPCNT,
	cpuid.AESNI, cpuid.SHA, cpuid.CLMUL, cpuid.RDRAND, cpuid.RDTSCP, cpuid.CX16, cpuid.HYPERVISOR,
	cpuid.ASIMD, cpuid.ATOMICS, cpuid.CRC32,
}

func cpuInfo() map[string]any {
	var feats []string
	for _, f := range notableFeatures {
		if cpuid.CPU.Supports(f) {
			feats = append(feats, f.String())
		}
	}
	return map[string]any{
		"brand":            cpuid.CPU.BrandName,
		"vendor":           cpuid.CPU.VendorString,
		"cache_line_bytes": cpuid.CPU.CacheLine,
		"physical_cores":   cpuid.CPU.PhysicalCores,
		"logical_cores":    cpuid.CPU.LogicalCores,
		"threads_per_core": cpuid.CPU.ThreadsPerCore,
		"l1d_bytes":        cpuid.CPU.Cache.L1D,
		"l2_bytes":         cpuid.CPU.Cache.L2,
		"l3_bytes":         cpuid.CPU.Cache.L3,
		"features":         feats,
	}
}

// hostFor returns h unless it is empty or unspecified (0.0.0.0, ::), in
// which case it picks this machine's first non-loopback address (or
// 127.0.0.1).
func hostFor(h string) string {
	if ip := net.ParseIP(h); h != "" && (ip == nil || !ip.IsUnspecified()) {
		return h
	}
	addrs, err := net.InterfaceAddrs()
	if err == nil {
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok && !n.IP.IsLoopback() && n.IP.To4() != nil && n.IP.IsGlobalUnicast() {
				return n.IP.String()
			}
		}
	}
	return "127.0.0.1"
}

func (a *Appliance) apiURL() string {
	cfg := a.Config()
	port := cfg.Server.Port
	if ta, ok := a.ln.Addr().(*net.TCPAddr); ok {
		port = ta.Port
	}
	host := cfg.Server.Host
	if ta, ok := a.ln.Addr().(*net.TCPAddr); ok && !ta.IP.IsUnspecified() {
		host = ta.IP.String()
	}
	if cfg.Cluster.AdvertiseAddr != "" {
		host = cfg.Cluster.AdvertiseAddr
	}
	return "http://" + net.JoinHostPort(hostFor(host), strconv.Itoa(port))
}

func (a *Appliance) gossipAddr() string {
	if a.opts.cluster != nil {
		return a.opts.cluster.GossipAddr()
	}
	return configuredGossipAddr(a.Config().Cluster)
}

// configuredGossipAddr is the gossip address c says a node advertises.
func configuredGossipAddr(c config.ClusterConfig) string {
	host := c.AdvertiseAddr
	if host == "" {
		host = c.BindAddr
	}
	port := c.AdvertisePort
	if port == 0 {
		port = c.BindPort
	}
	return net.JoinHostPort(hostFor(host), strconv.Itoa(port))
}

// nodeInfo is the body of GET /api/v1/node/info.
func (a *Appliance) nodeInfo() any {
	cfg := a.Config()
	auth := "open"
	if len(cfg.API.PublishTokens)+len(cfg.API.AdminTokens) > 0 {
		auth = "bearer"
	}
	return map[string]any{
		"node_id":                   cfg.Node.ID,
		"version":                   a.build.Version,
		"commit":                    a.build.Commit,
		"go_version":                a.build.GoVersion,
		"started_at":                a.started.UTC().Format(time.RFC3339Nano),
		"uptime_seconds":            time.Since(a.started).Seconds(),
		"phase":                     a.Phase().String(),
		"api_url":                   a.apiURL(),
		"cpu":                       cpuInfo(),
		"padding_bytes":             disruptor.CacheLinePad,
		"padding_covers_cache_line": disruptor.CacheLinePad >= cpuCacheLine(),
		"pinning":                   a.pipe.PinDecisions(),
		"config": map[string]any{
			"data_dir": a.lock.Dir(),
			"server":   map[string]any{"host": cfg.Server.Host, "port": cfg.Server.Port, "body_limit": cfg.Server.BodyLimit.String()},
			"ring": map[string]any{
				"buffer_size": cfg.Ring.BufferSize, "wait_strategy": cfg.Ring.WaitStrategy,
				"max_event_size": cfg.Ring.MaxEventSize.String(), "publish_timeout": cfg.Ring.PublishTimeout.String(), "pin_cpus": cfg.Ring.PinCPUs,
			},
			"api": map[string]any{
				"auth": auth, "max_batch": cfg.API.MaxBatch, "read_limit": cfg.API.ReadLimit,
				"idempotency_window": cfg.API.IdempotencyWindow, "max_producers": cfg.API.MaxProducers,
			},
			"journal": map[string]any{"enabled": cfg.Journal.Enabled, "fsync": cfg.Journal.Fsync, "default_ack": cfg.Journal.DefaultAck, "ack_levels": a.acks},
			"modules": map[string]any{"dir": cfg.Modules.Dir, "hot_reload": cfg.Modules.HotReload, "wasm_stages": len(a.opts.stages)},
			"log":     map[string]any{"level": cfg.Log.Level, "format": cfg.Log.Format},
		},
		"cluster": map[string]any{"enabled": cfg.Cluster.Enabled, "gossip_addr": a.gossipAddr()},
	}
}

// clusterNodes is the body of GET /api/v1/cluster/nodes.
func (a *Appliance) clusterNodes() any {
	if a.opts.cluster != nil {
		return a.opts.cluster.Members()
	}
	cfg := a.Config()
	state := "alive"
	if a.Phase() >= PhaseDraining {
		state = "left"
	}
	return map[string]any{"nodes": []map[string]any{{
		"id":          cfg.Node.ID,
		"gossip_addr": a.gossipAddr(),
		"api_url":     a.apiURL(),
		"state":       state,
		"meta":        a.meta(),
		"last_change": a.started.UTC().Format(time.RFC3339Nano),
		"self":        true,
	}}}
}

// meta mirrors the cluster package's member metadata for this node.
func (a *Appliance) meta() map[string]any {
	st := a.pipe.Status()
	fill := 0
	if st.Capacity > 0 {
		fill = int(100 * (st.Capacity - st.RemainingCapacity) / st.Capacity)
	}
	return map[string]any{
		"api_url":   a.apiURL(),
		"version":   a.build.Version,
		"ring_fill": fill,
		"ready":     a.Phase() == PhaseRunning,
		"rollout":   a.Config().Cluster.Rollout,
	}
}

func (a *Appliance) nodeStatus() any {
	m := map[string]any{
		"node_id":        a.Config().Node.ID,
		"phase":          a.Phase().String(),
		"uptime_seconds": time.Since(a.started).Seconds(),
		"ack_levels":     a.acks,
	}
	if j := a.journal; j != nil {
		js := map[string]any{"durable_sequence": j.Durable(), "last_sequence": j.LastSequence(), "earliest": j.Earliest(), "healthy": j.Err() == nil}
		if err := j.Err(); err != nil {
			js["error"] = err.Error()
		}
		m["journal"] = js
	}
	if a.wasm != nil {
		m["wasm"] = a.wasm.status()
	}
	return m
}

func (a *Appliance) liveChecks() []api.Check {
	ok, detail := a.pipe.ProcessorsOK()
	return []api.Check{{Name: "event_processors", OK: ok, Detail: detail}}
}

func (a *Appliance) readyChecks() []api.Check {
	ph := a.Phase()
	checks := []api.Check{{Name: "lifecycle", OK: ph == PhaseRunning, Detail: ph.String()}}
	ok, detail := a.pipe.ProcessorsOK()
	checks = append(checks, api.Check{Name: "event_processors", OK: ok, Detail: detail})
	checks = append(checks, api.Check{Name: "state_directory", OK: true, Detail: "locked: " + a.lock.Dir()})
	if j := a.journal; j != nil {
		jc := api.Check{Name: "journal", OK: j.Err() == nil, Detail: "durable to sequence " + strconv.FormatInt(j.Durable(), 10)}
		if err := j.Err(); err != nil {
			jc.Detail = err.Error()
		}
		checks = append(checks, jc)
	}
	checks = append(checks, a.clusterChecks()...)
	st := a.pipe.Status()
	checks = append(checks, api.Check{Name: "ring", OK: true, Detail: strconv.FormatInt(st.RemainingCapacity, 10) + " of " + strconv.FormatInt(st.Capacity, 10) + " slots free"})
	return checks
}
