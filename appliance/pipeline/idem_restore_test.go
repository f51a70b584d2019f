package pipeline

import (
	"context"
	"testing"
	"time"

	"github.com/badbatch/badbatch/appliance/event"
)

// TestRestoreIdempotency: pairs restored before Start are duplicates of
// their original sequence afterwards; the live rules hold (first ring
// sequence kept, a slot holding a newer sequence is not overwritten, the
// window and the producer LRU bound apply); bad input is not remembered.
func TestRestoreIdempotency(t *testing.T) {
	p, err := New(Options{BufferSize: 16, WaitStrategy: "blocking", MaxEventSize: 64, IdempotencyWindow: 4, MaxProducers: 2, Base: 100})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		producer   string
		pseq, ring int64
		want       bool
	}{
		{"a", 1, 10, true},
		{"a", 2, 11, true},
		{"a", 2, 12, false}, // same pair stored twice in the journal: the first wins
		{"a", 9, 13, true},  // slot 1: 9 replaces 1 (window of 4)
		{"a", 5, 14, false}, // slot 1 holds 9: too old, as live
		{"", 3, 15, false},  // no producer: not tracked
		{"b", -1, 16, false},
		{"b", 3, -1, false},
		{"b", 3, 17, true},
		{"c", 0, 18, true}, // third producer: the least recently used (a) is forgotten
	} {
		if got := p.RestoreIdempotency([]byte(tc.producer), tc.pseq, tc.ring); got != tc.want {
			t.Errorf("RestoreIdempotency(%q, %d, %d) = %v, want %v", tc.producer, tc.pseq, tc.ring, got, tc.want)
		}
	}
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = p.Shutdown(ctx)
	})
	// a was forgotten when c was restored: its pair is new again.
	evs := []event.Raw{raw(`1`, "b", 3), raw(`2`, "c", 0), raw(`3`, "b", 6), raw(`4`, "b", 3), raw(`5`, "a", 2)}
	res := make([]Result, len(evs))
	if err := p.Publish(context.Background(), evs, nil, time.Second, res); err != nil {
		t.Fatal(err)
	}
	want := []Result{{17, Duplicate}, {18, Duplicate}, {100, Accepted}, {17, Duplicate}, {101, Accepted}}
	for i := range want {
		if res[i] != want[i] {
			t.Errorf("event %d: %+v, want %+v", i, res[i], want[i])
		}
	}
}
