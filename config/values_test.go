package config

import (
	"testing"
	"time"
)

func TestParseSize(t *testing.T) {
	tests := []struct {
		in   string
		want int64
	}{
		{"0", 0},
		{"1024", 1024},
		{"512k", 512 << 10},
		{"512K", 512 << 10},
		{"10M", 10 << 20},
		{"10m", 10 << 20},
		{"1G", 1 << 30},
		{"8589934591G", 8589934591 << 30},
	}
	for _, tt := range tests {
		if got, err := parseSize(tt.in); err != nil || got != tt.want {
			t.Errorf("parseSize(%q) = %d, %v, want %d", tt.in, got, err, tt.want)
		}
	}
	for _, in := range []string{"", "k", "-1", "1.5M", "10MB", "10 M", "0x10", "8589934592G", "99999999999999999999"} {
		if got, err := parseSize(in); err == nil {
			t.Errorf("parseSize(%q) = %d, want an error", in, got)
		}
	}
}

func TestParseDuration(t *testing.T) {
	tests := []struct {
		in   string
		want time.Duration
	}{
		{"0", 0},
		{"10m", 10 * time.Minute},
		{"30s", 30 * time.Second},
		{"250ms", 250 * time.Millisecond},
		{"1h30m", 90 * time.Minute},
		{"1.5h", 90 * time.Minute},
		{"1d", 24 * time.Hour},
		{"4d12h", 108 * time.Hour},
		{"2d30m", 48*time.Hour + 30*time.Minute},
		{"0s", 0},
		{"100us", 100 * time.Microsecond},
		{"100µs", 100 * time.Microsecond},
		{"5ns", 5},
	}
	for _, tt := range tests {
		if got, err := parseDuration(tt.in); err != nil || got != tt.want {
			t.Errorf("parseDuration(%q) = %v, %v, want %v", tt.in, got, err, tt.want)
		}
	}
	for _, in := range []string{"", "5", "-1m", "+1m", "m", "1.2.3s", ".s", "1w", "1 m", "10M", "1d-2h", "200000d", "106752d"} {
		if got, err := parseDuration(in); err == nil {
			t.Errorf("parseDuration(%q) = %v, want an error", in, got)
		}
	}
}

func TestParseBool(t *testing.T) {
	tests := []struct {
		in   string
		want bool
	}{
		{"yes", true}, {"YES", true}, {"true", true}, {"on", true},
		{"no", false}, {"False", false}, {"off", false},
	}
	for _, tt := range tests {
		if got, err := parseBool(tt.in); err != nil || got != tt.want {
			t.Errorf("parseBool(%q) = %v, %v, want %v", tt.in, got, err, tt.want)
		}
	}
	for _, in := range []string{"", "1", "0", "y", "enabled"} {
		if got, err := parseBool(in); err == nil {
			t.Errorf("parseBool(%q) = %v, want an error", in, got)
		}
	}
}

func TestHostIDFromName(t *testing.T) {
	tests := []struct{ in, want string }{
		{"mx1.example.com", "mx1"},
		{"mx-1.example.com", "mx1"},
		{"relay_7", "relay7"},
		{"---.example.com", "smta"},
		{"", "smta"},
		{"abcdefghijklmnopqrstuvwxyz0123456789", "abcdefghijklmnopqrstuvwxyz012345"},
	}
	for _, tt := range tests {
		if got := hostIDFromName(tt.in); got != tt.want {
			t.Errorf("hostIDFromName(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}
