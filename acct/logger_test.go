package acct

import (
	"bufio"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

func openTestLogger(t *testing.T, o Options) *Logger {
	t.Helper()
	if o.Logger == nil {
		o.Logger = discardLogger()
	}
	l, err := Open(o)
	if err != nil {
		t.Fatalf("Open(%+v): %v", o, err)
	}
	return l
}

func closeLogger(t *testing.T, l *Logger) {
	t.Helper()
	if err := l.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
}

// readRecords decodes every line of a JSON-lines file, gzip-compressed when
// the name ends in .gz.
func readRecords(t *testing.T, path string) []Record {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var r io.Reader = f
	if filepath.Ext(path) == ".gz" {
		zr, err := gzip.NewReader(f)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		r = zr
	}
	var records []Record
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		var rec Record
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
			t.Fatalf("%s: line %d: %v: %q", path, len(records)+1, err, sc.Text())
		}
		records = append(records, rec)
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return records
}

// numbered returns a record whose Orig names the producer and MsgID its
// sequence number within that producer.
func numbered(typ string, producer, seq int) *Record {
	return &Record{Type: typ, Orig: "p" + strconv.Itoa(producer), MsgID: strconv.Itoa(seq)}
}

// checkSequences verifies that records contain, for each producer
// 0..producers-1, exactly the sequence numbers 0..perProducer-1 in order.
func checkSequences(t *testing.T, records []Record, producers, perProducer int) {
	t.Helper()
	next := make([]int, producers)
	for i, r := range records {
		p, err := strconv.Atoi(r.Orig[1:])
		if err != nil || p >= producers {
			t.Fatalf("record %d: unexpected producer %q", i, r.Orig)
		}
		seq, _ := strconv.Atoi(r.MsgID)
		if seq != next[p] {
			t.Fatalf("record %d: producer %d sequence %d, want %d", i, p, seq, next[p])
		}
		next[p]++
	}
	for p, n := range next {
		if n != perProducer {
			t.Errorf("producer %d: %d records, want %d", p, n, perProducer)
		}
	}
}

// waitFor polls cond until it holds. The bound only stops a broken test
// from hanging; no test depends on how fast cond becomes true.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestLogSoak logs from many goroutines into a small ring while the writer
// is slowed down, so producers block on a full ring, and checks that no
// record is lost and each producer's order is kept.
func TestLogSoak(t *testing.T) {
	producers, perProducer := 16, 20_000
	if testing.Short() || raceEnabled {
		perProducer = 2_000
	}
	var batches atomic.Int64
	dir := t.TempDir()
	l := openTestLogger(t, Options{
		Dir:      dir,
		RingSize: 64,
		beforeWrite: func() {
			if batches.Add(1)%16 == 0 {
				time.Sleep(time.Millisecond)
			}
		},
	})

	var wg sync.WaitGroup
	for p := range producers {
		wg.Go(func() {
			for i := range perProducer {
				l.Log(numbered(TypeDelivered, p, i))
			}
		})
	}
	wg.Wait()
	closeLogger(t, l)

	records := readRecords(t, filepath.Join(dir, "acct.json"))
	checkSequences(t, records, producers, perProducer)
	st := l.Stats()
	if want := uint64(producers * perProducer); st.Written != want {
		t.Errorf("Stats().Written = %d, want %d", st.Written, want)
	}
	if st.Queued != 0 {
		t.Errorf("Stats().Queued after Close = %d, want 0", st.Queued)
	}
	for _, r := range records[:10] {
		if _, err := time.Parse(timeLoggedLayout, r.TimeLogged); err != nil {
			t.Errorf("TimeLogged %q: %v", r.TimeLogged, err)
		}
	}
}

func TestFileRecordFilter(t *testing.T) {
	dir := t.TempDir()
	l := openTestLogger(t, Options{
		Dir: dir,
		Files: []FileOptions{
			{Path: filepath.Join(dir, "delivered.json"), Records: []string{TypeDelivered}},
			{Path: filepath.Join(dir, "failed.json"), Records: []string{TypeBounced, TypeRejected}},
		},
	})
	types := []string{TypeReceived, TypeDelivered, TypeTransient, TypeBounced, TypeExpired, TypeRejected, TypeFeedback, "custom"}
	for i, typ := range types {
		l.Log(numbered(typ, 0, i))
	}
	closeLogger(t, l)

	tests := []struct {
		file string
		want []string
	}{
		{"acct.json", types},
		{"delivered.json", []string{TypeDelivered}},
		{"failed.json", []string{TypeBounced, TypeRejected}},
	}
	for _, tt := range tests {
		var got []string
		for _, r := range readRecords(t, filepath.Join(dir, tt.file)) {
			got = append(got, r.Type)
		}
		if !slices.Equal(got, tt.want) {
			t.Errorf("%s types = %q, want %q", tt.file, got, tt.want)
		}
	}
}

func TestOpenRejectsInvalidOptions(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name string
		o    Options
	}{
		{"missing dir", Options{}},
		{"unknown file record type", Options{Dir: dir, Files: []FileOptions{{Path: filepath.Join(dir, "x.json"), Records: []string{"delivered"}}}}},
		{"default file twice", Options{Dir: dir, Files: []FileOptions{{Path: filepath.Join(dir, "acct.json")}, {Path: filepath.Join(dir, "acct.json")}}}},
		{"extra file twice", Options{Dir: dir, Files: []FileOptions{{Path: filepath.Join(dir, "x.json")}, {Path: filepath.Join(dir, "sub", "..", "x.json")}}}},
		{"relative webhook url", Options{Dir: dir, Webhooks: []WebhookOptions{{URL: "/hook"}}}},
		{"ftp webhook url", Options{Dir: dir, Webhooks: []WebhookOptions{{URL: "ftp://127.0.0.1/"}}}},
		{"unknown webhook record type", Options{Dir: dir, Webhooks: []WebhookOptions{{URL: "http://127.0.0.1:1/", Records: []string{"z"}}}}},
		{"negative batch size", Options{Dir: dir, Webhooks: []WebhookOptions{{URL: "http://127.0.0.1:1/", BatchSize: -1}}}},
	}
	for _, tt := range tests {
		tt.o.Logger = discardLogger()
		l, err := Open(tt.o)
		if err == nil {
			l.Close()
			t.Errorf("Open(%s) succeeded, want error", tt.name)
		}
	}
}

var rotatedNameRE = regexp.MustCompile(`^acct-\d{8}-\d{6}(-\d+)?\.json(\.gz)?$`)

// rotatedRecords returns the records of every rotated copy of acct.json in
// dir, oldest first, followed by the current file's, and the rotated names.
func rotatedRecords(t *testing.T, dir string) ([]Record, []string) {
	t.Helper()
	f := &acctFile{path: filepath.Join(dir, "acct.json")}
	rotated := f.rotatedFiles()
	var records []Record
	var names []string
	for _, path := range rotated {
		names = append(names, filepath.Base(path))
		records = append(records, readRecords(t, path)...)
	}
	records = append(records, readRecords(t, f.path)...)
	return records, names
}

func TestRotateBySize(t *testing.T) {
	const total = 300
	dir := t.TempDir()
	// The default file rotates every ~2 KB.
	l := openTestLogger(t, Options{
		Dir:   dir,
		Files: []FileOptions{{Path: filepath.Join(dir, DefaultFileName), MaxSize: 2000}},
	})
	for i := range total {
		l.Log(numbered(TypeDelivered, 0, i))
		if i%20 == 0 {
			// Let the writer run so rotations happen between batches.
			waitFor(t, "writer to catch up", func() bool { return l.Stats().Written == uint64(i+1) })
		}
	}
	closeLogger(t, l)

	records, names := rotatedRecords(t, dir)
	if len(names) < 3 {
		t.Fatalf("rotated files = %q, want at least 3", names)
	}
	for _, name := range names {
		if !rotatedNameRE.MatchString(name) {
			t.Errorf("rotated file name %q does not match %v", name, rotatedNameRE)
		}
	}
	checkSequences(t, records, 1, total)
	if got := l.Stats().Rotations; got != uint64(len(names)) {
		t.Errorf("Stats().Rotations = %d, want %d", got, len(names))
	}
}

func TestRotateKeepAndCompress(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "d.json")
	l := openTestLogger(t, Options{
		Dir:   dir,
		Files: []FileOptions{{Path: path, MaxSize: 500, Keep: 2, Compress: true}},
	})
	const total = 200
	for i := range total {
		l.Log(numbered(TypeDelivered, 0, i))
		if i%10 == 0 {
			waitFor(t, "writer to catch up", func() bool { return l.Stats().Written == uint64(i+1) })
		}
	}
	closeLogger(t, l)

	f := &acctFile{path: path}
	rotated := f.rotatedFiles()
	if len(rotated) != 2 {
		t.Fatalf("rotated files with keep 2 = %q, want 2", rotated)
	}
	var records []Record
	for _, p := range rotated {
		if filepath.Ext(p) != ".gz" {
			t.Errorf("rotated file %s not compressed", p)
		}
		records = append(records, readRecords(t, p)...)
	}
	records = append(records, readRecords(t, path)...)
	// The kept files and the current one hold the newest records in order.
	if len(records) == 0 || records[len(records)-1].MsgID != strconv.Itoa(total-1) {
		t.Fatalf("last record = %+v, want MsgID %d", records[len(records)-1], total-1)
	}
	for i := 1; i < len(records); i++ {
		prev, _ := strconv.Atoi(records[i-1].MsgID)
		cur, _ := strconv.Atoi(records[i].MsgID)
		if cur != prev+1 {
			t.Fatalf("record %d: MsgID %d follows %d", i, cur, prev)
		}
	}
	if leftovers, _ := filepath.Glob(filepath.Join(dir, "*.tmp")); len(leftovers) > 0 {
		t.Errorf("temporary files left: %q", leftovers)
	}
}

func TestRotateByInterval(t *testing.T) {
	dir := t.TempDir()
	// Options for the default file's path set the default file's rotation,
	// so the writer goroutine sees the interval from the start.
	l := openTestLogger(t, Options{
		Dir:          dir,
		SyncInterval: 10 * time.Millisecond,
		Files:        []FileOptions{{Path: filepath.Join(dir, DefaultFileName), RotateInterval: 50 * time.Millisecond}},
	})

	l.Log(numbered(TypeDelivered, 0, 0))
	waitFor(t, "rotation by time", func() bool { return l.Stats().Rotations >= 1 })
	// An empty file does not rotate however old it is.
	time.Sleep(150 * time.Millisecond)
	if got := l.Stats().Rotations; got != 1 {
		t.Errorf("Stats().Rotations with an idle, empty file = %d, want 1", got)
	}
	l.Log(numbered(TypeDelivered, 0, 1))
	closeLogger(t, l)

	records, names := rotatedRecords(t, dir)
	if got := l.Stats().Rotations; got != uint64(len(names)) {
		t.Errorf("Stats().Rotations = %d, want %d rotated files", got, len(names))
	}
	for _, name := range names {
		if !rotatedNameRE.MatchString(name) {
			t.Errorf("rotated file name %q does not match %v", name, rotatedNameRE)
		}
	}
	checkSequences(t, records, 1, 2)
}

func TestReopenAfterExternalRename(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "acct.json")
	l := openTestLogger(t, Options{Dir: dir})

	for i := range 5 {
		l.Log(numbered(TypeDelivered, 0, i))
	}
	waitFor(t, "first records written", func() bool { return l.Stats().Written == 5 })
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	if err := l.Reopen(); err != nil {
		t.Fatalf("Reopen: %v", err)
	}
	for i := 5; i < 8; i++ {
		l.Log(numbered(TypeDelivered, 0, i))
	}
	closeLogger(t, l)

	if got := len(readRecords(t, path+".1")); got != 5 {
		t.Errorf("renamed file records = %d, want 5", got)
	}
	if got := len(readRecords(t, path)); got != 3 {
		t.Errorf("reopened file records = %d, want 3", got)
	}
	if err := l.Reopen(); err == nil {
		t.Error("Reopen after Close succeeded, want error")
	}
}

func TestOpenTrimsPartialLine(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "acct.json")
	complete := string(appendRecord(nil, numbered(TypeDelivered, 0, 0)))
	if err := os.WriteFile(path, []byte(complete+`{"type":"d","orig":"p0","msgI`), 0o640); err != nil {
		t.Fatal(err)
	}
	l := openTestLogger(t, Options{Dir: dir})
	l.Log(numbered(TypeDelivered, 0, 1))
	closeLogger(t, l)

	checkSequences(t, readRecords(t, path), 1, 2)
}

func TestLogAfterCloseCounted(t *testing.T) {
	l := openTestLogger(t, Options{Dir: t.TempDir()})
	closeLogger(t, l)
	l.Log(numbered(TypeDelivered, 0, 0))
	if got := l.Stats().DroppedAfterClose; got != 1 {
		t.Errorf("Stats().DroppedAfterClose = %d, want 1", got)
	}
	if err := l.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

func TestSyncIntervalSyncs(t *testing.T) {
	l := openTestLogger(t, Options{Dir: t.TempDir(), SyncInterval: 5 * time.Millisecond})
	l.Log(numbered(TypeDelivered, 0, 0))
	waitFor(t, "a sync round", func() bool { return l.Stats().Syncs >= 1 })
	closeLogger(t, l)
	if got := l.Stats().Bytes; got == 0 {
		t.Error("Stats().Bytes = 0 after writing a record")
	}
}

func ExampleLogger() {
	dir, _ := os.MkdirTemp("", "acct-example")
	defer os.RemoveAll(dir)

	l, err := Open(Options{Dir: dir, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		fmt.Println(err)
		return
	}
	l.Log(&Record{Type: TypeDelivered, TimeLogged: "2026-12-04T20:30:00.000Z", Orig: "a@example.com", Rcpt: "b@example.net"})
	l.Close()

	b, _ := os.ReadFile(filepath.Join(dir, "acct.json"))
	fmt.Print(string(b))
	// Output: {"type":"d","timeLogged":"2026-12-04T20:30:00.000Z","orig":"a@example.com","rcpt":"b@example.net"}
}

// TestWriteErrorsBlockThenRecover points an accounting file at /dev/full,
// which fails every write with ENOSPC, and checks that the writer keeps the
// records and delivers them after Reopen finds a writable file.
func TestWriteErrorsBlockThenRecover(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "full.json")
	if err := os.Symlink("/dev/full", path); err != nil {
		t.Fatal(err)
	}
	l := openTestLogger(t, Options{Dir: dir, Files: []FileOptions{{Path: path}}})
	for i := range 5 {
		l.Log(numbered(TypeDelivered, 0, i))
	}
	waitFor(t, "a write error", func() bool { return l.Stats().WriteErrors >= 1 })
	if got := l.Stats().Written; got != 0 {
		t.Errorf("Stats().Written while a file fails = %d, want 0", got)
	}

	// The operator frees the path; Reopen creates a regular file there.
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if err := l.Reopen(); err != nil {
		t.Fatalf("Reopen: %v", err)
	}
	waitFor(t, "the held records to be written", func() bool { return l.Stats().Written == 5 })
	closeLogger(t, l)

	checkSequences(t, readRecords(t, path), 1, 5)
	checkSequences(t, readRecords(t, filepath.Join(dir, "acct.json")), 1, 5)
}

func TestCloseReportsPersistentWriteError(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "full.json")
	if err := os.Symlink("/dev/full", path); err != nil {
		t.Fatal(err)
	}
	l := openTestLogger(t, Options{Dir: dir, Files: []FileOptions{{Path: path}}})
	l.Log(numbered(TypeDelivered, 0, 0))
	waitFor(t, "a write error", func() bool { return l.Stats().WriteErrors >= 1 })
	if err := l.Close(); err == nil {
		t.Fatal("Close with a file that fails every write succeeded, want error")
	}
}

func TestFileOptionsForDefaultPath(t *testing.T) {
	dir := t.TempDir()
	l := openTestLogger(t, Options{
		Dir:   dir,
		Files: []FileOptions{{Path: filepath.Join(dir, DefaultFileName), Records: []string{TypeBounced}}},
	})
	l.Log(numbered(TypeDelivered, 0, 0))
	l.Log(numbered(TypeBounced, 0, 1))
	closeLogger(t, l)

	records := readRecords(t, filepath.Join(dir, DefaultFileName))
	if len(records) != 1 || records[0].Type != TypeBounced {
		t.Errorf("acct.json with records b = %+v, want only the bounce", records)
	}
}

func TestOpenLocksDirectory(t *testing.T) {
	dir := t.TempDir()
	l := openTestLogger(t, Options{Dir: dir})
	if second, err := Open(Options{Dir: dir, Logger: discardLogger()}); err == nil {
		second.Close()
		t.Fatal("second Open on the same directory succeeded, want error")
	}
	closeLogger(t, l)

	again := openTestLogger(t, Options{Dir: dir})
	closeLogger(t, again)
}
