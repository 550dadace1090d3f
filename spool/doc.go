// Package spool stores received messages durably: bodies in preallocated
// segment files, envelopes in a Pebble index, both made durable by a group
// commit before the SMTP client receives its 250 reply to end of data.
//
// # Layout
//
//	<dir>/LOCK                 flock(2) held while a process has the spool open
//	<dir>/segments/NNNNNNNN.seg fixed-size segment files of records
//	<dir>/index/               Pebble: m/<id> entries, s/<segno> generations,
//	                           corrupt/<id> entries, meta/idepoch
//
// A body is a list of records (see record.go for the byte layout) in one or
// more segments. Each record has a header with a CRC-32C checksum and the
// generation of its segment. The index entry of a message (m/<id>) stores its
// Envelope and the location, generation, sequence and length of each record.
//
// # Steps
//
//  1. Append. A Writer buffers body bytes and, whenever a chunk (256 KiB)
//     fills up and at Commit, appends a record to the active segment. The
//     writer takes a reference on the segment, reserves its range with one
//     atomic add on the segment's tail and fills it with pwrite. No lock is
//     taken. A record that does not fit seals the segment and moves to the
//     next one. That rare path takes a mutex.
//  2. Commit. Commit queues the message for the committer goroutine. Each
//     turn of the committer takes everything queued while the previous turn
//     was syncing, calls fdatasync once per segment written to, then commits
//     one Pebble batch with all their entries using pebble.Sync, and only
//     then calls the callbacks. Under load one sync serves many messages
//     without any timer; Options.CommitDelay can trade latency for larger
//     batches.
//  3. Read. Body verifies each record's header and checksum as it reads.
//     Extents returns the payload ranges for sendfile(2).
//  4. Update and Remove. Recipient states are written to the index without
//     sync. Remove deletes the entry and drops one segment reference per
//     record.
//  5. Recycle. A sealed segment whose references reach zero gets its
//     generation bumped and goes to a free list of at most 4 segments.
//     Drained segments beyond that are deleted. The next rotation reuses a
//     free segment instead of creating a file. Its blocks were written in
//     the first use, so fdatasync finds neither allocations nor unwritten
//     extents to convert (fallocate(2) leaves extents unwritten until the
//     first write) and has only data to flush. Records left from the earlier
//     use carry the old generation and read back as invalid.
//  6. Recover. Open reads every index entry, verifies every record it points
//     to, rebuilds the segment references, deletes entries whose recipients
//     are all final, and moves entries whose body fails verification to
//     corrupt/<id> with an error log naming the id. Recover then hands out
//     the surviving messages.
//
// # Invariants
//
//  1. A nil error in a Commit callback means the body and the envelope
//     survive kill -9 and power loss: both were synced before the callback.
//  2. An index entry never points at body bytes that were not synced, because
//     bodies are synced before the index batch commits. A record that fails
//     verification at recovery is therefore real damage, and it is reported
//     rather than dropped.
//  3. Recovery rebuilds the same set of messages that were committed and not
//     removed, verifying every record's checksum and generation. Removals
//     and updates are not synced, so a crash may bring back a removed
//     message or an older recipient state. Delivery is at least once.
//  4. A segment is recycled only when no committed message and no writer
//     references it, and a recycled segment never reuses a generation that
//     an index entry could reference.
//
// # Message ids
//
// Ids are <hostid>-<epoch>-<counter> (see index.go): unique across restarts
// because each open persists a new epoch, and across appliances through the
// host id.
//
// # Rejected alternatives
//
//   - One file per message, as Postfix does: every message costs a file
//     creation, an inode, a directory entry and its own fsync, so the disk
//     performs several journal commits per message and nothing is shared between
//     concurrent messages.
//   - A write-ahead log plus separate body files: bodies would be written
//     twice (log and file), or the files would bring back per-message
//     fsync. Segments are the log, and the index stays small.
//   - Writing through mmap: a fault on a full or failing disk arrives as
//     SIGBUS instead of an error, msync is coarser than fdatasync, and page
//     faults on fresh pages cost more than pwrite for sequential appends.
//   - Syncing the body and the index in parallel: it would save one sync
//     latency per batch but breaks invariant 2, so a crash could leave
//     entries whose bodies fail verification for messages that were never
//     acknowledged.
package spool
