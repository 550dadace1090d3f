//go:build linux

package engine

import (
	"errors"

	"golang.org/x/sys/unix"

	"smta/smtp"
)

// serve moves connection slot forward as far as it can without blocking:
// feed buffered input to the session, write its replies, read more, repeat.
// It stops when the session waits for a commit, the socket has no more
// input, the output is backed up, or the read budget is used up.
//
// REQUIRES: the caller is the shard thread.
func (sh *shard) serve(slot uint32) {
	c := &sh.conns[slot]
	if c.flags&flagTLSPending != 0 {
		if sh.flush(c) && sh.uring.readyForHandOff(c) {
			sh.handOffTLS(c)
		}
		return
	}
	for reads := 0; ; reads++ {
		if !sh.feed(c) {
			return // closed or handed off
		}
		if !sh.flush(c) {
			return
		}
		if c.flags&flagClosing != 0 || (c.flags&flagPeerClosed != 0 && !c.sess.Pending()) {
			if c.flags&flagWriteBlocked == 0 {
				sh.closeConn(c)
			}
			return
		}
		if sh.draining && sh.idle(c) {
			sh.shutdownConn(c)
			return
		}
		if sh.uring != nil {
			// Input arrives by completion; the receive completion or the
			// commit completion calls serve again.
			sh.uring.resume(c)
			return
		}
		if c.sess.Pending() || c.flags&(flagReadable|flagPeerClosed) != flagReadable ||
			c.flags&flagWriteBlocked != 0 && len(c.sess.Output()) > maxOutputBacklog {
			// Paused or out of input. An idle connection keeps no buffer.
			if c.r == c.w {
				sh.putBuf(c)
			}
			return
		}
		if reads == readsPerTurn {
			if c.flags&flagQueued == 0 {
				c.flags |= flagQueued
				sh.runq = append(sh.runq, timerEntry{slot, c.gen})
			}
			return
		}
		if !sh.read(c) {
			return
		}
	}
}

// read appends one read's worth of input to c's buffer. It returns false if
// the connection was closed.
func (sh *shard) read(c *conn) bool {
	if c.buf == nil {
		sh.getBuf(c)
	}
	if c.r == c.w {
		c.r, c.w = 0, 0
	} else if c.w == readBufSize {
		if c.r == 0 {
			// Feed consumes input whenever at least five octets are
			// buffered, so a full buffer here is a session bug. Do not spin
			// on it.
			sh.srv.log.Error("session consumed no input from a full buffer; closing", "session", c.info.SessionID)
			sh.closeConn(c)
			return false
		}
		c.w = int32(copy(c.buf[:], c.buf[c.r:c.w]))
		c.r = 0
	}

	space := readBufSize - int(c.w)
	n, err := unix.Read(int(c.fd), c.buf[c.w:])
	add(&sh.counters.syscalls, 1)
	switch {
	case n > 0:
		c.w += int32(n)
		if n < space && c.flags&flagHangup == 0 {
			// A short read emptied the socket's receive queue, and input
			// arriving after it queues a new edge-triggered event. Reading
			// again now would only return EAGAIN. After a hangup event the
			// shard reads on until EOF, because no further event comes.
			c.flags &^= flagReadable
		}
		add(&sh.counters.bytesIn, uint64(n))
		timeout := sh.timing.command
		if c.sess.InData() {
			timeout = sh.timing.data
		}
		c.deadline = sh.wheel.now + sh.wheel.ticksFor(timeout)
		return true
	case err == nil: // EOF
		c.flags |= flagPeerClosed
		c.flags &^= flagReadable
		return true
	case errors.Is(err, unix.EAGAIN):
		c.flags &^= flagReadable
		return true
	case errors.Is(err, unix.EINTR):
		return true
	default: // ECONNRESET and the like
		sh.closeConn(c)
		return false
	}
}

// feed runs the session over the buffered input until it needs more input
// or must wait. It returns false if the connection was closed or handed to a
// TLS goroutine.
func (sh *shard) feed(c *conn) bool {
	sess := c.sess
	b := sh.srv.backend
	for !sess.Pending() && !sess.Closing() {
		if c.flags&flagWriteBlocked != 0 && len(sess.Output()) > maxOutputBacklog {
			// The client is not reading its replies: stop producing more.
			// The send or EPOLLOUT that drains the output resumes feeding.
			return true
		}
		var in []byte
		if c.buf != nil {
			in = c.buf[c.r:c.w]
		}
		n, ev := sess.Feed(in)
		c.r += int32(n)
		reportFailures(b, c.info, sess, &sh.failures)
		if n == 0 && ev.Kind == smtp.EventNone {
			if sh.uring != nil && sh.uring.refill(c) {
				continue
			}
			return true
		}

		switch ev.Kind {
		case smtp.EventHelo:
			// An accepted HELO inside a transaction is followed by
			// EventReset, which clears flagInTx.
			if r := b.Helo(c.info, ev.Helo); !r.IsZero() {
				sess.Reject(r)
				continue
			}
			c.info.Helo = ev.Helo
			sess.Accept()

		case smtp.EventMail:
			if r := b.Mail(c.info, sess.Transaction()); !r.IsZero() {
				sess.Reject(r)
				continue
			}
			c.flags |= flagInTx
			sess.Accept()

		case smtp.EventRcpt:
			decide(sess, b.Rcpt(c.info, sess.Transaction(), ev.Rcpt))

		case smtp.EventData:
			w, r := b.Data(c.info, sess.Transaction())
			if !r.IsZero() {
				sess.Reject(r)
				continue
			}
			c.msg = w
			sess.Accept()

		case smtp.EventBody:
			if c.msg != nil {
				c.msg.Write(ev.Body) // errors surface at Commit
			}

		case smtp.EventDataEnd:
			c.flags &^= flagInTx
			w := c.msg
			c.msg = nil
			if w == nil {
				sess.Reject(smtp.Reply{Code: 451, Enhanced: "4.3.0", Text: "message not stored, try again later"})
				continue
			}
			slot := c.slot
			gen := c.gen
			w.Commit(func(id string, failure smtp.Reply) {
				sh.post(completion{kind: completionCommit, slot: slot, gen: gen, id: id, failure: failure})
			})
			// The session is now pending; the loop condition stops here and
			// the inbox resumes the connection.

		case smtp.EventDataAborted, smtp.EventReset:
			c.flags &^= flagInTx
			if c.msg != nil {
				c.msg.Abort()
				c.msg = nil
			}

		case smtp.EventStartTLS:
			// RFC 3207 section 4.2: plaintext pipelined after STARTTLS must
			// not be executed inside the TLS session (CVE-2011-0411).
			c.r = c.w
			if sh.uring != nil {
				// Requests may be in flight; serve hands the connection off
				// once they complete.
				sh.uring.dropSpill(c)
				c.flags |= flagTLSPending
				sh.serve(c.slot)
				return false
			}
			sh.handOffTLS(c)
			return false

		case smtp.EventQuit, smtp.EventClose:
			c.flags |= flagClosing
			return true
		}
	}
	if sess.Closing() {
		c.flags |= flagClosing
	}
	return true
}

// flush writes the session's pending output. It returns false if the
// connection was closed. On EAGAIN it sets flagWriteBlocked; EPOLLOUT
// resumes the connection.
func (sh *shard) flush(c *conn) bool {
	if sh.uring != nil {
		return sh.uring.send(c)
	}
	for c.flags&flagWriteBlocked == 0 {
		out := c.sess.Output()
		if len(out) == 0 {
			return true
		}
		n, err := unix.Write(int(c.fd), out)
		add(&sh.counters.syscalls, 1)
		if n > 0 {
			c.sess.Advance(n)
			add(&sh.counters.bytesOut, uint64(n))
			continue
		}
		switch {
		case errors.Is(err, unix.EAGAIN):
			c.flags |= flagWriteBlocked
		case errors.Is(err, unix.EINTR):
		default:
			sh.closeConn(c)
			return false
		}
	}
	return true
}
