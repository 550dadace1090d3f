package smtp

// Transcript tests replay the SMTP dialogues in testdata/*.txt; the file
// format is documented in package smta/internal/smtptest, which parses
// them for these tests and for the socket tests of package engine.
//
// Every transcript runs four times: fed whole, byte by byte, and in two
// sequences of chunks of random length (fixed seeds). All runs must match
// the expectations, so they also produce identical output.

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"testing"

	"smta/internal/smtptest"
)

// transcript is a parsed transcript with its session configuration.
type transcript struct {
	*smtptest.Transcript
	cfg Config
}

func parseTranscript(t *testing.T, file string) *transcript {
	t.Helper()
	tr, err := smtptest.Load(file)
	if err != nil {
		t.Fatal(err)
	}
	return &transcript{
		Transcript: tr,
		cfg: Config{
			Hostname:       smtptest.Hostname,
			MaxMessageSize: tr.Config.MaxMessageSize,
			MaxRecipients:  tr.Config.MaxRecipients,
			MaxErrors:      tr.Config.MaxErrors,
			StartTLS:       tr.Config.StartTLS,
		},
	}
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
	for _, seg := range tr.Segments {
		if closed {
			break
		}
		pieces := split(seg.Input)
		var buf []byte
		steps := 0
	feed:
		for {
			steps++
			if steps > 4*len(seg.Input)+100 {
				t.Fatalf("%s: Feed does not progress (buffer %q)", tr.Name, buf)
			}
			inData := s.InData()
			n, ev := s.Feed(buf)
			if n < 0 || n > len(buf) {
				t.Fatalf("%s: Feed(%q) consumed %d", tr.Name, buf, n)
			}
			if n == 0 && ev.Kind == EventNone {
				checkStall(t, tr.Name, inData, buf)
			}
			if ev.Kind == EventBody {
				if !bytes.Equal(ev.Body, buf[:n]) {
					t.Fatalf("%s: body %q is not the consumed prefix of %q", tr.Name, ev.Body, buf)
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
				d, ok := tr.Decisions[len(res.events)-1]
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

		switch seg.Action {
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
	applyDecision(t, s, tr.DefaultDecision(eventIndex))
}

func applyDecision(t *testing.T, s *Session, d string) {
	t.Helper()
	dec, err := smtptest.ParseDecision(d)
	if err != nil {
		t.Fatal(err)
	}
	switch dec.Verb {
	case "accept":
		s.Accept()
	case "queued":
		s.AcceptQueued(dec.ID)
	case "reject":
		s.Reject(Reply{Code: dec.Code, Enhanced: dec.Enhanced, Text: dec.Text})
	}
}

func TestTranscripts(t *testing.T) {
	files, err := smtptest.Glob("testdata")
	if err != nil {
		t.Fatal(err)
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
				if err := smtptest.MatchReplies(res.output, tr.Replies); err != nil {
					t.Errorf("fed %s: %v", m.name, err)
				}
				if got, want := strings.Join(res.events, "\n"), strings.Join(tr.Events, "\n"); got != want {
					t.Errorf("fed %s: events:\n%s\nwant:\n%s", m.name, got, want)
				}
				for k, want := range tr.Bodies {
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
