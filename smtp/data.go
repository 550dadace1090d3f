package smtp

import "bytes"

// maxTextLine is the longest line of message text, in octets including
// CRLF and not counting a dot added for transparency (RFC 5321 section
// 4.5.3.1.6).
const maxTextLine = 1000

// dataReader is the state of message text reception that must survive
// from one Feed call to the next. Everything else is recomputed from the
// input, which is why Feed leaves an undecidable tail unconsumed instead
// of remembering it.
type dataReader struct {
	lineStart bool    // the next octet begins a line: right after the 354 reply or a CRLF
	lineLen   int     // octets of the current line so far, CRLF and stuffed dot not counted
	size      int64   // message octets so far, CRLFs counted, stuffed dots not (RFC 1870)
	fail      replyID // the first failure, replyNone while the message is intact
}

// setFail records the first reason the message fails. Later reasons are
// ignored: the client learns about the earliest problem.
func (d *dataReader) setFail(id replyID) {
	if d.fail == replyNone {
		d.fail = id
	}
}

// feedData consumes message text (RFC 5321 section 4.1.1.4).
//
// It walks the input one line at a time, a line being everything up to
// and including the next LF. Only a CRLF pair ends a line and only
// CR LF "." CR LF ends the data. A LF without a CR before it, or a CR
// without a LF after it, is a bare line ending, and it marks the message
// as failed. The walk then goes on with the next octet as part of the
// same line, so "\n.\n", "\r.\r", "\r\n.\n" and the like never end the
// data.
//
// While the message is intact, the consumed text is returned as EventBody
// in wire form. Once it fails (bare line ending, line too long, too big),
// the rest of the text is consumed without events until the end of data,
// where EventDataAborted reports the reply already queued.
func (s *Session) feedData(in []byte) (int, Event) {
	d := &s.data
	limit := s.cfg.MaxMessageSize
	i := 0
	for i < len(in) {
		stuffed := 0

		// End of data, or a line that starts with a dot.
		if d.lineStart && in[i] == '.' {
			if len(in)-i < 2 || (in[i+1] == '\r' && len(in)-i < 3) {
				break // "." or ".\r": wait for the octet that decides
			}
			if in[i+1] == '\r' && in[i+2] == '\n' {
				if i > 0 && d.fail == replyNone {
					return i, Event{Kind: EventBody, Body: in[:i]}
				}
				return i + 3, s.endData()
			}
			// RFC 5321 section 4.5.2: the receiver deletes the
			// first dot of a line; it counts neither toward the line
			// length nor toward the message size.
			stuffed = 1
		}

		// An incomplete line: consume it except for a trailing CR.
		rest := in[i:]
		lf := bytes.IndexByte(rest, '\n')
		if lf < 0 {
			end := len(rest)
			if rest[end-1] == '\r' {
				end--
			}
			if bytes.IndexByte(rest[:end], '\r') >= 0 {
				d.setFail(replyBareLineEnding)
			}
			if end > 0 {
				d.addText(end-stuffed, limit)
				d.lineStart = false
			}
			i += end
			break
		}

		// A complete line. Its LF ends it only after a CR; any other CR
		// in it is bare.
		line := rest[:lf+1]
		crlf := lf > 0 && line[lf-1] == '\r'
		if !crlf {
			d.setFail(replyBareLineEnding)
		}
		if cr := bytes.IndexByte(line, '\r'); cr >= 0 && cr < lf-1 {
			d.setFail(replyBareLineEnding)
		}
		d.addText(len(line)-stuffed, limit)
		if crlf {
			d.lineLen = 0
		}
		d.lineStart = crlf
		i += len(line)
	}

	if i > 0 && d.fail == replyNone {
		return i, Event{Kind: EventBody, Body: in[:i]}
	}
	return i, Event{}
}

// addText accounts for n octets of the current line, CRLF included.
func (d *dataReader) addText(n int, limit int64) {
	d.lineLen += n
	d.size += int64(n)
	if d.lineLen > maxTextLine {
		d.setFail(replyTextLineTooLong)
	}
	if limit > 0 && d.size > limit {
		d.setFail(replyMessageTooBig)
	}
}

// endData handles the end-of-data line: EventDataEnd for an intact
// message, or the failure reply and EventDataAborted.
func (s *Session) endData() Event {
	fail := s.data.fail
	if fail == replyNone {
		s.state = stateReady
		s.pending = decisionDataEnd
		return Event{Kind: EventDataEnd}
	}

	// The transaction stays readable while the driver handles
	// EventDataAborted (to account for the failed message); the next
	// Feed drops it.
	s.data = dataReader{}
	s.state = stateReady
	s.dropTxOnFeed = true
	s.queue(fail)
	return Event{Kind: EventDataAborted, Reply: replyTable[fail].Reply}
}

// DotStuff appends src, plain text with CRLF line endings, to dst in SMTP
// wire form: a dot is added before every line that starts with one (RFC
// 5321 section 4.5.2). A line starts at the beginning of src and after
// every LF, so a bare LF followed by a dot is stuffed too and cannot end
// the data at a receiver that accepts bare LF. DotStuff neither adds a
// final CRLF nor the end-of-data line; src must begin at a line start.
func DotStuff(dst, src []byte) []byte {
	if len(src) > 0 && src[0] == '.' {
		dst = append(dst, '.')
	}
	for {
		k := bytes.Index(src, []byte("\n."))
		if k < 0 {
			return append(dst, src...)
		}
		dst = append(dst, src[:k+1]...)
		dst = append(dst, '.')
		src = src[k+1:]
	}
}

// DotUnstuff appends src, message text in wire form without the final
// ".\r\n", to dst as plain text: the first dot of every line that starts
// with one is removed (RFC 5321 section 4.5.2). A line starts at the
// beginning of src and after every CRLF, the same rule the Session uses
// for the end of data.
func DotUnstuff(dst, src []byte) []byte {
	if len(src) > 0 && src[0] == '.' {
		src = src[1:]
	}
	for {
		k := bytes.Index(src, []byte("\r\n."))
		if k < 0 {
			return append(dst, src...)
		}
		dst = append(dst, src[:k+2]...)
		src = src[k+3:]
	}
}
