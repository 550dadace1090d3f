package spool

import (
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"golang.org/x/sys/unix"
)

// Open opens or creates the spool in dir (subdirectories segments/ and
// index/) and locks it against other processes. It then recovers the state.
// Every index entry is read and every record it points to is verified.
// Entries whose body fails verification are moved aside under the "corrupt/"
// key prefix, and entries whose recipients are all final are deleted. The
// segment reference counts are rebuilt, and Recover hands out the surviving
// messages.
func Open(dir string, opts Options) (*Spool, error) {
	segSize := opts.SegmentSize
	if segSize == 0 {
		segSize = defaultSegmentSize
	}
	if segSize < minSegmentSize {
		return nil, fmt.Errorf("spool: segment size %d octets is invalid, want at least %d", segSize, minSegmentSize)
	}
	hostID := defaultHostID()
	if opts.HostID != "" {
		hostID = sanitizeHostID(opts.HostID)
	}

	segDir := filepath.Join(dir, "segments")
	for _, d := range []string{dir, segDir, filepath.Join(dir, "index")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("spool: creating %s: %w", d, err)
		}
	}
	lockFile, err := lockDir(dir)
	if err != nil {
		return nil, err
	}

	db, err := pebble.Open(filepath.Join(dir, "index"), &pebble.Options{Logger: pebbleLogger{}})
	if err != nil {
		lockFile.Close()
		return nil, fmt.Errorf("spool: opening index in %s: %w", dir, err)
	}

	s := &Spool{
		dir:           dir,
		segDir:        segDir,
		db:            db,
		lockFile:      lockFile,
		segSize:       segSize,
		chunk:         int(min(maxChunk, segSize/4)),
		hostID:        hostID,
		commitDelay:   opts.CommitDelay,
		log:           slog.Default().With("component", "spool"),
		segs:          make(map[uint32]*segment),
		kick:          make(chan struct{}, 1),
		committerDone: make(chan struct{}),
	}
	start := time.Now()
	if err := s.load(); err != nil {
		for _, g := range s.segs {
			g.f.Close()
		}
		db.Close()
		lockFile.Close()
		return nil, err
	}
	go s.commitLoop()
	s.log.Info("spool opened", "dir", dir, "messages", s.messages.Load(), "segments", len(s.segs), "corrupt", s.corrupt.Load(), "took", time.Since(start))
	return s, nil
}

// lockDir takes an exclusive flock(2) on dir/LOCK, so two daemons never
// share a spool. The lock lives as long as the returned file is open.
func lockDir(dir string) (*os.File, error) {
	path := filepath.Join(dir, "LOCK")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("spool: opening lock file: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("%w: %s", ErrLocked, dir)
		}
		return nil, fmt.Errorf("spool: locking %s: %w", path, os.NewSyscallError("flock", err))
	}
	return f, nil
}

// load rebuilds the in-memory state from the index and the segment files.
// All index changes it makes go into one batch committed with Sync before
// any segment file is deleted.
func (s *Spool) load() error {
	b := s.db.NewBatch()
	defer b.Close()

	// Id epoch: strictly greater than any previous run's.
	prev, err := s.getInt(keyIDEpoch)
	if err != nil {
		return err
	}
	s.idEpoch = max(time.Now().Unix(), prev+1)
	b.Set([]byte(keyIDEpoch), strconv.AppendInt(nil, s.idEpoch, 10), nil)

	// Segment generations, then the files themselves.
	gens, err := s.loadGenerations()
	if err != nil {
		return err
	}
	if err := s.openSegments(gens); err != nil {
		return err
	}
	for no := range gens {
		if _, ok := s.segs[no]; !ok {
			b.Delete(segmentKey(no), nil)
		}
	}

	// Messages.
	if err := s.scanMessages(b); err != nil {
		return err
	}

	// Segments without references are recycled; the others are sealed. A
	// segment active before the restart is treated like any other: its tail
	// is unknown, so it is never appended to again.
	var doomed []*segment
	for _, no := range slices.Sorted(maps.Keys(s.segs)) {
		g := s.segs[no]
		if g.refs.Load() > 0 {
			g.state = segSealed
			g.tail.Store(g.size + 1)
			continue
		}
		// Keep one more than maxFreeSegments because one becomes active
		// below. Segments of another size (SegmentSize changed) go too.
		if len(s.free) >= maxFreeSegments+1 || g.size != s.segSize {
			doomed = append(doomed, g)
			b.Delete(segmentKey(no), nil)
			continue
		}
		gen := g.gen.Load() + 1
		g.gen.Store(gen)
		g.state = segFree
		b.Set(segmentKey(no), strconv.AppendUint(nil, uint64(gen), 10), nil)
		s.free = append(s.free, g)
	}
	for _, g := range doomed {
		delete(s.segs, g.no)
	}

	// The active segment: a free one, or a new file.
	s.mu.Lock()
	g, err := s.takeSegmentLocked()
	if err == nil {
		s.activateLocked(g)
	}
	s.mu.Unlock()
	if err != nil {
		return err
	}

	if err := b.Commit(pebble.Sync); err != nil {
		return fmt.Errorf("spool: committing recovered index state: %w", err)
	}

	for _, g := range doomed {
		g.f.Close()
		if err := os.Remove(g.path); err != nil {
			s.log.Error("deleting unused segment failed", "segment", g.no, "err", err)
		}
	}
	return nil
}

func (s *Spool) getInt(key string) (int64, error) {
	v, closer, err := s.db.Get([]byte(key))
	if errors.Is(err, pebble.ErrNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("spool: reading %s: %w", key, err)
	}
	defer closer.Close()
	n, err := strconv.ParseInt(string(v), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("spool: index key %s contains %q, want an integer: %w", key, v, err)
	}
	return n, nil
}

func (s *Spool) loadGenerations() (map[uint32]uint32, error) {
	it, err := s.db.NewIter(prefixBounds(prefixSegment))
	if err != nil {
		return nil, fmt.Errorf("spool: reading segment generations: %w", err)
	}
	defer it.Close()
	gens := make(map[uint32]uint32)
	for it.First(); it.Valid(); it.Next() {
		no, err1 := strconv.ParseUint(strings.TrimPrefix(string(it.Key()), prefixSegment), 10, 32)
		gen, err2 := strconv.ParseUint(string(it.Value()), 10, 32)
		if err1 != nil || err2 != nil {
			s.log.Warn("ignoring invalid segment generation key", "key", string(it.Key()), "value", string(it.Value()))
			continue
		}
		gens[uint32(no)] = uint32(gen)
	}
	return gens, it.Error()
}

// openSegments opens every segment file and sets its generation from gens.
// The index may lag when a crash lost an unsynced generation bump, so
// scanMessages raises it to the highest generation an entry references.
func (s *Spool) openSegments(gens map[uint32]uint32) error {
	ents, err := os.ReadDir(s.segDir)
	if err != nil {
		return fmt.Errorf("spool: listing segments: %w", err)
	}
	for _, e := range ents {
		name, ok := strings.CutSuffix(e.Name(), ".seg")
		if !ok || !e.Type().IsRegular() {
			continue
		}
		no, err := strconv.ParseUint(name, 10, 32)
		if err != nil {
			continue
		}
		path := filepath.Join(s.segDir, e.Name())
		f, err := os.OpenFile(path, os.O_RDWR, 0)
		if err != nil {
			return fmt.Errorf("spool: opening segment %d: %w", no, err)
		}
		fi, err := f.Stat()
		if err != nil {
			f.Close()
			return fmt.Errorf("spool: opening segment %d: %w", no, err)
		}
		g := &segment{no: uint32(no), f: f, path: path, size: fi.Size()}
		g.gen.Store(gens[uint32(no)])
		s.segs[g.no] = g
		s.nextSegNo = max(s.nextSegNo, g.no+1)
	}
	for no := range gens {
		s.nextSegNo = max(s.nextSegNo, no+1)
	}
	return nil
}

// scanMessages reads every m/ entry. Entries whose recipients are all final
// are deleted without reading their body. The rest are verified record by
// record; the good ones take segment references and wait for Recover, the
// bad ones are moved to corrupt/.
func (s *Spool) scanMessages(b *pebble.Batch) error {
	it, err := s.db.NewIter(prefixBounds(prefixMessage))
	if err != nil {
		return fmt.Errorf("spool: reading index: %w", err)
	}
	defer it.Close()

	var buf []byte
	for it.First(); it.Valid(); it.Next() {
		key := slices.Clone(it.Key())
		val := slices.Clone(it.Value())
		id := strings.TrimPrefix(string(key), prefixMessage)

		e, err := decodeEntry(val)
		if err == nil && e.Env.ID != id {
			err = fmt.Errorf("spool: entry under key %q has id %q", key, e.Env.ID)
		}
		if err == nil && allFinal(e.Env.Rcpts) {
			b.Delete(key, nil)
			continue
		}
		if err == nil {
			buf, err = s.verifyExtents(e.Extents, buf)
		}
		if err != nil {
			s.log.Error("message failed verification, moved aside", "id", id, "key", prefixCorrupt+id, "err", err)
			s.corrupt.Add(1)
			b.Set([]byte(prefixCorrupt+id), val, nil)
			b.Delete(key, nil)
			continue
		}

		for _, x := range e.Extents {
			x.seg.refs.Add(1)
		}
		s.messages.Add(1)
		s.bytes.Add(e.Env.Size)
		s.recovered = append(s.recovered, &Message{Env: e.Env, exts: e.Extents})
	}
	return it.Error()
}

// verifyExtents resolves each extent's segment and verifies its record.
func (s *Spool) verifyExtents(exts []extent, buf []byte) ([]byte, error) {
	for i := range exts {
		x := &exts[i]
		g, ok := s.segs[x.Seg]
		if !ok {
			return buf, fmt.Errorf("%w: segment %d is missing", ErrCorrupt, x.Seg)
		}
		x.seg = g
		var err error
		if buf, err = readRecord(*x, buf); err != nil {
			return buf, err
		}
		if x.Gen > g.gen.Load() {
			g.gen.Store(x.Gen)
		}
	}
	return buf, nil
}

func allFinal(rs []Recipient) bool {
	for _, r := range rs {
		if !r.State.Final() {
			return false
		}
	}
	return true
}

func prefixBounds(prefix string) *pebble.IterOptions {
	upper := []byte(prefix)
	upper[len(upper)-1]++
	return &pebble.IterOptions{LowerBound: []byte(prefix), UpperBound: upper}
}

// pebbleLogger sends Pebble's log lines to slog. Pebble's routine info
// lines (flushes, compactions) go to debug level.
type pebbleLogger struct{}

func (pebbleLogger) Infof(format string, args ...any) {
	slog.Debug("spool index", "pebble", strings.TrimSpace(fmt.Sprintf(format, args...)))
}

func (pebbleLogger) Errorf(format string, args ...any) {
	slog.Error("spool index", "pebble", strings.TrimSpace(fmt.Sprintf(format, args...)))
}

// Fatalf is called by Pebble on unrecoverable internal errors and must not
// return.
func (pebbleLogger) Fatalf(format string, args ...any) {
	msg := "spool index: " + strings.TrimSpace(fmt.Sprintf(format, args...))
	slog.Error(msg)
	panic(msg)
}
