package loadgen

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"time"
)

// MessageParams describe one generated message.
type MessageParams struct {
	From      string
	To        []string
	MessageID string // without angle brackets
	Date      time.Time
	Size      int // target size in octets, including headers
}

// bodyLineLength is the length of generated body lines before CRLF. RFC
// 5322 section 2.1.1 limits lines to 998 octets and recommends 78; real
// mail clients wrap near 72.
const bodyLineLength = 72

// words is the vocabulary of generated bodies. No word starts with '.', so
// no body line ever needs dot-stuffing and the message can be written to
// DATA unchanged.
var words = strings.Fields(`the queue relay message delivery recipient sender
	domain server client connection report invoice order shipment account
	update weekly summary meeting schedule project review status request
	thanks regards please find attached details below confirm payment
	received processed pending total amount customer support team notice`)

// AppendMessage appends an RFC 5322 message of about p.Size octets to buf
// and returns the extended buffer. Lines end in CRLF, header fields come
// first (Date, From, To, Subject, Message-ID, MIME-Version, Content-Type),
// and the body is plain text in lines of at most bodyLineLength octets.
// The result is exactly p.Size octets long when p.Size exceeds the header
// length by 2 or more, so byte counts on both sides of a benchmark agree.
// Otherwise the message is the headers and an empty body.
func AppendMessage(buf []byte, p MessageParams, r *rand.Rand) []byte {
	start := len(buf)
	buf = fmt.Appendf(buf, "Date: %s\r\n", p.Date.Format(time.RFC1123Z))
	buf = fmt.Appendf(buf, "From: <%s>\r\n", p.From)
	buf = append(buf, "To: "...)
	for i, to := range p.To {
		if i > 0 {
			// Fold after each address: a To field with many recipients
			// must still respect the line length limit.
			buf = append(buf, ",\r\n "...)
		}
		buf = fmt.Appendf(buf, "<%s>", to)
	}
	buf = append(buf, "\r\n"...)
	buf = fmt.Appendf(buf, "Subject: load test message %s\r\n", p.MessageID)
	buf = fmt.Appendf(buf, "Message-ID: <%s>\r\n", p.MessageID)
	buf = append(buf, "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n"...)

	// Copy whole lines from the shared body text, then write the last
	// line or two word by word so the total comes out exact.
	pool := bodyText()
	off := r.IntN(len(pool)/bodyLineWithCRLF) * bodyLineWithCRLF
	for remaining := p.Size - (len(buf) - start); remaining > 2*bodyLineWithCRLF; remaining = p.Size - (len(buf) - start) {
		n := min((remaining-bodyLineWithCRLF)/bodyLineWithCRLF*bodyLineWithCRLF, len(pool)-off)
		buf = append(buf, pool[off:off+n]...)
		off = (off + n) % len(pool)
	}

	// Fill the rest with word lines until the target size is reached. A
	// line is shortened when a full one would leave a single octet, so the
	// total comes out exact (a remainder of 2 becomes an empty line).
	for remaining := p.Size - (len(buf) - start); remaining > 0; remaining = p.Size - (len(buf) - start) {
		lineLength := min(bodyLineLength, remaining-2)
		if remaining-(lineLength+2) == 1 && lineLength > 1 {
			lineLength--
		}
		if lineLength > 0 {
			buf = appendWordLine(buf, lineLength, r)
		}
		buf = append(buf, "\r\n"...)
	}
	return buf
}

// bodyLineWithCRLF is the length of a full body line with its CRLF.
const bodyLineWithCRLF = bodyLineLength + 2

// bodyText returns 1 MiB or so of word lines, generated once with a fixed
// seed. Copying from it makes a 10 KiB message cost a few microseconds,
// so the generator does not limit the measured rate.
var bodyText = sync.OnceValue(func() []byte {
	const lines = 16384
	r := rand.New(rand.NewPCG(0x5eed, 1))
	text := make([]byte, 0, lines*bodyLineWithCRLF)
	for range lines {
		text = appendWordLine(text, bodyLineLength, r)
		text = append(text, "\r\n"...)
	}
	return text
})

// appendWordLine appends exactly n octets of space-separated words.
func appendWordLine(buf []byte, n int, r *rand.Rand) []byte {
	end := len(buf) + n
	for len(buf) < end {
		if len(buf) > end-n {
			buf = append(buf, ' ')
		}
		w := words[r.IntN(len(words))]
		buf = append(buf, w[:min(len(w), end-len(buf))]...)
	}
	return buf
}
