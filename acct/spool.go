package acct

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
)

// webhookSpool is the writer's side of one webhook: the records for that
// webhook, appended as JSON lines to numbered segment files in a directory
// of their own. The shipper reads the same files and deletes a segment once
// every record in it was acknowledged.
//
// The shipper reads only up to synced, which the writer advances after an
// fsync. So the shipper never sends a record that a crash could still
// remove, and its persisted position never points past the durable end of
// a segment. A segment whose number is below synced.segment is sealed: the
// writer fsynced and closed it before creating the next one, so its size is
// final.
//
// NOTE: the spool has no size limit. While a webhook is down its spool
// grows by every record it takes, and only disk space bounds it.
type webhookSpool struct {
	// Immutable after openWebhookSpool.
	dir         string
	records     recordSet
	segmentSize int64 // bytes; a segment is sealed once a write reaches this size
	log         *slog.Logger

	// Writer goroutine only.
	segment uint64
	f       *os.File
	size    int64
	dirty   bool
	buf     []byte

	// Shared with the shipper. The writer stores synced and then sends on
	// notify without blocking; notify has capacity 1, so repeated signals
	// merge.
	synced atomic.Pointer[position]
	notify chan struct{}
}

// webhookDir returns the spool directory for a webhook URL. The name is a
// hash of the URL, so a changed URL starts a new, empty spool, and no
// credentials from the URL appear in file names.
func webhookDir(logDir, url string) string {
	sum := sha256.Sum256([]byte(url))
	return filepath.Join(logDir, "webhooks", hex.EncodeToString(sum[:8]))
}

func segmentName(dir string, segment uint64) string {
	return filepath.Join(dir, fmt.Sprintf("%010d.json", segment))
}

// listSegments returns the segment numbers in dir in ascending order.
func listSegments(dir string) ([]uint64, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var segments []uint64
	for _, e := range entries {
		name, ok := strings.CutSuffix(e.Name(), ".json")
		if !ok {
			continue
		}
		n, err := strconv.ParseUint(name, 10, 64)
		if err != nil || n == 0 {
			continue
		}
		segments = append(segments, n) // ReadDir sorts by name, and names are zero-padded
	}
	return segments, nil
}

func openWebhookSpool(dir string, records recordSet, segmentSize int64, log *slog.Logger) (*webhookSpool, error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("acct: creating webhook spool: %w", err)
	}
	segments, err := listSegments(dir)
	if err != nil {
		return nil, fmt.Errorf("acct: listing webhook spool %s: %w", dir, err)
	}
	s := &webhookSpool{
		dir:         dir,
		records:     records,
		segmentSize: segmentSize,
		log:         log,
		segment:     1,
		notify:      make(chan struct{}, 1),
	}
	if len(segments) > 0 {
		s.segment = segments[len(segments)-1]
	}
	// After a crash the shipper may have advanced to a segment the writer
	// never created; continue from there so positions stay ordered.
	if p, ok, err := readPosition(dir); err != nil {
		return nil, err
	} else if ok && p.segment > s.segment {
		s.segment = p.segment
	}
	if err := s.openSegment(); err != nil {
		return nil, err
	}
	s.synced.Store(&position{segment: s.segment, offset: s.size})
	return s, nil
}

func (s *webhookSpool) openSegment() error {
	name := segmentName(s.dir, s.segment)
	f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_APPEND, 0o640)
	if err != nil {
		return fmt.Errorf("acct: opening webhook segment: %w", err)
	}
	size, err := trimPartialLine(f, s.log)
	if err != nil {
		f.Close()
		return fmt.Errorf("acct: opening webhook segment %s: %w", name, err)
	}
	if err := syncDir(s.dir); err != nil {
		f.Close()
		return fmt.Errorf("acct: opening webhook segment %s: %w", name, err)
	}
	s.f, s.size, s.dirty = f, size, false
	return nil
}

// flush writes the buffered lines with one write call. On error the lines
// stay buffered and the next flush retries them.
func (s *webhookSpool) flush() error {
	if len(s.buf) == 0 {
		return nil
	}
	n, err := s.f.Write(s.buf)
	s.size += int64(n)
	s.dirty = s.dirty || n > 0
	if err != nil {
		s.buf = s.buf[:copy(s.buf, s.buf[n:])]
		return fmt.Errorf("acct: writing %s: %w", s.f.Name(), err)
	}
	s.buf = s.buf[:0]
	return nil
}

// sync fsyncs the segment, publishes the new durable end to the shipper and
// seals the segment once it has reached segmentSize.
func (s *webhookSpool) sync() error {
	if s.dirty {
		if err := s.f.Sync(); err != nil {
			return fmt.Errorf("acct: syncing %s: %w", s.f.Name(), err)
		}
		s.dirty = false
		s.publish()
	}
	if s.size < s.segmentSize {
		return nil
	}

	// Seal: the old segment is synced and its size final, so the shipper may
	// read it to the end once synced names a later segment.
	old := s.f
	s.segment++
	if err := s.openSegment(); err != nil {
		s.segment--
		return err
	}
	if err := old.Close(); err != nil {
		s.log.Warn("closing sealed webhook segment failed", "file", old.Name(), "err", err)
	}
	s.publish()
	return nil
}

func (s *webhookSpool) publish() {
	s.synced.Store(&position{segment: s.segment, offset: s.size})
	select {
	case s.notify <- struct{}{}:
	default:
	}
}

func (s *webhookSpool) close() error {
	err := s.flush()
	if serr := s.sync(); err == nil {
		err = serr
	}
	if cerr := s.f.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("acct: closing %s: %w", s.f.Name(), cerr)
	}
	return err
}

// removeSegment deletes a fully acknowledged segment.
func removeSegment(dir string, segment uint64) error {
	err := os.Remove(segmentName(dir, segment))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}
