package pipeline

import "sync"

// Idempotency: every producer gets a window of W slots indexed by
// producerSequence % W, each remembering (producer sequence, ring sequence).
// For a producer whose sequences increase this is exactly "the last W
// sequences". A (producer, sequence) still in its window is a duplicate and
// is answered with the ring sequence it was first given. A sequence older
// than the window (its slot holds a newer sequence) cannot be checked and is
// accepted as new without being remembered — so a device that restarts its
// counter at 0 keeps working. Producers are kept in LRU order, at most
// maxProducers of them; the least recently used idle one is forgotten first.

const (
	emptySeq   int64 = -1
	pendingSeq int64 = -2 // reserved by an in-flight request
)

type producerWin struct {
	name       string
	high       int64   // highest producer sequence stored (restored or resolved), -1 for none
	pseq       []int64 // producer sequence held by each slot, emptySeq when free
	rseq       []int64 // ring sequence, or pendingSeq
	owner      []uint64
	pending    int
	prev, next *producerWin
}

type idemTable struct {
	mu        sync.Mutex
	cond      *sync.Cond
	window    int
	max       int
	producers map[string]*producerWin
	head      *producerWin // most recently used
	tail      *producerWin
}

func newIdemTable(window, maxProducers int) *idemTable {
	t := &idemTable{window: window, max: maxProducers, producers: make(map[string]*producerWin)}
	t.cond = sync.NewCond(&t.mu)
	return t
}

// lookupClass is the state of one (producer, sequence) in the table.
type lookupClass int

const (
	classNew lookupClass = iota
	classDone
	classPendingOther
	classPendingSelf
	classTooOld
)

// classify reports the state of (producer, pseq) for request req. It must
// be called with t.mu held. It never creates a producer.
func (t *idemTable) classify(producer []byte, pseq int64, req uint64) (lookupClass, int64) {
	w := t.producers[string(producer)]
	if w == nil {
		return classNew, 0
	}
	i := pseq % int64(t.window)
	switch {
	case w.pseq[i] == pseq && w.rseq[i] == pendingSeq && w.owner[i] == req:
		return classPendingSelf, 0
	case w.pseq[i] == pseq && w.rseq[i] == pendingSeq:
		return classPendingOther, 0
	case w.pseq[i] == pseq:
		return classDone, w.rseq[i]
	case w.pseq[i] > pseq:
		return classTooOld, 0
	}
	return classNew, 0
}

// reserve marks (producer, pseq) pending for req. t.mu must be held and
// classify must have returned classNew.
func (t *idemTable) reserve(producer []byte, pseq int64, req uint64) {
	w := t.producers[string(producer)]
	if w == nil {
		w = t.add(string(producer))
	} else {
		t.touch(w)
	}
	i := pseq % int64(t.window)
	if w.rseq[i] == pendingSeq {
		// An older sequence in the same slot is still in flight in another
		// request; it will fail to resolve (its pseq no longer matches),
		// which only means it is not remembered.
		w.pending--
	}
	w.pseq[i], w.rseq[i], w.owner[i] = pseq, pendingSeq, req
	w.pending++
}

// resolve records the outcome of a reservation: ring >= 0 stores the ring
// sequence, ring < 0 forgets the reservation (the event was rejected).
// t.mu must be held.
func (t *idemTable) resolve(producer []byte, pseq int64, req uint64, ring int64) {
	w := t.producers[string(producer)]
	if w == nil {
		return
	}
	i := pseq % int64(t.window)
	if w.pseq[i] != pseq || w.rseq[i] != pendingSeq || w.owner[i] != req {
		return
	}
	w.pending--
	if ring >= 0 {
		w.rseq[i] = ring
		w.high = max(w.high, pseq)
	} else {
		w.pseq[i], w.rseq[i] = emptySeq, emptySeq
	}
}

func (t *idemTable) add(name string) *producerWin {
	if len(t.producers) >= t.max {
		for v := t.tail; v != nil; v = v.prev {
			if v.pending == 0 {
				t.unlink(v)
				delete(t.producers, v.name)
				break
			}
		}
	}
	w := &producerWin{
		name:  name,
		high:  -1,
		pseq:  make([]int64, t.window),
		rseq:  make([]int64, t.window),
		owner: make([]uint64, t.window),
	}
	for i := range w.pseq {
		w.pseq[i], w.rseq[i] = emptySeq, emptySeq
	}
	t.producers[name] = w
	t.pushFront(w)
	return w
}

func (t *idemTable) touch(w *producerWin) {
	if t.head == w {
		return
	}
	t.unlink(w)
	t.pushFront(w)
}

func (t *idemTable) pushFront(w *producerWin) {
	w.prev, w.next = nil, t.head
	if t.head != nil {
		t.head.prev = w
	}
	t.head = w
	if t.tail == nil {
		t.tail = w
	}
}

func (t *idemTable) unlink(w *producerWin) {
	if w.prev != nil {
		w.prev.next = w.next
	} else {
		t.head = w.next
	}
	if w.next != nil {
		w.next.prev = w.prev
	} else {
		t.tail = w.prev
	}
	w.prev, w.next = nil, nil
}

// size returns the number of producers tracked.
func (t *idemTable) size() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.producers)
}

// restore remembers (producer, pseq) → ring as if it had been published,
// following the live rules: a slot holding the same sequence keeps its
// first ring sequence, a slot holding a newer sequence is left alone (the
// live path accepts such a "too old" event without remembering it). It
// reports whether the pair was remembered.
func (t *idemTable) restore(producer []byte, pseq, ring int64) bool {
	if len(producer) == 0 || pseq < 0 || ring < 0 {
		return false
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	w := t.producers[string(producer)]
	if w == nil {
		w = t.add(string(producer))
	} else {
		t.touch(w)
	}
	i := pseq % int64(t.window)
	if w.pseq[i] >= pseq {
		return false
	}
	w.pseq[i], w.rseq[i], w.owner[i] = pseq, ring, 0
	w.high = max(w.high, pseq)
	return true
}

// highest returns the highest sequence stored for producer.
func (t *idemTable) highest(producer string) (int64, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	w := t.producers[producer]
	if w == nil || w.high < 0 {
		return 0, false
	}
	return w.high, true
}

// RestoreIdempotency remembers that producer's event with its own sequence
// producerSeq was stored at sequence seq, exactly as a publish would have:
// a later publish of (producer, producerSeq) is answered as a duplicate of
// seq while it stays within the producer's window (api.idempotency_window
// sequences; at most MaxProducers producers, least recently used forgotten
// first). The appliance calls it at start for the tail of the journal, in
// journal order, so that a retry of an event acknowledged before a restart
// is not stored twice. Call it before Start. It reports whether the pair
// was remembered (false for an empty producer, a negative sequence, or a
// pair already remembered or older than the window).
func (p *Pipeline) RestoreIdempotency(producer []byte, producerSeq, seq int64) bool {
	return p.idem.restore(producer, producerSeq, seq)
}

// ProducerHighest returns the highest producer sequence stored for
// producer among the producers this node remembers (api.max_producers,
// least recently used forgotten first). A hub answers it so that a sink
// resumes after what it already holds.
func (p *Pipeline) ProducerHighest(producer string) (int64, bool) {
	return p.idem.highest(producer)
}
