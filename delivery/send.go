package delivery

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
)

// transaction is the state of one Send: which recipients the server
// accepted and which results are final.
type transaction struct {
	job      *Job
	results  []Result
	final    []bool // results[i] will not change any more
	accepted []int  // indexes of recipients that got 250 or 251 to RCPT
	sent     []int  // indexes of recipients whose RCPT went out
}

// Send runs one mail transaction (RFC 5321 section 3.3) and returns one
// Result per j.Rcpts entry, in the same order. A 4xx or 5xx reply to MAIL
// becomes the result of every recipient. A reply to DATA or to the final
// dot becomes the result of every recipient the server had accepted.
//
// With PIPELINING (RFC 2920) MAIL, every RCPT and DATA go out in one write
// before any reply is read. SIZE, BODY=8BITMIME, SMTPUTF8 and the DSN
// parameters (RFC 3461) are sent only when the server advertised them.
//
// The error is non-nil only when the connection failed: an I/O error, a
// timeout, a cancelled ctx, a 421, or a body that could not be read. Then
// every recipient without a final reply carries a 4xx result describing the
// failure, and the Conn is unusable. Otherwise the Conn can carry the next
// transaction; Send issues RSET first when this one ended halfway.
func (c *Conn) Send(ctx context.Context, j *Job) ([]Result, error) {
	tx := &transaction{
		job:     j,
		results: make([]Result, len(j.Rcpts)),
		final:   make([]bool, len(j.Rcpts)),
	}
	if c.broken != nil {
		err := fmt.Errorf("%w: %w", ErrConnBroken, c.broken)
		tx.failRest(connFailure(err))
		return tx.results, err
	}

	unbind := c.bind(ctx)
	defer unbind()

	err := c.send(tx)
	if err != nil {
		if ctxErr := ctx.Err(); ctxErr != nil {
			err = fmt.Errorf("%w (%w)", ctxErr, err)
		}
		c.broken = err
		// A 421 from the server explains the failure best. Any other
		// reply here (a 5xx to RSET, say) must not turn into a permanent
		// result for recipients that were never tried.
		var re *ReplyError
		if errors.As(err, &re) && re.Reply.Code/100 == 4 {
			tx.failRest(re.Reply)
		} else {
			tx.failRest(connFailure(err))
		}
		return tx.results, fmt.Errorf("delivery: sending to %s: %w", c.remote, err)
	}
	return tx.results, nil
}

// send returns an error only for connection-level failures.
func (c *Conn) send(tx *transaction) error {
	j := tx.job
	if c.needRSET {
		if err := c.Reset(); err != nil {
			return err
		}
	}

	// Decisions that need no round trip.
	if strings.ContainsAny(j.From, "\r\n<>") {
		tx.failRest(Result{Code: 553, Enhanced: "5.1.7", Text: "invalid sender address " + strconv.Quote(j.From)})
		return nil
	}
	if j.SMTPUTF8 && !c.ext.smtpUTF8 {
		// RFC 6531 section 3.2: a message that needs SMTPUTF8 cannot go to
		// a server that lacks it.
		tx.failRest(Result{Code: 553, Enhanced: "5.6.7", Text: "server does not support SMTPUTF8"})
		return nil
	}
	if size := j.Size + int64(len(j.Prepend)); c.ext.maxSize > 0 && size > c.ext.maxSize {
		// RFC 1870 section 6: do not transmit a message the server
		// announced it would reject.
		tx.failRest(Result{Code: 552, Enhanced: "5.3.4",
			Text: fmt.Sprintf("message size %d exceeds the server's limit of %d octets", size, c.ext.maxSize)})
		return nil
	}
	rcptLines := make([]string, 0, len(j.Rcpts))
	for i, r := range j.Rcpts {
		if r.Addr == "" || strings.ContainsAny(r.Addr, "\r\n<>") {
			tx.results[i] = Result{Code: 553, Enhanced: "5.1.3", Text: "invalid recipient address " + strconv.Quote(r.Addr)}
			tx.final[i] = true
			continue
		}
		tx.sent = append(tx.sent, i)
		rcptLines = append(rcptLines, "RCPT TO:<"+r.Addr+">"+c.rcptParams(r))
	}
	if len(tx.sent) == 0 {
		return nil
	}
	mail := "MAIL FROM:<" + j.From + ">" + c.mailParams(j)

	var dataReply reply
	var err error
	if c.ext.pipelining {
		dataReply, err = c.envelopePipelined(tx, mail, rcptLines)
	} else {
		dataReply, err = c.envelope(tx, mail, rcptLines)
	}
	if err != nil || dataReply.code == 0 {
		return err
	}

	if dataReply.code != 354 {
		tx.setAccepted(dataReply.result())
		c.needRSET = true
		return nil
	}
	return c.data(tx)
}

// envelope sends MAIL, RCPT and DATA one at a time, for servers without
// PIPELINING. A zero reply means the transaction ended before DATA.
func (c *Conn) envelope(tx *transaction, mail string, rcptLines []string) (reply, error) {
	rep, err := c.step(mail, c.commandTimeout())
	if err != nil {
		return reply{}, err
	}
	if rep.code != 250 {
		tx.failRest(rep.result())
		return reply{}, nil
	}
	c.needRSET = true

	for k, line := range rcptLines {
		rep, err := c.step(line, c.commandTimeout())
		if err != nil {
			return reply{}, err
		}
		tx.setRcpt(tx.sent[k], rep)
	}
	if len(tx.accepted) == 0 {
		return reply{}, nil
	}
	return c.step("DATA", durationOr(c.opts.DataInitTimeout, defaultDataInitTimeout))
}

// pipelineSyncLimit is the size of a pipelined envelope, in octets, up to
// which it is written completely before any reply is read. RFC 2920 section
// 3.1 forbids a client to block writing while the server blocks writing
// replies the client does not read. An envelope this small fits in the initial Linux TCP
// send buffer (16 KiB, the default of net.ipv4.tcp_wmem), which the previous
// transaction has drained by the time its final reply arrived, so the write
// completes without waiting for the server. A larger envelope is written by
// a second goroutine while the replies are read.
const pipelineSyncLimit = 8 << 10

// envelopePipelined writes MAIL, every RCPT and DATA at once (RFC 2920
// section 3.1) and then reads their replies in order.
func (c *Conn) envelopePipelined(tx *transaction, mail string, rcptLines []string) (reply, error) {
	lines := make([]string, 0, len(rcptLines)+2)
	lines = append(lines, mail)
	lines = append(lines, rcptLines...)
	lines = append(lines, "DATA")
	size := 0
	for _, l := range lines {
		size += len(l) + 2
	}

	var mailRep, dataRep reply
	if size <= pipelineSyncLimit {
		if err := c.writeLines(c.commandTimeout(), lines...); err != nil {
			return reply{}, err
		}
		var err error
		if mailRep, dataRep, err = c.readEnvelopeReplies(tx); err != nil {
			return reply{}, err
		}
	} else {
		written := make(chan error, 1)
		go func() { written <- c.writeLines(c.commandTimeout(), lines...) }()
		var readErr error
		mailRep, dataRep, readErr = c.readEnvelopeReplies(tx)
		if readErr != nil {
			// The connection is lost anyway. Closing it unblocks the
			// writer now instead of after its timeout.
			c.nc.Close()
		}
		writeErr := <-written
		if readErr != nil {
			return reply{}, readErr
		}
		if writeErr != nil {
			return reply{}, writeErr
		}
	}

	switch {
	case mailRep.code != 250:
		// The RCPT replies are 503s caused by the failed MAIL; the MAIL
		// reply is the one that explains the failure.
		tx.failRest(mailRep.result())
		if dataRep.code == 354 {
			return reply{}, c.abortData()
		}
		return reply{}, nil
	case len(tx.accepted) == 0:
		c.needRSET = true
		if dataRep.code == 354 {
			// RFC 2920 section 3.1: a server may accept DATA although
			// every RCPT failed; the client then sends an empty body.
			return reply{}, c.abortData()
		}
		return reply{}, nil
	}
	c.needRSET = true
	return dataRep, nil
}

// readEnvelopeReplies reads the replies to a pipelined MAIL, the RCPTs in
// tx.sent and DATA, recording the RCPT results in tx.
func (c *Conn) readEnvelopeReplies(tx *transaction) (mailRep, dataRep reply, err error) {
	mailRep, err = c.readStep(c.commandTimeout())
	if err != nil {
		return mailRep, dataRep, err
	}
	for _, i := range tx.sent {
		rep, err := c.readStep(c.commandTimeout())
		if err != nil {
			return mailRep, dataRep, err
		}
		if mailRep.code == 250 {
			tx.setRcpt(i, rep)
		}
	}
	dataRep, err = c.readStep(durationOr(c.opts.DataInitTimeout, defaultDataInitTimeout))
	return mailRep, dataRep, err
}

// abortData ends a DATA phase that should not have started with an empty
// message, whose reply does not matter.
func (c *Conn) abortData() error {
	_, err := c.step(".", durationOr(c.opts.DataTermTimeout, defaultDataTermTimeout))
	c.needRSET = true
	return err
}

// data sends Prepend, Body and the terminating dot, and applies the reply to
// every accepted recipient.
func (c *Conn) data(tx *transaction) error {
	j := tx.job
	c.dw.timeout = c.dataBlockTimeout()
	tw := &tailWriter{w: c.bw}

	if _, err := tw.Write(j.Prepend); err != nil {
		return err
	}
	if j.Body != nil {
		// TODO: send a body stored in a segment file with sendfile(2) when
		// the connection is plain TCP; io.Copy moves it through user space.
		if _, err := io.Copy(tw, j.Body); err != nil {
			var we *writeError
			if errors.As(err, &we) {
				return we.err
			}
			// NB: the dot must not follow a partial body, or the server
			// would deliver a truncated message. Dropping the connection
			// makes it discard the transaction (RFC 5321 section 3.8).
			c.nc.Close()
			tx.setAccepted(Result{Code: 451, Enhanced: "4.3.0", Text: "reading message body: " + err.Error()})
			return fmt.Errorf("reading message body: %w", err)
		}
	}
	// The body is wire form, so it should end in CRLF; if it does not,
	// the terminating dot still needs a line of its own.
	if tw.n > 0 && tw.tail != [2]byte{'\r', '\n'} {
		if _, err := c.bw.WriteString("\r\n"); err != nil {
			return err
		}
	}
	if _, err := c.bw.WriteString(".\r\n"); err != nil {
		return err
	}
	if err := c.bw.Flush(); err != nil {
		return err
	}

	rep, err := c.readStep(durationOr(c.opts.DataTermTimeout, defaultDataTermTimeout))
	if err != nil {
		return err
	}
	tx.setAccepted(rep.result())
	c.needRSET = false
	return nil
}

// step writes one command and reads its reply, turning a 421 into a
// connection-level error.
func (c *Conn) step(line string, timeout time.Duration) (reply, error) {
	if err := c.writeLines(timeout, line); err != nil {
		return reply{}, err
	}
	return c.readStep(timeout)
}

// readStep reads one reply. A 421 means the server is closing the
// connection (RFC 5321 section 3.8), so it is returned as an error.
func (c *Conn) readStep(timeout time.Duration) (reply, error) {
	rep, err := c.readReplyWithin(timeout)
	if err != nil {
		return rep, err
	}
	if rep.code == 421 {
		return rep, &ReplyError{Command: "transaction", Reply: rep.result()}
	}
	return rep, nil
}

func (tx *transaction) setRcpt(i int, rep reply) {
	tx.results[i] = rep.result()
	if rep.code == 250 || rep.code == 251 {
		tx.accepted = append(tx.accepted, i)
		return
	}
	tx.final[i] = true
}

// setAccepted gives every accepted recipient its final result.
func (tx *transaction) setAccepted(r Result) {
	for _, i := range tx.accepted {
		tx.results[i] = r
		tx.final[i] = true
	}
}

// failRest gives every recipient without a final result r.
func (tx *transaction) failRest(r Result) {
	for i := range tx.results {
		if !tx.final[i] {
			tx.results[i] = r
			tx.final[i] = true
		}
	}
}

// connFailure is the result given to recipients whose transaction was cut
// off by a connection failure. No server sent it, so it carries 4.4.2 (bad
// connection, RFC 3463) and the queue retries.
func connFailure(err error) Result {
	return Result{Code: 421, Enhanced: "4.4.2", Text: "connection failed: " + err.Error()}
}

// mailParams returns the MAIL FROM parameters the server supports, each
// with its leading space.
func (c *Conn) mailParams(j *Job) string {
	var b strings.Builder
	if c.ext.size && j.Size > 0 {
		b.WriteString(" SIZE=")
		b.WriteString(strconv.FormatInt(j.Size+int64(len(j.Prepend)), 10))
	}
	// NOTE: an 8-bit body goes out without BODY= when the server lacks
	// 8BITMIME; RFC 6152 would have the client downgrade it to 7 bit.
	if j.Body8Bit && c.ext.eightBit {
		b.WriteString(" BODY=8BITMIME")
	}
	if j.SMTPUTF8 && c.ext.smtpUTF8 {
		b.WriteString(" SMTPUTF8")
	}
	if c.ext.dsn {
		if ret := strings.ToUpper(j.Ret); ret == "FULL" || ret == "HDRS" {
			b.WriteString(" RET=")
			b.WriteString(ret)
		}
		if j.EnvID != "" {
			b.WriteString(" ENVID=")
			b.WriteString(xtext(j.EnvID))
		}
	}
	return b.String()
}

// rcptParams returns the RFC 3461 RCPT TO parameters when the server
// supports DSN.
func (c *Conn) rcptParams(r Rcpt) string {
	if !c.ext.dsn {
		return ""
	}
	var b strings.Builder
	if r.Notify != "" && !strings.ContainsAny(r.Notify, " \r\n") {
		b.WriteString(" NOTIFY=")
		b.WriteString(strings.ToUpper(r.Notify))
	}
	if r.ORcpt != "" {
		addrType, addr, ok := strings.Cut(r.ORcpt, ";")
		if !ok {
			addrType, addr = "rfc822", r.ORcpt
		}
		b.WriteString(" ORCPT=")
		b.WriteString(xtext(strings.TrimSpace(addrType)))
		b.WriteString(";")
		b.WriteString(xtext(strings.TrimSpace(addr)))
	}
	return b.String()
}

// xtext encodes s as RFC 3461 section 4 xtext: printable ASCII except "+"
// and "=" stays as is, every other octet becomes "+" and two uppercase hex
// digits.
func xtext(s string) string {
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= '!' && c <= '~' && c != '+' && c != '=' {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('+')
		b.WriteByte(hex[c>>4])
		b.WriteByte(hex[c&0xf])
	}
	return b.String()
}

// tailWriter remembers the last two octets written, so data can tell
// whether the body ended with CRLF. Write errors are wrapped in writeError
// to distinguish them from errors reading the body.
type tailWriter struct {
	w    io.Writer
	n    int64
	tail [2]byte
}

type writeError struct{ err error }

func (e *writeError) Error() string { return e.err.Error() }

func (t *tailWriter) Write(p []byte) (int, error) {
	n, err := t.w.Write(p)
	if n > 0 {
		t.n += int64(n)
		switch {
		case n >= 2:
			t.tail = [2]byte{p[n-2], p[n-1]}
		default:
			t.tail = [2]byte{t.tail[1], p[0]}
		}
	}
	if err != nil {
		return n, &writeError{err: err}
	}
	return n, nil
}
