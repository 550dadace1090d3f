package ring

import (
	"fmt"
	"runtime"
	"sync"
	"testing"
)

// The benchmarks push b.N items in total, split over N producer goroutines,
// while one consumer drains them in batches of up to 64, so ns/item is the
// cost of moving one item from a producer to the consumer under contention.
// All three queues hold 1024 items.

const (
	benchCapacity = 1024
	benchBatch    = 64
)

var benchProducers = []int{1, 2, 4, 8}

// queue is the part of each candidate the benchmark drives.
type queue interface {
	push(v uint64)
	popBatch(dst []uint64) int
}

type ringQueue struct{ r *MPSC[uint64] }

func (q ringQueue) push(v uint64)             { q.r.Push(v) }
func (q ringQueue) popBatch(dst []uint64) int { return q.r.PopBatch(dst) }

// mutexSlice is a bounded circular buffer under one mutex, the obvious
// alternative. A producer that finds it full yields and retries.
type mutexSlice struct {
	mu         sync.Mutex
	buf        []uint64
	head, size int
}

func (q *mutexSlice) push(v uint64) {
	for {
		q.mu.Lock()
		if q.size < len(q.buf) {
			q.buf[(q.head+q.size)%len(q.buf)] = v
			q.size++
			q.mu.Unlock()
			return
		}
		q.mu.Unlock()
		runtime.Gosched()
	}
}

func (q *mutexSlice) popBatch(dst []uint64) int {
	q.mu.Lock()
	n := min(len(dst), q.size)
	for i := range n {
		dst[i] = q.buf[(q.head+i)%len(q.buf)]
	}
	q.head = (q.head + n) % len(q.buf)
	q.size -= n
	q.mu.Unlock()
	return n
}

type chanQueue chan uint64

func (q chanQueue) push(v uint64) { q <- v }

func (q chanQueue) popBatch(dst []uint64) int {
	n := 0
	for n < len(dst) {
		select {
		case v := <-q:
			dst[n] = v
			n++
		default:
			return n
		}
	}
	return n
}

func runQueueBench(b *testing.B, newQueue func() queue) {
	for _, producers := range benchProducers {
		b.Run(fmt.Sprintf("producers=%d", producers), func(b *testing.B) {
			q := newQueue()
			b.ReportAllocs()
			b.SetBytes(8) // one uint64 per item
			b.ResetTimer()

			var wg sync.WaitGroup
			for p := range producers {
				// Spread b.N so the producers push exactly b.N in total.
				n := b.N / producers
				if p < b.N%producers {
					n++
				}
				wg.Go(func() {
					for i := range n {
						q.push(uint64(i))
					}
				})
			}

			dst := make([]uint64, benchBatch)
			for got := 0; got < b.N; {
				n := q.popBatch(dst)
				if n == 0 {
					runtime.Gosched()
				}
				got += n
			}
			wg.Wait()

			b.StopTimer()
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N), "ns/item")
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "items/s")
		})
	}
}

func BenchmarkRing(b *testing.B) {
	runQueueBench(b, func() queue { return ringQueue{New[uint64](benchCapacity)} })
}

func BenchmarkMutexSlice(b *testing.B) {
	runQueueBench(b, func() queue { return &mutexSlice{buf: make([]uint64, benchCapacity)} })
}

func BenchmarkChannel(b *testing.B) {
	runQueueBench(b, func() queue { return make(chanQueue, benchCapacity) })
}

// BenchmarkTryPushPop measures the uncontended cost of one push and one pop
// on the same goroutine.
func BenchmarkTryPushPop(b *testing.B) {
	r := New[uint64](benchCapacity)
	b.ReportAllocs()
	for i := range b.N {
		r.TryPush(uint64(i))
		r.TryPop()
	}
}
