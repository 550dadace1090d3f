package delivery

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"smta/internal/smtptest"
)

const (
	testPrepend = "Received: from client.test by relay.test; Fri, 4 Dec 2026 20:00:00 +0000\r\n"
	// testBody is wire form: the line ".hidden" arrives dot-stuffed.
	testBody = "From: <sender@example.org>\r\nSubject: test\r\n\r\nfirst line\r\n..hidden\r\n\r\nlast line\r\n"
)

func testJob(rcpts ...string) *Job {
	j := &Job{
		From:    "sender@example.org",
		Body:    strings.NewReader(testBody),
		Size:    int64(len(testBody)),
		Prepend: []byte(testPrepend),
	}
	for _, r := range rcpts {
		j.Rcpts = append(j.Rcpts, Rcpt{Addr: r})
	}
	return j
}

func dialTest(t testing.TB, addr string, o DialOptions) *Conn {
	t.Helper()
	if o.HeloName == "" {
		o.HeloName = "relay.test"
	}
	if o.Timeout == 0 {
		o.Timeout = 10 * time.Second
	}
	c, err := Dial(context.Background(), addr, o)
	if err != nil {
		t.Fatalf("Dial(%s): %v", addr, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func send(t testing.TB, c *Conn, j *Job) []Result {
	t.Helper()
	res, err := c.Send(context.Background(), j)
	if err != nil {
		t.Fatalf("Send: %v", err)
	}
	if len(res) != len(j.Rcpts) {
		t.Fatalf("Send returned %d results for %d recipients", len(res), len(j.Rcpts))
	}
	return res
}

func codes(res []Result) []int {
	var out []int
	for _, r := range res {
		out = append(out, r.Code)
	}
	return out
}

func rejectAddr(addr, reply string) func(string) string {
	return func(a string) string {
		if a == addr {
			return reply
		}
		return "250 2.1.5 ok"
	}
}

func TestSendPerRecipientResults(t *testing.T) {
	tests := []struct {
		name     string
		script   script
		want     []Result
		arrivals int // messages, of the two sent, whose body reaches the receiver
	}{
		{
			name: "all accepted",
			want: []Result{
				{250, "2.0.0", "ok: queued"},
				{250, "2.0.0", "ok: queued"},
				{250, "2.0.0", "ok: queued"},
			},
			arrivals: 2,
		},
		{
			name:   "4xx on one RCPT",
			script: script{rcptReply: rejectAddr("b@example.com", "450 4.2.1 mailbox busy")},
			want: []Result{
				{250, "2.0.0", "ok: queued"},
				{450, "4.2.1", "mailbox busy"},
				{250, "2.0.0", "ok: queued"},
			},
			arrivals: 2,
		},
		{
			name: "multi-line 5xx on RCPT",
			script: script{rcptReply: rejectAddr("a@example.com",
				"550-5.1.1 no such user\r\n550-5.1.1 see the help page\r\n550 5.1.1 for details")},
			want: []Result{
				{550, "5.1.1", "no such user see the help page for details"},
				{250, "2.0.0", "ok: queued"},
				{250, "2.0.0", "ok: queued"},
			},
			arrivals: 2,
		},
		{
			name: "5xx on DATA",
			script: script{
				rcptReply: rejectAddr("c@example.com", "550 5.1.1 no such user"),
				dataReply: "554 5.3.0 transaction failed",
			},
			want: []Result{
				{554, "5.3.0", "transaction failed"},
				{554, "5.3.0", "transaction failed"},
				{550, "5.1.1", "no such user"},
			},
		},
		{
			name: "multi-line 5xx on final dot",
			script: script{
				rcptReply: rejectAddr("b@example.com", "452 4.5.3 too many recipients"),
				dotReply:  "550-5.7.1 message content\r\n550 5.7.1 rejected by policy",
			},
			want: []Result{
				{550, "5.7.1", "message content rejected by policy"},
				{452, "4.5.3", "too many recipients"},
				{550, "5.7.1", "message content rejected by policy"},
			},
			arrivals: 2,
		},
		{
			name:   "MAIL rejected",
			script: script{mailReply: "553 5.1.8 sender domain does not exist"},
			want: []Result{
				{553, "5.1.8", "sender domain does not exist"},
				{553, "5.1.8", "sender domain does not exist"},
				{553, "5.1.8", "sender domain does not exist"},
			},
		},
		{
			name:   "every RCPT rejected",
			script: script{rcptReply: func(string) string { return "550 5.7.1 relaying denied" }},
			want: []Result{
				{550, "5.7.1", "relaying denied"},
				{550, "5.7.1", "relaying denied"},
				{550, "5.7.1", "relaying denied"},
			},
		},
		{
			name:   "reply without enhanced code",
			script: script{rcptReply: rejectAddr("a@example.com", "550 no")},
			want: []Result{
				{550, "", "no"},
				{250, "2.0.0", "ok: queued"},
				{250, "2.0.0", "ok: queued"},
			},
			arrivals: 2,
		},
	}
	for _, pipelining := range []bool{false, true} {
		for _, tt := range tests {
			t.Run(fmt.Sprintf("%s/pipelining=%v", tt.name, pipelining), func(t *testing.T) {
				sc := tt.script
				sc.extensions = []string{"ENHANCEDSTATUSCODES", "8BITMIME"}
				if pipelining {
					sc.extensions = append(sc.extensions, "PIPELINING")
				}
				rcv := startReceiver(t, sc)
				c := dialTest(t, rcv.addr(), DialOptions{})

				res := send(t, c, testJob("a@example.com", "b@example.com", "c@example.com"))
				if !slices.Equal(res, tt.want) {
					t.Errorf("results:\n got %v\nwant %v", res, tt.want)
				}

				// The connection must stay usable for the next message.
				second := send(t, c, testJob("d@example.com"))
				if second[0].Code == 0 || second[0].Code == 421 {
					t.Errorf("second Send on the same connection = %v, want a server reply", second[0])
				}
				if err := c.Quit(); err != nil {
					t.Errorf("Quit: %v", err)
				}

				// Every delivered message arrives byte for byte as
				// Prepend+Body; rejected ones never get past DATA.
				_, messages := rcv.snapshot()
				gotCount := 0
				for _, m := range messages {
					if string(m) == testPrepend+testBody {
						gotCount++
					} else if len(m) > 0 {
						t.Errorf("delivered bytes:\n got %q\nwant %q", m, testPrepend+testBody)
					}
				}
				if gotCount != tt.arrivals {
					t.Errorf("receiver got %d complete messages, want %d", gotCount, tt.arrivals)
				}
			})
		}
	}
}

func TestSendPipelinesEnvelope(t *testing.T) {
	// The receiver replies to MAIL and RCPT only once DATA has arrived, so a
	// client that waits for each reply runs into its 2-second timeout.
	rcv := startReceiver(t, script{extensions: []string{"PIPELINING"}, holdUntilData: true})
	c := dialTest(t, rcv.addr(), DialOptions{CommandTimeout: 2 * time.Second})

	res := send(t, c, testJob("a@example.com", "b@example.com"))
	if got := codes(res); !slices.Equal(got, []int{250, 250}) {
		t.Errorf("result codes = %v, want [250 250]", got)
	}
}

func TestSendPipelinesLargeEnvelope(t *testing.T) {
	// 1000 recipients make about 30 KiB of commands, above
	// pipelineSyncLimit, so a second goroutine writes them while the
	// replies are read. Every third recipient is rejected to check that
	// replies still map to the right recipients.
	const rcpts = 1000
	rcv := startReceiver(t, script{
		extensions: []string{"PIPELINING"},
		rcptReply: func(addr string) string {
			if strings.HasSuffix(addr, "3@example.com") {
				return "550 5.1.1 no such user"
			}
			return "250 2.1.5 ok"
		},
	})
	c := dialTest(t, rcv.addr(), DialOptions{})

	var addrs []string
	for i := range rcpts {
		addrs = append(addrs, fmt.Sprintf("recipient%04d@example.com", i))
	}
	res := send(t, c, testJob(addrs...))
	for i, r := range res {
		want := 250
		if i%10 == 3 {
			want = 550
		}
		if r.Code != want {
			t.Fatalf("result %d (%s) = %v, want %d", i, addrs[i], r, want)
		}
	}
	if _, messages := rcv.snapshot(); len(messages) != 1 {
		t.Errorf("receiver got %d messages, want 1", len(messages))
	}
}

func TestSendWithoutESMTP(t *testing.T) {
	rcv := startReceiver(t, script{noESMTP: true})
	c := dialTest(t, rcv.addr(), DialOptions{})
	if c.ESMTP() {
		t.Errorf("ESMTP() = true after EHLO was rejected, want false")
	}

	j := testJob("a@example.com")
	j.Body8Bit = true
	j.EnvID = "abc"
	j.Ret = "FULL"
	j.Rcpts[0].Notify = "FAILURE"
	res := send(t, c, j)
	if res[0].Code != 250 {
		t.Errorf("result = %v, want 250", res[0])
	}

	commands, messages := rcv.snapshot()
	wantCommands := []string{
		"EHLO relay.test",
		"HELO relay.test",
		"MAIL FROM:<sender@example.org>",
		"RCPT TO:<a@example.com>",
		"DATA",
	}
	if !slices.Equal(commands, wantCommands) {
		t.Errorf("commands:\n got %q\nwant %q", commands, wantCommands)
	}
	if len(messages) != 1 || string(messages[0]) != testPrepend+testBody {
		t.Errorf("delivered bytes = %q, want %q", messages, testPrepend+testBody)
	}
}

func TestSendParameters(t *testing.T) {
	job := func() *Job {
		j := testJob("a@example.com", "b@example.com")
		j.Body8Bit = true
		j.SMTPUTF8 = true
		j.EnvID = "id+1 x=y"
		j.Ret = "hdrs"
		j.Rcpts[0].Notify = "failure,delay"
		j.Rcpts[0].ORcpt = "rfc822;a+tag@example.com"
		j.Rcpts[1].ORcpt = "b@example.com"
		return j
	}
	size := fmt.Sprint(len(testPrepend) + len(testBody))

	tests := []struct {
		name       string
		extensions []string
		want       []string
	}{
		{
			name:       "all advertised",
			extensions: []string{"PIPELINING", "SIZE 10000000", "8BITMIME", "SMTPUTF8", "DSN"},
			want: []string{
				"MAIL FROM:<sender@example.org> SIZE=" + size + " BODY=8BITMIME SMTPUTF8 RET=HDRS ENVID=id+2B1+20x+3Dy",
				"RCPT TO:<a@example.com> NOTIFY=FAILURE,DELAY ORCPT=rfc822;a+2Btag@example.com",
				"RCPT TO:<b@example.com> ORCPT=rfc822;b@example.com",
				"DATA",
			},
		},
		{
			name:       "no DSN, no SIZE",
			extensions: []string{"8BITMIME", "SMTPUTF8"},
			want: []string{
				"MAIL FROM:<sender@example.org> BODY=8BITMIME SMTPUTF8",
				"RCPT TO:<a@example.com>",
				"RCPT TO:<b@example.com>",
				"DATA",
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rcv := startReceiver(t, script{extensions: tt.extensions})
			c := dialTest(t, rcv.addr(), DialOptions{})
			send(t, c, job())
			commands, _ := rcv.snapshot()
			if got := commands[1:]; !slices.Equal(got, tt.want) {
				t.Errorf("commands:\n got %q\nwant %q", got, tt.want)
			}
		})
	}
}

func TestSendLocalRejections(t *testing.T) {
	rcv := startReceiver(t, script{extensions: []string{"SIZE 100"}})
	c := dialTest(t, rcv.addr(), DialOptions{})

	utf8Job := testJob("a@example.com")
	utf8Job.Size = 10
	utf8Job.Prepend = nil
	utf8Job.SMTPUTF8 = true
	if res := send(t, c, utf8Job); res[0].Code != 553 || res[0].Enhanced != "5.6.7" {
		t.Errorf("SMTPUTF8 job to a server without SMTPUTF8 = %v, want 553 5.6.7", res[0])
	}

	bigJob := testJob("a@example.com")
	if res := send(t, c, bigJob); res[0].Code != 552 || res[0].Enhanced != "5.3.4" {
		t.Errorf("job over the SIZE limit = %v, want 552 5.3.4", res[0])
	}

	badJob := testJob("a@example.com>\r\nRCPT TO:<evil@example.com")
	badJob.Size = 10
	badJob.Prepend = nil
	if res := send(t, c, badJob); res[0].Code != 553 || res[0].Enhanced != "5.1.3" {
		t.Errorf("recipient with CRLF = %v, want 553 5.1.3", res[0])
	}

	commands, _ := rcv.snapshot()
	if want := []string{"EHLO relay.test"}; !slices.Equal(commands, want) {
		t.Errorf("commands = %q, want only %q", commands, want)
	}
}

func TestSendResetsAfterOpenTransaction(t *testing.T) {
	rcv := startReceiver(t, script{rcptReply: rejectAddr("gone@example.com", "550 5.1.1 no such user")})
	c := dialTest(t, rcv.addr(), DialOptions{})

	send(t, c, testJob("gone@example.com")) // MAIL accepted, no RCPT: transaction left open
	send(t, c, testJob("a@example.com"))
	send(t, c, testJob("b@example.com")) // previous one completed: no RSET

	commands, messages := rcv.snapshot()
	want := []string{
		"EHLO relay.test",
		"MAIL FROM:<sender@example.org>",
		"RCPT TO:<gone@example.com>",
		"RSET",
		"MAIL FROM:<sender@example.org>",
		"RCPT TO:<a@example.com>",
		"DATA",
		"MAIL FROM:<sender@example.org>",
		"RCPT TO:<b@example.com>",
		"DATA",
	}
	if !slices.Equal(commands, want) {
		t.Errorf("commands:\n got %q\nwant %q", commands, want)
	}
	if len(messages) != 2 {
		t.Errorf("delivered %d messages, want 2", len(messages))
	}
}

func TestResetAndQuit(t *testing.T) {
	rcv := startReceiver(t, script{})
	c := dialTest(t, rcv.addr(), DialOptions{})
	if err := c.Reset(); err != nil {
		t.Errorf("Reset: %v", err)
	}
	if err := c.Quit(); err != nil {
		t.Errorf("Quit: %v", err)
	}
	commands, _ := rcv.snapshot()
	if want := []string{"EHLO relay.test", "RSET", "QUIT"}; !slices.Equal(commands, want) {
		t.Errorf("commands = %q, want %q", commands, want)
	}

	// A closed Conn refuses further work without touching the socket.
	res, err := c.Send(context.Background(), testJob("a@example.com"))
	if !errors.Is(err, ErrConnBroken) || len(res) != 1 || res[0].Code != 421 {
		t.Errorf("Send after Quit = %v, %v, want one 421 result and ErrConnBroken", res, err)
	}
	if err := c.Reset(); !errors.Is(err, ErrConnBroken) {
		t.Errorf("Reset after Quit = %v, want ErrConnBroken", err)
	}
}

func TestSendBodyEdgeCases(t *testing.T) {
	tests := []struct {
		name    string
		prepend string
		body    string
		want    string
	}{
		{"body without final CRLF", "", "Subject: x\r\n\r\nno line end", "Subject: x\r\n\r\nno line end\r\n"},
		{"empty body", "", "", ""},
		{"prepend only", "X-A: 1\r\n", "", "X-A: 1\r\n"},
		{"body ending in bare LF", "", "a\r\nb\n", "a\r\nb\n\r\n"},
		{"large body", "", strings.Repeat("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\r\n", 20000),
			strings.Repeat("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\r\n", 20000)},
	}
	rcv := startReceiver(t, script{extensions: []string{"PIPELINING"}})
	c := dialTest(t, rcv.addr(), DialOptions{})
	for i, tt := range tests {
		j := &Job{
			From:    "sender@example.org",
			Rcpts:   []Rcpt{{Addr: "a@example.com"}},
			Body:    strings.NewReader(tt.body),
			Prepend: []byte(tt.prepend),
		}
		send(t, c, j)
		_, messages := rcv.snapshot()
		if len(messages) != i+1 {
			t.Fatalf("%s: receiver has %d messages, want %d", tt.name, len(messages), i+1)
		}
		if got := string(messages[i]); got != tt.want {
			t.Errorf("%s: delivered %d bytes %.60q, want %d bytes %.60q", tt.name, len(got), got, len(tt.want), tt.want)
		}
	}
}

func TestSendConnectionFailures(t *testing.T) {
	tests := []struct {
		name   string
		script script
		opts   DialOptions
		want   Result // for every recipient without a final reply
	}{
		{
			name:   "421 on RCPT",
			script: script{rcptReply: func(string) string { return "421 4.7.0 too many connections" }},
			want:   Result{421, "4.7.0", "too many connections"},
		},
		{
			name:   "no reply to final dot",
			script: script{silentDot: true},
			opts:   DialOptions{DataTermTimeout: 100 * time.Millisecond},
			want:   Result{Code: 421, Enhanced: "4.4.2"},
		},
	}
	for _, pipelining := range []bool{false, true} {
		for _, tt := range tests {
			t.Run(fmt.Sprintf("%s/pipelining=%v", tt.name, pipelining), func(t *testing.T) {
				sc := tt.script
				if pipelining {
					sc.extensions = []string{"PIPELINING"}
				}
				rcv := startReceiver(t, sc)
				c := dialTest(t, rcv.addr(), tt.opts)

				res, err := c.Send(context.Background(), testJob("a@example.com", "b@example.com"))
				if err == nil {
					t.Fatalf("Send succeeded with %v, want a connection error", res)
				}
				for i, r := range res {
					if r.Code != tt.want.Code || r.Enhanced != tt.want.Enhanced ||
						(tt.want.Text != "" && r.Text != tt.want.Text) {
						t.Errorf("result %d = %v, want %v", i, r, tt.want)
					}
				}

				res, err = c.Send(context.Background(), testJob("c@example.com"))
				if !errors.Is(err, ErrConnBroken) {
					t.Errorf("Send after failure: error %v, want ErrConnBroken", err)
				}
				if len(res) != 1 || res[0].Code != 421 {
					t.Errorf("Send after failure = %v, want one 421 result", res)
				}
			})
		}
	}
}

func TestSendContextCancel(t *testing.T) {
	rcv := startReceiver(t, script{silentDot: true})
	c := dialTest(t, rcv.addr(), DialOptions{})

	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	res, err := c.Send(ctx, testJob("a@example.com"))
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Send error = %v, want context.DeadlineExceeded", err)
	}
	if len(res) != 1 || res[0].Code != 421 || res[0].Enhanced != "4.4.2" {
		t.Errorf("results = %v, want one 421 4.4.2", res)
	}
}

func TestSendBodyReadError(t *testing.T) {
	rcv := startReceiver(t, script{})
	c := dialTest(t, rcv.addr(), DialOptions{})

	j := testJob("a@example.com")
	j.Body = io.MultiReader(strings.NewReader("Subject: x\r\n\r\npartial"), errReader{})
	res, err := c.Send(context.Background(), j)
	if err == nil {
		t.Fatalf("Send succeeded with %v, want an error", res)
	}
	if res[0].Code != 451 {
		t.Errorf("result = %v, want 451", res[0])
	}
	// The truncated message must not be completed with a dot, so the
	// receiver's session ends inside DATA without a message.
	select {
	case <-rcv.ended:
	case <-time.After(10 * time.Second):
		t.Fatalf("receiver session did not end after the client dropped the connection")
	}
	if _, messages := rcv.snapshot(); len(messages) != 0 {
		t.Errorf("receiver got %d messages, want 0", len(messages))
	}
}

type errReader struct{}

func (errReader) Read([]byte) (int, error) { return 0, errors.New("disk read failed") }

func TestDialSTARTTLS(t *testing.T) {
	t.Run("upgrades", func(t *testing.T) {
		rcv := startReceiver(t, script{tlsConfig: smtptest.ServerTLS(t), extensions: []string{"PIPELINING"}})
		c := dialTest(t, rcv.addr(), DialOptions{UseTLS: true})
		proto, cipher := c.TLSState()
		if proto == "" || cipher == "" {
			t.Errorf("TLSState() = %q, %q, want a protocol and a cipher", proto, cipher)
		}
		if !c.ext.pipelining {
			t.Errorf("extensions after the second EHLO lack PIPELINING")
		}
		res := send(t, c, testJob("a@example.com"))
		if res[0].Code != 250 {
			t.Errorf("result over TLS = %v, want 250", res[0])
		}
		commands, messages := rcv.snapshot()
		if want := []string{"EHLO relay.test", "STARTTLS", "EHLO relay.test"}; !slices.Equal(commands[:3], want) {
			t.Errorf("commands = %q, want to start with %q", commands, want)
		}
		if len(messages) != 1 || string(messages[0]) != testPrepend+testBody {
			t.Errorf("delivered bytes over TLS = %q, want %q", messages, testPrepend+testBody)
		}
	})

	t.Run("disabled", func(t *testing.T) {
		rcv := startReceiver(t, script{tlsConfig: smtptest.ServerTLS(t)})
		c := dialTest(t, rcv.addr(), DialOptions{UseTLS: false})
		if proto, _ := c.TLSState(); proto != "" {
			t.Errorf("TLSState() = %q with UseTLS false, want none", proto)
		}
		commands, _ := rcv.snapshot()
		if slices.Contains(commands, "STARTTLS") {
			t.Errorf("commands %q contain STARTTLS with UseTLS false", commands)
		}
	})

	t.Run("handshake fails, plain text fallback", func(t *testing.T) {
		// A server configuration without certificates fails every handshake.
		rcv := startReceiver(t, script{tlsConfig: &tls.Config{}})
		c := dialTest(t, rcv.addr(), DialOptions{UseTLS: true})
		if proto, _ := c.TLSState(); proto != "" {
			t.Errorf("TLSState() = %q after a failed handshake, want none", proto)
		}
		if res := send(t, c, testJob("a@example.com")); res[0].Code != 250 {
			t.Errorf("result in plain text = %v, want 250", res[0])
		}
	})
}

func TestDialGreetingRejected(t *testing.T) {
	rcv := startReceiver(t, script{greeting: "554 5.7.1 no service for you"})
	_, err := Dial(context.Background(), rcv.addr(), DialOptions{HeloName: "relay.test", Timeout: 5 * time.Second})
	var re *ReplyError
	if !errors.As(err, &re) {
		t.Fatalf("Dial error = %v, want a ReplyError", err)
	}
	if re.Command != "greeting" || re.Reply.Code != 554 || re.Reply.Enhanced != "5.7.1" {
		t.Errorf("ReplyError = %+v, want greeting 554 5.7.1", re)
	}
}

func TestDialContextCancel(t *testing.T) {
	// The listener accepts but never sends a greeting.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listening: %v", err)
	}
	defer ln.Close()
	go func() {
		nc, err := ln.Accept()
		if err == nil {
			defer nc.Close()
			_, _ = io.Copy(io.Discard, nc)
		}
	}()

	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, err = Dial(ctx, ln.Addr().String(), DialOptions{HeloName: "relay.test"})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Dial error = %v, want context.DeadlineExceeded", err)
	}
}

func TestDialSourceIP(t *testing.T) {
	rcv := startReceiver(t, script{})
	src := netip.MustParseAddr("127.0.0.2")
	c := dialTest(t, rcv.addr(), DialOptions{SourceIP: src})
	if got := c.LocalAddr().Addr(); got != src {
		t.Errorf("LocalAddr() = %v, want %v", got, src)
	}
	if got := c.RemoteAddr().String(); got != rcv.addr() {
		t.Errorf("RemoteAddr() = %v, want %v", got, rcv.addr())
	}
}

func TestXtext(t *testing.T) {
	tests := []struct{ in, want string }{
		{"plain@example.com", "plain@example.com"},
		{"a+b=c", "a+2Bb+3Dc"},
		{"with space", "with+20space"},
		{"ü", "+C3+BC"},
		{"", ""},
	}
	for _, tt := range tests {
		if got := xtext(tt.in); got != tt.want {
			t.Errorf("xtext(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}
