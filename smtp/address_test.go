package smtp

import (
	"strings"
	"testing"
)

func TestParsePath(t *testing.T) {
	tests := []struct {
		in   string
		kind pathKind
		addr string // "" with err set means a parse error
		utf8 bool
		rest string
		err  bool
	}{
		// Plain mailboxes and what may follow them.
		{in: "<user@example.com>", addr: "user@example.com"},
		{in: "<user@example.com> SIZE=10", addr: "user@example.com", rest: " SIZE=10"},
		{in: "<user@example.com>SIZE=10", err: true},
		{in: "<first.last+tag@sub.example.com>", addr: "first.last+tag@sub.example.com"},
		{in: "<!#$%&'*+-/=?^_`{|}~@example.com>", addr: "!#$%&'*+-/=?^_`{|}~@example.com"},
		{in: "<user@a-b.example>", addr: "user@a-b.example"},
		{in: "<user@123.example>", addr: "user@123.example"},

		// Null path: reverse-path only.
		{in: "<>", addr: ""},
		{in: "<> BODY=8BITMIME", addr: "", rest: " BODY=8BITMIME"},
		{in: "<>", kind: forwardPath, err: true},

		// Postmaster without a domain: forward-path only, any case.
		{in: "<postmaster>", kind: forwardPath, addr: "postmaster"},
		{in: "<PostMaster>", kind: forwardPath, addr: "PostMaster"},
		{in: "<postmaster>", kind: reversePath, err: true},
		{in: "<postmaster@example.com>", kind: forwardPath, addr: "postmaster@example.com"},
		{in: "<postmasterx>", kind: forwardPath, err: true},

		// Source routes are accepted and dropped.
		{in: "<@relay.example:user@example.com>", addr: "user@example.com"},
		{in: "<@a.example,@b.example:user@example.com>", addr: "user@example.com"},
		{in: "<@a.example,b.example:user@example.com>", err: true},
		{in: "<@:user@example.com>", err: true},
		{in: "<@a.example user@example.com>", err: true},

		// Quoted local parts.
		{in: `<"john doe"@example.com>`, addr: `"john doe"@example.com`},
		{in: `<"a\"b"@example.com>`, addr: `"a\"b"@example.com`},
		{in: `<"a\\b"@example.com>`, addr: `"a\\b"@example.com`},
		{in: `<""@example.com>`, addr: `""@example.com`},
		{in: `<"a>b"@example.com>`, addr: `"a>b"@example.com`},
		{in: `<"unterminated@example.com>`, err: true},
		{in: "<\"tab\there\"@example.com>", err: true},

		// Dot-string rules.
		{in: "<.user@example.com>", err: true},
		{in: "<user.@example.com>", err: true},
		{in: "<us..er@example.com>", err: true},
		{in: "<us er@example.com>", err: true},
		{in: "<user(comment)@example.com>", err: true},

		// Domains.
		{in: "<user@>", err: true},
		{in: "<user>", err: true},
		{in: "<@example.com>", err: true},
		{in: "<user@example..com>", err: true},
		{in: "<user@example.com.>", err: true},
		{in: "<user@-example.com>", err: true},
		{in: "<user@example-.com>", err: true},
		{in: "<user@exa_mple.com>", err: true},
		{in: "<user@" + strings.Repeat("a", 63) + ".com>", addr: "user@" + strings.Repeat("a", 63) + ".com"},
		{in: "<user@" + strings.Repeat("a", 64) + ".com>", err: true},

		// Address literals (RFC 5321 section 4.1.3).
		{in: "<user@[192.0.2.1]>", addr: "user@[192.0.2.1]"},
		{in: "<user@[IPv6:2001:db8::1]>", addr: "user@[IPv6:2001:db8::1]"},
		{in: "<user@[ipv6:::1]>", addr: "user@[ipv6:::1]"},
		{in: "<user@[IPv6:192.0.2.1]>", err: true},
		{in: "<user@[IPv6:fe80::1%eth0]>", err: true},
		{in: "<user@[192.0.2.256]>", err: true},
		{in: "<user@[192.0.2]>", err: true},
		{in: "<user@[]>", err: true},
		{in: "<user@[x-tag:content]>", addr: "user@[x-tag:content]"},
		{in: "<user@[tag:]>", err: true},
		{in: "<user@[:content]>", err: true},
		{in: "<user@[192.0.2.1>", err: true},

		// UTF-8 (RFC 6531) is parsed and flagged; invalid UTF-8 is not.
		{in: "<üser@example.com>", addr: "üser@example.com", utf8: true},
		{in: "<用户@例子.测试>", addr: "用户@例子.测试", utf8: true},
		{in: "<\"ü\"@example.com>", addr: "\"ü\"@example.com", utf8: true},
		{in: "<\xff@example.com>", err: true},

		// Missing or stray brackets.
		{in: "user@example.com", err: true},
		{in: "<user@example.com", err: true},
		{in: "", err: true},
		{in: "<", err: true},

		// Length: 256 octets including the brackets.
		{in: "<" + strings.Repeat("a", 242) + "@example.com>", addr: strings.Repeat("a", 242) + "@example.com"},
		{in: "<" + strings.Repeat("a", 243) + "@example.com>", err: true},
	}
	for _, tt := range tests {
		p, rest, err := parsePath([]byte(tt.in), tt.kind)
		if tt.err {
			if err == nil {
				t.Errorf("parsePath(%q, %d) = %q, want an error", tt.in, tt.kind, p.addr)
			}
			continue
		}
		if err != nil {
			t.Errorf("parsePath(%q, %d) error: %v", tt.in, tt.kind, err)
			continue
		}
		if p.addr != tt.addr {
			t.Errorf("parsePath(%q, %d) addr = %q, want %q", tt.in, tt.kind, p.addr, tt.addr)
		}
		if p.utf8 != tt.utf8 {
			t.Errorf("parsePath(%q, %d) utf8 = %v, want %v", tt.in, tt.kind, p.utf8, tt.utf8)
		}
		if string(rest) != tt.rest {
			t.Errorf("parsePath(%q, %d) rest = %q, want %q", tt.in, tt.kind, rest, tt.rest)
		}
	}
}

// FuzzParsePath checks that parsePath never panics, that what it accepts
// is well-formed, and that an accepted mailbox parses again to itself.
func FuzzParsePath(f *testing.F) {
	seeds := []string{
		"<user@example.com>", // plain mailbox
		"<> SIZE=10",         // null path with parameters
		"<postmaster>",       // postmaster without domain
		"<@a.example,@b.example:user@example.com>", // source route
		`<"a\"b c"@example.com>`,                   // quoted local part with quoted-pair
		"<user@[IPv6:2001:db8::1]>",                // IPv6 literal
		"<user@[192.0.2.1]>",                       // IPv4 literal
		"<user@[tag:x]>",                           // general literal
		"<用户@例子.测试>",                               // UTF-8
		"<\xff@x>",                                 // invalid UTF-8
		"<a..b@x>",                                 // double dot
		"<",                                        // truncated
	}
	for _, s := range seeds {
		f.Add(s, false)
		f.Add(s, true)
	}
	f.Fuzz(func(t *testing.T, in string, forward bool) {
		kind := reversePath
		if forward {
			kind = forwardPath
		}
		p, rest, err := parsePath([]byte(in), kind)
		if err != nil {
			return
		}
		if len(rest) > 0 && rest[0] != ' ' {
			t.Fatalf("parsePath(%q) rest = %q, want empty or a leading space", in, rest)
		}
		if len(in)-len(rest) > maxPathLength {
			t.Fatalf("parsePath(%q) accepted a %d-octet path", in, len(in)-len(rest))
		}
		if p.addr == "" {
			if kind != reversePath {
				t.Fatalf("parsePath(%q) accepted a null forward-path", in)
			}
			return
		}
		if strings.ContainsAny(p.addr, "\r\n\x00 <>") && !strings.Contains(p.addr, `"`) {
			t.Fatalf("parsePath(%q) addr %q has forbidden characters", in, p.addr)
		}
		again, _, err := parsePath([]byte("<"+p.addr+">"), kind)
		if err != nil || again.addr != p.addr {
			t.Fatalf("parsePath(<%s>) = %q, %v; want the same mailbox back", p.addr, again.addr, err)
		}
	})
}
