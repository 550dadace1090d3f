package smtp

import "unicode/utf8"

// One handler per verb. The dispatcher has already checked the command
// table, so a handler starts with its syntax guards and ends by either
// queueing a reply or returning an event that needs a decision.

func (s *Session) cmdEhlo(arg []byte) Event { return s.greet(arg, true) }

func (s *Session) cmdHelo(arg []byte) Event { return s.greet(arg, false) }

// greet handles EHLO and HELO (RFC 5321 section 4.1.1.1). The argument is
// checked only for shape (one printable word); whether the name is
// plausible is policy, left to the driver.
func (s *Session) greet(arg []byte, ehlo bool) Event {
	if !validHeloName(arg) {
		return s.reply(replyHeloSyntax)
	}

	s.pendingHelo = string(arg)
	s.pendingEhlo = ehlo
	s.pending = decisionHelo
	return Event{Kind: EventHelo, Helo: s.pendingHelo}
}

// validHeloName reports whether b is one word of printable ASCII or UTF-8.
func validHeloName(b []byte) bool {
	if len(b) == 0 || !utf8.Valid(b) {
		return false
	}
	for _, c := range b {
		if c <= ' ' || c == 0x7f {
			return false
		}
	}
	return true
}

// cmdMail handles MAIL FROM:<reverse-path> [SP parameters] (RFC 5321
// section 4.1.1.2). A space after the colon is tolerated because many
// clients send one.
func (s *Session) cmdMail(arg []byte) Event {
	rest, ok := cutPrefixFold(arg, "FROM:")
	if !ok {
		return s.reply(replyMailSyntax)
	}
	p, rest, err := parsePath(trimLeadingSpace(rest), reversePath)
	if err != nil {
		return s.reply(replyBadSender)
	}
	s.failFrom = p.addr
	var params MailParams
	if id := s.parseMailParams(rest, &params); id != replyNone {
		return s.reply(id)
	}
	if p.utf8 && !params.SMTPUTF8 {
		return s.reply(replyNeedSMTPUTF8)
	}
	if limit := s.cfg.MaxMessageSize; limit > 0 && params.Size > limit {
		return s.reply(replyDeclaredSizeTooBig)
	}

	s.tx = Transaction{From: p.addr, MailParams: params}
	s.pending = decisionMail
	return Event{Kind: EventMail}
}

// cmdRcpt handles RCPT TO:<forward-path> [SP parameters] (RFC 5321
// section 4.1.1.3).
func (s *Session) cmdRcpt(arg []byte) Event {
	rest, ok := cutPrefixFold(arg, "TO:")
	if !ok {
		return s.reply(replyRcptSyntax)
	}
	p, rest, err := parsePath(trimLeadingSpace(rest), forwardPath)
	if err != nil {
		return s.reply(replyBadRecipient)
	}
	s.failRcpt = p.addr
	var params RcptParams
	if id := s.parseRcptParams(rest, &params); id != replyNone {
		return s.reply(id)
	}
	if p.utf8 && !s.tx.MailParams.SMTPUTF8 {
		return s.reply(replyNeedSMTPUTF8)
	}
	if len(s.tx.Rcpts) >= s.maxRcpts {
		return s.reply(replyTooManyRecipients)
	}

	s.pendingRcpt = Recipient{Addr: p.addr, Params: params}
	s.pending = decisionRcpt
	return Event{Kind: EventRcpt, Rcpt: s.pendingRcpt}
}

// cmdData handles DATA (RFC 5321 section 4.1.1.4). Accept sends 354 and
// switches to data state.
func (s *Session) cmdData(arg []byte) Event {
	if len(arg) > 0 {
		return s.reply(replyNoArguments)
	}

	s.pending = decisionData
	return Event{Kind: EventData}
}

// cmdRset handles RSET (RFC 5321 section 4.1.1.5). It reports EventReset
// even without an open transaction, which is harmless for the driver.
func (s *Session) cmdRset(arg []byte) Event {
	if len(arg) > 0 {
		return s.reply(replyNoArguments)
	}

	s.tx = Transaction{}
	if s.state.inTransaction() {
		s.state = stateReady
	}
	s.queue(replyOK)
	return Event{Kind: EventReset}
}

// cmdNoop handles NOOP. Servers should ignore its argument (RFC 5321
// section 4.1.1.9).
func (s *Session) cmdNoop(arg []byte) Event {
	return s.reply(replyOK)
}

// cmdQuit handles QUIT (RFC 5321 section 4.1.1.10).
func (s *Session) cmdQuit(arg []byte) Event {
	if len(arg) > 0 {
		return s.reply(replyNoArguments)
	}

	s.queue(replyQuit)
	s.state = stateClosed
	return Event{Kind: EventQuit}
}

// cmdVrfy replies 252: smta verifies no mailboxes, which RFC 5321 section
// 3.5.3 allows as long as the reply does not claim the address is invalid.
func (s *Session) cmdVrfy(arg []byte) Event {
	if len(arg) == 0 {
		return s.reply(replyVrfySyntax)
	}
	return s.reply(replyVrfy)
}

func (s *Session) cmdHelp(arg []byte) Event {
	return s.reply(replyHelp)
}

// cmdStartTLS handles STARTTLS (RFC 3207 section 4). It is refused with
// 502 when not configured, like any unimplemented command.
func (s *Session) cmdStartTLS(arg []byte) Event {
	if !s.cfg.StartTLS {
		return s.reply(replyNotImplemented)
	}
	if s.tls {
		return s.reply(replyTLSActive)
	}
	if len(arg) > 0 {
		return s.reply(replyNoArguments)
	}

	s.queue(replyStartTLS)
	s.state = stateTLSHandshake
	return Event{Kind: EventStartTLS}
}

func (s *Session) cmdNotImplemented(arg []byte) Event {
	return s.reply(replyNotImplemented)
}

func trimLeadingSpace(b []byte) []byte {
	for len(b) > 0 && b[0] == ' ' {
		b = b[1:]
	}
	return b
}
