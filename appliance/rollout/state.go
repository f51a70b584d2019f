package rollout

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/badbatch/badbatch/appliance/cluster"
)

// StateFileName is the file (in the cluster state directory) that keeps the
// last module set seen from each peer, so that changes made while this node
// was down are followed when it comes back.
const StateFileName = "rollout-seen.json"

// maxStateBytes bounds the state file read at start.
const maxStateBytes = 16 << 20

type stateDoc struct {
	Version int                             `json:"version"`
	Peers   map[string][]cluster.ModuleInfo `json:"peers"`
}

// ParseState decodes a rollout state file: the last module set seen from
// each peer. Unknown fields and a version other than 1 are errors.
func ParseState(b []byte) (map[string][]cluster.ModuleInfo, error) {
	if len(b) > maxStateBytes {
		return nil, fmt.Errorf("rollout state: %d bytes, limit %d", len(b), maxStateBytes)
	}
	var doc stateDoc
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&doc); err != nil {
		return nil, fmt.Errorf("rollout state: %w", err)
	}
	if dec.More() {
		return nil, errors.New("rollout state: trailing data")
	}
	if doc.Version != 1 {
		return nil, fmt.Errorf("rollout state: unknown version %d", doc.Version)
	}
	for peer, mods := range doc.Peers {
		if peer == "" {
			return nil, errors.New("rollout state: empty peer id")
		}
		for _, m := range mods {
			if m.Name == "" || len(m.SHA256) != 64 {
				return nil, fmt.Errorf("rollout state: peer %s: module %q with sha256 %q", peer, m.Name, m.SHA256)
			}
		}
	}
	if doc.Peers == nil {
		doc.Peers = map[string][]cluster.ModuleInfo{}
	}
	return doc.Peers, nil
}

// loadState reads path; a missing file is an empty state.
func loadState(path string) (map[string]map[string]cluster.ModuleInfo, error) {
	out := map[string]map[string]cluster.ModuleInfo{}
	if path == "" {
		return out, nil
	}
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return out, nil
	}
	if err != nil {
		return out, fmt.Errorf("rollout state: %w", err)
	}
	peers, err := ParseState(b)
	if err != nil {
		return out, fmt.Errorf("%s: %w", path, err)
	}
	for p, mods := range peers {
		out[p] = index(mods)
	}
	return out, nil
}

// saveState writes the seen sets atomically (temp file, fsync, rename).
func saveState(path string, seen map[string]map[string]cluster.ModuleInfo) error {
	doc := stateDoc{Version: 1, Peers: map[string][]cluster.ModuleInfo{}}
	for p, mods := range seen {
		list := make([]cluster.ModuleInfo, 0, len(mods))
		for _, m := range mods {
			list = append(list, m)
		}
		slices.SortFunc(list, func(a, b cluster.ModuleInfo) int { return strings.Compare(a.Name, b.Name) })
		doc.Peers[p] = list
	}
	b, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		return fmt.Errorf("rollout state: %w", err)
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return fmt.Errorf("rollout state: %w", err)
	}
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("rollout state: %w", err)
	}
	tmp := f.Name()
	defer os.Remove(tmp) // no-op after the rename
	_, err = f.Write(append(b, '\n'))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		return fmt.Errorf("rollout state: write %s: %w", path, err)
	}
	return nil
}
