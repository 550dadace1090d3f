package smtp

var eventNames = [...]string{
	EventNone:        "none",
	EventHelo:        "helo",
	EventMail:        "mail",
	EventRcpt:        "rcpt",
	EventData:        "data",
	EventBody:        "body",
	EventDataEnd:     "data-end",
	EventDataAborted: "data-aborted",
	EventReset:       "reset",
	EventStartTLS:    "starttls",
	EventQuit:        "quit",
	EventClose:       "close",
}

// String returns the lower-case name of k, as used in logs and transcript
// tests.
func (k EventKind) String() string {
	if int(k) < len(eventNames) {
		return eventNames[k]
	}
	return "invalid"
}
