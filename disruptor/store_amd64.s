//go:build amd64 && !race

#include "textflag.h"

// func storeRelease(addr *int64, v int64)
// A plain MOV: on x86 (TSO) a store is never reordered with earlier loads
// or stores, so it has release semantics without the full fence (XCHG)
// that sync/atomic's sequentially consistent Store costs.
TEXT ·storeRelease(SB), NOSPLIT, $0-16
	MOVQ addr+0(FP), AX
	MOVQ v+8(FP), BX
	MOVQ BX, (AX)
	RET

// func spinPause()
// PAUSE tells the core it is in a spin-wait loop: it stops the loop from
// flooding the memory system with reads of the line the producer is about
// to write, and frees resources for a hyper-thread sibling.
TEXT ·spinPause(SB), NOSPLIT, $0-0
	PAUSE
	RET

// func storeRelease32(addr *int32, v int32)
TEXT ·storeRelease32(SB), NOSPLIT, $0-12
	MOVQ addr+0(FP), AX
	MOVL v+8(FP), BX
	MOVL BX, (AX)
	RET
