package spool

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/cockroachdb/pebble/v2"
)

// pendingCommit is one message waiting for the committer.
type pendingCommit struct {
	msg   *Message
	value []byte // encoded index entry
	done  func(*Message, error)
	err   error // set when writing the body failed; the commit then only reports it
}

// enqueue hands p to the committer, or fails it at once after Close.
func (s *Spool) enqueue(p *pendingCommit) {
	s.cmu.Lock()
	if s.commitClosed {
		s.cmu.Unlock()
		s.release(p.msg.exts)
		p.done(nil, ErrClosed)
		return
	}
	s.pending = append(s.pending, p)
	s.cmu.Unlock()
	s.wake()
}

func (s *Spool) wake() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// commitLoop is the committer goroutine. Each turn takes every commit that
// arrived while the previous turn was syncing, so batches grow with load
// without any timer (natural batching). With Options.CommitDelay it also
// waits that long after the first wakeup to gather more.
func (s *Spool) commitLoop() {
	defer close(s.committerDone)
	var batch []*pendingCommit
	for {
		<-s.kick
		if s.commitDelay > 0 {
			time.Sleep(s.commitDelay)
		}

		s.cmu.Lock()
		batch, s.pending = s.pending, batch[:0]
		closed := s.commitClosed
		s.cmu.Unlock()

		if len(batch) > 0 {
			s.commitBatch(batch)
			clear(batch)
		}
		if closed {
			return
		}
	}
}

// commitBatch makes a batch durable and calls its callbacks.
//
// The bodies are synced before the index batch is committed, not in
// parallel with it. That costs one sync latency per batch, but an index
// entry then never points at body bytes that were not yet on disk, so a
// record that fails verification at recovery is always real corruption.
//
// A failed fdatasync or index sync makes the spool fail every later commit:
// after a failed fsync the kernel may have dropped the dirty pages, so a
// retry that succeeds proves nothing (see fsync(2), "ERRORS").
func (s *Spool) commitBatch(batch []*pendingCommit) {
	// Drop the commits whose body could not be written.
	ok := batch[:0:0]
	for _, p := range batch {
		if p.err != nil {
			s.fail(p, p.err)
			continue
		}
		ok = append(ok, p)
	}
	if len(ok) == 0 {
		return
	}
	if errp := s.failed.Load(); errp != nil {
		s.failAll(ok, *errp)
		return
	}

	// Sync every segment the batch wrote to. The commits hold references
	// on these segments, so none can be recycled meanwhile.
	var synced []*segment
	for _, p := range ok {
		for _, x := range p.msg.exts {
			if !containsSegment(synced, x.seg) {
				synced = append(synced, x.seg)
			}
		}
	}
	if err := syncSegments(synced); err != nil {
		s.setFailed(err)
		s.failAll(ok, err)
		return
	}
	s.fileSyncs.Add(uint64(len(synced)))

	// One index batch, committed with Sync.
	b := s.db.NewBatch()
	defer b.Close()
	for _, p := range ok {
		if err := b.Set(messageKey(p.msg.Env.ID), p.value, nil); err != nil {
			s.fail(p, err)
			p.msg = nil
		}
	}
	if err := b.Commit(pebble.Sync); err != nil {
		err = fmt.Errorf("spool: committing index batch: %w", err)
		s.setFailed(err)
		s.failAll(ok, err)
		return
	}

	// Durable: count, then complete.
	n := 0
	for _, p := range ok {
		if p.msg == nil {
			continue
		}
		n++
		s.messages.Add(1)
		s.bytes.Add(p.msg.Env.Size)
	}
	s.syncs.Add(1)
	s.commits.Add(uint64(n))
	if n > 0 {
		s.countBatch(n)
	}
	for _, p := range ok {
		if p.msg != nil {
			p.done(p.msg, nil)
		}
	}
}

// syncSegments calls fdatasync on each segment, concurrently when there are
// several (a batch that crossed a rotation), so the batch waits for the
// slowest sync rather than their sum.
func syncSegments(gs []*segment) error {
	if len(gs) == 1 {
		return gs[0].fdatasync()
	}
	errs := make([]error, len(gs))
	var wg sync.WaitGroup
	for i, g := range gs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = g.fdatasync()
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

func containsSegment(gs []*segment, g *segment) bool {
	for _, x := range gs {
		if x == g {
			return true
		}
	}
	return false
}

func (s *Spool) setFailed(err error) {
	if s.failed.CompareAndSwap(nil, &err) {
		s.log.Error("sync failed, rejecting all further commits", "err", err)
	}
}

func (s *Spool) fail(p *pendingCommit, err error) {
	s.release(p.msg.exts)
	p.done(nil, err)
}

func (s *Spool) failAll(ps []*pendingCommit, err error) {
	for _, p := range ps {
		if p.msg != nil {
			s.fail(p, err)
		}
	}
}
