package sdnotify

import (
	"context"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// listen opens a real unixgram socket and points NOTIFY_SOCKET at it.
func listen(t *testing.T) *net.UnixConn {
	t.Helper()
	path := filepath.Join(t.TempDir(), "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	t.Setenv("NOTIFY_SOCKET", path)
	return conn
}

func recv(t *testing.T, conn *net.UnixConn) string {
	t.Helper()
	buf := make([]byte, 4096)
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	n, err := conn.Read(buf)
	if err != nil {
		t.Fatalf("read notify socket: %v", err)
	}
	return string(buf[:n])
}

func TestMessages(t *testing.T) {
	conn := listen(t)
	n := New(slog.New(slog.NewTextHandler(io.Discard, nil)))
	n.Ready("serving on :8080")
	if got := recv(t, conn); got != "READY=1\nSTATUS=serving on :8080" {
		t.Errorf("Ready sent %q", got)
	}
	n.Reloading()
	if got := recv(t, conn); !strings.HasPrefix(got, "RELOADING=1\nMONOTONIC_USEC=") {
		t.Errorf("Reloading sent %q", got)
	}
	n.Status("draining")
	if got := recv(t, conn); got != "STATUS=draining" {
		t.Errorf("Status sent %q", got)
	}
	n.Stopping("bye")
	if got := recv(t, conn); got != "STOPPING=1\nSTATUS=bye" {
		t.Errorf("Stopping sent %q", got)
	}
	n.Watchdog()
	if got := recv(t, conn); got != "WATCHDOG=1" {
		t.Errorf("Watchdog sent %q", got)
	}
}

func TestNoSocketIsNoop(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "")
	n := New(slog.New(slog.NewTextHandler(io.Discard, nil)))
	n.Ready("x") // must not panic or block
	if WatchdogInterval() != 0 {
		t.Error("watchdog enabled without WATCHDOG_USEC")
	}
}

func TestWatchdogPingsOnlyWhileHealthy(t *testing.T) {
	conn := listen(t)
	t.Setenv("WATCHDOG_USEC", "40000")
	t.Setenv("WATCHDOG_PID", "")
	if got := WatchdogInterval(); got != 40*time.Millisecond {
		t.Fatalf("WatchdogInterval = %v", got)
	}
	n := New(slog.New(slog.NewTextHandler(io.Discard, nil)))
	var mu sync.Mutex
	healthy := true
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		n.RunWatchdog(ctx, WatchdogInterval(), func() (bool, string) {
			mu.Lock()
			defer mu.Unlock()
			return healthy, "stalled"
		})
	}()
	if got := recv(t, conn); got != "WATCHDOG=1" {
		t.Fatalf("got %q", got)
	}
	mu.Lock()
	healthy = false
	mu.Unlock()
	// Drain pings already in flight, then expect silence.
	time.Sleep(50 * time.Millisecond)
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Millisecond))
	for {
		if _, err := conn.Read(make([]byte, 64)); err != nil {
			break
		}
	}
	_ = conn.SetReadDeadline(time.Now().Add(150 * time.Millisecond))
	if _, err := conn.Read(make([]byte, 64)); err == nil {
		t.Error("watchdog pinged while unhealthy")
	}
	cancel()
	<-done
}
