package smtp

import (
	"bytes"
	"strings"
	"testing"
)

// newReadySession returns a session past EHLO with its output drained.
func newReadySession(t testing.TB, cfg *Config) *Session {
	t.Helper()
	s := NewSession(cfg)
	s.Start()
	mustFeed(t, s, "EHLO client.test\r\n", EventHelo)
	s.Accept()
	s.Advance(len(s.Output()))
	return s
}

// newDataSession returns a session that has accepted DATA.
func newDataSession(t testing.TB, cfg *Config) *Session {
	t.Helper()
	s := newReadySession(t, cfg)
	mustFeed(t, s, "MAIL FROM:<a@client.test>\r\n", EventMail)
	s.Accept()
	mustFeed(t, s, "RCPT TO:<b@mx.test>\r\n", EventRcpt)
	s.Accept()
	mustFeed(t, s, "DATA\r\n", EventData)
	s.Accept()
	s.Advance(len(s.Output()))
	return s
}

// mustFeed feeds one whole command line and checks the event.
func mustFeed(t testing.TB, s *Session, line string, want EventKind) {
	t.Helper()
	n, ev := s.Feed([]byte(line))
	if n != len(line) || ev.Kind != want {
		t.Fatalf("Feed(%q) = %d, %v; want %d, %v", line, n, ev.Kind, len(line), want)
	}
}

func expectPanic(t *testing.T, name string, f func()) {
	t.Helper()
	defer func() {
		if recover() == nil {
			t.Errorf("%s did not panic", name)
		}
	}()
	f()
}

func TestFeedWhilePendingPanics(t *testing.T) {
	s := newReadySession(t, &Config{})
	mustFeed(t, s, "MAIL FROM:<a@client.test>\r\n", EventMail)
	if !s.Pending() {
		t.Fatal("Pending() = false after EventMail")
	}
	expectPanic(t, "Feed with a pending decision", func() { s.Feed([]byte("NOOP\r\n")) })
}

func TestFeedBeforeTLSStartedPanics(t *testing.T) {
	s := newReadySession(t, &Config{StartTLS: true})
	mustFeed(t, s, "STARTTLS\r\n", EventStartTLS)
	expectPanic(t, "Feed before TLSStarted", func() { s.Feed([]byte("EHLO x\r\n")) })
	s.TLSStarted()
	if !s.TLSActive() || s.Helo() != "" {
		t.Errorf("after TLSStarted: TLSActive() = %v, Helo() = %q; want true, \"\"", s.TLSActive(), s.Helo())
	}
	expectPanic(t, "second TLSStarted", s.TLSStarted)
}

func TestDecisionMisuse(t *testing.T) {
	s := newReadySession(t, &Config{})
	expectPanic(t, "Accept without a decision", s.Accept)
	expectPanic(t, "Reject without a decision", func() { s.Reject(Reply{}) })
	expectPanic(t, "AcceptQueued without end of data", func() { s.AcceptQueued("x") })

	mustFeed(t, s, "MAIL FROM:<a@client.test>\r\n", EventMail)
	expectPanic(t, "Reject with a 250 reply", func() { s.Reject(Reply{Code: 250, Text: "Ok"}) })
	if !s.Pending() {
		t.Fatal("a rejected Reject call cleared the pending decision")
	}
}

func TestTimeoutDropsPendingDecision(t *testing.T) {
	s := newReadySession(t, &Config{Hostname: "mx.test"})
	mustFeed(t, s, "MAIL FROM:<a@client.test>\r\n", EventMail)
	s.Timeout()
	s.Timeout()
	s.Shutdown()
	s.Accept()
	s.Reject(Reply{})
	s.AcceptQueued("late")

	if got, want := string(s.Output()), "421 4.4.2 mx.test timeout exceeded\r\n"; got != want {
		t.Errorf("output after Timeout = %q, want %q", got, want)
	}
	if !s.Closing() || s.Pending() {
		t.Errorf("Closing() = %v, Pending() = %v; want true, false", s.Closing(), s.Pending())
	}
	n, ev := s.Feed([]byte("NOOP\r\n"))
	if n != 6 || ev.Kind != EventClose {
		t.Errorf("Feed after Timeout = %d, %v; want 6, close", n, ev.Kind)
	}
}

func TestShutdownDuringCommit(t *testing.T) {
	s := newDataSession(t, &Config{Hostname: "mx.test"})
	n, ev := s.Feed([]byte("x\r\n.\r\n"))
	if ev.Kind != EventBody || n != 3 {
		t.Fatalf("Feed(body) = %d, %v; want 3, body", n, ev.Kind)
	}
	if _, ev = s.Feed([]byte(".\r\n")); ev.Kind != EventDataEnd {
		t.Fatalf("Feed(end of data) = %v, want data-end", ev.Kind)
	}
	s.Shutdown()
	s.AcceptQueued("late")
	if got, want := string(s.Output()), "421 4.3.2 mx.test service shutting down\r\n"; got != want {
		t.Errorf("output = %q, want %q", got, want)
	}
}

func TestOutputAdvance(t *testing.T) {
	s := NewSession(&Config{Hostname: "mx.test"})
	s.Start()
	greeting := "220 mx.test ESMTP smta\r\n"
	if got := string(s.Output()); got != greeting {
		t.Fatalf("Output() = %q, want %q", got, greeting)
	}
	s.Advance(4)
	if got := string(s.Output()); got != greeting[4:] {
		t.Errorf("Output() after Advance(4) = %q, want %q", got, greeting[4:])
	}
	s.Feed([]byte("NOOP\r\n"))
	if got, want := string(s.Output()), greeting[4:]+"250 2.0.0 Ok\r\n"; got != want {
		t.Errorf("Output() = %q, want %q", got, want)
	}
	s.Advance(len(s.Output()))
	if len(s.Output()) != 0 {
		t.Errorf("Output() = %q after writing everything", s.Output())
	}
	expectPanic(t, "Advance past Output", func() { s.Advance(1) })
}

func TestTransactionSurvivesEnd(t *testing.T) {
	s := newDataSession(t, &Config{})
	tx := s.Transaction()
	rcpts := tx.Rcpts
	from := tx.From
	if _, ev := s.Feed([]byte(".\r\n")); ev.Kind != EventDataEnd {
		t.Fatalf("Feed(.) = %v, want data-end", ev.Kind)
	}
	if len(s.Transaction().Rcpts) != 1 {
		t.Fatalf("Rcpts at data-end = %v, want one recipient", s.Transaction().Rcpts)
	}
	s.AcceptQueued("q")
	if tx.From != "" || tx.Rcpts != nil {
		t.Errorf("transaction after AcceptQueued = %+v, want empty", *tx)
	}

	mustFeed(t, s, "MAIL FROM:<other@client.test>\r\n", EventMail)
	s.Accept()
	mustFeed(t, s, "RCPT TO:<other@mx.test>\r\n", EventRcpt)
	s.Accept()
	if from != "a@client.test" || rcpts[0].Addr != "b@mx.test" {
		t.Errorf("saved envelope changed to %q %v by the next transaction", from, rcpts)
	}
}

func TestFeedEmptyAndPartial(t *testing.T) {
	s := newReadySession(t, &Config{})
	for _, in := range []string{"", "NOOP", "NOOP\r", strings.Repeat("x", MaxCommandLine-1)} {
		if n, ev := s.Feed([]byte(in)); n != 0 || ev.Kind != EventNone {
			t.Errorf("Feed(%q) = %d, %v; want 0, none", in, n, ev.Kind)
		}
	}
	in := strings.Repeat("x", MaxCommandLine)
	if n, ev := s.Feed([]byte(in)); n != len(in) || ev.Kind != EventNone {
		t.Errorf("Feed(%d octets without LF) = %d, %v; want %d, none", len(in), n, ev.Kind, len(in))
	}
}

func TestFeedDataTail(t *testing.T) {
	tests := []struct {
		in   string
		n    int
		kind EventKind
	}{
		{".", 0, EventNone},
		{".\r", 0, EventNone},
		{".\r\n", 3, EventDataEnd},
		{"\r", 0, EventNone},
		{"ab\r", 2, EventBody},
		{"ab\r\n.", 4, EventBody},
		{"ab\r\n.\r", 4, EventBody},
		{"ab\r\n.\r\n", 4, EventBody},
		{"..", 2, EventBody},
		{".x\r\n", 4, EventBody},
	}
	for _, tt := range tests {
		s := newDataSession(t, &Config{})
		n, ev := s.Feed([]byte(tt.in))
		if n != tt.n || ev.Kind != tt.kind {
			t.Errorf("Feed(%q) in data = %d, %v; want %d, %v", tt.in, n, ev.Kind, tt.n, tt.kind)
		}
	}
}

func TestFeedBodyDoesNotAllocate(t *testing.T) {
	s := newDataSession(t, &Config{MaxMessageSize: 1 << 40})
	chunk := bytes.Repeat([]byte("Lorem ipsum dolor sit amet, consectetur adipiscing elit.\r\n..stuffed\r\n"), 64)
	allocs := testing.AllocsPerRun(100, func() {
		in := chunk
		for len(in) > 0 {
			n, _ := s.Feed(in)
			in = in[n:]
		}
	})
	if allocs != 0 {
		t.Errorf("Feed on body data: %v allocations per run, want 0", allocs)
	}
}

func TestReplyFormat(t *testing.T) {
	tests := []struct {
		r    Reply
		host string
		want string
	}{
		{Reply{250, "2.0.0", "Ok"}, "", "250 2.0.0 Ok\r\n"},
		{Reply{220, "", "ESMTP smta"}, "mx.test", "220 mx.test ESMTP smta\r\n"},
		{Reply{250, "", ""}, "mx.test", "250 mx.test\r\n"},
		{Reply{550, "5.7.1", "one\ntwo"}, "", "550-5.7.1 one\r\n550 5.7.1 two\r\n"},
		{Reply{550, "5.7.1", "bad\r\ninjected"}, "", "550-5.7.1 bad\r\n550 5.7.1 injected\r\n"},
		{Reply{451, "4.3.0", "nul\x00here"}, "", "451 4.3.0 nulhere\r\n"},
	}
	for _, tt := range tests {
		if got := string(appendReply(nil, tt.r, tt.host)); got != tt.want {
			t.Errorf("appendReply(%+v, %q) = %q, want %q", tt.r, tt.host, got, tt.want)
		}
	}
}

func TestReplyTableComplete(t *testing.T) {
	for id := replyNone + 1; id < numReplies; id++ {
		r := replyTable[id]
		if r.Code < 200 || r.Code > 599 || r.Text == "" {
			t.Errorf("replyTable[%d] = %+v, want a code and a text", id, r)
		}
		if r.Code != 220 && r.Code != 354 && r.Enhanced == "" {
			t.Errorf("replyTable[%d] = %+v has no enhanced status code", id, r)
		}
		if r.Enhanced != "" && r.Enhanced[0] != byte('0'+r.Code/100) {
			t.Errorf("replyTable[%d] = %+v: enhanced class differs from the code class", id, r)
		}
	}
}

func TestCountsAsError(t *testing.T) {
	tests := []struct {
		code int
		want bool
	}{
		{250, false}, {421, false}, {452, false}, {500, true}, {501, true},
		{502, true}, {503, true}, {504, true}, {550, false}, {552, false},
		{553, false}, {554, false}, {555, true},
	}
	for _, tt := range tests {
		if got := countsAsError(tt.code); got != tt.want {
			t.Errorf("countsAsError(%d) = %v, want %v", tt.code, got, tt.want)
		}
	}
}

func TestStateTableCoversVerbs(t *testing.T) {
	for _, c := range commands {
		for _, st := range []state{stateData, stateTLSHandshake, stateClosed} {
			if c.deny[st] != replyNone {
				t.Errorf("command %s has a deny entry for %v, where no command runs", c.verb, st)
			}
		}
		if got := lookupCommand([]byte(strings.ToLower(c.verb))); got == nil || got.verb != c.verb {
			t.Errorf("lookupCommand(%q) = %v, want %s", strings.ToLower(c.verb), got, c.verb)
		}
	}
	if lookupCommand([]byte("MAILX")) != nil {
		t.Error("lookupCommand(MAILX) found a command")
	}
}

func TestTransactionReadableAtAbort(t *testing.T) {
	s := newDataSession(t, &Config{})
	n, ev := s.Feed([]byte("bare\nLF\r\n.\r\n"))
	if n != 12 || ev.Kind != EventDataAborted {
		t.Fatalf("Feed(bare LF message) = %d, %v; want 12, data-aborted", n, ev.Kind)
	}
	if got := s.Transaction().From; got != "a@client.test" {
		t.Errorf("Transaction().From at data-aborted = %q, want %q", got, "a@client.test")
	}
	if got := len(s.Transaction().Rcpts); got != 1 {
		t.Errorf("len(Transaction().Rcpts) at data-aborted = %d, want 1", got)
	}

	s.Feed([]byte("NOOP\r\n"))
	if tx := s.Transaction(); tx.From != "" || tx.Rcpts != nil {
		t.Errorf("transaction after the next Feed = %+v, want empty", *tx)
	}
}

func TestAdvanceCompactsOutput(t *testing.T) {
	s := newReadySession(t, &Config{})
	for range 400 {
		s.Feed([]byte("NOOP\r\n"))
		s.Advance(len(s.Output()) - 1) // leave one byte unwritten each time
	}
	if got, want := string(s.Output()), "\n"; got != want {
		t.Errorf("Output() = %q, want %q", got, want)
	}
	if cap(s.out) > 2*outCompactThreshold+64 {
		t.Errorf("output buffer grew to %d octets with one octet pending", cap(s.out))
	}
}

func TestRefuseConnection(t *testing.T) {
	s := NewSession(&Config{Hostname: "mx.test"})
	s.Refuse(Reply{Code: 554, Enhanced: "5.7.1", Text: "Access denied"})
	if got, want := string(s.Output()), "554 5.7.1 Access denied\r\n"; got != want {
		t.Errorf("Output() after Refuse = %q, want %q", got, want)
	}
	if !s.Closing() {
		t.Error("Closing() = false after Refuse")
	}
	if n, ev := s.Feed([]byte("EHLO x\r\n")); n != 8 || ev.Kind != EventClose {
		t.Errorf("Feed after Refuse = %d, %v; want 8, close", n, ev.Kind)
	}
	expectPanic(t, "Refuse with 220", func() { NewSession(&Config{}).Refuse(Reply{Code: 220}) })
}

func TestImplicitTLS(t *testing.T) {
	s := NewSession(&Config{Hostname: "mx.test", StartTLS: true})
	s.TLSStarted()
	s.Start()
	if !s.TLSActive() {
		t.Fatal("TLSActive() = false after TLSStarted on a new session")
	}
	mustFeed(t, s, "EHLO client.test\r\n", EventHelo)
	s.Accept()
	if out := string(s.Output()); strings.Contains(out, "STARTTLS") {
		t.Errorf("EHLO reply on implicit TLS advertises STARTTLS:\n%s", out)
	}
	n, _ := s.Feed([]byte("STARTTLS\r\n"))
	if n != 10 || !strings.HasSuffix(string(s.Output()), "503 5.5.1 TLS already active\r\n") {
		t.Errorf("STARTTLS on implicit TLS: output %q, want 503 5.5.1", s.Output())
	}
	expectPanic(t, "TLSStarted after EHLO", s.TLSStarted)
}

func TestTakeFailures(t *testing.T) {
	s := NewSession(&Config{Hostname: "mx.test"})
	s.Start()
	in := []byte("EHLO client.test\r\nBOGUS\r\nRCPT TO:<a@b.test>\r\nMAIL FROM:<s@a.test>\r\nMAIL FROM:<t@a.test>\r\nRCPT TO:<x@y.test> NOTIFY=BOGUS\r\n")
	for len(in) > 0 {
		n, ev := s.Feed(in)
		in = in[n:]
		if s.Pending() {
			if ev.Kind == EventMail && s.Transaction().From == "s@a.test" {
				s.Reject(Reply{Code: 550, Enhanced: "5.7.1", Text: "sender denied"})
			} else {
				s.Accept()
			}
		}
	}
	got, dropped := s.TakeFailures(nil)
	want := []Failure{
		{Command: "UNKNOWN", Reply: Reply{Code: 500, Enhanced: "5.5.1"}},
		{Command: "RCPT", Reply: Reply{Code: 503, Enhanced: "5.5.1"}}, // rejected by state before parsing
		{Command: "MAIL", From: "s@a.test", Reply: Reply{Code: 550, Enhanced: "5.7.1"}},
		{Command: "RCPT", From: "t@a.test", Rcpt: "x@y.test", Reply: Reply{Code: 501, Enhanced: "5.5.4"}},
	}
	if len(got) != len(want) || dropped != 0 {
		t.Fatalf("TakeFailures = %+v, %d dropped; want %d failures, 0 dropped", got, dropped, len(want))
	}
	for i := range want {
		if got[i].Command != want[i].Command || got[i].Reply.Code != want[i].Reply.Code || got[i].Reply.Enhanced != want[i].Reply.Enhanced {
			t.Errorf("failure %d = %+v, want command %s and %d %s", i, got[i], want[i].Command, want[i].Reply.Code, want[i].Reply.Enhanced)
		}
		if got[i].From != want[i].From || got[i].Rcpt != want[i].Rcpt {
			t.Errorf("failure %d from, rcpt = %q, %q; want %q, %q", i, got[i].From, got[i].Rcpt, want[i].From, want[i].Rcpt)
		}
	}
	if again, _ := s.TakeFailures(nil); len(again) != 0 {
		t.Errorf("second TakeFailures = %+v, want none", again)
	}

	s.Timeout()
	last, _ := s.TakeFailures(nil)
	if len(last) != 1 || last[0].Command != "" || last[0].Reply.Code != 421 {
		t.Errorf("failures after Timeout = %+v, want one 421 with no command", last)
	}
}

func TestTakeFailuresBounded(t *testing.T) {
	s := NewSession(&Config{Hostname: "mx.test", MaxErrors: 1000})
	s.Start()
	for range maxFailures + 5 {
		s.Feed([]byte("BOGUS\r\n"))
	}
	got, dropped := s.TakeFailures(nil)
	if len(got) != maxFailures || dropped != 5 {
		t.Errorf("TakeFailures = %d failures, %d dropped; want %d, 5", len(got), dropped, maxFailures)
	}
}
