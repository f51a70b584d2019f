package wasmhost

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/tetratelabs/wazero/api"
)

// Call states of an instance (instance.state): 0 idle, > 0 a running call's
// deadline (nanoseconds since Module.epoch), < 0 a call the watchdog
// stopped.
const (
	stoppedTimeout  = -1
	stoppedCanceled = -2
)

// watchdog stops guest calls that overran their limit or whose caller's
// context ended, by setting the instance's stop global (see guard.go). One
// goroutine per Module, owned by it: started by Load, ended by Close.
type watchdog struct {
	mu    sync.Mutex
	insts map[*instance]struct{} // live instances
	stop  chan struct{}
	done  chan struct{}
}

// watchdogTick is how often the watchdog looks at running calls: an endless
// loop runs at most about this much longer than its limit, and a canceled
// caller waits about this long for its call to stop.
func watchdogTick(limits ...time.Duration) time.Duration {
	tick := 50 * time.Millisecond
	for _, l := range limits {
		tick = min(tick, l/8)
	}
	return max(tick, time.Millisecond)
}

func (m *Module) startWatchdog() {
	w := &m.wd
	w.insts = map[*instance]struct{}{}
	w.stop, w.done = make(chan struct{}), make(chan struct{})
	tick := watchdogTick(time.Duration(m.man.Timeout), time.Duration(m.man.InitTimeout))
	go func() {
		defer close(w.done)
		t := time.NewTicker(tick)
		defer t.Stop()
		for {
			select {
			case <-w.stop:
				return
			case <-t.C:
				m.checkCalls(false)
			}
		}
	}()
}

// stopWatchdog ends the watchdog goroutine (idempotent).
func (m *Module) stopWatchdog() {
	w := &m.wd
	if w.stop == nil {
		return
	}
	select {
	case <-w.stop:
	default:
		close(w.stop)
	}
	<-w.done
}

// checkCalls stops each running call that is past its deadline, whose
// caller's context ended, or (all) any running call.
func (m *Module) checkCalls(all bool) {
	now := int64(time.Since(m.epoch))
	w := &m.wd
	w.mu.Lock()
	defer w.mu.Unlock()
	for inst := range w.insts {
		d := inst.state.Load()
		if d <= 0 {
			continue
		}
		why := int64(0)
		switch {
		case now > d:
			why = stoppedTimeout
		case all:
			why = stoppedCanceled
		case inst.done != nil:
			select {
			case <-inst.done:
				why = stoppedCanceled
			default:
			}
		}
		if why != 0 && inst.state.CompareAndSwap(d, why) {
			inst.stop.Set(1)
		}
	}
}

func (m *Module) watch(inst *instance) {
	m.wd.mu.Lock()
	m.wd.insts[inst] = struct{}{}
	m.wd.mu.Unlock()
}

func (m *Module) unwatch(inst *instance) {
	m.wd.mu.Lock()
	delete(m.wd.insts, inst)
	m.wd.mu.Unlock()
}

// call runs fn on inst bounded by limit and by ctx and classifies a failure:
// the caller's cancellation (wrapping ctx.Err()), ErrTimeout, or ErrTrap. A
// call that failed leaves the instance unusable: discard it.
func (m *Module) call(ctx context.Context, inst *instance, fn api.Function, stack []uint64, limit time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if done := ctx.Done(); done != inst.done {
		m.wd.mu.Lock()
		inst.done = done
		m.wd.mu.Unlock()
	}
	d := int64(time.Since(m.epoch) + limit)
	inst.state.Store(d)
	err := fn.CallWithStack(ctx, stack)
	if !inst.state.CompareAndSwap(d, 0) {
		if inst.state.Load() == stoppedTimeout {
			return fmt.Errorf("%w after %v", ErrTimeout, limit)
		}
		if ctx.Err() != nil {
			return fmt.Errorf("%w (call stopped)", ctx.Err())
		}
		return fmt.Errorf("%w (call stopped)", context.Canceled)
	}
	if err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("%w (%v)", ctx.Err(), err)
		}
		return fmt.Errorf("%w: %v", ErrTrap, err)
	}
	return nil
}
