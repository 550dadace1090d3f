package spool

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// segment is one fixed-size file of records.
//
// Life cycle: free (refs == 0, on the free list) → active (holds the active
// reference, writers append) → sealed (no more appends; references held by
// committed messages and in-flight writers) → when refs reaches zero,
// recycled: its generation is bumped and it goes back to the free list, or
// its file is deleted when the free list is full.
type segment struct {
	// Immutable after creation.
	no   uint32
	f    *os.File
	path string
	size int64 // file size in octets

	// Atomics. refs counts the active reference (while active), one per
	// record of a committed message, and one per record of an in-flight
	// writer. Appends reserve [tail-n, tail) with tail.Add(n); a reservation
	// that ends past size has failed. gen changes only while refs == 0 (in
	// recycle) and is published to writers by the refs.Store(1) that
	// activates the segment.
	refs atomic.Int64
	tail atomic.Int64
	gen  atomic.Uint32

	// Guarded by Spool.mu.
	state segState
}

type segState uint8

const (
	segFree segState = iota // initial: on the free list
	segActive
	segSealed
	segDeleted
)

func segmentPath(dir string, no uint32) string {
	return filepath.Join(dir, fmt.Sprintf("%08d.seg", no))
}

// tryRef takes a reference unless the count is zero, which means the segment
// is free or being recycled and must not be written.
func (g *segment) tryRef() bool {
	for {
		r := g.refs.Load()
		if r <= 0 {
			return false
		}
		if g.refs.CompareAndSwap(r, r+1) {
			return true
		}
	}
}

// createSegment creates and preallocates a new segment file and makes its
// directory entry durable, so a later fdatasync of the file alone is enough.
func createSegment(dir string, no uint32, size int64, warnedZeroFill *atomic.Bool) (*segment, error) {
	path := segmentPath(dir, no)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("spool: creating segment %d: %w", no, err)
	}
	if err := preallocate(f, size, warnedZeroFill); err != nil {
		f.Close()
		os.Remove(path)
		return nil, fmt.Errorf("spool: preallocating segment %d: %w", no, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		os.Remove(path)
		return nil, fmt.Errorf("spool: syncing new segment %d: %w", no, err)
	}
	if err := syncDir(dir); err != nil {
		f.Close()
		os.Remove(path)
		return nil, err
	}
	return &segment{no: no, f: f, path: path, size: size}, nil
}

// preallocate reserves size octets for f with fallocate(2), so appends never
// extend the file and fdatasync has no size change to journal. Filesystems
// without fallocate get zeros written instead, with one warning per Spool.
func preallocate(f *os.File, size int64, warned *atomic.Bool) error {
	err := fallocate(int(f.Fd()), 0, 0, size)
	if err == nil {
		return nil
	}
	if !errors.Is(err, unix.EOPNOTSUPP) {
		return os.NewSyscallError("fallocate", err)
	}
	if warned.CompareAndSwap(false, true) {
		slog.Warn("fallocate not supported, writing zeros to preallocate segments", "component", "spool", "file", f.Name())
	}
	zeros := make([]byte, 1<<20)
	for off := int64(0); off < size; off += int64(len(zeros)) {
		n := min(int64(len(zeros)), size-off)
		if _, err := f.WriteAt(zeros[:n], off); err != nil {
			return err
		}
	}
	return nil
}

// fallocate is unix.Fallocate, replaceable by tests of the fallback.
var fallocate = unix.Fallocate

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("spool: opening directory for sync: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("spool: syncing directory %s: %w", dir, err)
	}
	return nil
}

// fdatasync flushes the segment's data (and only the metadata needed to read
// it back) to stable storage; see fdatasync(2).
func (g *segment) fdatasync() error {
	if err := unix.Fdatasync(int(g.f.Fd())); err != nil {
		return fmt.Errorf("spool: fdatasync segment %d: %w", g.no, os.NewSyscallError("fdatasync", err))
	}
	return nil
}
