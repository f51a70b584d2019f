//go:build arm64 && !race

#include "textflag.h"

// func storeRelease(addr *int64, v int64)
// STLR is a store-release: earlier loads and stores complete before it.
TEXT ·storeRelease(SB), NOSPLIT, $0-16
	MOVD addr+0(FP), R0
	MOVD v+8(FP), R1
	STLR R1, (R0)
	RET

// func spinPause()
TEXT ·spinPause(SB), NOSPLIT, $0-0
	YIELD
	RET

// func storeRelease32(addr *int32, v int32)
TEXT ·storeRelease32(SB), NOSPLIT, $0-12
	MOVD addr+0(FP), R0
	MOVW v+8(FP), R1
	STLRW R1, (R0)
	RET
