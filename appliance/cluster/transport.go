package cluster

import (
	"errors"
	"fmt"
	"log"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
)

// transport wraps memberlist's own NetTransport (real UDP and TCP sockets) to
// count gossip bytes in and out, and to let tests isolate a node (drop all its
// traffic) to make a real partition on loopback without root.
type transport struct {
	*memberlist.NetTransport
	sent, recv atomic.Uint64
	isolated   atomic.Bool
	packetCh   chan *memberlist.Packet
	streamCh   chan net.Conn
	done       chan struct{}
	wg         sync.WaitGroup
	closeOnce  sync.Once
}

var _ memberlist.NodeAwareTransport = (*transport)(nil)

var errIsolated = errors.New("node isolated (test partition)")

// newTransport binds the gossip sockets. Port 0 picks a free port that is free
// for both TCP and UDP (retried, as memberlist itself does).
func newTransport(bindAddr string, port int, logger *log.Logger) (*transport, error) {
	cfg := &memberlist.NetTransportConfig{BindAddrs: []string{bindAddr}, BindPort: port, Logger: logger}
	attempts := 1
	if port == 0 {
		attempts = 10
	}
	var nt *memberlist.NetTransport
	var err error
	for range attempts {
		if nt, err = memberlist.NewNetTransport(cfg); err == nil {
			break
		}
		if !strings.Contains(err.Error(), "address already in use") {
			break
		}
	}
	if err != nil {
		return nil, fmt.Errorf("could not set up network transport: %w", err)
	}
	t := &transport{
		NetTransport: nt,
		packetCh:     make(chan *memberlist.Packet),
		streamCh:     make(chan net.Conn),
		done:         make(chan struct{}),
	}
	t.wg.Add(2)
	go t.forwardPackets()
	go t.forwardStreams()
	return t, nil
}

func (t *transport) forwardPackets() {
	defer t.wg.Done()
	in := t.NetTransport.PacketCh()
	for {
		select {
		case <-t.done:
			return
		case p := <-in:
			if t.isolated.Load() {
				continue
			}
			t.recv.Add(uint64(len(p.Buf)))
			select {
			case t.packetCh <- p:
			case <-t.done:
				return
			}
		}
	}
}

func (t *transport) forwardStreams() {
	defer t.wg.Done()
	in := t.NetTransport.StreamCh()
	for {
		select {
		case <-t.done:
			return
		case c := <-in:
			if t.isolated.Load() {
				c.Close()
				continue
			}
			select {
			case t.streamCh <- &countingConn{Conn: c, t: t}:
			case <-t.done:
				c.Close()
				return
			}
		}
	}
}

// PacketCh implements memberlist.Transport.
func (t *transport) PacketCh() <-chan *memberlist.Packet { return t.packetCh }

// StreamCh implements memberlist.Transport.
func (t *transport) StreamCh() <-chan net.Conn { return t.streamCh }

// WriteTo implements memberlist.Transport.
func (t *transport) WriteTo(b []byte, addr string) (time.Time, error) {
	if t.isolated.Load() {
		return time.Now(), nil // dropped on the wire
	}
	t.sent.Add(uint64(len(b)))
	return t.NetTransport.WriteTo(b, addr)
}

// WriteToAddress implements memberlist.NodeAwareTransport.
func (t *transport) WriteToAddress(b []byte, a memberlist.Address) (time.Time, error) {
	if t.isolated.Load() {
		return time.Now(), nil
	}
	t.sent.Add(uint64(len(b)))
	return t.NetTransport.WriteToAddress(b, a)
}

// DialTimeout implements memberlist.Transport.
func (t *transport) DialTimeout(addr string, timeout time.Duration) (net.Conn, error) {
	return t.DialAddressTimeout(memberlist.Address{Addr: addr}, timeout)
}

// DialAddressTimeout implements memberlist.NodeAwareTransport.
func (t *transport) DialAddressTimeout(a memberlist.Address, timeout time.Duration) (net.Conn, error) {
	if t.isolated.Load() {
		return nil, &net.OpError{Op: "dial", Net: "tcp", Err: errIsolated}
	}
	c, err := t.NetTransport.DialAddressTimeout(a, timeout)
	if err != nil {
		return nil, err
	}
	return &countingConn{Conn: c, t: t}, nil
}

// Shutdown implements memberlist.Transport.
func (t *transport) Shutdown() error {
	err := t.NetTransport.Shutdown()
	t.closeOnce.Do(func() { close(t.done) })
	t.wg.Wait()
	return err
}

type countingConn struct {
	net.Conn
	t *transport
}

// Read counts received stream bytes.
func (c *countingConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	c.t.recv.Add(uint64(n))
	return n, err
}

// Write counts sent stream bytes (and fails while isolated).
func (c *countingConn) Write(b []byte) (int, error) {
	if c.t.isolated.Load() {
		return 0, &net.OpError{Op: "write", Net: "tcp", Err: errIsolated}
	}
	n, err := c.Conn.Write(b)
	c.t.sent.Add(uint64(n))
	return n, err
}
