package smtp

// Transcript tests replay SMTP dialogues stored in testdata/*.txt.
//
// # Format
//
// One directive per line; blank lines and lines starting with "#" are
// ignored. The first directive may be a config line:
//
//	config: maxsize=1000 maxrcpts=2 maxerrors=3 starttls
//
// (host name is always "mx.test"). Then, in dialogue order:
//
//	C: EHLO client.test      client bytes: the text plus CRLF
//	R: "DATA\n" "x"*998      client bytes: Go-quoted strings, each
//	                         optionally repeated with *N, nothing added
//	S: 250 2.1.0 Ok          one expected server reply line (without CRLF)
//	S: @ehlo                 any multi-line 250 reply (the EHLO reply)
//	E: rcpt <a@b.test>       one expected event, formatted by formatEvent
//	D: reject 550 5.7.1 No   decision for the preceding E: "accept",
//	                         "reject" (zero Reply), "reject CODE ENH TEXT"
//	                         or "queued ID"; default "accept", and
//	                         "queued qN" for the Nth data-end
//	B: "hello\r\n"           expected body bytes (wire form, same syntax
//	                         as R) of the next data-end, concatenated
//	A: tls                   segment boundary: the STARTTLS handshake
//	                         (the driver discards its unconsumed bytes)
//	A: timeout | shutdown    segment boundary, then Timeout or Shutdown
//
// The client bytes of a segment are one stream: lines written apart in
// the file are still fed together, so every transcript also exercises
// pipelining. Expected replies (S) and events (E) are compared as two
// ordered lists over the whole run; their interleaving in the file is for
// the reader.
//
// Every transcript runs three times: fed whole, byte by byte, and in
// chunks of random length (fixed seed). All three runs must match the
// expectations, so they also produce identical output.

import (
	"bufio"
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

type transcript struct {
	name      string
	cfg       Config
	segments  []segment
	replies   []string // expected output lines
	events    []string // expected events
	decisions map[int]string
	bodies    map[int][]byte // expected body by data-end ordinal (1-based)
}

// segment is the client input up to one boundary action.
type segment struct {
	input  []byte
	action string // "", "tls", "timeout" or "shutdown": what follows the segment
}

func parseTranscript(t *testing.T, file string) *transcript {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()

	tr := &transcript{
		name:      filepath.Base(file),
		cfg:       Config{Hostname: "mx.test"},
		decisions: map[int]string{},
		bodies:    map[int][]byte{},
	}
	cur := segment{}
	dataEnds := 0
	var pendingBody []byte
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	lineNo := 0
	for sc.Scan() {
		lineNo++
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		kind, rest, ok := strings.Cut(line, ": ")
		if !ok {
			kind, rest, ok = strings.Cut(line, ":")
			if !ok || rest != "" {
				t.Fatalf("%s:%d: missing directive: %q", file, lineNo, line)
			}
		}
		switch kind {
		case "config":
			parseConfig(t, &tr.cfg, rest)
		case "C":
			cur.input = append(cur.input, rest+"\r\n"...)
		case "R":
			cur.input = append(cur.input, parseQuoted(t, file, lineNo, rest)...)
		case "S":
			tr.replies = append(tr.replies, rest)
		case "E":
			tr.events = append(tr.events, rest)
			if rest == "data-end" {
				dataEnds++
				if pendingBody != nil {
					tr.bodies[dataEnds] = pendingBody
					pendingBody = nil
				}
			}
		case "D":
			tr.decisions[len(tr.events)-1] = rest
		case "B":
			pendingBody = append(pendingBody, parseQuoted(t, file, lineNo, rest)...)
			if pendingBody == nil {
				pendingBody = []byte{}
			}
		case "A":
			cur.action = rest
			tr.segments = append(tr.segments, cur)
			cur = segment{}
		default:
			t.Fatalf("%s:%d: unknown directive %q", file, lineNo, kind)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	tr.segments = append(tr.segments, cur)
	return tr
}

func parseConfig(t *testing.T, cfg *Config, s string) {
	t.Helper()
	for _, f := range strings.Fields(s) {
		key, value, _ := strings.Cut(f, "=")
		n, _ := strconv.Atoi(value)
		switch key {
		case "maxsize":
			cfg.MaxMessageSize = int64(n)
		case "maxrcpts":
			cfg.MaxRecipients = n
		case "maxerrors":
			cfg.MaxErrors = n
		case "starttls":
			cfg.StartTLS = true
		default:
			t.Fatalf("unknown config key %q", key)
		}
	}
}

// parseQuoted decodes a sequence of Go-quoted strings, each optionally
// followed by *N to repeat it.
func parseQuoted(t *testing.T, file string, lineNo int, s string) []byte {
	t.Helper()
	var out []byte
	for s = strings.TrimSpace(s); s != ""; s = strings.TrimSpace(s) {
		q, err := strconv.QuotedPrefix(s)
		if err != nil {
			t.Fatalf("%s:%d: bad quoted string %q: %v", file, lineNo, s, err)
		}
		text, _ := strconv.Unquote(q)
		s = s[len(q):]
		repeat := 1
		if strings.HasPrefix(s, "*") {
			end := 1
			for end < len(s) && s[end] >= '0' && s[end] <= '9' {
				end++
			}
			repeat, err = strconv.Atoi(s[1:end])
			if err != nil {
				t.Fatalf("%s:%d: bad repeat count in %q", file, lineNo, s)
			}
			s = s[end:]
		}
		out = append(out, strings.Repeat(text, repeat)...)
	}
	return out
}

// formatEvent renders an event the way E lines spell it.
func formatEvent(s *Session, ev Event) string {
	var b strings.Builder
	b.WriteString(ev.Kind.String())
	switch ev.Kind {
	case EventHelo:
		b.WriteString(" " + ev.Helo)
	case EventMail:
		tx := s.Transaction()
		p := tx.MailParams
		fmt.Fprintf(&b, " <%s>", tx.From)
		if p.Size != 0 {
			fmt.Fprintf(&b, " size=%d", p.Size)
		}
		if p.Body != "" {
			b.WriteString(" body=" + p.Body)
		}
		if p.SMTPUTF8 {
			b.WriteString(" smtputf8")
		}
		if p.Ret != "" {
			b.WriteString(" ret=" + p.Ret)
		}
		if p.EnvID != "" {
			fmt.Fprintf(&b, " envid=%q", p.EnvID)
		}
	case EventRcpt:
		fmt.Fprintf(&b, " <%s>", ev.Rcpt.Addr)
		if ev.Rcpt.Params.Notify != "" {
			b.WriteString(" notify=" + ev.Rcpt.Params.Notify)
		}
		if ev.Rcpt.Params.ORcpt != "" {
			fmt.Fprintf(&b, " orcpt=%q", ev.Rcpt.Params.ORcpt)
		}
	case EventDataAborted:
		fmt.Fprintf(&b, " %d", ev.Reply.Code)
	}
	return b.String()
}

// result is what one run of a transcript produced.
type result struct {
	output []byte
	events []string
	bodies map[int][]byte
}

// chunker splits one segment of client input into the pieces a driver
// would read.
type chunker func(in []byte) [][]byte

func wholeChunks(in []byte) [][]byte { return [][]byte{in} }

func byteChunks(in []byte) [][]byte {
	out := make([][]byte, len(in))
	for i := range in {
		out[i] = in[i : i+1]
	}
	return out
}

func randomChunks(seed uint64) chunker {
	rng := rand.New(rand.NewPCG(seed, seed))
	return func(in []byte) [][]byte {
		var out [][]byte
		for len(in) > 0 {
			n := 1 + rng.IntN(min(len(in), 64))
			out = append(out, in[:n])
			in = in[n:]
		}
		return out
	}
}

// runTranscript drives a Session the way a real driver does: a growing
// input buffer, Feed until it needs more, decisions at once, output
// flushed when input runs out.
func runTranscript(t *testing.T, tr *transcript, split chunker) result {
	t.Helper()
	s := NewSession(&tr.cfg)
	s.Start()
	res := result{bodies: map[int][]byte{}}
	var body []byte
	dataEnds := 0
	flush := func() {
		res.output = append(res.output, s.Output()...)
		s.Advance(len(s.Output()))
	}

	closed := false
	for _, seg := range tr.segments {
		if closed {
			break
		}
		pieces := split(seg.input)
		var buf []byte
		steps := 0
	feed:
		for {
			steps++
			if steps > 4*len(seg.input)+100 {
				t.Fatalf("%s: Feed does not progress (buffer %q)", tr.name, buf)
			}
			inData := s.InData()
			n, ev := s.Feed(buf)
			if n < 0 || n > len(buf) {
				t.Fatalf("%s: Feed(%q) consumed %d", tr.name, buf, n)
			}
			if n == 0 && ev.Kind == EventNone {
				checkStall(t, tr.name, inData, buf)
			}
			if ev.Kind == EventBody {
				if !bytes.Equal(ev.Body, buf[:n]) {
					t.Fatalf("%s: body %q is not the consumed prefix of %q", tr.name, ev.Body, buf)
				}
				body = append(body, ev.Body...)
			}
			buf = buf[n:]
			if ev.Kind != EventNone && ev.Kind != EventBody {
				res.events = append(res.events, formatEvent(s, ev))
			}

			switch ev.Kind {
			case EventNone:
				if n > 0 {
					continue
				}
				flush()
				if len(pieces) == 0 {
					break feed
				}
				buf = append(buf, pieces[0]...)
				pieces = pieces[1:]
			case EventHelo, EventMail, EventRcpt, EventData:
				decide(t, tr, s, len(res.events)-1)
				if ev.Kind == EventData && s.InData() {
					body = body[:0]
				}
			case EventDataEnd:
				dataEnds++
				res.bodies[dataEnds] = append([]byte{}, body...)
				body = body[:0]
				d, ok := tr.decisions[len(res.events)-1]
				if !ok {
					d = fmt.Sprintf("queued q%d", dataEnds)
				}
				applyDecision(t, s, d)
			case EventDataAborted:
				body = body[:0]
			case EventStartTLS:
				// The plaintext read after STARTTLS is dropped, and the
				// rest of this segment is the attacker's injected part.
				flush()
				s.TLSStarted()
				break feed
			case EventQuit, EventClose:
				flush()
				closed = true
				break feed
			}
		}

		switch seg.action {
		case "timeout":
			s.Timeout()
		case "shutdown":
			s.Shutdown()
		}
		if s.Closing() {
			closed = true
		}
		flush()
	}
	flush()
	return res
}

// checkStall fails the test when Feed returned (0, EventNone) on input
// it is documented to make progress on.
func checkStall(t *testing.T, name string, inData bool, buf []byte) {
	t.Helper()
	if inData && len(buf) >= 3 {
		t.Fatalf("%s: Feed(%q) in data state made no progress", name, buf)
	}
	if !inData && (bytes.IndexByte(buf, '\n') >= 0 || len(buf) >= MaxCommandLine) {
		t.Fatalf("%s: Feed(%q) in command state made no progress", name, buf)
	}
}

func decide(t *testing.T, tr *transcript, s *Session, eventIndex int) {
	t.Helper()
	d, ok := tr.decisions[eventIndex]
	if !ok {
		d = "accept"
	}
	applyDecision(t, s, d)
}

func applyDecision(t *testing.T, s *Session, d string) {
	t.Helper()
	verb, rest, _ := strings.Cut(d, " ")
	switch verb {
	case "accept":
		s.Accept()
	case "queued":
		s.AcceptQueued(rest)
	case "reject":
		if rest == "" {
			s.Reject(Reply{})
			return
		}
		f := strings.SplitN(rest, " ", 3)
		if len(f) < 3 {
			t.Fatalf("bad decision %q: want reject CODE ENHANCED TEXT", d)
		}
		code, err := strconv.Atoi(f[0])
		if err != nil {
			t.Fatalf("bad decision %q: %v", d, err)
		}
		s.Reject(Reply{Code: code, Enhanced: f[1], Text: f[2]})
	default:
		t.Fatalf("unknown decision %q", d)
	}
}

// matchReplies compares output lines with expected S lines; "@ehlo"
// matches any multi-line 250 reply.
func matchReplies(output []byte, want []string) error {
	text := string(output)
	if text != "" && !strings.HasSuffix(text, "\r\n") {
		return fmt.Errorf("output %q does not end with CRLF", text)
	}
	got := strings.Split(strings.TrimSuffix(text, "\r\n"), "\r\n")
	if text == "" {
		got = nil
	}
	i := 0
	for k, w := range want {
		if w == "@ehlo" {
			for i < len(got) && strings.HasPrefix(got[i], "250-") {
				i++
			}
			if i >= len(got) || !strings.HasPrefix(got[i], "250 ") {
				return fmt.Errorf("reply %d: got %q, want the end of an EHLO reply", k, lineAt(got, i))
			}
			i++
			continue
		}
		if i >= len(got) || got[i] != w {
			return fmt.Errorf("reply %d: got %q, want %q\nwhole output:\n%s", k, lineAt(got, i), w, text)
		}
		i++
	}
	if i < len(got) {
		return fmt.Errorf("unexpected extra replies %q\nwhole output:\n%s", got[i:], text)
	}
	return nil
}

func lineAt(lines []string, i int) string {
	if i < len(lines) {
		return lines[i]
	}
	return "<end of output>"
}

func TestTranscripts(t *testing.T) {
	files, err := filepath.Glob("testdata/*.txt")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no transcripts in testdata")
	}
	for _, file := range files {
		t.Run(strings.TrimSuffix(filepath.Base(file), ".txt"), func(t *testing.T) {
			tr := parseTranscript(t, file)
			modes := []struct {
				name  string
				split chunker
			}{
				{"whole", wholeChunks},
				{"bytes", byteChunks},
				{"random", randomChunks(1)},
				{"random2", randomChunks(2)},
			}
			var first result
			for i, m := range modes {
				res := runTranscript(t, tr, m.split)
				if err := matchReplies(res.output, tr.replies); err != nil {
					t.Errorf("fed %s: %v", m.name, err)
				}
				if got, want := strings.Join(res.events, "\n"), strings.Join(tr.events, "\n"); got != want {
					t.Errorf("fed %s: events:\n%s\nwant:\n%s", m.name, got, want)
				}
				for k, want := range tr.bodies {
					if got := res.bodies[k]; !bytes.Equal(got, want) {
						t.Errorf("fed %s: body of message %d = %q, want %q", m.name, k, got, want)
					}
				}
				if i == 0 {
					first = res
					continue
				}
				if !bytes.Equal(res.output, first.output) {
					t.Errorf("fed %s: output differs from fed whole:\n%q\nvs\n%q", m.name, res.output, first.output)
				}
			}
		})
	}
}
