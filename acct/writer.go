package acct

import (
	"errors"
	"time"
)

// Write retry backoff after a failed write, sync or rotation.
const (
	writeRetryMin = 100 * time.Millisecond
	writeRetryMax = 5 * time.Second
)

// closeWriteAttempts is how many times Close retries a failing write before
// it gives up and reports the error, because waiting forever would hang
// shutdown.
const closeWriteAttempts = 3

// runWriter is the writer goroutine. It pops records in batches and encodes
// each record once into the buffer of every file and spool that takes its
// type. Each output gets one write call per batch. Every syncInterval it
// fsyncs, and it rotates files that are due.
func (l *Logger) runWriter() {
	defer close(l.writerDone)

	batch := make([]*Record, writeBatchSize)
	var line []byte
	ticker := time.NewTicker(l.syncInterval)
	defer ticker.Stop()
	lastSync := time.Now()
	stopping := false

	for {
		n := l.ring.PopBatch(batch)
		if n > 0 {
			for _, r := range batch[:n] {
				line = appendRecord(line[:0], r)
				l.appendLine(recordTypeBit(r.Type), line)
			}
			clear(batch[:n])
			if l.beforeWrite != nil {
				l.beforeWrite()
			}
			if err := l.flushWithRetry(); err != nil {
				l.writerErr = err
				l.closeAll()
				return
			}
			l.written.Add(uint64(n))
		}

		now := time.Now()
		if now.Sub(lastSync) >= l.syncInterval {
			l.syncAll()
			lastSync = now
		}
		l.rotateDue(now)

		select {
		case req := <-l.reopenRequests:
			req <- l.reopenAll(now)
		default:
		}
		if n > 0 {
			continue
		}

		if stopping {
			l.writerErr = l.closeAll()
			return
		}

		// Nothing to pop: announce that the writer sleeps, then look once
		// more, because a producer may have pushed before it could see the
		// flag (the other half of the argument is in Log).
		l.writerIdle.Store(true)
		if l.ring.Len() > 0 {
			l.writerIdle.Store(false)
			continue
		}
		select {
		case <-l.wake:
		case <-ticker.C:
		case req := <-l.reopenRequests:
			req <- l.reopenAll(time.Now())
		case <-l.stop:
			stopping = true
		}
		l.writerIdle.Store(false)
	}
}

// appendLine buffers an encoded record for every output whose record set
// contains its type.
func (l *Logger) appendLine(typ recordSet, line []byte) {
	for _, f := range l.files {
		if f.records&typ != 0 {
			f.buf = append(f.buf, line...)
		}
	}
	for _, s := range l.spools {
		if s.records&typ != 0 {
			s.buf = append(s.buf, line...)
		}
	}
}

// flushWithRetry writes every buffered line. While writes fail (a full
// disk, say) it retries with backoff and pops nothing new, so the ring fills
// and Log blocks: accounting applies backpressure rather than drop records.
// It serves Reopen requests between attempts, so an operator can move a
// failing file aside. After Close began it gives up after
// closeWriteAttempts and returns the error.
func (l *Logger) flushWithRetry() error {
	delay := writeRetryMin
	for attempt := 1; ; attempt++ {
		err := l.flushAll()
		if err == nil {
			return nil
		}
		l.writeErrors.Add(1)
		l.log.Error("writing accounting records failed; retrying", "err", err, "attempt", attempt, "retry_in", delay)

		select {
		case <-l.stop:
			if attempt >= closeWriteAttempts {
				return err
			}
		default:
		}
		timer := time.NewTimer(delay)
		select {
		case <-timer.C:
		case req := <-l.reopenRequests:
			req <- l.reopenAll(time.Now())
		case <-l.stop:
			// Close began: use the remaining attempts without waiting long.
		}
		timer.Stop()
		delay = min(2*delay, writeRetryMax)
	}
}

func (l *Logger) flushAll() error {
	var errs []error
	for _, f := range l.files {
		before := f.size
		errs = append(errs, f.flush())
		l.bytes.Add(uint64(f.size - before))
	}
	for _, s := range l.spools {
		before := s.size
		errs = append(errs, s.flush())
		l.bytes.Add(uint64(s.size - before))
		if s.size >= s.segmentSize {
			// Seal now rather than at the next sync round, so segments stay
			// close to segmentSize under load.
			errs = append(errs, s.sync())
		}
	}
	return errors.Join(errs...)
}

// syncAll fsyncs every output with unsynced data and publishes the new
// durable ends to the shippers. A failed sync is retried at the next round.
func (l *Logger) syncAll() {
	var errs []error
	for _, f := range l.files {
		errs = append(errs, f.sync())
	}
	for _, s := range l.spools {
		errs = append(errs, s.sync())
	}
	if err := errors.Join(errs...); err != nil {
		l.writeErrors.Add(1)
		l.log.Error("syncing accounting files failed", "err", err)
		return
	}
	l.syncs.Add(1)
}

// rotateDue rotates the files that reached their size or age. Rotation by
// age is checked at least once per sync interval, so a file rotates up to
// one sync interval late.
func (l *Logger) rotateDue(now time.Time) {
	for _, f := range l.files {
		if !f.rotationDue(now) {
			continue
		}
		if err := f.rotate(now); err != nil {
			l.writeErrors.Add(1)
			l.log.Error("rotating accounting file failed", "file", f.path, "err", err)
			continue
		}
		l.rotations.Add(1)
	}
}

func (l *Logger) reopenAll(now time.Time) error {
	var errs []error
	for _, f := range l.files {
		errs = append(errs, f.reopen(now))
	}
	err := errors.Join(errs...)
	if err != nil {
		l.log.Error("reopening accounting files failed", "err", err)
	} else {
		l.log.Info("reopened accounting files", "files", len(l.files))
	}
	return err
}

// closeAll flushes, fsyncs and closes every output and publishes the final
// durable ends to the shippers.
func (l *Logger) closeAll() error {
	var errs []error
	for _, f := range l.files {
		errs = append(errs, f.close())
	}
	for _, s := range l.spools {
		errs = append(errs, s.close())
	}
	l.syncs.Add(1)
	return errors.Join(errs...)
}
