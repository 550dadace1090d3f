package delivery

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"strings"
)

// maxReplyLine is the longest reply line accepted, in octets with CRLF. RFC
// 5321 section 4.5.3.1.5 sets 512, but real servers exceed it with long
// policy texts, so the client accepts 4 KiB before it calls the peer broken.
const maxReplyLine = 4096

// maxReplyLines bounds a multi-line reply, so a peer cannot make the client
// buffer without limit. EHLO replies of large providers run to about 15
// lines.
const maxReplyLines = 100

// errProtocol marks replies that break RFC 5321 section 4.2 syntax.
var errProtocol = errors.New("delivery: malformed SMTP reply")

// reply is one complete, possibly multi-line, SMTP reply.
type reply struct {
	code     int
	enhanced string   // RFC 3463 enhanced status code from the first line, "" if none
	lines    []string // text of each line, with the code and enhanced code removed
}

// result converts the reply into the per-recipient Result, joining the lines
// of a multi-line reply with spaces.
func (r reply) result() Result {
	return Result{Code: r.code, Enhanced: r.enhanced, Text: strings.Join(r.lines, " ")}
}

// readReply reads one reply from br (RFC 5321 section 4.2.1): lines of the
// form "ddd-text" followed by a last line "ddd text" or "ddd", all with the
// same code. Bare LF line ends are accepted.
func readReply(br *bufio.Reader) (reply, error) {
	var r reply
	for n := 0; ; n++ {
		if n == maxReplyLines {
			return r, fmt.Errorf("%w: more than %d lines", errProtocol, maxReplyLines)
		}
		line, err := readLine(br)
		if err != nil {
			return r, err
		}
		code, last, text, err := parseReplyLine(line)
		if err != nil {
			return r, err
		}

		if n == 0 {
			r.code = code
			r.enhanced, text = cutEnhanced(code, text)
		} else {
			if code != r.code {
				return r, fmt.Errorf("%w: code %d on a continuation of %d", errProtocol, code, r.code)
			}
			// RFC 2034 section 4 repeats the enhanced code on every line.
			if enh, rest := cutEnhanced(code, text); enh == r.enhanced {
				text = rest
			}
		}
		r.lines = append(r.lines, text)
		if last {
			return r, nil
		}
	}
}

// readLine returns one line without its line end. It does not keep the line
// after the next read, because bufio.Reader reuses its buffer.
func readLine(br *bufio.Reader) ([]byte, error) {
	line, err := br.ReadSlice('\n')
	switch {
	case errors.Is(err, bufio.ErrBufferFull) || len(line) > maxReplyLine:
		return nil, fmt.Errorf("%w: line longer than %d octets", errProtocol, maxReplyLine)
	case err != nil:
		return nil, err
	}
	line = bytes.TrimSuffix(line[:len(line)-1], []byte("\r"))
	return line, nil
}

// parseReplyLine splits one reply line into its code, whether it is the last
// line of the reply, and its text. The text is copied and has control
// characters replaced, so it can go into logs and DSN headers safely.
func parseReplyLine(line []byte) (code int, last bool, text string, err error) {
	if len(line) < 3 {
		return 0, false, "", fmt.Errorf("%w: %q", errProtocol, line)
	}
	for _, c := range line[:3] {
		if c < '0' || c > '9' {
			return 0, false, "", fmt.Errorf("%w: %q", errProtocol, line)
		}
	}
	// RFC 5321 section 4.2: the first digit is 2 to 5; the second is 0 to 5.
	if line[0] < '2' || line[0] > '5' || line[1] > '5' {
		return 0, false, "", fmt.Errorf("%w: reply code out of range in %q", errProtocol, line)
	}
	code = int(line[0]-'0')*100 + int(line[1]-'0')*10 + int(line[2]-'0')

	switch {
	case len(line) == 3:
		return code, true, "", nil
	case line[3] == ' ':
		last = true
	case line[3] == '-':
		last = false
	default:
		return 0, false, "", fmt.Errorf("%w: %q", errProtocol, line)
	}
	return code, last, sanitize(line[4:]), nil
}

// sanitize copies b into a string with control characters replaced by
// spaces, because reply text ends up in headers of DSNs and in logs.
func sanitize(b []byte) string {
	clean := true
	for _, c := range b {
		if c < ' ' || c == 0x7f {
			clean = false
			break
		}
	}
	if clean {
		return string(b)
	}
	out := make([]byte, len(b))
	for i, c := range b {
		if c < ' ' || c == 0x7f {
			c = ' '
		}
		out[i] = c
	}
	return string(out)
}

// cutEnhanced removes a leading RFC 3463 enhanced status code
// ("class.subject.detail", class matching the first digit of code) from
// text. Text without one is returned unchanged.
func cutEnhanced(code int, text string) (enhanced, rest string) {
	end := strings.IndexByte(text, ' ')
	if end < 0 {
		end = len(text)
	}
	candidate := text[:end]
	if !validEnhanced(candidate) || int(candidate[0]-'0') != code/100 {
		return "", text
	}
	return candidate, strings.TrimLeft(text[end:], " ")
}

// validEnhanced reports whether s has the RFC 3463 section 2 syntax: class
// 2, 4 or 5, then subject and detail of 1 to 3 digits each.
func validEnhanced(s string) bool {
	parts := strings.Split(s, ".")
	if len(parts) != 3 || len(parts[0]) != 1 || !strings.Contains("245", parts[0]) {
		return false
	}
	for _, p := range parts[1:] {
		if len(p) < 1 || len(p) > 3 {
			return false
		}
		for _, c := range []byte(p) {
			if c < '0' || c > '9' {
				return false
			}
		}
	}
	return true
}
