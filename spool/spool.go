package spool

import (
	"errors"
	"fmt"
	"log/slog"
	"math/bits"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"
)

const (
	defaultSegmentSize = 64 << 20
	minSegmentSize     = 64 << 10

	// maxChunk is the payload size at which a Writer appends a record before
	// Commit: large enough that a typical message is one record and one
	// pwrite, small enough that a receiving connection holds little memory.
	maxChunk = 256 << 10

	// maxFreeSegments is how many drained segments are kept for reuse.
	// Reusing one overwrites blocks that are already allocated, so fdatasync
	// has no allocation metadata to journal. More than this are deleted.
	maxFreeSegments = 4
)

var (
	// ErrClosed is returned by operations on a closed Spool.
	ErrClosed = errors.New("spool: closed")
	// ErrRemoved is returned when a message is used after Remove.
	ErrRemoved = errors.New("spool: message already removed")
	// ErrLocked is returned by Open when another process holds the spool.
	ErrLocked = errors.New("spool: directory is locked by another process")
)

// Spool stores message bodies in segment files and envelopes in a Pebble
// index, and makes both durable with group commit. The package comment
// describes the design.
//
// Update and Remove of one message must not run concurrently with each other,
// and nothing may run concurrently with Close. Everything else is safe for
// concurrent use.
type Spool struct {
	// Immutable after Open.
	dir         string
	segDir      string
	db          *pebble.DB
	lockFile    *os.File
	segSize     int64 // octets per new segment
	chunk       int   // payload octets per record at most
	hostID      string
	idEpoch     int64
	commitDelay time.Duration
	log         *slog.Logger

	// Atomics.
	active         atomic.Pointer[segment] // nil once closed
	idSeq          atomic.Uint64
	closing        atomic.Bool
	failed         atomic.Pointer[error] // first sync failure; sticky, see commitBatch
	zeroFillWarned atomic.Bool
	messages       atomic.Int64
	bytes          atomic.Int64
	commits        atomic.Uint64
	syncs          atomic.Uint64
	fileSyncs      atomic.Uint64
	corrupt        atomic.Uint64
	maxBatch       atomic.Int64
	batchSizes     [8]atomic.Uint64

	// mu guards the segment table and free list. It is taken only on the
	// rare paths (rotation, recycling, stats), never to append a record.
	mu        sync.Mutex
	segs      map[uint32]*segment
	free      []*segment
	nextSegNo uint32
	closed    bool

	// cmu guards the commit queue. kick wakes the committer (capacity 1, so
	// repeated wakeups merge); committerDone is closed when it exits.
	cmu           sync.Mutex
	pending       []*pendingCommit
	commitClosed  bool
	kick          chan struct{}
	committerDone chan struct{}

	// Set by Open, handed out once by Recover.
	recovered     []*Message
	recoverCalled atomic.Bool

	bufPool sync.Pool // *[]byte record buffers
}

// Message is a committed message: its envelope and where its body is stored.
type Message struct {
	Env Envelope

	exts    []extent
	removed atomic.Bool
}

// Stats are counters and gauges of a Spool.
type Stats struct {
	Messages int64 // committed and not yet removed
	Bytes    int64 // body octets of those messages (wire form)

	SegmentsActive int
	SegmentsSealed int
	SegmentsFree   int

	Commits   uint64 // messages made durable
	Syncs     uint64 // group commits, each one Pebble batch committed with Sync
	FileSyncs uint64 // fdatasync calls on segment files
	Corrupt   uint64 // messages moved aside by Open because their body failed verification

	// BatchSizes counts group commits by messages per batch, in the buckets
	// 1, 2–3, 4–7, 8–15, 16–31, 32–63, 64–127 and 128 or more.
	BatchSizes [8]uint64
	MaxBatch   int
}

// Close waits for the commits already queued, then closes the segment files
// and the index and releases the directory lock. A Commit after Close fails
// with ErrClosed.
func (s *Spool) Close() error {
	if !s.closing.CompareAndSwap(false, true) {
		return ErrClosed
	}

	// Drain the committer.
	s.cmu.Lock()
	s.commitClosed = true
	s.cmu.Unlock()
	s.wake()
	<-s.committerDone

	s.mu.Lock()
	s.closed = true
	s.active.Store(nil)
	var errs []error
	for _, g := range s.segs {
		if err := g.f.Close(); err != nil {
			errs = append(errs, fmt.Errorf("spool: closing segment %d: %w", g.no, err))
		}
	}
	s.mu.Unlock()

	if err := s.db.Close(); err != nil {
		errs = append(errs, fmt.Errorf("spool: closing index: %w", err))
	}
	// Closing the file releases the flock.
	if err := s.lockFile.Close(); err != nil {
		errs = append(errs, fmt.Errorf("spool: closing lock file: %w", err))
	}
	s.log.Info("spool closed", "dir", s.dir)
	return errors.Join(errs...)
}

// Recover calls fn for every message that has a recipient not yet final, as
// found and verified by Open. It is meant to run once, before delivery
// starts; a second call returns an error.
func (s *Spool) Recover(fn func(*Message)) error {
	if !s.recoverCalled.CompareAndSwap(false, true) {
		return errors.New("spool: Recover called twice")
	}
	msgs := s.recovered
	s.recovered = nil
	for _, m := range msgs {
		fn(m)
	}
	return nil
}

// Update persists m.Env, typically recipient states after a delivery
// attempt. The write is not synced: after a crash an older state may come
// back and a delivery may repeat, which at-least-once delivery allows.
func (s *Spool) Update(m *Message) error {
	if s.closing.Load() {
		return ErrClosed
	}
	if m.removed.Load() {
		return fmt.Errorf("updating %s: %w", m.Env.ID, ErrRemoved)
	}
	v := encodeEntry(&m.Env, m.exts)
	if err := s.db.Set(messageKey(m.Env.ID), v, pebble.NoSync); err != nil {
		return fmt.Errorf("spool: updating %s: %w", m.Env.ID, err)
	}
	return nil
}

// Remove deletes the index entry of a message whose recipients are all
// final and releases its segment space. The deletion is not synced: after a
// crash the message may come back and be delivered again.
func (s *Spool) Remove(m *Message) error {
	if s.closing.Load() {
		return ErrClosed
	}
	if !m.removed.CompareAndSwap(false, true) {
		return fmt.Errorf("removing %s: %w", m.Env.ID, ErrRemoved)
	}
	if err := s.db.Delete(messageKey(m.Env.ID), pebble.NoSync); err != nil {
		m.removed.Store(false)
		return fmt.Errorf("spool: removing %s: %w", m.Env.ID, err)
	}
	s.messages.Add(-1)
	s.bytes.Add(-m.Env.Size)
	s.release(m.exts)
	return nil
}

// Inject stores a message synchronously: Write, Commit and wait for the
// commit. It serves generated messages (DSNs) and the HTTP API.
func (s *Spool) Inject(env *Envelope, body []byte) (*Message, error) {
	w := s.NewWriter()
	w.Write(body) // an error is kept in w and returned by Commit
	type result struct {
		m   *Message
		err error
	}
	ch := make(chan result, 1)
	w.Commit(env, func(m *Message, err error) { ch <- result{m, err} })
	r := <-ch
	return r.m, r.err
}

// Stats returns a snapshot of the counters. Counters are read one by one, so
// they may be mutually inconsistent by the commits in flight.
func (s *Spool) Stats() Stats {
	st := Stats{
		Messages:  s.messages.Load(),
		Bytes:     s.bytes.Load(),
		Commits:   s.commits.Load(),
		Syncs:     s.syncs.Load(),
		FileSyncs: s.fileSyncs.Load(),
		Corrupt:   s.corrupt.Load(),
		MaxBatch:  int(s.maxBatch.Load()),
	}
	for i := range s.batchSizes {
		st.BatchSizes[i] = s.batchSizes[i].Load()
	}
	s.mu.Lock()
	for _, g := range s.segs {
		switch g.state {
		case segActive:
			st.SegmentsActive++
		case segSealed:
			st.SegmentsSealed++
		case segFree:
			st.SegmentsFree++
		}
	}
	s.mu.Unlock()
	return st
}

func (s *Spool) countBatch(n int) {
	s.batchSizes[min(bits.Len(uint(n))-1, len(s.batchSizes)-1)].Add(1)
	for {
		cur := s.maxBatch.Load()
		if int64(n) <= cur || s.maxBatch.CompareAndSwap(cur, int64(n)) {
			return
		}
	}
}

func (s *Spool) newID() string {
	return formatID(s.hostID, s.idEpoch, s.idSeq.Add(1))
}

// release drops the segment references held by exts.
func (s *Spool) release(exts []extent) {
	for _, x := range exts {
		s.unref(x.seg)
	}
}

func (s *Spool) unref(g *segment) {
	if g.refs.Add(-1) == 0 {
		s.recycle(g)
	}
}

// rotate seals full and activates the next segment, unless another writer
// already did. It is the rare, locked part of the append path.
func (s *Spool) rotate(full *segment) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrClosed
	}
	if s.active.Load() != full {
		s.mu.Unlock()
		return nil
	}
	next, err := s.takeSegmentLocked()
	if err != nil {
		s.mu.Unlock()
		return err
	}
	full.state = segSealed
	// Make every later reservation on full fail, so no record lands in a
	// sealed segment.
	full.tail.Add(full.size + 1)
	s.activateLocked(next)
	s.mu.Unlock()

	// Drop the active reference outside mu: it may recycle full, which
	// takes mu.
	s.unref(full)
	return nil
}

// takeSegmentLocked returns a free segment, or creates one when the free
// list is empty. The returned segment's generation is already in the index
// batch queue ahead of any commit that could reference it.
//
// REQUIRES: s.mu held.
func (s *Spool) takeSegmentLocked() (*segment, error) {
	if n := len(s.free); n > 0 {
		g := s.free[n-1]
		s.free = s.free[:n-1]
		return g, nil
	}
	no := s.nextSegNo
	g, err := createSegment(s.segDir, no, s.segSize, &s.zeroFillWarned)
	if err != nil {
		return nil, err
	}
	s.nextSegNo++
	g.gen.Store(1)
	if err := s.db.Set(segmentKey(no), strconv.AppendUint(nil, 1, 10), pebble.NoSync); err != nil {
		g.f.Close()
		os.Remove(g.path)
		return nil, fmt.Errorf("spool: recording segment %d: %w", no, err)
	}
	s.segs[no] = g
	s.log.Info("segment created", "segment", no, "size", s.segSize)
	return g, nil
}

// activateLocked makes g the segment writers append to.
//
// REQUIRES: s.mu held; g is free with refs == 0.
func (s *Spool) activateLocked(g *segment) {
	g.state = segActive
	g.tail.Store(0)
	// The active reference. This store publishes gen and tail to writers
	// whose tryRef succeeds.
	g.refs.Store(1)
	s.active.Store(g)
}

// recycle handles a sealed segment whose last reference is gone: bump its
// generation so its old records read back as stale, then keep it for reuse
// or delete it.
//
// The new generation goes to the index without sync. That is enough because
// the Pebble WAL is sequential: any later commit that references the new
// generation is synced and makes this write durable with it.
func (s *Spool) recycle(g *segment) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || g.state != segSealed || g.refs.Load() != 0 {
		return
	}

	gen := g.gen.Load() + 1
	if len(s.free) < maxFreeSegments {
		if err := s.db.Set(segmentKey(g.no), strconv.AppendUint(nil, uint64(gen), 10), pebble.NoSync); err != nil {
			// Without a durable new generation the segment cannot be
			// reused safely; leave it sealed and empty until the next open.
			s.log.Error("recording segment generation failed, segment left unused", "segment", g.no, "err", err)
			return
		}
		g.gen.Store(gen)
		g.state = segFree
		s.free = append(s.free, g)
		return
	}

	g.state = segDeleted
	delete(s.segs, g.no)
	if err := g.f.Close(); err != nil {
		s.log.Error("closing drained segment failed", "segment", g.no, "err", err)
	}
	if err := os.Remove(g.path); err != nil {
		s.log.Error("deleting drained segment failed", "segment", g.no, "err", err)
	}
	if err := s.db.Delete(segmentKey(g.no), pebble.NoSync); err != nil {
		s.log.Error("deleting segment generation failed", "segment", g.no, "err", err)
	}
}

func cloneEnvelope(env *Envelope) Envelope {
	c := *env
	c.Rcpts = slices.Clone(env.Rcpts)
	return c
}
