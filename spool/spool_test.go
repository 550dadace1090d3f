package spool

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"testing"
	"time"
)

func openTest(t testing.TB, dir string, opts Options) *Spool {
	t.Helper()
	if opts.HostID == "" {
		opts.HostID = "test"
	}
	s, err := Open(dir, opts)
	if err != nil {
		t.Fatalf("Open(%q) = %v", dir, err)
	}
	return s
}

// testBody returns a deterministic wire-form body of n octets for seed.
func testBody(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, 1))
	b := make([]byte, n)
	for i := range b {
		b[i] = 'a' + byte(r.IntN(26))
		if i%78 == 76 {
			b[i] = '\r'
		} else if i%78 == 77 {
			b[i] = '\n'
		}
	}
	return b
}

func testEnvelope(rcpts ...string) *Envelope {
	env := &Envelope{From: "sender@example.org", Received: time.Unix(1700000000, 0).UTC()}
	for _, r := range rcpts {
		env.Rcpts = append(env.Rcpts, Recipient{Addr: r})
	}
	return env
}

func readBody(t testing.TB, s *Spool, m *Message) []byte {
	t.Helper()
	r, err := s.Body(m)
	if err != nil {
		t.Fatalf("Body(%s) = %v", m.Env.ID, err)
	}
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("reading body of %s: %v", m.Env.ID, err)
	}
	if int64(len(b)) != r.Size() {
		t.Errorf("body of %s: read %d octets, Size() = %d", m.Env.ID, len(b), r.Size())
	}
	return b
}

func recoverAll(t testing.TB, s *Spool) map[string]*Message {
	t.Helper()
	got := make(map[string]*Message)
	if err := s.Recover(func(m *Message) { got[m.Env.ID] = m }); err != nil {
		t.Fatalf("Recover() = %v", err)
	}
	return got
}

func TestRoundTrip(t *testing.T) {
	dir := t.TempDir()
	s := openTest(t, dir, Options{})

	// Sizes around the chunk boundary, so messages have 1, 2 and 3 records.
	sizes := []int{0, 1, 100, 10 << 10, maxChunk - 1, maxChunk, maxChunk + 1, 2*maxChunk + 17}
	want := make(map[string][]byte)
	for i, n := range sizes {
		body := testBody(uint64(i), n)
		w := s.NewWriter()
		// Write in uneven pieces to exercise buffering.
		for rest := body; len(rest) > 0; {
			k := min(len(rest), 1000+i*7919)
			if _, err := w.Write(rest[:k]); err != nil {
				t.Fatalf("Write = %v", err)
			}
			rest = rest[k:]
		}
		ch := make(chan *Message, 1)
		w.Commit(testEnvelope("a@example.com", "b@example.net"), func(m *Message, err error) {
			if err != nil {
				t.Errorf("commit of %d octets: %v", n, err)
			}
			ch <- m
		})
		m := <-ch
		if m == nil {
			t.FailNow()
		}
		if m.Env.Size != int64(n) {
			t.Errorf("Env.Size = %d, want %d", m.Env.Size, n)
		}
		if got := readBody(t, s, m); !bytes.Equal(got, body) {
			t.Errorf("body of %d octets read back differently before reopen", n)
		}
		want[m.Env.ID] = body
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close() = %v", err)
	}

	s = openTest(t, dir, Options{})
	defer s.Close()
	got := recoverAll(t, s)
	if len(got) != len(want) {
		t.Fatalf("recovered %d messages, want %d", len(got), len(want))
	}
	for id, body := range want {
		m, ok := got[id]
		if !ok {
			t.Errorf("message %s not recovered", id)
			continue
		}
		if b := readBody(t, s, m); !bytes.Equal(b, body) {
			t.Errorf("body of %s (%d octets) differs after reopen, got %d octets", id, len(body), len(b))
		}
		if len(m.Env.Rcpts) != 2 || m.Env.Rcpts[1].Addr != "b@example.net" {
			t.Errorf("recipients of %s = %+v, want a@example.com and b@example.net", id, m.Env.Rcpts)
		}
		var total int64
		exts, err := s.Extents(m)
		if err != nil {
			t.Fatalf("Extents(%s) = %v", id, err)
		}
		var fromExtents []byte
		for _, x := range exts {
			p := make([]byte, x.Len)
			if _, err := x.File.ReadAt(p, x.Off); err != nil {
				t.Fatalf("reading extent of %s: %v", id, err)
			}
			fromExtents = append(fromExtents, p...)
			total += x.Len
		}
		if !bytes.Equal(fromExtents, body) {
			t.Errorf("extents of %s hold different bytes than the body", id)
		}
	}
	if st := s.Stats(); st.Messages != int64(len(want)) {
		t.Errorf("Stats().Messages = %d, want %d", st.Messages, len(want))
	}
}

func TestUpdateAndRemove(t *testing.T) {
	dir := t.TempDir()
	s := openTest(t, dir, Options{})
	var ms []*Message
	for i := range 3 {
		m, err := s.Inject(testEnvelope("a@example.com", "b@example.com"), testBody(uint64(i), 500))
		if err != nil {
			t.Fatalf("Inject = %v", err)
		}
		ms = append(ms, m)
	}

	// ms[0]: one recipient delivered; ms[1]: all final (removal not yet
	// persisted, so recovery must drop it); ms[2]: removed.
	ms[0].Env.Rcpts[0].State = RcptDelivered
	ms[0].Env.Rcpts[1].Attempts = 3
	ms[1].Env.Rcpts[0].State = RcptDelivered
	ms[1].Env.Rcpts[1].State = RcptBounced
	for _, m := range ms[:2] {
		if err := s.Update(m); err != nil {
			t.Fatalf("Update(%s) = %v", m.Env.ID, err)
		}
	}
	if err := s.Remove(ms[2]); err != nil {
		t.Fatalf("Remove(%s) = %v", ms[2].Env.ID, err)
	}
	if err := s.Remove(ms[2]); !errors.Is(err, ErrRemoved) {
		t.Errorf("second Remove(%s) = %v, want ErrRemoved", ms[2].Env.ID, err)
	}
	if _, err := s.Body(ms[2]); !errors.Is(err, ErrRemoved) {
		t.Errorf("Body after Remove = %v, want ErrRemoved", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close() = %v", err)
	}

	s = openTest(t, dir, Options{})
	defer s.Close()
	got := recoverAll(t, s)
	if len(got) != 1 {
		t.Fatalf("recovered %d messages, want 1 (%s)", len(got), ms[0].Env.ID)
	}
	m := got[ms[0].Env.ID]
	if m == nil {
		t.Fatalf("message %s not recovered", ms[0].Env.ID)
	}
	if m.Env.Rcpts[0].State != RcptDelivered || m.Env.Rcpts[1].Attempts != 3 {
		t.Errorf("recovered recipients = %+v, want the updated states", m.Env.Rcpts)
	}
	if err := s.Recover(func(*Message) {}); err == nil {
		t.Errorf("second Recover() = nil, want an error")
	}
}

func TestIDsUniqueAcrossReopen(t *testing.T) {
	dir := t.TempDir()
	seen := make(map[string]bool)
	// Reopening within the same second must not repeat the id epoch.
	for range 3 {
		s := openTest(t, dir, Options{HostID: "mx1.example"})
		for range 5 {
			m, err := s.Inject(testEnvelope("a@example.com"), []byte("x\r\n"))
			if err != nil {
				t.Fatalf("Inject = %v", err)
			}
			if seen[m.Env.ID] {
				t.Errorf("id %s assigned twice", m.Env.ID)
			}
			seen[m.Env.ID] = true
			if want := "mx1example-"; m.Env.ID[:len(want)] != want {
				t.Errorf("id %s does not start with %q", m.Env.ID, want)
			}
		}
		s.Close()
	}
}

func TestOpenLocked(t *testing.T) {
	dir := t.TempDir()
	s := openTest(t, dir, Options{})
	defer s.Close()
	if s2, err := Open(dir, Options{}); !errors.Is(err, ErrLocked) {
		if s2 != nil {
			s2.Close()
		}
		t.Fatalf("second Open(%q) = %v, want ErrLocked", dir, err)
	}
}

func TestAbortReleasesSpace(t *testing.T) {
	s := openTest(t, t.TempDir(), Options{SegmentSize: minSegmentSize})
	defer s.Close()
	// Far more than one segment of aborted bodies: without release the
	// spool would keep creating segments.
	body := testBody(1, 10<<10)
	for range 100 {
		w := s.NewWriter()
		w.Write(body)
		w.Write(body)
		w.Abort()
	}
	st := s.Stats()
	if total := st.SegmentsActive + st.SegmentsSealed + st.SegmentsFree; total > maxFreeSegments+1 {
		t.Errorf("%d segments after aborts, want at most %d: %+v", total, maxFreeSegments+1, st)
	}
	if st.SegmentsSealed != 0 {
		t.Errorf("%d sealed segments after aborts, want 0", st.SegmentsSealed)
	}
}

func TestConcurrentWriters(t *testing.T) {
	const writers, perWriter = 64, 200
	dir := t.TempDir()
	s := openTest(t, dir, Options{SegmentSize: 1 << 20})

	var (
		mu   sync.Mutex
		want = make(map[string]uint64) // id → body seed
		wg   sync.WaitGroup
	)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range perWriter {
				seed := uint64(w*perWriter + i)
				body := testBody(seed, 200+int(seed%3000))
				m, err := s.Inject(testEnvelope("r@example.com"), body)
				if err != nil {
					t.Errorf("Inject = %v", err)
					return
				}
				mu.Lock()
				want[m.Env.ID] = seed
				mu.Unlock()
			}
		}()
	}
	wg.Wait()

	st := s.Stats()
	if st.Commits != writers*perWriter {
		t.Errorf("Stats().Commits = %d, want %d", st.Commits, writers*perWriter)
	}
	// With 64 writers waiting on each sync, group commit must batch.
	if st.Syncs >= st.Commits {
		t.Errorf("Stats().Syncs = %d with %d commits, want fewer syncs than commits", st.Syncs, st.Commits)
	}
	if st.MaxBatch < 2 {
		t.Errorf("Stats().MaxBatch = %d, want at least 2", st.MaxBatch)
	}
	var batches uint64
	for _, n := range st.BatchSizes {
		batches += n
	}
	if batches != st.Syncs {
		t.Errorf("BatchSizes sum to %d, want Syncs = %d", batches, st.Syncs)
	}
	t.Logf("commits %d, syncs %d, file syncs %d, max batch %d, batch sizes %v", st.Commits, st.Syncs, st.FileSyncs, st.MaxBatch, st.BatchSizes)
	if err := s.Close(); err != nil {
		t.Fatalf("Close() = %v", err)
	}

	s = openTest(t, dir, Options{SegmentSize: 1 << 20})
	defer s.Close()
	got := recoverAll(t, s)
	if len(got) != len(want) {
		t.Fatalf("recovered %d messages, want %d", len(got), len(want))
	}
	for id, seed := range want {
		m := got[id]
		if m == nil {
			t.Errorf("message %s not recovered", id)
			continue
		}
		if b := readBody(t, s, m); !bytes.Equal(b, testBody(seed, 200+int(seed%3000))) {
			t.Errorf("body of %s differs after reopen", id)
		}
	}
}

func TestRecycling(t *testing.T) {
	dir := t.TempDir()
	s := openTest(t, dir, Options{SegmentSize: minSegmentSize})
	defer s.Close()

	// About 6 messages of 10 KiB per 64 KiB segment: 40 messages fill
	// several segments.
	var ms []*Message
	for i := range 40 {
		m, err := s.Inject(testEnvelope("r@example.com"), testBody(uint64(i), 10<<10))
		if err != nil {
			t.Fatalf("Inject = %v", err)
		}
		ms = append(ms, m)
	}
	before := s.Stats()
	if before.SegmentsSealed < 4 {
		t.Fatalf("%d sealed segments after 40 messages, want at least 4", before.SegmentsSealed)
	}
	active := s.active.Load().no
	oldGen := make(map[uint32]uint32) // sealed segments only
	for _, m := range ms {
		for _, x := range m.exts {
			if x.Seg != active {
				oldGen[x.Seg] = x.Gen
			}
		}
	}
	old := ms[0].exts[0]
	if old.Seg == active {
		t.Fatalf("first message is in the active segment %d, want a sealed one", active)
	}
	segFiles := func() []string {
		ents, err := os.ReadDir(filepath.Join(dir, "segments"))
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		sort.Strings(names)
		return names
	}
	filesBefore := segFiles()

	for _, m := range ms {
		if err := s.Remove(m); err != nil {
			t.Fatalf("Remove(%s) = %v", m.Env.ID, err)
		}
	}
	after := s.Stats()
	if after.SegmentsSealed != 0 {
		t.Errorf("%d sealed segments after removing every message, want 0", after.SegmentsSealed)
	}
	if after.SegmentsFree > maxFreeSegments {
		t.Errorf("%d free segments, want at most %d", after.SegmentsFree, maxFreeSegments)
	}
	if n := len(segFiles()); n != after.SegmentsFree+after.SegmentsActive {
		t.Errorf("%d segment files, want %d (free + active)", n, after.SegmentsFree+after.SegmentsActive)
	}

	// A record from before the recycling, read under the segment's new
	// generation, is rejected although its checksum is intact.
	stale := old
	stale.Gen = old.seg.gen.Load()
	if stale.Gen <= old.Gen {
		t.Errorf("segment %d generation after recycling = %d, want more than %d", old.Seg, stale.Gen, old.Gen)
	}
	if _, err := readRecord(stale, nil); !errors.Is(err, ErrCorrupt) {
		t.Errorf("readRecord(stale record in segment %d) = %v, want ErrCorrupt", old.Seg, err)
	}

	// New messages reuse the drained segments under a new generation, and
	// create no new file.
	for i := range 20 {
		m, err := s.Inject(testEnvelope("r@example.com"), testBody(uint64(100+i), 10<<10))
		if err != nil {
			t.Fatalf("Inject = %v", err)
		}
		for _, x := range m.exts {
			if g, ok := oldGen[x.Seg]; ok && x.Gen <= g {
				t.Errorf("segment %d reused with generation %d, want more than %d", x.Seg, x.Gen, g)
			}
		}
	}
	for _, name := range segFiles() {
		if !slicesContains(filesBefore, name) {
			t.Errorf("segment file %s created although drained segments were free", name)
		}
	}

}

func slicesContains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

func TestCommitAfterClose(t *testing.T) {
	s := openTest(t, t.TempDir(), Options{})
	w := s.NewWriter()
	w.Write([]byte("x\r\n"))
	s.Close()
	var got error
	calls := 0
	w.Commit(testEnvelope("a@example.com"), func(m *Message, err error) { got = err; calls++ })
	if calls != 1 || !errors.Is(got, ErrClosed) {
		t.Errorf("Commit after Close: %d callbacks with %v, want 1 with ErrClosed", calls, got)
	}
}

func ExampleSpool() {
	dir, _ := os.MkdirTemp("", "spool-example")
	defer os.RemoveAll(dir)
	s, err := Open(dir, Options{HostID: "mx1"})
	if err != nil {
		panic(err)
	}
	defer s.Close()

	w := s.NewWriter()
	w.Write([]byte("Subject: hi\r\n\r\nhello\r\n"))
	done := make(chan struct{})
	w.Commit(&Envelope{From: "a@example.org", Rcpts: []Recipient{{Addr: "b@example.com"}}}, func(m *Message, err error) {
		fmt.Println(m.Env.Size, err)
		close(done)
	})
	<-done
	// Output: 22 <nil>
}

func TestMain(m *testing.M) {
	if dir := os.Getenv(crashChildEnv); dir != "" {
		crashChild(dir)
		return
	}
	// Keep routine spool logs (segment created, opened, closed) out of test
	// output; warnings and errors still show.
	slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
	os.Exit(m.Run())
}

// TestConcurrentRecycling removes most messages right after committing them
// while other writers append, so segments seal, drain, recycle and
// reactivate under contention. Every segment's reference count must match
// the kept messages, and those must read back intact before and after a
// reopen.
func TestConcurrentRecycling(t *testing.T) {
	const writers, perWriter = 16, 150
	dir := t.TempDir()
	opts := Options{SegmentSize: minSegmentSize}
	s := openTest(t, dir, opts)

	var (
		mu       sync.Mutex
		kept     = make(map[string]uint64) // id → body seed
		keptMsgs []*Message
		wg       sync.WaitGroup
	)
	size := func(seed uint64) int { return 100 + int(seed*7919%(20<<10)) }
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range perWriter {
				seed := uint64(w*perWriter + i)
				body := testBody(seed, size(seed))
				m, err := s.Inject(testEnvelope("r@example.com"), body)
				if err != nil {
					t.Errorf("Inject = %v", err)
					return
				}
				if b := readBody(t, s, m); !bytes.Equal(b, body) {
					t.Errorf("body of %s differs right after commit", m.Env.ID)
				}
				if i%10 == 0 {
					mu.Lock()
					kept[m.Env.ID] = seed
					keptMsgs = append(keptMsgs, m)
					mu.Unlock()
					continue
				}
				if err := s.Remove(m); err != nil {
					t.Errorf("Remove(%s) = %v", m.Env.ID, err)
				}
			}
		}()
	}
	wg.Wait()

	st := s.Stats()
	if st.Messages != int64(len(kept)) {
		t.Errorf("Stats().Messages = %d, want %d", st.Messages, len(kept))
	}
	// With no writer in flight, each segment's reference count is exactly
	// the number of kept records in it, plus one if it is active.
	wantRefs := make(map[uint32]int64)
	for _, m := range keptMsgs {
		for _, x := range m.exts {
			wantRefs[x.Seg]++
		}
	}
	s.mu.Lock()
	for no, g := range s.segs {
		want := wantRefs[no]
		if g.state == segActive {
			want++
		}
		if got := g.refs.Load(); got != want {
			t.Errorf("segment %d (state %d): refs = %d, want %d", no, g.state, got, want)
		}
		if g.state == segSealed && want == 0 {
			t.Errorf("segment %d is sealed with no references, want it recycled", no)
		}
	}
	s.mu.Unlock()
	if st.SegmentsFree > maxFreeSegments {
		t.Errorf("%d free segments, want at most %d", st.SegmentsFree, maxFreeSegments)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close() = %v", err)
	}

	s = openTest(t, dir, opts)
	defer s.Close()
	got := recoverAll(t, s)
	if len(got) != len(kept) {
		t.Errorf("recovered %d messages, want %d", len(got), len(kept))
	}
	for id, seed := range kept {
		m := got[id]
		if m == nil {
			t.Errorf("message %s not recovered", id)
			continue
		}
		if b := readBody(t, s, m); !bytes.Equal(b, testBody(seed, size(seed))) {
			t.Errorf("body of %s differs after reopen", id)
		}
	}
	if st := s.Stats(); st.Corrupt != 0 {
		t.Errorf("Stats().Corrupt = %d after reopen, want 0", st.Corrupt)
	}
}
