package e2e

import (
	"bytes"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net"
	"net/mail"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// inboundModes are the engine modes every relay test runs in.
var inboundModes = []string{"goroutine", "epoll", "io_uring"}

// relayConf relays everything from loopback to the receiver on %RPORT%.
const relayConf = `
host-name smta.test
smtp-listener 127.0.0.1:%PORT%
spool-dir %DIR%/spool
log-dir %DIR%/log
inbound-mode %MODE%
<source 127.0.0.1/32>
  always-allow-relaying yes
</source>
<domain *>
  route 127.0.0.1:%RPORT%
  retry-after 1s
</domain>
`

func relayConfig(mode string, rport int, extra string) string {
	c := strings.ReplaceAll(relayConf, "%MODE%", mode)
	c = strings.ReplaceAll(c, "%RPORT%", fmt.Sprint(rport))
	return c + extra
}

func forEachMode(t *testing.T, f func(t *testing.T, mode string)) {
	for _, mode := range inboundModes {
		t.Run("mode="+mode, func(t *testing.T) { f(t, mode) })
	}
}

func TestRelaySwaksToReceiver(t *testing.T) {
	forEachMode(t, func(t *testing.T, mode string) {
		rcv := startReceiver(t, 0)
		d := startDaemon(t, t.TempDir(), freePort(t), relayConfig(mode, rcv.port(), ""))

		body := "first line\n.leading dot line\nlast line"
		out, err := swaks(t, d.port,
			"--from", "alice@sender.test", "--to", "bob@example.com,carol@example.com",
			"--header", "Subject: relay test", "--body", body)
		if err != nil {
			t.Fatalf("swaks failed: %v\n%s", err, out)
		}
		if !strings.Contains(out, "250 2.0.0 Ok: queued as ") {
			t.Fatalf("swaks transcript has no queued reply:\n%s", out)
		}

		waitFor(t, 20*time.Second, "delivery to the receiver", func() bool { return len(rcv.messages()) == 1 })
		msg := rcv.messages()[0]
		if msg.From != "alice@sender.test" {
			t.Errorf("MAIL FROM = %q, want alice@sender.test", msg.From)
		}
		if got := strings.Join(msg.Rcpts, ","); got != "bob@example.com,carol@example.com" {
			t.Errorf("RCPT TO = %q, want bob@example.com,carol@example.com", got)
		}
		// The stored body is wire form: the dot-stuffed line arrives stuffed.
		for _, want := range []string{"Subject: relay test\r\n", "first line\r\n", "..leading dot line\r\n", "last line\r\n"} {
			if !bytes.Contains(msg.Data, []byte(want)) {
				t.Errorf("delivered data lacks %q:\n%s", want, msg.Data)
			}
		}
		if !bytes.HasPrefix(msg.Data, []byte("Received: ")) {
			t.Errorf("delivered data does not start with our Received header:\n%s", msg.Data)
		}

		waitFor(t, 10*time.Second, "accounting records", func() bool {
			return countRecords(d.acctRecords(), "d", "") == 2
		})

		// The last log line sums the counters. Connections and bytes are
		// counted by the sharded modes only, and ring file writes by
		// io_uring mode only. The two connections are the harness's
		// readiness probe and swaks.
		d.stop()
		stopped := d.logLine("smta stopped")
		want := []string{"messages_received=1"}
		if mode != "goroutine" {
			want = append(want, "connections_accepted=2", "bytes_in=")
		}
		if mode == "io_uring" {
			want = append(want, "ring_file_writes=1")
		}
		for _, field := range want {
			if !strings.Contains(stopped, field) {
				t.Errorf("stop line lacks %s: %s", field, stopped)
			}
		}

		recs := d.acctRecords()
		for _, rcpt := range []string{"bob@example.com", "carol@example.com"} {
			if n := countRecords(recs, "r", rcpt); n != 1 {
				t.Errorf("reception records for %s = %d, want 1", rcpt, n)
			}
			if n := countRecords(recs, "d", rcpt); n != 1 {
				t.Errorf("delivery records for %s = %d, want 1", rcpt, n)
			}
		}
	})
}

func TestRelayDeniedFromOtherSource(t *testing.T) {
	rcv := startReceiver(t, 0)
	conf := strings.Replace(relayConfig("goroutine", rcv.port(), ""), "always-allow-relaying yes", "always-allow-relaying no", 1)
	d := startDaemon(t, t.TempDir(), freePort(t), conf)

	out, err := swaks(t, d.port, "--from", "alice@sender.test", "--to", "bob@example.com")
	if err == nil {
		t.Fatalf("swaks succeeded, want relaying denied:\n%s", out)
	}
	if !strings.Contains(out, "550 5.7.1") {
		t.Errorf("transcript lacks 550 5.7.1:\n%s", out)
	}

	// The access log has the failed RCPT and then the session's end.
	var access string
	waitFor(t, 10*time.Second, "the access log", func() bool {
		b, _ := os.ReadFile(filepath.Join(d.dir, "log", "smta-access.log"))
		access = string(b)
		return strings.Contains(access, " session ")
	})
	if !strings.Contains(access, ` failure `) || !strings.Contains(access, `command="RCPT" reply="550 5.7.1 Relaying denied"`) {
		t.Errorf("access log lacks the RCPT failure:\n%s", access)
	}
	if !strings.Contains(access, " ip=127.0.0.1 ") || !strings.Contains(access, " msgs=0 ") {
		t.Errorf("access log session line lacks ip or msgs:\n%s", access)
	}
	waitFor(t, 10*time.Second, "the rejection record", func() bool { return countRecords(d.acctRecords(), "rj", "") == 1 })
	for _, r := range d.acctRecords() {
		if r["type"] != "rj" {
			continue
		}
		if r["reply"] != "RCPT: 550 5.7.1 Relaying denied" {
			t.Errorf("rj reply = %q, want %q", r["reply"], "RCPT: 550 5.7.1 Relaying denied")
		}
		if r["orig"] != "alice@sender.test" || r["rcpt"] != "bob@example.com" {
			t.Errorf("rj orig, rcpt = %q, %q; want alice@sender.test, bob@example.com", r["orig"], r["rcpt"])
		}
	}
}

func TestCrashAfterQueuedIsDelivered(t *testing.T) {
	forEachMode(t, func(t *testing.T, mode string) {
		// The next hop is down while smta accepts, so the message can only
		// reach it from the spool after the crash.
		rport := freePort(t)
		dir := t.TempDir()
		d := startDaemon(t, dir, freePort(t), relayConfig(mode, rport, ""))

		const n = 5
		for i := range n {
			out, err := swaks(t, d.port, "--from", "alice@sender.test", "--to", fmt.Sprintf("rcpt%d@example.com", i),
				"--header", fmt.Sprintf("Subject: crash %d", i))
			if err != nil || !strings.Contains(out, "250 2.0.0 Ok: queued as") {
				t.Fatalf("swaks %d: %v\n%s", i, err, out)
			}
		}
		d.kill()

		rcv := startReceiver(t, rport)
		d.start()
		waitFor(t, 30*time.Second, "delivery of every message after restart", func() bool { return len(rcv.messages()) >= n })

		seen := map[string]bool{}
		for _, m := range rcv.messages() {
			seen[m.Rcpts[0]] = true
		}
		for i := range n {
			if rcpt := fmt.Sprintf("rcpt%d@example.com", i); !seen[rcpt] {
				t.Errorf("message for %s was lost in the crash", rcpt)
			}
		}
	})
}

func TestTransientFailureThenDelivery(t *testing.T) {
	rcv := startReceiver(t, 0)
	var attempts atomic.Int32
	rcv.Reply = func(stage, arg string) string {
		if stage == "rcpt" && attempts.Add(1) == 1 {
			return "451 4.3.0 try again later"
		}
		return ""
	}
	d := startDaemon(t, t.TempDir(), freePort(t), relayConfig("goroutine", rcv.port(), ""))

	out, err := swaks(t, d.port, "--from", "alice@sender.test", "--to", "bob@example.com")
	if err != nil {
		t.Fatalf("swaks: %v\n%s", err, out)
	}
	waitFor(t, 30*time.Second, "delivery after the retry", func() bool { return len(rcv.messages()) == 1 })
	if got := attempts.Load(); got < 2 {
		t.Errorf("RCPT attempts = %d, want at least 2", got)
	}

	waitFor(t, 10*time.Second, "delivery record", func() bool { return countRecords(d.acctRecords(), "d", "bob@example.com") == 1 })
	if n := countRecords(d.acctRecords(), "t", "bob@example.com"); n != 1 {
		t.Errorf("transient failure records = %d, want 1", n)
	}
}

func TestPermanentFailureSendsDSN(t *testing.T) {
	rcv := startReceiver(t, 0)
	rcv.Reply = func(stage, arg string) string {
		if stage == "rcpt" && arg == "nobody@example.com" {
			return "550 5.1.1 no such user"
		}
		return ""
	}
	// The sender's own domain goes to a second receiver, which gets the DSN.
	bounces := startReceiver(t, 0)
	extra := fmt.Sprintf("<domain sender.test>\n  route 127.0.0.1:%d\n</domain>\n", bounces.port())
	d := startDaemon(t, t.TempDir(), freePort(t), relayConfig("goroutine", rcv.port(), extra))

	out, err := swaks(t, d.port, "--from", "alice@sender.test", "--to", "nobody@example.com", "--header", "Subject: will bounce")
	if err != nil {
		t.Fatalf("swaks: %v\n%s", err, out)
	}
	waitFor(t, 20*time.Second, "the DSN", func() bool { return len(bounces.messages()) == 1 })
	dsn := bounces.messages()[0]
	if dsn.From != "" {
		t.Errorf("DSN envelope sender = %q, want the null sender", dsn.From)
	}
	if len(dsn.Rcpts) != 1 || dsn.Rcpts[0] != "alice@sender.test" {
		t.Errorf("DSN recipients = %q, want [alice@sender.test]", dsn.Rcpts)
	}
	checkDSN(t, dsn.Data, "nobody@example.com", "5.1.1")

	if n := countRecords(d.acctRecords(), "b", "nobody@example.com"); n != 1 {
		t.Errorf("bounce records = %d, want 1", n)
	}
}

// checkDSN parses an RFC 3464 report and checks the failed recipient.
func checkDSN(t *testing.T, wire []byte, rcpt, status string) {
	t.Helper()
	plain := bytes.ReplaceAll(wire, []byte("\r\n.."), []byte("\r\n."))
	m, err := mail.ReadMessage(bytes.NewReader(plain))
	if err != nil {
		t.Fatalf("DSN does not parse: %v\n%s", err, wire)
	}
	mt, params, err := mime.ParseMediaType(m.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/report" || params["report-type"] != "delivery-status" {
		t.Fatalf("DSN Content-Type = %q, want multipart/report; report-type=delivery-status", m.Header.Get("Content-Type"))
	}
	mr := multipart.NewReader(m.Body, params["boundary"])
	found := false
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("DSN part: %v", err)
		}
		if p.Header.Get("Content-Type") != "message/delivery-status" {
			continue
		}
		found = true
		b, _ := io.ReadAll(p)
		text := string(b)
		if !strings.Contains(strings.ToLower(text), "final-recipient: rfc822; "+rcpt) && !strings.Contains(strings.ToLower(text), "final-recipient: rfc822;"+rcpt) {
			t.Errorf("delivery-status lacks Final-Recipient %s:\n%s", rcpt, text)
		}
		if !strings.Contains(text, "Status: "+status) {
			t.Errorf("delivery-status lacks Status: %s:\n%s", status, text)
		}
	}
	if !found {
		t.Errorf("DSN has no message/delivery-status part:\n%s", wire)
	}
}

// TestDefaultConfigRelaysToSmtpSink follows the README: smta on the
// embedded default configuration, Postfix's smtp-sink on 127.0.0.1:2526,
// and swaks sending to a sink.test address.
func TestDefaultConfigRelaysToSmtpSink(t *testing.T) {
	sinkPath := "/usr/sbin/smtp-sink"
	if _, err := os.Stat(sinkPath); err != nil {
		t.Fatalf("smtp-sink is required (apt-get install postfix): %v", err)
	}
	// smtp-sink drops root privileges, so its directory and every parent
	// must be open to the nobody user: t.TempDir's parent is not.
	dir, err := os.MkdirTemp("", "smta-sink-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	dump := filepath.Join(dir, "sink.dump")

	// The embedded default fixes both ports. A server left running from
	// the README's own steps would take this test's mail or its port, and
	// the failure would show only as a timeout much later.
	for _, addr := range []string{"127.0.0.1:2525", "127.0.0.1:2526"} {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			t.Fatalf("%s is in use (make run or an smtp-sink still running?): stop it and run the test again: %v", addr, err)
		}
		ln.Close()
	}
	startProcess(t, dir, sinkPath, "-u", "nobody", "-D", dump, "127.0.0.1:2526", "10")

	d := &daemon{t: t, dir: dir, port: 2525}
	d.startDefault()
	t.Cleanup(d.stop)

	out, err := swaks(t, 2525, "--from", "me@example.net", "--to", "you@sink.test", "--header", "Subject: hello sink")
	if err != nil || !strings.Contains(out, "250 2.0.0 Ok: queued as") {
		t.Fatalf("swaks: %v\n%s", err, out)
	}
	waitFor(t, 20*time.Second, "smtp-sink to store the message", func() bool {
		b, _ := os.ReadFile(dump)
		return bytes.Contains(b, []byte("Subject: hello sink"))
	})
}
