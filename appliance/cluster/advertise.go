package cluster

import (
	"errors"
	"fmt"
	"net"
)

// pickAdvertise chooses the address to advertise when gossip is bound to an
// unspecified address (0.0.0.0 or ::) and no advertise_addr is configured.
//
// memberlist itself would take the first RFC 6890 private address of any
// family, which can be an IPv6 ULA while the sockets listen on IPv4 0.0.0.0
// only — an address nobody can reach. So this picks, in order: a private
// IPv4 address, another global unicast IPv4 address, the IPv4 loopback
// (reachable from this machine only; enough for several nodes on one host),
// and for a "::" bind the same for IPv6 after IPv4. The note explains a
// non-private choice for the log.
func pickAdvertise(addrs []net.Addr, allowV6 bool) (ip net.IP, note string, err error) {
	var ranks [6]net.IP // private v4, global v4, loopback v4, private v6, global v6, loopback v6
	for _, a := range addrs {
		ipn, ok := a.(*net.IPNet)
		if !ok {
			continue
		}
		cand := ipn.IP
		base := 0
		if cand.To4() == nil {
			if !allowV6 {
				continue
			}
			base = 3
		} else {
			cand = cand.To4()
		}
		slot := -1
		switch {
		case cand.IsPrivate():
			slot = base
		case cand.IsGlobalUnicast():
			slot = base + 1
		case cand.IsLoopback():
			slot = base + 2
		}
		if slot >= 0 && ranks[slot] == nil {
			ranks[slot] = cand
		}
	}
	notes := []string{
		"",
		"no private address found: advertising a non-private address (enable the keyring)",
		"only loopback found: reachable from this machine only (set advertise_addr for other hosts)",
		"",
		"no private address found: advertising a non-private address (enable the keyring)",
		"only loopback found: reachable from this machine only (set advertise_addr for other hosts)",
	}
	for i, c := range ranks {
		if c != nil {
			return c, notes[i], nil
		}
	}
	return nil, "", errors.New("no interface address to advertise")
}

// chooseAdvertise applies pickAdvertise to this machine's interface addresses.
func chooseAdvertise(bindAddr string) (string, string, error) {
	bind := net.ParseIP(bindAddr)
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return "", "", fmt.Errorf("list interface addresses: %w", err)
	}
	ip, note, err := pickAdvertise(addrs, bind != nil && bind.To4() == nil)
	if err != nil {
		return "", "", err
	}
	return ip.String(), note, nil
}
