package delivery

// CONTRACT (fixed; the queue package is written against it).
//
//	r := delivery.NewResolver("127.0.0.1:5353") // "" = system resolver (/etc/resolv.conf)
//	hosts, err := r.LookupMX(ctx, "example.com") // preference order; implicit MX; ErrNullMX
//	c, err := delivery.Dial(ctx, "192.0.2.1:25", delivery.DialOptions{...})
//	res, err := c.Send(ctx, &delivery.Job{...})  // one transaction; reusable afterwards
//	c.Quit()
//	dsn := delivery.BuildDSN(delivery.DSNParams{...}) // RFC 3464 multipart/report, wire form

import (
	"errors"
	"io"
	"net/netip"
	"time"
)

// ErrNullMX is returned by LookupMX when the domain publishes a null MX
// (RFC 7505): mail to it must bounce at once.
var ErrNullMX = errors.New("delivery: domain accepts no mail (null MX)")

// Host is one next-hop candidate from MX resolution.
type Host struct {
	Name       string // MX target name (or the domain itself for implicit MX)
	Preference uint16
	Addrs      []netip.Addr // resolved A/AAAA addresses
}

// DialOptions configures an outbound connection.
type DialOptions struct {
	HeloName string        // EHLO name; empty means "localhost"
	SourceIP netip.Addr    // zero: kernel's choice
	Timeout  time.Duration // connect+greeting; 0 means 5m (RFC 5321 4.5.3.2)
	UseTLS   bool          // STARTTLS when offered (opportunistic, no verification)
	// ServerName is the MX host name sent in the TLS server name indication;
	// empty sends none.
	ServerName string

	// Reply timeouts of RFC 5321 section 4.5.3.2; zero means the RFC value.
	CommandTimeout   time.Duration // EHLO, MAIL, RCPT, RSET, STARTTLS: 5m
	DataInitTimeout  time.Duration // 354 reply to DATA: 2m
	DataBlockTimeout time.Duration // each write of the body: 3m
	DataTermTimeout  time.Duration // reply to the final dot: 10m
}

// Job is one SMTP transaction: envelope and body.
type Job struct {
	From     string
	Rcpts    []Rcpt
	Body     io.Reader // wire form: dot-stuffed CRLF lines without the final ".\r\n"
	Size     int64     // body size in octets, for SIZE=
	Body8Bit bool
	SMTPUTF8 bool
	EnvID    string
	Ret      string
	// Prepend is sent before Body (Received header and the like), wire form.
	Prepend []byte
}

// Rcpt is one recipient with its RFC 3461 parameters.
type Rcpt struct {
	Addr   string
	Notify string
	ORcpt  string
}

// Result is the outcome for one recipient.
type Result struct {
	Code     int    // SMTP reply code; 0 when the transaction never reached this recipient
	Enhanced string // enhanced status code, "" when the server gave none
	Text     string
}

// Permanent reports a 5xx outcome.
func (r Result) Permanent() bool { return r.Code >= 500 }

// OK reports a 2xx outcome.
func (r Result) OK() bool { return r.Code >= 200 && r.Code < 300 }

// String formats the result as an SMTP reply line ("550 5.1.1 no such user").
func (r Result) String() string {
	s := itoa(r.Code)
	if r.Enhanced != "" {
		s += " " + r.Enhanced
	}
	if r.Text != "" {
		s += " " + r.Text
	}
	return s
}

func itoa(n int) string {
	if n == 0 {
		return "000"
	}
	b := []byte{'0', '0', '0'}
	for i := 2; i >= 0 && n > 0; i-- {
		b[i] = byte('0' + n%10)
		n /= 10
	}
	return string(b)
}

// DSNParams describes a delivery status notification (RFC 3464).
type DSNParams struct {
	ReportingMTA string // our host-name
	From         string // sender of the DSN, usually "MAILER-DAEMON@host"
	To           string // the original envelope sender
	EnvID        string
	Arrival      time.Time
	Date         time.Time // Date header of the DSN; zero means time.Now()
	Failed       []FailedRcpt
	Original     io.Reader // original message in wire form; headers only when RET=HDRS
	ReturnFull   bool
}

// FailedRcpt is one recipient reported in a DSN.
type FailedRcpt struct {
	Addr       string
	ORcpt      string
	Action     string // "failed" or "delayed"
	Status     string // enhanced status, e.g. "5.1.1"
	RemoteMTA  string
	Diagnostic string // the remote reply, e.g. "550 5.1.1 no such user"
}
