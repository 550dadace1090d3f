//go:build linux

package engine

import (
	"errors"
	"io"
	"log/slog"
	"sync"
	"testing"

	"golang.org/x/sys/unix"
)

// TestInboxManyProducers posts from several goroutines faster than the ring
// holds, so records also take the overflow path, and checks that the shard
// applies every record exactly once. Run it with -race.
func TestInboxManyProducers(t *testing.T) {
	const producers, perProducer = 8, 20000
	srv := &epollServer{kind: "epoll", log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	sh, err := newShard(srv, 0, nil, newTimeouts(Timeouts{}))
	if err != nil {
		t.Fatal(err)
	}
	defer sh.closeFDs()
	// One free slot: every record names it with a stale generation, so
	// apply counts it and changes nothing.
	sh.conns = append(sh.conns, conn{fd: -1, gen: 1})

	var wg sync.WaitGroup
	for range producers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range perProducer {
				sh.post(completion{kind: completionCommit, slot: 0, gen: 0, id: "x"})
			}
		}()
	}

	events := make([]unix.EpollEvent, 8)
	want := uint64(producers * perProducer)
	wakeups := 0
	for sh.counters.completions.Load() < want {
		n, err := unix.EpollWait(sh.epfd, events, 1000)
		if err != nil && !errors.Is(err, unix.EINTR) {
			t.Fatal(err)
		}
		if n == 0 {
			t.Fatalf("no wakeup after %d of %d records", sh.counters.completions.Load(), want)
		}
		for i := range n {
			if events[i].Fd != tokenEventfd {
				t.Fatalf("event token %d, want the eventfd's", events[i].Fd)
			}
			sh.dispatch(&events[i])
			wakeups++
		}
	}
	wg.Wait()
	sh.drainInbox()
	if got := sh.counters.completions.Load(); got != want {
		t.Errorf("applied %d records, want %d", got, want)
	}
	if wakeups >= int(want) {
		t.Errorf("%d wakeups for %d records, want merged wakeups", wakeups, want)
	}
	t.Logf("%d records, %d wakeups", want, wakeups)
}

// TestInboxAfterExit checks that a completion posted after the shard has
// stopped is dropped rather than blocking the producer.
func TestInboxAfterExit(t *testing.T) {
	srv := &epollServer{kind: "epoll", log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	sh, err := newShard(srv, 0, nil, newTimeouts(Timeouts{}))
	if err != nil {
		t.Fatal(err)
	}
	sh.closeFDs()
	sh.exited.Store(true)
	for range inboxSize * 2 {
		sh.post(completion{kind: completionCommit})
	}
	if n := sh.inbox.Len(); n != 0 {
		t.Errorf("inbox holds %d records after exit, want 0", n)
	}
}
