//go:build wasip1

package sdk

import (
	"os"
	"unsafe"
)

// Buffer sizes reported to the host by bb_buffers.
const (
	InCap  = 1 << 20
	OutCap = 1 << 20
)

var (
	inWords  [InCap / 8]uint64 // uint64 elements keep the buffers 8-byte aligned
	outWords [OutCap / 8]uint64
	desc     [4]uint32
	inBuf    = unsafe.Slice((*byte)(unsafe.Pointer(&inWords[0])), InCap)
	out      = NewOut(unsafe.Slice((*byte)(unsafe.Pointer(&outWords[0])), OutCap))
	mod      Module
	cfg      *Config
)

// Register installs the module's callbacks. Call it from an init function.
func Register(m Module) { mod = m }

// Current returns the init document (nil before bb_init).
func Current() *Config { return cfg }

//go:wasmexport bb_abi_version
func bbABIVersion() int32 { return ABIVersion }

//go:wasmexport bb_buffers
func bbBuffers() int32 {
	desc[0] = uint32(uintptr(unsafe.Pointer(&inWords[0])))
	desc[1] = InCap
	desc[2] = uint32(uintptr(unsafe.Pointer(&outWords[0])))
	desc[3] = OutCap
	return int32(uintptr(unsafe.Pointer(&desc[0])))
}

//go:wasmexport bb_init
func bbInit(ptr, n int32) int32 {
	if mod.Process == nil {
		os.Stderr.WriteString("sdk: no module registered (call sdk.Register from init)\n")
		return ErrFailed
	}
	// The host writes the init document inside the input buffer (ABI §2.1).
	off := int(uintptr(ptr)) - int(uintptr(unsafe.Pointer(&inWords[0])))
	if off < 0 || n < 0 || off+int(n) > InCap {
		os.Stderr.WriteString("sdk: init document outside the input buffer\n")
		return ErrFailed
	}
	doc := inBuf[off : off+int(n)]
	c, err := ParseConfig(doc)
	if err != nil {
		os.Stderr.WriteString(err.Error() + "\n")
		return ErrFailed
	}
	cfg = c
	if mod.Init != nil {
		if err := mod.Init(c); err != nil {
			os.Stderr.WriteString("init: " + err.Error() + "\n")
			return ErrFailed
		}
	}
	return 0
}

//go:wasmexport bb_process
func bbProcess(n, inLen int32) int32 {
	if mod.Process == nil || inLen < 0 || inLen > InCap {
		return ErrFailed
	}
	return ProcessBatch(mod.Process, inBuf[:inLen], int(n), out)
}

//go:wasmexport bb_timer
func bbTimer(now int64) int32 {
	if mod.Timer == nil {
		return 0
	}
	return RunNoInput(func(o *Out) { mod.Timer(now, o) }, out)
}

//go:wasmexport bb_flush
func bbFlush() int32 {
	return RunNoInput(mod.Flush, out)
}
