package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
)

// NodeInfoPath is the appliance endpoint a seed given as an HTTP API address is
// asked for its gossip address. Its JSON must contain
// {"cluster": {"gossip_addr": "host:port", ...}, ...}.
const NodeInfoPath = "/api/v1/node/info"

// maxNodeInfoBytes bounds the node info response read during seed resolution.
const maxNodeInfoBytes = 1 << 20

// ParseNodeInfo extracts cluster.gossip_addr from a node info JSON document
// and checks it is "host:port" with a port in 1-65535.
func ParseNodeInfo(body []byte) (string, error) {
	var doc struct {
		Cluster *struct {
			GossipAddr string `json:"gossip_addr"`
		} `json:"cluster"`
	}
	if err := json.Unmarshal(body, &doc); err != nil {
		return "", fmt.Errorf("node info: %w", err)
	}
	if doc.Cluster == nil || doc.Cluster.GossipAddr == "" {
		return "", errors.New("node info: no cluster.gossip_addr (is clustering enabled on that node?)")
	}
	addr := doc.Cluster.GossipAddr
	if _, _, err := splitHostPort(addr); err != nil {
		return "", fmt.Errorf("node info: cluster.gossip_addr: %w", err)
	}
	return addr, nil
}

func splitHostPort(addr string) (string, int, error) {
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, fmt.Errorf("%q is not host:port: %w", addr, err)
	}
	port, err := strconv.Atoi(p)
	if err != nil || port < 1 || port > 65535 {
		return "", 0, fmt.Errorf("%q: port must be 1-65535", addr)
	}
	return host, port, nil
}

// HTTPSeedResolver returns a SeedResolver that GETs http://<seed>/api/v1/node/info
// (or <seed>/api/v1/node/info when the seed already has an http:// or https://
// scheme) and returns the cluster.gossip_addr it names. A nil client means a
// client without keep-alives (no idle connections outlive the call); the
// caller's ctx bounds the request.
func HTTPSeedResolver(client *http.Client) SeedResolver {
	if client == nil {
		client = &http.Client{Transport: &http.Transport{DisableKeepAlives: true, Proxy: nil}}
	}
	return func(ctx context.Context, seed string) (string, error) {
		url := seed
		if !strings.HasPrefix(url, "http://") && !strings.HasPrefix(url, "https://") {
			url = "http://" + url
		}
		url = strings.TrimSuffix(url, "/") + NodeInfoPath
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return "", fmt.Errorf("seed %q: %w", seed, err)
		}
		req.Header.Set("Accept", "application/json")
		resp, err := client.Do(req)
		if err != nil {
			return "", fmt.Errorf("seed %q: %w", seed, err)
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(io.LimitReader(resp.Body, maxNodeInfoBytes))
		if err != nil {
			return "", fmt.Errorf("seed %q: read node info: %w", seed, err)
		}
		if resp.StatusCode != http.StatusOK {
			return "", fmt.Errorf("seed %q: GET %s: status %d", seed, url, resp.StatusCode)
		}
		addr, err := ParseNodeInfo(body)
		if err != nil {
			return "", fmt.Errorf("seed %q: %w", seed, err)
		}
		return addr, nil
	}
}

// resolveSeed turns one configured seed into a gossip join address:
//   - "http://h:p" or "https://h:p": only the node info lookup; an error if it fails.
//   - "h:p": first the node info lookup (the seed may be an appliance's HTTP API
//     address, as in the seed README's `--seed-nodes 127.0.0.1:8081`); if that
//     fails, "h:p" is used as a gossip address as given.
//   - "h" (no port): a gossip address on the default port; no lookup.
//
// When the node info names an unspecified or empty host ("0.0.0.0:7946"), the
// seed's host is used with that port. fromHTTP reports which way was taken.
func resolveSeed(ctx context.Context, resolve SeedResolver, seed string) (addr string, fromHTTP bool, err error) {
	seed = strings.TrimSpace(seed)
	explicitHTTP := strings.HasPrefix(seed, "http://") || strings.HasPrefix(seed, "https://")
	hostPart := seed
	if explicitHTTP {
		hostPart = strings.TrimPrefix(strings.TrimPrefix(seed, "http://"), "https://")
		hostPart = strings.TrimSuffix(hostPart, "/")
	}
	seedHost, _, splitErr := net.SplitHostPort(hostPart)
	if !explicitHTTP && splitErr != nil {
		return seed, false, nil // bare host: gossip address on the default port
	}
	got, rerr := resolve(ctx, seed)
	if rerr == nil {
		host, port, perr := splitHostPort(got)
		if perr != nil {
			rerr = perr
		} else {
			if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
				if splitErr != nil {
					seedHost = hostPart
				}
				host = seedHost
			}
			return net.JoinHostPort(host, strconv.Itoa(port)), true, nil
		}
	}
	if explicitHTTP {
		return "", true, fmt.Errorf("resolve seed %q: %w", seed, rerr)
	}
	return seed, false, nil
}
