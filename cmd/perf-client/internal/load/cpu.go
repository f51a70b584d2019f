package load

import (
	"runtime"
	"syscall"
	"time"
)

// rusage is the process's CPU time so far.
type rusage struct{ user, sys time.Duration }

func (u *rusage) read() {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return
	}
	u.user = time.Duration(ru.Utime.Nano())
	u.sys = time.Duration(ru.Stime.Nano())
}

func cpuBetween(a, b rusage, wall time.Duration) CPU {
	c := CPU{
		UserSeconds:   (b.user - a.user).Seconds(),
		SystemSeconds: (b.sys - a.sys).Seconds(),
		NumCPU:        runtime.NumCPU(),
		GOMAXPROCS:    runtime.GOMAXPROCS(0),
	}
	if wall > 0 {
		c.Cores = (c.UserSeconds + c.SystemSeconds) / wall.Seconds()
	}
	return c
}
