package smtp

import (
	"bytes"
	"strings"
	"testing"
)

// fuzzRun is what one fuzz drive of a Session produced.
type fuzzRun struct {
	output []byte
	events []string
	bodies [][]byte // wire-form bodies of messages that reached data-end
}

// fuzzDrive feeds input to a new Session in the pieces split returns,
// accepting every decision except recipients containing "reject", and
// checks the Feed invariants on every call. Unlike a real driver it keeps
// feeding the bytes after STARTTLS, so that the run does not depend on
// where the input was split.
func fuzzDrive(t *testing.T, cfg *Config, input []byte, split chunker) fuzzRun {
	s := NewSession(cfg)
	s.Start()
	var run fuzzRun
	var body, buf []byte
	pieces := split(input)
	for steps := 0; ; steps++ {
		if steps > 4*len(input)+100 {
			t.Fatalf("Feed does not progress on %q", buf)
		}
		inData := s.InData()
		n, ev := s.Feed(buf)
		if n < 0 || n > len(buf) {
			t.Fatalf("Feed(%q) consumed %d", buf, n)
		}
		if n == 0 && ev.Kind == EventNone {
			checkStall(t, "fuzz", inData, buf)
		}
		if ev.Kind == EventBody {
			if !bytes.Equal(ev.Body, buf[:n]) {
				t.Fatalf("body %q is not the consumed prefix of %q", ev.Body, buf)
			}
			body = append(body, ev.Body...)
		}
		buf = buf[n:]
		if ev.Kind != EventNone && ev.Kind != EventBody {
			run.events = append(run.events, formatEvent(s, ev))
		}

		switch ev.Kind {
		case EventNone:
			if n > 0 {
				continue
			}
			if len(pieces) == 0 {
				run.output = append(run.output, s.Output()...)
				return run
			}
			buf = append(buf, pieces[0]...)
			pieces = pieces[1:]
		case EventRcpt:
			if strings.Contains(ev.Rcpt.Addr, "reject") {
				s.Reject(Reply{})
			} else {
				s.Accept()
			}
		case EventHelo, EventMail:
			s.Accept()
		case EventData:
			s.Accept()
			body = body[:0]
		case EventDataEnd:
			run.bodies = append(run.bodies, append([]byte{}, body...))
			s.AcceptQueued("q")
		case EventDataAborted:
			body = body[:0]
		case EventStartTLS:
			s.TLSStarted()
		case EventQuit, EventClose:
			run.output = append(run.output, s.Output()...)
			return run
		}
	}
}

// checkReplies fails unless output is a sequence of complete, well-formed
// replies: "ddd-text" lines ending in a "ddd text" line of the same code,
// each ending in CRLF with no other CR or LF.
func checkReplies(t *testing.T, output []byte) {
	t.Helper()
	if len(output) == 0 {
		return
	}
	if !bytes.HasSuffix(output, []byte("\r\n")) {
		t.Fatalf("output %q does not end with CRLF", output)
	}
	lines := strings.Split(strings.TrimSuffix(string(output), "\r\n"), "\r\n")
	continued := ""
	for _, line := range lines {
		if len(line) < 4 || line[0] < '2' || line[0] > '5' || !isDigit(line[1]) || !isDigit(line[2]) || (line[3] != ' ' && line[3] != '-') {
			t.Fatalf("malformed reply line %q in %q", line, output)
		}
		if strings.ContainsAny(line, "\r\n") {
			t.Fatalf("reply line %q holds a bare CR or LF", line)
		}
		if continued != "" && line[:3] != continued {
			t.Fatalf("reply line %q continues a %s reply", line, continued)
		}
		continued = ""
		if line[3] == '-' {
			continued = line[:3]
		}
	}
	if continued != "" {
		t.Fatalf("output %q ends inside a multi-line reply", output)
	}
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// checkBody fails unless an accepted body is clean wire form: CRLF lines
// only, none longer than 1000 octets beyond a stuffed dot, and no
// end-of-data line inside.
func checkBody(t *testing.T, body []byte, max int64) {
	t.Helper()
	if len(body) > 0 && !bytes.HasSuffix(body, []byte("\r\n")) {
		t.Fatalf("accepted body %q does not end with CRLF", body)
	}
	size := int64(0)
	for line := range bytes.Lines(body) {
		if !bytes.HasSuffix(line, []byte("\r\n")) || bytes.ContainsAny(line[:len(line)-2], "\r\n") {
			t.Fatalf("accepted body has a bare CR or LF in line %q", line)
		}
		n := len(line)
		if line[0] == '.' {
			n--
		}
		if n > maxTextLine {
			t.Fatalf("accepted body has a %d-octet line", n)
		}
		if string(line) == ".\r\n" {
			t.Fatalf("accepted body %q holds an end-of-data line", body)
		}
		size += int64(n)
	}
	if max > 0 && size > max {
		t.Fatalf("accepted body of %d octets exceeds the %d limit", size, max)
	}
}

// FuzzSession feeds arbitrary client input to a Session, whole and split
// at points chosen by the fuzzer. It checks that the Session never panics
// and Feed always progresses, that the output is well-formed replies and
// accepted bodies are clean, and that splitting changes nothing.
func FuzzSession(f *testing.F) {
	seeds := []struct {
		flags byte
		in    string
	}{
		// A clean transaction.
		{0, "EHLO c\r\nMAIL FROM:<a@b.c>\r\nRCPT TO:<d@e.f>\r\nDATA\r\nhi\r\n.\r\nQUIT\r\n"},
		// Smuggling with a bare LF before the dot.
		{0, "HELO c\r\nMAIL FROM:<a@b.c>\r\nRCPT TO:<d@e.f>\r\nDATA\r\nx\n.\nMAIL FROM:<e@v.il>\r\n.\r\n"},
		// Smuggling with bare CRs.
		{0, "HELO c\r\nMAIL FROM:<a@b.c>\r\nRCPT TO:<d@e.f>\r\nDATA\r\nx\r.\rRSET\r\n.\r\n"},
		// Dot-stuffing and an empty message.
		{0, "EHLO c\r\nMAIL FROM:<>\r\nRCPT TO:<postmaster>\r\nDATA\r\n.\r\nMAIL FROM:<>\r\nRCPT TO:<x@y>\r\nDATA\r\n..a\r\n.\r\n"},
		// STARTTLS with commands pipelined behind it.
		{1, "EHLO c\r\nSTARTTLS\r\nMAIL FROM:<a@b.c>\r\nEHLO c\r\n"},
		// Size limit and an over-long text line.
		{2, "EHLO c\r\nMAIL FROM:<a@b.c> SIZE=10\r\nRCPT TO:<d@e.f>\r\nDATA\r\n0123456789012345678901234567890123456789012345678901234567890\r\n.\r\n"},
		// Rejected recipient and recipient limit.
		{4, "EHLO c\r\nMAIL FROM:<a@b.c>\r\nRCPT TO:<reject@e.f>\r\nRCPT TO:<1@e.f>\r\nRCPT TO:<2@e.f>\r\nRCPT TO:<3@e.f>\r\n"},
		// Error budget.
		{0, "x\r\ny\r\nz\r\nw\r\nv\r\nu\r\nt\r\ns\r\nr\r\nq\r\np\r\n"},
		// Parameters with xtext.
		{0, "EHLO c\r\nMAIL FROM:<a@b.c> ENVID=a+2B RET=HDRS BODY=8BITMIME SMTPUTF8\r\nRCPT TO:<ü@e.f> NOTIFY=NEVER ORCPT=rfc822;a+40b\r\n"},
		// Bare LF command terminators.
		{0, "EHLO c\nMAIL FROM:<a@b.c>\nNOOP\r\r\n"},
	}
	for _, s := range seeds {
		f.Add(s.flags, []byte(s.in), uint64(1))
	}
	f.Fuzz(func(t *testing.T, flags byte, input []byte, seed uint64) {
		cfg := &Config{Hostname: "mx.test", StartTLS: flags&1 != 0}
		if flags&2 != 0 {
			cfg.MaxMessageSize = 50
		}
		if flags&4 != 0 {
			cfg.MaxRecipients = 2
		}
		if flags&8 != 0 {
			cfg.MaxErrors = 2
		}

		whole := fuzzDrive(t, cfg, input, wholeChunks)
		checkReplies(t, whole.output)
		for _, body := range whole.bodies {
			checkBody(t, body, cfg.MaxMessageSize)
		}

		split := fuzzDrive(t, cfg, input, randomChunks(seed))
		if !bytes.Equal(split.output, whole.output) {
			t.Fatalf("output fed in pieces differs from output fed whole:\n%q\n%q", split.output, whole.output)
		}
		if strings.Join(split.events, "\n") != strings.Join(whole.events, "\n") {
			t.Fatalf("events fed in pieces differ from events fed whole:\n%q\n%q", split.events, whole.events)
		}
	})
}
