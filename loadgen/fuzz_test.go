package loadgen

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

func FuzzParseSize(f *testing.F) {
	f.Add("10240")                 // plain octets
	f.Add("10k")                   // binary suffix
	f.Add("2k-100k")               // range
	f.Add("1M")                    // upper-case suffix
	f.Add("5-")                    // empty upper bound
	f.Add("-")                     // empty range
	f.Add("99999999999999999999k") // overflow
	f.Fuzz(func(t *testing.T, s string) {
		spec, err := ParseSize(s)
		if err != nil {
			return
		}
		if spec.Min < minMessageSize || spec.Max > maxMessageSize || spec.Max < spec.Min {
			t.Errorf("ParseSize(%q) = %+v, outside the valid range", s, spec)
		}
	})
}

// FuzzSinkSession feeds arbitrary client input to one sink session and
// checks that the sink neither panics nor writes anything but well-formed
// replies.
func FuzzSinkSession(f *testing.F) {
	f.Add("EHLO x\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\nDate: x\r\nFrom: a\r\n\r\nbody\r\n.\r\nQUIT\r\n") // whole transaction
	f.Add("MAIL FROM:<a@b> SIZE=-1\r\n")                                                                           // negative SIZE
	f.Add("RCPT TO:<c@d>\r\nDATA\r\n")                                                                             // out of order
	f.Add("MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n..\r\n.\n")                                                 // dot-stuffed lone dot, bare LF end
	f.Add("mail from:<a@b>\r\nrcpt to:<c@d>\r\ndata\r\n\x00\xff\r\n.\r\n")                                         // lower case verbs, binary body
	f.Add(strings.Repeat("A", 5000) + "\r\n")                                                                      // overlong command line
	f.Fuzz(func(t *testing.T, input string) {
		sink := &Sink{cfg: SinkConfig{IdleTimeout: time.Second, Seed: 1, TempFail: 0.1, PermFail: 0.1}, done: make(chan struct{})}
		server, client := net.Pipe()
		go func() {
			newSinkConn(sink, server, 1).serve()
			server.Close()
		}()
		go func() {
			client.SetWriteDeadline(time.Now().Add(2 * time.Second))
			io.WriteString(client, input)
			// End any unterminated data section, then quit, so the
			// session always ends well before the idle timeout.
			io.WriteString(client, "\r\n.\r\nQUIT\r\n")
		}()
		client.SetReadDeadline(time.Now().Add(3 * time.Second))
		out, _ := io.ReadAll(client)
		client.Close()

		sc := bufio.NewScanner(bytes.NewReader(out))
		sc.Split(scanCRLFLines)
		for sc.Scan() {
			line := sc.Text()
			if len(line) < 6 || line[0] < '2' || line[0] > '5' || (line[3] != ' ' && line[3] != '-') || !strings.HasSuffix(line, "\r\n") {
				t.Fatalf("sink wrote malformed reply line %q for input %.200q", line, input)
			}
		}
	})
}

// FuzzReadReply feeds arbitrary server output to the client's reply
// parser.
func FuzzReadReply(f *testing.F) {
	f.Add("250 ok\r\n")                      // single line
	f.Add("250-a\r\n250-b\r\n250 c\r\n")     // multi-line
	f.Add("250\r\n")                         // code only
	f.Add("25\r\n")                          // too short
	f.Add("999 bad code\r\n")                // out of range
	f.Add("250-never ends\r\n250-still\r\n") // unterminated multi-line
	f.Fuzz(func(t *testing.T, input string) {
		server, conn := net.Pipe()
		go func() {
			server.SetWriteDeadline(time.Now().Add(time.Second))
			io.WriteString(server, input)
			server.Close()
		}()
		c := &client{conn: conn, r: bufio.NewReader(conn), w: bufio.NewWriter(conn), timeout: time.Second}
		code, lines, err := c.readReply()
		conn.Close()
		if err != nil {
			return
		}
		if code < 200 || code > 599 {
			t.Errorf("readReply(%q) code = %d, want 200 to 599", input, code)
		}
		if len(lines) == 0 {
			t.Errorf("readReply(%q) returned no lines", input)
		}
	})
}
