package wasmhost

import (
	"bytes"
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
)

// Host import limits (ABI §4).
const (
	maxLogLine      = 1024
	maxCounterNames = 64
	maxKVKey        = 256
	maxKVValue      = 65536
	maxKVKeys       = 4096
	logBurst        = 50
	logPerSecond    = 10
)

// importCaps maps each bb import to the capability that allows it.
var importCaps = map[string]string{
	"log":         CapLog,
	"counter_add": CapMetrics,
	"kv_get":      CapKV,
	"kv_set":      CapKV,
	"kv_delete":   CapKV,
	"now":         CapClock,
}

// moduleState is what outlives a module version: its kv store, counters and
// log limiter, keyed by module name in the Host.
type moduleState struct {
	name   string
	logger *slog.Logger

	mu       sync.Mutex
	kv       map[string][]byte
	counters map[string]int64
	tokens   float64
	lastFill time.Time

	suppressed atomic.Uint64
}

func newModuleState(name string, logger *slog.Logger) *moduleState {
	return &moduleState{
		name:     name,
		logger:   logger.With("module", name),
		kv:       map[string][]byte{},
		counters: map[string]int64{},
		tokens:   logBurst,
		lastFill: time.Now(),
	}
}

// allowLog takes a token from the module's log bucket.
func (s *moduleState) allowLog() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	s.tokens = min(logBurst, s.tokens+now.Sub(s.lastFill).Seconds()*logPerSecond)
	s.lastFill = now
	if s.tokens < 1 {
		s.suppressed.Add(1)
		return false
	}
	s.tokens--
	return true
}

func (s *moduleState) log(level int32, msg []byte) {
	if len(msg) > maxLogLine {
		msg = msg[:maxLogLine]
	}
	if !s.allowLog() {
		return
	}
	lv := slog.LevelInfo
	switch level {
	case 0:
		lv = slog.LevelDebug
	case 2:
		lv = slog.LevelWarn
	case 3:
		lv = slog.LevelError
	}
	s.logger.Log(context.Background(), lv, string(bytes.TrimRight(msg, "\n")), "source", "guest")
}

func (s *moduleState) counterSnapshot() map[string]int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.counters) == 0 {
		return nil
	}
	out := make(map[string]int64, len(s.counters))
	for k, v := range s.counters {
		out[k] = v
	}
	return out
}

func validCounterName(b []byte) bool {
	if len(b) == 0 || len(b) > 64 {
		return false
	}
	for _, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

// lineWriter turns WASI stdout/stderr into log lines.
type lineWriter struct {
	s     *moduleState
	level int32
	mu    sync.Mutex
	buf   []byte
}

func (w *lineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, p...)
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			break
		}
		w.s.log(w.level, w.buf[:i])
		w.buf = w.buf[i+1:]
	}
	if len(w.buf) > maxLogLine {
		w.s.log(w.level, w.buf)
		w.buf = w.buf[:0]
	}
	return len(p), nil
}

func read(m api.Module, ptr, n uint32) ([]byte, bool) {
	return m.Memory().Read(ptr, n)
}

// instantiateBB links the "bb" host module into rt; its functions act on s.
func instantiateBB(ctx context.Context, rt wazero.Runtime, s *moduleState) error {
	i32, i64 := api.ValueTypeI32, api.ValueTypeI64
	b := rt.NewHostModuleBuilder("bb")
	b.NewFunctionBuilder().WithGoModuleFunction(api.GoModuleFunc(func(_ context.Context, m api.Module, st []uint64) {
		if msg, ok := read(m, uint32(st[1]), uint32(st[2])); ok {
			s.log(int32(st[0]), msg)
		}
	}), []api.ValueType{i32, i32, i32}, nil).Export("log")
	b.NewFunctionBuilder().WithGoModuleFunction(api.GoModuleFunc(func(_ context.Context, m api.Module, st []uint64) {
		name, ok := read(m, uint32(st[0]), uint32(st[1]))
		if !ok || !validCounterName(name) {
			return
		}
		s.mu.Lock()
		if _, exists := s.counters[string(name)]; exists || len(s.counters) < maxCounterNames {
			s.counters[string(name)] += int64(st[2])
		}
		s.mu.Unlock()
	}), []api.ValueType{i32, i32, i64}, nil).Export("counter_add")
	b.NewFunctionBuilder().WithGoModuleFunction(api.GoModuleFunc(func(_ context.Context, m api.Module, st []uint64) {
		key, ok := read(m, uint32(st[0]), uint32(st[1]))
		res := int32(-1)
		if ok {
			s.mu.Lock()
			v, found := s.kv[string(key)]
			s.mu.Unlock()
			if found {
				res = int32(len(v))
				if uint32(len(v)) <= uint32(st[3]) {
					if !m.Memory().Write(uint32(st[2]), v) {
						res = -1
					}
				}
			}
		}
		st[0] = api.EncodeI32(res)
	}), []api.ValueType{i32, i32, i32, i32}, []api.ValueType{i32}).Export("kv_get")
	b.NewFunctionBuilder().WithGoModuleFunction(api.GoModuleFunc(func(_ context.Context, m api.Module, st []uint64) {
		res := int32(-1)
		key, ok1 := read(m, uint32(st[0]), uint32(st[1]))
		val, ok2 := read(m, uint32(st[2]), uint32(st[3]))
		if ok1 && ok2 && len(key) <= maxKVKey && len(val) <= maxKVValue {
			s.mu.Lock()
			if _, exists := s.kv[string(key)]; exists || len(s.kv) < maxKVKeys {
				s.kv[string(key)] = bytes.Clone(val)
				res = 0
			}
			s.mu.Unlock()
		}
		st[0] = api.EncodeI32(res)
	}), []api.ValueType{i32, i32, i32, i32}, []api.ValueType{i32}).Export("kv_set")
	b.NewFunctionBuilder().WithGoModuleFunction(api.GoModuleFunc(func(_ context.Context, m api.Module, st []uint64) {
		res := int32(-1)
		if key, ok := read(m, uint32(st[0]), uint32(st[1])); ok {
			s.mu.Lock()
			if _, found := s.kv[string(key)]; found {
				delete(s.kv, string(key))
				res = 0
			}
			s.mu.Unlock()
		}
		st[0] = api.EncodeI32(res)
	}), []api.ValueType{i32, i32}, []api.ValueType{i32}).Export("kv_delete")
	b.NewFunctionBuilder().WithGoModuleFunction(api.GoModuleFunc(func(_ context.Context, _ api.Module, st []uint64) {
		st[0] = uint64(time.Now().UnixNano())
	}), nil, []api.ValueType{i64}).Export("now")
	_, err := b.Instantiate(ctx)
	return err
}
