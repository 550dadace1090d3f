package engine

import (
	"net/netip"
	"testing"
)

func TestConnLimits(t *testing.T) {
	a := netip.MustParseAddr("192.0.2.1")
	b := netip.MustParseAddr("2001:db8::1")
	tests := []struct {
		name         string
		total, perIP int
		sequence     []netip.Addr
		want         []bool
	}{
		{"no limits", 0, 0, []netip.Addr{a, a, a, b}, []bool{true, true, true, true}},
		{"total", 3, 0, []netip.Addr{a, b, a, b}, []bool{true, true, true, false}},
		{"per ip", 0, 2, []netip.Addr{a, a, a, b, b, b}, []bool{true, true, false, true, true, false}},
		{"both", 3, 2, []netip.Addr{a, a, a, b, b}, []bool{true, true, false, true, false}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := newConnLimits(tt.total, tt.perIP)
			for i, ip := range tt.sequence {
				if got := l.acquire(ip); got != tt.want[i] {
					t.Errorf("acquire #%d (%v) = %v, want %v", i, ip, got, tt.want[i])
				}
			}
		})
	}
}

func TestConnLimitsRelease(t *testing.T) {
	a := netip.MustParseAddr("192.0.2.1")
	l := newConnLimits(1, 1)
	if !l.acquire(a) {
		t.Fatal("first acquire = false, want true")
	}
	if l.acquire(a) {
		t.Fatal("second acquire = true, want false")
	}
	l.release(a)
	if !l.acquire(a) {
		t.Error("acquire after release = false, want true")
	}
	if n := l.total.Load(); n != 1 {
		t.Errorf("total = %d, want 1", n)
	}
}
