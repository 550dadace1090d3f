//go:build linux

package iouring

import (
	"errors"
	"testing"

	"golang.org/x/sys/unix"
)

func newTestRing(t *testing.T) *Ring {
	t.Helper()
	r, err := New(64)
	if err != nil {
		t.Fatalf("New(64): %v", err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

func TestRingNop(t *testing.T) {
	r := newTestRing(t)
	for i := range 10 {
		sqe := r.GetSQE()
		sqe.Opcode = OpNop
		sqe.UserData = uint64(i + 1)
	}
	if n, err := r.Submit(true, 0); err != nil || n != 10 {
		t.Fatalf("Submit = %d, %v; want 10, nil", n, err)
	}
	var seen []uint64
	for len(seen) < 10 {
		cqe := r.PeekCQE()
		if cqe == nil {
			if _, err := r.Submit(true, 0); err != nil {
				t.Fatal(err)
			}
			continue
		}
		seen = append(seen, cqe.UserData)
		r.SeenCQE()
	}
	for i, ud := range seen {
		if ud != uint64(i+1) {
			t.Errorf("completion %d user data = %d, want %d", i, ud, i+1)
		}
	}
}

func TestRingSubmitFull(t *testing.T) {
	r := newTestRing(t)
	n := 0
	for r.GetSQE() != nil {
		n++
	}
	if n != 64 {
		t.Errorf("GetSQE handed out %d entries before full, want 64", n)
	}
}

func TestRingProbe(t *testing.T) {
	r := newTestRing(t)
	if err := r.Probe(OpNop, OpAccept, OpRecv, OpSend); err != nil {
		t.Errorf("Probe(nop, accept, recv, send): %v", err)
	}
	if err := r.Probe(250); !errors.Is(err, ErrUnavailable) {
		t.Errorf("Probe(250) = %v, want ErrUnavailable", err)
	}
}

func TestDisableEnv(t *testing.T) {
	t.Setenv("SMTA_IOURING_DISABLE", "1")
	if _, err := New(8); !errors.Is(err, ErrUnavailable) {
		t.Errorf("New with SMTA_IOURING_DISABLE=1: err = %v, want ErrUnavailable", err)
	}
}

// TestBufRingRecv receives through a provided buffer over a socket pair.
func TestBufRingRecv(t *testing.T) {
	r := newTestRing(t)
	br, err := r.NewBufRing(1, 4, 64)
	if err != nil {
		t.Fatalf("NewBufRing: %v", err)
	}
	defer br.Close()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fds[0])
	defer unix.Close(fds[1])

	for round, msg := range []string{"hello", "world", "again", "fifth", "sixth"} {
		sqe := r.GetSQE()
		sqe.Opcode = OpRecv
		sqe.Fd = int32(fds[0])
		sqe.Flags = SqeBufferSelect
		sqe.BufGroup = br.Group()
		sqe.UserData = 7
		if _, err := unix.Write(fds[1], []byte(msg)); err != nil {
			t.Fatal(err)
		}
		if _, err := r.Submit(true, 0); err != nil {
			t.Fatal(err)
		}
		cqe := r.PeekCQE()
		for cqe == nil {
			r.Submit(true, 0)
			cqe = r.PeekCQE()
		}
		if cqe.Res < 0 {
			t.Fatalf("round %d: recv: %v", round, Errno(cqe.Res))
		}
		if cqe.Flags&CqeFBuffer == 0 {
			t.Fatalf("round %d: completion flags %#x lack CqeFBuffer", round, cqe.Flags)
		}
		got := string(br.Buffer(cqe.BufferID(), int(cqe.Res)))
		if got != msg {
			t.Errorf("round %d: received %q, want %q", round, got, msg)
		}
		br.Recycle(cqe.BufferID())
		r.SeenCQE()
	}
}
