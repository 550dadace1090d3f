// Package smtp implements the server side of SMTP (RFC 5321) as a sans-I/O
// state machine: bytes in, replies and events out. No socket code lives here,
// so every inbound mode (goroutine, epoll, io_uring) drives the same Session.
//
// CONTRACT (fixed; other packages are written against it):
//
//	s := smtp.NewSession(&cfg)
//	s.Start()                       // queues the 220 greeting
//	for {
//	    n, ev := s.Feed(in)         // consumes a prefix of in
//	    in = in[n:]
//	    switch ev.Kind {
//	    case smtp.EventNone:        // needs more input: flush s.Output(), read more
//	    case smtp.EventMail, smtp.EventRcpt, smtp.EventData, smtp.EventHelo:
//	        s.Accept() or s.Reject(reply)   // must decide before the next Feed
//	    case smtp.EventBody:        // ev.Body aliases in; wire form (dot-stuffed CRLF lines)
//	    case smtp.EventDataEnd:     // s.AcceptQueued(id) or s.Reject(reply), possibly later
//	    case smtp.EventDataAborted: // session already replied (ev.Reply); discard the body
//	    case smtp.EventReset:       // drop the current transaction (RSET, or HELO/EHLO during a transaction)
//	    case smtp.EventStartTLS:    // flush output, handshake, then s.TLSStarted()
//	    case smtp.EventQuit, smtp.EventClose: // flush output, close
//	    }
//	}
//
// Output bytes accumulate in s.Output(); after writing k of them the driver
// calls s.Advance(k).
//
// # Design
//
// Session (session.go) carries the design essay: the steps a driver
// follows, the invariants, and the alternatives that were rejected. Each
// file holds one concept:
//
//   - state.go: the state enum and the table of verbs allowed per state
//   - commands.go: one handler per verb
//   - replies.go: the single reply table
//   - address.go, params.go: the path and parameter grammars of RFC 5321,
//     RFC 1870, RFC 3461 and RFC 6531
//   - data.go: message text reception and dot-stuffing
//
// Rules a driver relies on:
//
//   - Feed leaves an unconsumed tail that it cannot classify yet: an
//     incomplete command line, or up to two octets in DATA. The driver
//     keeps it and feeds it again with more input, so input buffers must
//     hold at least MaxCommandLine octets. See Session.Feed.
//   - Only CR LF "." CR LF ends DATA. A bare CR or bare LF in message text
//     fails the message with 550 5.6.0 after the real end of data, as do
//     a text line over 1000 octets (550 5.6.0) and a message over
//     Config.MaxMessageSize (552 5.3.4); the text is drained, never
//     buffered, and no EventBody follows the failure.
//   - A bare LF ends a command line, for interoperability.
//   - Every reply carries an RFC 3463 enhanced status code except the 220
//     greeting, the EHLO/HELO reply and 354, the replies RFC 2034 leaves
//     out.
//   - Syntax and sequence errors (50x and 555), including those passed to
//     Reject, count toward Config.MaxErrors; at the limit the session
//     queues 421 4.7.0 and closes.
package smtp

import "net/netip"

// Reply is one SMTP reply: a three-digit code, an RFC 3463 enhanced status
// code (empty for 220/221 greetings where none applies) and text. Text may
// contain '\n' to produce a multi-line reply.
type Reply struct {
	Code     int
	Enhanced string
	Text     string
}

// IsZero reports whether r is the zero Reply, which means "use the default".
func (r Reply) IsZero() bool { return r.Code == 0 }

// MailParams are the MAIL FROM parameters of RFC 1870 (SIZE), RFC 6152
// (BODY), RFC 6531 (SMTPUTF8) and RFC 3461 (RET, ENVID).
type MailParams struct {
	Size     int64  // declared SIZE, 0 when absent
	Body     string // "7BIT", "8BITMIME" or ""
	SMTPUTF8 bool
	Ret      string // "FULL", "HDRS" or ""
	EnvID    string // xtext-decoded ENVID, "" when absent
}

// RcptParams are the RCPT TO parameters of RFC 3461.
type RcptParams struct {
	Notify string // "NEVER" or a comma list of SUCCESS,FAILURE,DELAY; "" when absent
	ORcpt  string // "rfc822;addr" as given, xtext-decoded; "" when absent
}

// Recipient is one accepted RCPT TO.
type Recipient struct {
	Addr   string
	Params RcptParams
}

// Transaction is the mail transaction in progress: set by MAIL, grown by
// each accepted RCPT, cleared by RSET, HELO/EHLO and end of data.
type Transaction struct {
	From       string // reverse-path without brackets; "" is the null sender
	MailParams MailParams
	Rcpts      []Recipient // accepted recipients only
}

// Config holds the per-listener session settings. Immutable once a session
// holds it.
type Config struct {
	Hostname       string // used in the greeting and EHLO reply
	MaxMessageSize int64  // octets; 0 means no limit
	MaxRecipients  int    // per transaction; 0 means 100
	MaxErrors      int    // per session before 421; 0 means 10
	StartTLS       bool   // advertise STARTTLS
	RemoteAddr     netip.AddrPort
}

// EventKind is the reason Feed stopped.
type EventKind uint8

const (
	EventNone        EventKind = iota // needs more input
	EventHelo                         // HELO/EHLO; Event.Helo set; decision required
	EventMail                         // MAIL FROM; Session.Transaction().From set; decision required
	EventRcpt                         // RCPT TO; Event.Rcpt set; decision required
	EventData                         // DATA command; decision required (Accept sends 354)
	EventBody                         // Event.Body holds wire-form body bytes; no decision
	EventDataEnd                      // end of data; AcceptQueued or Reject required
	EventDataAborted                  // message failed (bare CR/LF, size, line length); reply already queued
	EventReset                        // transaction dropped; no decision
	EventStartTLS                     // STARTTLS accepted; driver must handshake then call TLSStarted
	EventQuit                         // QUIT replied to; flush and close
	EventClose                        // session must be closed after flushing (error budget, timeout)
)

// Event is the event Feed returns alongside the consumed byte count.
type Event struct {
	Kind  EventKind
	Helo  string    // EventHelo
	Rcpt  Recipient // EventRcpt
	Body  []byte    // EventBody; aliases the slice passed to Feed
	Reply Reply     // EventDataAborted: the reply that was queued
}
