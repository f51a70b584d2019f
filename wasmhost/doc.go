// Package wasmhost runs BadBatch handler modules (WebAssembly, ABI version 1,
// see modules/ABI.md) on wazero.
//
// A Host owns the compilation cache. Host.Load compiles a module with its
// Manifest, validates it with a canary instance and returns a Module: a pool
// of reusable instances with cached function handles, called once per batch
// through CallWithStack. Module.Process is the stage API: a batch of input
// events in, outputs (emits, forwards, dead letters) out through a callback.
//
// Isolation: every call runs under a per-call timeout. Load instruments the
// module (guard.go): every loop iteration and function entry checks a stop
// flag that the module's watchdog goroutine sets when a call overruns its
// timeout or its caller's context ends, so an endless loop costs at most
// the timeout (plus one watchdog tick), and the guest leaves native code
// for Go every 65536 checks so it cannot hold up the garbage collector.
// (wazero's WithCloseOnContextDone, used before, made a Go guest ~8x
// slower and cost ~1 µs per call.) A trap, out-of-memory, timeout or malformed output discards the instance; the
// batch is retried by bisection so the poison event is isolated and gets the
// module's error policy while every other event is processed. A module that
// crashes QuarantineAfter times in a row is quarantined.
//
// A Stage is a stable, hot-swappable handle for a module name; a Registry
// loads a directory of modules, watches it with fsnotify and swaps new
// versions in at a batch boundary after they pass validation (Install and
// Remove do the same for uploads).
//
// Wiring into the disruptor: BatchHandler runs one Stage as a
// disruptor.EventHandler (one Process call per ring batch); GraphHandler
// runs all of a Registry's modules as a single consumer, layer by layer in
// the order of their manifests' after lists, and picks up modules added at
// run time from the next batch on.
package wasmhost
