package spool

import (
	"errors"
	"fmt"
	"io"
)

var errWriterDone = errors.New("spool: writer already committed or aborted")

// Writer receives the body of one message. It buffers body bytes and appends
// a record to the active segment whenever the buffer holds a full chunk, and
// once more at Commit. A message of up to one chunk (256 KiB with 64 MiB
// segments) is therefore a single record written with a single pwrite.
//
// A Writer is used by one goroutine at a time.
type Writer struct {
	s     *Spool
	buf   *[]byte  // recordHeaderSize octets of room for the header, then buffered payload
	exts  []extent // records appended so far; each holds a segment reference
	size  int64    // payload octets in exts
	err   error    // first append failure, reported by Commit
	done  bool     // Commit or Abort was called
	async AsyncWriter
}

// AsyncWriter queues positional file writes that complete later, for
// example on an io_uring ring whose thread already makes one system call per
// loop turn. The engine's io_uring shards implement it.
type AsyncWriter interface {
	// WriteAt queues a write of p at offset off of file descriptor fd and
	// returns true, or returns false without queueing anything. done is
	// called once, later, with the number of octets written (all of p on
	// success) or the error. fd and p stay valid until done is called.
	WriteAt(fd int, p []byte, off int64, done func(n int, err error)) bool
}

// SetAsync makes Commit write the message's last record through a instead
// of with pwrite(2). Records written before Commit, one per full chunk, still
// use pwrite. a is used from the goroutine that calls Commit, and the
// commit then starts from a's done callback.
func (w *Writer) SetAsync(a AsyncWriter) { w.async = a }

// NewWriter returns a Writer for one message.
func (s *Spool) NewWriter() *Writer {
	return &Writer{s: s, buf: s.getBuf()}
}

// Write buffers body bytes, which must be in SMTP wire form: CRLF lines,
// dot-stuffed, without the final ".\r\n".
func (w *Writer) Write(p []byte) (int, error) {
	if w.done {
		return 0, errWriterDone
	}
	if w.err != nil {
		return 0, w.err
	}
	written := 0
	for len(p) > 0 {
		buf := *w.buf
		k := min(w.s.chunk-(len(buf)-recordHeaderSize), len(p))
		*w.buf = append(buf, p[:k]...)
		p = p[k:]
		written += k
		if len(*w.buf)-recordHeaderSize == w.s.chunk {
			if err := w.flush(0); err != nil {
				w.err = err
				return written, err
			}
		}
	}
	return written, nil
}

// flush appends the buffered payload as the next record.
func (w *Writer) flush(flags uint32) error {
	rec := *w.buf
	x, err := w.s.appendRecord(rec, uint32(len(w.exts)), flags)
	if err != nil {
		return err
	}
	w.addExtent(x, rec)
	*w.buf = rec[:recordHeaderSize]
	return nil
}

// addExtent records x, the extent of the written record rec.
func (w *Writer) addExtent(x extent, rec []byte) {
	w.exts = append(w.exts, x)
	w.size += int64(len(rec) - recordHeaderSize)
}

// Commit appends the last record and queues the message for group commit.
// env is copied. When env.ID is empty a new id is assigned; a non-empty id
// must not belong to another stored message, whose entry it would replace.
// Env.Size is set to the body length.
//
// done is called exactly once, from the committer goroutine, after the body
// has been fdatasync'ed and the envelope committed to the index with Sync, so
// a nil error means the message survives a crash or power loss. done delays
// every commit behind it and must not block. If Commit is called after Close
// or twice, done is called before Commit returns, with the error. With
// SetAsync the last record is written first, so a Close that comes before
// that write completes also fails the commit, from the AsyncWriter's
// callback.
func (w *Writer) Commit(env *Envelope, done func(*Message, error)) {
	if w.done {
		done(nil, errWriterDone)
		return
	}
	w.done = true
	if w.err == nil && w.async != nil {
		w.commitAsync(cloneEnvelope(env), done)
		return
	}
	if w.err == nil {
		w.err = w.flush(flagLast)
	}
	w.enqueue(cloneEnvelope(env), done)
}

// commitAsync writes the last record through w.async and enqueues the
// message for group commit when that write completes.
func (w *Writer) commitAsync(env Envelope, done func(*Message, error)) {
	rec := *w.buf
	x, g, err := w.s.reserveRecord(rec, uint32(len(w.exts)), flagLast)
	if err != nil {
		w.err = err
		w.enqueue(env, done)
		return
	}
	finish := func(n int, err error) {
		if err == nil && n != len(rec) {
			err = io.ErrShortWrite
		}
		if err != nil {
			w.s.unref(g)
			w.err = fmt.Errorf("spool: writing record to segment %d at %d: %w", g.no, x.Off, err)
		} else {
			w.addExtent(x, rec)
		}
		w.enqueue(env, done)
	}
	if !w.async.WriteAt(int(g.f.Fd()), rec, x.Off, finish) {
		n, err := g.f.WriteAt(rec, x.Off)
		finish(n, err)
	}
}

// enqueue hands the message to the committer once its records are written.
// env is the caller's copy.
func (w *Writer) enqueue(env Envelope, done func(*Message, error)) {
	w.s.putBuf(w.buf)
	w.buf = nil

	m := &Message{Env: env, exts: w.exts}
	m.Env.Size = w.size
	if m.Env.ID == "" {
		m.Env.ID = w.s.newID()
	}
	p := &pendingCommit{msg: m, done: done}
	if w.err != nil {
		p.err = fmt.Errorf("spool: writing body of %s: %w", m.Env.ID, w.err)
	} else {
		// Encode here rather than in the committer, so concurrent
		// writers share the work instead of queueing behind it.
		p.value = encodeEntry(&m.Env, m.exts)
	}
	w.s.enqueue(p)
}

// Abort discards the message and releases the space it used. It is a no-op
// after Commit or a previous Abort.
func (w *Writer) Abort() {
	if w.done {
		return
	}
	w.done = true
	w.s.release(w.exts)
	w.exts = nil
	w.s.putBuf(w.buf)
	w.buf = nil
}

// appendRecord writes rec (header room plus payload) into the active
// segment and returns its extent, which holds a reference on the segment.
//
// This is the lock-free append path: a reference and an atomic add on the
// segment's tail reserve the range, and pwrite fills it. Only a record that
// does not fit takes the lock, to rotate segments.
func (s *Spool) appendRecord(rec []byte, seq, flags uint32) (extent, error) {
	x, g, err := s.reserveRecord(rec, seq, flags)
	if err != nil {
		return extent{}, err
	}
	if _, err := g.f.WriteAt(rec, x.Off); err != nil {
		s.unref(g)
		return extent{}, fmt.Errorf("spool: writing record to segment %d at %d: %w", g.no, x.Off, err)
	}
	return x, nil
}

// reserveRecord reserves room for rec in the active segment and fills in
// its header. The caller writes rec at the extent's offset, and on failure
// drops the segment reference the extent holds with unref.
func (s *Spool) reserveRecord(rec []byte, seq, flags uint32) (extent, *segment, error) {
	n := int64(len(rec))
	payload := rec[recordHeaderSize:]
	for {
		g := s.active.Load()
		if g == nil {
			return extent{}, nil, ErrClosed
		}
		if !g.tryRef() {
			// g was sealed and drained between the load and tryRef,
			// so the next load returns its successor.
			continue
		}

		end := g.tail.Add(n)
		if end > g.size {
			s.unref(g)
			if err := s.rotate(g); err != nil {
				return extent{}, nil, err
			}
			continue
		}

		off := end - n
		gen := g.gen.Load()
		putHeader(rec, recordHeader{gen: gen, seq: seq, length: uint32(len(payload)), flags: flags}, payload)
		return extent{Seg: g.no, Gen: gen, Seq: seq, Off: off, Len: uint32(len(payload)), seg: g}, g, nil
	}
}

func (s *Spool) getBuf() *[]byte {
	if b, ok := s.bufPool.Get().(*[]byte); ok {
		*b = (*b)[:recordHeaderSize]
		return b
	}
	b := make([]byte, recordHeaderSize, recordHeaderSize+4096)
	return &b
}

func (s *Spool) putBuf(b *[]byte) {
	if b != nil {
		s.bufPool.Put(b)
	}
}
