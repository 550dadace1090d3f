package acct

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"sync/atomic"
	"time"
)

// shipper posts one webhook's records, read from its spool, in order.
//
// Steps, repeated until Close:
//
//  1. Read complete lines after the acknowledged position, up to the
//     spool's synced mark, into a batch of at most batchSize records.
//  2. Send the batch when it is full, when its first record has waited
//     maxDelay, when it ends a sealed segment, or at Close.
//  3. POST it as a JSON array. Any transport error or non-2xx status is a
//     failure: wait an exponential backoff with jitter and resend the same
//     batch, so records arrive in order.
//  4. After a 2xx, persist the position after the batch (fsynced) and only
//     then move on. At the end of a sealed segment, persist the start of the
//     next segment and delete the old one.
//
// Invariants: the position file names a point where every earlier record was
// acknowledged, and it never points past synced data. So a restart resumes
// exactly after the last acknowledged batch.
//
// NOTE: delivery is at least once. After a crash between the webhook's 2xx
// response and the replacement of the position file, the shipper sends
// that batch again.
type shipper struct {
	// Immutable after newShipper.
	url       string
	redacted  string // url without password, for logs and stats
	headers   map[string]string
	batchSize int
	maxDelay  time.Duration
	timeout   time.Duration
	retryMin  time.Duration
	retryMax  time.Duration
	client    *http.Client
	spool     *webhookSpool
	log       *slog.Logger

	// closing is closed by Logger.Close after the writer's final sync: the
	// shipper sends what it has once more and stops. done is closed when it
	// has stopped.
	closing chan struct{}
	done    chan struct{}

	// Shipper goroutine only.
	acked position // persisted; everything before it was acknowledged
	f     *os.File // open segment acked.segment, or nil
	batch batch

	// Counters, read by Stats. ackedCopy mirrors acked for Stats.
	ackedCopy atomic.Pointer[position]
	sent      atomic.Uint64 // records acknowledged
	batches   atomic.Uint64 // POSTs with a 2xx response
	failures  atomic.Uint64 // POSTs that failed
}

// batch is the records read but not yet acknowledged.
type batch struct {
	body      []byte    // "[" and the records joined by ",", without the closing "]"
	count     int       // records in body
	end       position  // position after the last record in body
	firstSeen time.Time // when the first record was read
	sealedEnd bool      // end is the end of a sealed segment
}

func newShipper(o WebhookOptions, spool *webhookSpool, log *slog.Logger) (*shipper, error) {
	s := &shipper{
		url:       o.URL,
		headers:   o.Headers,
		batchSize: o.BatchSize,
		maxDelay:  o.MaxDelay,
		timeout:   o.Timeout,
		retryMin:  o.RetryMin,
		retryMax:  o.RetryMax,
		spool:     spool,
		closing:   make(chan struct{}),
		done:      make(chan struct{}),
	}
	if u, err := url.Parse(o.URL); err == nil {
		s.redacted = u.Redacted()
	}
	s.log = log.With("webhook", s.redacted)
	s.client = &http.Client{
		Transport: http.DefaultTransport.(*http.Transport).Clone(),
		// Redirects would resend a POST body elsewhere; treat them as failures.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}

	p, ok, err := readPosition(spool.dir)
	if err != nil {
		return nil, err
	}
	if !ok {
		// Nothing acknowledged yet: start at the oldest segment.
		segments, err := listSegments(spool.dir)
		if err != nil {
			return nil, fmt.Errorf("acct: listing webhook spool %s: %w", spool.dir, err)
		}
		p = position{segment: spool.segment}
		if len(segments) > 0 {
			p.segment = segments[0]
		}
	}
	s.setAcked(p)
	s.batch.end = p
	return s, nil
}

func (s *shipper) run() {
	defer close(s.done)
	defer s.client.CloseIdleConnections()
	defer func() {
		if s.f != nil {
			s.f.Close()
		}
	}()
	s.log.Info("webhook shipper started", "position", s.acked.String())

	failures := 0
	for {
		final := s.isClosing()
		if err := s.fill(); err != nil {
			s.log.Error("reading webhook spool failed", "err", err)
			if final || !s.sleep(s.backoff(failures)) {
				return
			}
			failures++
			continue
		}

		if s.batch.count == 0 {
			if s.batch.sealedEnd {
				if err := s.nextSegment(); err != nil {
					s.log.Error("advancing webhook spool failed", "err", err)
					if final || !s.sleep(s.backoff(failures)) {
						return
					}
					failures++
				}
				continue
			}
			if final {
				s.log.Info("webhook shipper stopped", "position", s.acked.String())
				return
			}
			s.waitForData(0)
			continue
		}

		if !final && !s.batch.sealedEnd && s.batch.count < s.batchSize {
			if wait := s.maxDelay - time.Since(s.batch.firstSeen); wait > 0 {
				s.waitForData(wait)
				continue
			}
		}

		if err := s.post(); err != nil {
			s.failures.Add(1)
			failures++
			if final {
				s.log.Warn("posting to webhook failed; shipper stopped with records pending",
					"err", err, "records", s.batch.count, "position", s.acked.String())
				return
			}
			delay := s.backoff(failures - 1)
			s.log.Warn("posting to webhook failed; retrying", "err", err, "records", s.batch.count,
				"attempt", failures, "retry_in", delay)
			// If Close interrupts the backoff, the next round is the final
			// attempt.
			s.sleep(delay)
			continue
		}
		if failures > 0 {
			s.log.Info("webhook recovered", "failed_attempts", failures)
		}
		failures = 0
		s.acknowledge()
	}
}

func (s *shipper) isClosing() bool {
	select {
	case <-s.closing:
		return true
	default:
		return false
	}
}

// waitForData waits until the writer publishes new data, Close is called,
// or d passes when d > 0.
func (s *shipper) waitForData(d time.Duration) {
	var timeout <-chan time.Time
	if d > 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		timeout = t.C
	}
	select {
	case <-s.spool.notify:
	case <-s.closing:
	case <-timeout:
	}
}

// sleep waits d and reports false if Close interrupted it.
func (s *shipper) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-s.closing:
		return false
	}
}

// backoff returns the wait before retry number failures+1: retryMin
// doubled per failure up to retryMax, then a uniform random value between
// half and all of it, so that several appliances do not retry in step.
func (s *shipper) backoff(failures int) time.Duration {
	d := s.retryMin
	for range min(failures, 30) {
		d *= 2
		if d >= s.retryMax {
			d = s.retryMax
			break
		}
	}
	half := d / 2
	return half + rand.N(d-half+1)
}

// fill appends complete lines after batch.end, up to the synced mark, until
// the batch holds batchSize records.
func (s *shipper) fill() error {
	if s.batch.count >= s.batchSize || s.batch.sealedEnd {
		return nil
	}
	synced := *s.spool.synced.Load()
	at := s.batch.end
	if s.f == nil {
		f, err := os.Open(segmentName(s.spool.dir, at.segment))
		if errors.Is(err, os.ErrNotExist) && at.segment < synced.segment && s.batch.count == 0 {
			// Removed by hand: skip it instead of retrying forever.
			s.log.Error("webhook segment is missing; skipping it", "segment", at.segment)
			s.batch.sealedEnd = true
			return nil
		}
		if err != nil {
			return fmt.Errorf("opening segment %d: %w", at.segment, err)
		}
		s.f = f
	}

	sealed := at.segment < synced.segment
	limit := synced.offset
	if sealed {
		fi, err := s.f.Stat()
		if err != nil {
			return fmt.Errorf("reading segment %d size: %w", at.segment, err)
		}
		limit = fi.Size()
	}
	if at.offset > limit {
		// The position is past the durable end, which happens only when
		// something outside this package truncated the segment. Skip to the
		// end rather than wait forever.
		s.log.Error("webhook position is past the end of its segment", "position", at.String(), "size", limit)
		at.offset = limit
		s.batch.end = at
	}

	r := bufio.NewReader(io.NewSectionReader(s.f, at.offset, limit-at.offset))
	for s.batch.count < s.batchSize {
		line, err := r.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			// A record longer than the reader's buffer: collect it whole.
			rest, rerr := r.ReadBytes('\n')
			line, err = append(bytes.Clone(line), rest...), rerr
		}
		if err == io.EOF {
			break // a line without '\n' is not synced yet; leave it
		}
		if err != nil {
			return fmt.Errorf("reading segment %d: %w", at.segment, err)
		}
		if s.batch.count == 0 {
			s.batch.body = append(s.batch.body[:0], '[')
			s.batch.firstSeen = time.Now()
		} else {
			s.batch.body = append(s.batch.body, ',')
		}
		s.batch.body = append(s.batch.body, line[:len(line)-1]...)
		s.batch.count++
		s.batch.end.offset += int64(len(line))
	}
	s.batch.sealedEnd = sealed && s.batch.end.offset == limit
	return nil
}

// post sends the batch once.
func (s *shipper) post() error {
	ctx, cancel := context.WithTimeout(context.Background(), s.timeout)
	defer cancel()

	body := append(s.batch.body, ']')
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.url, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("acct: webhook %s: %w", s.redacted, err)
	}
	req.Header.Set("Content-Type", "application/json")
	for k, v := range s.headers {
		req.Header.Set(k, v)
	}

	resp, err := s.client.Do(req)
	if err != nil {
		return err
	}
	// Drain a bounded part of the body so the connection can be reused.
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("acct: webhook %s: status %s", s.redacted, resp.Status)
	}
	return nil
}

func (s *shipper) setAcked(p position) {
	s.acked = p
	s.ackedCopy.Store(&p)
}

// backlog estimates the bytes synced to the spool and not yet
// acknowledged. Segments between the two positions count as segmentSize
// each, although a sealed segment may be up to one write batch larger.
func (s *shipper) backlog() int64 {
	acked, synced := *s.ackedCopy.Load(), *s.spool.synced.Load()
	if !acked.before(synced) {
		return 0
	}
	if acked.segment == synced.segment {
		return synced.offset - acked.offset
	}
	between := int64(synced.segment-acked.segment-1) * s.spool.segmentSize
	return max(s.spool.segmentSize-acked.offset, 0) + between + synced.offset
}

// acknowledge persists the position after the posted batch and clears it.
func (s *shipper) acknowledge() {
	s.sent.Add(uint64(s.batch.count))
	s.batches.Add(1)
	s.setAcked(s.batch.end)
	if err := writePosition(s.spool.dir, s.acked); err != nil {
		// The records were delivered; a restart before the next successful
		// write sends them again.
		s.log.Error("persisting webhook position failed", "err", err)
	}
	s.batch.count = 0
	s.batch.body = s.batch.body[:0]
}

// nextSegment moves from the end of a sealed, fully acknowledged segment to
// the start of the next one and deletes the old one.
func (s *shipper) nextSegment() error {
	old := s.acked.segment
	next := position{segment: old + 1}
	if err := writePosition(s.spool.dir, next); err != nil {
		return err
	}
	s.setAcked(next)
	s.batch = batch{body: s.batch.body[:0], end: next}
	if s.f != nil {
		s.f.Close()
		s.f = nil
	}
	if err := removeSegment(s.spool.dir, old); err != nil {
		s.log.Warn("removing acknowledged webhook segment failed", "segment", old, "err", err)
	}
	return nil
}
