package ring

import (
	"runtime"
	"sync"
	"testing"
	"time"
)

func TestNewCapacity(t *testing.T) {
	tests := []struct {
		capacity int
		want     int
	}{
		{-1, 2},
		{0, 2},
		{1, 2},
		{2, 2},
		{3, 4},
		{1000, 1024},
		{1024, 1024},
		{1025, 2048},
	}
	for _, tt := range tests {
		if got := New[int](tt.capacity).Cap(); got != tt.want {
			t.Errorf("New(%d).Cap() = %d, want %d", tt.capacity, got, tt.want)
		}
	}
}

func TestSingleProducerFIFO(t *testing.T) {
	r := New[int](8)
	for i := range 5 {
		if !r.TryPush(i) {
			t.Fatalf("TryPush(%d) = false on a ring with %d free slots", i, r.Cap()-i)
		}
	}
	if got := r.Len(); got != 5 {
		t.Errorf("Len() = %d, want 5", got)
	}
	for want := range 5 {
		got, ok := r.TryPop()
		if !ok || got != want {
			t.Fatalf("TryPop() = %d, %v, want %d, true", got, ok, want)
		}
	}
}

func TestFullAndEmptyEdges(t *testing.T) {
	r := New[int](4)

	if v, ok := r.TryPop(); ok {
		t.Fatalf("TryPop() on a new ring = %d, true, want false", v)
	}
	for i := range 4 {
		if !r.TryPush(i) {
			t.Fatalf("TryPush(%d) = false before the ring is full", i)
		}
	}
	if r.TryPush(99) {
		t.Fatal("TryPush on a full ring = true, want false")
	}
	if got := r.Len(); got != 4 {
		t.Errorf("Len() of a full ring = %d, want 4", got)
	}

	// One pop frees exactly one slot.
	if v, ok := r.TryPop(); !ok || v != 0 {
		t.Fatalf("TryPop() = %d, %v, want 0, true", v, ok)
	}
	if !r.TryPush(4) {
		t.Fatal("TryPush after one pop = false, want true")
	}
	if r.TryPush(5) {
		t.Fatal("TryPush on a refilled ring = true, want false")
	}

	dst := make([]int, 10)
	n := r.PopBatch(dst)
	if n != 4 {
		t.Fatalf("PopBatch(len 10) = %d, want 4", n)
	}
	for i, want := range []int{1, 2, 3, 4} {
		if dst[i] != want {
			t.Errorf("PopBatch dst[%d] = %d, want %d", i, dst[i], want)
		}
	}
	if n := r.PopBatch(dst); n != 0 {
		t.Errorf("PopBatch on an empty ring = %d, want 0", n)
	}
	if got := r.Len(); got != 0 {
		t.Errorf("Len() of an empty ring = %d, want 0", got)
	}
}

func TestPopBatchShortDestination(t *testing.T) {
	r := New[int](8)
	for i := range 6 {
		r.TryPush(i)
	}
	dst := make([]int, 4)
	if n := r.PopBatch(dst); n != 4 {
		t.Fatalf("PopBatch(len 4) with 6 queued = %d, want 4", n)
	}
	if n := r.PopBatch(dst); n != 2 || dst[0] != 4 || dst[1] != 5 {
		t.Fatalf("second PopBatch = %d %v, want 2 [4 5 ...]", n, dst[:n])
	}
}

func TestWraparound(t *testing.T) {
	// A small ring cycled many times exercises every slot on many laps,
	// with both single pops and batches.
	r := New[int](4)
	dst := make([]int, 3)
	next, want := 0, 0
	for lap := range 10000 {
		for r.TryPush(next) {
			next++
		}
		if lap%2 == 0 {
			v, ok := r.TryPop()
			if !ok || v != want {
				t.Fatalf("lap %d: TryPop() = %d, %v, want %d, true", lap, v, ok, want)
			}
			want++
			continue
		}
		n := r.PopBatch(dst)
		for i := range n {
			if dst[i] != want {
				t.Fatalf("lap %d: PopBatch dst[%d] = %d, want %d", lap, i, dst[i], want)
			}
			want++
		}
	}
	if next < 10000 {
		t.Errorf("pushed %d items over 10000 laps, want at least 10000", next)
	}
}

func TestPopZeroesSlot(t *testing.T) {
	r := New[*int](2)
	r.TryPush(new(int))
	if _, ok := r.TryPop(); !ok {
		t.Fatal("TryPop() = false after a push")
	}
	for i := range r.slots {
		if r.slots[i].val != nil {
			t.Errorf("slot %d still references a popped value", i)
		}
	}
}

// TestMultiProducerStress checks that with many producers and one consumer
// every item arrives exactly once and each producer's items arrive in the
// order it pushed them.
func TestMultiProducerStress(t *testing.T) {
	const producers = 8
	perProducer := 100_000
	if testing.Short() || raceEnabled {
		perProducer = 20_000
	}

	type item struct{ producer, seq int }
	r := New[item](256)

	var wg sync.WaitGroup
	for p := range producers {
		wg.Go(func() {
			for i := range perProducer {
				// Half the producers use TryPush with their own retry loop
				// so both push paths run under contention.
				if p%2 == 0 {
					r.Push(item{p, i})
					continue
				}
				for !r.TryPush(item{p, i}) {
					runtime.Gosched()
				}
			}
		})
	}

	next := make([]int, producers)
	dst := make([]item, 64)
	for total := 0; total < producers*perProducer; {
		n := r.PopBatch(dst)
		if n == 0 {
			runtime.Gosched()
			continue
		}
		for _, it := range dst[:n] {
			if it.seq != next[it.producer] {
				t.Fatalf("producer %d: got item %d, want %d", it.producer, it.seq, next[it.producer])
			}
			next[it.producer]++
		}
		total += n
	}
	wg.Wait()

	for p, n := range next {
		if n != perProducer {
			t.Errorf("producer %d: received %d items, want %d", p, n, perProducer)
		}
	}
	if v, ok := r.TryPop(); ok {
		t.Errorf("TryPop() after all items = %+v, true, want empty", v)
	}
}

// TestPushBlocksUntilDrained checks that Push on a full ring parks instead
// of dropping, and proceeds once the consumer pops.
func TestPushBlocksUntilDrained(t *testing.T) {
	r := New[int](4)
	for i := range 4 {
		r.TryPush(i)
	}

	const blocked = 3
	var wg sync.WaitGroup
	for p := range blocked {
		wg.Go(func() { r.Push(100 + p) })
	}

	// Wait until every producer is parked. The bound only stops a broken
	// test; it is not a speed assertion.
	deadline := time.Now().Add(10 * time.Second)
	for r.waiters.Load() < blocked {
		if time.Now().After(deadline) {
			t.Fatalf("parked producers = %d, want %d", r.waiters.Load(), blocked)
		}
		time.Sleep(time.Millisecond)
	}
	if got := r.Len(); got != 4 {
		t.Fatalf("Len() with producers parked = %d, want 4", got)
	}

	got := map[int]bool{}
	for len(got) < 4+blocked {
		v, ok := r.TryPop()
		if !ok {
			runtime.Gosched()
			continue
		}
		if got[v] {
			t.Fatalf("item %d popped twice", v)
		}
		got[v] = true
	}
	wg.Wait()
	for _, v := range []int{0, 1, 2, 3, 100, 101, 102} {
		if !got[v] {
			t.Errorf("item %d never popped", v)
		}
	}
}

// TestPushParkedWakesOnBatch repeats the handover many times with a tiny
// ring so that a lost wakeup would hang the test.
func TestPushParkedWakesOnBatch(t *testing.T) {
	const items = 50_000
	r := New[int](2)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range items {
			r.Push(i)
		}
	}()

	dst := make([]int, 2)
	for want := 0; want < items; {
		n := r.PopBatch(dst)
		if n == 0 {
			runtime.Gosched()
			continue
		}
		for _, v := range dst[:n] {
			if v != want {
				t.Fatalf("PopBatch item = %d, want %d", v, want)
			}
			want++
		}
	}
	<-done
}
