package engine

import (
	"net/netip"
	"strconv"
	"time"

	"smta/smtp"
)

// ConnInfo describes one inbound connection to the Backend. It is owned by
// the connection's driver; the Backend may read it during a call and must
// not keep it afterwards.
type ConnInfo struct {
	SessionID string
	Remote    netip.AddrPort
	Local     netip.AddrPort
	Helo      string
	TLS       bool
	Start     time.Time // when the connection was accepted

	// Files queues file writes on the connection's shard ring in io_uring
	// mode, and is nil in the other modes and on TLS connections. Only
	// Backend and MessageWriter calls may use it, because they run on the
	// shard's thread.
	Files FileWriter
}

// FileWriter queues positional file writes on an io_uring shard, so that a
// spool write rides on the io_uring_enter the shard makes anyway instead of
// costing a pwrite(2) of its own.
type FileWriter interface {
	// WriteAt queues a write of p at offset off of file descriptor fd and
	// returns true, or returns false without queueing anything (the shard
	// is stopping). done is called once, on the shard thread, with the
	// octets written (all of p on success) or the error. fd and p must
	// stay valid until then.
	WriteAt(fd int, p []byte, off int64, done func(n int, err error)) bool
}

// Backend is the policy and storage side of inbound SMTP. Every inbound mode
// (goroutine, epoll, io_uring) calls it the same way. Methods run on the
// connection's driver thread and must not block for long: anything slow goes
// to a worker and reports back through the completion callback.
type Backend interface {
	// Connect decides whether to serve a new connection. A zero Reply accepts.
	Connect(c *ConnInfo) smtp.Reply
	// Helo checks the name given in HELO or EHLO. A zero Reply accepts and
	// sets c.Helo. A rejected client keeps its earlier name, if any, and
	// may try again.
	Helo(c *ConnInfo, name string) smtp.Reply
	// Mail checks MAIL FROM. A zero Reply accepts.
	Mail(c *ConnInfo, tx *smtp.Transaction) smtp.Reply
	// Rcpt checks one RCPT TO (relay rules, limits). A zero Reply accepts.
	Rcpt(c *ConnInfo, tx *smtp.Transaction, rcpt smtp.Recipient) smtp.Reply
	// Data starts a message. A non-zero Reply rejects DATA.
	Data(c *ConnInfo, tx *smtp.Transaction) (MessageWriter, smtp.Reply)
	// Failure reports 4xx and 5xx replies the session sent, in order, for
	// the access log. dropped counts failures the session could not keep.
	Failure(c *ConnInfo, failures []smtp.Failure, dropped int)
	// Disconnect reports the end of a session that passed Connect, with
	// the number of messages it queued.
	Disconnect(c *ConnInfo, messages int)
}

// sessionIDPrefix makes session ids unique across restarts: the process
// start time in base 36, so that access-log and accounting lines of two runs
// never share an id.
var sessionIDPrefix = strconv.FormatInt(time.Now().Unix(), 36)

// newSessionID returns the id of the n-th session of a mode; mode is one
// letter ("g" for goroutine, "e" for the sharded modes).
func newSessionID(mode string, n uint64) string {
	return sessionIDPrefix + "-" + mode + strconv.FormatUint(n, 16)
}

// reportFailures passes the failures sess recorded since the last call to
// b. scratch is reused between calls so that the common case allocates
// nothing.
func reportFailures(b Backend, info *ConnInfo, sess *smtp.Session, scratch *[]smtp.Failure) {
	failures, dropped := sess.TakeFailures((*scratch)[:0])
	if len(failures) > 0 || dropped > 0 {
		b.Failure(info, failures, dropped)
	}
	clear(failures)
	*scratch = failures[:0]
}

// MessageWriter receives one message body and makes it durable.
type MessageWriter interface {
	// Write appends wire-form body bytes. Errors are remembered and reported
	// by Commit, so the driver can keep draining DATA.
	Write(p []byte) error
	// Commit makes the message durable and calls done exactly once, possibly
	// from another goroutine. On success failure is the zero Reply and id is
	// the queue id for "250 2.0.0 Ok: queued as <id>" (smtp.Session.AcceptQueued);
	// otherwise failure is the 4xx/5xx reply for the client (Session.Reject).
	Commit(done func(id string, failure smtp.Reply))
	// Abort discards the message.
	Abort()
}
