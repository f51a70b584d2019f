// Package rollout spreads WASM handler modules across a cluster (opt-in per
// node). Every node announces its module set (name, version, sha256) through
// the cluster's gossip; a node that opted in ([cluster] rollout = true)
// follows the changes other members announce: a module added or replaced on a
// peer is fetched over the peer's REST API, its sha256 checked against the
// announcement and installed through the normal hot-reload path; a module
// removed on a peer is removed here.
//
// # Which changes are followed
//
// Rollout follows changes, not states: the first module set ever seen from a
// peer is only recorded. Each later announcement is compared with the previous
// one from the same peer, and a change is applied only when this node is where
// the peer was before it ("compare and swap"):
//
//   - added on the peer (name new in its set): installed when this node has no
//     module of that name;
//   - replaced on the peer (sha256 changed): installed when this node runs the
//     peer's previous version;
//   - removed on the peer: removed when this node runs the version the peer removed.
//
// Anything else is a conflict (logged and counted, nothing changed): two
// nodes changed the same module concurrently, or this node was changed by
// hand. Without an order of versions across nodes this is what keeps an old
// node that comes back from rolling the fleet back, and concurrent changes
// from flapping. The last set seen from each peer is kept in
// Options.StateFile, so changes made while this node was down are followed
// when it comes back. The first set seen from a peer (a node joining the
// fleet, or a peer it never saw) installs the modules this node has none of
// that name for, and nothing else: no replacement or removal is inferred
// from a first sight.
//
// A download whose sha256 is not the announced one is refused (logged,
// counted as rejected, not retried); other failures are retried a few times.
package rollout

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/badbatch/badbatch/appliance/cluster"
)

// Local is this node's module store (the WASM registry; see RegistryLocal).
type Local interface {
	// List returns the modules running on this node.
	List() []cluster.ModuleInfo
	// Install installs (or replaces) module name through the hot-reload path.
	Install(ctx context.Context, name string, manifest, wasm []byte) error
	// Remove removes module name.
	Remove(ctx context.Context, name string) error
}

// Cluster is what rollout needs from cluster membership (*cluster.Node).
type Cluster interface {
	// Member returns a member by id (its APIURL is where modules are fetched).
	Member(id string) (cluster.Member, bool)
	// SetModules announces this node's module set.
	SetModules(mods []cluster.ModuleInfo) error
}

// Options configures a Rollout.
type Options struct {
	// Local is this node's module store (required).
	Local Local
	// Cluster announces and resolves peers (required).
	Cluster Cluster
	// Fetcher downloads modules (nil: a Fetcher without a token).
	Fetcher *Fetcher
	// Receive opts this node in to following other nodes' changes. Without
	// it the node only announces its own modules.
	Receive bool
	// Logger (nil: discard).
	Logger *slog.Logger
	// StateFile, if set, keeps the last module set seen from each peer across
	// restarts (e.g. <data_dir>/cluster/rollout-seen.json).
	StateFile string
	// Resync is how often the local module set is compared with the last
	// announcement (default 2s); LocalChanged announces at once.
	Resync time.Duration
	// Attempts per change for failures other than a hash mismatch (default 3),
	// RetryDelay between them (default 2s).
	Attempts   int
	RetryDelay time.Duration
}

// Stats counts what rollout did.
type Stats struct {
	// Installed and Removed count modules changed here by rollout.
	Installed uint64 `json:"installed"`
	Removed   uint64 `json:"removed"`
	// Rejected counts downloads refused for a sha256 mismatch.
	Rejected uint64 `json:"rejected"`
	// Failed counts changes given up after Attempts (fetch or install errors).
	Failed uint64 `json:"failed"`
	// Conflicts counts peer changes not applied because this node was not at
	// the peer's previous version.
	Conflicts uint64 `json:"conflicts"`
	// Announced counts module sets announced by this node.
	Announced uint64 `json:"announced"`
	// Receive is true when this node follows other nodes' changes.
	Receive bool `json:"receive"`
}

// Rollout announces this node's modules and (when Receive) follows peers'.
type Rollout struct {
	o   Options
	log *slog.Logger

	mu      sync.Mutex
	pending map[string][]cluster.ModuleInfo // peer -> newest set not yet processed
	wakeCh  chan struct{}
	localCh chan struct{}

	// owned by Run's goroutine
	seen      map[string]map[string]cluster.ModuleInfo // peer -> last processed set
	announced string                                   // digest last announced ("-" before the first)
	retries   []retry

	installed, removed, rejected, failed, conflicts, announcedN atomic.Uint64
}

type retry struct {
	at      time.Time
	peer    string
	op      op
	attempt int
}

// op is one change to apply locally.
type op struct {
	remove bool
	mod    cluster.ModuleInfo // the peer's new version (install) or removed version (remove)
	prev   *cluster.ModuleInfo
}

// New checks o and returns a Rollout; call Run to start it.
func New(o Options) (*Rollout, error) {
	if o.Local == nil || o.Cluster == nil {
		return nil, errors.New("rollout: Local and Cluster are required")
	}
	if o.Fetcher == nil {
		o.Fetcher = &Fetcher{}
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Resync <= 0 {
		o.Resync = 2 * time.Second
	}
	if o.Attempts <= 0 {
		o.Attempts = 3
	}
	if o.RetryDelay <= 0 {
		o.RetryDelay = 2 * time.Second
	}
	r := &Rollout{
		o: o, log: o.Logger.With("component", "rollout"),
		pending: map[string][]cluster.ModuleInfo{}, wakeCh: make(chan struct{}, 1), localCh: make(chan struct{}, 1),
		seen: map[string]map[string]cluster.ModuleInfo{}, announced: "-",
	}
	seen, err := loadState(o.StateFile)
	if err != nil {
		r.log.Warn("rollout: ignoring unreadable state; peers' current module sets become the baseline", "err", err)
	}
	r.seen = seen
	return r, nil
}

// OnModulesChanged is the cluster's Options.OnModulesChanged: it queues the
// peer's new set for Run and returns at once.
func (r *Rollout) OnModulesChanged(nodeID string, mods []cluster.ModuleInfo) {
	r.mu.Lock()
	r.pending[nodeID] = slices.Clone(mods)
	r.mu.Unlock()
	wake(r.wakeCh)
}

// LocalChanged tells Run the local module set changed (e.g. from the
// registry's OnChange): it is announced at once instead of at the next resync.
func (r *Rollout) LocalChanged() { wake(r.localCh) }

// Stats returns the counters.
func (r *Rollout) Stats() Stats {
	return Stats{Installed: r.installed.Load(), Removed: r.removed.Load(), Rejected: r.rejected.Load(),
		Failed: r.failed.Load(), Conflicts: r.conflicts.Load(), Announced: r.announcedN.Load(), Receive: r.o.Receive}
}

func wake(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// Run announces the local module set and applies peers' changes until ctx
// ends. Run it once, in a goroutine the caller owns.
func (r *Rollout) Run(ctx context.Context) {
	r.announce()
	tick := time.NewTicker(r.o.Resync)
	defer tick.Stop()
	var retryTimer <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			r.announce()
		case <-r.localCh:
			r.announce()
		case <-r.wakeCh:
			r.processPending(ctx)
		case <-retryTimer:
			r.runRetries(ctx)
		}
		retryTimer = nil
		if len(r.retries) > 0 {
			next := r.retries[0].at
			for _, rt := range r.retries {
				if rt.at.Before(next) {
					next = rt.at
				}
			}
			retryTimer = time.After(max(time.Until(next), 0))
		}
	}
}

// announce gossips the local set when its digest changed since the last time.
func (r *Rollout) announce() {
	mods := r.o.Local.List()
	d := cluster.ModulesDigest(mods)
	if d == r.announced {
		return
	}
	if err := r.o.Cluster.SetModules(mods); err != nil {
		r.log.Error("module set not announced", "err", err)
		return
	}
	r.announced = d
	r.announcedN.Add(1)
	r.log.Info("module set announced", "modules", len(mods), "digest", d)
}

func (r *Rollout) processPending(ctx context.Context) {
	r.mu.Lock()
	pending := r.pending
	r.pending = map[string][]cluster.ModuleInfo{}
	r.mu.Unlock()
	changed := false
	for _, peer := range slices.Sorted(maps.Keys(pending)) {
		next := index(pending[peer])
		prev, known := r.seen[peer]
		r.seen[peer] = next
		changed = changed || !known || !maps.Equal(prev, next)
		if !r.o.Receive {
			continue
		}
		if !known {
			// First set ever seen from this peer: catch up with the modules
			// this node has no module of that name for (a new node joining
			// the fleet); nothing is replaced or removed on a first sight.
			r.log.Debug("first module set of peer recorded (changes after this are followed)", "peer", peer, "modules", len(next))
			local := index(r.o.Local.List())
			for _, name := range slices.Sorted(maps.Keys(next)) {
				if _, have := local[name]; !have {
					r.apply(ctx, peer, op{mod: next[name]}, 1)
				}
			}
			continue
		}
		for _, o := range diff(prev, next) {
			r.apply(ctx, peer, o, 1)
		}
	}
	if changed && r.o.StateFile != "" {
		if err := saveState(r.o.StateFile, r.seen); err != nil {
			r.log.Error("rollout: state not saved", "err", err)
		}
	}
	r.announce()
}

// diff lists the changes from prev to next, sorted by module name.
func diff(prev, next map[string]cluster.ModuleInfo) []op {
	var ops []op
	for _, name := range slices.Sorted(maps.Keys(next)) {
		m := next[name]
		p, had := prev[name]
		switch {
		case !had:
			ops = append(ops, op{mod: m})
		case p.SHA256 != m.SHA256:
			ops = append(ops, op{mod: m, prev: &p})
		}
	}
	for _, name := range slices.Sorted(maps.Keys(prev)) {
		if _, still := next[name]; !still {
			ops = append(ops, op{remove: true, mod: prev[name]})
		}
	}
	return ops
}

func index(mods []cluster.ModuleInfo) map[string]cluster.ModuleInfo {
	m := make(map[string]cluster.ModuleInfo, len(mods))
	for _, x := range mods {
		m[x.Name] = x
	}
	return m
}

// apply carries out one change if this node is where the peer was before it.
func (r *Rollout) apply(ctx context.Context, peer string, o op, attempt int) {
	local := index(r.o.Local.List())
	cur, have := local[o.mod.Name]
	log := r.log.With("peer", peer, "module", o.mod.Name)
	if o.remove {
		switch {
		case !have:
			return // already gone
		case cur.SHA256 != o.mod.SHA256:
			r.conflicts.Add(1)
			log.Warn("rollout: not removing module: this node runs another version than the one the peer removed",
				"local_sha256", cur.SHA256, "removed_sha256", o.mod.SHA256)
			return
		}
		if err := r.o.Local.Remove(ctx, o.mod.Name); err != nil {
			r.retryOrFail(peer, o, attempt, fmt.Errorf("remove: %w", err))
			return
		}
		r.removed.Add(1)
		log.Info("rollout: module removed (removed on peer)", "sha256", o.mod.SHA256)
		return
	}
	if have && cur.SHA256 == o.mod.SHA256 {
		return // already there
	}
	switch {
	case o.prev == nil && have:
		r.conflicts.Add(1)
		log.Warn("rollout: not installing module: the peer added it but this node already runs another version",
			"local_sha256", cur.SHA256, "peer_sha256", o.mod.SHA256)
		return
	case o.prev != nil && (!have || cur.SHA256 != o.prev.SHA256):
		r.conflicts.Add(1)
		log.Warn("rollout: not replacing module: this node does not run the peer's previous version",
			"local_sha256", cur.SHA256, "peer_previous_sha256", o.prev.SHA256, "peer_sha256", o.mod.SHA256)
		return
	}
	m, ok := r.o.Cluster.Member(peer)
	if !ok || m.APIURL == "" || (m.State != cluster.StateAlive && m.State != cluster.StateSuspect) {
		r.retryOrFail(peer, o, attempt, fmt.Errorf("peer %s has no API URL or is not alive", peer))
		return
	}
	manifest, wasm, err := r.o.Fetcher.Fetch(ctx, m.APIURL, o.mod)
	if errors.Is(err, ErrHashMismatch) {
		r.rejected.Add(1)
		log.Error("rollout: download refused", "err", err)
		return
	}
	if err != nil {
		r.retryOrFail(peer, o, attempt, err)
		return
	}
	if err := r.o.Local.Install(ctx, o.mod.Name, manifest, wasm); err != nil {
		r.retryOrFail(peer, o, attempt, fmt.Errorf("install: %w", err))
		return
	}
	r.installed.Add(1)
	log.Info("rollout: module installed from peer", "version", o.mod.Version, "sha256", o.mod.SHA256, "from", m.APIURL)
	r.announce()
}

func (r *Rollout) retryOrFail(peer string, o op, attempt int, err error) {
	if attempt >= r.o.Attempts {
		r.failed.Add(1)
		r.log.Error("rollout: change given up", "peer", peer, "module", o.mod.Name, "remove", o.remove, "attempts", attempt, "err", err)
		return
	}
	r.log.Warn("rollout: change failed; retrying", "peer", peer, "module", o.mod.Name, "remove", o.remove, "attempt", attempt, "err", err)
	r.retries = append(r.retries, retry{at: time.Now().Add(r.o.RetryDelay), peer: peer, op: o, attempt: attempt + 1})
}

func (r *Rollout) runRetries(ctx context.Context) {
	now := time.Now()
	var due, later []retry
	for _, rt := range r.retries {
		if !rt.at.After(now) {
			due = append(due, rt)
		} else {
			later = append(later, rt)
		}
	}
	r.retries = later
	for _, rt := range due {
		// A newer announcement from the peer supersedes a retry of an older change.
		if cur, ok := r.seen[rt.peer][rt.op.mod.Name]; (rt.op.remove && ok) || (!rt.op.remove && (!ok || cur.SHA256 != rt.op.mod.SHA256)) {
			continue
		}
		r.apply(ctx, rt.peer, rt.op, rt.attempt)
	}
}
