package engine

import "sync/atomic"

// Stats are the inbound counters of a Server, summed over its shards.
type Stats struct {
	Accepted    uint64 // connections accepted from the kernel
	Rejected    uint64 // connections turned away (limits or Backend.Connect)
	BytesIn     uint64 // octets read from clients
	BytesOut    uint64 // octets written to clients
	Open        int64  // connections open now, including TLS hand-offs
	Syscalls    uint64 // reads, writes, accepts, polls and ring submissions
	Timeouts    uint64 // sessions closed by a command or data timeout
	TLSHandoffs uint64 // connections moved to a TLS goroutine
	Completions uint64 // inbox records applied by the shards
	Wakeups     uint64 // eventfd wakeups of a waiting shard; producers skip the eventfd while it runs
	FileWrites  uint64 // FileWriter writes queued on io_uring shards
}

// statser is implemented by inbound modes that keep counters.
type statser interface{ stats() Stats }

// Stats returns the server's counters. Modes without counters return zeros.
func (s *Server) Stats() Stats {
	if st, ok := s.impl.(statser); ok {
		return st.stats()
	}
	return Stats{}
}

// shardCounters are one shard's counters. Only the shard thread writes them,
// so an increment is a load and a store rather than a locked add. Readers on
// other threads load them atomically. The padding keeps two shards' counters
// off one cache line, because every shard updates its own on each syscall.
type shardCounters struct {
	accepted    atomic.Uint64
	rejected    atomic.Uint64
	bytesIn     atomic.Uint64
	bytesOut    atomic.Uint64
	open        atomic.Int64
	syscalls    atomic.Uint64
	timeouts    atomic.Uint64
	tlsHandoffs atomic.Uint64
	completions atomic.Uint64
	wakeups     atomic.Uint64
	fileWrites  atomic.Uint64
	_           [128 - 11*8]byte
}

// add increments a single-writer counter.
//
// REQUIRES: the caller is the counter's only writer.
func add(c *atomic.Uint64, n uint64) { c.Store(c.Load() + n) }

func (c *shardCounters) sumInto(s *Stats) {
	s.Accepted += c.accepted.Load()
	s.Rejected += c.rejected.Load()
	s.BytesIn += c.bytesIn.Load()
	s.BytesOut += c.bytesOut.Load()
	s.Open += c.open.Load()
	s.Syscalls += c.syscalls.Load()
	s.Timeouts += c.timeouts.Load()
	s.TLSHandoffs += c.tlsHandoffs.Load()
	s.Completions += c.completions.Load()
	s.Wakeups += c.wakeups.Load()
	s.FileWrites += c.fileWrites.Load()
}
