package cluster

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// PeersFile is the name of the last-known-peers file inside Options.StateDir.
const PeersFile = "cluster-peers.json"

// maxPeers bounds the persisted peer list.
const maxPeers = 256

// Peer is one persisted last-known peer.
type Peer struct {
	// ID is the member name.
	ID string `json:"id"`
	// Addr is the gossip address "ip:port" it was last seen on.
	Addr string `json:"addr"`
}

type peersDoc struct {
	Version int       `json:"version"`
	Node    string    `json:"node"`
	Updated time.Time `json:"updated"`
	Peers   []Peer    `json:"peers"`
}

// ParsePeers decodes a peers file, checking every entry.
func ParsePeers(b []byte) ([]Peer, error) {
	var doc peersDoc
	if err := decodeStrict(b, &doc); err != nil {
		return nil, fmt.Errorf("peers file: %w", err)
	}
	if doc.Version != 1 {
		return nil, fmt.Errorf("peers file: unsupported version %d", doc.Version)
	}
	if len(doc.Peers) > maxPeers {
		return nil, fmt.Errorf("peers file: %d peers, at most %d", len(doc.Peers), maxPeers)
	}
	for i, p := range doc.Peers {
		if err := validNodeID(p.ID); err != nil {
			return nil, fmt.Errorf("peers file: peers[%d]: %w", i, err)
		}
		if _, _, err := splitHostPort(p.Addr); err != nil {
			return nil, fmt.Errorf("peers file: peers[%d]: %w", i, err)
		}
	}
	return doc.Peers, nil
}

// loadPeers reads dir/PeersFile; a missing file is no peers and no error.
func loadPeers(dir string) ([]Peer, error) {
	if dir == "" {
		return nil, nil
	}
	path := filepath.Join(dir, PeersFile)
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	peers, err := ParsePeers(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return peers, nil
}

// savePeers writes dir/PeersFile atomically: temp file, fsync, rename, fsync dir.
func savePeers(dir, self string, peers []Peer, now time.Time) error {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return fmt.Errorf("create state dir %s: %w", dir, err)
	}
	peers = slices.Clone(peers)
	slices.SortFunc(peers, func(a, b Peer) int { return strings.Compare(a.ID, b.ID) })
	if len(peers) > maxPeers {
		peers = peers[:maxPeers]
	}
	b, err := json.MarshalIndent(peersDoc{Version: 1, Node: self, Updated: now.UTC(), Peers: peers}, "", "  ")
	if err != nil {
		return fmt.Errorf("encode peers: %w", err)
	}
	b = append(b, '\n')
	f, err := os.CreateTemp(dir, PeersFile+".tmp-*")
	if err != nil {
		return fmt.Errorf("write peers: %w", err)
	}
	tmp := f.Name()
	defer os.Remove(tmp) // no-op after a successful rename
	if _, err := f.Write(b); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", tmp, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("fsync %s: %w", tmp, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("close %s: %w", tmp, err)
	}
	path := filepath.Join(dir, PeersFile)
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("rename peers file: %w", err)
	}
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("open state dir for fsync: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("fsync state dir %s: %w", dir, err)
	}
	return nil
}
