// Package statedir creates and locks the appliance's state directory so that
// two processes never share one.
package statedir

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// LockFile is the name of the lock file inside the state directory.
const LockFile = "LOCK"

// ErrLocked is wrapped by the error Acquire returns when another process
// holds the directory.
var ErrLocked = errors.New("state directory is locked by another process")

// Lock is a held state-directory lock. It is released by Release or when the
// process exits (the kernel drops flock locks with the file descriptor).
type Lock struct {
	dir string
	f   *os.File
}

// Dir returns the absolute path of the locked directory.
func (l *Lock) Dir() string { return l.dir }

// Acquire creates dir (0750) if needed and takes an exclusive, non-blocking
// flock on dir/LOCK, recording this process's pid in it. If another process
// holds the lock it fails at once with an error naming the directory and,
// when known, the holder's pid.
func Acquire(dir string) (*Lock, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("state directory %q: %w", dir, err)
	}
	if err := os.MkdirAll(abs, 0o750); err != nil {
		return nil, fmt.Errorf("create state directory: %w", err)
	}
	path := filepath.Join(abs, LockFile)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|unix.O_CLOEXEC, 0o640)
	if err != nil {
		return nil, fmt.Errorf("open state directory lock: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		_ = f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			holder := "unknown pid"
			if b, rerr := os.ReadFile(path); rerr == nil {
				if pid, perr := strconv.Atoi(strings.TrimSpace(string(b))); perr == nil {
					holder = "pid " + strconv.Itoa(pid)
				}
			}
			return nil, fmt.Errorf("%w: %s is in use by another badbatch process (%s); stop it or choose another --data-dir", ErrLocked, abs, holder)
		}
		return nil, fmt.Errorf("lock state directory %s: %w", abs, err)
	}
	if err := f.Truncate(0); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("write state directory lock: %w", err)
	}
	if _, err := f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("write state directory lock: %w", err)
	}
	return &Lock{dir: abs, f: f}, nil
}

// Release drops the lock. The LOCK file stays (removing it would race with a
// process that opened it and is about to lock it).
func (l *Lock) Release() error {
	if l == nil || l.f == nil {
		return nil
	}
	_ = l.f.Truncate(0)
	err := l.f.Close()
	l.f = nil
	if err != nil {
		return fmt.Errorf("release state directory lock: %w", err)
	}
	return nil
}
