// Package queue schedules delivery of spooled messages. It sits between the
// spool, which makes messages durable, and delivery, which speaks SMTP to the
// next hop.
//
// # Queues
//
// Recipients are grouped by destination domain, lowercased and without a
// trailing dot. Each domain has one queue, named after it ("example.com").
// A message with recipients in several domains is in several queues at once,
// each holding an item with the indexes of that domain's recipients. Items
// of one message share one lock, which guards the recipients' states and
// serializes the spool updates of that message.
//
// # Ready and scheduled
//
// A queue has a ready list (FIFO of items due now) and a schedule (a min-heap
// of items by next-attempt time). Enqueue puts an item on the ready list, or
// on the schedule when its recipients carry a NextAttempt in the future, as
// recovered messages may. Each queue owns one runtime timer, set to its
// earliest event: the first scheduled item or the end of a backoff. When the
// timer fires, due items move to the ready list. The Go runtime's timer heap
// thus orders the queues, and no goroutine scans all queues. The schedule is
// a heap rather than a timer wheel because retry intervals range from
// milliseconds to days, which a wheel of fixed resolution and horizon serves
// poorly.
//
// # Workers
//
// A delivery worker is a goroutine bound to one queue. Workers start when
// the queue has ready items that no starting worker will take, up to the
// policy's MaxSMTPOut per queue. A worker takes an item and resolves the next
// hop: the policy route, else the MX hosts in preference order, each address
// tried until one greets. It then sends item after item over that one
// connection while the queue has ready items and MaxMsgPerConn allows, and
// sends QUIT. When the queue still has ready items, the exiting worker's
// replacement opens a fresh connection. Outbound connections are few and
// long, so a goroutine with blocking I/O per connection costs little. A
// goroutine per message was rejected because it cannot reuse connections.
//
// A worker that cannot reach any next hop fails its item with a transient
// error. If no other worker of the queue is connected, it also fails every
// ready item and puts the queue in backoff for RetryAfter. So a dead
// destination costs one connection attempt per retry interval instead of one
// per message. A permanent failure to route (null MX as in RFC 7505, or
// NXDOMAIN) bounces every ready item at once.
//
// # Results
//
// A 2xx reply delivers the recipient and a 5xx reply bounces it. A 4xx
// reply, a lost connection or a DNS failure is transient: Attempts grows and
// the recipient is scheduled RetryAfter later, a fixed interval that does not
// grow with attempts. A transient failure of a message older than
// BounceAfter expires the recipient instead. Each outcome writes one
// accounting record (d, t, b or e). The bounced and expired recipients of one
// attempt produce one DSN (RFC 3464) to the envelope sender, with the null
// reverse-path. No DSN is sent when the sender is itself null (so bounces
// cannot loop), when the policy disables DSNs, or for a recipient whose
// NOTIFY excludes failures.
//
// # What is persisted when
//
// Messages are durable before Enqueue, because the spool synced them before
// the client saw 250. After each attempt the recipient states go to
// spool.Update, which is not synced, or, when every recipient is final, the
// message goes with spool.Remove. A DSN is stored with spool.Inject, which
// syncs, before the states that caused it. If storing the DSN fails, its
// recipients return to pending and are retried. A transaction aborted by Stop
// leaves its recipients pending.
//
// # Invariants
//
//  1. Delivery is at least once. A crash loses at most recent state updates,
//     so recovery may deliver a recipient again or send a DSN twice, but
//     never drops a recipient or a DSN.
//  2. Each pending recipient is in exactly one item of one queue, or held by
//     exactly one worker.
//  3. A queue has at most MaxSMTPOut workers, and so at most MaxSMTPOut
//     open connections.
//  4. Lock order: a message's lock before the scheduler's lock. No code
//     holds the scheduler's lock during network, spool or log I/O, so
//     Enqueue, which runs on the spool's committer goroutine, never waits
//     for them.
package queue
