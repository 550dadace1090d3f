package smtp

import (
	"strconv"
	"strings"
)

// replyID names one entry of replyTable. The zero value, replyNone, means
// "no reply"; in the command table it marks a verb as allowed in a state.
type replyID uint8

const (
	replyNone replyID = iota

	// Positive completions and intermediate replies.
	replyGreeting
	replyOK
	replyMailOK
	replyRcptOK
	replyStartData
	replyQueued
	replyVrfy
	replyHelp
	replyStartTLS
	replyQuit

	// Syntax errors (RFC 5321 section 4.2.2, 50x) and unknown parameters.
	replyUnknownCommand
	replyEmptyCommand
	replyLineTooLong
	replyNotImplemented
	replyHeloSyntax
	replyMailSyntax
	replyRcptSyntax
	replyNoArguments
	replyVrfySyntax
	replyBadSender
	replyBadRecipient
	replyBadParameter
	replyDuplicateParameter
	replyUnknownParameter

	// Bad sequence of commands (503).
	replyNeedHelo
	replyNestedMail
	replyNeedMail
	replyNeedRcpt
	replyTransactionOpen
	replyTLSActive

	// Policy and limits checked by the session itself.
	replyNeedSMTPUTF8
	replyDeclaredSizeTooBig
	replyTooManyRecipients

	// Message text failures, sent after the end of data.
	replyBareLineEnding
	replyTextLineTooLong
	replyMessageTooBig

	// Default rejections when the driver calls Reject with a zero Reply.
	replyHeloRejected
	replyMailRejected
	replyRcptRejected
	replyDataRejected
	replyMessageRejected

	// Session endings. These carry the host name before the text.
	replyTooManyErrors
	replyTimeout
	replyShutdown

	numReplies
)

// tableReply is one named reply. When hostPrefix is set the configured host
// name is written before Text, as in "421 4.4.2 mx.example.com timeout
// exceeded".
type tableReply struct {
	Reply
	hostPrefix bool
}

// replyTable is the only place reply codes and texts are spelled out.
// Enhanced status codes follow RFC 3463. RFC 2034 requires them on 2xx,
// 4xx and 5xx replies other than the greeting and the EHLO/HELO reply, so
// the 220 greeting and 354 go without. Texts stay bland: they name the
// problem, never internal state.
var replyTable = [numReplies]tableReply{
	replyGreeting:  {Reply{220, "", "ESMTP smta"}, true},
	replyOK:        {Reply: Reply{250, "2.0.0", "Ok"}},
	replyMailOK:    {Reply: Reply{250, "2.1.0", "Ok"}},
	replyRcptOK:    {Reply: Reply{250, "2.1.5", "Ok"}},
	replyStartData: {Reply: Reply{354, "", "End data with <CR><LF>.<CR><LF>"}},
	replyQueued:    {Reply: Reply{250, "2.0.0", "Ok: queued"}},
	replyVrfy:      {Reply: Reply{252, "2.5.0", "Cannot VRFY user, but will accept message and attempt delivery"}},
	replyHelp:      {Reply: Reply{214, "2.0.0", "Commands: EHLO HELO MAIL RCPT DATA RSET NOOP QUIT VRFY HELP STARTTLS"}},
	replyStartTLS:  {Reply: Reply{220, "2.0.0", "Ready to start TLS"}},
	replyQuit:      {Reply: Reply{221, "2.0.0", "Bye"}},

	replyUnknownCommand:     {Reply: Reply{500, "5.5.1", "Command not recognized"}},
	replyEmptyCommand:       {Reply: Reply{500, "5.5.2", "Empty command"}},
	replyLineTooLong:        {Reply: Reply{500, "5.5.2", "Line too long"}},
	replyNotImplemented:     {Reply: Reply{502, "5.5.1", "Command not implemented"}},
	replyHeloSyntax:         {Reply: Reply{501, "5.5.4", "Syntax: EHLO hostname"}},
	replyMailSyntax:         {Reply: Reply{501, "5.5.4", "Syntax: MAIL FROM:<address>"}},
	replyRcptSyntax:         {Reply: Reply{501, "5.5.4", "Syntax: RCPT TO:<address>"}},
	replyNoArguments:        {Reply: Reply{501, "5.5.4", "Syntax error, no arguments allowed"}},
	replyVrfySyntax:         {Reply: Reply{501, "5.5.4", "Syntax: VRFY address"}},
	replyBadSender:          {Reply: Reply{501, "5.1.7", "Bad sender address syntax"}},
	replyBadRecipient:       {Reply: Reply{501, "5.1.3", "Bad recipient address syntax"}},
	replyBadParameter:       {Reply: Reply{501, "5.5.4", "Invalid parameter syntax or value"}},
	replyDuplicateParameter: {Reply: Reply{501, "5.5.4", "Duplicate parameter"}},
	replyUnknownParameter:   {Reply: Reply{555, "5.5.4", "Unsupported parameter"}},

	replyNeedHelo:        {Reply: Reply{503, "5.5.1", "Send HELO or EHLO first"}},
	replyNestedMail:      {Reply: Reply{503, "5.5.1", "Nested MAIL command"}},
	replyNeedMail:        {Reply: Reply{503, "5.5.1", "Need MAIL command"}},
	replyNeedRcpt:        {Reply: Reply{503, "5.5.1", "Need RCPT command"}},
	replyTransactionOpen: {Reply: Reply{503, "5.5.1", "Mail transaction in progress"}},
	replyTLSActive:       {Reply: Reply{503, "5.5.1", "TLS already active"}},

	replyNeedSMTPUTF8:       {Reply: Reply{553, "5.6.7", "Non-ASCII address requires SMTPUTF8"}},
	replyDeclaredSizeTooBig: {Reply: Reply{552, "5.3.4", "Message size exceeds fixed maximum message size"}},
	replyTooManyRecipients:  {Reply: Reply{452, "4.5.3", "Too many recipients"}},

	replyBareLineEnding:  {Reply: Reply{550, "5.6.0", "Message contains bare CR or LF; lines must end with CRLF"}},
	replyTextLineTooLong: {Reply: Reply{550, "5.6.0", "Message contains a text line longer than 1000 octets"}},
	replyMessageTooBig:   {Reply: Reply{552, "5.3.4", "Message size exceeds fixed maximum message size"}},

	replyHeloRejected:    {Reply: Reply{550, "5.7.1", "Hostname rejected"}},
	replyMailRejected:    {Reply: Reply{550, "5.7.1", "Sender address rejected"}},
	replyRcptRejected:    {Reply: Reply{550, "5.7.1", "Recipient address rejected"}},
	replyDataRejected:    {Reply: Reply{554, "5.5.1", "No valid recipients"}},
	replyMessageRejected: {Reply: Reply{554, "5.0.0", "Transaction failed"}},

	replyTooManyErrors: {Reply{421, "4.7.0", "too many errors"}, true},
	replyTimeout:       {Reply{421, "4.4.2", "timeout exceeded"}, true},
	replyShutdown:      {Reply{421, "4.3.2", "service shutting down"}, true},
}

// countsAsError reports whether a reply with this code uses up the
// session's error budget. Only syntax and sequence errors count: the 50x
// replies (RFC 5321 section 4.2.1, second digit 0 is "syntax") and 555 for
// unrecognized MAIL/RCPT parameters. Policy rejections (550 relay denied,
// 452 too many recipients, 552 too big) do not count, so a legitimate
// client that hits a policy limit is not disconnected for it. The rule is
// the same for replies the session makes and for those passed to Reject.
func countsAsError(code int) bool {
	return code/10 == 50 || code == 555
}

// appendReply appends r in wire form: one "code-text" line per line of
// r.Text and "code text" on the last. host, when not empty, goes before the
// text of the first line. Control characters in the text are dropped so a
// reply passed to Reject cannot break the framing.
func appendReply(dst []byte, r Reply, host string) []byte {
	text := r.Text
	for {
		line, rest, more := strings.Cut(text, "\n")
		dst = strconv.AppendInt(dst, int64(r.Code), 10)
		if more {
			dst = append(dst, '-')
		} else {
			dst = append(dst, ' ')
		}
		if r.Enhanced != "" {
			dst = appendPrintable(dst, r.Enhanced)
			dst = append(dst, ' ')
		}
		if host != "" {
			dst = appendPrintable(dst, host)
			if line != "" {
				dst = append(dst, ' ')
			}
			host = ""
		}
		dst = appendPrintable(dst, line)
		dst = append(dst, '\r', '\n')
		if !more {
			return dst
		}
		text = rest
	}
}

// appendPrintable appends s without its ASCII control characters (TAB
// excepted).
func appendPrintable(dst []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < ' ' && c != '\t') || c == 0x7f {
			continue
		}
		dst = append(dst, c)
	}
	return dst
}
