package spool

// CONTRACT (fixed; queue, delivery wiring and the daemon are written against it).
//
//	sp, err := spool.Open(dir, spool.Options{...})
//	w := sp.NewWriter()              // one per message being received
//	w.Write(p)                       // wire-form body bytes (dot-stuffed CRLF lines, no final ".\r\n")
//	w.Commit(env, func(m *Message, err error) {...}) // async group commit; callback on the committer goroutine
//	w.Abort()                        // discard an uncommitted message
//	sp.Recover(func(m *Message) {...}) // at start: every message with a non-final recipient
//	r, _ := sp.Body(m)               // read the stored body
//	sp.Update(m)                     // persist recipient states (not synced: at-least-once)
//	sp.Remove(m)                     // every recipient final: drop index entry, release segment space
//	sp.Inject(env, body)             // synchronous write+commit, for DSNs and the HTTP API

import (
	"io"
	"time"
)

// RcptState is the delivery state of one recipient.
type RcptState uint8

const (
	RcptPending   RcptState = iota // not yet final
	RcptDelivered                  // 2xx from the next hop
	RcptBounced                    // 5xx or unroutable; a DSN was generated if requested
	RcptExpired                    // bounce-after elapsed
)

// Final reports whether no further delivery attempt is due.
func (s RcptState) Final() bool { return s != RcptPending }

// Recipient is one envelope recipient and its delivery state.
type Recipient struct {
	Addr        string    `json:"addr"`
	ORcpt       string    `json:"orcpt,omitempty"`  // RFC 3461 ORCPT as received
	Notify      string    `json:"notify,omitempty"` // RFC 3461 NOTIFY as received
	State       RcptState `json:"state"`
	Attempts    int       `json:"attempts,omitempty"`
	NextAttempt time.Time `json:"next,omitempty"` // zero: due now
	LastReply   string    `json:"last,omitempty"` // last reply from the next hop, for DSNs and acct
}

// Envelope is everything about a message except its body.
type Envelope struct {
	ID         string      `json:"id"` // assigned by Commit when empty
	From       string      `json:"from"`
	Rcpts      []Recipient `json:"rcpts"`
	Received   time.Time   `json:"received"`
	ClientAddr string      `json:"client,omitempty"` // ip:port of the SMTP client
	Helo       string      `json:"helo,omitempty"`
	EnvID      string      `json:"envid,omitempty"` // RFC 3461 ENVID
	Ret        string      `json:"ret,omitempty"`   // RFC 3461 RET
	Body8Bit   bool        `json:"8bit,omitempty"`
	SMTPUTF8   bool        `json:"utf8,omitempty"`
	JobID      string      `json:"job,omitempty"`
	VMTA       string      `json:"vmta,omitempty"`
	Size       int64       `json:"size"` // body length in octets as stored (wire form); set by Commit
}

// Options configures a Spool.
type Options struct {
	SegmentSize int64  // octets per segment file; 0 means 64 MiB
	HostID      string // prefix of message ids; "" means derived from the host name
	// CommitDelay is how long the committer waits for more commits before
	// syncing; 0 means sync as soon as the previous sync finished (natural batching).
	CommitDelay time.Duration
}

// BodyReader reads a stored body. A plain-TCP sender that wants sendfile uses
// Spool.Extents instead.
type BodyReader interface {
	io.Reader
	Size() int64
}

var _ = io.EOF
