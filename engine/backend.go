package engine

import (
	"net/netip"

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
}

// Backend is the policy and storage side of inbound SMTP. Every inbound mode
// (goroutine, epoll, io_uring) calls it the same way. Methods run on the
// connection's driver thread and must not block for long: anything slow goes
// to a worker and reports back through the completion callback.
type Backend interface {
	// Connect decides whether to serve a new connection. A zero Reply accepts.
	Connect(c *ConnInfo) smtp.Reply
	// Mail checks MAIL FROM. A zero Reply accepts.
	Mail(c *ConnInfo, tx *smtp.Transaction) smtp.Reply
	// Rcpt checks one RCPT TO (relay rules, limits). A zero Reply accepts.
	Rcpt(c *ConnInfo, tx *smtp.Transaction, rcpt smtp.Recipient) smtp.Reply
	// Data starts a message. A non-zero Reply rejects DATA.
	Data(c *ConnInfo, tx *smtp.Transaction) (MessageWriter, smtp.Reply)
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
