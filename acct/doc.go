// Package acct writes accounting records, one JSON object per line, to
// rotated files and ships them to webhooks, and writes the SMTP access log.
//
// # Accounting: ring, writer, files, shippers
//
//		Log (any goroutine)
//		  └─▶ ring.MPSC[*Record] ─▶ writer goroutine ─┬─▶ Dir/acct.json and <acct-file> files (rotated)
//		                                              └─▶ one spool per webhook ─▶ shipper ─▶ HTTP POST
//
//	 1. Log sets TimeLogged and pushes the record into a bounded lock-free
//	    ring. A push is a few atomic operations and never allocates. When the
//	    ring is full, Log waits until the writer frees slots: accounting
//	    records are never dropped, so overload slows the producers
//	    (backpressure) instead. The writer sleeps when the ring is empty, and
//	    only the producer that finds it asleep pays for a channel send.
//	 2. The single writer goroutine pops records in batches, encodes each
//	    record once with a reflection-free encoder that produces what
//	    encoding/json would, and appends the line to every output whose
//	    record set contains the record's type. Each output gets one write
//	    call per batch. Every SyncInterval the writer fsyncs the outputs that
//	    have new data, and it rotates files by size or age.
//	 3. Each webhook has a spool of its own, Dir/webhooks/HASH/, written by
//	    the writer like a file but cut into numbered segments. Its shipper
//	    reads only data the writer has fsynced, posts JSON arrays of up to
//	    BatchSize records, retries failures with exponential backoff and
//	    jitter, and persists its position (segment number and offset) after
//	    every 2xx. A webhook that is down for hours receives everything, in
//	    order, when it returns, and a restart resumes after the last
//	    acknowledged batch. Segments are deleted once acknowledged, so the
//	    spool is independent of the rotation of the accounting files.
//
// A write error (a full disk, say) is retried with backoff while the
// writer pops nothing new, so it too turns into backpressure on Log.
//
// Rejected alternatives: a mutex-guarded buffer shared by all producers
// serializes every Log call on one lock. A channel does too, and it parks
// and hands off goroutines when it is full or empty. Shipping straight from the
// writer would let a slow webhook stall the files, and tailing the
// user-visible acct.json would tie the webhook's progress to its rotation
// and Keep policy, which may delete a file the webhook has not received.
//
// # Access log
//
// AccessLog writes smta-access.log: one line per SMTP session and one per
// failed command. Unlike accounting it may drop lines under overload, and
// it counts every drop. It also limits the lines per client IP, so a client
// that fails AUTH thousands of times cannot flood the disk.
package acct
