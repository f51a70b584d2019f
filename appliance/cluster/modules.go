package cluster

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"
)

// MaxModules is the largest module set one node may announce.
const MaxModules = 1024

// ModuleInfo announces one WASM module a node runs.
type ModuleInfo struct {
	// Name is the module name (as in the modules directory, without ".wasm").
	Name string `json:"name"`
	// Version is the module's version string (may be empty).
	Version string `json:"version"`
	// SHA256 is the lowercase hex SHA-256 of the .wasm file.
	SHA256 string `json:"sha256"`
}

func (m ModuleInfo) validate() error {
	if m.Name == "" || len(m.Name) > 128 {
		return fmt.Errorf("module name %q must be 1-128 bytes", m.Name)
	}
	if strings.ContainsAny(m.Name, "/\\\x00") || m.Name == "." || m.Name == ".." {
		return fmt.Errorf("module name %q must not contain a path separator", m.Name)
	}
	if len(m.Version) > 64 {
		return fmt.Errorf("module %q: version longer than 64 bytes", m.Name)
	}
	if len(m.SHA256) != 64 {
		return fmt.Errorf("module %q: sha256 %q must be 64 hex digits", m.Name, m.SHA256)
	}
	for _, c := range m.SHA256 {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return fmt.Errorf("module %q: sha256 %q must be lowercase hex", m.Name, m.SHA256)
		}
	}
	return nil
}

// normalizeModules validates mods and returns a sorted copy (by name).
func normalizeModules(mods []ModuleInfo) ([]ModuleInfo, error) {
	if len(mods) > MaxModules {
		return nil, fmt.Errorf("%d modules announced; at most %d", len(mods), MaxModules)
	}
	out := slices.Clone(mods)
	slices.SortFunc(out, func(a, b ModuleInfo) int { return strings.Compare(a.Name, b.Name) })
	for i, m := range out {
		if err := m.validate(); err != nil {
			return nil, err
		}
		if i > 0 && out[i-1].Name == m.Name {
			return nil, fmt.Errorf("module %q announced twice", m.Name)
		}
	}
	if out == nil {
		out = []ModuleInfo{}
	}
	return out, nil
}

// ModulesDigest returns a short digest (16 hex digits) of a module set,
// independent of order: equal digests mean equal sets with high probability.
// An empty set has the digest "".
func ModulesDigest(mods []ModuleInfo) string {
	if len(mods) == 0 {
		return ""
	}
	sorted := slices.Clone(mods)
	slices.SortFunc(sorted, func(a, b ModuleInfo) int { return strings.Compare(a.Name, b.Name) })
	h := sha256.New()
	for _, m := range sorted {
		fmt.Fprintf(h, "%s\x00%s\x00%s\n", m.Name, m.Version, m.SHA256)
	}
	return hex.EncodeToString(h.Sum(nil))[:16]
}

// announcement is one node's module set at a generation. A higher generation
// from the same origin replaces a lower one.
type announcement struct {
	Origin  string       `json:"n"`
	Gen     uint64       `json:"g"`
	Modules []ModuleInfo `json:"m"`
}

// Message type bytes of our user data (memberlist user messages and push/pull state).
const (
	msgAnnounce byte = 'A' // one announcement (broadcast or reliable send)
	msgState    byte = 'S' // all known announcements (push/pull)
	msgLeave    byte = 'L' // the origin is leaving gracefully
)

// maxBroadcastAnnouncement is the largest encoded announcement queued for UDP
// gossip; larger ones are sent to each member over TCP (SendReliable).
const maxBroadcastAnnouncement = 1000

func (a announcement) validate() error {
	if err := validNodeID(a.Origin); err != nil {
		return fmt.Errorf("announcement origin: %w", err)
	}
	if a.Gen == 0 {
		return fmt.Errorf("announcement from %q: generation 0", a.Origin)
	}
	if _, err := normalizeModules(a.Modules); err != nil {
		return fmt.Errorf("announcement from %q: %w", a.Origin, err)
	}
	return nil
}

func encodeAnnouncement(a announcement) []byte {
	b, _ := json.Marshal(a) // cannot fail: strings and integers only
	return append([]byte{msgAnnounce}, b...)
}

type stateMsg struct {
	Announcements []announcement `json:"a"`
}

func decodeStrict(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return errors.New("trailing data")
	}
	return nil
}

type leaveMsg struct {
	Origin string `json:"n"`
}

func encodeLeave(origin string) []byte {
	b, _ := json.Marshal(leaveMsg{Origin: origin})
	return append([]byte{msgLeave}, b...)
}

// decodeUserData decodes a user message or push/pull state into announcements,
// or the id of a node announcing its graceful leave.
func decodeUserData(b []byte) (anns []announcement, leaving string, err error) {
	if len(b) == 0 {
		return nil, "", nil
	}
	if b[0] == msgLeave {
		var l leaveMsg
		if err := decodeStrict(b[1:], &l); err != nil {
			return nil, "", fmt.Errorf("decode leave message: %w", err)
		}
		if err := validNodeID(l.Origin); err != nil {
			return nil, "", fmt.Errorf("decode leave message: %w", err)
		}
		return nil, l.Origin, nil
	}
	anns, err = decodeAnnouncements(b)
	return anns, "", err
}

func decodeAnnouncements(b []byte) ([]announcement, error) {
	switch b[0] {
	case msgAnnounce:
		var a announcement
		if err := decodeStrict(b[1:], &a); err != nil {
			return nil, fmt.Errorf("decode module announcement: %w", err)
		}
		if err := a.validate(); err != nil {
			return nil, err
		}
		a.Modules, _ = normalizeModules(a.Modules)
		return []announcement{a}, nil
	case msgState:
		var s stateMsg
		if err := decodeStrict(b[1:], &s); err != nil {
			return nil, fmt.Errorf("decode cluster state: %w", err)
		}
		for i := range s.Announcements {
			if err := s.Announcements[i].validate(); err != nil {
				return nil, err
			}
			s.Announcements[i].Modules, _ = normalizeModules(s.Announcements[i].Modules)
		}
		return s.Announcements, nil
	default:
		return nil, fmt.Errorf("unknown cluster message type %#x", b[0])
	}
}

// moduleStore holds every known announcement, this node's included.
type moduleStore struct {
	self     string
	mu       sync.Mutex
	byID     map[string]announcement
	selfSeen uint64 // highest generation seen for our own origin (from before a restart)
}

func newModuleStore(self string) *moduleStore {
	return &moduleStore{self: self, byID: map[string]announcement{}}
}

// setLocal replaces this node's module set and returns the new announcement.
func (s *moduleStore) setLocal(mods []ModuleInfo, now time.Time) announcement {
	s.mu.Lock()
	defer s.mu.Unlock()
	gen := uint64(now.UnixNano())
	if cur, ok := s.byID[s.self]; ok && gen <= cur.Gen {
		gen = cur.Gen + 1
	}
	if gen <= s.selfSeen {
		gen = s.selfSeen + 1
	}
	a := announcement{Origin: s.self, Gen: gen, Modules: mods}
	s.byID[s.self] = a
	return a
}

// merge applies a remote announcement. It reports whether it was news (to be
// re-gossiped and, for other origins, reported), and for this node's own
// origin returns a re-issued announcement when the remote one is newer (a
// stale generation from before a restart).
func (s *moduleStore) merge(a announcement) (news bool, reissue *announcement) {
	s.mu.Lock()
	defer s.mu.Unlock()
	cur, ok := s.byID[a.Origin]
	if a.Origin == s.self {
		// Our own announcement echoed back has our generation: nothing to do.
		// A higher one was made before a restart: re-issue ours above it.
		s.selfSeen = max(s.selfSeen, a.Gen)
		if ok && a.Gen > cur.Gen {
			cur.Gen = a.Gen + 1
			s.byID[s.self] = cur
			r := cur
			return false, &r
		}
		return false, nil
	}
	if ok && a.Gen <= cur.Gen {
		return false, nil
	}
	s.byID[a.Origin] = a
	return true, nil
}

func (s *moduleStore) get(id string) ([]ModuleInfo, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a, ok := s.byID[id]
	if !ok {
		return nil, false
	}
	return slices.Clone(a.Modules), true
}

func (s *moduleStore) all() map[string][]ModuleInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string][]ModuleInfo, len(s.byID))
	for id, a := range s.byID {
		out[id] = slices.Clone(a.Modules)
	}
	return out
}

func (s *moduleStore) encodeState() []byte {
	s.mu.Lock()
	st := stateMsg{Announcements: make([]announcement, 0, len(s.byID))}
	for _, a := range s.byID {
		st.Announcements = append(st.Announcements, a)
	}
	s.mu.Unlock()
	slices.SortFunc(st.Announcements, func(a, b announcement) int { return strings.Compare(a.Origin, b.Origin) })
	b, _ := json.Marshal(st)
	return append([]byte{msgState}, b...)
}
