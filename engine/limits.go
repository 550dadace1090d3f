package engine

import (
	"net/netip"
	"sync"
	"sync/atomic"
)

// connLimits enforces Config.MaxConnections and Config.MaxConnectionsPerIP
// across all shards. The total is one atomic counter. The per-address counts
// live in a map split into limitStripes locked stripes chosen by address
// hash, so shards accepting from different clients rarely share a lock.
type connLimits struct {
	// Immutable after newConnLimits.
	max, maxPerIP int64

	total   atomic.Int64
	stripes [limitStripes]limitStripe
}

const limitStripes = 64

type limitStripe struct {
	mu    sync.Mutex // guards count
	count map[netip.Addr]int64
	_     [64]byte // keeps neighboring stripes' locks on separate cache lines
}

func newConnLimits(maxTotal, maxPerIP int) *connLimits {
	l := &connLimits{max: int64(maxTotal), maxPerIP: int64(maxPerIP)}
	for i := range l.stripes {
		l.stripes[i].count = make(map[netip.Addr]int64)
	}
	return l
}

func (l *connLimits) stripe(ip netip.Addr) *limitStripe {
	b := ip.As16()
	var h uint32 = 2166136261 // FNV-1a
	for _, c := range b {
		h = (h ^ uint32(c)) * 16777619
	}
	return &l.stripes[h%limitStripes]
}

// acquire counts a new connection from ip. It returns false, counting
// nothing, when either limit would be exceeded.
func (l *connLimits) acquire(ip netip.Addr) bool {
	if n := l.total.Add(1); l.max > 0 && n > l.max {
		l.total.Add(-1)
		return false
	}
	if l.maxPerIP <= 0 {
		return true
	}
	st := l.stripe(ip)
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.count[ip] >= l.maxPerIP {
		l.total.Add(-1)
		return false
	}
	st.count[ip]++
	return true
}

// release undoes one successful acquire.
func (l *connLimits) release(ip netip.Addr) {
	l.total.Add(-1)
	if l.maxPerIP <= 0 {
		return
	}
	st := l.stripe(ip)
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.count[ip]--; st.count[ip] <= 0 {
		delete(st.count, ip)
	}
}
