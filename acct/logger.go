package acct

import (
	"cmp"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"smta/ring"
)

// Defaults for zero option values.
const (
	DefaultSyncInterval = time.Second
	DefaultRingSize     = 8192
	DefaultBatchSize    = 100
	DefaultMaxDelay     = 5 * time.Second
	DefaultTimeout      = 30 * time.Second
	DefaultRetryMin     = time.Second
	DefaultRetryMax     = 5 * time.Minute
	DefaultSegmentSize  = 16 << 20 // bytes
)

// DefaultFileName is the accounting file in the log directory. It receives
// every record type unless an acct-file block for the same path sets a
// record filter.
const DefaultFileName = "acct.json"

// writeBatchSize is the most records the writer pops per batch; one batch
// becomes one write call per file.
const writeBatchSize = 256

// Options configures a Logger.
type Options struct {
	// Dir is the log directory. It holds the default accounting file,
	// Dir/acct.json, and the webhook spools under Dir/webhooks. The default
	// file takes every record type and never rotates by itself (logrotate
	// and Reopen can rotate it) unless Files has an entry for its path,
	// whose options then apply.
	Dir string

	Files    []FileOptions    // additional accounting files (<acct-file PATH> blocks)
	Webhooks []WebhookOptions // HTTP endpoints (<webhook URL> blocks)

	// SyncInterval is how often written records are fsynced (acct-sync), and
	// so the most recent span of records a power failure can lose. Records
	// reach webhooks only after they are fsynced. 0 means
	// DefaultSyncInterval.
	SyncInterval time.Duration

	RingSize int          // records buffered between Log and the writer; 0 means DefaultRingSize
	Logger   *slog.Logger // operational log; nil means slog.Default()

	// beforeWrite, when set, runs on the writer goroutine before each batch
	// is written. Tests use it to slow the writer down.
	beforeWrite func()
}

// FileOptions configures one accounting file.
type FileOptions struct {
	Path    string
	Records []string // record types (TypeReceived, ...); empty means all

	MaxSize        int64         // bytes before rotation; 0 means no rotation by size
	RotateInterval time.Duration // age before rotation; 0 means no rotation by time
	Keep           int           // rotated files kept; 0 keeps all
	Compress       bool          // gzip rotated files in the background
}

// WebhookOptions configures one webhook.
type WebhookOptions struct {
	URL     string   // absolute http or https URL
	Records []string // record types; empty means all

	BatchSize int               // maximum records per POST; 0 means DefaultBatchSize
	MaxDelay  time.Duration     // maximum time a record waits for its batch to fill; 0 means DefaultMaxDelay
	Timeout   time.Duration     // per request; 0 means DefaultTimeout
	Headers   map[string]string // extra request headers; never logged

	RetryMin    time.Duration // first backoff after a failure; 0 means DefaultRetryMin
	RetryMax    time.Duration // backoff cap; 0 means DefaultRetryMax
	SegmentSize int64         // spool segment size in bytes; 0 means DefaultSegmentSize
}

// Stats are counters since Open.
type Stats struct {
	Queued            int    // records in the ring, approximate
	Written           uint64 // records written (once each, however many files take them)
	Bytes             uint64 // bytes written to all files and spools
	Syncs             uint64 // sync rounds (fsync of every file with new data)
	Rotations         uint64
	WriteErrors       uint64 // failed write, sync or rotation attempts; writes are retried
	DroppedAfterClose uint64 // records passed to Log after Close began
	Webhooks          []WebhookStats
}

// WebhookStats are one webhook's counters.
type WebhookStats struct {
	URL      string // with any password removed
	Sent     uint64 // records acknowledged with a 2xx
	Batches  uint64 // requests acknowledged with a 2xx
	Failures uint64 // failed requests
	Backlog  int64  // bytes of synced records not yet acknowledged, estimated
}

// Logger writes accounting records to files and webhooks. See the package
// comment for the design.
type Logger struct {
	// Immutable after Open.
	log          *slog.Logger
	ring         *ring.MPSC[*Record]
	syncInterval time.Duration
	beforeWrite  func()
	shippers     []*shipper

	// Writer goroutine only (after Open returns).
	files  []*acctFile
	spools []*webhookSpool

	// Producers and writer. The writer sets writerIdle before it sleeps, and
	// a producer that finds it set clears it and sends on wake. Log explains
	// why no wakeup is lost.
	writerIdle atomic.Bool
	wake       chan struct{} // capacity 1

	// lastStamp caches the formatted TimeLogged of the current millisecond;
	// any producer may replace it.
	lastStamp atomic.Pointer[timestamp]

	// Requests to the writer.
	reopenRequests chan chan error
	stop           chan struct{} // closed by Close
	writerDone     chan struct{} // closed when the writer exits
	writerErr      error         // set by the writer before writerDone is closed

	// Shutdown. closing is set by Close; Log counts and discards records
	// after it.
	closing    atomic.Bool
	closeOnce  sync.Once
	closeErr   error
	background sync.WaitGroup // compression of rotated files
	lock       *os.File       // flock on Dir/acct.lock, held until Close

	// Counters, written by the writer goroutine (droppedAfterClose by
	// producers) and read by Stats.
	written, bytes, syncs, rotations, writeErrors, droppedAfterClose atomic.Uint64
}

// Open creates the log directory if needed, opens every accounting file
// and webhook spool, and starts the writer and one shipper per webhook.
func Open(o Options) (*Logger, error) {
	if o.Dir == "" {
		return nil, errors.New("acct: missing log directory")
	}
	if o.SyncInterval < 0 || o.RingSize < 0 {
		return nil, fmt.Errorf("acct: negative sync interval %v or ring size %d", o.SyncInterval, o.RingSize)
	}
	if err := os.MkdirAll(o.Dir, 0o750); err != nil {
		return nil, fmt.Errorf("acct: creating log directory: %w", err)
	}
	lock, err := lockDir(o.Dir)
	if err != nil {
		return nil, err
	}
	log := cmp.Or(o.Logger, slog.Default())
	l := &Logger{
		lock:           lock,
		log:            log,
		ring:           ring.New[*Record](cmp.Or(o.RingSize, DefaultRingSize)),
		syncInterval:   cmp.Or(o.SyncInterval, DefaultSyncInterval),
		beforeWrite:    o.beforeWrite,
		wake:           make(chan struct{}, 1),
		reopenRequests: make(chan chan error),
		stop:           make(chan struct{}),
		writerDone:     make(chan struct{}),
	}

	if err := l.openFiles(o); err != nil {
		l.closeOutputs()
		return nil, err
	}
	if err := l.openWebhooks(o); err != nil {
		l.closeOutputs()
		return nil, err
	}

	go l.runWriter()
	for _, s := range l.shippers {
		go s.run()
	}
	log.Info("accounting started", "dir", o.Dir, "files", len(l.files), "webhooks", len(l.shippers))
	return l, nil
}

// openFiles opens the default file and the configured ones. A configured
// file at the default path replaces the default's options, which is how an
// operator sets rotation or a record filter for acct.json.
func (l *Logger) openFiles(o Options) error {
	defaultPath, err := filepath.Abs(filepath.Join(o.Dir, DefaultFileName))
	if err != nil {
		return fmt.Errorf("acct: log directory %s: %w", o.Dir, err)
	}
	files := []FileOptions{{Path: filepath.Join(o.Dir, DefaultFileName)}}
	index := map[string]int{defaultPath: 0}
	replacedDefault := false
	for _, fo := range o.Files {
		abs, err := filepath.Abs(fo.Path)
		if err != nil {
			return fmt.Errorf("acct: acct-file %s: %w", fo.Path, err)
		}
		i, dup := index[abs]
		switch {
		case dup && i == 0 && !replacedDefault:
			files[0] = fo
			replacedDefault = true
		case dup:
			return fmt.Errorf("acct: acct-file %s: configured twice", fo.Path)
		default:
			index[abs] = len(files)
			files = append(files, fo)
		}
	}

	for _, fo := range files {
		f, err := openAcctFile(fo, l.log, &l.background)
		if err != nil {
			return err
		}
		l.files = append(l.files, f)
	}
	return nil
}

func (l *Logger) openWebhooks(o Options) error {
	seen := map[string]bool{}
	for _, wo := range o.Webhooks {
		u, err := url.Parse(wo.URL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("acct: invalid webhook URL %q: want an absolute http or https URL", wo.URL)
		}
		if seen[wo.URL] {
			return fmt.Errorf("acct: webhook %s configured twice", u.Redacted())
		}
		seen[wo.URL] = true
		records, err := parseRecordSet(wo.Records)
		if err != nil {
			return fmt.Errorf("acct: webhook %s: %w", u.Redacted(), err)
		}
		if wo.BatchSize < 0 || wo.MaxDelay < 0 || wo.Timeout < 0 || wo.RetryMin < 0 || wo.RetryMax < 0 || wo.SegmentSize < 0 {
			return fmt.Errorf("acct: webhook %s: negative batch size, delay, timeout, retry or segment size", u.Redacted())
		}
		wo.BatchSize = cmp.Or(wo.BatchSize, DefaultBatchSize)
		wo.MaxDelay = cmp.Or(wo.MaxDelay, DefaultMaxDelay)
		wo.Timeout = cmp.Or(wo.Timeout, DefaultTimeout)
		wo.RetryMin = cmp.Or(wo.RetryMin, DefaultRetryMin)
		wo.RetryMax = max(cmp.Or(wo.RetryMax, DefaultRetryMax), wo.RetryMin)
		wo.SegmentSize = cmp.Or(wo.SegmentSize, DefaultSegmentSize)

		spool, err := openWebhookSpool(webhookDir(o.Dir, wo.URL), records, wo.SegmentSize, l.log)
		if err != nil {
			return err
		}
		l.spools = append(l.spools, spool)
		s, err := newShipper(wo, spool, l.log)
		if err != nil {
			return err
		}
		l.shippers = append(l.shippers, s)
	}
	return nil
}

// closeOutputs closes the files and spools after a failed Open.
func (l *Logger) closeOutputs() {
	for _, f := range l.files {
		f.close()
	}
	for _, s := range l.spools {
		s.close()
	}
	l.lock.Close()
}

// lockFileName is the lock that keeps two Loggers, in one process or two,
// from appending to the same files and shipping the same spools.
const lockFileName = "acct.lock"

// lockDir takes an exclusive flock(2) on dir/acct.lock. The kernel releases
// it when the file is closed or the process exits, so a crash leaves no
// stale lock.
func lockDir(dir string) (*os.File, error) {
	path := filepath.Join(dir, lockFileName)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o640)
	if err != nil {
		return nil, fmt.Errorf("acct: opening lock file: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("acct: log directory %s is in use by another accounting logger (%s is locked)", dir, path)
		}
		return nil, fmt.Errorf("acct: locking %s: %w", path, err)
	}
	return f, nil
}

// Log queues r for writing. It never drops a record: when the ring is full
// it waits until the writer has made room, which slows the caller down
// instead (backpressure). It sets r.TimeLogged when empty.
//
// The Logger owns r from the call on; the caller must not modify it. Log is
// safe for concurrent use. Records passed to Log after Close began are
// counted in Stats.DroppedAfterClose and not written; callers stop their
// producers before Close.
func (l *Logger) Log(r *Record) {
	if l.closing.Load() {
		l.droppedAfterClose.Add(1)
		return
	}
	if r.TimeLogged == "" {
		r.TimeLogged = l.timeLogged(time.Now())
	}
	l.ring.Push(r)

	// The writer stores writerIdle = true and then checks the ring, and this
	// push reached the ring before the load below. Go's atomics are
	// sequentially consistent, so either the writer finds the record or this
	// load finds the flag, and the writer never sleeps on a non-empty ring.
	// The swap lets only one producer pay for the channel send.
	if l.writerIdle.Load() && l.writerIdle.Swap(false) {
		select {
		case l.wake <- struct{}{}:
		default:
		}
	}
}

// timeLogged formats now for Record.TimeLogged. Records logged within the
// same millisecond share one string, so under load most calls neither
// format nor allocate.
func (l *Logger) timeLogged(now time.Time) string {
	ms := now.UnixMilli()
	if c := l.lastStamp.Load(); c != nil && c.unixMilli == ms {
		return c.text
	}
	text := now.UTC().Format(timeLoggedLayout)
	l.lastStamp.Store(&timestamp{unixMilli: ms, text: text})
	return text
}

// timestamp is a formatted TimeLogged and its Unix time in milliseconds.
type timestamp struct {
	unixMilli int64
	text      string
}

// Reopen closes and reopens every accounting file by path, so that after
// logrotate renamed the files new records go to new files. It is what the
// daemon does on SIGHUP.
func (l *Logger) Reopen() error {
	req := make(chan error, 1)
	select {
	case l.reopenRequests <- req:
		return <-req
	case <-l.writerDone:
		return errors.New("acct: reopen after close")
	}
}

// Close writes every record logged before it, fsyncs the files, lets each
// webhook shipper make a final attempt to send what it has left, and stops.
// Unsent records stay in the webhook spools and are sent after the next
// Open. Close is idempotent.
func (l *Logger) Close() error {
	l.closeOnce.Do(func() {
		l.closing.Store(true)
		close(l.stop)
		<-l.writerDone
		errs := []error{l.writerErr}

		for _, s := range l.shippers {
			close(s.closing)
		}
		for _, s := range l.shippers {
			<-s.done
		}
		l.background.Wait()
		errs = append(errs, l.lock.Close())

		st := l.Stats()
		l.log.Info("accounting stopped", "written", st.Written, "write_errors", st.WriteErrors,
			"dropped_after_close", st.DroppedAfterClose)
		l.closeErr = errors.Join(errs...)
	})
	return l.closeErr
}

// Stats returns the counters.
func (l *Logger) Stats() Stats {
	st := Stats{
		Queued:            l.ring.Len(),
		Written:           l.written.Load(),
		Bytes:             l.bytes.Load(),
		Syncs:             l.syncs.Load(),
		Rotations:         l.rotations.Load(),
		WriteErrors:       l.writeErrors.Load(),
		DroppedAfterClose: l.droppedAfterClose.Load(),
	}
	for _, s := range l.shippers {
		st.Webhooks = append(st.Webhooks, WebhookStats{
			URL:      s.redacted,
			Sent:     s.sent.Load(),
			Batches:  s.batches.Load(),
			Failures: s.failures.Load(),
			Backlog:  s.backlog(),
		})
	}
	return st
}
