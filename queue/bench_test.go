package queue

import (
	"fmt"
	"log/slog"
	"testing"
	"time"

	"smta/spool"
)

// BenchmarkEnqueue measures grouping a message's recipients into queues,
// without delivery (the scheduler is not started).
func BenchmarkEnqueue(b *testing.B) {
	for _, domains := range []int{1, 10} {
		b.Run(fmt.Sprintf("domains=%d", domains), func(b *testing.B) {
			s := New(Options{HostName: "relay.test", Logger: slog.New(slog.DiscardHandler)})
			rs := make([]spool.Recipient, domains)
			for i := range rs {
				rs[i].Addr = fmt.Sprintf("user@domain%d.test", i)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				s.Enqueue(&spool.Message{Env: spool.Envelope{ID: "m", Rcpts: rs}})
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
		})
	}
}

// BenchmarkDeliver measures end-to-end delivery of spooled messages to a
// loopback receiver over one connection (MaxSMTPOut=1): spool body read,
// SMTP transaction, accounting record, spool removal. The messages are
// committed before the timer starts.
func BenchmarkDeliver(b *testing.B) {
	for _, perConn := range []int{1, 0} {
		b.Run(fmt.Sprintf("msgs-per-conn=%d", perConn), func(b *testing.B) {
			rx := startReceiver(b)
			h := newHarness(b, b.TempDir(), Options{
				Logger: slog.New(slog.DiscardHandler),
				Policy: routes(Policy{MaxSMTPOut: 1, MaxMsgPerConn: perConn}, map[string]string{"one.test": rx.addr()}),
			})
			commitAll(b, h, b.N)

			b.SetBytes(int64(len(testBody)))
			b.ReportAllocs()
			b.ResetTimer()
			h.s.Start()
			waitFor(b, "every delivery", func() bool { return len(rx.messages()) == b.N })
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
			h.stop()
		})
	}
}

// commitAll commits n messages through spool writers, as the inbound path
// does, and enqueues each from the commit callback.
func commitAll(b *testing.B, h *harness, n int) {
	done := make(chan error, n)
	for range n {
		w := h.sp.NewWriter()
		if _, err := w.Write([]byte(testBody)); err != nil {
			b.Fatalf("Write: %v", err)
		}
		env := &spool.Envelope{From: "s@sender.test", Rcpts: rcpts("a@one.test"), Received: time.Now()}
		w.Commit(env, func(m *spool.Message, err error) {
			if err == nil {
				h.s.Enqueue(m)
			}
			done <- err
		})
	}
	for range n {
		if err := <-done; err != nil {
			b.Fatalf("Commit: %v", err)
		}
	}
}
