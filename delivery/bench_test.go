package delivery

import (
	"bufio"
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"smta/internal/testdns"
)

// benchBody is a 4 KiB message in wire form, near the median size of
// transactional mail.
var benchBody = "From: <sender@example.org>\r\nSubject: benchmark\r\n\r\n" +
	strings.Repeat("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcd\r\n", 64)

func benchSend(b *testing.B, addr string, rcpts int) {
	c := dialTest(b, addr, DialOptions{})
	j := &Job{From: "sender@example.org", Prepend: []byte(testPrepend)}
	for i := range rcpts {
		j.Rcpts = append(j.Rcpts, Rcpt{Addr: fmt.Sprintf("r%d@example.com", i)})
	}
	body := strings.NewReader(benchBody)
	j.Size = int64(len(benchBody))

	b.ReportAllocs()
	b.SetBytes(int64(len(testPrepend) + len(benchBody)))
	start := time.Now()
	for b.Loop() {
		body.Reset(benchBody)
		j.Body = body
		res, err := c.Send(context.Background(), j)
		if err != nil {
			b.Fatalf("Send: %v", err)
		}
		if !res[0].OK() {
			b.Fatalf("Send result %v, want 2xx", res[0])
		}
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
	if err := c.Quit(); err != nil {
		b.Errorf("Quit: %v", err)
	}
}

// BenchmarkSend measures one connection sending messages back to back to
// an in-process Go receiver on loopback, so the client's own cost dominates.
func BenchmarkSend(b *testing.B) {
	for _, pipelining := range []bool{false, true} {
		for _, rcpts := range []int{1, 10} {
			b.Run(fmt.Sprintf("pipelining=%v/rcpts=%d", pipelining, rcpts), func(b *testing.B) {
				sc := script{discard: true}
				if pipelining {
					sc.extensions = []string{"PIPELINING"}
				}
				rcv := startReceiver(b, sc)
				benchSend(b, rcv.addr(), rcpts)
			})
		}
	}
}

// BenchmarkSendSmtpSink measures the same loop against Postfix's smtp-sink,
// which pipelines and does not store messages.
func BenchmarkSendSmtpSink(b *testing.B) {
	for _, rcpts := range []int{1, 10} {
		b.Run(fmt.Sprintf("rcpts=%d", rcpts), func(b *testing.B) {
			addr := startSmtpSinkNoDump(b)
			benchSend(b, addr, rcpts)
		})
	}
}

func BenchmarkReadReply(b *testing.B) {
	for _, tc := range []struct{ name, reply string }{
		{"lines=1", "250 2.1.5 ok\r\n"},
		{"lines=8", "250-mx.example.com\r\n250-PIPELINING\r\n250-SIZE 35882577\r\n250-8BITMIME\r\n" +
			"250-ENHANCEDSTATUSCODES\r\n250-DSN\r\n250-SMTPUTF8\r\n250 CHUNKING\r\n"},
	} {
		b.Run(tc.name, func(b *testing.B) {
			r := strings.NewReader(tc.reply)
			br := bufio.NewReaderSize(r, maxReplyLine)
			b.ReportAllocs()
			b.SetBytes(int64(len(tc.reply)))
			for b.Loop() {
				r.Reset(tc.reply)
				br.Reset(r)
				if _, err := readReply(br); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkBuildDSN(b *testing.B) {
	p := testDSNParams()
	original := strings.Repeat("x", 64) + "\r\n"
	original = "Subject: s\r\n\r\n" + strings.Repeat(original, 256)
	b.ReportAllocs()
	b.SetBytes(int64(len(original)))
	for b.Loop() {
		p.Original = strings.NewReader(original)
		if len(BuildDSN(p)) == 0 {
			b.Fatal("empty DSN")
		}
	}
}

// BenchmarkLookupMX measures a full resolution (MX, then A and AAAA of two
// targets) against the loopback DNS server, without any cache.
func BenchmarkLookupMX(b *testing.B) {
	srv := testdns.Start(b)
	srv.AddMX("example.com", 10, "mx1.example.com")
	srv.AddMX("example.com", 20, "mx2.example.com")
	srv.AddA("mx1.example.com", "127.0.0.1")
	srv.AddA("mx2.example.com", "127.0.0.2")
	r := NewResolver(srv.Addr())
	ctx := context.Background()

	b.ReportAllocs()
	start := time.Now()
	for b.Loop() {
		hosts, err := r.LookupMX(ctx, "example.com")
		if err != nil || len(hosts) != 2 {
			b.Fatalf("LookupMX = %v, %v", hosts, err)
		}
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "lookups/s")
}
