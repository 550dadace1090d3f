package engine

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"smta/smtp"
)

// The goroutine mode serves each connection with one goroutine doing
// blocking reads through Go's netpoller. It is the portable fallback and the
// baseline the sharded modes are measured against; it drives the same
// smtp.Session as they do.

func init() { modes["goroutine"] = newGoroutineServer }

const (
	// goroutineBufSize is the read buffer per connection. It must hold a
	// whole command line (smtp.MaxCommandLine) plus the short unconsumed
	// tail Feed may leave in DATA.
	goroutineBufSize = 16 << 10

	// shutdownPoll is how often a session that is finishing its transaction
	// during shutdown re-checks the shutdown deadline.
	shutdownPoll = 100 * time.Millisecond
)

// reusePortListen sets SO_REUSEPORT like the sharded modes do, so that
// "0.0.0.0:25" and the dual-stack "[::]:25" can be configured together in
// every mode.
var reusePortListen = net.ListenConfig{
	Control: func(network, address string, c syscall.RawConn) error {
		var sockErr error
		err := c.Control(func(fd uintptr) {
			sockErr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, soReusePort, 1)
		})
		if err != nil {
			return err
		}
		return os.NewSyscallError("setsockopt SO_REUSEPORT", sockErr)
	},
}

// soReusePort is SO_REUSEPORT on Linux (socket(7)); the syscall package
// does not name it.
const soReusePort = 0xf

type goroutineServer struct {
	// Immutable after newGoroutineServer.
	cfg    Config
	b      Backend
	logger *slog.Logger

	// Set once by start.
	lns []net.Listener

	stopping    atomic.Bool
	forceClose  atomic.Bool // set when the shutdown deadline passes
	open        atomic.Int64
	nextSession atomic.Uint64
	wg          sync.WaitGroup

	// mu guards the following.
	mu    sync.Mutex
	conns map[*goroutineConn]struct{}
	perIP map[netip.Addr]int
}

func newGoroutineServer(cfg Config, b Backend) (inbound, error) {
	return &goroutineServer{
		cfg:    cfg,
		b:      b,
		logger: cfg.Logger,
		conns:  make(map[*goroutineConn]struct{}),
		perIP:  make(map[netip.Addr]int),
	}, nil
}

func (s *goroutineServer) name() string { return "goroutine" }

func (s *goroutineServer) start() error {
	for _, l := range s.cfg.Listeners {
		ln, err := reusePortListen.Listen(context.Background(), "tcp", l.Addr)
		if err != nil {
			s.closeListeners()
			return fmt.Errorf("engine: listening on %s: %w", l.Addr, err)
		}
		if l.TLS {
			if s.cfg.TLS == nil {
				ln.Close()
				s.closeListeners()
				return fmt.Errorf("engine: listener %s wants TLS but no certificate is configured", l.Addr)
			}
			ln = tls.NewListener(ln, s.cfg.TLS)
		}
		s.lns = append(s.lns, ln)
	}
	for _, ln := range s.lns {
		s.wg.Add(1)
		go s.acceptLoop(ln)
	}
	s.logger.Info("inbound started", "mode", "goroutine", "listeners", len(s.lns))
	return nil
}

func (s *goroutineServer) closeListeners() {
	for _, ln := range s.lns {
		ln.Close()
	}
}

func (s *goroutineServer) addrs() []net.Addr {
	out := make([]net.Addr, len(s.lns))
	for i, ln := range s.lns {
		out[i] = ln.Addr()
	}
	return out
}

func (s *goroutineServer) acceptLoop(ln net.Listener) {
	defer s.wg.Done()
	var backoff time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			if s.stopping.Load() || errors.Is(err, net.ErrClosed) {
				return
			}
			// Temporary failures such as EMFILE: back off instead of spinning.
			if backoff == 0 {
				backoff = 5 * time.Millisecond
			} else if backoff < time.Second {
				backoff *= 2
			}
			s.logger.Warn("accept failed", "error", err, "retry_in", backoff)
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		s.wg.Add(1)
		go s.serve(c)
	}
}

// admit applies the connection limits. It returns false when the connection
// must be turned away.
func (s *goroutineServer) admit(gc *goroutineConn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	ip := gc.info.Remote.Addr()
	if s.cfg.MaxConnections > 0 && len(s.conns) >= s.cfg.MaxConnections {
		return false
	}
	if s.cfg.MaxConnectionsPerIP > 0 && s.perIP[ip] >= s.cfg.MaxConnectionsPerIP {
		return false
	}
	s.conns[gc] = struct{}{}
	s.perIP[ip]++
	s.open.Add(1)
	return true
}

func (s *goroutineServer) release(gc *goroutineConn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.conns[gc]; !ok {
		return
	}
	delete(s.conns, gc)
	ip := gc.info.Remote.Addr()
	if s.perIP[ip]--; s.perIP[ip] <= 0 {
		delete(s.perIP, ip)
	}
	s.open.Add(-1)
}

func (s *goroutineServer) shutdown(ctx context.Context) error {
	s.stopping.Store(true)
	s.closeListeners()
	s.wakeAll()

	done := make(chan struct{})
	go func() {
		s.wg.Wait()
		close(done)
	}()
	// Re-arm the wakeups until every session has ended: a read that set its
	// deadline just after a wakeup would otherwise sleep for a whole timeout.
	tick := time.NewTicker(shutdownPoll)
	defer tick.Stop()
wait:
	for {
		select {
		case <-done:
			return nil
		case <-ctx.Done():
			break wait
		case <-tick.C:
			s.wakeAll()
		}
	}

	// The deadline passed: every remaining session gets 421 and is closed.
	s.forceClose.Store(true)
	s.wakeAll()
	select {
	case <-done:
		return nil
	case <-time.After(5 * time.Second):
		return errors.New("engine: sessions still open after shutdown deadline")
	}
}

// wakeAll interrupts every blocked read so that sessions notice shutdown.
func (s *goroutineServer) wakeAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for gc := range s.conns {
		gc.conn.SetReadDeadline(time.Now())
	}
}

// goroutineConn is one session in goroutine mode. Owned by its goroutine,
// except conn's deadline, which shutdown may set.
type goroutineConn struct {
	conn   net.Conn
	sess   *smtp.Session
	info   ConnInfo
	writer MessageWriter // non-nil while DATA is being received
	inTx   bool          // MAIL accepted and the transaction not yet ended
	buf    []byte

	failures []smtp.Failure // scratch for reportFailures
}

func addrPort(a net.Addr) netip.AddrPort {
	if ta, ok := a.(*net.TCPAddr); ok {
		return ta.AddrPort()
	}
	ap, _ := netip.ParseAddrPort(a.String())
	return ap
}

func (s *goroutineServer) serve(c net.Conn) {
	defer s.wg.Done()
	gc := &goroutineConn{conn: c}
	gc.info.SessionID = newSessionID("g", s.nextSession.Add(1))
	gc.info.Remote = addrPort(c.RemoteAddr())
	gc.info.Local = addrPort(c.LocalAddr())
	gc.info.Start = time.Now()
	_, gc.info.TLS = c.(*tls.Conn)
	defer c.Close()

	if !s.admit(gc) {
		fmt.Fprintf(c, "421 4.7.0 %s too many connections, try again later\r\n", s.cfg.Session.Hostname)
		return
	}
	defer s.release(gc)

	if r := s.b.Connect(&gc.info); !r.IsZero() {
		writeReply(c, r)
		return
	}

	cfg := s.cfg.Session
	cfg.RemoteAddr = gc.info.Remote
	cfg.StartTLS = s.cfg.TLS != nil && !gc.info.TLS
	gc.sess = smtp.NewSession(&cfg)
	if gc.info.TLS {
		gc.sess.TLSStarted()
	}
	gc.sess.Start()
	gc.buf = make([]byte, 0, goroutineBufSize)

	err := s.run(gc)
	if gc.writer != nil {
		gc.writer.Abort()
		gc.writer = nil
	}
	if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
		s.logger.Debug("session ended", "session", gc.info.SessionID, "remote", gc.info.Remote, "error", err)
	}
}

// run drives the session until it closes. The loop feeds buffered input to
// the session, acts on each event, and reads more only when the session
// needs more input, so the replies to pipelined commands go out in one write.
func (s *goroutineServer) run(gc *goroutineConn) error {
	sess := gc.sess
	defer s.endSession(gc)
	start := 0
	for {
		n, ev := sess.Feed(gc.buf[start:])
		start += n
		reportFailures(s.b, &gc.info, sess, &gc.failures)
		switch ev.Kind {
		case smtp.EventNone:
			if n > 0 {
				// Feed consumed a command that needs no decision (an
				// error reply, NOOP, an empty line): feed the rest of
				// the buffer before reading, or pipelined commands would
				// wait for more input.
				continue
			}
			if err := gc.flush(); err != nil {
				return err
			}
			if sess.Closing() {
				return nil
			}

			// Keep the unconsumed tail at the front of the buffer, then read.
			rest := copy(gc.buf[:cap(gc.buf)], gc.buf[start:])
			gc.buf = gc.buf[:rest]
			start = 0
			if err := s.read(gc); err != nil {
				return err
			}

		case smtp.EventHelo:
			if r := s.b.Helo(&gc.info, ev.Helo); !r.IsZero() {
				sess.Reject(r)
				continue
			}
			gc.info.Helo = ev.Helo
			sess.Accept()

		case smtp.EventMail:
			if r := s.b.Mail(&gc.info, sess.Transaction()); !r.IsZero() {
				sess.Reject(r)
				continue
			}
			gc.inTx = true
			sess.Accept()

		case smtp.EventRcpt:
			decide(sess, s.b.Rcpt(&gc.info, sess.Transaction(), ev.Rcpt))

		case smtp.EventData:
			w, r := s.b.Data(&gc.info, sess.Transaction())
			if !r.IsZero() {
				sess.Reject(r)
				continue
			}
			gc.writer = w
			sess.Accept()

		case smtp.EventBody:
			if gc.writer != nil {
				gc.writer.Write(ev.Body) // errors surface at Commit
			}

		case smtp.EventDataEnd:
			gc.inTx = false
			w := gc.writer
			gc.writer = nil
			type result struct {
				id      string
				failure smtp.Reply
			}
			ch := make(chan result, 1)
			w.Commit(func(id string, failure smtp.Reply) { ch <- result{id, failure} })
			res := <-ch
			if res.failure.IsZero() {
				sess.AcceptQueued(res.id)
			} else {
				sess.Reject(res.failure)
			}

		case smtp.EventDataAborted:
			gc.inTx = false
			if gc.writer != nil {
				gc.writer.Abort()
				gc.writer = nil
			}

		case smtp.EventReset:
			gc.inTx = false
			if gc.writer != nil {
				gc.writer.Abort()
				gc.writer = nil
			}

		case smtp.EventStartTLS:
			if err := gc.flush(); err != nil {
				return err
			}
			// RFC 3207 section 4.2 and CVE-2011-0411: plaintext pipelined
			// after STARTTLS must not be executed inside the TLS session.
			gc.buf = gc.buf[:0]
			start = 0
			tc := tls.Server(gc.conn, s.cfg.TLS)
			tc.SetDeadline(time.Now().Add(s.commandTimeout()))
			if err := tc.Handshake(); err != nil {
				return fmt.Errorf("tls handshake: %w", err)
			}
			tc.SetDeadline(time.Time{})
			s.mu.Lock()
			gc.conn = tc
			s.mu.Unlock()
			gc.info.TLS = true
			sess.TLSStarted()

		case smtp.EventQuit, smtp.EventClose:
			return gc.flush()
		}
	}
}

// endSession reports the failures not yet reported and the end of the
// session to the Backend.
func (s *goroutineServer) endSession(gc *goroutineConn) {
	reportFailures(s.b, &gc.info, gc.sess, &gc.failures)
	s.b.Disconnect(&gc.info, gc.sess.Messages())
}

func decide(sess *smtp.Session, r smtp.Reply) {
	if r.IsZero() {
		sess.Accept()
	} else {
		sess.Reject(r)
	}
}

func (s *goroutineServer) commandTimeout() time.Duration {
	if s.cfg.Timeouts.Command > 0 {
		return s.cfg.Timeouts.Command
	}
	return 5 * time.Minute
}

func (s *goroutineServer) dataTimeout() time.Duration {
	if s.cfg.Timeouts.Data > 0 {
		return s.cfg.Timeouts.Data
	}
	return 3 * time.Minute
}

// read appends at least one byte to gc.buf, handling timeouts and shutdown.
func (s *goroutineServer) read(gc *goroutineConn) error {
	for {
		timeout := s.commandTimeout()
		if gc.sess.InData() {
			timeout = s.dataTimeout()
		}
		deadline := time.Now().Add(timeout)
		if s.stopping.Load() {
			// During shutdown, only a session inside a transaction keeps
			// reading, in short slices so it notices the forced close.
			if !gc.inTx || s.forceClose.Load() {
				gc.sess.Shutdown()
				gc.flush()
				return net.ErrClosed
			}
			deadline = time.Now().Add(shutdownPoll)
		}
		gc.conn.SetReadDeadline(deadline)

		n, err := gc.conn.Read(gc.buf[len(gc.buf):cap(gc.buf)])
		gc.buf = gc.buf[:len(gc.buf)+n]
		if n > 0 {
			return nil
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			if s.stopping.Load() {
				continue
			}
			gc.sess.Timeout()
			gc.flush()
			return fmt.Errorf("timeout after %s", timeout)
		}
		if err != nil {
			return err
		}
	}
}

// flush writes all pending session output.
func (gc *goroutineConn) flush() error {
	out := gc.sess.Output()
	if len(out) == 0 {
		return nil
	}
	gc.conn.SetWriteDeadline(time.Now().Add(5 * time.Minute))
	n, err := gc.conn.Write(out)
	gc.sess.Advance(n)
	return err
}

// writeReply formats r on the wire. It is used only outside a Session (for
// example when Connect rejects a client before the greeting).
func writeReply(w io.Writer, r smtp.Reply) error {
	_, err := io.WriteString(w, FormatReply(r))
	return err
}

// FormatReplyLine renders r on one line without CRLF, with the lines of a
// multi-line text joined by spaces, for logs.
func FormatReplyLine(r smtp.Reply) string {
	text := strings.Join(splitLines(r.Text), " ")
	if r.Enhanced == "" {
		return fmt.Sprintf("%03d %s", r.Code, text)
	}
	return fmt.Sprintf("%03d %s %s", r.Code, r.Enhanced, text)
}

// FormatReply renders r as one or more reply lines (RFC 5321 section 4.2).
func FormatReply(r smtp.Reply) string {
	lines := splitLines(r.Text)
	out := make([]byte, 0, 64)
	for i, line := range lines {
		out = fmt.Appendf(out, "%03d", r.Code)
		if i < len(lines)-1 {
			out = append(out, '-')
		} else {
			out = append(out, ' ')
		}
		if r.Enhanced != "" {
			out = append(out, r.Enhanced...)
			out = append(out, ' ')
		}
		out = append(out, line...)
		out = append(out, '\r', '\n')
	}
	return string(out)
}

func splitLines(s string) []string {
	var lines []string
	for {
		i := 0
		for i < len(s) && s[i] != '\n' {
			i++
		}
		lines = append(lines, s[:i])
		if i == len(s) {
			return lines
		}
		s = s[i+1:]
	}
}
