package queue

import (
	"container/heap"
	"slices"
	"strings"
	"sync"
	"time"

	"smta/spool"
)

// message wraps a spooled message shared by the items of all its queues.
type message struct {
	m *spool.Message

	// mu guards the State, Attempts, NextAttempt and LastReply fields of
	// m.Env.Rcpts, and serializes spool.Update and spool.Remove of m, because
	// workers of different queues finish attempts on the same message
	// concurrently. Addr, ORcpt and Notify never change after Enqueue and
	// are read without it.
	mu sync.Mutex
}

// item is one message in one queue: the subset of its recipients whose
// domain is the queue's, all due at the same time.
type item struct {
	msg   *message
	rcpts []int     // indexes into msg.m.Env.Rcpts
	due   time.Time // next attempt; zero or past means ready
	index int       // position in the queue's schedule heap
}

// queue is the per-destination-domain state. Every field after name is
// guarded by the scheduler's mu.
type queue struct {
	name string // immutable

	policy  Policy      // refreshed before every connection
	ready   deque       // items due now, in arrival order
	sched   schedule    // items waiting for their next attempt
	timer   *time.Timer // fires at timerAt; nil until first needed
	timerAt time.Time

	workers  int // worker goroutines alive
	starting int // workers that have not taken their first item yet
	conns    int // workers with an open connection
	idle     int // connected workers waiting for a ready item

	// wakeup hands a newly ready item to an idle worker. It buffers at most
	// one token, so a token can outlive the worker it was meant for. An
	// idle worker that wakes to an empty ready list therefore waits again.
	wakeup chan struct{}

	paused       bool
	backoffUntil time.Time // zero: no backoff; set after a failed connection

	delivered uint64 // recipients
	failed    uint64 // recipients bounced or expired
}

// modeLocked returns the queue's mode. A paused queue reports paused even
// during a backoff, because only Resume ends it.
func (q *queue) modeLocked(now time.Time) string {
	switch {
	case q.paused:
		return ModePaused
	case q.backoffUntil.After(now):
		return ModeBackoff
	}
	return ModeNormal
}

func (q *queue) schedule(it *item) { heap.Push(&q.sched, it) }

func (q *queue) unschedule() *item { return heap.Pop(&q.sched).(*item) }

// schedule is a min-heap of items by due time (container/heap). A heap keeps
// insertion and removal at O(log n) for any spread of retry times. A timer
// wheel would be cheaper per operation, but it needs a fixed resolution and
// horizon, while retry-after values range from milliseconds in tests to days.
type schedule []*item

func (h schedule) Len() int           { return len(h) }
func (h schedule) Less(i, j int) bool { return h[i].due.Before(h[j].due) }
func (h schedule) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index = i
	h[j].index = j
}
func (h *schedule) Push(x any) {
	it := x.(*item)
	it.index = len(*h)
	*h = append(*h, it)
}
func (h *schedule) Pop() any {
	old := *h
	n := len(old)
	it := old[n-1]
	old[n-1] = nil
	*h = old[:n-1]
	it.index = -1
	return it
}

// deque is a FIFO of items: a slice with a head index, compacted when the
// consumed prefix is at least half of the slice.
type deque struct {
	items []*item
	head  int
}

func (d *deque) len() int { return len(d.items) - d.head }

func (d *deque) push(it *item) { d.items = append(d.items, it) }

func (d *deque) pop() *item {
	if d.len() == 0 {
		return nil
	}
	it := d.items[d.head]
	d.items[d.head] = nil
	d.head++
	if d.head == len(d.items) {
		d.items = d.items[:0]
		d.head = 0
	} else if d.head >= len(d.items)/2 && d.head >= 32 {
		n := copy(d.items, d.items[d.head:])
		clear(d.items[n:])
		d.items = d.items[:n]
		d.head = 0
	}
	return it
}

// drain removes and returns every item.
func (d *deque) drain() []*item {
	out := append([]*item(nil), d.items[d.head:]...)
	clear(d.items)
	d.items = d.items[:0]
	d.head = 0
	return out
}

// rcptGroup is the pending recipients of one message for one domain and one
// next-attempt time.
type rcptGroup struct {
	domain string
	due    time.Time
	rcpts  []int
}

// groupRecipients groups the pending recipients of env by destination domain
// and NextAttempt, so recipients recovered with different retry times keep
// them. Groups come out sorted by domain, then due time.
func groupRecipients(env *spool.Envelope) []rcptGroup {
	var groups []rcptGroup
	for i := range env.Rcpts {
		r := &env.Rcpts[i]
		if r.State.Final() {
			continue
		}
		d := domainOf(r.Addr)
		found := false
		for g := range groups {
			if groups[g].domain == d && groups[g].due.Equal(r.NextAttempt) {
				groups[g].rcpts = append(groups[g].rcpts, i)
				found = true
				break
			}
		}
		if !found {
			groups = append(groups, rcptGroup{domain: d, due: r.NextAttempt, rcpts: []int{i}})
		}
	}
	slices.SortFunc(groups, func(a, b rcptGroup) int {
		if c := strings.Compare(a.domain, b.domain); c != 0 {
			return c
		}
		return a.due.Compare(b.due)
	})
	return groups
}

// domainOf returns the queue name of a recipient address: the normalized
// part after the last "@" ("" for a bare local part such as "postmaster").
// The last "@" is the right one because a quoted local part may contain "@"
// (RFC 5321 4.1.2).
func domainOf(addr string) string {
	i := strings.LastIndexByte(addr, '@')
	if i < 0 {
		return ""
	}
	return normalizeDomain(addr[i+1:])
}

// normalizeDomain lowercases a domain and drops a trailing root dot, so
// "Example.COM." and "example.com" share a queue.
func normalizeDomain(d string) string {
	return strings.TrimSuffix(strings.ToLower(d), ".")
}
