package delivery

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"io"
	"strings"
	"time"
)

// maxHeaderLine is the length at which BuildDSN folds a generated header
// field, in octets: RFC 5322 section 2.1.1 recommends 78.
const maxHeaderLine = 78

// BuildDSN returns a delivery status notification (RFC 3464) in SMTP wire
// form: CRLF line ends, dot-stuffed, without the terminating ".\r\n", so it
// can be spooled and sent like any received message. The message is a
// multipart/report (RFC 6522) with report-type=delivery-status and three
// parts: a human-readable explanation, the message/delivery-status fields
// for every entry of p.Failed, and the original message, as message/rfc822
// when p.ReturnFull is set and as text/rfc822-headers otherwise (RFC 3461
// RET=HDRS). The third part is left out when p.Original is nil.
//
// p.Original is read to the end; it must be wire form, so its dot-stuffing
// is kept as it is. A part that contains 8-bit octets is labeled
// Content-Transfer-Encoding: 8bit, and the DSN then needs a server that
// offers 8BITMIME. p.Date is the Date header; zero means now.
//
// NOTE: the original is returned whole, however large. RFC 3462 allows
// truncating it, which a size limit here would do.
func BuildDSN(p DSNParams) []byte {
	boundary := newBoundary()
	date := p.Date
	if date.IsZero() {
		date = time.Now()
	}
	from := p.From
	if from == "" {
		from = "MAILER-DAEMON@" + p.ReportingMTA
	}
	delayed := len(p.Failed) > 0
	for _, f := range p.Failed {
		if !strings.EqualFold(f.Action, "delayed") {
			delayed = false
		}
	}
	subject := "Undelivered Mail Returned to Sender"
	if delayed {
		subject = "Delayed Mail (still being retried)"
	}
	human := humanReport(p, delayed)

	var b bytes.Buffer

	// Top-level header (RFC 3464 section 2; RFC 3834 section 5 for
	// Auto-Submitted, so autoresponders do not answer the DSN).
	writeField(&b, "From", "Mail Delivery System <"+from+">")
	writeField(&b, "To", "<"+p.To+">")
	writeField(&b, "Subject", subject)
	writeField(&b, "Date", date.Format(time.RFC1123Z))
	writeField(&b, "Message-ID", "<"+newBoundary()+"@"+p.ReportingMTA+">")
	writeField(&b, "Auto-Submitted", "auto-replied")
	writeField(&b, "MIME-Version", "1.0")
	writeField(&b, "Content-Type", `multipart/report; report-type=delivery-status; boundary="`+boundary+`"`)
	b.WriteString("\r\nThis is a MIME-encapsulated message.\r\n\r\n")

	// Part 1: text for people.
	b.WriteString("--" + boundary + "\r\n")
	writeField(&b, "Content-Description", "Notification")
	writeField(&b, "Content-Type", "text/plain; charset=utf-8")
	if has8Bit([]byte(human)) {
		writeField(&b, "Content-Transfer-Encoding", "8bit")
	}
	b.WriteString("\r\n")
	writeStuffed(&b, human)

	// Part 2: machine-readable fields (RFC 3464 section 2.2 per message,
	// section 2.3 per recipient; each group ends with an empty line).
	b.WriteString("\r\n--" + boundary + "\r\n")
	writeField(&b, "Content-Description", "Delivery report")
	writeField(&b, "Content-Type", "message/delivery-status")
	b.WriteString("\r\n")
	writeField(&b, "Reporting-MTA", "dns; "+p.ReportingMTA)
	if p.EnvID != "" {
		writeField(&b, "Original-Envelope-Id", p.EnvID)
	}
	if !p.Arrival.IsZero() {
		writeField(&b, "Arrival-Date", p.Arrival.Format(time.RFC1123Z))
	}
	for _, f := range p.Failed {
		b.WriteString("\r\n")
		if f.ORcpt != "" {
			writeField(&b, "Original-Recipient", typedAddress(f.ORcpt))
		}
		writeField(&b, "Final-Recipient", "rfc822; "+f.Addr)
		action := strings.ToLower(f.Action)
		if action == "" {
			action = "failed"
		}
		writeField(&b, "Action", action)
		writeField(&b, "Status", dsnStatus(f, action))
		if f.RemoteMTA != "" {
			writeField(&b, "Remote-MTA", "dns; "+f.RemoteMTA)
		}
		if f.Diagnostic != "" {
			writeField(&b, "Diagnostic-Code", "smtp; "+f.Diagnostic)
		}
	}

	// Part 3: the original, or its header.
	if p.Original != nil {
		original, err := io.ReadAll(p.Original)
		if err != nil {
			original = append(original, []byte("\r\n[original message unreadable: "+err.Error()+"]\r\n")...)
		}
		contentType := "message/rfc822"
		description := "Undelivered Message"
		if !p.ReturnFull {
			original = headerBlock(original)
			contentType = "text/rfc822-headers"
			description = "Undelivered Message Headers"
		}
		b.WriteString("\r\n--" + boundary + "\r\n")
		writeField(&b, "Content-Description", description)
		writeField(&b, "Content-Type", contentType)
		if has8Bit(original) {
			writeField(&b, "Content-Transfer-Encoding", "8bit")
		}
		b.WriteString("\r\n")
		b.Write(original)
		if len(original) > 0 && !bytes.HasSuffix(original, []byte("\r\n")) {
			b.WriteString("\r\n")
		}
	}
	// The CRLF before a boundary belongs to the delimiter (RFC 2046
	// section 5.1.1), so this one keeps the part's own last CRLF.
	b.WriteString("\r\n--" + boundary + "--\r\n")
	return b.Bytes()
}

// humanReport is the text of the first part, with "\n" line ends.
func humanReport(p DSNParams, delayed bool) string {
	var s strings.Builder
	s.WriteString("This is the mail delivery system at " + p.ReportingMTA + ".\n\n")
	if delayed {
		s.WriteString("Your message has not been delivered yet to the recipients below.\n")
		s.WriteString("The mail system keeps trying, so you need not send it again.\n\n")
	} else {
		s.WriteString("Your message could not be delivered to the recipients below.\n\n")
	}
	for _, f := range p.Failed {
		s.WriteString("<" + f.Addr + ">")
		if f.RemoteMTA != "" {
			s.WriteString(" (host " + f.RemoteMTA + ")")
		}
		s.WriteString(":\n")
		wrap(&s, "    ", oneLine(f.Diagnostic))
	}
	return s.String()
}

// wrap writes text as lines of about maxHeaderLine octets, each starting
// with indent. A word longer than a line gets a line of its own.
func wrap(s *strings.Builder, indent, text string) {
	line := indent
	for _, word := range strings.Fields(text) {
		if len(line) > len(indent) && len(line)+1+len(word) > maxHeaderLine {
			s.WriteString(line + "\n")
			line = indent
		}
		if len(line) > len(indent) {
			line += " "
		}
		line += word
	}
	s.WriteString(line + "\n")
}

// dsnStatus picks the Status field: the given one, else the enhanced code
// in the diagnostic, else a generic code for the action (RFC 3463).
func dsnStatus(f FailedRcpt, action string) string {
	if validEnhanced(f.Status) {
		return f.Status
	}
	if _, rest, ok := strings.Cut(f.Diagnostic, " "); ok && len(f.Diagnostic) >= 3 {
		enh, _, _ := strings.Cut(rest, " ")
		if validEnhanced(enh) {
			return enh
		}
	}
	if action == "failed" {
		return "5.0.0"
	}
	return "4.0.0"
}

// typedAddress formats an ORCPT value ("rfc822;addr" or a bare address) as
// RFC 3464 section 2.3.1 writes it: "rfc822; addr".
func typedAddress(v string) string {
	addrType, addr, ok := strings.Cut(v, ";")
	if !ok {
		return "rfc822; " + strings.TrimSpace(v)
	}
	return strings.TrimSpace(addrType) + "; " + strings.TrimSpace(addr)
}

// headerBlock returns the header of a wire-form message, up to and
// including the CRLF that ends its last field.
func headerBlock(msg []byte) []byte {
	if bytes.HasPrefix(msg, []byte("\r\n")) {
		return nil
	}
	if i := bytes.Index(msg, []byte("\r\n\r\n")); i >= 0 {
		return msg[:i+2]
	}
	return msg
}

// writeField writes "name: value" with CRLF, folded at spaces so lines stay
// near maxHeaderLine octets. Runs of white space collapse to one space and
// control characters become spaces, so text from a remote server cannot add
// header fields.
func writeField(b *bytes.Buffer, name, value string) {
	line := name + ":"
	for i, word := range strings.Fields(oneLine(value)) {
		if i > 0 && len(line)+1+len(word) > maxHeaderLine {
			b.WriteString(line)
			b.WriteString("\r\n")
			line = ""
		}
		line += " " + word
	}
	b.WriteString(line)
	b.WriteString("\r\n")
}

// oneLine replaces CR, LF and other control characters with spaces.
func oneLine(s string) string {
	return strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f {
			return ' '
		}
		return r
	}, s)
}

// writeStuffed writes text with "\n" line ends in wire form: CRLF line ends
// and a second dot before every line that starts with a dot (RFC 5321
// section 4.5.2). The text is expected to end with "\n".
func writeStuffed(b *bytes.Buffer, text string) {
	for line := range strings.Lines(text) {
		line = strings.TrimRight(line, "\r\n")
		if strings.HasPrefix(line, ".") {
			b.WriteByte('.')
		}
		b.WriteString(line)
		b.WriteString("\r\n")
	}
}

func has8Bit(b []byte) bool {
	for _, c := range b {
		if c >= 0x80 {
			return true
		}
	}
	return false
}

// newBoundary returns 24 random hex digits. A boundary of that entropy
// does not occur in the enclosed message by chance.
func newBoundary() string {
	var r [12]byte
	// Since Go 1.24 crypto/rand.Read crashes the program instead of
	// returning an error.
	_, _ = rand.Read(r[:])
	return hex.EncodeToString(r[:])
}
