package spool

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
)

// BenchmarkCommit measures durable commits (pwrite, fdatasync and a synced
// Pebble batch) of 10 KiB bodies from concurrent writers. Each message is
// removed after its commit so segments recycle as in steady state.
// msgs/sync shows how many commits each group commit served.
func BenchmarkCommit(b *testing.B) {
	for _, writers := range []int{1, 16, 64} {
		b.Run(fmt.Sprintf("writers=%d/size=10k", writers), func(b *testing.B) {
			s := openTest(b, b.TempDir(), Options{})
			defer s.Close()
			body := testBody(1, 10<<10)
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			b.ResetTimer()

			var (
				next atomic.Int64
				wg   sync.WaitGroup
			)
			for range writers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for next.Add(1) <= int64(b.N) {
						m, err := s.Inject(testEnvelope("r@example.com"), body)
						if err != nil {
							b.Error(err)
							return
						}
						if err := s.Remove(m); err != nil {
							b.Error(err)
							return
						}
					}
				}()
			}
			wg.Wait()
			b.StopTimer()

			st := s.Stats()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
			if st.Syncs > 0 {
				b.ReportMetric(float64(st.Commits)/float64(st.Syncs), "msgs/sync")
			}
		})
	}
}

// BenchmarkAppend measures the append path alone: buffering and pwrite of
// one record per message, without sync or index.
func BenchmarkAppend(b *testing.B) {
	for _, size := range []int{1 << 10, 10 << 10, 100 << 10} {
		b.Run(fmt.Sprintf("size=%dk", size>>10), func(b *testing.B) {
			s := openTest(b, b.TempDir(), Options{})
			defer s.Close()
			body := testBody(1, size)
			b.SetBytes(int64(size))
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				w := s.NewWriter()
				w.Write(body)
				if err := w.flush(flagLast); err != nil {
					b.Fatal(err)
				}
				w.Abort()
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
		})
	}
}

// BenchmarkAppendParallel measures the lock-free append path with one
// writer per GOMAXPROCS goroutine contending for the same segment tail.
func BenchmarkAppendParallel(b *testing.B) {
	b.Run("size=10k", func(b *testing.B) {
		s := openTest(b, b.TempDir(), Options{})
		defer s.Close()
		body := testBody(1, 10<<10)
		b.SetBytes(int64(len(body)))
		b.ReportAllocs()
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				w := s.NewWriter()
				w.Write(body)
				if err := w.flush(flagLast); err != nil {
					b.Error(err)
					return
				}
				w.Abort()
			}
		})
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
	})
}

// BenchmarkRecover measures Open on a spool of 10 KiB messages: reading
// every index entry and verifying every record. Each iteration reopens the
// same spool.
func BenchmarkRecover(b *testing.B) {
	const messages = 5000
	b.Run(fmt.Sprintf("messages=%d/size=10k", messages), func(b *testing.B) {
		dir := b.TempDir()
		s := openTest(b, dir, Options{})
		body := testBody(1, 10<<10)
		var wg sync.WaitGroup
		for w := range 16 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := w; i < messages; i += 16 {
					if _, err := s.Inject(testEnvelope("r@example.com"), body); err != nil {
						b.Error(err)
						return
					}
				}
			}()
		}
		wg.Wait()
		if err := s.Close(); err != nil {
			b.Fatal(err)
		}

		b.SetBytes(messages * int64(len(body)))
		b.ReportAllocs()
		b.ResetTimer()
		for range b.N {
			s := openTest(b, dir, Options{})
			n := 0
			s.Recover(func(*Message) { n++ })
			if n != messages {
				b.Fatalf("recovered %d messages, want %d", n, messages)
			}
			s.Close()
		}
		b.ReportMetric(float64(b.N*messages)/b.Elapsed().Seconds(), "msgs/s")
	})
}
