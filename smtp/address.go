package smtp

import (
	"errors"
	"net/netip"
	"unicode/utf8"
)

// maxPathLength is the longest reverse-path or forward-path, in octets
// including the angle brackets (RFC 5321 section 4.5.3.1.3).
//
// NOTE: the 64-octet local-part limit of section 4.5.3.1.1 is not
// enforced, because SRS and VERP senders can exceed it and section
// 4.5.3.1 advises servers to accept longer objects where they can.
const maxPathLength = 256

var (
	errPathSyntax  = errors.New("smtp: invalid path syntax")
	errNullPath    = errors.New("smtp: null path not allowed here")
	errPathTooLong = errors.New("smtp: path longer than 256 octets")
	errInvalidUTF8 = errors.New("smtp: path is not valid UTF-8")
)

// pathKind selects the grammar: a reverse-path may be "<>", a
// forward-path may be "<postmaster>".
type pathKind uint8

const (
	reversePath pathKind = iota // MAIL FROM
	forwardPath                 // RCPT TO
)

// path is a parsed reverse-path or forward-path.
type path struct {
	addr string // Mailbox as sent, source route removed; "" for "<>"
	utf8 bool   // addr has non-ASCII octets, which need SMTPUTF8 (RFC 6531)
}

// parsePath parses a Path at the start of b (RFC 5321 section 4.1.2):
//
//	Path         = "<" [ A-d-l ":" ] Mailbox ">"
//	Mailbox      = Local-part "@" ( Domain / address-literal )
//	Local-part   = Dot-string / Quoted-string
//
// with RFC 6531 UTF-8 allowed in atoms, quoted strings and domain labels.
// A source route (A-d-l) is checked and dropped, as RFC 5321 section
// 4.1.1.3 and appendix C allow. The rest of b must be empty or start with
// a space, where the parameters begin.
func parsePath(b []byte, kind pathKind) (p path, rest []byte, err error) {
	if len(b) == 0 || b[0] != '<' {
		return path{}, nil, errPathSyntax
	}
	i := 1

	if i < len(b) && b[i] == '>' {
		if kind != reversePath {
			return path{}, nil, errNullPath
		}
		return finishPath(b, i+1, path{})
	}

	// Source route: "@one,@two:".
	if i < len(b) && b[i] == '@' {
		for {
			end, ok := scanDomain(b, i+1)
			if !ok {
				return path{}, nil, errPathSyntax
			}
			i = end
			if i < len(b) && b[i] == ',' && i+1 < len(b) && b[i+1] == '@' {
				i++
				continue
			}
			if i < len(b) && b[i] == ':' {
				i++
				break
			}
			return path{}, nil, errPathSyntax
		}
	}
	start := i

	// RFC 5321 section 4.1.1.3: "<Postmaster>" without a domain is a valid
	// forward-path, in any case.
	if kind == forwardPath && start == 1 && len(b) >= 12 && equalFold(b[1:11], "POSTMASTER") && b[11] == '>' {
		return finishPath(b, 12, path{addr: string(b[1:11])})
	}

	end, ok := scanLocalPart(b, i)
	if !ok || end >= len(b) || b[end] != '@' {
		return path{}, nil, errPathSyntax
	}
	i = end + 1
	if i < len(b) && b[i] == '[' {
		end, ok = scanAddressLiteral(b, i)
	} else {
		end, ok = scanDomain(b, i)
	}
	if !ok || end >= len(b) || b[end] != '>' {
		return path{}, nil, errPathSyntax
	}

	mailbox := b[start:end]
	p = path{addr: string(mailbox), utf8: !isASCII(mailbox)}
	if p.utf8 && !utf8.Valid(mailbox) {
		return path{}, nil, errInvalidUTF8
	}
	return finishPath(b, end+1, p)
}

// finishPath checks the path length and what follows the closing bracket
// at b[end-1].
func finishPath(b []byte, end int, p path) (path, []byte, error) {
	if end > maxPathLength {
		return path{}, nil, errPathTooLong
	}
	rest := b[end:]
	if len(rest) > 0 && rest[0] != ' ' {
		return path{}, nil, errPathSyntax
	}
	return p, rest, nil
}

// scanLocalPart returns the end of the Local-part starting at b[i].
func scanLocalPart(b []byte, i int) (int, bool) {
	if i >= len(b) {
		return i, false
	}

	// Quoted-string: qtextSMTP is %d32-33 / %d35-91 / %d93-126, and
	// quoted-pairSMTP is "\" followed by %d32-126.
	if b[i] == '"' {
		for i++; i < len(b); i++ {
			c := b[i]
			switch {
			case c == '"':
				return i + 1, true
			case c == '\\':
				if i+1 >= len(b) || b[i+1] < 32 || b[i+1] > 126 {
					return i, false
				}
				i++
			case c >= 32 && c <= 126, c >= 0x80:
			default:
				return i, false
			}
		}
		return i, false
	}

	// Dot-string: atoms separated by single dots.
	atomStart := true
	for ; i < len(b); i++ {
		c := b[i]
		if isAtext(c) || c >= 0x80 {
			atomStart = false
			continue
		}
		if c != '.' || atomStart {
			break
		}
		atomStart = true
	}
	return i, !atomStart
}

// scanDomain returns the end of the Domain starting at b[i]: labels of
// letters, digits and hyphens (or UTF-8 U-labels), neither starting nor
// ending with a hyphen, at most 63 octets each and 255 in all.
func scanDomain(b []byte, i int) (int, bool) {
	start := i
	for {
		j := i
		for j < len(b) && (isLetDig(b[j]) || b[j] == '-' || b[j] >= 0x80) {
			j++
		}
		if j == i || b[i] == '-' || b[j-1] == '-' || j-i > 63 {
			return j, false
		}
		i = j
		if i+1 < len(b) && b[i] == '.' && b[i+1] != '.' {
			i++
			continue
		}
		return i, i-start <= 255
	}
}

// scanAddressLiteral returns the end of the address-literal starting at
// b[i] == '[' (RFC 5321 section 4.1.3): an IPv4 address, "IPv6:" and an
// IPv6 address, or a general literal "tag:content".
func scanAddressLiteral(b []byte, i int) (int, bool) {
	j := i + 1
	for j < len(b) && isDcontent(b[j]) {
		j++
	}
	if j >= len(b) || b[j] != ']' || j == i+1 {
		return j, false
	}
	content := b[i+1 : j]
	end := j + 1

	if v6, ok := cutPrefixFold(content, "IPV6:"); ok {
		a, err := netip.ParseAddr(string(v6))
		return end, err == nil && a.Is6() && a.Zone() == ""
	}
	if isIPv4Shape(content) {
		a, err := netip.ParseAddr(string(content))
		return end, err == nil && a.Is4()
	}

	// General-address-literal = Standardized-tag ":" 1*dcontent, where
	// the tag is an Ldh-str.
	colon := -1
	for k, c := range content {
		if c == ':' {
			colon = k
			break
		}
	}
	if colon <= 0 || colon == len(content)-1 {
		return end, false
	}
	tag := content[:colon]
	if tag[len(tag)-1] == '-' {
		return end, false
	}
	for _, c := range tag {
		if !isLetDig(c) && c != '-' {
			return end, false
		}
	}
	return end, true
}

func isIPv4Shape(b []byte) bool {
	for _, c := range b {
		if c != '.' && (c < '0' || c > '9') {
			return false
		}
	}
	return true
}

// isAtext reports whether c is an RFC 5322 atext character.
func isAtext(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	switch c {
	case '!', '#', '$', '%', '&', '\'', '*', '+', '-', '/', '=', '?', '^', '_', '`', '{', '|', '}', '~':
		return true
	}
	return false
}

func isLetDig(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
}

// isDcontent reports whether c may appear inside an address literal:
// %d33-90 / %d94-126 (RFC 5321 section 4.1.3).
func isDcontent(c byte) bool {
	return c >= 33 && c <= 90 || c >= 94 && c <= 126
}

func isASCII(b []byte) bool {
	for _, c := range b {
		if c >= 0x80 {
			return false
		}
	}
	return true
}
