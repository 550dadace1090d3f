package delivery

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// Default timeouts from RFC 5321 section 4.5.3.2, used where DialOptions
// leaves a field zero.
const (
	defaultConnectTimeout   = 5 * time.Minute  // initial 220 greeting
	defaultCommandTimeout   = 5 * time.Minute  // MAIL, RCPT, EHLO, RSET and the like
	defaultDataInitTimeout  = 2 * time.Minute  // 354 reply to DATA
	defaultDataBlockTimeout = 3 * time.Minute  // each write of the body
	defaultDataTermTimeout  = 10 * time.Minute // reply to the final dot
	quitTimeout             = 30 * time.Second // QUIT is a courtesy, so it gets less time
)

// ErrConnBroken is returned by Send, Reset and Quit after an earlier
// connection-level failure. The caller closes the connection and dials again.
var ErrConnBroken = errors.New("delivery: connection no longer usable")

// ReplyError is a reply that ended a dial or a command outside a
// transaction, such as a 554 greeting, a rejected EHLO or a 421.
type ReplyError struct {
	Command string // "greeting", "EHLO", "HELO", "STARTTLS", "RSET" or "QUIT"
	Reply   Result
}

func (e *ReplyError) Error() string {
	return fmt.Sprintf("delivery: %s rejected: %s", e.Command, e.Reply)
}

// extensions are the EHLO keywords the client acts on (RFC 5321 section
// 4.1.1.1 and the extension RFCs named per field).
type extensions struct {
	pipelining bool  // RFC 2920
	size       bool  // RFC 1870
	maxSize    int64 // octets, 0 when SIZE has no limit
	eightBit   bool  // RFC 6152 8BITMIME
	smtpUTF8   bool  // RFC 6531
	dsn        bool  // RFC 3461
	startTLS   bool  // RFC 3207
	enhanced   bool  // RFC 2034 ENHANCEDSTATUSCODES
}

// parseEHLO reads the keywords from the lines of a 250 EHLO reply. The
// first line is the server's greeting and carries no keyword.
func parseEHLO(lines []string) extensions {
	var ext extensions
	for _, line := range lines[min(1, len(lines)):] {
		keyword, param, _ := strings.Cut(line, " ")
		switch strings.ToUpper(keyword) {
		case "PIPELINING":
			ext.pipelining = true
		case "SIZE":
			ext.size = true
			// A missing, malformed or negative limit means no limit
			// (RFC 1870 section 4).
			if n, err := strconv.ParseInt(strings.TrimSpace(param), 10, 64); err == nil && n > 0 {
				ext.maxSize = n
			}
		case "8BITMIME":
			ext.eightBit = true
		case "SMTPUTF8":
			ext.smtpUTF8 = true
		case "DSN":
			ext.dsn = true
		case "STARTTLS":
			ext.startTLS = true
		case "ENHANCEDSTATUSCODES":
			ext.enhanced = true
		}
	}
	return ext
}

// Conn is an outbound SMTP connection that carries one transaction at a time
// and can be reused for the next one. It is not safe for concurrent use: one
// delivery goroutine owns it from Dial to Close.
//
// The life of a Conn:
//
//  1. Dial connects, reads the greeting, sends EHLO (HELO as the fallback)
//     and optionally upgrades with STARTTLS and a second EHLO. The EHLO
//     reply decides which extensions Send uses.
//  2. Send runs MAIL, RCPT and DATA, pipelined when offered, then streams
//     Prepend and Body with a per-write timeout, then the final dot.
//  3. Send may run again. If the previous transaction stopped after MAIL
//     was accepted, the next Send begins with RSET.
//  4. Quit or Close ends the connection.
//
// Invariants:
//
//   - Send returns exactly one Result per recipient, in order, on every
//     path, including connection failures.
//   - After the first connection-level failure the Conn is broken: every
//     later Send returns ErrConnBroken and 421 results without touching the
//     socket, because the protocol state is unknown.
//   - The final dot is written only after the whole body was read. A body
//     read error drops the connection instead, so no truncated message is
//     delivered.
//
// The standard library's net/smtp was rejected as the base. Its Client
// sends one command per round trip without PIPELINING and has neither DSN
// parameters nor timeouts of its own, and SendMail stops at the first
// rejected recipient instead of returning a reply per recipient.
type Conn struct {
	// Immutable after Dial.
	opts   DialOptions
	remote netip.AddrPort
	local  netip.AddrPort

	// Owned by the goroutine using the Conn. nc, br and bw change only when
	// STARTTLS wraps the connection.
	nc        net.Conn
	dw        *deadlineWriter
	br        *bufio.Reader
	bw        *bufio.Writer
	ext       extensions
	esmtp     bool   // the server accepted EHLO; false after the HELO fallback
	tlsProto  string // "" until STARTTLS succeeds
	tlsCipher string
	needRSET  bool  // a transaction was left open, so RSET comes before MAIL
	broken    error // first connection-level failure; the Conn is unusable
}

// Dial connects to addr ("ip:port"), binding the local end to o.SourceIP
// when set, reads the greeting and introduces itself with EHLO, falling back
// to HELO when EHLO gets a 5xx (RFC 5321 section 3.2). When o.UseTLS is set
// and the server offers STARTTLS, it upgrades the connection without
// certificate verification and sends EHLO again (RFC 3207 section 4.2).
//
// TLS is opportunistic: a refused STARTTLS leaves the connection in plain
// text, and a failed handshake makes Dial connect once more without TLS.
// A rejecting reply is returned as *ReplyError.
func Dial(ctx context.Context, addr string, o DialOptions) (*Conn, error) {
	c, err := dial(ctx, addr, o, o.UseTLS)
	var tlsErr *tlsHandshakeError
	if errors.As(err, &tlsErr) {
		slog.Warn("delivery: starttls handshake failed, retrying in plain text",
			"addr", addr, "err", tlsErr.err)
		return dial(ctx, addr, o, false)
	}
	return c, err
}

type tlsHandshakeError struct{ err error }

func (e *tlsHandshakeError) Error() string {
	return "delivery: starttls handshake: " + e.err.Error()
}

func (e *tlsHandshakeError) Unwrap() error { return e.err }

func dial(ctx context.Context, addr string, o DialOptions, useTLS bool) (*Conn, error) {
	if o.HeloName == "" {
		o.HeloName = "localhost"
	}
	d := net.Dialer{Timeout: durationOr(o.Timeout, defaultConnectTimeout)}
	if o.SourceIP.IsValid() {
		d.LocalAddr = &net.TCPAddr{IP: o.SourceIP.AsSlice(), Zone: o.SourceIP.Zone()}
	}
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("delivery: connecting to %s: %w", addr, err)
	}
	c := &Conn{opts: o, nc: nc}
	c.setStreams(nc)
	if ta, ok := nc.RemoteAddr().(*net.TCPAddr); ok {
		c.remote = ta.AddrPort()
	}
	if ta, ok := nc.LocalAddr().(*net.TCPAddr); ok {
		c.local = ta.AddrPort()
	}

	stop := c.bind(ctx)
	defer stop()

	if err := c.handshake(useTLS); err != nil {
		nc.Close()
		if ctxErr := ctx.Err(); ctxErr != nil {
			return nil, fmt.Errorf("delivery: dialing %s: %w", addr, ctxErr)
		}
		return nil, fmt.Errorf("delivery: dialing %s: %w", addr, err)
	}
	return c, nil
}

// handshake runs greeting, EHLO or HELO, and the optional STARTTLS.
func (c *Conn) handshake(useTLS bool) error {
	greeting, err := c.readReplyWithin(durationOr(c.opts.Timeout, defaultConnectTimeout))
	if err != nil {
		return fmt.Errorf("reading greeting: %w", err)
	}
	if greeting.code != 220 {
		return &ReplyError{Command: "greeting", Reply: greeting.result()}
	}
	if err := c.hello(); err != nil {
		return err
	}
	if !useTLS || !c.ext.startTLS {
		return nil
	}

	rep, err := c.command("STARTTLS", c.commandTimeout())
	if err != nil {
		return err
	}
	if rep.code != 220 {
		// Opportunistic TLS: a refusal leaves a usable plain connection.
		return nil
	}
	tc := tls.Client(c.nc, &tls.Config{
		ServerName: c.opts.ServerName,
		// Opportunistic STARTTLS between MTAs (RFC 7435): encryption
		// against passive observers without authentication, because many
		// receiving MTAs present self-signed certificates or names that do
		// not match their MX records.
		InsecureSkipVerify: true,
		MinVersion:         tls.VersionTLS12,
	})
	_ = tc.SetDeadline(time.Now().Add(c.commandTimeout()))
	if err := c.dw.cancelled(); err != nil {
		return err
	}
	if err := tc.Handshake(); err != nil {
		return &tlsHandshakeError{err: err}
	}
	state := tc.ConnectionState()
	c.tlsProto = tls.VersionName(state.Version)
	c.tlsCipher = tls.CipherSuiteName(state.CipherSuite)
	c.nc = tc
	c.setStreams(tc)

	// RFC 3207 section 4.2: forget everything learned before TLS.
	c.ext = extensions{}
	return c.hello()
}

// hello sends EHLO, and HELO when the server rejects EHLO with a 5xx.
func (c *Conn) hello() error {
	rep, err := c.command("EHLO "+c.opts.HeloName, c.commandTimeout())
	if err != nil {
		return err
	}
	if rep.code == 250 {
		c.esmtp = true
		c.ext = parseEHLO(rep.lines)
		return nil
	}
	if rep.code < 500 {
		return &ReplyError{Command: "EHLO", Reply: rep.result()}
	}

	rep, err = c.command("HELO "+c.opts.HeloName, c.commandTimeout())
	if err != nil {
		return err
	}
	if rep.code != 250 {
		return &ReplyError{Command: "HELO", Reply: rep.result()}
	}
	c.esmtp = false
	c.ext = extensions{}
	return nil
}

func (c *Conn) setStreams(nc net.Conn) {
	var ctx context.Context
	if c.dw != nil {
		ctx = c.dw.ctx
	}
	c.dw = &deadlineWriter{nc: nc, timeout: c.dataBlockTimeout(), ctx: ctx}
	c.br = bufio.NewReaderSize(nc, maxReplyLine)
	c.bw = bufio.NewWriterSize(c.dw, 64<<10)
}

// command writes one command line and reads its reply.
func (c *Conn) command(line string, timeout time.Duration) (reply, error) {
	if err := c.writeLines(timeout, line); err != nil {
		return reply{}, err
	}
	return c.readReplyWithin(timeout)
}

// writeLines writes each line with CRLF and flushes them in one write.
func (c *Conn) writeLines(timeout time.Duration, lines ...string) error {
	c.dw.timeout = timeout
	for _, l := range lines {
		c.bw.WriteString(l)
		c.bw.WriteString("\r\n")
	}
	return c.bw.Flush()
}

func (c *Conn) readReplyWithin(timeout time.Duration) (reply, error) {
	if err := c.nc.SetReadDeadline(time.Now().Add(timeout)); err != nil {
		return reply{}, err
	}
	if err := c.dw.cancelled(); err != nil {
		return reply{}, err
	}
	return readReply(c.br)
}

// bind makes cancelling ctx interrupt the connection's blocked reads and
// writes at once, until the returned function is called.
//
// NB: every read and write sets its own deadline, which would override the
// past deadline set on cancellation. So each one checks ctx after setting
// its deadline: a cancellation before the check is seen there, and one
// after it sets the past deadline last.
func (c *Conn) bind(ctx context.Context) (unbind func()) {
	c.dw.ctx = ctx
	// c.nc is captured now, because STARTTLS may replace it on this
	// goroutine while the callback runs on another. Before STARTTLS it is
	// the TCP connection, whose deadline also stops the TLS layer on it.
	nc := c.nc
	stop := context.AfterFunc(ctx, func() { _ = nc.SetDeadline(time.Unix(1, 0)) })
	return func() {
		stop()
		c.dw.ctx = nil
	}
}

func (c *Conn) commandTimeout() time.Duration {
	return durationOr(c.opts.CommandTimeout, defaultCommandTimeout)
}

func (c *Conn) dataBlockTimeout() time.Duration {
	return durationOr(c.opts.DataBlockTimeout, defaultDataBlockTimeout)
}

func durationOr(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}

// deadlineWriter renews the write deadline before every write, so each
// block of the body gets its own timeout (RFC 5321 section 4.5.3.2.5)
// instead of one deadline for a message of any size.
type deadlineWriter struct {
	nc      net.Conn
	timeout time.Duration
	ctx     context.Context // set by bind; nil outside Dial and Send
}

func (w *deadlineWriter) Write(p []byte) (int, error) {
	if err := w.nc.SetWriteDeadline(time.Now().Add(w.timeout)); err != nil {
		return 0, err
	}
	if err := w.cancelled(); err != nil {
		return 0, err
	}
	return w.nc.Write(p)
}

func (w *deadlineWriter) cancelled() error {
	if w.ctx == nil {
		return nil
	}
	return w.ctx.Err()
}

// Reset sends RSET, ending any transaction the server still holds.
func (c *Conn) Reset() error {
	if c.broken != nil {
		return fmt.Errorf("%w: %w", ErrConnBroken, c.broken)
	}
	rep, err := c.command("RSET", c.commandTimeout())
	if err != nil {
		c.broken = err
		return fmt.Errorf("delivery: RSET: %w", err)
	}
	if rep.code != 250 {
		c.broken = &ReplyError{Command: "RSET", Reply: rep.result()}
		return c.broken
	}
	c.needRSET = false
	return nil
}

// Quit sends QUIT, waits briefly for the reply and closes the connection.
// The connection is closed even when QUIT fails.
func (c *Conn) Quit() error {
	defer c.Close()
	if c.broken != nil {
		return fmt.Errorf("%w: %w", ErrConnBroken, c.broken)
	}
	rep, err := c.command("QUIT", quitTimeout)
	if err != nil {
		return fmt.Errorf("delivery: QUIT: %w", err)
	}
	if rep.code != 221 {
		return &ReplyError{Command: "QUIT", Reply: rep.result()}
	}
	return nil
}

// Close closes the connection without QUIT.
func (c *Conn) Close() error {
	if c.broken == nil {
		c.broken = net.ErrClosed
	}
	return c.nc.Close()
}

// RemoteAddr returns the server's address.
func (c *Conn) RemoteAddr() netip.AddrPort { return c.remote }

// LocalAddr returns the local address, which is o.SourceIP when it was set.
func (c *Conn) LocalAddr() netip.AddrPort { return c.local }

// TLSState returns the TLS version and cipher suite names ("TLS 1.3",
// "TLS_AES_128_GCM_SHA256"), or two empty strings on a plain connection.
func (c *Conn) TLSState() (proto, cipher string) { return c.tlsProto, c.tlsCipher }

// ESMTP reports whether the server accepted EHLO. False means the client
// fell back to HELO and uses no extensions.
func (c *Conn) ESMTP() bool { return c.esmtp }

// MaxSize returns the message size limit the server announced with SIZE, in
// octets, or 0 when it announced none.
func (c *Conn) MaxSize() int64 { return c.ext.maxSize }
