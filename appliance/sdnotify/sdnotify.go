// Package sdnotify tells systemd about the appliance's state (READY,
// RELOADING, STOPPING, STATUS, WATCHDOG) through the NOTIFY_SOCKET protocol.
// Outside systemd (no NOTIFY_SOCKET) every call is a no-op.
package sdnotify

import (
	"context"
	"log/slog"
	"strconv"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
	"golang.org/x/sys/unix"
)

// Notifier sends state changes to systemd.
type Notifier struct {
	logger *slog.Logger
}

// New returns a Notifier logging failures to logger.
func New(logger *slog.Logger) *Notifier { return &Notifier{logger: logger} }

func (n *Notifier) send(state string) {
	// unsetEnvironment=false: children (none today) and re-reads keep working.
	sent, err := daemon.SdNotify(false, state)
	if err != nil {
		n.logger.Warn("sd_notify failed", "state", state, "err", err)
		return
	}
	if sent {
		n.logger.Debug("sd_notify", "state", state)
	}
}

// Ready reports startup complete, with a status line.
func (n *Notifier) Ready(status string) { n.send(daemon.SdNotifyReady + "\nSTATUS=" + status) }

// Reloading reports that a configuration reload started. MONOTONIC_USEC lets
// systemd (≥ 253, Type=notify-reload) match it to the reload request.
func (n *Notifier) Reloading() {
	n.send(daemon.SdNotifyReloading + "\nMONOTONIC_USEC=" + strconv.FormatInt(monotonicUsec(), 10))
}

// Stopping reports that shutdown started.
func (n *Notifier) Stopping(status string) { n.send(daemon.SdNotifyStopping + "\nSTATUS=" + status) }

// Status sets the free-form status line shown by systemctl status.
func (n *Notifier) Status(status string) { n.send("STATUS=" + status) }

// Watchdog pings the service watchdog.
func (n *Notifier) Watchdog() { n.send(daemon.SdNotifyWatchdog) }

func monotonicUsec() int64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return 0
	}
	return ts.Nano() / 1000
}

// WatchdogInterval returns systemd's watchdog interval (WATCHDOG_USEC) or 0
// when the watchdog is not enabled for this process.
func WatchdogInterval() time.Duration {
	d, err := daemon.SdWatchdogEnabled(false)
	if err != nil {
		return 0
	}
	return d
}

// RunWatchdog pings the watchdog every interval/2 while healthy() reports
// true, until ctx ends. When healthy() is false the ping is withheld (and
// the reason logged), so systemd restarts a stalled pipeline. interval <= 0
// returns at once.
func (n *Notifier) RunWatchdog(ctx context.Context, interval time.Duration, healthy func() (bool, string)) {
	if interval <= 0 {
		return
	}
	t := time.NewTicker(interval / 2)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			ok, why := healthy()
			if ok {
				n.Watchdog()
				continue
			}
			n.logger.Warn("watchdog ping withheld: pipeline not progressing", "reason", why)
		}
	}
}
