package engine

import "time"

// timerWheel is a hashed timing wheel (Varghese and Lauck, "Hashed and
// Hierarchical Timing Wheels", 1987) holding one timer per connection.
//
// A connection's deadline moves on every read, so the wheel never moves an
// entry when a deadline changes. The connection keeps its own deadline, and
// the entry stays in the bucket where it was first put. When that bucket
// comes due, the owner checks the stored deadline: if it moved, the entry is
// put back into the bucket of the new deadline, otherwise the timer fires.
// Deadlines further away than one turn of the wheel simply come around
// again. Resetting a timer therefore costs one store, and each connection
// costs at most one entry.
//
// Owned by one shard thread.
type timerWheel struct {
	tick    time.Duration // bucket width
	origin  time.Time     // tick 0
	now     int64         // last tick processed
	buckets [wheelBuckets][]timerEntry
	spare   []timerEntry
}

const wheelBuckets = 256 // a power of two

// timerEntry names a connection slot and the generation it had when the
// entry was made, so an entry for a closed and reused slot is ignored.
type timerEntry struct {
	slot uint32
	gen  uint32
}

func newTimerWheel(tick time.Duration, now time.Time) *timerWheel {
	return &timerWheel{tick: tick, origin: now}
}

// ticksAt returns the tick in which t falls.
func (w *timerWheel) ticksAt(t time.Time) int64 { return int64(t.Sub(w.origin) / w.tick) }

// ticksFor returns how many ticks cover d, rounded up so a timer never fires
// early.
func (w *timerWheel) ticksFor(d time.Duration) int64 { return int64((d + w.tick - 1) / w.tick) }

// schedule puts e into the bucket of tick at; a tick already processed
// means the next one.
func (w *timerWheel) schedule(e timerEntry, at int64) {
	at = max(at, w.now+1)
	b := &w.buckets[at&(wheelBuckets-1)]
	*b = append(*b, e)
}

// advance processes every tick up to and including now, calling due for each
// entry in a bucket that came due. due may call schedule.
func (w *timerWheel) advance(now int64, due func(timerEntry)) {
	// After a long stall only one turn of buckets needs visiting.
	if now-w.now > wheelBuckets {
		w.now = now - wheelBuckets
	}
	for w.now < now {
		w.now++
		b := &w.buckets[w.now&(wheelBuckets-1)]
		if len(*b) == 0 {
			continue
		}
		entries := *b
		*b = w.spare[:0]
		for _, e := range entries {
			due(e)
		}
		clear(entries)
		w.spare = entries[:0]
	}
}
