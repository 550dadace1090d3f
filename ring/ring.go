// Package ring provides a bounded, lock-free, multi-producer single-consumer
// (MPSC) queue.
//
// The engine uses it as each shard's inbox: worker goroutines (DNS, DKIM, the
// spool committer) push completions, and the shard's event loop pops them in
// batches after an eventfd wakeup. The accounting logger uses it between the
// many goroutines that log records and its single file writer. Both need a
// push that costs a few atomic operations, never allocates, never takes a
// lock that the consumer also takes, and never discards an item.
//
// # Design
//
// The queue is Dmitry Vyukov's bounded MPMC queue reduced to one consumer.
// Every slot carries a sequence number that encodes which lap of the ring
// the slot belongs to and whether it is empty or full in that lap. A producer reserves a slot by a
// compare-and-swap on the shared enqueue position, writes the value, and
// publishes it with one atomic store of the slot's sequence number. The
// consumer owns the dequeue position alone, so it needs no CAS at all. The
// full protocol is documented on [MPSC].
//
// Producers and the consumer touch different cache lines except for the slot
// being handed over. The enqueue and dequeue positions are padded apart so a
// producer's CAS does not invalidate the line the consumer reads on every
// pop.
//
// # Rejected alternatives
//
//   - A buffered Go channel. Every send and receive takes the channel's
//     internal lock, so producers and the consumer contend on one mutex, and
//     a send to a full channel or a receive from an empty one parks the
//     goroutine and hands off through the scheduler. A shard's event loop
//     must never park in a channel receive, because it waits in epoll_wait
//     on an eventfd instead. BenchmarkChannel measures it next to the ring.
//   - A slice guarded by a sync.Mutex. It is simple and allocation-free when
//     preallocated, but under contention every push serializes on the lock,
//     and a producer preempted while holding it stalls the consumer too.
//     BenchmarkMutexSlice measures it.
//   - An unbounded linked list (Vyukov's intrusive MPSC queue). A push never
//     fails, but it allocates a node per item and lets a slow consumer grow
//     memory without limit. A bounded ring turns overload into backpressure,
//     which the accounting log requires: it must slow producers, not drop
//     records or exhaust memory.
package ring

import (
	"runtime"
	"sync"
	"sync/atomic"
)

// cacheLinePad separates fields written by different goroutines. It is 128
// bytes rather than 64 because x86 prefetches cache lines in adjacent pairs
// and some arm64 cores use 128-byte lines, as golang.org/x/sys/cpu assumes.
type cacheLinePad [128]byte

// pushSpins is how many times Push retries a full ring, yielding the
// processor between tries, before it parks. A consumer that is merely
// behind usually frees a slot within a few yields, and parking costs a
// mutex and a scheduler round trip on both sides.
const pushSpins = 16

// slot is one cell of the ring. seq is the slot's sequence number, described
// on MPSC.
type slot[T any] struct {
	seq atomic.Uint64
	val T
}

// MPSC is a bounded lock-free queue with any number of producers and exactly
// one consumer. The zero value is not usable; create one with [New].
//
// # Positions and sequence numbers
//
// The enqueue position E and the dequeue position D count pushes and pops
// since New, and they only grow. Position p lives in slot p & mask, and the
// slot's sequence number seq determines who owns it:
//
//   - seq == p: the slot is empty and belongs to the producer that will
//     reserve position p. New sets seq = i for slot i, so the first lap
//     starts empty.
//   - seq == p+1: the slot holds the value pushed at position p, and it
//     belongs to the consumer.
//   - seq == p+cap (written by the consumer after popping p): the slot is
//     empty again and belongs to the producer of position p+cap, one lap
//     later.
//
// # Push (any goroutine)
//
//  1. Load E = p and the slot's seq.
//  2. If seq == p, the slot is free for this lap: CAS E from p to p+1. A
//     successful CAS reserves position p for this producer alone, and no
//     other producer can write the slot until the consumer frees it a lap
//     later. On CAS failure another producer took p; retry from 1.
//  3. Write the value into the slot. No other goroutine reads or writes it
//     now: producers see seq == p < their positions and the consumer waits
//     for seq == p+1.
//  4. Publish with seq.Store(p+1). This store is the release that makes the
//     value visible to the consumer, so the consumer never sees a torn or
//     half-written value.
//
// If seq < p, the slot still holds the value from the previous lap that the
// consumer has not popped yet, so the ring is full and TryPush returns false.
// If seq > p, another producer already reserved p and E moved on; reload E.
//
// # Pop (single consumer)
//
//  1. Read D = p (owned by the consumer; the atomic is only so Len can read
//     it) and the slot's seq.
//  2. If seq != p+1, the producer of position p has not published yet (it
//     may have reserved the slot and still be writing it), so the ring is
//     empty from the consumer's point of view. Items pushed at later
//     positions stay invisible until p is published, which keeps FIFO order.
//  3. Read the value, then zero the slot so the ring does not keep the
//     value's referents alive after the consumer dropped it.
//  4. Free the slot for the next lap with seq.Store(p+cap), then store
//     D = p+1.
//
// # Wraparound
//
// Slot indexes wrap every cap positions, and the sequence number tells the
// laps apart: a producer at position p+cap finds seq == p+1 (not yet popped)
// or p+cap (popped), never a value from which it could misread the slot as
// free. The positions themselves are uint64 and would wrap only after 2^64
// pushes (584 years at one push per nanosecond); the comparisons use the
// signed difference seq-p, which stays correct across that wrap too.
//
// # Parking full producers
//
// Push spins on a full ring for a few yields and then parks on a
// sync.Cond. A lost wakeup (the consumer frees a slot just before the
// producer sleeps, and nobody wakes it) is ruled out by the order of
// operations, which relies on Go's atomics being sequentially consistent:
//
//   - The producer, holding mu, increments waiters, then retries TryPush,
//     then calls cond.Wait, which releases mu only once it is queued.
//   - The consumer frees slots (the seq stores of Pop step 4), then loads
//     waiters, and if it is nonzero broadcasts while holding mu.
//
// Either the producer's retry observes the freed slot, or the consumer's
// load observes waiters > 0. In the second case the broadcast needs mu,
// which the producer holds until it is inside Wait, so the broadcast cannot
// fall between the retry and the sleep. When the ring is not full, no
// producer parks and the consumer pays one atomic load per pop or batch.
type MPSC[T any] struct {
	_ cacheLinePad

	// Producers: CAS by any goroutine.
	enqueue atomic.Uint64
	_       cacheLinePad

	// Consumer: stored only by the single consumer, loaded by Len.
	dequeue atomic.Uint64
	_       cacheLinePad

	// Immutable after New.
	mask  uint64
	slots []slot[T]

	// Parked producers. waiters is incremented and decremented with mu held
	// and loaded without it by the consumer; mu guards cond's wait list.
	waiters atomic.Int64
	mu      sync.Mutex
	cond    sync.Cond
}

// New returns an empty ring that holds at least capacity items. The
// capacity is rounded up to a power of two, so a position maps to its slot
// with a mask. A capacity below 2 becomes 2.
func New[T any](capacity int) *MPSC[T] {
	n := uint64(2)
	for n < uint64(max(capacity, 0)) {
		n <<= 1
	}
	r := &MPSC[T]{
		mask:  n - 1,
		slots: make([]slot[T], n),
	}
	for i := range r.slots {
		r.slots[i].seq.Store(uint64(i))
	}
	r.cond.L = &r.mu
	return r
}

// Cap returns the number of slots, a power of two.
func (r *MPSC[T]) Cap() int { return len(r.slots) }

// Len returns the number of items pushed and not yet popped. Producers and
// the consumer move the positions concurrently, so the value is approximate
// and may include reserved slots whose values are not yet published.
func (r *MPSC[T]) Len() int {
	// Load D first: E only grows, so loading it second keeps E >= D.
	d := r.dequeue.Load()
	e := r.enqueue.Load()
	n := int(e - d)
	return min(n, len(r.slots))
}

// TryPush appends v and reports whether it did. It returns false when the
// ring is full. It is safe for any number of goroutines at once.
func (r *MPSC[T]) TryPush(v T) bool {
	pos := r.enqueue.Load()
	for {
		s := &r.slots[pos&r.mask]
		seq := s.seq.Load()
		switch diff := int64(seq - pos); {
		case diff == 0:
			// The slot is free in this lap: reserve position pos.
			if r.enqueue.CompareAndSwap(pos, pos+1) {
				s.val = v
				s.seq.Store(pos + 1) // publish to the consumer
				return true
			}
			pos = r.enqueue.Load()
		case diff < 0:
			// The slot still holds the previous lap's value: full.
			return false
		default:
			// Another producer reserved pos; catch up.
			pos = r.enqueue.Load()
		}
	}
}

// Push appends v, waiting while the ring is full. It first retries with
// runtime.Gosched between attempts and then parks until the consumer frees
// a slot. The type's comment explains why no wakeup is lost. Push waits
// forever if the consumer stops popping.
func (r *MPSC[T]) Push(v T) {
	if r.TryPush(v) {
		return
	}
	for range pushSpins {
		runtime.Gosched()
		if r.TryPush(v) {
			return
		}
	}

	r.mu.Lock()
	defer r.mu.Unlock()
	for {
		r.waiters.Add(1)
		if r.TryPush(v) {
			r.waiters.Add(-1)
			return
		}
		r.cond.Wait()
		r.waiters.Add(-1)
	}
}

// TryPop removes and returns the oldest item. It returns false when the ring
// is empty or the oldest position is reserved but not yet published.
//
// REQUIRES: the caller is the ring's single consumer.
func (r *MPSC[T]) TryPop() (T, bool) {
	v, ok := r.pop()
	if ok {
		r.wakeProducers()
	}
	return v, ok
}

// PopBatch removes up to len(dst) items in FIFO order into dst[:n] and
// returns n. It stops early at the first position that is not published.
//
// REQUIRES: the caller is the ring's single consumer.
func (r *MPSC[T]) PopBatch(dst []T) int {
	n := 0
	for n < len(dst) {
		v, ok := r.pop()
		if !ok {
			break
		}
		dst[n] = v
		n++
	}
	if n > 0 {
		r.wakeProducers()
	}
	return n
}

// pop removes one item without waking producers.
func (r *MPSC[T]) pop() (T, bool) {
	var zero T
	pos := r.dequeue.Load()
	s := &r.slots[pos&r.mask]
	if s.seq.Load() != pos+1 {
		return zero, false
	}
	v := s.val
	s.val = zero // drop the ring's reference so the GC can free v's referents
	s.seq.Store(pos + r.mask + 1)
	r.dequeue.Store(pos + 1)
	return v, true
}

// wakeProducers wakes producers parked in Push. It must run after the slot
// was freed; the ordering argument is on the type's comment.
func (r *MPSC[T]) wakeProducers() {
	if r.waiters.Load() == 0 {
		return
	}
	r.mu.Lock()
	r.cond.Broadcast()
	r.mu.Unlock()
}
