package cluster

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
)

// MaxMetaSize is the largest encoded node metadata accepted (memberlist's
// MetaMaxSize). Larger metadata is an error, never truncated.
const MaxMetaSize = 512

// metaVersion is the first byte of the encoded metadata.
const metaVersion = 'B' // "BadBatch meta v1"

// Meta is the small per-node metadata gossiped with every alive message.
type Meta struct {
	// APIURL is the appliance's HTTP API base URL, e.g. "http://10.0.0.5:8080".
	APIURL string `json:"api_url,omitempty"`
	// Version is the appliance's software version.
	Version string `json:"version,omitempty"`
	// ModulesDigest identifies the node's module set (see ModulesDigest).
	ModulesDigest string `json:"modules_digest,omitempty"`
	// RingFill is the ring buffer fill in percent, 0-100.
	RingFill int `json:"ring_fill"`
	// Ready is the appliance's own readiness (its /readyz).
	Ready bool `json:"ready"`
	// Rollout is true when the node opted in to fleet handler rollout.
	Rollout bool `json:"rollout"`
}

// wireMeta is Meta with one-letter keys: the gossiped form.
type wireMeta struct {
	U string `json:"u,omitempty"`
	V string `json:"v,omitempty"`
	D string `json:"d,omitempty"`
	F int    `json:"f,omitempty"`
	R bool   `json:"r,omitempty"`
	O bool   `json:"o,omitempty"`
}

// ErrMetaTooLarge is returned (wrapped) when encoded metadata exceeds MaxMetaSize.
var ErrMetaTooLarge = errors.New("node metadata too large")

// EncodeMeta encodes m compactly (a version byte and JSON with one-letter keys)
// and fails with ErrMetaTooLarge if the result exceeds MaxMetaSize bytes.
func EncodeMeta(m Meta) ([]byte, error) {
	if m.RingFill < 0 || m.RingFill > 100 {
		return nil, fmt.Errorf("encode node metadata: ring fill %d is outside 0-100", m.RingFill)
	}
	b, err := json.Marshal(wireMeta{U: m.APIURL, V: m.Version, D: m.ModulesDigest, F: m.RingFill, R: m.Ready, O: m.Rollout})
	if err != nil {
		return nil, fmt.Errorf("encode node metadata: %w", err)
	}
	out := make([]byte, 0, len(b)+1)
	out = append(out, metaVersion)
	out = append(out, b...)
	if len(out) > MaxMetaSize {
		return nil, fmt.Errorf("encode node metadata: %d bytes, limit %d (shorten api_url/version): %w", len(out), MaxMetaSize, ErrMetaTooLarge)
	}
	return out, nil
}

// DecodeMeta decodes metadata produced by EncodeMeta. Empty input is the zero Meta.
func DecodeMeta(b []byte) (Meta, error) {
	if len(b) == 0 {
		return Meta{}, nil
	}
	if len(b) > MaxMetaSize {
		return Meta{}, fmt.Errorf("decode node metadata: %d bytes, limit %d: %w", len(b), MaxMetaSize, ErrMetaTooLarge)
	}
	if b[0] != metaVersion {
		return Meta{}, fmt.Errorf("decode node metadata: unknown format byte %#x", b[0])
	}
	var w wireMeta
	dec := json.NewDecoder(bytes.NewReader(b[1:]))
	if err := dec.Decode(&w); err != nil {
		return Meta{}, fmt.Errorf("decode node metadata: %w", err)
	}
	if dec.More() {
		return Meta{}, errors.New("decode node metadata: trailing data")
	}
	if w.F < 0 || w.F > 100 {
		return Meta{}, fmt.Errorf("decode node metadata: ring fill %d is outside 0-100", w.F)
	}
	return Meta{APIURL: w.U, Version: w.V, ModulesDigest: w.D, RingFill: w.F, Ready: w.R, Rollout: w.O}, nil
}
