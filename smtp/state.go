package smtp

// state is the position of a Session in the SMTP dialogue of RFC 5321
// section 3.
type state uint8

const (
	stateConnected    state = iota // initial: greeting queued, no HELO/EHLO accepted yet
	stateReady                     // HELO/EHLO accepted, no mail transaction
	stateMail                      // MAIL accepted, no recipient yet
	stateRcpt                      // at least one RCPT accepted
	stateData                      // receiving message text after the 354 reply
	stateTLSHandshake              // 220 to STARTTLS queued; waiting for TLSStarted
	stateClosed                    // 221 or 421 queued; only flushing remains
	numStates
)

var stateNames = [numStates]string{
	stateConnected:    "connected",
	stateReady:        "ready",
	stateMail:         "mail",
	stateRcpt:         "rcpt",
	stateData:         "data",
	stateTLSHandshake: "tls-handshake",
	stateClosed:       "closed",
}

func (st state) String() string {
	if st < numStates {
		return stateNames[st]
	}
	return "invalid"
}

// inTransaction reports whether a mail transaction is open.
func (st state) inTransaction() bool {
	return st == stateMail || st == stateRcpt
}

// decision is the client request a Session waits on the driver to accept
// or reject.
type decision uint8

const (
	decisionNone    decision = iota // initial: nothing pending
	decisionHelo                    // EventHelo returned
	decisionMail                    // EventMail returned
	decisionRcpt                    // EventRcpt returned
	decisionData                    // EventData returned
	decisionDataEnd                 // EventDataEnd returned; AcceptQueued or Reject
)

// command is one SMTP verb: its handler and, per state, the 503 reply that
// refuses it there. A replyNone entry means the verb is allowed in that
// state. Commands never run in stateData, stateTLSHandshake or stateClosed,
// so those columns stay empty.
type command struct {
	verb   string
	handle func(s *Session, arg []byte) Event
	deny   [numStates]replyID
}

// commands is the table of verbs the server recognizes. Verbs are matched
// without regard to case (RFC 5321 section 2.4).
var commands = [...]command{
	{verb: "EHLO", handle: (*Session).cmdEhlo},
	{verb: "HELO", handle: (*Session).cmdHelo},
	{verb: "MAIL", handle: (*Session).cmdMail, deny: [numStates]replyID{
		stateConnected: replyNeedHelo,
		stateMail:      replyNestedMail,
		stateRcpt:      replyNestedMail,
	}},
	{verb: "RCPT", handle: (*Session).cmdRcpt, deny: [numStates]replyID{
		stateConnected: replyNeedMail,
		stateReady:     replyNeedMail,
	}},
	{verb: "DATA", handle: (*Session).cmdData, deny: [numStates]replyID{
		stateConnected: replyNeedMail,
		stateReady:     replyNeedMail,
		stateMail:      replyNeedRcpt,
	}},
	{verb: "RSET", handle: (*Session).cmdRset},
	{verb: "NOOP", handle: (*Session).cmdNoop},
	{verb: "QUIT", handle: (*Session).cmdQuit},
	{verb: "VRFY", handle: (*Session).cmdVrfy},
	{verb: "HELP", handle: (*Session).cmdHelp},
	// STARTTLS inside a transaction is refused, because the handshake
	// would discard the envelope (RFC 3207 section 4.2) halfway through.
	{verb: "STARTTLS", handle: (*Session).cmdStartTLS, deny: [numStates]replyID{
		stateMail: replyTransactionOpen,
		stateRcpt: replyTransactionOpen,
	}},

	// Recognized but not implemented: 502 rather than 500 shows the
	// client the verb exists (RFC 5321 section 4.2.4).
	{verb: "EXPN", handle: (*Session).cmdNotImplemented},
	{verb: "TURN", handle: (*Session).cmdNotImplemented},
	{verb: "ETRN", handle: (*Session).cmdNotImplemented},
	{verb: "ATRN", handle: (*Session).cmdNotImplemented},
	{verb: "AUTH", handle: (*Session).cmdNotImplemented},
	{verb: "BDAT", handle: (*Session).cmdNotImplemented},
	{verb: "SEND", handle: (*Session).cmdNotImplemented},
	{verb: "SOML", handle: (*Session).cmdNotImplemented},
	{verb: "SAML", handle: (*Session).cmdNotImplemented},
}

// lookupCommand returns the table entry for verb, or nil.
func lookupCommand(verb []byte) *command {
	for i := range commands {
		if equalFold(verb, commands[i].verb) {
			return &commands[i]
		}
	}
	return nil
}

// equalFold reports whether b equals the upper-case ASCII string s without
// regard to ASCII case. It does not allocate.
func equalFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range b {
		c := b[i]
		if 'a' <= c && c <= 'z' {
			c -= 'a' - 'A'
		}
		if c != s[i] {
			return false
		}
	}
	return true
}

// cutPrefixFold returns b without the upper-case ASCII prefix, compared
// without regard to case, and whether it was there.
func cutPrefixFold(b []byte, prefix string) ([]byte, bool) {
	if len(b) < len(prefix) || !equalFold(b[:len(prefix)], prefix) {
		return b, false
	}
	return b[len(prefix):], true
}
