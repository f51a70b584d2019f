// Package cluster makes appliances find each other by gossip: membership and
// failure detection with hashicorp/memberlist (SWIM + Lifeguard), small node
// metadata in every alive message, module announcements for fleet rollout,
// periodic re-join of seeds and persisted last-known peers, AES keyring
// management and a view of every member for the REST API, /readyz and metrics.
//
// Data never rides gossip: only membership, metadata and module announcements.
//
// # Seeds
//
// A seed is either a gossip address or an appliance's HTTP API address. A seed
// "host:port" is first looked up as an API address: GET
// http://host:port/api/v1/node/info (timeout Options.ResolveTimeout, default
// 1s) and the JSON field cluster.gossip_addr ({"cluster": {"gossip_addr":
// "host:port"}}) is joined; if that fails, "host:port" is joined as a gossip
// address. "http://host:port" is looked up only; a bare "host" is a gossip
// address on the default port. So the seed README's three-node example
// (`badbatch -p 8082 --cluster --seed-nodes 127.0.0.1:8081`, 8081 being the
// other node's HTTP port) works, and so do plain gossip seeds.
//
// # Key rotation
//
// Keys are AES-128/192/256 (16, 24 or 32 bytes, base64 in TOML). The first key
// of the keyring encrypts; all keys decrypt. Rotate without a split cluster in
// three fleet-wide steps, finishing each on every node (edit the TOML and
// SIGHUP, which calls ApplyKeyring, or call InstallKey/UseKey/RemoveKey):
//
//  1. install: keyring = [old, new]  (InstallKey(new)) — everyone can decrypt new
//  2. use:     keyring = [new, old]  (UseKey(new))     — everyone encrypts with new
//  3. remove:  keyring = [new]       (RemoveKey(old))  — old is no longer accepted
//
// Encryption cannot be switched on or off at runtime: that needs a restart.
package cluster

import (
	"context"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
)

// State is a member's state as seen by this node.
type State string

// Member states.
const (
	StateAlive   State = "alive"
	StateSuspect State = "suspect"
	StateDead    State = "dead"
	StateLeft    State = "left"
)

// Member is one known node.
type Member struct {
	// ID is the member's node id.
	ID string `json:"id"`
	// GossipAddr is the member's gossip address "ip:port".
	GossipAddr string `json:"gossip_addr"`
	// APIURL is the member's HTTP API URL from its metadata.
	APIURL string `json:"api_url,omitempty"`
	// State is alive, suspect, dead or left. Suspect is this node's own view:
	// set when its probe of the member fails, cleared by the next answered
	// probe or any alive/update news (memberlist exposes no suspect event).
	State State `json:"state"`
	// Meta is the member's decoded metadata.
	Meta Meta `json:"meta"`
	// LastChange is when this node saw the state last change.
	LastChange time.Time `json:"last_change"`
	// RTTMillis is the round trip time of this node's last answered probe (0 if none).
	RTTMillis float64 `json:"rtt_ms,omitempty"`
	// Self marks this node.
	Self bool `json:"self"`
}

// Status summarises the cluster as seen by this node.
type Status struct {
	NodeID     string `json:"node_id"`
	GossipAddr string `json:"gossip_addr"`
	// Size counts every known member in any state, this node included.
	Size    int `json:"size"`
	Alive   int `json:"alive"`
	Suspect int `json:"suspect"`
	Dead    int `json:"dead"`
	Left    int `json:"left"`
	// HealthScore is memberlist's awareness score: 0 is healthy, higher means
	// this node is missing its soft real-time deadlines (slow probes).
	HealthScore int `json:"health_score"`
	// BroadcastQueue is the depth of this node's own broadcast queue (module
	// announcements); memberlist's internal queue is not exported.
	BroadcastQueue int `json:"broadcast_queue"`
	// DecryptFailures counts messages this node received but could not
	// decrypt (wrong key, or plain text in an encrypted cluster).
	DecryptFailures uint64 `json:"decrypt_failures"`
	// LabelFailures counts packets and streams refused for a wrong label.
	LabelFailures uint64 `json:"label_failures"`
	// Conflicts counts name conflicts (same id claimed from another address).
	Conflicts uint64 `json:"conflicts"`
	// GossipBytesSent and GossipBytesReceived count this node's gossip
	// traffic (UDP payloads and TCP stream bytes, after encryption).
	GossipBytesSent     uint64 `json:"gossip_bytes_sent"`
	GossipBytesReceived uint64 `json:"gossip_bytes_received"`
	// Encrypted is true when gossip is encrypted; Keys is the keyring size.
	Encrypted bool `json:"encrypted"`
	Keys      int  `json:"keys"`
	// Joined is true once another member was seen alive; Ready and Reason are
	// what Ready returns.
	Joined bool   `json:"joined"`
	Ready  bool   `json:"ready"`
	Reason string `json:"reason"`
	// MetaError is the last metadata refresh error, if any (e.g. too large).
	MetaError string `json:"meta_error,omitempty"`
}

type memberRec struct {
	id         string
	ip         net.IP
	port       uint16
	metaRaw    string
	meta       Meta
	state      State
	lastChange time.Time
	rtt        time.Duration
	leaving    time.Time // when it announced a graceful leave
}

func (r *memberRec) addr() string { return net.JoinHostPort(r.ip.String(), strconv.Itoa(int(r.port))) }

// Node is this appliance's membership in the cluster. Create it with New, then
// Start; finish with Leave (graceful) and Close.
type Node struct {
	s      settings
	log    *slog.Logger
	bridge *logBridge
	conf   *memberlist.Config
	queue  *memberlist.TransmitLimitedQueue
	mods   *moduleStore

	ml atomic.Pointer[memberlist.Memberlist]
	tr *transport // set in Start before ml

	meta        atomic.Pointer[[]byte]
	aliveOthers atomic.Int64
	conflicts   atomic.Uint64

	opMu sync.Mutex // serialises metadata broadcasts with Leave

	mu          sync.Mutex
	members     map[string]*memberRec
	started     bool
	closed      bool
	left        bool
	startedAt   time.Time
	everJoined  bool
	metaErr     error
	persisted   []Peer
	pendingMods map[string][]ModuleInfo
	bigAnnounce *announcement
	seedCache   map[string]string // seed -> last resolved address; joinLoop only
	gossipSeeds map[string]bool   // seeds that answered as gossip addresses
	seeds       []string

	dirtyCh  chan struct{}
	metaCh   chan struct{}
	notifyCh chan struct{}
	bigCh    chan struct{}
	cancel   context.CancelFunc
	wg       sync.WaitGroup
}

// New validates opts and prepares a Node; nothing is bound until Start.
func New(opts Options, logger *slog.Logger) (*Node, error) {
	s, err := validate(opts)
	if err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.Default()
	}
	conf, err := s.memberlistConfig()
	if err != nil {
		return nil, err
	}
	n := &Node{
		s:           s,
		log:         logger.With("component", "cluster", "node", s.opts.NodeID),
		conf:        conf,
		mods:        newModuleStore(s.opts.NodeID),
		members:     map[string]*memberRec{},
		pendingMods: map[string][]ModuleInfo{},
		seedCache:   map[string]string{},
		gossipSeeds: map[string]bool{},
		seeds:       slices.Clone(s.opts.Seeds),
		dirtyCh:     make(chan struct{}, 1),
		metaCh:      make(chan struct{}, 1),
		notifyCh:    make(chan struct{}, 1),
		bigCh:       make(chan struct{}, 1),
	}
	if n.s.opts.SeedResolver == nil {
		n.s.opts.SeedResolver = HTTPSeedResolver(nil)
	}
	n.bridge = &logBridge{log: n.log.With("source", "memberlist"), onSuspect: n.markSuspect}
	n.queue = &memberlist.TransmitLimitedQueue{
		NumNodes:       func() int { return int(n.aliveOthers.Load()) + 1 },
		RetransmitMult: conf.RetransmitMult,
	}
	d := &delegate{n: n}
	conf.Delegate = d
	conf.Events = d
	conf.Conflict = d
	conf.Ping = d
	conf.Merge = d
	conf.Logger = log.New(n.bridge, "", 0)
	return n, nil
}

// ID returns this node's id.
func (n *Node) ID() string { return n.s.opts.NodeID }

// GossipAddr returns the advertised gossip address "ip:port" ("" before Start).
// The daemon serves it as cluster.gossip_addr in /api/v1/node/info.
func (n *Node) GossipAddr() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	if r, ok := n.members[n.s.opts.NodeID]; ok {
		return r.addr()
	}
	return ""
}

func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

func (n *Node) seedList() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return slices.Clone(n.seeds)
}

// SetSeeds replaces the seed list (a SIGHUP reload of [cluster] seeds); the
// next re-join round uses it. Members already joined stay.
func (n *Node) SetSeeds(seeds []string) error {
	for i, s := range seeds {
		if strings.TrimSpace(s) == "" {
			return fmt.Errorf("cluster: seeds[%d] is empty", i)
		}
	}
	n.mu.Lock()
	n.seeds = slices.Clone(seeds)
	n.mu.Unlock()
	return nil
}

// Start binds the gossip sockets, publishes this node and starts the
// background work (joining seeds and last-known peers, re-joining every
// RejoinInterval, refreshing metadata, persisting peers). Joining happens in
// the background: Start does not wait for seeds. ctx bounds the background
// work; Close ends it too.
func (n *Node) Start(ctx context.Context) error {
	n.mu.Lock()
	if n.started || n.closed {
		n.mu.Unlock()
		return errors.New("cluster: Start called twice or after Close")
	}
	n.started = true
	n.mu.Unlock()

	if err := n.refreshMetaBytes(); err != nil {
		return fmt.Errorf("cluster: %w", err)
	}
	peers, err := loadPeers(n.s.opts.StateDir)
	if err != nil {
		n.log.Warn("ignoring unreadable last-known peers file", "err", err)
	}
	n.mu.Lock()
	n.persisted = peers
	n.startedAt = time.Now()
	n.mu.Unlock()

	if bind := net.ParseIP(n.conf.BindAddr); bind.IsUnspecified() && n.conf.AdvertiseAddr == "" {
		adv, note, err := chooseAdvertise(n.conf.BindAddr)
		if err != nil {
			return fmt.Errorf("cluster: no usable advertise address for gossip bound to %s: set [cluster] advertise_addr to the IP other nodes should use: %w",
				net.JoinHostPort(n.conf.BindAddr, strconv.Itoa(n.s.opts.BindPort)), err)
		}
		n.conf.AdvertiseAddr = adv
		if note != "" {
			n.log.Warn("gossip advertise address chosen", "addr", adv, "note", note)
		} else {
			n.log.Info("gossip advertise address chosen", "addr", adv)
		}
	}
	tr, err := newTransport(n.conf.BindAddr, n.conf.BindPort, n.conf.Logger)
	if err != nil {
		return n.startError(err)
	}
	if n.conf.BindPort == 0 {
		n.conf.BindPort = tr.GetAutoBindPort()
		if n.conf.AdvertisePort == 0 {
			n.conf.AdvertisePort = n.conf.BindPort
		}
	}
	n.conf.Transport = tr
	n.tr = tr
	ml, err := memberlist.Create(n.conf)
	if err != nil {
		_ = tr.Shutdown()
		return n.startError(err)
	}
	n.ml.Store(ml)
	n.log.Info("cluster gossip listening", "bind", net.JoinHostPort(n.conf.BindAddr, strconv.Itoa(n.conf.BindPort)),
		"advertise", n.GossipAddr(), "preset", n.s.opts.Preset, "encrypted", n.conf.EncryptionEnabled(),
		"seeds", n.seedList(), "known_peers", len(peers))

	ctx, cancel := context.WithCancel(ctx)
	n.cancel = cancel
	n.wg.Add(3)
	go n.joinLoop(ctx)
	go n.maintLoop(ctx)
	go n.dispatchLoop(ctx)
	return nil
}

func (n *Node) startError(err error) error {
	sock := net.JoinHostPort(n.conf.BindAddr, strconv.Itoa(n.s.opts.BindPort))
	msg := err.Error()
	switch {
	case strings.Contains(msg, "address already in use"):
		return fmt.Errorf("cluster: gossip port busy: cannot bind %s (TCP and UDP): another process, perhaps another badbatch node, uses it; choose another [cluster] bind_port: %w", sock, err)
	case strings.Contains(msg, "cannot assign requested address"):
		return fmt.Errorf("cluster: cannot bind %s: [cluster] bind_addr %s is not an address of this machine: %w", sock, n.conf.BindAddr, err)
	case strings.Contains(msg, "advertise address") || strings.Contains(msg, "private IP"):
		return fmt.Errorf("cluster: no usable advertise address for gossip bound to %s: set [cluster] advertise_addr to the IP other nodes should use: %w", sock, err)
	case strings.Contains(msg, "permission denied"):
		return fmt.Errorf("cluster: cannot bind %s: permission denied (ports below 1024 need privileges); choose another [cluster] bind_port: %w", sock, err)
	default:
		return fmt.Errorf("cluster: start gossip on %s: %w", sock, err)
	}
}

// Leave announces a graceful departure and waits up to timeout for it to be
// gossiped. After Leave the node no longer re-joins; call Close next.
func (n *Node) Leave(timeout time.Duration) error {
	ml := n.ml.Load()
	n.opMu.Lock()
	n.mu.Lock()
	closed, already := n.closed, n.left
	if !closed && ml != nil {
		n.left = true
	}
	n.mu.Unlock()
	n.opMu.Unlock()
	if closed || ml == nil {
		return errors.New("cluster: Leave called before Start or after Close")
	}
	if already {
		return nil
	}
	n.announceLeave(ml, timeout/2)
	if err := ml.Leave(timeout); err != nil {
		return fmt.Errorf("cluster: leave: %w", err)
	}
	n.log.Info("left the cluster")
	return nil
}

// announceLeave tells the other members this node is leaving on purpose, so
// they show it as "left" rather than "dead": queued for gossip and sent over
// TCP to every up member in parallel, waiting at most timeout.
func (n *Node) announceLeave(ml *memberlist.Memberlist, timeout time.Duration) {
	msg := encodeLeave(n.s.opts.NodeID)
	n.queue.QueueBroadcast(&annBroadcast{origin: "leave:" + n.s.opts.NodeID, msg: msg})
	n.mu.Lock()
	if r, ok := n.members[n.s.opts.NodeID]; ok {
		n.setStateLocked(r, StateLeft, time.Now())
	}
	var targets []memberlist.Node
	for _, r := range n.members {
		if r.id != n.s.opts.NodeID && (r.state == StateAlive || r.state == StateSuspect) {
			targets = append(targets, memberlist.Node{Name: r.id, Addr: slices.Clone(r.ip), Port: r.port})
		}
	}
	if n.closed {
		targets = nil
	}
	if len(targets) == 0 {
		n.mu.Unlock()
		return
	}
	var wg sync.WaitGroup
	wg.Add(len(targets))
	n.wg.Add(len(targets) + 1) // Close waits for stragglers (bounded by memberlist's TCP timeout)
	n.mu.Unlock()
	for i := range targets {
		go func() {
			defer n.wg.Done()
			defer wg.Done()
			if err := ml.SendReliable(&targets[i], msg); err != nil {
				n.log.Debug("leave announcement not sent", "member", targets[i].Name, "err", err)
			}
		}()
	}
	done := make(chan struct{})
	go func() {
		defer n.wg.Done()
		wg.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(timeout):
		// The senders end on their own within memberlist's TCP timeout.
	}
}

// Close stops the background work, persists the last-known peers and shuts
// gossip down without a leave message (call Leave first for a graceful exit:
// otherwise peers detect this node as dead). Close is idempotent.
func (n *Node) Close() error {
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return nil
	}
	n.closed = true
	n.mu.Unlock()
	if n.cancel != nil {
		n.cancel()
	}
	n.wg.Wait()
	var errs []error
	if err := n.persist(); err != nil {
		errs = append(errs, err)
	}
	if ml := n.ml.Load(); ml != nil {
		if err := ml.Shutdown(); err != nil {
			errs = append(errs, fmt.Errorf("cluster: shutdown: %w", err))
		}
	}
	return errors.Join(errs...)
}

// currentMeta asks MetaFunc and fills in the module digest.
func (n *Node) currentMeta() Meta {
	var m Meta
	if n.s.opts.MetaFunc != nil {
		m = n.s.opts.MetaFunc()
	}
	if m.ModulesDigest == "" {
		if mods, ok := n.mods.get(n.s.opts.NodeID); ok {
			m.ModulesDigest = ModulesDigest(mods)
		}
	}
	return m
}

// refreshMetaBytes encodes the current metadata for NodeMeta. On error the
// previous metadata stays in place and the error is remembered for Status.
func (n *Node) refreshMetaBytes() error {
	b, err := EncodeMeta(n.currentMeta())
	n.mu.Lock()
	n.metaErr = err
	n.mu.Unlock()
	if err != nil {
		return err
	}
	n.meta.Store(&b)
	return nil
}

// RefreshMeta polls MetaFunc now and, if the metadata changed, gossips it
// (waiting up to 1s for the broadcast). Metadata over MaxMetaSize is an error
// and the previous metadata stays. The background loop does this every
// Options.MetaRefresh.
func (n *Node) RefreshMeta() error {
	old := n.meta.Load()
	if err := n.refreshMetaBytes(); err != nil {
		n.log.Error("node metadata not updated", "err", err)
		return fmt.Errorf("cluster: %w", err)
	}
	ml := n.ml.Load()
	n.opMu.Lock()
	defer n.opMu.Unlock()
	n.mu.Lock()
	gone := n.left || n.closed
	n.mu.Unlock()
	// After Leave an UpdateNode would broadcast this node alive again.
	if ml == nil || gone || (old != nil && string(*old) == string(*n.meta.Load())) {
		return nil
	}
	if err := ml.UpdateNode(time.Second); err != nil {
		// The update is queued; only the wait for its first broadcast timed out.
		n.log.Debug("metadata update broadcast pending", "err", err)
	}
	return nil
}

// SetModules announces this node's module set to the cluster (broadcast when
// small, otherwise sent to every member over TCP; always carried by push/pull)
// and updates the modules digest in the metadata. It does not block on the network.
func (n *Node) SetModules(mods []ModuleInfo) error {
	norm, err := normalizeModules(mods)
	if err != nil {
		return fmt.Errorf("cluster: set modules: %w", err)
	}
	a := n.mods.setLocal(norm, time.Now())
	n.announce(a)
	signal(n.metaCh)
	return nil
}

// Modules returns the last module set announced by nodeID (this node included).
func (n *Node) Modules(nodeID string) ([]ModuleInfo, bool) { return n.mods.get(nodeID) }

// AllModules returns every known announced module set by node id.
func (n *Node) AllModules() map[string][]ModuleInfo { return n.mods.all() }

type annBroadcast struct {
	origin string
	msg    []byte
}

// Invalidates implements memberlist.Broadcast: a newer announcement from the
// same origin replaces a queued older one.
func (b *annBroadcast) Invalidates(o memberlist.Broadcast) bool {
	ob, ok := o.(*annBroadcast)
	return ok && ob.origin == b.origin
}

// Name implements memberlist.NamedBroadcast.
func (b *annBroadcast) Name() string { return "modules:" + b.origin }

// Message implements memberlist.Broadcast.
func (b *annBroadcast) Message() []byte { return b.msg }

// Finished implements memberlist.Broadcast.
func (b *annBroadcast) Finished() {}

// announce gossips an announcement: small ones through the broadcast queue,
// this node's own large ones by a TCP fan-out from the maintenance loop.
func (n *Node) announce(a announcement) {
	msg := encodeAnnouncement(a)
	if len(msg) <= maxBroadcastAnnouncement {
		n.queue.QueueBroadcast(&annBroadcast{origin: a.Origin, msg: msg})
		return
	}
	if a.Origin != n.s.opts.NodeID {
		return // others' large sets travel by push/pull
	}
	n.mu.Lock()
	n.bigAnnounce = &a
	n.mu.Unlock()
	signal(n.bigCh)
}

func (n *Node) mergeAnnouncement(a announcement, regossip bool) {
	news, reissue := n.mods.merge(a)
	if reissue != nil {
		n.announce(*reissue)
	}
	if !news {
		return
	}
	if regossip {
		n.announce(a)
	}
	n.mu.Lock()
	n.pendingMods[a.Origin] = slices.Clone(a.Modules)
	n.mu.Unlock()
	signal(n.notifyCh)
}

// Members returns every known member sorted by id, this node marked Self.
func (n *Node) Members() []Member {
	n.mu.Lock()
	defer n.mu.Unlock()
	out := make([]Member, 0, len(n.members))
	for _, r := range n.members {
		out = append(out, n.memberLocked(r))
	}
	slices.SortFunc(out, func(a, b Member) int { return strings.Compare(a.ID, b.ID) })
	return out
}

// Member returns one member by id.
func (n *Node) Member(id string) (Member, bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	r, ok := n.members[id]
	if !ok {
		return Member{}, false
	}
	return n.memberLocked(r), true
}

func (n *Node) memberLocked(r *memberRec) Member {
	return Member{
		ID: r.id, GossipAddr: r.addr(), APIURL: r.meta.APIURL, State: r.state, Meta: r.meta,
		LastChange: r.lastChange, RTTMillis: float64(r.rtt.Microseconds()) / 1000, Self: r.id == n.s.opts.NodeID,
	}
}

// Status summarises the cluster.
func (n *Node) Status() Status {
	ready, reason := n.Ready()
	st := Status{NodeID: n.s.opts.NodeID, GossipAddr: n.GossipAddr(), Ready: ready, Reason: reason,
		DecryptFailures: n.bridge.decrypt.Load(), LabelFailures: n.bridge.label.Load(),
		Conflicts: n.conflicts.Load(), BroadcastQueue: n.queue.NumQueued()}
	if kr := n.conf.Keyring; kr != nil {
		st.Keys = len(kr.GetKeys())
		st.Encrypted = st.Keys > 0
	}
	if ml := n.ml.Load(); ml != nil {
		st.HealthScore = ml.GetHealthScore()
		st.GossipBytesSent = n.tr.sent.Load()
		st.GossipBytesReceived = n.tr.recv.Load()
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	st.Joined = n.everJoined
	if n.metaErr != nil {
		st.MetaError = n.metaErr.Error()
	}
	for _, r := range n.members {
		st.Size++
		switch r.state {
		case StateAlive:
			st.Alive++
		case StateSuspect:
			st.Suspect++
		case StateDead:
			st.Dead++
		case StateLeft:
			st.Left++
		}
	}
	return st
}

// Ready reports whether the cluster part of /readyz passes, with a reason:
// true once another member was seen alive ("joined"), or when there is nothing
// to join (no seeds, no last-known peers), or — with a warning logged — when
// ReadyTimeout passed without any seed or peer answering (running alone).
// False before Start, while waiting for seeds within ReadyTimeout, and after Leave.
func (n *Node) Ready() (bool, string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	alive := int(n.aliveOthers.Load())
	switch {
	case !n.started || n.ml.Load() == nil:
		return false, "cluster not started"
	case n.left:
		return false, "left the cluster"
	case alive > 0:
		return true, fmt.Sprintf("joined: %d other members alive", alive)
	case n.everJoined:
		return true, "joined earlier; no other member is alive now"
	case len(n.seeds) == 0 && len(n.persisted) == 0:
		return true, "alone: no seeds or last-known peers to join"
	}
	waited := time.Since(n.startedAt)
	if waited < n.s.readyTimeout {
		return false, fmt.Sprintf("waiting to join seeds (%s of %s)", waited.Round(time.Second), n.s.readyTimeout)
	}
	return true, fmt.Sprintf("alone: no seed or last-known peer answered within %s (still retrying)", n.s.readyTimeout)
}

// --- keyring ---

func (n *Node) keyring() (*memberlist.Keyring, error) {
	if n.conf.Keyring == nil {
		return nil, errors.New("cluster: gossip encryption is not enabled (start with a keyring; it cannot be enabled at runtime)")
	}
	return n.conf.Keyring, nil
}

// InstallKey adds a decryption key (step 1 of a rotation).
func (n *Node) InstallKey(key []byte) error {
	kr, err := n.keyring()
	if err != nil {
		return err
	}
	if err := kr.AddKey(key); err != nil {
		return fmt.Errorf("cluster: install key: %w", err)
	}
	return nil
}

// UseKey makes an installed key the primary (encrypting) key (step 2).
func (n *Node) UseKey(key []byte) error {
	kr, err := n.keyring()
	if err != nil {
		return err
	}
	if err := kr.UseKey(key); err != nil {
		return fmt.Errorf("cluster: use key: %w", err)
	}
	return nil
}

// RemoveKey removes a non-primary key (step 3).
func (n *Node) RemoveKey(key []byte) error {
	kr, err := n.keyring()
	if err != nil {
		return err
	}
	if string(kr.GetPrimaryKey()) == string(key) {
		return errors.New("cluster: remove key: it is the primary key; use another key first")
	}
	return removeKeys(kr, [][]byte{key})
}

// removeKeys drops non-primary keys. memberlist's Keyring.RemoveKey shifts
// the elements of the slice GetKeys handed out to concurrent decrypts (a data
// race) unless the removed key is the last one, so keys are only ever removed
// from the end: a suffix directly, otherwise every non-primary key is removed
// from the end and the kept ones are added back (fresh slices).
func removeKeys(kr *memberlist.Keyring, remove [][]byte) error {
	drop := func(k []byte) bool {
		return slices.ContainsFunc(remove, func(r []byte) bool { return string(r) == string(k) })
	}
	cur := slices.Clone(kr.GetKeys())
	first := len(cur)
	for first > 1 && drop(cur[first-1]) {
		first--
	}
	suffix := true
	for _, k := range cur[1:first] {
		if drop(k) {
			suffix = false
		}
	}
	end := first
	if !suffix {
		end = 1
	}
	for i := len(cur) - 1; i >= end; i-- {
		if err := kr.RemoveKey(cur[i]); err != nil {
			return fmt.Errorf("cluster: remove key: %w", err)
		}
	}
	if !suffix {
		for _, k := range cur[1:] {
			if !drop(k) {
				if err := kr.AddKey(k); err != nil {
					return fmt.Errorf("cluster: re-install key: %w", err)
				}
			}
		}
	}
	return nil
}

// ApplyKeyring makes the keyring equal to keys (the first is primary) by
// installing new keys, using keys[0] and removing keys not listed — what a
// SIGHUP reload of [cluster] keyring calls. Each rotation step (see the
// package doc) is one ApplyKeyring on every node.
func (n *Node) ApplyKeyring(keys [][]byte) error {
	if len(keys) == 0 {
		if n.conf.Keyring == nil {
			return nil
		}
		return errors.New("cluster: cannot disable gossip encryption at runtime: restart with an empty keyring")
	}
	kr, err := n.keyring()
	if err != nil {
		return err
	}
	for i, k := range keys {
		if err := memberlist.ValidateKey(k); err != nil {
			return fmt.Errorf("cluster: keyring[%d]: %d bytes: key must be 16, 24 or 32 bytes", i, len(k))
		}
	}
	for _, k := range keys {
		if err := kr.AddKey(k); err != nil {
			return fmt.Errorf("cluster: install key: %w", err)
		}
	}
	if err := kr.UseKey(keys[0]); err != nil {
		return fmt.Errorf("cluster: use key: %w", err)
	}
	var remove [][]byte
	for _, k := range slices.Clone(kr.GetKeys()) {
		if !slices.ContainsFunc(keys, func(w []byte) bool { return string(w) == string(k) }) {
			remove = append(remove, k)
		}
	}
	if len(remove) == 0 {
		return nil
	}
	return removeKeys(kr, remove)
}
