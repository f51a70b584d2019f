package event

import (
	"errors"
	"fmt"
	"sync"
)

// Slot is one preallocated ring entry. Its byte buffers are allocated once,
// when the ring is built, with fixed capacities: Data holds up to the
// configured maximum event size, Producer and Key up to [MaxIDLen] bytes.
// Publishing copies into them; nothing on the publish path allocates.
//
// Consumers attached to the ring read slots without locking (the ring's
// sequences order them after the producer). Out-of-band readers (range reads,
// live tails) that may race with a producer overwriting the slot must use
// [Slot.Snapshot], which takes the slot's lock.
type Slot struct {
	mu sync.Mutex

	// Seq is the ring sequence this slot currently holds (-1 before first use).
	Seq int64
	// Timestamp is the publish time in Unix nanoseconds.
	Timestamp int64
	// ProducerSeq is the producer's own sequence number when HasProducerSeq.
	ProducerSeq    int64
	HasProducerSeq bool
	// Producer is the producer id (empty when none).
	Producer []byte
	// Key is the event key (empty when none).
	Key []byte
	// Data is the event payload: one JSON value.
	Data []byte
}

// ErrTooLarge is returned when an event does not fit its slot.
var ErrTooLarge = errors.New("event too large")

// NewSlotFactory returns a ring factory that preallocates slots for payloads
// of up to maxEventSize bytes.
func NewSlotFactory(maxEventSize int) func() Slot {
	return func() Slot {
		return Slot{
			Seq:      -1,
			Producer: make([]byte, 0, MaxIDLen),
			Key:      make([]byte, 0, MaxIDLen),
			Data:     make([]byte, 0, maxEventSize),
		}
	}
}

// Fits reports whether r fits a slot with payload capacity maxEventSize,
// returning a descriptive error otherwise.
func Fits(r *Raw, producer []byte, maxEventSize int) error {
	if len(r.Data) > maxEventSize {
		return fmt.Errorf("%w: data is %d bytes, the limit (ring.max_event_size) is %d", ErrTooLarge, len(r.Data), maxEventSize)
	}
	if len(producer) > MaxIDLen {
		return fmt.Errorf("%w: producer id is %d bytes, the limit is %d", ErrTooLarge, len(producer), MaxIDLen)
	}
	return nil
}

// Fill copies r into the slot under the slot's lock. producer is the
// effective producer id (r.Producer or a header default). Lengths must have
// been checked with [Fits]; Fill truncates nothing and panics on misuse
// rather than growing a buffer.
func (s *Slot) Fill(seq, now int64, r *Raw, producer []byte) {
	s.mu.Lock()
	s.Seq = seq
	s.Timestamp = now
	s.ProducerSeq = r.Sequence
	s.HasProducerSeq = r.HasSequence
	s.Producer = appendFixed(s.Producer[:0], producer)
	s.Key = appendFixed(s.Key[:0], r.Key)
	s.Data = appendFixed(s.Data[:0], r.Data)
	s.mu.Unlock()
}

func appendFixed(dst, src []byte) []byte {
	if len(src) > cap(dst) {
		panic("event: slot buffer overflow (Fits not checked)")
	}
	dst = dst[:len(src)]
	copy(dst, src)
	return dst
}

// Copy is a detached copy of a slot, for readers outside the ring.
type Copy struct {
	Seq            int64
	Timestamp      int64
	ProducerSeq    int64
	HasProducerSeq bool
	Producer       []byte
	Key            []byte
	Data           []byte
}

// Snapshot copies the slot into dst (reusing dst's buffers) if it still
// holds sequence seq. It reports the sequence found: equal to seq on
// success, lower when seq has not been written yet, higher when the slot
// has already been overwritten by a later event.
func (s *Slot) Snapshot(seq int64, dst *Copy) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.Seq != seq {
		return s.Seq
	}
	dst.Seq = s.Seq
	dst.Timestamp = s.Timestamp
	dst.ProducerSeq = s.ProducerSeq
	dst.HasProducerSeq = s.HasProducerSeq
	dst.Producer = append(dst.Producer[:0], s.Producer...)
	dst.Key = append(dst.Key[:0], s.Key...)
	dst.Data = append(dst.Data[:0], s.Data...)
	return seq
}
