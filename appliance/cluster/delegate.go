package cluster

import (
	"net"
	"slices"
	"time"

	"github.com/hashicorp/memberlist"
)

// delegate implements memberlist's Delegate, EventDelegate, ConflictDelegate
// and PingDelegate for a Node. memberlist calls the event and conflict
// methods while holding its node lock, so they only touch the Node's own
// state (lock order: memberlist's lock, then Node.mu; the Node never calls
// memberlist while holding Node.mu).
type delegate struct{ n *Node }

var (
	_ memberlist.Delegate         = (*delegate)(nil)
	_ memberlist.EventDelegate    = (*delegate)(nil)
	_ memberlist.ConflictDelegate = (*delegate)(nil)
	_ memberlist.PingDelegate     = (*delegate)(nil)
	_ memberlist.MergeDelegate    = (*delegate)(nil)
)

// NodeMeta returns the metadata encoded by the last successful refresh; its
// size was checked against MaxMetaSize (= memberlist's limit) then.
func (d *delegate) NodeMeta(limit int) []byte {
	b := d.n.meta.Load()
	if b == nil || len(*b) > limit {
		return nil
	}
	return slices.Clone(*b)
}

// NotifyMsg receives module announcements (gossiped or sent over TCP).
func (d *delegate) NotifyMsg(b []byte) {
	anns, leaving, err := decodeUserData(b)
	if err != nil {
		d.n.log.Warn("ignoring malformed cluster message", "err", err)
		return
	}
	if leaving != "" {
		d.n.markLeaving(leaving)
	}
	for _, a := range anns {
		d.n.mergeAnnouncement(a, true)
	}
}

// GetBroadcasts hands memberlist our queued announcements.
func (d *delegate) GetBroadcasts(overhead, limit int) [][]byte {
	return d.n.queue.GetBroadcasts(overhead, limit)
}

// LocalState sends every known announcement in a push/pull exchange.
func (d *delegate) LocalState(bool) []byte { return d.n.mods.encodeState() }

// MergeRemoteState merges a peer's announcements (anti-entropy).
func (d *delegate) MergeRemoteState(buf []byte, _ bool) {
	anns, _, err := decodeUserData(buf)
	if err != nil {
		d.n.log.Warn("ignoring malformed cluster state", "err", err)
		return
	}
	for _, a := range anns {
		d.n.mergeAnnouncement(a, false)
	}
}

// NotifyJoin records a member that joined or came back.
func (d *delegate) NotifyJoin(node *memberlist.Node) { d.n.observe(node, StateAlive) }

// NotifyUpdate records a member's new metadata or address.
func (d *delegate) NotifyUpdate(node *memberlist.Node) { d.n.observe(node, StateAlive) }

// NotifyLeave reports a dead or left member. memberlist does not say which
// (the Node's State field is not maintained for events), so a member is
// "left" when it announced its leave (see Node.Leave) or a push/pull peer
// reports it left (NotifyMerge), otherwise "dead".
func (d *delegate) NotifyLeave(node *memberlist.Node) {
	d.n.mu.Lock()
	r, ok := d.n.members[node.Name]
	leaving := ok && !r.leaving.IsZero() && time.Since(r.leaving) < leaveIntentTTL
	leaving = leaving || node.Name == d.n.s.opts.NodeID // only our own Leave ends ourselves
	d.n.mu.Unlock()
	st := StateDead
	if leaving {
		st = StateLeft
	}
	d.n.observe(node, st)
}

// leaveIntentTTL is how long a received leave announcement turns the
// member's next death into "left".
const leaveIntentTTL = time.Minute

// NotifyMerge looks at a push/pull peer's view: members it reports left that
// this node has as dead become left. It never refuses the merge.
func (d *delegate) NotifyMerge(peers []*memberlist.Node) error {
	n := d.n
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, p := range peers {
		if p.State != memberlist.StateLeft {
			continue
		}
		if r, ok := n.members[p.Name]; ok && r.state == StateDead && r.ip.Equal(p.Addr) && r.port == p.Port {
			n.setStateLocked(r, StateLeft, time.Now())
		}
	}
	return nil
}

// NotifyConflict logs and counts a node name claimed from a second address.
func (d *delegate) NotifyConflict(existing, other *memberlist.Node) {
	d.n.conflicts.Add(1)
	d.n.log.Warn("node id conflict: a second node claims an existing id (ids must be unique; a restarted node on a new address is accepted once the old one is dead for dead_node_reclaim_time)",
		"id", existing.Name, "existing", existing.Address(), "other", other.Address())
}

// AckPayload implements memberlist.PingDelegate (no payload).
func (d *delegate) AckPayload() []byte { return nil }

// NotifyPingComplete records the probe RTT; an answered probe clears suspicion.
func (d *delegate) NotifyPingComplete(other *memberlist.Node, rtt time.Duration, _ []byte) {
	n := d.n
	n.mu.Lock()
	defer n.mu.Unlock()
	r, ok := n.members[other.Name]
	if !ok {
		return
	}
	r.rtt = rtt
	if r.state == StateSuspect {
		n.setStateLocked(r, StateAlive, time.Now())
	}
}

// observe records a memberlist event about node (called under memberlist's lock).
func (n *Node) observe(node *memberlist.Node, st State) {
	now := time.Now()
	metaRaw := string(node.Meta)
	ip := slices.Clone(node.Addr)
	n.mu.Lock()
	defer n.mu.Unlock()
	r, ok := n.members[node.Name]
	if !ok {
		r = &memberRec{id: node.Name, state: st, lastChange: now}
		n.members[node.Name] = r
		if st == StateAlive && node.Name != n.s.opts.NodeID {
			n.aliveOthers.Add(1)
		}
	} else {
		n.setStateLocked(r, st, now)
	}
	if st == StateAlive {
		r.leaving = time.Time{}
	}
	r.ip, r.port = net.IP(ip), node.Port
	if metaRaw != r.metaRaw {
		r.metaRaw = metaRaw
		m, err := DecodeMeta([]byte(metaRaw))
		if err != nil {
			n.log.Warn("member metadata not understood", "member", node.Name, "err", err)
		}
		r.meta = m
	}
	if node.Name != n.s.opts.NodeID {
		if st == StateAlive && !n.everJoined {
			n.everJoined = true
			n.log.Info("joined the cluster", "via", node.Name)
		}
		signal(n.dirtyCh)
	}
}

// setStateLocked changes a member's state, keeping the alive count in step.
func (n *Node) setStateLocked(r *memberRec, st State, now time.Time) {
	if r.state == st {
		return
	}
	self := r.id == n.s.opts.NodeID
	wasUp := r.state == StateAlive || r.state == StateSuspect
	isUp := st == StateAlive || st == StateSuspect
	if !self && wasUp != isUp {
		if isUp {
			n.aliveOthers.Add(1)
		} else {
			n.aliveOthers.Add(-1)
		}
	}
	if !self && st != StateAlive {
		n.log.Info("member state changed", "member", r.id, "from", string(r.state), "to", string(st))
	}
	r.state = st
	r.lastChange = now
}

// markSuspect is called by the log bridge when this node's probe failed.
func (n *Node) markSuspect(name string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if r, ok := n.members[name]; ok && r.state == StateAlive {
		n.setStateLocked(r, StateSuspect, time.Now())
	}
}

// markLeaving records a member's announced graceful leave.
func (n *Node) markLeaving(id string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	r, ok := n.members[id]
	if !ok || id == n.s.opts.NodeID {
		return
	}
	switch r.state {
	case StateDead:
		n.setStateLocked(r, StateLeft, time.Now())
	case StateAlive, StateSuspect:
		r.leaving = time.Now()
	}
}
