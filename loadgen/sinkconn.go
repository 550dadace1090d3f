package loadgen

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"strconv"
	"time"
)

// sinkState is the SMTP session state of one sink connection.
type sinkState int

const (
	stateIdle sinkState = iota // initial: greeted, no transaction
	stateMail                  // MAIL accepted, waiting for RCPT or DATA
)

// maxCommandLine is the command line limit of RFC 5321 section
// 4.5.3.1.4 (512 octets with CRLF), with slack for ESMTP parameters.
const maxCommandLine = 4096

// maxTextLine is the text line limit of RFC 5321 section 4.5.3.1.6 (1000
// octets with CRLF). Longer lines are counted as malformed, not rejected.
const maxTextLine = 1000

// sinkConn is one connection's session. It is owned by its goroutine.
type sinkConn struct {
	sink *Sink
	conn net.Conn
	r    *bufio.Reader
	w    *bufio.Writer
	rng  *rand.Rand

	state sinkState
	rcpts int // accepted recipients in the current transaction
}

func newSinkConn(s *Sink, c net.Conn, seq uint64) *sinkConn {
	return &sinkConn{
		sink: s,
		conn: c,
		r:    bufio.NewReaderSize(c, 64<<10),
		w:    bufio.NewWriterSize(c, 16<<10),
		rng:  rand.New(rand.NewPCG(s.cfg.Seed, seq)),
	}
}

// serve runs the session until QUIT, a read or write error, or Close.
func (c *sinkConn) serve() {
	if d := c.sink.cfg.GreetingDelay; d > 0 {
		time.Sleep(d)
	}
	c.reply("220 sink.localdomain ESMTP smta-loadgen sink")
	if err := c.w.Flush(); err != nil {
		return
	}

	for {
		if err := c.conn.SetReadDeadline(time.Now().Add(c.sink.cfg.IdleTimeout)); err != nil {
			return
		}
		line, err := c.readCommand()
		if err != nil {
			if errors.Is(err, errLineTooLong) {
				c.sink.protocolErrors.Add(1)
				c.reply("500 5.5.2 line too long")
				c.w.Flush()
			}
			return
		}
		quit := c.handle(line)

		// Flush only when the client has nothing more buffered, so
		// pipelined commands get their replies in one write.
		if quit || c.r.Buffered() == 0 {
			if err := c.w.Flush(); err != nil {
				return
			}
		}
		if quit {
			return
		}
	}
}

var errLineTooLong = errors.New("loadgen: command line too long")

// readCommand returns one command line without CRLF. The slice is only
// valid until the next read.
func (c *sinkConn) readCommand() ([]byte, error) {
	line, err := c.r.ReadSlice('\n')
	if errors.Is(err, bufio.ErrBufferFull) || len(line) > maxCommandLine {
		return nil, errLineTooLong
	}
	if err != nil {
		return nil, err
	}
	return bytes.TrimRight(line, "\r\n"), nil
}

// reply queues one reply line; write errors surface at Flush.
func (c *sinkConn) reply(line string) {
	c.w.WriteString(line)
	c.w.WriteString("\r\n")
}

// handle runs one command and reports whether the session ends.
func (c *sinkConn) handle(line []byte) (quit bool) {
	verb, arg, _ := bytes.Cut(line, []byte(" "))
	switch string(bytes.ToUpper(verb)) {
	case "EHLO":
		c.reset()
		c.reply("250-sink.localdomain")
		c.reply("250-PIPELINING")
		c.reply("250-8BITMIME")
		c.reply("250-ENHANCEDSTATUSCODES")
		c.reply("250 SIZE " + strconv.Itoa(sinkMaxSize))
	case "HELO":
		c.reset()
		c.reply("250 sink.localdomain")
	case "MAIL":
		c.handleMail(arg)
	case "RCPT":
		c.handleRcpt(arg)
	case "DATA":
		return c.handleData()
	case "RSET":
		c.reset()
		c.reply("250 2.0.0 ok")
	case "NOOP":
		c.reply("250 2.0.0 ok")
	case "QUIT":
		c.reply("221 2.0.0 bye")
		return true
	default:
		c.sink.protocolErrors.Add(1)
		c.reply("502 5.5.1 command not implemented")
	}
	return false
}

func (c *sinkConn) reset() {
	c.state = stateIdle
	c.rcpts = 0
}

func (c *sinkConn) handleMail(arg []byte) {
	if c.state != stateIdle {
		c.sink.protocolErrors.Add(1)
		c.reply("503 5.5.1 nested MAIL command")
		return
	}
	if !hasPrefixFold(arg, "FROM:") {
		c.sink.protocolErrors.Add(1)
		c.reply("501 5.5.4 syntax: MAIL FROM:<address>")
		return
	}
	size, err := parseSizeParam(arg)
	if err != nil {
		c.sink.protocolErrors.Add(1)
		c.reply("501 5.5.4 invalid SIZE parameter")
		return
	}
	if size > sinkMaxSize {
		c.reply("552 5.3.4 message size exceeds fixed maximum message size")
		return
	}
	c.state = stateMail
	c.rcpts = 0
	c.reply("250 2.1.0 ok")
}

func (c *sinkConn) handleRcpt(arg []byte) {
	if c.state != stateMail {
		c.sink.protocolErrors.Add(1)
		c.reply("503 5.5.1 need MAIL before RCPT")
		return
	}
	if !hasPrefixFold(arg, "TO:") {
		c.sink.protocolErrors.Add(1)
		c.reply("501 5.5.4 syntax: RCPT TO:<address>")
		return
	}
	if c.rcpts >= sinkMaxRecipients {
		c.reply("452 4.5.3 too many recipients")
		return
	}

	// One draw decides both injections, so the shares are exact in
	// expectation: [0, TempFail) fails temporarily, the next PermFail
	// fails permanently.
	cfg := &c.sink.cfg
	if cfg.TempFail > 0 || cfg.PermFail > 0 {
		x := c.rng.Float64()
		switch {
		case x < cfg.TempFail:
			c.sink.tempFailed.Add(1)
			c.reply("451 4.3.0 injected temporary failure")
			return
		case x < cfg.TempFail+cfg.PermFail:
			c.sink.permFailed.Add(1)
			c.reply("550 5.1.1 injected permanent failure")
			return
		}
	}
	c.rcpts++
	c.reply("250 2.1.5 ok")
}

// handleData reads the message after 354 and replies at end of data.
func (c *sinkConn) handleData() (quit bool) {
	if c.state != stateMail || c.rcpts == 0 {
		c.sink.protocolErrors.Add(1)
		c.reply("554 5.5.1 no valid recipients")
		return false
	}
	c.reply("354 end data with <CR><LF>.<CR><LF>")
	if err := c.w.Flush(); err != nil {
		return true
	}

	var check structureCheck
	size, err := c.readBody(&check)
	if err != nil {
		return true
	}
	malformed := false
	if !c.sink.cfg.CountOnly {
		malformed = !check.valid()
	}

	if d := c.sink.cfg.Latency; d > 0 {
		time.Sleep(d)
	}
	c.sink.recordMessage(c.rcpts, size, malformed)
	c.reply("250 2.0.0 ok: queued")
	c.reset()
	return false
}

// readBody reads DATA lines up to the lone "." line, undoing dot-stuffing
// (RFC 5321 section 4.5.2), and returns the message size in octets.
func (c *sinkConn) readBody(check *structureCheck) (int64, error) {
	var size int64
	lineStart := true // the next octet starts a line
	lineLength := 0
	for {
		if err := c.conn.SetReadDeadline(time.Now().Add(c.sink.cfg.IdleTimeout)); err != nil {
			return size, err
		}
		chunk, err := c.r.ReadSlice('\n')
		if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
			return size, err
		}
		full := err == nil // chunk ends a line

		if lineStart {
			if full && (string(chunk) == ".\r\n" || string(chunk) == ".\n") {
				return size, nil
			}
			if len(chunk) > 0 && chunk[0] == '.' {
				chunk = chunk[1:]
			}
			lineLength = 0
		}
		lineLength += len(chunk)
		size += int64(len(chunk))
		if !c.sink.cfg.CountOnly {
			check.feed(chunk, lineStart, full, lineLength)
		}
		lineStart = full
	}
}

// structureCheck tracks the RFC 5322 properties a sink can check in one
// pass. Lines must end in CRLF and be at most 998 octets long. The header
// section must consist of "name: value" fields or folded continuations,
// end with an empty line, and contain Date and From (section 3.6).
type structureCheck struct {
	inBody   bool
	bad      bool
	haveDate bool
	haveFrom bool
}

func (s *structureCheck) feed(chunk []byte, lineStart, full bool, lineLength int) {
	if lineLength > maxTextLine {
		s.bad = true
	}
	if full && !bytes.HasSuffix(chunk, []byte("\r\n")) {
		s.bad = true // bare LF
	}
	if s.inBody || !lineStart {
		return
	}
	switch {
	case string(chunk) == "\r\n" || string(chunk) == "\n":
		s.inBody = true
	case chunk[0] == ' ' || chunk[0] == '\t':
		// Folded continuation of the previous field.
	default:
		name, _, ok := bytes.Cut(chunk, []byte(":"))
		if !ok || len(name) == 0 || bytes.ContainsAny(name, " \t") {
			s.bad = true
			return
		}
		switch {
		case bytes.EqualFold(name, []byte("Date")):
			s.haveDate = true
		case bytes.EqualFold(name, []byte("From")):
			s.haveFrom = true
		}
	}
}

// valid reports the check's verdict. A message with headers only (no
// empty line) is valid: RFC 5322 makes the body optional.
func (s *structureCheck) valid() bool {
	return !s.bad && s.haveDate && s.haveFrom
}

func hasPrefixFold(b []byte, prefix string) bool {
	return len(b) >= len(prefix) && bytes.EqualFold(b[:len(prefix)], []byte(prefix))
}

// parseSizeParam returns the SIZE= value of a MAIL command (RFC 1870), 0
// when absent.
func parseSizeParam(arg []byte) (int64, error) {
	for _, field := range bytes.Fields(arg) {
		if hasPrefixFold(field, "SIZE=") {
			n, err := strconv.ParseInt(string(field[len("SIZE="):]), 10, 64)
			if err != nil || n < 0 {
				return 0, fmt.Errorf("loadgen: invalid SIZE parameter %q", field)
			}
			return n, nil
		}
	}
	return 0, nil
}
