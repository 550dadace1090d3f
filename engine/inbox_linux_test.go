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

	// The loop of runEpoll, without connections: announce the wait, wait
	// only if nothing is pending, drain at the end of the turn. A lost
	// wakeup shows up as a second-long wait that returns nothing.
	events := make([]unix.EpollEvent, 8)
	want := uint64(producers * perProducer)
	waits, wakeups := 0, 0
	for sh.counters.completions.Load() < want {
		wait := 0
		if sh.mayBlock() {
			wait = 1000
			waits++
		}
		n, err := unix.EpollWait(sh.epfd, events, wait)
		sh.sleeping.Store(false)
		if err != nil && !errors.Is(err, unix.EINTR) {
			t.Fatal(err)
		}
		if wait > 0 && n == 0 {
			t.Fatalf("no wakeup after %d of %d records", sh.counters.completions.Load(), want)
		}
		for i := range n {
			if events[i].Fd != tokenEventfd {
				t.Fatalf("event token %d, want the eventfd's", events[i].Fd)
			}
			sh.dispatch(&events[i])
			wakeups++
		}
		sh.drainInbox()
	}
	wg.Wait()
	sh.drainInbox()
	if got := sh.counters.completions.Load(); got != want {
		t.Errorf("applied %d records, want %d", got, want)
	}
	if wakeups >= int(want) {
		t.Errorf("%d wakeups for %d records, want merged wakeups", wakeups, want)
	}
	if got := sh.counters.wakeups.Load(); got != uint64(wakeups) {
		t.Errorf("wakeup counter %d, want %d", got, wakeups)
	}
	t.Logf("%d records, %d waits, %d wakeups", want, waits, wakeups)
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
