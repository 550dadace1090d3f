//go:build linux

package engine

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"time"

	"golang.org/x/sys/unix"

	"smta/smtp"
)

// TLS sessions leave the shard. crypto/tls needs a blocking net.Conn, and
// encrypting on the shard thread would mean a record layer driven by epoll
// readiness. Instead the socket moves to a goroutine that runs the goroutine
// mode's driver over Go's netpoller, continuing the same smtp.Session.
// Stats.TLSHandoffs counts these connections. Plaintext sessions, the bulk
// of relay traffic between trusted hosts, stay on the shards.

// handOffTLS moves c to a TLS goroutine after STARTTLS was accepted.
//
// REQUIRES: the caller is the shard thread; c's pending output is the 220
// reply to STARTTLS.
func (sh *shard) handOffTLS(c *conn) {
	add(&sh.counters.tlsHandoffs, 1)
	fd := int(c.fd)
	if sh.epfd >= 0 {
		unix.EpollCtl(sh.epfd, unix.EPOLL_CTL_DEL, fd, nil)
	}
	sess, info := c.sess, c.info

	// In io_uring mode the receive may have delivered bytes after the 220
	// reply went out: the start of the client's handshake.
	var early []byte
	if c.buf != nil {
		early = append(early, c.buf[c.r:c.w]...)
	}
	if sh.uring != nil {
		early = append(early, sh.uring.spill[c.slot]...)
		sh.uring.dropSpill(c)
	}
	sh.releaseSlot(c)
	info.Files = nil // the TLS goroutine is not the shard thread
	sh.srv.serveTLS(fd, info, sess, early)
}

// serveTLS starts a goroutine that serves fd over TLS. sess is nil for a
// new connection on an implicit TLS listener. Otherwise sess has just
// accepted STARTTLS and its 220 reply is still in its output. The goroutine
// releases the connection's place in the limits when it ends.
//
// early holds bytes already received from the client after the STARTTLS
// reply; the TLS layer reads them first.
func (s *epollServer) serveTLS(fd int, info *ConnInfo, sess *smtp.Session, early []byte) {
	ip := info.Remote.Addr()
	f := os.NewFile(uintptr(fd), "smtp")
	nc, err := net.FileConn(f) // dups fd
	f.Close()
	if err != nil {
		s.log.Warn("tls hand-off failed", "session", info.SessionID, "error", err)
		s.limits.release(ip)
		return
	}
	if len(early) > 0 {
		nc = &prefixConn{Conn: nc, prefix: early}
	}
	gs := s.tlsSrv

	gs.wg.Add(1)
	go func() {
		defer gs.wg.Done()
		defer s.limits.release(ip)
		defer nc.Close()
		if err := s.runTLS(nc, info, sess); err != nil {
			s.log.Debug("starttls failed", "session", info.SessionID, "remote", info.Remote, "error", err)
		}
	}()
}

// runTLS runs the TLS handshake and then drives the session with the
// goroutine mode's loop. For STARTTLS it first writes the 220 reply still
// in sess's output. For implicit TLS (sess nil) it calls Backend.Connect and
// starts a new session once the handshake is done.
func (s *epollServer) runTLS(nc net.Conn, info *ConnInfo, sess *smtp.Session) error {
	timing := newTimeouts(s.cfg.Timeouts)
	nc.SetDeadline(time.Now().Add(timing.command))
	if sess != nil {
		if out := sess.Output(); len(out) > 0 {
			n, err := nc.Write(out)
			sess.Advance(n)
			if err != nil {
				return err
			}
		}
	}
	tc := tls.Server(nc, s.cfg.TLS)
	if err := tc.Handshake(); err != nil {
		return fmt.Errorf("tls handshake: %w", err)
	}
	tc.SetDeadline(time.Time{})
	info.TLS = true

	if sess == nil {
		if r := s.backend.Connect(info); !r.IsZero() {
			return writeReply(tc, r)
		}
		cfg := new(smtp.Config)
		*cfg = s.cfg.Session
		cfg.RemoteAddr = info.Remote
		cfg.StartTLS = false
		sess = smtp.NewSession(cfg)
		sess.Start()
	} else {
		sess.TLSStarted()
	}

	gs := s.tlsSrv
	gc := &goroutineConn{conn: tc, sess: sess, info: *info, buf: make([]byte, 0, goroutineBufSize)}
	if !gs.admit(gc) {
		return errors.New("tls session not admitted")
	}
	defer gs.release(gc)
	err := gs.run(gc)
	if gc.writer != nil {
		gc.writer.Abort()
	}
	if errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}

// prefixConn is a net.Conn whose first reads return prefix.
type prefixConn struct {
	net.Conn
	prefix []byte
}

func (c *prefixConn) Read(p []byte) (int, error) {
	if len(c.prefix) > 0 {
		n := copy(p, c.prefix)
		c.prefix = c.prefix[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}
