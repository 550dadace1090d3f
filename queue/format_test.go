package queue

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"smta/delivery"
	"smta/spool"
)

func TestReceivedHeader(t *testing.T) {
	now := time.Date(2026, 12, 4, 20, 40, 0, 0, time.UTC)
	tests := []struct {
		name    string
		env     spool.Envelope
		forRcpt string
		want    string
	}{
		{
			name:    "smtp client",
			env:     spool.Envelope{ID: "m1", Helo: "client.test", ClientAddr: "192.0.2.1:4000"},
			forRcpt: "a@b.test",
			want:    "Received: from client.test ([192.0.2.1])\r\n\tby relay.test (smta) with ESMTP id m1\r\n\tfor <a@b.test>; Fri, 04 Dec 2026 20:40:00 +0000\r\n",
		},
		{
			name: "ipv6 client without helo",
			env:  spool.Envelope{ID: "m2", ClientAddr: "[2001:db8::1]:25"},
			want: "Received: from [IPv6:2001:db8::1]\r\n\tby relay.test (smta) with ESMTP id m2; Fri, 04 Dec 2026 20:40:00 +0000\r\n",
		},
		{
			name: "smtputf8",
			env:  spool.Envelope{ID: "m3", Helo: "c.test", ClientAddr: "192.0.2.1:1", SMTPUTF8: true},
			want: "Received: from c.test ([192.0.2.1])\r\n\tby relay.test (smta) with UTF8SMTP id m3; Fri, 04 Dec 2026 20:40:00 +0000\r\n",
		},
		{
			name: "local injection",
			env:  spool.Envelope{ID: "m4"},
			want: "Received: by relay.test (smta) with local id m4; Fri, 04 Dec 2026 20:40:00 +0000\r\n",
		},
		{
			name:    "control characters dropped",
			env:     spool.Envelope{ID: "m5", Helo: "evil\r\nX-Injected: 1", ClientAddr: "192.0.2.1:1"},
			forRcpt: "a@b.test\r\n",
			want:    "Received: from evilX-Injected: 1 ([192.0.2.1])\r\n\tby relay.test (smta) with ESMTP id m5\r\n\tfor <a@b.test>; Fri, 04 Dec 2026 20:40:00 +0000\r\n",
		},
	}
	for _, tt := range tests {
		got := string(receivedHeader(&tt.env, "relay.test", tt.forRcpt, now))
		if got != tt.want {
			t.Errorf("%s: receivedHeader = %q, want %q", tt.name, got, tt.want)
		}
	}
}

// FuzzReceivedHeader checks that no envelope value can break the header out
// of its folded lines.
func FuzzReceivedHeader(f *testing.F) {
	f.Add("client.test", "192.0.2.1:25", "id1", "a@b.test")       // ordinary
	f.Add("", "", "", "")                                         // nothing known
	f.Add("x\r\nBcc: victim@example.com", "bad", "id\n2", "a\rb") // header injection attempts
	f.Add("héllo", "[::1]:25", "ünïcode", "ü@example.com")        // UTF-8
	f.Fuzz(func(t *testing.T, helo, client, id, rcpt string) {
		env := spool.Envelope{ID: id, Helo: helo, ClientAddr: client}
		h := string(receivedHeader(&env, "relay.test", rcpt, time.Unix(0, 0)))
		if !strings.HasPrefix(h, "Received:") || !strings.HasSuffix(h, "\r\n") {
			t.Fatalf("receivedHeader = %q, want one Received field ending in CRLF", h)
		}
		lines := strings.Split(strings.TrimSuffix(h, "\r\n"), "\r\n")
		for i, l := range lines {
			if strings.ContainsAny(l, "\r\n") {
				t.Fatalf("line %d = %q contains a bare CR or LF", i, l)
			}
			if i > 0 && !strings.HasPrefix(l, "\t") {
				t.Fatalf("line %d = %q is not a folded continuation", i, l)
			}
		}
	})
}

func TestDomainOf(t *testing.T) {
	tests := []struct{ addr, want string }{
		{"a@example.com", "example.com"},
		{"a@Example.COM", "example.com"},
		{"a@example.com.", "example.com"},
		{`"x@y"@example.com`, "example.com"},
		{"postmaster", ""},
		{"a@[192.0.2.1]", "[192.0.2.1]"},
		{"a@[IPv6:2001:DB8::1]", "[ipv6:2001:db8::1]"},
	}
	for _, tt := range tests {
		if got := domainOf(tt.addr); got != tt.want {
			t.Errorf("domainOf(%q) = %q, want %q", tt.addr, got, tt.want)
		}
	}
}

func TestAddressLiteral(t *testing.T) {
	tests := []struct {
		domain string
		want   string // "" means not a literal
	}{
		{"[192.0.2.1]", "192.0.2.1"},
		{"[ipv6:2001:db8::1]", "2001:db8::1"},
		{"[IPv6:::1]", "::1"},
		{"[2001:db8::1]", ""}, // IPv6 needs the tag (RFC 5321 4.1.3)
		{"[ipv6:192.0.2.1]", ""},
		{"[300.0.0.1]", ""},
		{"example.com", ""},
		{"[]", ""},
		{"[", ""},
	}
	for _, tt := range tests {
		a, ok := addressLiteral(tt.domain)
		got := ""
		if ok {
			got = a.String()
		}
		if got != tt.want {
			t.Errorf("addressLiteral(%q) = %q, want %q", tt.domain, got, tt.want)
		}
	}
}

// FuzzAddressLiteral checks that a parsed literal formats back to a domain
// that parses to the same address.
func FuzzAddressLiteral(f *testing.F) {
	f.Add("[192.0.2.1]")        // IPv4
	f.Add("[IPv6:2001:db8::1]") // IPv6
	f.Add("[ipv6:]")            // empty tag
	f.Add("example.com")        // not a literal
	f.Fuzz(func(t *testing.T, d string) {
		a, ok := addressLiteral(d)
		if !ok {
			return
		}
		lit := addrLiteral(a)
		b, ok := addressLiteral(lit)
		if !ok || b != a {
			t.Fatalf("addressLiteral(%q) = %v, but its literal %q parses to %v, %v", d, a, lit, b, ok)
		}
	})
}

func TestAddrLiteralUnmaps(t *testing.T) {
	a := netip.MustParseAddr("::ffff:192.0.2.1")
	if got, want := addrLiteral(a), "[192.0.2.1]"; got != want {
		t.Errorf("addrLiteral(%v) = %q, want %q", a, got, want)
	}
}

func TestNotifyFailure(t *testing.T) {
	tests := []struct {
		notify string
		want   bool
	}{
		{"", true},
		{"NEVER", false},
		{"never", false},
		{"SUCCESS", false},
		{"SUCCESS,FAILURE", true},
		{"delay, failure", true},
		{"DELAY", false},
	}
	for _, tt := range tests {
		if got := notifyFailure(tt.notify); got != tt.want {
			t.Errorf("notifyFailure(%q) = %v, want %v", tt.notify, got, tt.want)
		}
	}
}

func TestStatusText(t *testing.T) {
	tests := []struct {
		code, want string
	}{
		{"2.0.0", "2.0.0 (success)"},
		{"2.1.5", "2.1.5 (success)"},
		{"5.1.1", "5.1.1 (bad destination mailbox address)"},
		{"4.4.7", "4.4.7 (delivery time expired)"},
		{"5.1.10", "5.1.10 (recipient address has null MX)"},
		{"4.9.9", "4.9.9 (other undefined status)"},
		{"bogus", "bogus"},
	}
	for _, tt := range tests {
		if got := statusText(tt.code); got != tt.want {
			t.Errorf("statusText(%q) = %q, want %q", tt.code, got, tt.want)
		}
	}
}

func TestNormalizeResults(t *testing.T) {
	ok := delivery.Result{Code: 250, Enhanced: "2.0.0", Text: "ok"}
	bad := delivery.Result{Code: 550, Enhanced: "5.1.1", Text: "no"}
	tests := []struct {
		name    string
		results []delivery.Result
		failed  bool
		want    []int // codes
	}{
		{"complete", []delivery.Result{ok, bad}, false, []int{250, 550}},
		{"short", []delivery.Result{ok}, false, []int{250, 451}},
		{"broken connection distrusts 2xx", []delivery.Result{ok, bad}, true, []int{451, 550}},
	}
	for _, tt := range tests {
		var err error
		if tt.failed {
			err = delivery.ErrConnBroken
		}
		got := normalizeResults(tt.results, err, 2)
		for i, r := range got {
			if r.Code != tt.want[i] {
				t.Errorf("%s: result %d = %v, want code %d", tt.name, i, r, tt.want[i])
			}
		}
	}
}
