package loadgen

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"
)

func BenchmarkAppendMessage(b *testing.B) {
	for _, size := range []int{1024, 10240, 102400} {
		b.Run(fmt.Sprintf("size=%d", size), func(b *testing.B) {
			r := rand.New(rand.NewPCG(1, 2))
			buf := make([]byte, 0, size)
			p := MessageParams{From: "a@example.org", To: []string{"b@example.com"}, MessageID: "1.x@loadgen", Date: time.Now(), Size: size}
			b.ReportAllocs()
			b.SetBytes(int64(size))
			for b.Loop() {
				buf = AppendMessage(buf[:0], p, r)
			}
		})
	}
}

// BenchmarkSendSink measures the harness ceiling: loadgen sending to its
// own sink over loopback. A server under test cannot be measured above
// this rate on the same machine.
func BenchmarkSendSink(b *testing.B) {
	for _, tc := range []struct {
		conns      int
		size       int
		pipelining bool
	}{
		{50, 10240, false},
		{200, 1024, true},
	} {
		b.Run(fmt.Sprintf("conns=%d/size=%d/pipelining=%v", tc.conns, tc.size, tc.pipelining), func(b *testing.B) {
			sink, err := StartSink(SinkConfig{Logger: quietLogger, CountOnly: true})
			if err != nil {
				b.Fatal(err)
			}
			defer sink.Close()
			b.ReportAllocs()
			b.SetBytes(int64(tc.size))
			b.ResetTimer()
			report, err := Send(context.Background(), SendConfig{
				Target:      sink.Addr(),
				Connections: tc.conns,
				Messages:    max(b.N, tc.conns),
				Pipelining:  tc.pipelining,
				Size:        SizeSpec{Min: tc.size, Max: tc.size},
			})
			if err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			if report.Sent != uint64(max(b.N, tc.conns)) {
				b.Fatalf("sent %d of %d (errors %v)", report.Sent, max(b.N, tc.conns), report.Errors)
			}
			b.ReportMetric(report.MsgsPerSec, "msgs/s")
			b.ReportMetric(float64(report.Latency.P99.Microseconds()), "p99-us")
		})
	}
}
