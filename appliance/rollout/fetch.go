package rollout

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/badbatch/badbatch/appliance/cluster"
)

// Module endpoints of a peer's REST API (served by the appliance's module
// API; admin scope).
const (
	// WasmPath is the raw module binary: GET <api>/api/v1/modules/{name}/wasm,
	// answered with headers X-Module-Version and X-Module-SHA256.
	WasmPath = "/api/v1/modules/%s/wasm"
	// ManifestPath is the module's manifest TOML: GET <api>/api/v1/modules/{name}/manifest.
	ManifestPath = "/api/v1/modules/%s/manifest"
)

// Defaults of a Fetcher.
const (
	DefaultMaxWasmBytes     = 64 << 20
	DefaultMaxManifestBytes = 1 << 20
	DefaultFetchTimeout     = 60 * time.Second
)

// ErrHashMismatch is returned (wrapped) when a downloaded module's SHA-256 is
// not the announced one: the download is refused, nothing is installed.
var ErrHashMismatch = errors.New("sha256 mismatch")

// Fetcher downloads a module (wasm and manifest) from a peer's REST API and
// verifies the wasm against the announced SHA-256.
type Fetcher struct {
	// Client is the HTTP client; nil means one without a proxy and with
	// Timeout per request (peers are addressed directly).
	Client *http.Client
	// Token is sent as "Authorization: Bearer <token>" (the peer's admin
	// token, [cluster] rollout_token or api.admin_tokens[0]); "" sends none.
	Token string
	// TokenFunc, if set, is asked for the token on every request instead of
	// Token (a token that changes on reload).
	TokenFunc func() string
	// MaxWasmBytes bounds the wasm download (default 64 MiB).
	MaxWasmBytes int64
	// MaxManifestBytes bounds the manifest download (default 1 MiB).
	MaxManifestBytes int64
	// Timeout bounds each request when Client is nil (default 60s).
	Timeout time.Duration
}

func (f *Fetcher) client() *http.Client {
	if f.Client != nil {
		return f.Client
	}
	t := f.Timeout
	if t <= 0 {
		t = DefaultFetchTimeout
	}
	return &http.Client{Timeout: t, Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}}
}

// Fetch downloads module mod from the appliance at apiURL ("http://host:port")
// and returns its manifest and wasm. The wasm must hash to mod.SHA256 (an
// error wrapping ErrHashMismatch otherwise); a X-Module-SHA256 header that
// disagrees with the announcement is refused the same way.
func (f *Fetcher) Fetch(ctx context.Context, apiURL string, mod cluster.ModuleInfo) (manifest, wasm []byte, err error) {
	if mod.Name == "" || strings.ContainsAny(mod.Name, "/\\?#%") {
		return nil, nil, fmt.Errorf("rollout: fetch: invalid module name %q", mod.Name)
	}
	base, err := url.Parse(strings.TrimSuffix(apiURL, "/"))
	if err != nil || (base.Scheme != "http" && base.Scheme != "https") || base.Host == "" {
		return nil, nil, fmt.Errorf("rollout: fetch %s: peer API URL %q is not http(s)://host:port", mod.Name, apiURL)
	}
	maxWasm, maxMan := f.MaxWasmBytes, f.MaxManifestBytes
	if maxWasm <= 0 {
		maxWasm = DefaultMaxWasmBytes
	}
	if maxMan <= 0 {
		maxMan = DefaultMaxManifestBytes
	}
	name := url.PathEscape(mod.Name)
	wasm, hdr, err := f.get(ctx, base.String()+fmt.Sprintf(WasmPath, name), maxWasm)
	if err != nil {
		return nil, nil, fmt.Errorf("rollout: fetch %s wasm: %w", mod.Name, err)
	}
	sum := sha256.Sum256(wasm)
	got := hex.EncodeToString(sum[:])
	if got != mod.SHA256 {
		return nil, nil, fmt.Errorf("rollout: fetch %s from %s: %w: announced %s, downloaded %d bytes hash to %s", mod.Name, apiURL, ErrHashMismatch, mod.SHA256, len(wasm), got)
	}
	if h := strings.ToLower(hdr.Get("X-Module-SHA256")); h != "" && h != mod.SHA256 {
		return nil, nil, fmt.Errorf("rollout: fetch %s from %s: %w: announced %s, peer now serves %s (X-Module-SHA256)", mod.Name, apiURL, ErrHashMismatch, mod.SHA256, h)
	}
	manifest, _, err = f.get(ctx, base.String()+fmt.Sprintf(ManifestPath, name), maxMan)
	if err != nil {
		return nil, nil, fmt.Errorf("rollout: fetch %s manifest: %w", mod.Name, err)
	}
	return manifest, wasm, nil
}

// get GETs u and returns at most limit bytes of a 200 answer.
func (f *Fetcher) get(ctx context.Context, u string, limit int64) ([]byte, http.Header, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, nil, err
	}
	tok := f.Token
	if f.TokenFunc != nil {
		tok = f.TokenFunc()
	}
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := f.client().Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return nil, nil, fmt.Errorf("GET %s: read: %w", u, err)
	}
	if resp.StatusCode != http.StatusOK {
		msg := strings.TrimSpace(string(body))
		if len(msg) > 200 {
			msg = msg[:200]
		}
		return nil, nil, fmt.Errorf("GET %s: status %d: %s", u, resp.StatusCode, msg)
	}
	if int64(len(body)) > limit {
		return nil, nil, fmt.Errorf("GET %s: larger than %d bytes", u, limit)
	}
	return body, resp.Header, nil
}
