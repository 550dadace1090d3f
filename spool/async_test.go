package spool

import (
	"bytes"
	"errors"
	"os"
	"sync"
	"syscall"
	"testing"
)

// goAsync is an AsyncWriter that performs each write with pwrite(2) on a
// goroutine of its own, so done runs later and on another goroutine, as
// with an io_uring shard. fail, when set, replaces the write's result.
type goAsync struct {
	mu     sync.Mutex
	writes int
	fail   error
	full   bool // WriteAt returns false, as a ring that takes no more requests would
}

func (a *goAsync) WriteAt(fd int, p []byte, off int64, done func(int, error)) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.full {
		return false
	}
	a.writes++
	fail := a.fail
	go func() {
		if fail != nil {
			done(0, fail)
			return
		}
		n, err := syscall.Pwrite(fd, p, off)
		done(n, err)
	}()
	return true
}

// commitWith writes body through a Writer using a and waits for the commit.
func commitWith(t *testing.T, s *Spool, a AsyncWriter, body []byte) (*Message, error) {
	t.Helper()
	w := s.NewWriter()
	w.SetAsync(a)
	if _, err := w.Write(body); err != nil {
		t.Fatalf("Write = %v", err)
	}
	type result struct {
		m   *Message
		err error
	}
	ch := make(chan result, 1)
	w.Commit(testEnvelope("a@example.com"), func(m *Message, err error) { ch <- result{m, err} })
	r := <-ch
	return r.m, r.err
}

func TestAsyncCommitRoundTrip(t *testing.T) {
	dir := t.TempDir()
	s := openTest(t, dir, Options{})
	a := &goAsync{}

	// 0 and 100 octets are one record, written through a. maxChunk + 17 is
	// two records: the first goes through pwrite when the chunk fills.
	want := make(map[string][]byte)
	for i, n := range []int{0, 100, maxChunk + 17} {
		body := testBody(uint64(i), n)
		m, err := commitWith(t, s, a, body)
		if err != nil {
			t.Fatalf("commit of %d octets: %v", n, err)
		}
		if got := readBody(t, s, m); !bytes.Equal(got, body) {
			t.Errorf("body of %d octets read back differently", n)
		}
		want[m.Env.ID] = body
	}
	if a.writes != 3 {
		t.Errorf("%d writes went through the AsyncWriter, want 3 (one last record per message)", a.writes)
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
		if b := readBody(t, s, got[id]); !bytes.Equal(b, body) {
			t.Errorf("body of %s differs after reopen", id)
		}
	}
}

func TestAsyncWriteFailure(t *testing.T) {
	s := openTest(t, t.TempDir(), Options{SegmentSize: minSegmentSize})
	defer s.Close()
	a := &goAsync{fail: os.NewSyscallError("write", syscall.EIO)}

	// Far more than one segment of failed writes: each must release the
	// space it reserved, or the spool keeps creating segments.
	body := testBody(1, 10<<10)
	for range 2 * minSegmentSize / len(body) {
		m, err := commitWith(t, s, a, body)
		if !errors.Is(err, syscall.EIO) {
			t.Fatalf("commit error = %v, want EIO", err)
		}
		if m != nil {
			t.Fatalf("commit returned message %s after a failed write", m.Env.ID)
		}
	}
	st := s.Stats()
	if st.Messages != 0 {
		t.Errorf("Stats().Messages = %d after failed writes, want 0", st.Messages)
	}
	if total := st.SegmentsActive + st.SegmentsSealed + st.SegmentsFree; total > maxFreeSegments+1 {
		t.Errorf("%d segments after failed writes, want at most %d: %+v", total, maxFreeSegments+1, st)
	}

	// A failed write is not a failed spool: the next commit succeeds.
	a.mu.Lock()
	a.fail = nil
	a.mu.Unlock()
	if _, err := commitWith(t, s, a, body); err != nil {
		t.Errorf("commit after failed writes: %v", err)
	}
}

func TestAsyncWriterFallback(t *testing.T) {
	s := openTest(t, t.TempDir(), Options{})
	defer s.Close()
	a := &goAsync{full: true}
	body := testBody(7, 4096)
	m, err := commitWith(t, s, a, body)
	if err != nil {
		t.Fatalf("commit through the pwrite fallback: %v", err)
	}
	if got := readBody(t, s, m); !bytes.Equal(got, body) {
		t.Errorf("body written with the pwrite fallback reads back differently")
	}
}
