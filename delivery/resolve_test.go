package delivery

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/miekg/dns"

	"smta/internal/testdns"
)

func lookup(t *testing.T, r *Resolver, domain string) ([]Host, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return r.LookupMX(ctx, domain)
}

func hostNames(hosts []Host) []string {
	var names []string
	for _, h := range hosts {
		names = append(names, h.Name)
	}
	return names
}

func TestLookupMXOrder(t *testing.T) {
	srv := testdns.Start(t)
	srv.AddMX("example.com", 20, "mx2.example.com")
	srv.AddMX("example.com", 10, "mx1a.example.com")
	srv.AddMX("example.com", 30, "mx3.example.com")
	srv.AddMX("example.com", 10, "mx1b.example.com")
	srv.AddA("mx1a.example.com", "127.0.0.11")
	srv.AddA("mx1b.example.com", "127.0.0.12")
	srv.AddA("mx2.example.com", "127.0.0.2")
	srv.AddAAAA("mx2.example.com", "::1")
	srv.AddA("mx3.example.com", "127.0.0.3")
	r := NewResolver(srv.Addr())

	// Equal preferences are shuffled, so both orders of mx1a and mx1b must
	// show up. 200 lookups all in one order happen with probability 2^-199.
	seen := map[string]bool{}
	for i := 0; i < 200 && len(seen) < 2; i++ {
		hosts, err := lookup(t, r, "example.com")
		if err != nil {
			t.Fatalf("LookupMX(example.com): %v", err)
		}
		names := hostNames(hosts)
		if len(names) != 4 || names[2] != "mx2.example.com" || names[3] != "mx3.example.com" {
			t.Fatalf("LookupMX(example.com) = %v, want mx1a and mx1b in any order, then mx2, mx3", names)
		}
		for k := 1; k < len(hosts); k++ {
			if hosts[k-1].Preference > hosts[k].Preference {
				t.Fatalf("LookupMX(example.com) preferences not ascending: %v", hosts)
			}
		}
		seen[names[0]] = true
	}
	if len(seen) != 2 {
		t.Errorf("equal-preference hosts never changed order: always %v first", seen)
	}

	hosts, err := lookup(t, r, "example.com")
	if err != nil {
		t.Fatalf("LookupMX(example.com): %v", err)
	}
	want := []netip.Addr{netip.MustParseAddr("127.0.0.2"), netip.MustParseAddr("::1")}
	if !slices.Equal(hosts[2].Addrs, want) {
		t.Errorf("mx2 addresses = %v, want %v (IPv4 first)", hosts[2].Addrs, want)
	}
	if hosts[2].Preference != 20 {
		t.Errorf("mx2 preference = %d, want 20", hosts[2].Preference)
	}
}

func TestLookupMXImplicit(t *testing.T) {
	srv := testdns.Start(t)
	srv.AddA("implicit.example", "127.0.0.5")
	srv.AddAAAA("implicit.example", "::1")
	r := NewResolver(srv.Addr())

	hosts, err := lookup(t, r, "implicit.example")
	if err != nil {
		t.Fatalf("LookupMX(implicit.example): %v", err)
	}
	if len(hosts) != 1 {
		t.Fatalf("LookupMX(implicit.example) = %v, want one host", hosts)
	}
	h := hosts[0]
	if h.Name != "implicit.example" || h.Preference != 0 || len(h.Addrs) != 2 {
		t.Errorf("implicit MX = %+v, want implicit.example, preference 0, 2 addresses", h)
	}
}

func TestLookupMXErrors(t *testing.T) {
	srv := testdns.Start(t)
	srv.SetNullMX("null.example")
	srv.AddTXT("noaddr.example", "exists but has no MX and no A") // NODATA for MX and A
	srv.AddMX("deadmx.example", 10, "gone.deadmx.example")        // target is NXDOMAIN
	srv.AddMX("halfdead.example", 10, "gone.halfdead.example")
	srv.AddMX("halfdead.example", 20, "broken.halfdead.example")
	srv.SetRcode("broken.halfdead.example", dns.RcodeServerFailure)
	srv.SetRcode("servfail.example", dns.RcodeServerFailure)
	srv.SetRcode("refused.example", dns.RcodeRefused)
	r := NewResolver(srv.Addr())

	tests := []struct {
		domain    string
		sentinel  error // nil: only the classification is checked
		permanent bool
	}{
		{"null.example", ErrNullMX, true},
		{"nxdomain.example", ErrNoSuchDomain, true},
		{"noaddr.example", ErrNoMailHosts, true},
		{"deadmx.example", ErrNoMailHosts, true},
		{"halfdead.example", nil, false},
		{"servfail.example", nil, false},
		{"refused.example", nil, false},
		{"bad..name", ErrInvalidDomain, true},
		{"", ErrInvalidDomain, true},
	}
	for _, tt := range tests {
		hosts, err := lookup(t, r, tt.domain)
		if err == nil {
			t.Errorf("LookupMX(%q) = %v, want an error", tt.domain, hosts)
			continue
		}
		if tt.sentinel != nil && !errors.Is(err, tt.sentinel) {
			t.Errorf("LookupMX(%q) error = %v, want %v", tt.domain, err, tt.sentinel)
		}
		if got := IsPermanent(err); got != tt.permanent {
			t.Errorf("IsPermanent(LookupMX(%q)) = %v, want %v (error %v)", tt.domain, got, tt.permanent, err)
		}
	}

	_, err := lookup(t, r, "servfail.example")
	var le *LookupError
	if !errors.As(err, &le) || le.Rcode != dns.RcodeServerFailure || le.Type != "MX" {
		t.Errorf("LookupMX(servfail.example) error = %#v, want a LookupError for MX with SERVFAIL", err)
	}
}

func TestLookupMXTimeoutRetriesOnce(t *testing.T) {
	srv := testdns.Start(t)
	srv.SetDrop("slow.example", true)
	r := NewResolver(srv.Addr())
	r.Timeout = 50 * time.Millisecond

	_, err := lookup(t, r, "slow.example")
	if err == nil || IsPermanent(err) {
		t.Fatalf("LookupMX(slow.example) error = %v, want a temporary error", err)
	}
	if got := srv.Queries(); got != 2 {
		t.Errorf("server saw %d queries, want 2 (one retry)", got)
	}
}

func TestLookupMXTruncatedFallsBackToTCP(t *testing.T) {
	srv := testdns.Start(t)
	srv.AddMX("big.example", 10, "mx.big.example")
	srv.AddA("mx.big.example", "127.0.0.7")
	srv.SetTruncated("big.example", true)
	r := NewResolver(srv.Addr())

	hosts, err := lookup(t, r, "big.example")
	if err != nil {
		t.Fatalf("LookupMX(big.example): %v", err)
	}
	if names := hostNames(hosts); !slices.Equal(names, []string{"mx.big.example"}) {
		t.Errorf("LookupMX(big.example) = %v, want [mx.big.example]", names)
	}
	if got := srv.TCPQueries(); got != 1 {
		t.Errorf("server saw %d TCP queries, want 1", got)
	}
}

func TestLookupMXSkipsHostsWithoutAddress(t *testing.T) {
	srv := testdns.Start(t)
	srv.AddMX("partial.example", 10, "gone.partial.example")
	srv.AddMX("partial.example", 20, "mx.partial.example")
	srv.AddAAAA("mx.partial.example", "::1")
	r := NewResolver(srv.Addr())

	hosts, err := lookup(t, r, "partial.example")
	if err != nil {
		t.Fatalf("LookupMX(partial.example): %v", err)
	}
	if names := hostNames(hosts); !slices.Equal(names, []string{"mx.partial.example"}) {
		t.Errorf("LookupMX(partial.example) = %v, want [mx.partial.example]", names)
	}
}

func TestLookupMXInternationalized(t *testing.T) {
	srv := testdns.Start(t)
	srv.AddMX("xn--caf-dma.example", 10, "mx.xn--caf-dma.example")
	srv.AddA("mx.xn--caf-dma.example", "127.0.0.9")
	r := NewResolver(srv.Addr())

	hosts, err := lookup(t, r, "café.example")
	if err != nil {
		t.Fatalf("LookupMX(café.example): %v", err)
	}
	if names := hostNames(hosts); !slices.Equal(names, []string{"mx.xn--caf-dma.example"}) {
		t.Errorf("LookupMX(café.example) = %v, want [mx.xn--caf-dma.example]", names)
	}
}

func TestLookupMXDomainLiteral(t *testing.T) {
	srv := testdns.Start(t)
	r := NewResolver(srv.Addr())

	tests := []struct {
		domain string
		want   string // "" means invalid
	}{
		{"[127.0.0.1]", "127.0.0.1"},
		{"[IPv6:::1]", "::1"},
		{"[ipv6:2001:db8::25]", "2001:db8::25"},
		{"[::1]", ""},            // IPv6 needs the tag (RFC 5321 section 4.1.3)
		{"[IPv6:127.0.0.1]", ""}, // tag on an IPv4 address
		{"[127.0.0.1", ""},
		{"[127.0.0]", ""},
		{"[fe80::1%eth0]", ""},
	}
	for _, tt := range tests {
		hosts, err := lookup(t, r, tt.domain)
		if tt.want == "" {
			if !errors.Is(err, ErrInvalidDomain) {
				t.Errorf("LookupMX(%q) = %v, %v, want ErrInvalidDomain", tt.domain, hosts, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("LookupMX(%q): %v", tt.domain, err)
			continue
		}
		want := []netip.Addr{netip.MustParseAddr(tt.want)}
		if len(hosts) != 1 || hosts[0].Name != tt.domain || !slices.Equal(hosts[0].Addrs, want) {
			t.Errorf("LookupMX(%q) = %+v, want one host with %v", tt.domain, hosts, want)
		}
	}
	if got := srv.Queries(); got != 0 {
		t.Errorf("domain literals caused %d DNS queries, want 0", got)
	}
}
