package smtp

import "bytes"

const (
	// maxEnvIDLength and maxORcptLength bound the xtext values of ENVID
	// and ORCPT, in octets as sent (RFC 3461).
	maxEnvIDLength = 100
	maxORcptLength = 500

	// maxSizeDigits is the longest SIZE value. RFC 1870 allows 1*20DIGIT,
	// which can exceed int64, so such values saturate.
	maxSizeDigits = 20
)

// nextParam splits the first esmtp-param off rest (RFC 5321 section
// 4.1.2: esmtp-keyword ["=" esmtp-value], separated by spaces) and returns
// its keyword, its value and whether it had an "=". ok is false when rest
// holds no more parameters.
func nextParam(rest []byte) (key, value []byte, hasValue bool, remaining []byte, ok bool) {
	rest = trimLeadingSpace(rest)
	if len(rest) == 0 {
		return nil, nil, false, nil, false
	}
	param := rest
	if sp := bytes.IndexByte(rest, ' '); sp >= 0 {
		param, remaining = rest[:sp], rest[sp+1:]
	}
	if eq := bytes.IndexByte(param, '='); eq >= 0 {
		return param[:eq], param[eq+1:], true, remaining, true
	}
	return param, nil, false, remaining, true
}

// validKeyword reports whether b is an esmtp-keyword:
// (ALPHA / DIGIT) *(ALPHA / DIGIT / "-").
func validKeyword(b []byte) bool {
	if len(b) == 0 || !isLetDig(b[0]) {
		return false
	}
	for _, c := range b {
		if !isLetDig(c) && c != '-' {
			return false
		}
	}
	return true
}

// validValue reports whether b is an esmtp-value: 1*(%d33-60 / %d62-126).
// UTF-8 is not accepted in parameter values.
func validValue(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	for _, c := range b {
		if c < 33 || c > 126 || c == '=' {
			return false
		}
	}
	return true
}

// parseMailParams parses the MAIL FROM parameters after the reverse-path
// into p and returns the reply for the first error, or replyNone. After
// HELO (rather than EHLO) no parameter is recognized (RFC 5321 section
// 4.1.1.11).
func (s *Session) parseMailParams(rest []byte, p *MailParams) replyID {
	var seenSize, seenBody, seenUTF8, seenRet, seenEnvID bool
	for {
		key, value, hasValue, remaining, ok := nextParam(rest)
		if !ok {
			return replyNone
		}
		rest = remaining
		if !validKeyword(key) || (hasValue && !validValue(value)) {
			return replyBadParameter
		}
		if !s.ehlo {
			return replyUnknownParameter
		}

		var seen *bool
		switch {
		case equalFold(key, "SIZE"):
			seen = &seenSize
			size, ok := parseSize(value)
			if !ok {
				return replyBadParameter
			}
			p.Size = size
		case equalFold(key, "BODY"):
			// RFC 6152; BINARYMIME needs CHUNKING, which smta lacks.
			seen = &seenBody
			switch {
			case equalFold(value, "7BIT"):
				p.Body = "7BIT"
			case equalFold(value, "8BITMIME"):
				p.Body = "8BITMIME"
			default:
				return replyBadParameter
			}
		case equalFold(key, "SMTPUTF8"):
			// SMTPUTF8 takes no value (RFC 6531).
			seen = &seenUTF8
			if hasValue {
				return replyBadParameter
			}
			p.SMTPUTF8 = true
		case equalFold(key, "RET"):
			seen = &seenRet
			switch {
			case equalFold(value, "FULL"):
				p.Ret = "FULL"
			case equalFold(value, "HDRS"):
				p.Ret = "HDRS"
			default:
				return replyBadParameter
			}
		case equalFold(key, "ENVID"):
			seen = &seenEnvID
			if len(value) > maxEnvIDLength {
				return replyBadParameter
			}
			id, ok := decodeXtext(nil, value)
			if !ok {
				return replyBadParameter
			}
			p.EnvID = string(id)
		default:
			return replyUnknownParameter
		}
		if *seen {
			return replyDuplicateParameter
		}
		*seen = true
	}
}

// parseRcptParams parses the RCPT TO parameters after the forward-path
// into p, like parseMailParams.
func (s *Session) parseRcptParams(rest []byte, p *RcptParams) replyID {
	var seenNotify, seenORcpt bool
	for {
		key, value, hasValue, remaining, ok := nextParam(rest)
		if !ok {
			return replyNone
		}
		rest = remaining
		if !validKeyword(key) || (hasValue && !validValue(value)) {
			return replyBadParameter
		}
		if !s.ehlo {
			return replyUnknownParameter
		}

		var seen *bool
		switch {
		case equalFold(key, "NOTIFY"):
			seen = &seenNotify
			notify, ok := parseNotify(value)
			if !ok {
				return replyBadParameter
			}
			p.Notify = notify
		case equalFold(key, "ORCPT"):
			seen = &seenORcpt
			orcpt, ok := parseORcpt(value)
			if !ok {
				return replyBadParameter
			}
			p.ORcpt = orcpt
		default:
			return replyUnknownParameter
		}
		if *seen {
			return replyDuplicateParameter
		}
		*seen = true
	}
}

// parseSize parses a SIZE value (RFC 1870: 1*20DIGIT), saturating
// at the largest int64.
func parseSize(b []byte) (int64, bool) {
	if len(b) == 0 || len(b) > maxSizeDigits {
		return 0, false
	}
	const maxInt64 = 1<<63 - 1
	var n int64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		d := int64(c - '0')
		if n > (maxInt64-d)/10 {
			n = maxInt64
			continue
		}
		n = n*10 + d
	}
	return n, true
}

// parseNotify parses a NOTIFY value (RFC 3461): "NEVER" alone,
// or a comma list of SUCCESS, FAILURE and DELAY, each at most once. It
// returns the value in upper case.
func parseNotify(b []byte) (string, bool) {
	if equalFold(b, "NEVER") {
		return "NEVER", true
	}
	var seen [3]bool
	names := [3]string{"SUCCESS", "FAILURE", "DELAY"}
	out := make([]byte, 0, len(b))
	for len(b) > 0 {
		item := b
		if comma := bytes.IndexByte(b, ','); comma >= 0 {
			item, b = b[:comma], b[comma+1:]
			if len(b) == 0 {
				return "", false
			}
		} else {
			b = nil
		}
		k := 0
		for k < len(names) && !equalFold(item, names[k]) {
			k++
		}
		if k == len(names) || seen[k] {
			return "", false
		}
		seen[k] = true
		if len(out) > 0 {
			out = append(out, ',')
		}
		out = append(out, names[k]...)
	}
	return string(out), len(out) > 0
}

// parseORcpt parses an ORCPT value (RFC 3461):
// addr-type ";" xtext, where addr-type is an atom. It returns
// "addr-type;decoded".
func parseORcpt(b []byte) (string, bool) {
	if len(b) > maxORcptLength {
		return "", false
	}
	semi := bytes.IndexByte(b, ';')
	if semi <= 0 || semi == len(b)-1 {
		return "", false
	}
	for _, c := range b[:semi] {
		if !isAtext(c) {
			return "", false
		}
	}
	out := append(make([]byte, 0, len(b)), b[:semi+1]...)
	out, ok := decodeXtext(out, b[semi+1:])
	if !ok {
		return "", false
	}
	return string(out), true
}

// decodeXtext appends the decoded xtext src to dst (RFC 3461):
// xchar is any of %d33-126 except "+" and "=", and "+" followed by two
// hex digits encodes one octet. Lower-case hex digits are accepted
// although the RFC requires senders to use upper case.
func decodeXtext(dst, src []byte) ([]byte, bool) {
	for i := 0; i < len(src); i++ {
		c := src[i]
		switch {
		case c == '+':
			if i+2 >= len(src) {
				return dst, false
			}
			hi, ok1 := unhex(src[i+1])
			lo, ok2 := unhex(src[i+2])
			if !ok1 || !ok2 {
				return dst, false
			}
			dst = append(dst, hi<<4|lo)
			i += 2
		case c < 33 || c > 126 || c == '=':
			return dst, false
		default:
			dst = append(dst, c)
		}
	}
	return dst, true
}

func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	}
	return 0, false
}
