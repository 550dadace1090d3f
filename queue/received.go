package queue

import (
	"net/netip"
	"strings"
	"time"

	"smta/spool"
)

// receivedHeader returns the trace header for our hop (RFC 5321 4.4), in
// wire form, folded so that no line exceeds the RFC 5322 2.1.1 limit for the
// usual lengths of its parts:
//
//	Received: from client.example ([192.0.2.1])
//		by relay.example (smta) with ESMTP id 01HX...
//		for <rcpt@example.com>; Fri, 04 Dec 2026 20:40:00 +0000
//
// The from clause is omitted for messages that did not arrive over SMTP
// (DSNs, the HTTP API). forRcpt is named only when the transaction has a
// single recipient, so one copy does not disclose the other recipients.
func receivedHeader(env *spool.Envelope, hostName, forRcpt string, now time.Time) []byte {
	var b strings.Builder
	b.Grow(160)
	b.WriteString("Received:")

	helo := sanitize(env.Helo)
	lit := ""
	if ap, err := netip.ParseAddrPort(env.ClientAddr); err == nil {
		lit = addrLiteral(ap.Addr())
	}
	if helo != "" || lit != "" {
		b.WriteString(" from ")
		switch {
		case helo == "":
			b.WriteString(lit)
		case lit == "":
			b.WriteString(helo)
		default:
			b.WriteString(helo + " (" + lit + ")")
		}
		b.WriteString("\r\n\t")
	} else {
		b.WriteString(" ")
	}

	b.WriteString("by ")
	b.WriteString(sanitize(hostName))
	b.WriteString(" (smta) with ")
	switch {
	case env.ClientAddr == "":
		b.WriteString("local")
	case env.SMTPUTF8:
		b.WriteString("UTF8SMTP") // RFC 6531 3.7.3
	default:
		b.WriteString("ESMTP")
	}
	if env.ID != "" {
		b.WriteString(" id ")
		b.WriteString(sanitize(env.ID))
	}
	if forRcpt != "" {
		b.WriteString("\r\n\tfor <")
		b.WriteString(sanitize(forRcpt))
		b.WriteString(">")
	}
	b.WriteString("; ")
	b.WriteString(now.Format(time.RFC1123Z))
	b.WriteString("\r\n")
	return []byte(b.String())
}

// addrLiteral formats an address as an RFC 5321 4.1.3 address literal.
func addrLiteral(a netip.Addr) string {
	a = a.Unmap()
	if a.Is6() {
		return "[IPv6:" + a.String() + "]"
	}
	return "[" + a.String() + "]"
}

// sanitize drops control characters, so a stored value cannot end the
// header line early or inject another header.
func sanitize(s string) string {
	if strings.IndexFunc(s, isControl) < 0 {
		return s
	}
	return strings.Map(func(r rune) rune {
		if isControl(r) {
			return -1
		}
		return r
	}, s)
}

func isControl(r rune) bool { return r < 0x20 || r == 0x7f }
