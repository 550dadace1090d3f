package smtp

import (
	"bytes"
	"fmt"
	"testing"
)

// benchBody returns size octets of wire-form message text in 78-octet
// lines, with a dot-stuffed line every 16 lines.
func benchBody(size int) []byte {
	var b bytes.Buffer
	line := bytes.Repeat([]byte("x"), 76)
	for n := 0; b.Len() < size; n++ {
		if n%16 == 15 {
			b.WriteString("..")
			b.Write(line[2:])
		} else {
			b.Write(line)
		}
		b.WriteString("\r\n")
	}
	return b.Bytes()[:size-size%78]
}

// BenchmarkFeedBody measures Feed on message text already in data state:
// the per-byte hot path of every inbound connection.
func BenchmarkFeedBody(b *testing.B) {
	for _, size := range []int{1 << 10, 10 << 10, 1 << 20} {
		b.Run(fmt.Sprintf("size=%dk", size>>10), func(b *testing.B) {
			body := benchBody(size)
			s := newDataSession(b, &Config{})
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				in := body
				for len(in) > 0 {
					n, _ := s.Feed(in)
					in = in[n:]
				}
			}
			b.ReportMetric(float64(b.N)*float64(len(body))/78/b.Elapsed().Seconds(), "lines/s")
		})
	}
}

// BenchmarkSessionTransaction measures one whole pipelined transaction
// (EHLO, MAIL, two RCPT, DATA with a 2 KiB body, QUIT) on a new Session.
func BenchmarkSessionTransaction(b *testing.B) {
	var in bytes.Buffer
	in.WriteString("EHLO client.example\r\nMAIL FROM:<sender@client.example> SIZE=2048 BODY=8BITMIME\r\n")
	in.WriteString("RCPT TO:<one@mx.example>\r\nRCPT TO:<two@mx.example> NOTIFY=FAILURE\r\nDATA\r\n")
	in.Write(benchBody(2048))
	in.WriteString(".\r\nQUIT\r\n")
	input := in.Bytes()
	cfg := &Config{Hostname: "mx.example", MaxMessageSize: 10 << 20}

	b.SetBytes(int64(len(input)))
	b.ReportAllocs()
	for b.Loop() {
		s := NewSession(cfg)
		s.Start()
		rest := input
	feed:
		for {
			n, ev := s.Feed(rest)
			rest = rest[n:]
			switch ev.Kind {
			case EventHelo, EventMail, EventRcpt, EventData:
				s.Accept()
			case EventDataEnd:
				s.AcceptQueued("1A2B3C")
			case EventQuit, EventClose, EventNone:
				break feed
			}
		}
		s.Advance(len(s.Output()))
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
}

func BenchmarkDotUnstuff(b *testing.B) {
	body := benchBody(64 << 10)
	dst := make([]byte, 0, len(body))
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		dst = DotUnstuff(dst[:0], body)
	}
}

func BenchmarkDotStuff(b *testing.B) {
	plain := DotUnstuff(nil, benchBody(64<<10))
	dst := make([]byte, 0, 2*len(plain))
	b.SetBytes(int64(len(plain)))
	b.ReportAllocs()
	for b.Loop() {
		dst = DotStuff(dst[:0], plain)
	}
}
