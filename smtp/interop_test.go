package smtp

// Interoperability tests: real SMTP clients (swaks, Postfix smtp-source,
// Python smtplib) talk over loopback TCP to a minimal blocking driver
// written here the way the contract in api.go prescribes. They fail when
// a client tool is missing.

import (
	"bytes"
	"crypto/tls"
	"fmt"
	"net"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"smta/internal/smtptest"
)

// receivedMessage is one message the test server queued.
type receivedMessage struct {
	from  string
	rcpts []string
	body  []byte // wire form
	tls   bool
}

// testServer serves Sessions on a loopback listener, one goroutine per
// connection, and records every queued message.
type testServer struct {
	t         *testing.T
	ln        net.Listener
	cfg       Config
	tlsConfig *tls.Config
	wg        sync.WaitGroup

	mu       sync.Mutex // guards messages and sessions
	messages []receivedMessage
	sessions int
}

func startTestServer(t *testing.T, cfg Config, tlsConfig *tls.Config) *testServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ts := &testServer{t: t, ln: ln, cfg: cfg, tlsConfig: tlsConfig}
	ts.wg.Add(1)
	go func() {
		defer ts.wg.Done()
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			ts.wg.Add(1)
			go func() {
				defer ts.wg.Done()
				defer conn.Close()
				if err := ts.serve(conn); err != nil {
					t.Errorf("session: %v", err)
				}
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		ts.wg.Wait()
	})
	return ts
}

func (ts *testServer) addr() string { return ts.ln.Addr().String() }

func (ts *testServer) received() []receivedMessage {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return append([]receivedMessage(nil), ts.messages...)
}

// serve drives one Session over conn with a fixed 4 KiB input buffer,
// keeping Feed's unconsumed tail at the front of the buffer.
func (ts *testServer) serve(conn net.Conn) error {
	cfg := ts.cfg
	s := NewSession(&cfg)
	s.Start()
	var c net.Conn = conn
	buf := make([]byte, 4096)
	start, end := 0, 0
	var body []byte
	useTLS := false
	flush := func() error {
		for len(s.Output()) > 0 {
			n, err := c.Write(s.Output())
			s.Advance(n)
			if err != nil {
				return fmt.Errorf("writing replies: %w", err)
			}
		}
		return nil
	}

	for {
		if err := c.SetDeadline(time.Now().Add(20 * time.Second)); err != nil {
			return err
		}
		n, ev := s.Feed(buf[start:end])
		start += n
		switch ev.Kind {
		case EventNone:
			if err := flush(); err != nil {
				return err
			}
			copy(buf, buf[start:end])
			end -= start
			start = 0
			if end == len(buf) {
				return fmt.Errorf("Feed made no progress on a full buffer %q", buf)
			}
			k, err := c.Read(buf[end:])
			if err != nil {
				return fmt.Errorf("reading commands: %w", err)
			}
			end += k
		case EventHelo, EventMail, EventData:
			s.Accept()
			body = body[:0]
		case EventRcpt:
			if strings.Contains(ev.Rcpt.Addr, "reject") {
				s.Reject(Reply{Code: 550, Enhanced: "5.1.1", Text: "No such user"})
			} else {
				s.Accept()
			}
		case EventBody:
			body = append(body, ev.Body...)
		case EventDataEnd:
			tx := s.Transaction()
			msg := receivedMessage{from: tx.From, body: append([]byte(nil), body...), tls: useTLS}
			for _, r := range tx.Rcpts {
				msg.rcpts = append(msg.rcpts, r.Addr)
			}
			ts.mu.Lock()
			ts.messages = append(ts.messages, msg)
			id := len(ts.messages)
			ts.mu.Unlock()
			s.AcceptQueued(fmt.Sprintf("T%d", id))
		case EventStartTLS:
			if err := flush(); err != nil {
				return err
			}
			start, end = 0, 0 // plaintext sent after STARTTLS is discarded
			tc := tls.Server(conn, ts.tlsConfig)
			if err := tc.Handshake(); err != nil {
				return fmt.Errorf("TLS handshake: %w", err)
			}
			c = tc
			useTLS = true
			s.TLSStarted()
		case EventQuit, EventClose:
			return flush()
		}
	}
}

func runTool(t *testing.T, name string, args ...string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("%s is required for this test: %v", name, err)
	}
	out, err := exec.Command(path, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

func TestInteropSwaksPipelining(t *testing.T) {
	ts := startTestServer(t, Config{Hostname: "mx.test", MaxMessageSize: 1 << 20}, nil)
	body := "Subject: interop\r\n\r\n.leading dot\r\nplain line\r\n..two dots\r\n"
	out := runTool(t, "swaks", "--server", ts.addr(), "--pipeline",
		"--helo", "client.test", "--from", "sender@client.test",
		"--to", "one@mx.test,reject@mx.test,two@mx.test",
		"--data", body, "--timeout", "10")

	if !strings.Contains(out, "250 2.0.0 Ok: queued as T1") {
		t.Errorf("swaks transcript lacks the queued reply:\n%s", out)
	}
	msgs := ts.received()
	if len(msgs) != 1 {
		t.Fatalf("received %d messages, want 1\n%s", len(msgs), out)
	}
	m := msgs[0]
	if m.from != "sender@client.test" {
		t.Errorf("from = %q, want %q", m.from, "sender@client.test")
	}
	if got, want := strings.Join(m.rcpts, ","), "one@mx.test,two@mx.test"; got != want {
		t.Errorf("rcpts = %q, want %q", got, want)
	}
	if got := DotUnstuff(nil, m.body); !bytes.Contains(got, []byte("\r\n.leading dot\r\nplain line\r\n..two dots\r\n")) {
		t.Errorf("unstuffed body = %q, want it to contain the dot lines", got)
	}
}

func TestInteropSmtpSource(t *testing.T) {
	ts := startTestServer(t, Config{Hostname: "mx.test", MaxMessageSize: 1 << 20}, nil)
	const sessions, messages = 4, 40
	runTool(t, "/usr/sbin/smtp-source", "-s", fmt.Sprint(sessions), "-m", fmt.Sprint(messages),
		"-d", "-l", "5000", "-r", "3", "-f", "src@client.test", "-t", "dst@mx.test",
		"-M", "client.test", ts.addr())

	msgs := ts.received()
	if len(msgs) != messages {
		t.Fatalf("received %d messages, want %d", len(msgs), messages)
	}
	for i, m := range msgs {
		if len(m.rcpts) != 3 {
			t.Errorf("message %d has %d recipients, want 3", i, len(m.rcpts))
		}
		if len(m.body) < 5000 {
			t.Errorf("message %d body is %d octets, want at least 5000", i, len(m.body))
		}
	}
}

const pythonStartTLS = `
import smtplib, ssl, sys
host, port = sys.argv[1], int(sys.argv[2])
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
with smtplib.SMTP(host, port, local_hostname="client.test", timeout=10) as c:
    c.ehlo()
    assert c.has_extn("starttls"), "STARTTLS not advertised"
    c.starttls(context=ctx)
    c.ehlo()
    assert not c.has_extn("starttls"), "STARTTLS advertised after TLS"
    assert c.has_extn("smtputf8"), "SMTPUTF8 not advertised"
    assert c.has_extn("pipelining"), "PIPELINING not advertised"
    refused = c.sendmail("sender@client.test", ["one@mx.test", "reject@mx.test"],
                         b"Subject: tls\r\n\r\n.dot\r\nbody\r\n")
    assert list(refused) == ["reject@mx.test"], refused
    code, _ = c.noop()
    assert code == 250, code
print("ok")
`

func TestInteropPythonSTARTTLS(t *testing.T) {
	ts := startTestServer(t, Config{Hostname: "mx.test", StartTLS: true}, smtptest.ServerTLS(t))
	host, port, err := net.SplitHostPort(ts.addr())
	if err != nil {
		t.Fatal(err)
	}
	out := runTool(t, "python3", "-c", pythonStartTLS, host, port)
	if strings.TrimSpace(out) != "ok" {
		t.Errorf("python3 smtplib output = %q, want ok", out)
	}

	msgs := ts.received()
	if len(msgs) != 1 {
		t.Fatalf("received %d messages, want 1", len(msgs))
	}
	if !msgs[0].tls {
		t.Error("message was not received over TLS")
	}
	if got, want := string(DotUnstuff(nil, msgs[0].body)), "Subject: tls\r\n\r\n.dot\r\nbody\r\n"; got != want {
		t.Errorf("unstuffed body = %q, want %q", got, want)
	}
}
