package smtp

import (
	"bytes"
	"strconv"
)

// MaxCommandLine is the longest command line, in octets including CRLF,
// that a Session accepts. RFC 5321 section 4.5.3.1.4 sets 512 and lets
// each service extension raise it. The DSN parameters alone (ENVID up to
// 100 and ORCPT up to 500 octets of xtext, RFC 3461) and UTF-8 addresses
// (RFC 6531) can push a MAIL or RCPT line past 512, so smta allows 2048.
// Longer lines get 500 5.5.2.
//
// A driver's input buffer must hold at least MaxCommandLine octets:
// Feed consumes command lines whole, so it returns (0, EventNone) for an
// incomplete line shorter than this limit.
const MaxCommandLine = 2048

const (
	defaultMaxRecipients = 100
	defaultMaxErrors     = 10
	defaultHostname      = "localhost"
)

// Session is the server side of one SMTP connection, without any I/O.
//
// # Steps
//
// The driver owns the socket and calls, in a loop:
//
//  1. Feed with the bytes it has read. Feed consumes a prefix of them and
//     returns how many and an Event. In command state it consumes one
//     command line per call and either queues its reply or returns an
//     event that needs a decision. In data state it consumes as much
//     message text as it can classify and returns it as EventBody.
//  2. For EventHelo, EventMail, EventRcpt and EventData the driver decides
//     at once with Accept or Reject. For EventDataEnd it may decide later,
//     after the spool commit, with AcceptQueued or Reject.
//  3. Whenever Feed returns EventNone, or before closing, the driver writes
//     Output to the socket and reports the written count with Advance.
//
// # Invariants
//
//  1. Every reply goes through the reply table or Reject, and is written to
//     the output buffer in the order the commands arrived, so pipelined
//     commands (RFC 2920) get their replies in order.
//  2. At most one decision is pending. Feed panics while one is, because
//     the driver would otherwise run commands against a state that has not
//     settled.
//  3. Only CR LF "." CR LF ends DATA, and only a CR LF pair ends a line of
//     message text. A bare CR or a bare LF inside DATA fails the message
//     and never ends it, which closes SMTP smuggling.
//  4. Feed never buffers input. Whatever it cannot classify yet (at most
//     two octets in data state, one incomplete command line in command
//     state) stays in the caller's slice, unconsumed.
//  5. Feed always makes progress on enough input: in data state on any
//     input of at least 3 octets, in command state on any input that holds
//     a line ending or is at least MaxCommandLine octets long.
//  6. Message text is never copied: EventBody aliases the input, and Feed
//     on body data does not allocate.
//
// # Rejected alternatives
//
// A goroutine per connection blocking in a bufio.Reader (as net/smtp-style
// servers do) ties the protocol to one I/O model. The epoll and io_uring
// engines need a parser that stops when the bytes run out and resumes on
// the next readiness event, with no stack parked per connection.
//
// A callback interface (Backend.Mail, Backend.Rcpt, ...) called from inside
// the parser would hide when the session blocks, and a decision that needs
// a worker (SPF, DKIM, the spool commit) would have to block the parser's
// thread. Returning events and waiting for Accept/Reject keeps the
// decision point explicit and lets the driver park the connection.
//
// Buffering partial input inside the Session would double-copy every body
// byte; leaving the unconsumed tail in the driver's buffer costs the driver
// one copy of at most a command line.
//
// A Session is not safe for concurrent use: all calls come from the
// goroutine that drives the connection.
type Session struct {
	// Immutable after NewSession.
	cfg       *Config
	host      string
	maxRcpts  int
	maxErrors int

	// Dialogue state, owned by the driving goroutine like everything below.
	state        state
	pending      decision
	resetDue     bool // an accepted HELO/EHLO dropped a transaction; Feed reports EventReset next
	discarding   bool // skipping the rest of a command line longer than MaxCommandLine
	dropTxOnFeed bool // an aborted message's transaction is cleared by the next Feed
	ehlo         bool // the accepted greeting was EHLO, so ESMTP parameters are allowed
	tls          bool
	helo         string
	errors       int // replies counted by countsAsError
	pendingHelo  string
	pendingEhlo  bool
	pendingRcpt  Recipient
	tx           Transaction
	data         dataReader

	// Access-log bookkeeping, read by the driver between Feed calls.
	command  string    // verb of the command being handled; "" before the first
	failFrom string    // reverse-path of the command being handled, for Failure.From
	failRcpt string    // forward-path of the RCPT being handled, for Failure.Rcpt
	failures []Failure // failure replies not yet taken, at most maxFailures
	dropped  int       // failures not recorded because failures was full
	messages int       // messages accepted with AcceptQueued

	// Output: bytes out[outStart:] are waiting to be written.
	out      []byte
	outStart int
}

// NewSession returns a Session for one connection. cfg must not change
// while the session holds it.
func NewSession(cfg *Config) *Session {
	s := &Session{
		cfg:       cfg,
		host:      cfg.Hostname,
		maxRcpts:  cfg.MaxRecipients,
		maxErrors: cfg.MaxErrors,
	}
	if s.host == "" {
		s.host = defaultHostname
	}
	if s.maxRcpts <= 0 {
		s.maxRcpts = defaultMaxRecipients
	}
	if s.maxErrors <= 0 {
		s.maxErrors = defaultMaxErrors
	}
	return s
}

// Start queues the "220 <host> ESMTP smta" greeting. To turn the
// connection away instead, the driver calls Refuse and not Start.
func (s *Session) Start() {
	s.queue(replyGreeting)
}

// Refuse queues r in place of the greeting (typically 554 5.7.1 or 421
// 4.7.0, from a connection policy) and closes the session. The driver
// writes Output and closes the connection without reading commands.
//
// REQUIRES: r has a 4xx or 5xx code; Refuse panics otherwise.
func (s *Session) Refuse(r Reply) {
	if r.Code < 400 || r.Code > 599 {
		panic("smtp: Refuse with non-error reply code " + strconv.Itoa(r.Code))
	}
	s.out = appendReply(s.out, r, "")
	s.pending = decisionNone
	s.state = stateClosed
}

// Feed consumes a prefix of in and returns its length and what the
// session stopped for.
//
// Unconsumed tail: Feed never copies or keeps input. Bytes it cannot
// classify yet are left unconsumed, and the driver must keep them at the
// front of its buffer and call Feed again once more bytes have arrived:
//
//   - In command state, an incomplete command line (no LF yet) shorter than
//     MaxCommandLine. A line at or past the limit is consumed and
//     discarded as it arrives, and gets 500 5.5.2 at its end, so a full
//     buffer always progresses.
//   - In data state, a trailing CR (the next octet decides whether it ends
//     a line or is a bare CR), and "." or ".\r" at the start of a line
//     (possible prefixes of the end-of-data line). The tail is at most two
//     octets, so Feed never returns (0, EventNone) in data state when
//     len(in) >= 3.
//
// Feed may also return n = 0 with an event (EventReset before the reply to
// a HELO that dropped a transaction); the driver handles the event and
// calls Feed again with the same input.
//
// After EventStartTLS the bytes after the STARTTLS line are left
// unconsumed: they arrived before the TLS handshake and must be discarded
// (RFC 3207 section 4.2), not fed after TLSStarted. After EventQuit or
// EventClose, Feed discards all input and returns EventClose.
//
// REQUIRES: no decision pending (see Pending) and no TLS handshake in
// progress; Feed panics otherwise.
func (s *Session) Feed(in []byte) (n int, ev Event) {
	if s.pending != decisionNone {
		panic("smtp: Feed called while a decision is pending; call Accept, Reject or AcceptQueued first")
	}
	if s.dropTxOnFeed {
		s.dropTxOnFeed = false
		s.tx = Transaction{}
	}
	if s.resetDue {
		s.resetDue = false
		return 0, Event{Kind: EventReset}
	}
	switch s.state {
	case stateClosed:
		return len(in), Event{Kind: EventClose}
	case stateTLSHandshake:
		panic("smtp: Feed called after EventStartTLS and before TLSStarted")
	case stateData:
		return s.feedData(in)
	}

	n, ev = s.feedCommand(in)
	if ev.Kind == EventNone && s.state == stateClosed {
		ev.Kind = EventClose
	}
	return n, ev
}

// feedCommand consumes at most one command line.
func (s *Session) feedCommand(in []byte) (int, Event) {
	lf := bytes.IndexByte(in, '\n')
	if lf < 0 {
		if s.discarding || len(in) >= MaxCommandLine {
			s.discarding = true
			return len(in), Event{}
		}
		return 0, Event{}
	}

	// An over-long line gets one reply, at its end, and the next line is
	// parsed normally (resynchronizing at the line ending).
	n := lf + 1
	if s.discarding || n > MaxCommandLine {
		s.discarding = false
		s.queue(replyLineTooLong)
		return n, Event{}
	}

	// A bare LF ends a command line too, for clients that send one. A CR
	// elsewhere in the line stays in it and fails the syntax checks.
	line := in[:lf]
	if len(line) > 0 && line[len(line)-1] == '\r' {
		line = line[:len(line)-1]
	}
	return n, s.dispatch(line)
}

// dispatch runs one command line (without its line ending).
func (s *Session) dispatch(line []byte) Event {
	verb, arg := splitCommand(line)
	if len(verb) == 0 {
		s.command = ""
		return s.reply(replyEmptyCommand)
	}
	cmd := lookupCommand(verb)
	if cmd == nil {
		s.command = "UNKNOWN"
		return s.reply(replyUnknownCommand)
	}
	s.command = cmd.verb
	s.failFrom = s.tx.From
	s.failRcpt = ""
	if deny := cmd.deny[s.state]; deny != replyNone {
		return s.reply(deny)
	}
	return cmd.handle(s, arg)
}

// splitCommand splits a command line into its verb and its argument, with
// the spaces around the argument removed.
func splitCommand(line []byte) (verb, arg []byte) {
	sp := bytes.IndexByte(line, ' ')
	if sp < 0 {
		return line, nil
	}
	return line[:sp], bytes.Trim(line[sp+1:], " \t")
}

// Accept sends the default positive reply to the pending decision:
// the EHLO or HELO reply, 250 2.1.0 for MAIL, 250 2.1.5 for RCPT, 354 for
// DATA, and "250 2.0.0 Ok: queued" (without a queue id) for end of data.
// It does nothing after Timeout or Shutdown dropped the decision.
func (s *Session) Accept() {
	pending := s.takePending()
	switch pending {
	case decisionNone:
		return
	case decisionHelo:
		// RFC 5321 section 4.1.4: an accepted EHLO/HELO resets the
		// session as RSET would.
		if s.state.inTransaction() {
			s.resetDue = true
		}
		s.tx = Transaction{}
		s.helo = s.pendingHelo
		s.ehlo = s.pendingEhlo
		s.state = stateReady
		s.queueHeloReply()
	case decisionMail:
		s.state = stateMail
		s.queue(replyMailOK)
	case decisionRcpt:
		s.tx.Rcpts = append(s.tx.Rcpts, s.pendingRcpt)
		s.pendingRcpt = Recipient{}
		s.state = stateRcpt
		s.queue(replyRcptOK)
	case decisionData:
		s.state = stateData
		s.data = dataReader{lineStart: true}
		s.queue(replyStartData)
	case decisionDataEnd:
		s.endTransaction()
		s.queue(replyQueued)
	}
}

// AcceptQueued replies "250 2.0.0 Ok: queued as <id>" to EventDataEnd and
// ends the transaction. It does nothing after Timeout or Shutdown.
func (s *Session) AcceptQueued(id string) {
	if s.pending != decisionDataEnd {
		if s.state == stateClosed {
			return
		}
		panic("smtp: AcceptQueued called without a pending end of data")
	}
	s.pending = decisionNone
	s.endTransaction()
	s.messages++
	r := replyTable[replyQueued].Reply
	r.Text += " as " + id
	s.queueReply(r)
}

// Reject sends r as the negative reply to the pending decision. A zero r
// sends the default rejection for it (550 5.7.1 for HELO, MAIL and RCPT,
// 554 5.5.1 for DATA, 554 5.0.0 for end of data). A rejected MAIL or end
// of data drops the transaction; a rejected RCPT or DATA leaves it as it
// was. The reply counts toward the error budget when countsAsError
// returns true for its code. If that exhausts the budget, Closing reports
// true and the next Feed returns EventClose. Reject does nothing after Timeout or Shutdown.
//
// REQUIRES: r is zero or has a 4xx or 5xx code; Reject panics otherwise.
func (s *Session) Reject(r Reply) {
	if !r.IsZero() && (r.Code < 400 || r.Code > 599) {
		panic("smtp: Reject with non-error reply code " + strconv.Itoa(r.Code))
	}
	pending := s.takePending()
	var def replyID
	switch pending {
	case decisionNone:
		return
	case decisionHelo:
		def = replyHeloRejected
	case decisionMail:
		s.tx = Transaction{}
		def = replyMailRejected
	case decisionRcpt:
		s.pendingRcpt = Recipient{}
		def = replyRcptRejected
	case decisionData:
		def = replyDataRejected
	case decisionDataEnd:
		s.endTransaction()
		def = replyMessageRejected
	}
	if r.IsZero() {
		s.queue(def)
		return
	}
	s.queueReply(r)
}

// takePending clears and returns the pending decision. With none pending
// it panics, unless the session is closing and the decision was dropped.
func (s *Session) takePending() decision {
	d := s.pending
	if d == decisionNone && s.state != stateClosed {
		panic("smtp: Accept or Reject called without a pending decision")
	}
	s.pending = decisionNone
	return d
}

// endTransaction drops the transaction after end of data.
func (s *Session) endTransaction() {
	s.tx = Transaction{}
	s.data = dataReader{}
	if s.state != stateClosed {
		s.state = stateReady
	}
}

// Output returns the replies queued and not yet written. The slice is
// valid until the next call to any other method.
//
// NOTE: the buffer is not bounded by the session. A driver that writes
// Output whenever Feed returns EventNone, before reading more, bounds it
// by the replies to one input buffer of pipelined commands.
func (s *Session) Output() []byte {
	return s.out[s.outStart:]
}

// Advance records that the driver wrote the first n bytes of Output.
func (s *Session) Advance(n int) {
	if n < 0 || n > len(s.out)-s.outStart {
		panic("smtp: Advance beyond Output")
	}
	s.outStart += n
	switch {
	case s.outStart == len(s.out):
		s.out = s.out[:0]
		s.outStart = 0
	case s.outStart >= outCompactThreshold && 2*s.outStart >= len(s.out):
		// Partial writes while replies keep coming: move the pending
		// bytes down so the written prefix does not grow forever.
		s.out = s.out[:copy(s.out, s.out[s.outStart:])]
		s.outStart = 0
	}
}

// outCompactThreshold is the written prefix of the output buffer, in
// octets, past which Advance moves the pending bytes to the front.
const outCompactThreshold = 4096

// Transaction returns the mail transaction in progress. The pointer stays
// the same for the life of the session, and its contents are replaced when
// a transaction ends. At EventDataEnd the transaction stays until
// AcceptQueued or Reject, and at EventDataAborted until the next Feed, so
// the driver can record the message. The Rcpts slice is never reused, so
// a copy of it taken for the spool stays valid.
func (s *Session) Transaction() *Transaction {
	return &s.tx
}

// Helo returns the argument of the accepted HELO or EHLO, or "" before one
// is accepted and after TLSStarted.
func (s *Session) Helo() string { return s.helo }

// InData reports whether the session is receiving message text, when the
// driver applies the DATA block timeout (RFC 5321 section 4.5.3.2)
// instead of the command timeout.
func (s *Session) InData() bool { return s.state == stateData }

// Pending reports whether a decision (Accept, Reject or AcceptQueued) is
// pending.
func (s *Session) Pending() bool { return s.pending != decisionNone }

// Closing reports whether the session has queued its last reply (221 to
// QUIT or a 421): the driver writes Output and closes the connection.
func (s *Session) Closing() bool { return s.state == stateClosed }

// TLSActive reports whether TLSStarted has been called.
func (s *Session) TLSActive() bool { return s.tls }

// TLSStarted records a completed STARTTLS handshake. As RFC 3207 section
// 4.2 requires, it discards everything learned before: the HELO name and
// any transaction, so the client must send EHLO again. The session does
// not discard input here, because it keeps none; the driver drops the
// plaintext it buffered after the STARTTLS line. STARTTLS is no longer
// advertised or accepted.
//
// For implicit TLS (a listener where the handshake comes first, RFC 8314)
// the driver calls TLSStarted on a new session, before or after Start and
// before the first Feed.
//
// REQUIRES: EventStartTLS was returned, or the session is new and not yet
// on TLS; TLSStarted panics otherwise.
func (s *Session) TLSStarted() {
	implicit := s.state == stateConnected && !s.tls && s.helo == "" && s.errors == 0
	if s.state != stateTLSHandshake && !implicit {
		panic("smtp: TLSStarted called without EventStartTLS on a session already in use")
	}
	s.state = stateConnected
	s.tls = true
	s.helo = ""
	s.ehlo = false
	s.tx = Transaction{}
	s.discarding = false
}

// Timeout queues "421 4.4.2 <host> timeout exceeded" and closes the
// session, dropping any pending decision.
func (s *Session) Timeout() {
	s.command = ""
	s.closeWith(replyTimeout)
}

// Shutdown queues "421 4.3.2 <host> service shutting down" and closes the
// session, dropping any pending decision.
func (s *Session) Shutdown() {
	s.command = ""
	s.closeWith(replyShutdown)
}

func (s *Session) closeWith(id replyID) {
	if s.state == stateClosed {
		return
	}
	s.pending = decisionNone
	s.resetDue = false
	s.state = stateClosed
	s.queue(id)
}

// reply queues a table reply and returns the empty event, for handlers
// that reply without a decision.
func (s *Session) reply(id replyID) Event {
	s.queue(id)
	return Event{}
}

// queue appends a table reply to the output.
func (s *Session) queue(id replyID) {
	t := &replyTable[id]
	host := ""
	if t.hostPrefix {
		host = s.host
	}
	s.out = appendReply(s.out, t.Reply, host)
	s.noteFailure(t.Reply)
	s.countError(t.Code)
}

// queueReply appends a reply given by the driver (or built from the
// table) to the output.
func (s *Session) queueReply(r Reply) {
	s.out = appendReply(s.out, r, "")
	s.noteFailure(r)
	s.countError(r.Code)
}

// maxFailures bounds the failures kept between two TakeFailures calls, so
// a driver that never takes them cannot make a session grow.
const maxFailures = 32

// Failure is one 4xx or 5xx reply the session sent, for access logs.
type Failure struct {
	Command string // verb of the failed command ("RCPT"; "UNKNOWN" for an unrecognized one), or "" for none
	From    string // reverse-path of the transaction or of the failed MAIL; "" for none or the null sender
	Rcpt    string // forward-path of a failed RCPT, when it parsed
	Reply   Reply
}

// noteFailure records r when it is a failure reply.
func (s *Session) noteFailure(r Reply) {
	if r.Code < 400 {
		return
	}
	if len(s.failures) >= maxFailures {
		s.dropped++
		return
	}
	s.failures = append(s.failures, Failure{Command: s.command, From: s.failFrom, Rcpt: s.failRcpt, Reply: r})
}

// TakeFailures appends the failure replies sent since the last call to dst
// and clears them from the session. It returns dst and the number of failures that were not
// recorded because more than maxFailures arrived between two calls. It does
// not allocate when there were no failures.
func (s *Session) TakeFailures(dst []Failure) ([]Failure, int) {
	dst = append(dst, s.failures...)
	clear(s.failures)
	s.failures = s.failures[:0]
	dropped := s.dropped
	s.dropped = 0
	return dst, dropped
}

// Messages returns how many messages the session accepted with AcceptQueued.
func (s *Session) Messages() int { return s.messages }

// countError spends the error budget on syntax and sequence errors and,
// when it runs out, queues 421 4.7.0 and closes the session.
func (s *Session) countError(code int) {
	if !countsAsError(code) {
		return
	}
	s.errors++
	if s.errors >= s.maxErrors && s.state != stateClosed {
		s.closeWith(replyTooManyErrors)
	}
}

// queueHeloReply queues the reply to an accepted HELO, or the EHLO reply
// listing the extensions this session supports.
func (s *Session) queueHeloReply() {
	if !s.ehlo {
		s.out = appendReply(s.out, Reply{Code: 250}, s.host)
		return
	}

	out := s.out
	out = append(out, "250-"...)
	out = appendPrintable(out, s.host)
	out = append(out, "\r\n250-PIPELINING\r\n250-SIZE"...)
	if s.cfg.MaxMessageSize > 0 {
		// Without a configured limit SIZE goes out without a number,
		// so the client learns of no fixed maximum (RFC 1870).
		out = append(out, ' ')
		out = strconv.AppendInt(out, s.cfg.MaxMessageSize, 10)
	}
	out = append(out, "\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n250-ENHANCEDSTATUSCODES\r\n"...)
	if s.cfg.StartTLS && !s.tls {
		out = append(out, "250-STARTTLS\r\n"...)
	}
	out = append(out, "250 DSN\r\n"...)
	s.out = out
}
