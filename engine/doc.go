// Package engine accepts inbound SMTP connections and drives one
// smtp.Session per connection, calling a Backend for policy and storage.
//
// Three inbound modes share the Session and the Backend contract:
// "goroutine" (one goroutine per connection over Go's netpoller, portable),
// "epoll" and "io_uring" (per-core shards, Linux only). Config.Mode picks
// one, and Server.Mode reports the mode that actually runs, because
// io_uring falls back to epoll where the kernel lacks it.
//
// # Shards
//
// The epoll and io_uring modes run Config.Workers shards (one per CPU by
// default). A shard is one goroutine locked to an OS thread with
// runtime.LockOSThread. It owns:
//
//   - a listening socket per Config.Listeners entry, bound with SO_REUSEPORT
//     to the same address as every other shard's, so the kernel spreads new
//     connections over the shards with no shared accept queue or lock;
//   - an epoll set (or an io_uring instance) holding those listeners, its
//     connections and an eventfd;
//   - a connection table: a slice of small conn structs indexed by slot,
//     with a free list;
//   - a pool of 16 KiB read buffers, lent to a connection only while it has
//     unconsumed input, so an idle connection holds no buffer;
//   - a hashed timer wheel with one entry per connection for the command and
//     DATA timeouts of RFC 5321 section 4.5.3.2;
//   - an inbox: a ring.MPSC of completion records and the eventfd.
//
// Invariant: a connection's state (its conn slot, Session, buffer and
// timer) is touched only by its shard's thread. Other goroutines reach a
// shard only through its inbox.
//
// # The event loop
//
// Each turn of the loop:
//
//  1. waits in epoll_wait, for at most one wheel tick, or not at all while
//     the run queue is non-empty or completions are pending;
//  2. handles each event: a listener's event accepts a bounded batch, the
//     eventfd's only ends the wait, and any other serves the connection
//     named by the event's slot and generation;
//  3. drains the inbox (see below);
//  4. serves connections on the run queue, those that used their read
//     budget in an earlier turn and may still have input;
//  5. advances the timer wheel and times out connections whose deadline
//     passed;
//  6. exits once draining and no connection is left.
//
// Serving a connection repeats: feed buffered input to the Session and act
// on each event (Backend calls, body writes, commits); write the Session's
// output in one write; read more. It stops when the Session waits for a
// commit (Pending), when the output backs up past a limit while the socket
// is not writable, when the socket has no more input, or after a few reads
// so one fast client cannot starve the others. Not reading is the
// backpressure: the client's TCP window fills and the client waits.
//
// Connections are registered edge-triggered (EPOLLIN, EPOLLOUT, EPOLLRDHUP)
// once, at accept. A paused connection therefore needs no epoll_ctl: the
// shard remembers that input may be waiting and reads until EAGAIN when it
// resumes. A short read means the receive queue was empty, so the shard
// waits for the next edge instead of reading again for EAGAIN, except after
// a hangup event, which is not repeated. Listeners are level-triggered,
// because the shard takes only a bounded batch from them per turn.
//
// # The inbox
//
// MessageWriter.Commit calls its done callback on the spool's committer
// goroutine. The callback must not touch the connection, so it posts a
// completion record to the connection's shard:
//
//	committer goroutine                     shard thread
//	-------------------                     ------------
//	inbox.TryPush(rec)  ──── ring.MPSC ───▶  end of every loop turn:
//	if sleeping.CAS(true, false):             PopBatch until empty:
//	    write(eventfd, 1) ── eventfd ──┐        slot, gen still match?
//	                                   │        AcceptQueued(id) or Reject(reply)
//	                                   │        serve the connection again
//	                                   │      before waiting: sleeping.Store(true),
//	                                   │        drain once more, wait only if empty
//	                                   └───▶  epoll_wait returns
//
// A running shard leaves sleeping clear, so producers only push and no
// system call is made on either side: the drain at the end of the turn
// picks the records up. The shard sets sleeping before its last drain, so a
// record pushed after that drain comes with an eventfd write that ends the
// wait, and one pushed before it is seen by the drain. The CAS lets only one
// producer per wait write the eventfd. The eventfd is edge-triggered in the
// epoll set and never read: each write queues one event. A push never
// blocks, because done may also run synchronously on the shard thread, which
// must not wait for its own ring: when the ring is full the record goes to a
// locked overflow list that the drain also empties.
//
// # Slot indexes, not pointers
//
// The 64 bits of epoll event data carry a slot index and the slot's
// generation, never a Go pointer. The kernel keeps event data beyond the
// garbage collector's view, so a pointer there would need the object pinned
// for the connection's lifetime. The generation, incremented whenever a slot
// is freed, also detects stale events and late completions: an event queued
// before a close and delivered after the slot was reused carries the old
// generation and is dropped. Completions and timer entries carry the same
// pair for the same reason.
//
// # io_uring
//
// In io_uring mode the shard replaces epoll_wait with one io_uring_enter per
// turn, which both submits the turn's requests and waits for completions.
// A multishot accept per listener and a multishot receive per connection
// stay armed, received bytes arrive in a provided-buffer ring mapped
// outside the Go heap and are copied into the connection's pooled buffer,
// and replies go out as send requests. User data carries the request kind,
// slot and generation, for the same reason as epoll's event data. Where
// io_uring_setup fails, a needed opcode is missing or a multishot receive is
// rejected, the mode logs one warning and runs epoll instead. Setting
// SMTA_IOURING_DISABLE=1 in the environment forces that fallback.
//
// # TLS
//
// STARTTLS and implicit TLS listeners move the connection off the shard: the
// socket is removed from the epoll set and handed, with its Session, to a
// goroutine running crypto/tls and the goroutine mode's driver. The
// plaintext pipelined after STARTTLS is discarded first (RFC 3207 section
// 4.2). Stats.TLSHandoffs counts these connections.
//
// # Shutdown
//
// Shutdown closes every listener, sends 421 to each session outside a
// transaction at once, and lets sessions inside a transaction finish it,
// after which they get 421 too. When the context ends, every remaining
// session gets 421 and is closed. Shutdown returns when all shards and TLS
// goroutines have exited.
//
// # Rejected alternatives
//
//   - A goroutine per connection (the goroutine mode). Simple and portable,
//     but each connection costs a goroutine stack and a read buffer even
//     while idle, and every wakeup goes through the scheduler. It remains as
//     the fallback and as the baseline the shards are measured against.
//   - One epoll set shared by all threads. Threads would contend on the set
//     and on one accept queue, and a connection could be served by several
//     threads in turn, so its state would need locks. Per-shard sets with
//     SO_REUSEPORT keep every connection on one thread for its lifetime.
//   - Go's netpoller with non-blocking reads on a few goroutines. The
//     netpoller wakes goroutines, not an event loop: it cannot batch events
//     for one thread or keep a connection's state on one core, and it needs
//     a goroutine parked per waiting connection.
package engine
