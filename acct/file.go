package acct

import (
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// rotatedTimeLayout is the timestamp in a rotated file's name, in UTC:
// acct.json becomes acct-20261204-203000.json.
const rotatedTimeLayout = "20060102-150405"

// acctFile is one accounting file with its rotation policy.
//
// REQUIRES: every method runs on the writer goroutine, except that
// compression of rotated files runs in background goroutines tracked by
// background.
type acctFile struct {
	// Immutable after openAcctFile.
	path           string
	records        recordSet
	maxSize        int64         // bytes; 0 means no rotation by size
	rotateInterval time.Duration // 0 means no rotation by time
	keep           int           // rotated files kept; 0 keeps all
	compress       bool
	log            *slog.Logger
	background     *sync.WaitGroup

	// maintenance serializes the background compression and pruning of
	// rotated files.
	maintenance sync.Mutex

	// Writer goroutine only.
	f        *os.File
	size     int64     // bytes in the current file
	openedAt time.Time // when the current file was created or reopened
	dirty    bool      // written since the last fsync
	buf      []byte    // encoded lines not yet written

	// The last rotated name's timestamp and counter suffix.
	lastStamp   string
	lastCounter int
}

func openAcctFile(o FileOptions, log *slog.Logger, background *sync.WaitGroup) (*acctFile, error) {
	records, err := parseRecordSet(o.Records)
	if err != nil {
		return nil, fmt.Errorf("acct: acct-file %s: %w", o.Path, err)
	}
	if o.MaxSize < 0 || o.RotateInterval < 0 || o.Keep < 0 {
		return nil, fmt.Errorf("acct: acct-file %s: negative max size, rotate interval or keep", o.Path)
	}
	a := &acctFile{
		path:           o.Path,
		records:        records,
		maxSize:        o.MaxSize,
		rotateInterval: o.RotateInterval,
		keep:           o.Keep,
		compress:       o.Compress,
		log:            log,
		background:     background,
	}
	if err := a.open(time.Now()); err != nil {
		return nil, err
	}
	return a, nil
}

// open opens or creates the file for appending and removes a partial last
// line left by a crash in the middle of a write.
func (a *acctFile) open(now time.Time) error {
	if err := os.MkdirAll(filepath.Dir(a.path), 0o750); err != nil {
		return fmt.Errorf("acct: creating directory for %s: %w", a.path, err)
	}
	f, err := os.OpenFile(a.path, os.O_RDWR|os.O_CREATE|os.O_APPEND, 0o640)
	if err != nil {
		return fmt.Errorf("acct: opening %s: %w", a.path, err)
	}
	size, err := trimPartialLine(f, a.log)
	if err != nil {
		f.Close()
		return fmt.Errorf("acct: opening %s: %w", a.path, err)
	}
	a.f, a.size, a.openedAt, a.dirty = f, size, now, false
	return nil
}

// flush writes the buffered lines with one write call. On error the lines
// stay buffered and the next flush retries them.
func (a *acctFile) flush() error {
	if len(a.buf) == 0 {
		return nil
	}
	n, err := a.f.Write(a.buf)
	a.size += int64(n)
	a.dirty = a.dirty || n > 0
	if err != nil {
		a.buf = a.buf[:copy(a.buf, a.buf[n:])]
		return fmt.Errorf("acct: writing %s: %w", a.path, err)
	}
	a.buf = a.buf[:0]
	return nil
}

func (a *acctFile) sync() error {
	if !a.dirty {
		return nil
	}
	if err := a.f.Sync(); err != nil {
		return fmt.Errorf("acct: syncing %s: %w", a.path, err)
	}
	a.dirty = false
	return nil
}

// rotationDue reports whether the file has reached its maximum size or age.
// An empty file never rotates, so idle time does not produce empty files.
func (a *acctFile) rotationDue(now time.Time) bool {
	if a.size == 0 {
		// Count the age from the end of the idle time, so that the first
		// record after a long pause does not rotate at once.
		if a.rotateInterval > 0 && now.Sub(a.openedAt) >= a.rotateInterval {
			a.openedAt = now
		}
		return false
	}
	if a.maxSize > 0 && a.size >= a.maxSize {
		return true
	}
	return a.rotateInterval > 0 && now.Sub(a.openedAt) >= a.rotateInterval
}

// rotate syncs and closes the file, renames it to NAME-YYYYMMDD-HHMMSS.EXT,
// starts a new file, compresses the rotated one in the background when
// configured, and removes rotated files beyond keep.
func (a *acctFile) rotate(now time.Time) error {
	if err := a.flush(); err != nil {
		return err
	}
	if err := a.sync(); err != nil {
		return err
	}
	if err := a.f.Close(); err != nil {
		return fmt.Errorf("acct: closing %s: %w", a.path, err)
	}

	rotated := a.rotatedName(now)
	if err := os.Rename(a.path, rotated); err != nil {
		// Keep appending to the old file rather than lose records.
		if oerr := a.open(now); oerr != nil {
			return errors.Join(fmt.Errorf("acct: rotating %s: %w", a.path, err), oerr)
		}
		return fmt.Errorf("acct: rotating %s: %w", a.path, err)
	}
	if err := a.open(now); err != nil {
		return err
	}
	if err := syncDir(filepath.Dir(a.path)); err != nil {
		a.log.Warn("syncing directory after rotation failed", "file", a.path, "err", err)
	}
	a.log.Info("rotated accounting file", "file", a.path, "rotated", rotated)

	// Compression and pruning run in the background, one rotation at a time,
	// so pruning never removes a file that is being compressed.
	a.background.Go(func() {
		a.maintenance.Lock()
		defer a.maintenance.Unlock()
		if a.compress {
			compressFile(rotated, a.log)
		}
		a.prune()
	})
	return nil
}

// rotatedName returns a name for the file rotated at now that is not taken
// yet. Two rotations within one second get a counter suffix:
// acct-20261204-203000-1.json.
//
// The counter continues from the previous rotation in the same second even
// when pruning removed that file, so names keep sorting in rotation order.
func (a *acctFile) rotatedName(now time.Time) string {
	stem, ext := a.splitName()
	stamp := now.UTC().Format(rotatedTimeLayout)
	counter := 0
	if stamp == a.lastStamp {
		counter = a.lastCounter + 1
	}
	for {
		candidate := stem + "-" + stamp + ext
		if counter > 0 {
			candidate = fmt.Sprintf("%s-%s-%d%s", stem, stamp, counter, ext)
		}
		if !fileExists(candidate) && !fileExists(candidate+".gz") {
			a.lastStamp, a.lastCounter = stamp, counter
			return candidate
		}
		counter++
	}
}

// splitName splits the path into everything before the extension and the
// extension: /var/log/smta/acct and .json.
func (a *acctFile) splitName() (stem, ext string) {
	ext = filepath.Ext(a.path)
	return strings.TrimSuffix(a.path, ext), ext
}

// rotatedFiles lists this file's rotated copies, oldest first, with
// compressed copies among them.
func (a *acctFile) rotatedFiles() []string {
	stem, ext := a.splitName()
	matches, _ := filepath.Glob(stem + "-[0-9]*")
	type rotated struct {
		path    string
		stamp   string // YYYYMMDD-HHMMSS
		counter int    // suffix for rotations within the same second
	}
	var files []rotated
	for _, m := range matches {
		rest, ok := strings.CutSuffix(strings.TrimSuffix(m, ".gz"), ext)
		if !ok {
			continue // a temporary file of the compressor, or not ours
		}
		rest = strings.TrimPrefix(rest, stem+"-")
		if len(rest) < len(rotatedTimeLayout) {
			continue
		}
		if _, err := time.Parse(rotatedTimeLayout, rest[:len(rotatedTimeLayout)]); err != nil {
			continue
		}
		r := rotated{path: m, stamp: rest[:len(rotatedTimeLayout)]}
		if suffix := rest[len(rotatedTimeLayout):]; suffix != "" {
			n, err := strconv.Atoi(strings.TrimPrefix(suffix, "-"))
			if err != nil || !strings.HasPrefix(suffix, "-") {
				continue
			}
			r.counter = n
		}
		files = append(files, r)
	}
	slices.SortFunc(files, func(x, y rotated) int {
		if c := strings.Compare(x.stamp, y.stamp); c != 0 {
			return c
		}
		return x.counter - y.counter
	})
	paths := make([]string, len(files))
	for i, f := range files {
		paths[i] = f.path
	}
	return paths
}

// prune removes the oldest rotated files beyond keep.
func (a *acctFile) prune() {
	if a.keep == 0 {
		return
	}
	files := a.rotatedFiles()
	for len(files) > a.keep {
		if err := os.Remove(files[0]); err != nil && !errors.Is(err, os.ErrNotExist) {
			a.log.Warn("removing old accounting file failed", "file", files[0], "err", err)
		}
		files = files[1:]
	}
}

// reopen closes the file and opens the same path again, so that after an
// external tool such as logrotate renamed it, new records go to a new file.
// It also recovers from a file that fails every write: lines that the old
// file rejected stay buffered and go to the new one.
func (a *acctFile) reopen(now time.Time) error {
	if err := a.flush(); err != nil {
		a.log.Warn("writing before reopen failed; the new file gets the lines", "file", a.path, "err", err)
	}
	if err := a.sync(); err != nil {
		a.log.Warn("syncing before reopen failed", "file", a.path, "err", err)
	}
	if err := a.f.Close(); err != nil {
		a.log.Warn("closing before reopen failed", "file", a.path, "err", err)
	}
	return a.open(now)
}

func (a *acctFile) close() error {
	err := a.flush()
	if serr := a.sync(); err == nil {
		err = serr
	}
	if cerr := a.f.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("acct: closing %s: %w", a.path, cerr)
	}
	return err
}

// compressFile gzips path into path.gz and removes path. A failure leaves
// the uncompressed file in place.
func compressFile(path string, log *slog.Logger) {
	err := gzipFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return // pruned before its turn came
	}
	if err != nil {
		log.Warn("compressing rotated accounting file failed", "file", path, "err", err)
		return
	}
	if err := os.Remove(path); err != nil {
		log.Warn("removing compressed accounting file failed", "file", path, "err", err)
	}
}

func gzipFile(path string) error {
	in, err := os.Open(path)
	if err != nil {
		return err
	}
	defer in.Close()

	tmp := path + ".gz.tmp"
	out, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o640)
	if err != nil {
		return err
	}
	zw := gzip.NewWriter(out)
	_, err = io.Copy(zw, in)
	if cerr := zw.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = out.Sync()
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path+".gz")
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	return syncDir(filepath.Dir(path))
}

// trimPartialLine truncates f after its last newline and returns the new
// size. A write interrupted by a crash can leave part of a line at the end;
// removing it keeps every line a complete JSON object.
func trimPartialLine(f *os.File, log *slog.Logger) (int64, error) {
	fi, err := f.Stat()
	if err != nil {
		return 0, err
	}
	size := fi.Size()
	end := size
	var chunk [4096]byte
	for end > 0 {
		n := min(int64(len(chunk)), end)
		if _, err := f.ReadAt(chunk[:n], end-n); err != nil {
			return 0, err
		}
		if i := bytes.LastIndexByte(chunk[:n], '\n'); i >= 0 {
			end = end - n + int64(i) + 1
			break
		}
		end -= n
	}
	if end == size {
		return size, nil
	}
	if err := f.Truncate(end); err != nil {
		return 0, err
	}
	log.Warn("removed partial last line", "file", f.Name(), "bytes", size-end)
	return end, nil
}

func fileExists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}
