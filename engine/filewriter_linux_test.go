//go:build linux

package engine

import (
	"bytes"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"smta/smtp"
)

// fileBackend stores each message body in one file through ConnInfo.Files,
// at offset slotSize*n for the n-th message, and records whether each
// connection had a FileWriter.
type fileBackend struct {
	*memBackend
	fd       int // of f, read once so that the shard threads never touch f
	f        *os.File
	slotSize int64

	mu       sync.Mutex
	next     int64
	withFile int // Data calls that had ConnInfo.Files
	without  int
	offsets  map[string]int64 // queue id to offset
}

func (b *fileBackend) Data(c *ConnInfo, tx *smtp.Transaction) (MessageWriter, smtp.Reply) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if c.Files == nil {
		b.without++
		return b.memBackend.Data(c, tx)
	}
	b.withFile++
	off := b.next * b.slotSize
	b.next++
	return &fileMessage{b: b, files: c.Files, off: off}, smtp.Reply{}
}

// newFileBackend returns a fileBackend writing to f. f is closed by a
// cleanup registered now, so it runs after the server started later has
// shut down.
func newFileBackend(t *testing.T, f *os.File) *fileBackend {
	t.Cleanup(func() { f.Close() })
	return &fileBackend{memBackend: newMemBackend(), fd: int(f.Fd()), f: f, slotSize: 4096, offsets: map[string]int64{}}
}

type fileMessage struct {
	b     *fileBackend
	files FileWriter
	off   int64
	buf   []byte
}

func (m *fileMessage) Write(p []byte) error { m.buf = append(m.buf, p...); return nil }
func (m *fileMessage) Abort()               {}

func (m *fileMessage) Commit(done func(id string, failure smtp.Reply)) {
	queued := m.files.WriteAt(m.b.fd, m.buf, m.off, func(n int, err error) {
		if err != nil || n != len(m.buf) {
			done("", smtp.Reply{Code: 451, Enhanced: "4.3.0", Text: fmt.Sprintf("write: %d octets, %v", n, err)})
			return
		}
		id := fmt.Sprintf("F%d", m.off)
		m.b.mu.Lock()
		m.b.offsets[id] = m.off
		m.b.mu.Unlock()
		done(id, smtp.Reply{})
	})
	if !queued {
		done("", smtp.Reply{Code: 451, Enhanced: "4.3.0", Text: "WriteAt queued nothing"})
	}
}

// TestFileWriterModes checks that only io_uring mode offers ConnInfo.Files,
// and that writes queued through it land in the file at their offsets
// before the client gets its 250.
func TestFileWriterModes(t *testing.T) {
	forAllModes(t, []string{"goroutine", "epoll", "io_uring"}, func(t *testing.T, mode string) {
		f, err := os.CreateTemp(t.TempDir(), "bodies")
		if err != nil {
			t.Fatal(err)
		}
		b := newFileBackend(t, f)
		srv := startServer(t, testConfig(mode), b)

		const messages = 20
		c := dial(t, srv)
		c.expect(220)
		c.cmd("EHLO client.test", 250)
		bodies := map[string]string{}
		for i := range messages {
			body := fmt.Sprintf("Subject: %d\r\n\r\nmessage %d of the file writer test\r\n", i, i)
			bodies[c.transaction(fmt.Sprintf("s%d@example.com", i), body)] = body
		}
		c.cmd("QUIT", 221)

		b.mu.Lock()
		withFile, without := b.withFile, b.without
		b.mu.Unlock()
		if mode != "io_uring" {
			if withFile != 0 {
				t.Errorf("%d messages had ConnInfo.Files in %s mode, want 0", withFile, mode)
			}
			return
		}
		if withFile != messages || without != 0 {
			t.Fatalf("messages with ConnInfo.Files = %d, without = %d; want %d and 0", withFile, without, messages)
		}
		b.mu.Lock()
		offsets := maps.Clone(b.offsets)
		b.mu.Unlock()
		for id, body := range bodies {
			off, ok := offsets[id]
			if !ok {
				t.Fatalf("queue id %s has no recorded offset", id)
			}
			got := make([]byte, len(body))
			if _, err := f.ReadAt(got, off); err != nil {
				t.Fatalf("reading the body of %s at %d: %v", id, off, err)
			}
			if !bytes.Equal(got, []byte(body)) {
				t.Errorf("file at %d = %q, want %q", off, got, body)
			}
		}
		if st := srv.Stats(); st.FileWrites != messages {
			t.Errorf("Stats().FileWrites = %d, want %d", st.FileWrites, messages)
		}
	})
}

// TestFileWriterError writes through ConnInfo.Files to a descriptor opened
// read-only, so the ring completes the write with EBADF. The client must get
// the backend's 451 for that message, and the session must go on.
func TestFileWriterError(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bodies")
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path) // read-only
	if err != nil {
		t.Fatal(err)
	}
	b := newFileBackend(t, f)
	srv := startServer(t, testConfig("io_uring"), b)

	c := dial(t, srv)
	c.expect(220)
	c.cmd("EHLO client.test", 250)
	for range 2 {
		c.cmd("MAIL FROM:<a@example.com>", 250)
		c.cmd("RCPT TO:<b@example.com>", 250)
		c.cmd("DATA", 354)
		c.send("Subject: x\r\n\r\nbody\r\n.\r\n")
		got := c.expect(451)
		if !strings.Contains(got, "bad file descriptor") {
			t.Errorf("reply = %q, want the write error (bad file descriptor)", got)
		}
	}
	c.cmd("NOOP", 250)
	c.cmd("QUIT", 221)
	b.mu.Lock()
	written := len(b.offsets)
	b.mu.Unlock()
	if written != 0 {
		t.Errorf("%d messages recorded as written, want 0", written)
	}
}
