package cluster

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
)

// joinLoop joins seeds and last-known peers at once and then every
// RejoinInterval those that are not alive members (partition healing,
// restarted nodes). It also logs the "running alone" warning once.
func (n *Node) joinLoop(ctx context.Context) {
	defer n.wg.Done()
	n.tryJoin(ctx)
	var tick <-chan time.Time
	if n.s.rejoin > 0 {
		t := time.NewTicker(n.s.rejoin)
		defer t.Stop()
		tick = t.C
	}
	alone := time.NewTimer(n.s.readyTimeout)
	defer alone.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick:
			n.tryJoin(ctx)
		case <-alone.C:
			if ok, reason := n.Ready(); ok && strings.HasPrefix(reason, "alone: no seed") {
				n.log.Warn("running alone: no seed or last-known peer answered; still retrying every rejoin_interval",
					"waited", n.s.readyTimeout, "seeds", n.seedList(), "rejoin_interval", n.s.rejoin)
			}
		}
	}
}

type joinTarget struct {
	addr       string
	id         string // known member id, "" for seeds
	why        string
	gossipSeed string // the seed, when its lookup failed and it is tried as a gossip address
}

// joinTargets lists the addresses to join now: resolved seeds, persisted
// peers and dead members' last addresses, minus this node and minus members
// that are alive (by address, or by id for peers).
func (n *Node) joinTargets(ctx context.Context) []joinTarget {
	var cands []joinTarget
	upAddr := map[string]bool{}
	upID := map[string]bool{}
	n.mu.Lock()
	for _, p := range n.persisted {
		cands = append(cands, joinTarget{addr: p.Addr, id: p.ID, why: "last-known peer " + p.ID})
	}
	for _, r := range n.members {
		switch {
		case r.id == n.s.opts.NodeID:
			upAddr[r.addr()] = true // never join ourselves
		case r.state == StateAlive || r.state == StateSuspect:
			upAddr[r.addr()] = true
			upID[r.id] = true
		case r.state == StateDead:
			cands = append(cands, joinTarget{addr: r.addr(), id: r.id, why: "dead member " + r.id})
		}
	}
	seeds := slices.Clone(n.seeds)
	n.mu.Unlock()
	for _, seed := range seeds {
		if prev, ok := n.seedCache[seed]; ok && upAddr[prev] {
			continue // resolved before and alive: no lookup traffic
		}
		resolver := n.s.opts.SeedResolver
		n.mu.Lock()
		gossipOnly := n.gossipSeeds[seed]
		n.mu.Unlock()
		if gossipOnly {
			// Joined as a gossip address before: no more HTTP lookups against
			// it (each costs the peer a log line and, in an encrypted or
			// labelled cluster, a counted decrypt or label failure).
			resolver = func(context.Context, string) (string, error) { return "", errGossipSeed }
		}
		rctx, cancel := context.WithTimeout(ctx, n.s.resolveTimeout)
		addr, viaHTTP, err := resolveSeed(rctx, resolver, seed)
		cancel()
		if err != nil {
			n.log.Debug("seed not resolved", "seed", seed, "err", err)
			continue
		}
		n.seedCache[seed] = addr
		why := "seed " + seed
		if viaHTTP {
			why += " (via its node info)"
		}
		t := joinTarget{addr: addr, why: why}
		if !viaHTTP && addr == strings.TrimSpace(seed) {
			t.gossipSeed = seed
		}
		cands = append(cands, t)
	}
	var out []joinTarget
	seen := map[string]int{}
	for _, c := range cands {
		if upAddr[c.addr] || (c.id != "" && upID[c.id]) {
			continue
		}
		if i, dup := seen[c.addr]; dup {
			if c.gossipSeed != "" {
				out[i].gossipSeed = c.gossipSeed
			}
			continue
		}
		seen[c.addr] = len(out)
		out = append(out, c)
	}
	return out
}

var errGossipSeed = errors.New("seed known to be a gossip address")

// maxParallelJoins bounds concurrent join attempts in one round, so one
// unreachable address (a dial waiting for memberlist's TCP timeout) does not
// hold up the others.
const maxParallelJoins = 4

// tryJoin joins every current target, a few at a time, and returns when all
// attempts ended. A join after Leave would be harmless (it pushes our "left"
// state) but is skipped.
func (n *Node) tryJoin(ctx context.Context) {
	ml := n.ml.Load()
	sem := make(chan struct{}, maxParallelJoins)
	var wg sync.WaitGroup
	defer wg.Wait()
	for _, t := range n.joinTargets(ctx) {
		n.mu.Lock()
		left := n.left
		n.mu.Unlock()
		if left || ctx.Err() != nil {
			return
		}
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			return
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if _, err := ml.Join([]string{t.addr}); err != nil {
				n.log.Debug("join failed", "target", t.addr, "why", t.why, "err", err)
				return
			}
			n.log.Debug("joined", "target", t.addr, "why", t.why)
			if t.gossipSeed != "" {
				n.mu.Lock()
				n.gossipSeeds[t.gossipSeed] = true
				n.mu.Unlock()
			}
		}()
	}
}

// maintLoop refreshes metadata, persists last-known peers and fans out this
// node's large module announcements.
func (n *Node) maintLoop(ctx context.Context) {
	defer n.wg.Done()
	t := time.NewTicker(n.s.metaRefresh)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			_ = n.RefreshMeta() // logged inside; the previous metadata stays
			n.reap(now)
		case <-n.metaCh:
			_ = n.RefreshMeta()
		case <-n.dirtyCh:
			if err := n.persist(); err != nil {
				n.log.Warn("last-known peers not saved", "err", err)
			}
		case <-n.bigCh:
			n.fanOut(ctx)
		}
	}
}

// peersLocked lists the peers to persist: known members except this node and
// those that left, plus previously persisted peers not known now.
func (n *Node) peersLocked() []Peer {
	var out []Peer
	known := map[string]bool{}
	for _, r := range n.members {
		known[r.id] = true
		if r.id == n.s.opts.NodeID || r.state == StateLeft {
			continue
		}
		out = append(out, Peer{ID: r.id, Addr: r.addr()})
	}
	for _, p := range n.persisted {
		if !known[p.ID] {
			out = append(out, p)
		}
	}
	return out
}

// persist writes the last-known peers if a state dir is set and there are any
// (an empty list never overwrites a previous one).
func (n *Node) persist() error {
	if n.s.opts.StateDir == "" {
		return nil
	}
	n.mu.Lock()
	peers := n.peersLocked()
	n.mu.Unlock()
	if len(peers) == 0 {
		return nil
	}
	if err := savePeers(n.s.opts.StateDir, n.s.opts.NodeID, peers, time.Now()); err != nil {
		return fmt.Errorf("cluster: %w", err)
	}
	return nil
}

// fanOut sends this node's pending large announcement to every other up member over TCP.
func (n *Node) fanOut(ctx context.Context) {
	ml := n.ml.Load()
	n.mu.Lock()
	a := n.bigAnnounce
	n.bigAnnounce = nil
	var targets []memberlist.Node
	for _, r := range n.members {
		if r.id != n.s.opts.NodeID && (r.state == StateAlive || r.state == StateSuspect) {
			targets = append(targets, memberlist.Node{Name: r.id, Addr: slices.Clone(r.ip), Port: r.port})
		}
	}
	n.mu.Unlock()
	if a == nil || ml == nil {
		return
	}
	msg := encodeAnnouncement(*a)
	for i := range targets {
		if ctx.Err() != nil {
			return
		}
		if err := ml.SendReliable(&targets[i], msg); err != nil {
			n.log.Debug("module announcement not sent; push/pull will carry it", "member", targets[i].Name,
				"addr", net.JoinHostPort(targets[i].Addr.String(), fmt.Sprint(targets[i].Port)), "err", err)
		}
	}
}

// dispatchLoop calls OnModulesChanged outside memberlist's callbacks, one call
// at a time, with the latest set per node.
func (n *Node) dispatchLoop(ctx context.Context) {
	defer n.wg.Done()
	for {
		select {
		case <-ctx.Done():
			return
		case <-n.notifyCh:
		}
		n.mu.Lock()
		pending := n.pendingMods
		n.pendingMods = map[string][]ModuleInfo{}
		n.mu.Unlock()
		if n.s.opts.OnModulesChanged == nil {
			continue
		}
		ids := make([]string, 0, len(pending))
		for id := range pending {
			ids = append(ids, id)
		}
		slices.Sort(ids)
		for _, id := range ids {
			n.s.opts.OnModulesChanged(id, pending[id])
		}
	}
}

// reapAfter is how long a dead or left member stays listed (and a dead one's
// address is re-joined) before it is forgotten.
const reapAfter = 24 * time.Hour

// reap forgets members dead or left for longer than reapAfter.
func (n *Node) reap(now time.Time) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for id, r := range n.members {
		if (r.state == StateDead || r.state == StateLeft) && now.Sub(r.lastChange) > reapAfter {
			delete(n.members, id)
			n.log.Info("forgot member", "member", id, "state", string(r.state), "since", r.lastChange)
		}
	}
}
