package spool

import (
	"fmt"
	"io"
	"os"
)

// Extent is a byte range of a segment file holding part of a message body,
// for sendfile(2). Off and Len are in octets and exclude record headers.
type Extent struct {
	File *os.File
	Off  int64
	Len  int64
}

// Extents returns the payload ranges of m's body in order. They stay valid
// until Remove(m). Unlike Body they are not verified on each call: the
// records were verified by Open or written by this process.
func (s *Spool) Extents(m *Message) ([]Extent, error) {
	if m.removed.Load() {
		return nil, fmt.Errorf("extents of %s: %w", m.Env.ID, ErrRemoved)
	}
	out := make([]Extent, 0, len(m.exts))
	for _, x := range m.exts {
		if x.Len == 0 {
			continue
		}
		out = append(out, Extent{File: x.seg.f, Off: x.Off + recordHeaderSize, Len: int64(x.Len)})
	}
	return out, nil
}

// Body returns a reader over m's body. The reader verifies each record's
// header and checksum before returning any of its bytes, and fails with an
// error wrapping ErrCorrupt on a mismatch. It is valid until Remove(m). A
// read after that fails rather than return another message's bytes, because
// a reused segment has a new generation and a deleted one a closed file.
func (s *Spool) Body(m *Message) (BodyReader, error) {
	if m.removed.Load() {
		return nil, fmt.Errorf("body of %s: %w", m.Env.ID, ErrRemoved)
	}
	return &bodyReader{id: m.Env.ID, exts: m.exts, size: m.Env.Size}, nil
}

// bodyReader reads one record at a time into rec, verifies it, then serves
// its payload.
type bodyReader struct {
	id   string
	exts []extent // records not yet read
	size int64
	rec  []byte // current record, header included
	cur  []byte // unread payload of the current record
	err  error  // sticky
}

func (r *bodyReader) Size() int64 { return r.size }

func (r *bodyReader) Read(p []byte) (int, error) {
	for len(r.cur) == 0 {
		if r.err != nil {
			return 0, r.err
		}
		if len(r.exts) == 0 {
			return 0, io.EOF
		}
		x := r.exts[0]
		r.exts = r.exts[1:]
		rec, err := readRecord(x, r.rec)
		r.rec = rec
		if err != nil {
			r.err = fmt.Errorf("%w (message %s)", err, r.id)
			return 0, r.err
		}
		r.cur = rec[recordHeaderSize:]
	}
	n := copy(p, r.cur)
	r.cur = r.cur[n:]
	return n, nil
}

// readRecord reads and verifies the record at x, reusing buf when it is
// large enough.
func readRecord(x extent, buf []byte) ([]byte, error) {
	need := recordHeaderSize + int(x.Len)
	if cap(buf) < need {
		buf = make([]byte, need)
	}
	buf = buf[:need]
	if x.Off+int64(need) > x.seg.size {
		return buf, fmt.Errorf("%w: segment %d offset %d: record of %d octets extends past the segment end at %d", ErrCorrupt, x.Seg, x.Off, need, x.seg.size)
	}
	if _, err := x.seg.f.ReadAt(buf, x.Off); err != nil {
		if err == io.EOF {
			return buf, fmt.Errorf("%w: segment %d offset %d: file truncated", ErrCorrupt, x.Seg, x.Off)
		}
		return buf, fmt.Errorf("spool: reading segment %d at %d: %w", x.Seg, x.Off, err)
	}
	if err := verifyRecord(buf, x); err != nil {
		return buf, fmt.Errorf("%w: segment %d offset %d: %v", ErrCorrupt, x.Seg, x.Off, err)
	}
	return buf, nil
}
