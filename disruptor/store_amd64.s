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
