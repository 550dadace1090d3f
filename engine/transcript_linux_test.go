//go:build linux

package engine

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"smta/internal/smtptest"
	"smta/smtp"
)

// The transcript tests replay the dialogues of smtp/testdata over a real
// loopback socket through every inbound mode, so that each driver is shown
// to produce the dialogue the sans-I/O session produces. A scripted
// Backend applies the transcript's decisions to the calls that correspond
// to its events.

// transcriptModes are the inbound modes every transcript runs in.
var transcriptModes = []string{"goroutine", "epoll", "io_uring"}

// transcriptTimeout is the command and data timeout of servers that run a
// transcript with a timeout boundary. The test waits for the 421 reply
// instead of measuring the time, so the value only bounds the test's
// duration.
const transcriptTimeout = 300 * time.Millisecond

// defaultRejects are the replies smtp.Session sends for Reject with a zero
// Reply. A Backend returns the zero Reply to accept, so it spells out the
// reply that a bare "reject" decision stands for.
var defaultRejects = map[string]smtp.Reply{
	"helo":     {Code: 550, Enhanced: "5.7.1", Text: "Hostname rejected"},
	"mail":     {Code: 550, Enhanced: "5.7.1", Text: "Sender address rejected"},
	"rcpt":     {Code: 550, Enhanced: "5.7.1", Text: "Recipient address rejected"},
	"data":     {Code: 554, Enhanced: "5.5.1", Text: "No valid recipients"},
	"data-end": {Code: 554, Enhanced: "5.0.0", Text: "Transaction failed"},
}

// scriptBackend applies a transcript's decisions. Each Backend call is
// matched with the next expected event of the same kind, so events that
// never reach a Backend (quit, reset) are skipped over.
type scriptBackend struct {
	tr *smtptest.Transcript

	mu       sync.Mutex
	next     int            // index into tr.Events of the next event to match
	calls    []string       // Backend calls in order, formatted as events
	bodies   map[int][]byte // received body by data-end ordinal (1-based)
	dataEnds int            // Commit calls so far
	problems []string       // calls that matched no expected event
	inflight int            // Commit callbacks not yet returned
	idle     sync.Cond      // signaled when inflight drops to zero
}

func newScriptBackend(tr *smtptest.Transcript) *scriptBackend {
	b := &scriptBackend{tr: tr, bodies: map[int][]byte{}}
	b.idle.L = &b.mu
	return b
}

// decide records call, matches it with the next expected event of kind
// and returns the decision's reply, with the queue id of "queued ID".
func (b *scriptBackend) decide(kind, call string) (reply smtp.Reply, id string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.calls = append(b.calls, call)
	i := b.next
	for i < len(b.tr.Events) && eventKind(b.tr.Events[i]) != kind {
		i++
	}
	if i == len(b.tr.Events) {
		b.problems = append(b.problems, fmt.Sprintf("Backend call %q matches no remaining expected event", call))
		return smtp.Reply{Code: 451, Enhanced: "4.3.0", Text: "unexpected call"}, ""
	}
	b.next = i + 1
	if want := b.tr.Events[i]; !strings.HasPrefix(want+" ", call+" ") {
		b.problems = append(b.problems, fmt.Sprintf("Backend call %q, want event %q", call, want))
	}

	d, err := smtptest.ParseDecision(b.tr.DefaultDecision(i))
	if err != nil {
		b.problems = append(b.problems, err.Error())
		return smtp.Reply{Code: 451, Enhanced: "4.3.0", Text: "invalid decision"}, ""
	}
	switch d.Verb {
	case "reject":
		if d.Code == 0 {
			return defaultRejects[kind], ""
		}
		return smtp.Reply{Code: d.Code, Enhanced: d.Enhanced, Text: d.Text}, ""
	case "queued":
		return smtp.Reply{}, d.ID
	}
	return smtp.Reply{}, ""
}

func eventKind(event string) string {
	kind, _, _ := strings.Cut(event, " ")
	return kind
}

func (b *scriptBackend) Connect(*ConnInfo) smtp.Reply { return smtp.Reply{} }

func (b *scriptBackend) Helo(_ *ConnInfo, name string) smtp.Reply {
	r, _ := b.decide("helo", "helo "+name)
	return r
}

func (b *scriptBackend) Mail(_ *ConnInfo, tx *smtp.Transaction) smtp.Reply {
	r, _ := b.decide("mail", fmt.Sprintf("mail <%s>", tx.From))
	return r
}

func (b *scriptBackend) Rcpt(_ *ConnInfo, _ *smtp.Transaction, rcpt smtp.Recipient) smtp.Reply {
	r, _ := b.decide("rcpt", fmt.Sprintf("rcpt <%s>", rcpt.Addr))
	return r
}

func (b *scriptBackend) Data(*ConnInfo, *smtp.Transaction) (MessageWriter, smtp.Reply) {
	if r, _ := b.decide("data", "data"); !r.IsZero() {
		return nil, r
	}
	return &scriptWriter{b: b}, smtp.Reply{}
}

func (b *scriptBackend) Failure(*ConnInfo, []smtp.Failure, int) {}
func (b *scriptBackend) Disconnect(*ConnInfo, int)              {}

// report returns the Backend calls, the received bodies and the problems
// found, once every Commit callback has run.
func (b *scriptBackend) report() ([]string, map[int][]byte, []string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for b.inflight > 0 {
		b.idle.Wait()
	}
	return b.calls, b.bodies, b.problems
}

type scriptWriter struct {
	b   *scriptBackend
	buf bytes.Buffer
}

func (w *scriptWriter) Write(p []byte) error { w.buf.Write(p); return nil }
func (w *scriptWriter) Abort()               {}

// Commit completes on another goroutine, as the spool's committer does.
func (w *scriptWriter) Commit(done func(id string, failure smtp.Reply)) {
	b := w.b
	b.mu.Lock()
	b.dataEnds++
	b.bodies[b.dataEnds] = bytes.Clone(w.buf.Bytes())
	b.inflight++
	b.mu.Unlock()
	failure, id := b.decide("data-end", "data-end")
	go func() {
		done(id, failure)
		b.mu.Lock()
		defer b.mu.Unlock()
		if b.inflight--; b.inflight == 0 {
			b.idle.Broadcast()
		}
	}()
}

// socketRun is the outcome of one transcript run over a socket.
type socketRun struct {
	output []byte // every byte the server sent, TLS decrypted
}

// runOverSocket replays tr through a server in mode. With chunked set,
// each segment is written in random short pieces instead of whole, except
// a segment that ends with STARTTLS: its pipelined plaintext must arrive
// in the read that contains STARTTLS, or the handshake would read it.
func runOverSocket(t *testing.T, mode string, tr *smtptest.Transcript, chunked bool) (socketRun, *scriptBackend) {
	t.Helper()
	cfg := testConfig(mode)
	cfg.Session.MaxMessageSize = tr.Config.MaxMessageSize
	cfg.Session.MaxRecipients = tr.Config.MaxRecipients
	cfg.Session.MaxErrors = tr.Config.MaxErrors
	var clientTLS *tls.Config
	if tr.Config.StartTLS {
		// Drivers offer STARTTLS exactly when a certificate is configured.
		cfg.TLS, clientTLS = smtptest.SelfSignedTLS(t)
	}
	for _, seg := range tr.Segments {
		if seg.Action == smtptest.ActionTimeout {
			cfg.Timeouts = Timeouts{Command: transcriptTimeout, Data: transcriptTimeout}
		}
	}

	b := newScriptBackend(tr)
	srv, shutdown := startTranscriptServer(t, cfg, b)
	conn, err := net.Dial("tcp", srv.Addrs()[0].String())
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))

	var stream net.Conn = conn
	r := bufio.NewReader(stream)
	var run socketRun
	rng := rand.New(rand.NewPCG(1, 2))
	for _, seg := range tr.Segments {
		pieces := [][]byte{seg.Input}
		if chunked && seg.Action != smtptest.ActionTLS {
			pieces = randomPieces(rng, seg.Input)
		}

		// Write on another goroutine: a server that stops reading while
		// its replies go unread would otherwise deadlock with this one.
		// Write errors are expected once the server has closed the
		// connection (QUIT, too many errors) and are not checked.
		written := make(chan struct{})
		go func(w net.Conn) {
			defer close(written)
			for _, p := range pieces {
				if _, err := w.Write(p); err != nil {
					return
				}
			}
		}(stream)

		want := smtptest.CountReplies(tr.Replies, seg.Replies)
		eof, err := readReplies(r, &run.output, want)
		<-written
		if err != nil {
			t.Fatalf("reading replies: %v\noutput so far:\n%s", err, run.output)
		}
		if eof {
			return run, b
		}

		switch seg.Action {
		case smtptest.ActionTLS:
			if r.Buffered() > 0 {
				t.Fatalf("%d bytes after the STARTTLS reply were sent in plaintext", r.Buffered())
			}
			tc := tls.Client(conn, clientTLS)
			if err := tc.Handshake(); err != nil {
				t.Fatalf("TLS handshake: %v", err)
			}
			stream = tc
			r = bufio.NewReader(stream)
		case smtptest.ActionTimeout:
			// The server times the session out and closes it: later
			// segments are never read, as in the session test.
			return finishRun(t, r, run), b
		case smtptest.ActionShutdown:
			go shutdown()
			return finishRun(t, r, run), b
		}
	}

	// The last segment's replies are in. After the half-close, a server
	// that would send more (it should not) does so before it reads the end
	// of input and closes, so extra replies fail the comparison.
	if tc, ok := stream.(*tls.Conn); ok {
		tc.CloseWrite()
	} else {
		conn.(*net.TCPConn).CloseWrite()
	}
	return finishRun(t, r, run), b
}

// finishRun reads until the server closes the connection. A server that
// closes with client bytes still unread in its socket (input pipelined
// after QUIT, a TLS close_notify) makes the kernel send RST instead of
// FIN, so ECONNRESET also ends the stream. Linux returns the bytes
// received before the RST first.
func finishRun(t *testing.T, r *bufio.Reader, run socketRun) socketRun {
	t.Helper()
	rest, err := io.ReadAll(r)
	run.output = append(run.output, rest...)
	if err != nil && !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("reading until the server closes: %v\noutput:\n%s", err, run.output)
	}
	return run
}

// readReplies appends whole reply lines from r to out until out holds want
// replies in all or the server closed the connection (eof).
func readReplies(r *bufio.Reader, out *[]byte, want int) (eof bool, err error) {
	for countWireReplies(*out) < want {
		line, err := r.ReadBytes('\n')
		*out = append(*out, line...)
		if errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) {
			return true, nil
		}
		if err != nil {
			return false, err
		}
	}
	return false, nil
}

// countWireReplies counts the last lines of replies in output: lines whose
// fourth byte is not '-'.
func countWireReplies(output []byte) int {
	n := 0
	for line := range bytes.Lines(output) {
		if len(line) < 4 || line[3] != '-' {
			n++
		}
	}
	return n
}

func randomPieces(rng *rand.Rand, in []byte) [][]byte {
	var out [][]byte
	for len(in) > 0 {
		n := 1 + rng.IntN(min(len(in), 64))
		out = append(out, in[:n])
		in = in[n:]
	}
	return out
}

// startTranscriptServer starts a server and returns a function that shuts
// it down; the test's cleanup shuts it down unless that function ran.
func startTranscriptServer(t *testing.T, cfg Config, b Backend) (*Server, func()) {
	t.Helper()
	srv, err := New(cfg, b)
	if err != nil {
		t.Fatalf("New(mode %q): %v", cfg.Mode, err)
	}
	if err := srv.Start(); err != nil {
		t.Fatalf("Start: %v", err)
	}
	var once sync.Once
	var shutdownErr error
	shutdown := func() {
		once.Do(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			shutdownErr = srv.Shutdown(ctx)
		})
	}
	t.Cleanup(func() {
		shutdown()
		if shutdownErr != nil {
			t.Errorf("Shutdown: %v", shutdownErr)
		}
	})
	return srv, shutdown
}

// backendEvents returns the expected events that reach a Backend call.
func backendEvents(events []string) []string {
	var out []string
	for _, ev := range events {
		switch eventKind(ev) {
		case "helo", "mail", "rcpt", "data", "data-end":
			out = append(out, ev)
		}
	}
	return out
}

func TestTranscriptsOverSockets(t *testing.T) {
	files, err := smtptest.Glob("../smtp/testdata")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no transcripts found in ../smtp/testdata")
	}
	for _, file := range files {
		tr, err := smtptest.Load(file)
		if err != nil {
			t.Fatal(err)
		}

		t.Run(strings.TrimSuffix(tr.Name, ".txt"), func(t *testing.T) {
			forAllModes(t, transcriptModes, func(t *testing.T, mode string) {
				for _, chunked := range []bool{false, true} {
					writing := "whole"
					if chunked {
						writing = "chunked"
					}
					run, b := runOverSocket(t, mode, tr, chunked)
					if err := smtptest.MatchReplies(run.output, tr.Replies); err != nil {
						t.Errorf("written %s: %v", writing, err)
					}

					calls, bodies, problems := b.report()
					for _, p := range problems {
						t.Errorf("written %s: %s", writing, p)
					}
					want := backendEvents(tr.Events)
					if len(calls) != len(want) {
						t.Errorf("written %s: Backend calls:\n%s\nwant calls for events:\n%s", writing, strings.Join(calls, "\n"), strings.Join(want, "\n"))
					}
					for k, wantBody := range tr.Bodies {
						if got := bodies[k]; !bytes.Equal(got, wantBody) {
							t.Errorf("written %s: body of message %d = %q, want %q", writing, k, got, wantBody)
						}
					}
				}
			})
		})
	}
}
