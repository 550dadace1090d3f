package loadgen

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"
)

// client is one SMTP client connection of Send. It is owned by one worker
// goroutine.
type client struct {
	conn       net.Conn
	r          *bufio.Reader
	w          *bufio.Writer
	timeout    time.Duration // per reply
	pipelining bool          // requested and advertised by the server
}

// replyError is a reply that ended a transaction, kept with its code so
// Send can count errors by code.
type replyError struct {
	Code    int
	Line    string
	Command string
}

func (e *replyError) Error() string {
	return fmt.Sprintf("loadgen: %s rejected: %s", e.Command, e.Line)
}

// key is the key the error is counted under, such as "RCPT 451".
func (e *replyError) key() string {
	return e.Command + " " + strconv.Itoa(e.Code)
}

// errAllRejected fails a message whose recipients were all rejected
// without PIPELINING, where the client skips DATA. The rejections are
// counted per RCPT, so the message failure gets its own key.
var errAllRejected = errors.New("loadgen: every recipient was rejected")

// errKey is the key an error is counted under: the command and reply
// code, "all-rcpts-rejected", or "io" for connection failures, timeouts
// and malformed replies.
func errKey(err error) string {
	var re *replyError
	switch {
	case errors.Is(err, errAllRejected):
		return "all-rcpts-rejected"
	case errors.As(err, &re):
		return re.key()
	}
	return "io"
}

// txResult is the outcome of one transaction besides its error.
type txResult struct {
	accepted int           // recipients accepted with 250
	rejected []*replyError // recipients rejected
}

// newClient wraps conn. writeBuffer is in octets: Send uses 64 KiB so a
// whole message goes out in one write, idle connections use 4 KiB.
func newClient(conn net.Conn, timeout time.Duration, writeBuffer int) *client {
	return &client{
		conn:    conn,
		r:       bufio.NewReaderSize(conn, 4<<10),
		w:       bufio.NewWriterSize(conn, writeBuffer),
		timeout: timeout,
	}
}

// dialClient connects, reads the greeting and sends EHLO.
func dialClient(addr string, timeout time.Duration, pipelining bool, writeBuffer int) (*client, error) {
	conn, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return nil, fmt.Errorf("loadgen: connecting to %s: %w", addr, err)
	}
	c := newClient(conn, timeout, writeBuffer)
	if err := c.expect("greeting", 220); err != nil {
		conn.Close()
		return nil, err
	}
	c.w.WriteString("EHLO loadgen.localdomain\r\n")
	if err := c.w.Flush(); err != nil {
		conn.Close()
		return nil, fmt.Errorf("loadgen: sending EHLO: %w", err)
	}
	code, lines, err := c.readReply()
	if err != nil {
		conn.Close()
		return nil, err
	}
	if code != 250 {
		conn.Close()
		return nil, &replyError{Code: code, Line: lines[len(lines)-1], Command: "EHLO"}
	}
	for _, l := range lines {
		if len(l) > 4 && strings.EqualFold(strings.TrimSpace(l[4:]), "PIPELINING") {
			c.pipelining = pipelining
		}
	}
	return c, nil
}

// readReply reads one possibly multi-line reply (RFC 5321 section 4.2.1)
// and returns its code and lines.
func (c *client) readReply() (int, []string, error) {
	if err := c.conn.SetReadDeadline(time.Now().Add(c.timeout)); err != nil {
		return 0, nil, err
	}
	var lines []string
	for {
		line, err := c.r.ReadString('\n')
		if err != nil {
			return 0, nil, fmt.Errorf("loadgen: reading reply: %w", err)
		}
		line = strings.TrimRight(line, "\r\n")
		if len(line) < 3 {
			return 0, nil, fmt.Errorf("loadgen: malformed reply %q", line)
		}
		code, err := strconv.Atoi(line[:3])
		if err != nil || code < 200 || code > 599 {
			return 0, nil, fmt.Errorf("loadgen: malformed reply %q", line)
		}
		lines = append(lines, line)
		if len(line) == 3 || line[3] != '-' {
			return code, lines, nil
		}
	}
}

// expect reads one reply and returns a *replyError unless it has code want.
func (c *client) expect(command string, want int) error {
	code, lines, err := c.readReply()
	if err != nil {
		return err
	}
	if code != want {
		return &replyError{Code: code, Line: lines[len(lines)-1], Command: command}
	}
	return nil
}

// transaction sends one message. A nil error means the server replied 250
// to end of data. Rejected recipients are returned in the result and
// do not fail the message unless none was accepted. After a rejected
// transaction the connection is reset with RSET and stays usable; after
// any other error it must be closed.
func (c *client) transaction(from string, rcpts []string, body []byte) (txResult, error) {
	var res txResult
	fmt.Fprintf(c.w, "MAIL FROM:<%s> SIZE=%d\r\n", from, len(body))
	if c.pipelining {
		// RFC 2920: MAIL, every RCPT and DATA go in one write, then the
		// replies are read in order.
		for _, rcpt := range rcpts {
			fmt.Fprintf(c.w, "RCPT TO:<%s>\r\n", rcpt)
		}
		c.w.WriteString("DATA\r\n")
		if err := c.w.Flush(); err != nil {
			return res, fmt.Errorf("loadgen: sending envelope: %w", err)
		}
		mailErr := c.expect("MAIL", 250)
		if mailErr != nil && !isReply(mailErr) {
			return res, mailErr
		}
		for range rcpts {
			if err := c.countRcpt(&res, c.expect("RCPT", 250)); err != nil {
				return res, err
			}
		}
		if err := c.expect("DATA", 354); err != nil {
			return res, c.abort(firstErrOr(mailErr, err))
		}
	} else {
		if err := c.flushExpect("MAIL", 250); err != nil {
			return res, c.abort(err)
		}
		for _, rcpt := range rcpts {
			fmt.Fprintf(c.w, "RCPT TO:<%s>\r\n", rcpt)
			if err := c.countRcpt(&res, c.flushExpect("RCPT", 250)); err != nil {
				return res, err
			}
		}
		if res.accepted == 0 {
			c.w.WriteString("RSET\r\n")
			if err := c.flushExpect("RSET", 250); err != nil {
				return res, err
			}
			return res, errAllRejected
		}
		c.w.WriteString("DATA\r\n")
		if err := c.flushExpect("DATA", 354); err != nil {
			return res, c.abort(err)
		}
	}

	// Generated bodies need no dot-stuffing (see words) and end in CRLF.
	c.w.Write(body)
	c.w.WriteString(".\r\n")
	if err := c.flushExpect("end of data", 250); err != nil {
		return res, c.abort(err)
	}
	return res, nil
}

// countRcpt records the outcome of one RCPT and returns err only when it
// is not a reply, so the connection must be closed.
func (c *client) countRcpt(res *txResult, err error) error {
	var re *replyError
	switch {
	case err == nil:
		res.accepted++
	case errors.As(err, &re):
		res.rejected = append(res.rejected, re)
	default:
		return err
	}
	return nil
}

func isReply(err error) bool {
	var re *replyError
	return errors.As(err, &re)
}

func firstErrOr(first, err error) error {
	if first != nil {
		return first
	}
	return err
}

// abort resets the transaction after a rejection so the connection stays
// usable, and returns err.
func (c *client) abort(err error) error {
	var re *replyError
	if !errors.As(err, &re) {
		return err
	}
	c.w.WriteString("RSET\r\n")
	if rerr := c.flushExpect("RSET", 250); rerr != nil {
		return errors.Join(err, rerr)
	}
	return err
}

func (c *client) flushExpect(command string, want int) error {
	if err := c.w.Flush(); err != nil {
		return fmt.Errorf("loadgen: sending %s: %w", command, err)
	}
	return c.expect(command, want)
}

// quit sends QUIT and closes the connection, waiting at most the reply
// timeout for the 221.
func (c *client) quit() {
	c.w.WriteString("QUIT\r\n")
	if c.w.Flush() == nil {
		c.readReply()
	}
	c.conn.Close()
}
