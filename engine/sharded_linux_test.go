//go:build linux

package engine

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"smta/smtp"

	"smta/internal/smtptest"
)

// shardedModes are the inbound modes this file covers.
var shardedModes = []string{"epoll", "io_uring"}

// memBackend accepts every command and keeps bodies in memory. Commit
// completes on another goroutine after a short delay, as the spool's
// committer does.
type memBackend struct {
	mu     sync.Mutex
	bodies map[string][]byte // queue id -> wire-form body
	froms  map[string]string // queue id -> reverse-path
	seq    atomic.Uint64
	delay  time.Duration
	keep   bool // store bodies; benchmarks only count them

	failures    []string // "COMMAND CODE" per reported failure
	disconnects []int    // messages per ended session
}

func newMemBackend() *memBackend {
	return &memBackend{bodies: map[string][]byte{}, froms: map[string]string{}, delay: time.Millisecond, keep: true}
}

func (b *memBackend) Connect(*ConnInfo) smtp.Reply                 { return smtp.Reply{} }
func (b *memBackend) Helo(*ConnInfo, string) smtp.Reply            { return smtp.Reply{} }
func (b *memBackend) Mail(*ConnInfo, *smtp.Transaction) smtp.Reply { return smtp.Reply{} }
func (b *memBackend) Rcpt(*ConnInfo, *smtp.Transaction, smtp.Recipient) smtp.Reply {
	return smtp.Reply{}
}

func (b *memBackend) Failure(c *ConnInfo, failures []smtp.Failure, dropped int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, f := range failures {
		b.failures = append(b.failures, fmt.Sprintf("%s %d", f.Command, f.Reply.Code))
	}
}

func (b *memBackend) Disconnect(c *ConnInfo, messages int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.disconnects = append(b.disconnects, messages)
}

// sessionLog returns the failures and session ends reported so far.
func (b *memBackend) sessionLog() ([]string, []int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.failures...), append([]int(nil), b.disconnects...)
}

func (b *memBackend) Data(c *ConnInfo, tx *smtp.Transaction) (MessageWriter, smtp.Reply) {
	return &memWriter{b: b, from: tx.From}, smtp.Reply{}
}

func (b *memBackend) count() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.bodies)
}

func (b *memBackend) body(id string) ([]byte, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	body, ok := b.bodies[id]
	return body, ok
}

type memWriter struct {
	b    *memBackend
	from string
	buf  bytes.Buffer
}

func (w *memWriter) Write(p []byte) error { w.buf.Write(p); return nil }
func (w *memWriter) Abort()               {}

func (w *memWriter) Commit(done func(id string, failure smtp.Reply)) {
	go func() {
		time.Sleep(w.b.delay)
		id := fmt.Sprintf("M%d", w.b.seq.Add(1))
		if w.b.keep {
			w.b.mu.Lock()
			w.b.bodies[id] = w.buf.Bytes()
			w.b.froms[id] = w.from
			w.b.mu.Unlock()
		}
		done(id, smtp.Reply{})
	}()
}

func testConfig(mode string) Config {
	return Config{
		Mode:      mode,
		Workers:   2,
		Listeners: []Listener{{Addr: "127.0.0.1:0"}},
		Session:   smtp.Config{Hostname: "mx.test"},
		Logger:    slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
}

// startServer starts a server and registers its shutdown with the test.
func startServer(t testing.TB, cfg Config, b Backend) *Server {
	t.Helper()
	srv, err := New(cfg, b)
	if err != nil {
		t.Fatalf("New(mode %q): %v", cfg.Mode, err)
	}
	if err := srv.Start(); err != nil {
		t.Fatalf("Start: %v", err)
	}
	if srv.Mode() != cfg.Mode {
		t.Fatalf("Mode() = %q, want %q", srv.Mode(), cfg.Mode)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	})
	return srv
}

// client is a minimal SMTP client that checks reply codes.
type client struct {
	t    testing.TB
	conn net.Conn
	r    *bufio.Reader
}

func dial(t testing.TB, srv *Server) *client {
	t.Helper()
	conn, err := net.Dial("tcp", srv.Addrs()[0].String())
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { conn.Close() })
	conn.SetDeadline(time.Now().Add(20 * time.Second))
	return &client{t: t, conn: conn, r: bufio.NewReader(conn)}
}

// reply reads one possibly multi-line reply.
func (c *client) reply() (int, string, error) {
	var text strings.Builder
	for {
		line, err := c.r.ReadString('\n')
		if err != nil {
			return 0, text.String() + line, err
		}
		if len(line) < 4 {
			return 0, line, fmt.Errorf("short reply line %q", line)
		}
		code, err := strconv.Atoi(line[:3])
		if err != nil {
			return 0, line, fmt.Errorf("reply line %q: %w", line, err)
		}
		text.WriteString(line)
		if line[3] == ' ' {
			return code, text.String(), nil
		}
	}
}

// expect reads one reply and fails the test unless its code is want.
func (c *client) expect(want int) string {
	c.t.Helper()
	code, text, err := c.reply()
	if err != nil {
		c.t.Fatalf("reading reply (want %d): %v (got %q)", want, err, text)
	}
	if code != want {
		c.t.Fatalf("reply = %q, want code %d", text, want)
	}
	return text
}

func (c *client) send(s string) {
	c.t.Helper()
	if _, err := io.WriteString(c.conn, s); err != nil {
		c.t.Fatalf("write %q: %v", s, err)
	}
}

func (c *client) cmd(line string, want int) string {
	c.t.Helper()
	c.send(line + "\r\n")
	return c.expect(want)
}

// queueID extracts the id from "250 2.0.0 Ok: queued as <id>".
func queueID(t testing.TB, reply string) string {
	t.Helper()
	i := strings.LastIndex(reply, " ")
	if i < 0 || !strings.Contains(reply, "queued as") {
		t.Fatalf("reply %q has no queue id", reply)
	}
	return strings.TrimSpace(reply[i+1:])
}

// transaction runs MAIL, RCPT and DATA with body (wire form, without the
// terminating ".\r\n") and returns the queue id.
func (c *client) transaction(from, body string) string {
	c.t.Helper()
	c.cmd("MAIL FROM:<"+from+">", 250)
	c.cmd("RCPT TO:<rcpt@example.com>", 250)
	c.cmd("DATA", 354)
	c.send(body + ".\r\n")
	return queueID(c.t, c.expect(250))
}

func checkBody(t testing.TB, b *memBackend, id, want string) {
	t.Helper()
	got, ok := b.body(id)
	if !ok {
		t.Fatalf("message %s not stored", id)
	}
	if string(got) != want {
		t.Fatalf("body of %s = %q, want %q", id, got, want)
	}
}

func forModes(t *testing.T, f func(t *testing.T, mode string)) {
	forAllModes(t, shardedModes, f)
}

func forAllModes(t *testing.T, modes []string, f func(t *testing.T, mode string)) {
	for _, mode := range modes {
		t.Run("mode="+mode, func(t *testing.T) { f(t, mode) })
	}
}

func TestShardGreeting(t *testing.T) {
	forModes(t, func(t *testing.T, mode string) {
		srv := startServer(t, testConfig(mode), newMemBackend())
		c := dial(t, srv)
		got := c.expect(220)
		if !strings.HasPrefix(got, "220 mx.test ") {
			t.Errorf("greeting = %q, want prefix %q", got, "220 mx.test ")
		}
		c.cmd("QUIT", 221)
		if _, err := c.r.ReadByte(); err != io.EOF {
			t.Errorf("read after QUIT: err = %v, want EOF", err)
		}
	})
}

func TestShardTransaction(t *testing.T) {
	forModes(t, func(t *testing.T, mode string) {
		b := newMemBackend()
		srv := startServer(t, testConfig(mode), b)
		c := dial(t, srv)
		c.expect(220)
		c.cmd("EHLO client.test", 250)
		body := "Subject: hi\r\n\r\nline one\r\n..dot-stuffed\r\n"
		id := c.transaction("a@example.com", body)
		checkBody(t, b, id, body)
		c.cmd("QUIT", 221)

		st := srv.Stats()
		if st.Accepted != 1 {
			t.Errorf("Stats().Accepted = %d, want 1", st.Accepted)
		}
		if st.BytesIn == 0 || st.BytesOut == 0 {
			t.Errorf("Stats() bytes in/out = %d/%d, want both > 0", st.BytesIn, st.BytesOut)
		}
	})
}

func TestShardPipelining(t *testing.T) {
	forModes(t, func(t *testing.T, mode string) {
		b := newMemBackend()
		srv := startServer(t, testConfig(mode), b)
		c := dial(t, srv)
		c.expect(220)
		c.cmd("EHLO client.test", 250)

		const n = 20
		var batch strings.Builder
		for i := range n {
			fmt.Fprintf(&batch, "MAIL FROM:<s%d@example.com>\r\nRCPT TO:<r@example.com>\r\nDATA\r\nmessage %d\r\n.\r\n", i, i)
		}
		batch.WriteString("QUIT\r\n")
		c.send(batch.String())
		for i := range n {
			c.expect(250)
			c.expect(250)
			c.expect(354)
			id := queueID(t, c.expect(250))
			checkBody(t, b, id, fmt.Sprintf("message %d\r\n", i))
		}
		c.expect(221)
	})
}

func TestShardManyConnections(t *testing.T) {
	forModes(t, func(t *testing.T, mode string) {
		b := newMemBackend()
		srv := startServer(t, testConfig(mode), b)
		const conns, msgs = 200, 3
		var wg sync.WaitGroup
		errs := make(chan error, conns)
		for i := range conns {
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs <- sendMessages(srv.Addrs()[0].String(), b, i, msgs)
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatal(err)
			}
		}
		if got := b.count(); got != conns*msgs {
			t.Errorf("stored messages = %d, want %d", got, conns*msgs)
		}
	})
}

// sendMessages sends msgs messages on one connection and checks that each
// stored body matches exactly. It is safe to call from any goroutine.
func sendMessages(addr string, b *memBackend, conn, msgs int) error {
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		return err
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(30 * time.Second))
	c := &client{conn: nc, r: bufio.NewReader(nc)}
	step := func(line string, want int) (string, error) {
		if line != "" {
			if _, err := io.WriteString(nc, line); err != nil {
				return "", err
			}
		}
		code, text, err := c.reply()
		if err == nil && code != want {
			err = fmt.Errorf("conn %d: after %q: reply %q, want %d", conn, line, text, want)
		}
		return text, err
	}
	if _, err := step("", 220); err != nil {
		return err
	}
	if _, err := step("EHLO c\r\n", 250); err != nil {
		return err
	}
	for m := range msgs {
		body := fmt.Sprintf("From: c%d\r\n\r\n%s\r\n", conn, strings.Repeat(fmt.Sprintf("%d-%d ", conn, m), 100+m))
		for _, s := range []struct {
			line string
			want int
		}{{"MAIL FROM:<x@example.com>\r\n", 250}, {"RCPT TO:<y@example.com>\r\n", 250}, {"DATA\r\n", 354}} {
			if _, err := step(s.line, s.want); err != nil {
				return err
			}
		}
		text, err := step(body+".\r\n", 250)
		if err != nil {
			return err
		}
		id := text[strings.LastIndex(strings.TrimSpace(text), " ")+1:]
		id = strings.TrimSpace(id)
		got, ok := b.body(id)
		if !ok || string(got) != body {
			return fmt.Errorf("conn %d message %d: stored %q, want %q", conn, m, got, body)
		}
	}
	_, err = step("QUIT\r\n", 221)
	return err
}

func TestShardByteByByte(t *testing.T) {
	forModes(t, func(t *testing.T, mode string) {
		b := newMemBackend()
		srv := startServer(t, testConfig(mode), b)
		c := dial(t, srv)
		c.expect(220)
		body := "Subject: slow\r\n\r\n..x\r\nend\r\n"
		script := "EHLO slow.test\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\nDATA\r\n" + body + ".\r\nQUIT\r\n"
		go func() {
			for i := range len(script) {
				if _, err := c.conn.Write([]byte{script[i]}); err != nil {
					return
				}
				time.Sleep(100 * time.Microsecond)
			}
		}()
		c.expect(250)
		c.expect(250)
		c.expect(250)
		c.expect(354)
		id := queueID(t, c.expect(250))
		checkBody(t, b, id, body)
		c.expect(221)
	})
}

// TestShardInputThenHalfClose sends a whole session and its half-close
// before reading anything, so the shard may see the input and the end of
// input in one event. It must reply to every command and close at once, not
// wait for the command timeout: after a hangup no further event comes, so
// the shard has to read on until EOF.
func TestShardInputThenHalfClose(t *testing.T) {
	forModes(t, func(t *testing.T, mode string) {
		cfg := testConfig(mode)
		cfg.Timeouts = Timeouts{Command: time.Minute, Data: time.Minute}
		srv := startServer(t, cfg, newMemBackend())
		for round := range 20 {
			c := dial(t, srv)
			c.send("EHLO client.test\r\nNOOP\r\nNOOP\r\n")
			if err := c.conn.(*net.TCPConn).CloseWrite(); err != nil {
				t.Fatal(err)
			}
			c.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
			out, err := io.ReadAll(c.r)
			if err != nil {
				t.Fatalf("round %d: reading until the server closes: %v (got %q)", round, err, out)
			}
			if n := strings.Count(string(out), "250 2.0.0"); n != 2 {
				t.Fatalf("round %d: %d NOOP replies in %q, want 2", round, n, out)
			}
			c.conn.Close()
		}
	})
}

func TestShardTimeout(t *testing.T) {
	forModes(t, func(t *testing.T, mode string) {
		cfg := testConfig(mode)
		cfg.Timeouts = Timeouts{Command: 150 * time.Millisecond, Data: 150 * time.Millisecond}
		srv := startServer(t, cfg, newMemBackend())

		c := dial(t, srv)
		c.expect(220)
		c.cmd("EHLO idle.test", 250)
		got := c.expect(421)
		if !strings.Contains(got, "4.4.2") {
			t.Errorf("timeout reply = %q, want enhanced code 4.4.2", got)
		}
		if _, err := c.r.ReadByte(); err != io.EOF {
			t.Errorf("read after timeout: err = %v, want EOF", err)
		}

		// A client stalled inside DATA gets the same treatment.
		d := dial(t, srv)
		d.expect(220)
		d.cmd("EHLO slow.test", 250)
		d.cmd("MAIL FROM:<a@example.com>", 250)
		d.cmd("RCPT TO:<b@example.com>", 250)
		d.cmd("DATA", 354)
		d.send("partial line")
		d.expect(421)
		if st := srv.Stats(); st.Timeouts != 2 {
			t.Errorf("Stats().Timeouts = %d, want 2", st.Timeouts)
		}
	})
}

func TestShardConnectionLimits(t *testing.T) {
	tests := []struct {
		name         string
		total, perIP int
		allowed      int
	}{
		{"total", 3, 0, 3},
		{"per-ip", 0, 2, 2},
	}
	forModes(t, func(t *testing.T, mode string) {
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				cfg := testConfig(mode)
				cfg.MaxConnections, cfg.MaxConnectionsPerIP = tt.total, tt.perIP
				srv := startServer(t, cfg, newMemBackend())
				var open []*client
				for range tt.allowed {
					c := dial(t, srv)
					c.expect(220)
					open = append(open, c)
				}
				extra := dial(t, srv)
				got := extra.expect(421)
				if !strings.HasPrefix(got, "421 4.7.0 mx.test too many connections") {
					t.Errorf("over-limit reply = %q, want 421 4.7.0 too many connections", got)
				}
				if _, err := extra.r.ReadByte(); err != io.EOF {
					t.Errorf("read after 421: err = %v, want EOF", err)
				}

				// Closing one admitted session frees its place.
				open[0].cmd("QUIT", 221)
				open[0].r.ReadByte()
				var again *client
				for range 100 {
					again = dial(t, srv)
					if code, _, _ := again.reply(); code == 220 {
						break
					}
					time.Sleep(10 * time.Millisecond)
				}
				again.cmd("NOOP", 250)
				if st := srv.Stats(); st.Rejected == 0 {
					t.Errorf("Stats().Rejected = 0, want > 0")
				}
			})
		}
	})
}

func TestShardStartTLS(t *testing.T) {
	forModes(t, func(t *testing.T, mode string) {
		serverTLS, clientTLS := smtptest.SelfSignedTLS(t)
		cfg := testConfig(mode)
		cfg.TLS = serverTLS
		b := newMemBackend()
		srv := startServer(t, cfg, b)

		c := dial(t, srv)
		c.expect(220)
		if ehlo := c.cmd("EHLO tls.test", 250); !strings.Contains(ehlo, "STARTTLS") {
			t.Fatalf("EHLO reply %q does not offer STARTTLS", ehlo)
		}
		// The NOOP pipelined after STARTTLS is plaintext that must be
		// discarded, not answered inside TLS.
		c.send("STARTTLS\r\nNOOP\r\n")
		c.expect(220)
		tc := tls.Client(c.conn, clientTLS)
		if err := tc.Handshake(); err != nil {
			t.Fatalf("TLS handshake: %v", err)
		}
		c.conn, c.r = tc, bufio.NewReader(tc)
		if ehlo := c.cmd("EHLO tls.test", 250); strings.Contains(ehlo, "STARTTLS") {
			t.Errorf("EHLO after TLS %q still offers STARTTLS", ehlo)
		}
		body := "Subject: secret\r\n\r\nover TLS\r\n"
		id := c.transaction("a@example.com", body)
		checkBody(t, b, id, body)
		c.cmd("QUIT", 221)

		if st := srv.Stats(); st.TLSHandoffs != 1 {
			t.Errorf("Stats().TLSHandoffs = %d, want 1", st.TLSHandoffs)
		}
	})
}

func TestShardImplicitTLS(t *testing.T) {
	serverTLS, clientTLS := smtptest.SelfSignedTLS(t)
	cfg := testConfig("epoll")
	cfg.TLS = serverTLS
	cfg.Listeners = []Listener{{Addr: "127.0.0.1:0", TLS: true}}
	b := newMemBackend()
	srv := startServer(t, cfg, b)

	conn, err := tls.Dial("tcp", srv.Addrs()[0].String(), clientTLS)
	if err != nil {
		t.Fatalf("tls dial: %v", err)
	}
	defer conn.Close()
	c := &client{t: t, conn: conn, r: bufio.NewReader(conn)}
	c.expect(220)
	c.cmd("EHLO tls.test", 250)
	id := c.transaction("a@example.com", "x\r\n")
	checkBody(t, b, id, "x\r\n")
	c.cmd("QUIT", 221)
}

func TestShardShutdown(t *testing.T) {
	forModes(t, func(t *testing.T, mode string) {
		b := newMemBackend()
		srv, err := New(testConfig(mode), b)
		if err != nil {
			t.Fatal(err)
		}
		if err := srv.Start(); err != nil {
			t.Fatal(err)
		}

		idle := dial(t, srv)
		idle.expect(220)
		idle.cmd("EHLO idle.test", 250)

		busy := dial(t, srv)
		busy.expect(220)
		busy.cmd("EHLO busy.test", 250)
		busy.cmd("MAIL FROM:<a@example.com>", 250)
		busy.cmd("RCPT TO:<b@example.com>", 250)
		busy.cmd("DATA", 354)
		busy.send("first half\r\n")

		done := make(chan error, 1)
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			done <- srv.Shutdown(ctx)
		}()

		// The idle session is told to go away at once.
		if got := idle.expect(421); !strings.Contains(got, "4.3.2") {
			t.Errorf("idle session reply = %q, want 421 4.3.2", got)
		}
		// The session inside DATA may finish its message, then gets 421.
		busy.send("second half\r\n.\r\n")
		id := queueID(t, busy.expect(250))
		checkBody(t, b, id, "first half\r\nsecond half\r\n")
		busy.expect(421)

		if err := <-done; err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		if _, err := net.Dial("tcp", srv.Addrs()[0].String()); err == nil {
			t.Errorf("dial after Shutdown succeeded, want connection refused")
		}
	})
}

func TestShardShutdownDeadline(t *testing.T) {
	srv, err := New(testConfig("epoll"), newMemBackend())
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	c := dial(t, srv)
	c.expect(220)
	c.cmd("EHLO stuck.test", 250)
	c.cmd("MAIL FROM:<a@example.com>", 250)

	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		t.Errorf("Shutdown: %v", err)
	}
	c.expect(421)
}

func TestUringFallback(t *testing.T) {
	t.Setenv("SMTA_IOURING_DISABLE", "1")
	var logged bytes.Buffer
	cfg := testConfig("io_uring")
	cfg.Logger = slog.New(slog.NewTextHandler(&logged, nil))
	b := newMemBackend()
	srv, err := New(cfg, b)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if got := srv.Mode(); got != "epoll" {
		t.Errorf("Mode() = %q, want %q", got, "epoll")
	}
	if !strings.Contains(logged.String(), "io_uring unavailable") {
		t.Errorf("log = %q, want an io_uring unavailable warning", logged.String())
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown(context.Background())
	c := dial(t, srv)
	c.expect(220)
	c.cmd("EHLO fallback.test", 250)
	id := c.transaction("a@example.com", "fallback\r\n")
	checkBody(t, b, id, "fallback\r\n")
}

func TestParseListenAddr(t *testing.T) {
	tests := []struct {
		in      string
		want    netip.AddrPort
		wantErr bool
	}{
		{"127.0.0.1:25", netip.MustParseAddrPort("127.0.0.1:25"), false},
		{":2525", netip.MustParseAddrPort("[::]:2525"), false},
		{"[::1]:25", netip.MustParseAddrPort("[::1]:25"), false},
		{"localhost:25", netip.AddrPort{}, true},
		{"127.0.0.1", netip.AddrPort{}, true},
	}
	for _, tt := range tests {
		got, err := parseListenAddr(tt.in)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("parseListenAddr(%q) = %v, %v; want %v, error %v", tt.in, got, err, tt.want, tt.wantErr)
		}
	}
}

// TestShardIdleMemory checks the server's Go heap per idle session against
// the 2 KiB budget that lets one shard hold many thousands of idle clients.
func TestShardIdleMemory(t *testing.T) {
	const budget = 2048
	forModes(t, func(t *testing.T, mode string) {
		perConn := measureIdle(t, mode, 1000)
		t.Logf("%.0f bytes per idle session", perConn)
		if perConn > budget {
			t.Errorf("heap per idle session = %.0f bytes, want <= %d", perConn, budget)
		}
	})
}

// syncBuffer is a bytes.Buffer safe for the concurrent writes of a logger.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestUringShutdownDrainsRequests checks that a stopping io_uring shard
// collects the final completion of every request before it unmaps the
// provided buffers.
func TestUringShutdownDrainsRequests(t *testing.T) {
	var logged syncBuffer
	cfg := testConfig("io_uring")
	cfg.Logger = slog.New(slog.NewTextHandler(&logged, nil))
	b := newMemBackend()
	srv, err := New(cfg, b)
	if err != nil {
		t.Fatal(err)
	}
	if srv.Mode() != "io_uring" {
		t.Fatalf("Mode() = %q, want io_uring", srv.Mode())
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	idle := dial(t, srv)
	idle.expect(220)
	c := dial(t, srv)
	c.expect(220)
	c.cmd("EHLO drain.test", 250)
	c.transaction("a@example.com", "x\r\n")

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if strings.Contains(logged.String(), "still in flight") {
		t.Errorf("log = %q, want every request completed at shard exit", logged.String())
	}
}

// TestShardBackpressure pipelines far more commands than the socket buffers
// hold without reading the replies, then reads them all: the shard must
// pause and resume the connection without losing or reordering replies.
func TestShardBackpressure(t *testing.T) {
	forModes(t, func(t *testing.T, mode string) {
		srv := startServer(t, testConfig(mode), newMemBackend())
		c := dial(t, srv)
		c.expect(220)
		c.cmd("EHLO flood.test", 250)

		const commands = 100000
		batch := strings.Repeat("NOOP\r\n", 1000)
		go func() {
			for range commands / 1000 {
				if _, err := io.WriteString(c.conn, batch); err != nil {
					return
				}
			}
			io.WriteString(c.conn, "QUIT\r\n")
		}()
		for i := range commands {
			code, text, err := c.reply()
			if err != nil || code != 250 {
				t.Fatalf("reply %d = %q, %v; want 250", i, text, err)
			}
		}
		c.expect(221)
	})
}

// TestShardSwaks sends one message with swaks, a real SMTP client in its own
// process, and checks the stored body. (This swaks build has no TLS.)
func TestShardSwaks(t *testing.T) {
	tool, err := exec.LookPath("swaks")
	if err != nil {
		t.Fatalf("swaks is required: %v", err)
	}
	forModes(t, func(t *testing.T, mode string) {
		b := newMemBackend()
		srv := startServer(t, testConfig(mode), b)
		addr := srv.Addrs()[0].(*net.TCPAddr)
		out, err := exec.Command(tool, "--server", addr.IP.String(), "--port", strconv.Itoa(addr.Port),
			"--from", "swaks@example.com", "--to", "rcpt@example.com", "--pipeline",
			"--header", "Subject: interop", "--body", "hello from swaks").CombinedOutput()
		if err != nil {
			t.Fatalf("swaks: %v\n%s", err, out)
		}
		if !strings.Contains(string(out), "queued as") {
			t.Fatalf("swaks transcript lacks the queued reply:\n%s", out)
		}
		if got := b.count(); got != 1 {
			t.Fatalf("stored messages = %d, want 1", got)
		}
		b.mu.Lock()
		defer b.mu.Unlock()
		for _, body := range b.bodies {
			if !bytes.Contains(body, []byte("Subject: interop\r\n")) {
				t.Errorf("stored body = %q, want the Subject header", body)
			}
			if !bytes.Contains(body, []byte("\r\n\r\nhello from swaks\r\n")) {
				t.Errorf("stored body = %q, want the text after the header", body)
			}
		}
	})
}

// FuzzParseListenAddr checks that parseListenAddr never panics and that an
// accepted address prints back to itself.
func FuzzParseListenAddr(f *testing.F) {
	f.Add("127.0.0.1:25")      // IPv4 literal
	f.Add(":2525")             // wildcard
	f.Add("[::1]:465")         // IPv6 literal
	f.Add("localhost:25")      // host name, rejected
	f.Add("[fe80::1%eth0]:25") // zone
	f.Add("1.2.3.4:99999")     // port out of range
	f.Fuzz(func(t *testing.T, s string) {
		ap, err := parseListenAddr(s)
		if err != nil {
			return
		}
		again, err := parseListenAddr(ap.String())
		if err != nil || again != ap {
			t.Errorf("parseListenAddr(%q) = %v, but parseListenAddr(%q) = %v, %v", s, ap, ap.String(), again, err)
		}
	})
}

// TestSessionReportsForAccessLog checks, in every mode, that failure
// replies and the end of a session reach the Backend exactly once.
func TestSessionReportsForAccessLog(t *testing.T) {
	forAllModes(t, []string{"goroutine", "epoll", "io_uring"}, func(t *testing.T, mode string) {
		b := newMemBackend()
		srv := startServer(t, testConfig(mode), b)
		c := dial(t, srv)
		c.expect(220)
		c.cmd("EHLO client.test", 250)
		c.cmd("BOGUS", 500)
		c.cmd("RCPT TO:<a@example.com>", 503)
		c.transaction("a@example.com", "Subject: hi\r\n\r\nbody\r\n")
		c.cmd("QUIT", 221)

		var failures []string
		var ends []int
		deadline := time.Now().Add(10 * time.Second)
		for time.Now().Before(deadline) {
			if failures, ends = b.sessionLog(); len(ends) > 0 {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		if want := []string{"UNKNOWN 500", "RCPT 503"}; fmt.Sprint(failures) != fmt.Sprint(want) {
			t.Errorf("reported failures = %q, want %q", failures, want)
		}
		if len(ends) != 1 || ends[0] != 1 {
			t.Errorf("reported session ends = %v, want one with 1 message", ends)
		}
	})
}

// TestShardCPUAffinity checks that with CPUAffinity each shard thread is
// restricted to one CPU, and that the shards still serve mail.
func TestShardCPUAffinity(t *testing.T) {
	forModes(t, func(t *testing.T, mode string) {
		cfg := testConfig(mode)
		cfg.CPUAffinity = true
		b := newMemBackend()
		srv := startServer(t, cfg, b)
		c := dial(t, srv)
		c.expect(220)
		c.cmd("EHLO client.test", 250)
		c.transaction("a@example.com", "Subject: pinned\r\n\r\nbody\r\n")
		c.cmd("QUIT", 221)

		want := map[string]bool{}
		for i := range cfg.Workers {
			want[strconv.Itoa(i%runtime.NumCPU())] = true
		}
		pinned := pinnedThreadCPUs(t)
		for cpu := range want {
			if !pinned[cpu] {
				t.Errorf("no thread pinned to CPU %s; pinned CPU lists: %v", cpu, pinned)
			}
		}
	})
}

// pinnedThreadCPUs returns the Cpus_allowed_list of every thread of this
// process that may run on exactly one CPU.
func pinnedThreadCPUs(t *testing.T) map[string]bool {
	t.Helper()
	if runtime.NumCPU() == 1 {
		t.Fatal("CPU affinity cannot be told apart on a single-CPU machine")
	}
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	for _, task := range tasks {
		data, err := os.ReadFile("/proc/self/task/" + task.Name() + "/status")
		if err != nil {
			continue // the thread ended
		}
		for _, line := range strings.Split(string(data), "\n") {
			if v, ok := strings.CutPrefix(line, "Cpus_allowed_list:"); ok {
				v = strings.TrimSpace(v)
				if !strings.ContainsAny(v, ",-") {
					out[v] = true
				}
			}
		}
	}
	return out
}
