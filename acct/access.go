package acct

import (
	"cmp"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"smta/ring"
)

// AccessLogName is the access log's file name inside the log directory.
const AccessLogName = "smta-access.log"

// Access log defaults for zero option values.
const (
	DefaultAccessRingSize = 4096
	DefaultRatePerIP      = 10  // lines per second
	DefaultBurstPerIP     = 100 // lines
)

// AccessOptions configures an AccessLog.
type AccessOptions struct {
	RingSize   int          // lines buffered before new ones are dropped; 0 means DefaultAccessRingSize
	RatePerIP  float64      // sustained lines per second per client IP; 0 means DefaultRatePerIP
	BurstPerIP int          // lines a client IP may write at once; 0 means DefaultBurstPerIP
	Logger     *slog.Logger // operational log; nil means slog.Default()

	// beforeWrite, when set, runs on the writer goroutine before each
	// batch is formatted. Tests use it to hold the writer.
	beforeWrite func()
}

// AccessEntry is one access log line. Session and Failure use different
// fields, as noted.
type AccessEntry struct {
	Time      time.Time // zero means when the line is queued
	SessionID string
	ClientIP  netip.Addr
	HELO      string
	AuthUser  string // the authenticated user, never a password

	// Command is, for Failure, the failed command line. For AUTH only the
	// verb and mechanism are written; callers never pass SASL responses.
	Command string
	Reply   string // Session: the last reply sent; Failure: the failure reply

	Messages int           // Session: messages accepted
	Duration time.Duration // Session: from connect to close
}

// AccessStats are an AccessLog's counters since OpenAccessLog.
type AccessStats struct {
	Written     uint64 // lines written
	Dropped     uint64 // lines dropped because the ring was full or the log closed
	RateLimited uint64 // lines dropped by the per-IP rate limit
}

// AccessLog writes smta-access.log: one line per SMTP session and one per
// failed command. Producers never wait: when the ring is full the line is
// dropped and counted, because the access log must not slow the SMTP
// engine. A writer goroutine applies a token bucket per client IP, formats
// the lines and appends them to the file.
type AccessLog struct {
	// Immutable after OpenAccessLog.
	path        string
	log         *slog.Logger
	ring        *ring.MPSC[accessLine]
	rate        float64 // tokens per second
	burst       float64 // bucket size
	beforeWrite func()

	// Writer goroutine only.
	f       *os.File
	buf     []byte
	buckets map[netip.Addr]*tokenBucket

	// Producers and writer; see Logger.Log for the wakeup protocol.
	writerIdle atomic.Bool
	wake       chan struct{}

	reopenRequests chan chan error
	stop           chan struct{}
	writerDone     chan struct{}
	writerErr      error // set by the writer before writerDone is closed
	closeOnce      sync.Once
	closing        atomic.Bool // set by Close; later lines count as dropped

	written, dropped, rateLimited atomic.Uint64
}

type accessKind uint8

const (
	accessSession accessKind = iota
	accessFailure
)

type accessLine struct {
	kind  accessKind
	entry AccessEntry
}

// tokenBucket is one client IP's rate limit state.
type tokenBucket struct {
	tokens float64
	last   time.Time
}

// OpenAccessLog opens dir/smta-access.log for appending and starts its
// writer.
func OpenAccessLog(dir string, o AccessOptions) (*AccessLog, error) {
	if o.RingSize < 0 || o.RatePerIP < 0 || o.BurstPerIP < 0 {
		return nil, fmt.Errorf("acct: negative access log ring size %d, rate %v or burst %d", o.RingSize, o.RatePerIP, o.BurstPerIP)
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("acct: creating log directory: %w", err)
	}
	a := &AccessLog{
		path:           filepath.Join(dir, AccessLogName),
		log:            cmp.Or(o.Logger, slog.Default()),
		ring:           ring.New[accessLine](cmp.Or(o.RingSize, DefaultAccessRingSize)),
		rate:           cmp.Or(o.RatePerIP, DefaultRatePerIP),
		burst:          float64(cmp.Or(o.BurstPerIP, DefaultBurstPerIP)),
		beforeWrite:    o.beforeWrite,
		buckets:        map[netip.Addr]*tokenBucket{},
		wake:           make(chan struct{}, 1),
		reopenRequests: make(chan chan error),
		stop:           make(chan struct{}),
		writerDone:     make(chan struct{}),
	}
	if err := a.open(); err != nil {
		return nil, err
	}
	go a.run()
	return a, nil
}

func (a *AccessLog) open() error {
	f, err := os.OpenFile(a.path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o640)
	if err != nil {
		return fmt.Errorf("acct: opening access log: %w", err)
	}
	a.f = f
	return nil
}

// Session queues the line for a finished SMTP session.
func (a *AccessLog) Session(e AccessEntry) { a.push(accessSession, e) }

// Failure queues the line for a failed command.
func (a *AccessLog) Failure(e AccessEntry) { a.push(accessFailure, e) }

func (a *AccessLog) push(kind accessKind, e AccessEntry) {
	if a.closing.Load() {
		a.dropped.Add(1)
		return
	}
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	if !a.ring.TryPush(accessLine{kind: kind, entry: e}) {
		a.dropped.Add(1)
		return
	}
	if a.writerIdle.Load() && a.writerIdle.Swap(false) {
		select {
		case a.wake <- struct{}{}:
		default:
		}
	}
}

// Reopen closes and reopens the file by path, for logrotate.
func (a *AccessLog) Reopen() error {
	req := make(chan error, 1)
	select {
	case a.reopenRequests <- req:
		return <-req
	case <-a.writerDone:
		return errors.New("acct: access log reopen after close")
	}
}

// Close writes the queued lines, fsyncs and closes the file. Lines passed
// after Close began are counted as dropped; a line passed at the same moment
// as Close may be lost uncounted.
func (a *AccessLog) Close() error {
	a.closeOnce.Do(func() {
		a.closing.Store(true)
		close(a.stop)
	})
	<-a.writerDone
	return a.writerErr
}

// Stats returns the counters.
func (a *AccessLog) Stats() AccessStats {
	return AccessStats{Written: a.written.Load(), Dropped: a.dropped.Load(), RateLimited: a.rateLimited.Load()}
}

// bucketSweepInterval is how often the writer removes client IPs whose
// bucket has refilled, so the map holds only recently active clients.
const bucketSweepInterval = time.Minute

func (a *AccessLog) run() {
	defer close(a.writerDone)
	batch := make([]accessLine, 256)
	lastSweep := time.Now()

	for {
		n := a.ring.PopBatch(batch)
		now := time.Now()
		if n > 0 && a.beforeWrite != nil {
			a.beforeWrite()
		}
		a.format(batch[:n], now)
		a.flush()

		if now.Sub(lastSweep) >= bucketSweepInterval {
			a.sweepBuckets(now)
			lastSweep = now
		}
		if n > 0 {
			continue
		}

		a.writerIdle.Store(true)
		if a.ring.Len() > 0 {
			a.writerIdle.Store(false)
			continue
		}
		select {
		case <-a.wake:
		case req := <-a.reopenRequests:
			req <- a.reopen()
		case <-a.stop:
			a.writerIdle.Store(false)
			a.drainAndClose()
			return
		}
		a.writerIdle.Store(false)
	}
}

// format appends the lines that pass the rate limit to buf and clears
// batch.
func (a *AccessLog) format(batch []accessLine, now time.Time) {
	for i := range batch {
		if a.allow(batch[i].entry.ClientIP, now) {
			a.buf = appendAccessLine(a.buf, batch[i].kind, &batch[i].entry)
			a.written.Add(1)
		} else {
			a.rateLimited.Add(1)
		}
	}
	clear(batch)
}

// allow takes one token from ip's bucket.
func (a *AccessLog) allow(ip netip.Addr, now time.Time) bool {
	b := a.buckets[ip]
	if b == nil {
		b = &tokenBucket{tokens: a.burst, last: now}
		a.buckets[ip] = b
	}
	b.tokens = min(a.burst, b.tokens+now.Sub(b.last).Seconds()*a.rate)
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

func (a *AccessLog) sweepBuckets(now time.Time) {
	for ip, b := range a.buckets {
		if b.tokens+now.Sub(b.last).Seconds()*a.rate >= a.burst {
			delete(a.buckets, ip)
		}
	}
}

// flush writes the buffered lines. The access log may lose lines, so a
// failed write is logged and its lines are discarded rather than retried.
func (a *AccessLog) flush() {
	if len(a.buf) == 0 {
		return
	}
	if _, err := a.f.Write(a.buf); err != nil {
		a.log.Error("writing access log failed", "file", a.path, "err", err)
	}
	a.buf = a.buf[:0]
}

func (a *AccessLog) reopen() error {
	a.flush()
	if err := a.f.Close(); err != nil {
		a.log.Warn("closing access log failed", "file", a.path, "err", err)
	}
	if err := a.open(); err != nil {
		// Keep the writer alive on a closed file: writes fail and are
		// logged until a later Reopen succeeds.
		a.log.Error("reopening access log failed", "file", a.path, "err", err)
		return err
	}
	return nil
}

func (a *AccessLog) drainAndClose() {
	batch := make([]accessLine, 256)
	now := time.Now()
	for n := a.ring.PopBatch(batch); n > 0; n = a.ring.PopBatch(batch) {
		a.format(batch[:n], now)
	}
	a.flush()
	err := a.f.Sync()
	if cerr := a.f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		a.writerErr = fmt.Errorf("acct: closing access log: %w", err)
	}
}

// appendAccessLine formats one line:
//
//	2026-12-04T20:30:00.123Z session id="S1" ip=192.0.2.7 helo="mx.example" user="u" msgs=2 duration=1.5s reply="221 2.0.0 Bye"
//	2026-12-04T20:30:00.123Z failure id="S1" ip=192.0.2.7 helo="mx.example" command="RCPT TO:<a@b>" reply="550 5.1.1 unknown"
//
// Values that come from the client are quoted with Go escaping, so a HELO
// name cannot forge extra fields or lines.
func appendAccessLine(dst []byte, kind accessKind, e *AccessEntry) []byte {
	dst = e.Time.UTC().AppendFormat(dst, timeLoggedLayout)
	if kind == accessSession {
		dst = append(dst, " session"...)
	} else {
		dst = append(dst, " failure"...)
	}
	if e.SessionID != "" {
		dst = append(dst, " id="...)
		dst = strconv.AppendQuote(dst, e.SessionID)
	}
	if e.ClientIP.IsValid() {
		dst = append(dst, " ip="...)
		dst = e.ClientIP.AppendTo(dst)
	}
	if e.HELO != "" {
		dst = append(dst, " helo="...)
		dst = strconv.AppendQuote(dst, e.HELO)
	}
	if e.AuthUser != "" {
		dst = append(dst, " user="...)
		dst = strconv.AppendQuote(dst, e.AuthUser)
	}
	if kind == accessSession {
		dst = append(dst, " msgs="...)
		dst = strconv.AppendInt(dst, int64(e.Messages), 10)
		dst = append(dst, " duration="...)
		dst = append(dst, e.Duration.Round(time.Millisecond).String()...)
	}
	if e.Command != "" {
		dst = append(dst, " command="...)
		dst = strconv.AppendQuote(dst, redactCommand(e.Command))
	}
	if e.Reply != "" {
		dst = append(dst, " reply="...)
		dst = strconv.AppendQuote(dst, e.Reply)
	}
	return append(dst, '\n')
}

// redactCommand keeps only the verb and mechanism of an AUTH command, whose
// initial response (RFC 4954 section 4) carries credentials.
func redactCommand(cmd string) string {
	fields := strings.Fields(cmd)
	if len(fields) > 2 && strings.EqualFold(fields[0], "AUTH") {
		return fields[0] + " " + fields[1] + " [redacted]"
	}
	return cmd
}
