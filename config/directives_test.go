package config

import (
	"errors"
	"net/http"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"
)

func mustParse(t *testing.T, text string) *Config {
	t.Helper()
	c, err := Parse("t.conf", []byte(text))
	if err != nil {
		t.Fatalf("Parse(%q) error:\n%v", text, err)
	}
	return c
}

func TestGlobalDirectives(t *testing.T) {
	tests := []struct {
		in   string
		get  func(*Config) any
		want any
	}{
		{"host-name mx1.example.com", func(c *Config) any { return c.HostName }, "mx1.example.com"},
		{"host-name mx-1.example.com", func(c *Config) any { return c.HostID }, "mx1"},
		{"host-name mx1.example.com\nhost-id Relay7", func(c *Config) any { return c.HostID }, "Relay7"},
		{"smtp-listener 0.0.0.0:25", func(c *Config) any { return c.Listeners },
			[]Listener{{Addr: netip.MustParseAddrPort("0.0.0.0:25")}}},
		{"smtp-listener [::1]:25\nsmtp-listener 127.0.0.1:0", func(c *Config) any { return c.Listeners },
			[]Listener{{Addr: netip.MustParseAddrPort("[::1]:25")}, {Addr: netip.MustParseAddrPort("127.0.0.1:0")}}},
		{"smtp-listener 127.0.0.1:465 TLS\ntls-certificate /c.pem\ntls-key /k.pem", func(c *Config) any { return c.Listeners },
			[]Listener{{Addr: netip.MustParseAddrPort("127.0.0.1:465"), TLS: true}}},
		{"", func(c *Config) any { return c.Listeners },
			[]Listener{{Addr: netip.MustParseAddrPort("127.0.0.1:2525")}}},
		{"spool-dir /var/spool/smta", func(c *Config) any { return c.SpoolDir }, "/var/spool/smta"},
		{"spool-dir relative/dir", func(c *Config) any { return c.SpoolDir }, "relative/dir"},
		{"log-dir /var/log/my logs", func(c *Config) any { return c.LogDir }, "/var/log/my logs"},
		{"max-message-size 10M", func(c *Config) any { return c.MaxMessageSize }, int64(10 << 20)},
		{"max-message-size 65536", func(c *Config) any { return c.MaxMessageSize }, int64(65536)},
		{"max-recipients 1000", func(c *Config) any { return c.MaxRecipients }, 1000},
		{"max-errors 3", func(c *Config) any { return c.MaxErrors }, 3},
		{"dns-server 127.0.0.1:5353\ndns-server [::1]:53", func(c *Config) any { return c.DNSServers },
			[]netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:5353"), netip.MustParseAddrPort("[::1]:53")}},
		{"inbound-mode io_uring", func(c *Config) any { return c.InboundMode }, "io_uring"},
		{"inbound-mode EPOLL", func(c *Config) any { return c.InboundMode }, "epoll"},
		{"", func(c *Config) any { return c.InboundMode }, ""},
		{"inbound-workers 0", func(c *Config) any { return c.InboundWorkers }, 0},
		{"inbound-workers 8", func(c *Config) any { return c.InboundWorkers }, 8},
		{"inbound-cpu-affinity yes", func(c *Config) any { return c.InboundCPUAffinity }, true},
		{"inbound-cpu-affinity no", func(c *Config) any { return c.InboundCPUAffinity }, false},
		{"max-connections 100000", func(c *Config) any { return c.MaxConnections }, 100000},
		{"max-connections-per-ip 50", func(c *Config) any { return c.MaxConnectionsPerIP }, 50},
		{"smtp-command-timeout 2m", func(c *Config) any { return c.SMTPCommandTimeout }, 2 * time.Minute},
		{"smtp-data-timeout 1m30s", func(c *Config) any { return c.SMTPDataTimeout }, 90 * time.Second},
		{"tls-certificate /etc/smta/cert.pem\ntls-key /etc/smta/key.pem", func(c *Config) any { return c.TLSCertificate + " " + c.TLSKey },
			"/etc/smta/cert.pem /etc/smta/key.pem"},
		{"acct-sync 250ms", func(c *Config) any { return c.AcctSync }, 250 * time.Millisecond},
		{"segment-size 128M", func(c *Config) any { return c.SegmentSize }, int64(128 << 20)},
		{"http-mgmt-listener 127.0.0.1:8025", func(c *Config) any { return c.HTTPMgmtListener },
			netip.MustParseAddrPort("127.0.0.1:8025")},
		{"", func(c *Config) any { return c.HTTPMgmtListener.IsValid() }, false},
		// Comments, case and layout.
		{"# comment\n\tMAX-ERRORS 4   # trailing comment\r\n", func(c *Config) any { return c.MaxErrors }, 4},
		{"spool-dir /srv/a#b", func(c *Config) any { return c.SpoolDir }, "/srv/a#b"},
	}
	for _, tt := range tests {
		c := mustParse(t, tt.in)
		if got := tt.get(c); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("Parse(%q): got %v, want %v", tt.in, got, tt.want)
		}
	}
}

func TestBuiltinDefaults(t *testing.T) {
	c := mustParse(t, "")
	got := []any{c.SpoolDir, c.LogDir, c.MaxMessageSize, c.MaxRecipients, c.MaxErrors,
		c.SMTPCommandTimeout, c.SMTPDataTimeout, c.AcctSync, c.SegmentSize, c.InboundWorkers,
		c.MaxConnections, c.MaxConnectionsPerIP, len(c.Sources), len(c.DNSServers)}
	want := []any{"./var/spool", "./var/log", int64(50 << 20), 100, 10,
		5 * time.Minute, 3 * time.Minute, time.Second, int64(64 << 20), 0,
		0, 0, 0, 0}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Parse(\"\") defaults = %v, want %v", got, want)
	}
	if c.HostName == "" || !validHostName(c.HostName) {
		t.Errorf("default HostName = %q, want a valid host name", c.HostName)
	}
	if !validHostID(c.HostID) {
		t.Errorf("default HostID = %q, want [A-Za-z0-9]{1,32}", c.HostID)
	}
	if c.File != "t.conf" {
		t.Errorf("File = %q, want t.conf", c.File)
	}
}

// TestDirectiveErrors checks the exact text of each error, including the
// file:line: prefix.
func TestDirectiveErrors(t *testing.T) {
	tests := []struct {
		in   string
		want string
	}{
		// Unknown, missing, extra, duplicate, wrong place.
		{"bogus 1", `t.conf:1: bogus: unknown directive`},
		{"max-mesage-size 10M", `t.conf:1: max-mesage-size: unknown directive (did you mean max-message-size?)`},
		{"smtp-listner 127.0.0.1:25", `t.conf:1: smtp-listner: unknown directive (did you mean smtp-listener?)`},
		{"\n\nspool-dir", `t.conf:3: spool-dir: missing value (want spool-dir PATH)`},
		{"max-errors 1 2", `t.conf:1: max-errors: unexpected argument "2" (want max-errors N)`},
		{"spool-dir /a\nspool-dir /b", `t.conf:2: spool-dir: duplicate directive (first at line 1)`},
		{"route 127.0.0.1:25", `t.conf:1: route: not allowed at top level (allowed in <domain>)`},
		{"<source 0/0>\nmax-smtp-out 3\n</source>", `t.conf:2: max-smtp-out: not allowed in <source> (allowed in <domain>)`},
		{"<domain *>\nspool-dir /x\n</domain>", `t.conf:2: spool-dir: not allowed in <domain> (allowed at top level)`},
		{"<domain *>\nmax-connections 3\n</domain>", `t.conf:2: max-connections: not allowed in <domain> (allowed at top level, in <source>)`},

		// Global values.
		{"host-name bad_name!", `t.conf:1: host-name: invalid host name "bad_name!"`},
		{"host-name a..b", `t.conf:1: host-name: invalid host name "a..b"`},
		{"host-id mx-1", `t.conf:1: host-id: invalid host id "mx-1": want 1 to 32 letters and digits`},
		{"host-id " + strings.Repeat("a", 33), `t.conf:1: host-id: invalid host id "` + strings.Repeat("a", 33) + `": want 1 to 32 letters and digits`},
		{"smtp-listener x:y", `t.conf:1: smtp-listener: invalid address "x:y": want IP:PORT, with IPv6 in brackets ([::1]:25)`},
		{"smtp-listener ::1:25", `t.conf:1: smtp-listener: invalid address "::1:25": want IP:PORT, with IPv6 in brackets ([::1]:25)`},
		{"smtp-listener localhost:25", `t.conf:1: smtp-listener: invalid address "localhost:25": want IP:PORT, with IPv6 in brackets ([::1]:25)`},
		{"smtp-listener 127.0.0.1", `t.conf:1: smtp-listener: invalid address "127.0.0.1": want IP:PORT, with IPv6 in brackets ([::1]:25)`},
		{"smtp-listener 127.0.0.1:25 ssl", `t.conf:1: smtp-listener: unexpected argument "ssl": want tls or nothing`},
		{"smtp-listener 127.0.0.1:25\nsmtp-listener 127.0.0.1:25", `t.conf:2: smtp-listener: duplicate address 127.0.0.1:25 (first at line 1)`},
		{"smtp-listener 127.0.0.1:465 tls", `t.conf:1: smtp-listener: tls listener requires tls-certificate and tls-key`},
		{"max-message-size 10X", `t.conf:1: max-message-size: invalid size "10X": want octets or a number with k, M or G (1024-based)`},
		{"max-message-size 1k", `t.conf:1: max-message-size: size "1k" below the minimum of 65536 octets`},
		{"max-recipients 0", `t.conf:1: max-recipients: 0 out of range [1, 1000000]`},
		{"max-errors -1", `t.conf:1: max-errors: -1 out of range [1, 10000000]`},
		{"max-errors ten", `t.conf:1: max-errors: invalid number "ten"`},
		{"dns-server 127.0.0.1", `t.conf:1: dns-server: invalid address "127.0.0.1": want IP:PORT, with IPv6 in brackets ([::1]:25)`},
		{"dns-server 127.0.0.1:0", `t.conf:1: dns-server: invalid address "127.0.0.1:0": port 0 is not allowed`},
		{"inbound-mode kqueue", `t.conf:1: inbound-mode: invalid mode "kqueue": want epoll, io_uring or goroutine`},
		{"inbound-workers 100000", `t.conf:1: inbound-workers: 100000 out of range [0, 4096]`},
		{"max-connections +5", `t.conf:1: max-connections: invalid number "+5"`},
		{"smtp-command-timeout 5", `t.conf:1: smtp-command-timeout: invalid duration "5": missing unit (ms, s, m, h or d)`},
		{"smtp-data-timeout 10ms", `t.conf:1: smtp-data-timeout: duration "10ms" below the minimum of 1s`},
		{"tls-certificate /c.pem", `t.conf:1: tls-certificate: tls-key is missing (set both or neither)`},
		{"\ntls-key /k.pem", `t.conf:2: tls-key: tls-certificate is missing (set both or neither)`},
		{"acct-sync 1w", `t.conf:1: acct-sync: invalid duration "1w": unknown unit "w" (want ms, s, m, h or d)`},
		{"segment-size 512k", `t.conf:1: segment-size: size "512k" below the minimum of 1048576 octets`},
		{"http-mgmt-listener :8080", `t.conf:1: http-mgmt-listener: invalid address ":8080": want IP:PORT, with IPv6 in brackets ([::1]:25)`},

		// Source blocks.
		{"<source 10.0.0.0/33>\n</source>", `t.conf:1: <source>: invalid prefix "10.0.0.0/33": want an IP address, CIDR prefix, 0/0 or ::/0`},
		{"<source host.example>\n</source>", `t.conf:1: <source>: invalid address "host.example": want an IP address, CIDR prefix, 0/0 or ::/0`},
		{"<source>\n</source>", `t.conf:1: <source>: missing argument (want <source VALUE>)`},
		{"<source 1.2.3.4 5.6.7.8>\n</source>", `t.conf:1: <source>: unexpected argument "5.6.7.8" (want <source VALUE>)`},
		{"<source 10.1.2.3/8>\n</source>\n<source 10.0.0.0/8>\n</source>", `t.conf:3: <source>: duplicate block for 10.0.0.0/8 (first at line 1)`},
		{"<source 0/0>\n</source>\n<source ::/0>\n</source>", `t.conf:3: <source>: duplicate block for ::/0 (first at line 1)`},
		{"<source 0/0>\nalways-allow-relaying maybe\n</source>", `t.conf:2: always-allow-relaying: invalid boolean "maybe": want yes or no`},
		{"<source 0/0>\nhide-message-source\n</source>", `t.conf:2: hide-message-source: missing value (want hide-message-source yes|no)`},
		{"<source 0/0>\nmax-connections x\n</source>", `t.conf:2: max-connections: invalid number "x"`},
		{"<source 0/0>\n<domain *>\n</domain>\n</source>", `t.conf:2: <domain>: not allowed inside <source> (line 1)`},

		// Domain blocks.
		{"<domain bad..name>\n</domain>", `t.conf:1: <domain>: invalid domain "bad..name": want a domain name, *.domain or *`},
		{"<domain Example.COM>\n</domain>\n<domain example.com.>\n</domain>", `t.conf:3: <domain>: duplicate block for example.com (first at line 1)`},
		{"<domain *>\nroute x:y\n</domain>", `t.conf:2: route: invalid route "x:y": invalid port "y"`},
		{"<domain *>\nroute 2001:db8::1:25\n</domain>", `t.conf:2: route: invalid route "2001:db8::1:25": write an IPv6 address in brackets ([2001:db8::1]:25)`},
		{"<domain *>\nroute [127.0.0.1:25\n</domain>", `t.conf:2: route: invalid route "[127.0.0.1:25": missing ]`},
		{"<domain *>\nroute bad!host:25\n</domain>", `t.conf:2: route: invalid route "bad!host:25": invalid host "bad!host": want a host name or IP address`},
		{"<domain *>\nroute host:0\n</domain>", `t.conf:2: route: invalid route "host:0": invalid port "0"`},
		{"<domain *>\nretry-after 0\n</domain>", `t.conf:2: retry-after: duration "0" below the minimum of 1s`},
		{"<domain *>\nbounce-after 4x\n</domain>", `t.conf:2: bounce-after: invalid duration "4x": unknown unit "x" (want ms, s, m, h or d)`},
		{"<domain *>\nmax-smtp-out 0\n</domain>", `t.conf:2: max-smtp-out: 0 out of range [1, 10000000]`},
		{"<domain *>\nmax-msg-per-connection 0\n</domain>", `t.conf:2: max-msg-per-connection: 0 out of range [1, 10000000]`},
		{"<domain *>\nuse-starttls sometimes\n</domain>", `t.conf:2: use-starttls: invalid boolean "sometimes": want yes or no`},
		{"<domain *>\ndsn 1\n</domain>", `t.conf:2: dsn: invalid boolean "1": want yes or no`},
		{"<domain *>\ndsn yes\ndsn no\n</domain>", `t.conf:3: dsn: duplicate directive (first at line 2)`},

		// Accounting files and webhooks.
		{"<acct-file /a.csv>\nrecords r,x\n</acct-file>", `t.conf:2: records: invalid record type "x": want a comma-separated list of r, d, b, t, e, rj, f`},
		{"<acct-file /a.csv>\nmax-size huge\n</acct-file>", `t.conf:2: max-size: invalid size "huge": want octets or a number with k, M or G (1024-based)`},
		{"<acct-file /a.csv>\nrotate-interval 10s\n</acct-file>", `t.conf:2: rotate-interval: duration "10s" below the minimum of 1m0s`},
		{"<acct-file /a.csv>\nkeep -1\n</acct-file>", `t.conf:2: keep: -1 out of range [0, 10000000]`},
		{"<acct-file /a.csv>\ncompress gzip\n</acct-file>", `t.conf:2: compress: invalid boolean "gzip": want yes or no`},
		{"<acct-file /a.csv>\n</acct-file>\n<acct-file /a.csv>\n</acct-file>", `t.conf:3: <acct-file>: duplicate block for /a.csv (first at line 1)`},
		{"<webhook ftp://127.0.0.1/x>\n</webhook>", `t.conf:1: <webhook>: invalid URL "ftp://127.0.0.1/x": want an http or https URL`},
		{"<webhook http:///x>\n</webhook>", `t.conf:1: <webhook>: invalid URL "http:///x": missing host`},
		{"<webhook 127.0.0.1/x>\n</webhook>", `t.conf:1: <webhook>: invalid URL "127.0.0.1/x": want an http or https URL`},
		{"<webhook http://127.0.0.1/x>\nbatch-size 0\n</webhook>", `t.conf:2: batch-size: 0 out of range [1, 10000000]`},
		{"<webhook http://127.0.0.1/x>\nmax-delay soon\n</webhook>", `t.conf:2: max-delay: invalid duration "soon": want a number and a unit such as 30s, 10m, 4d12h`},
		{"<webhook http://127.0.0.1/x>\ntimeout 0\n</webhook>", `t.conf:2: timeout: duration "0" below the minimum of 1ms`},
		{"<webhook http://127.0.0.1/x>\nheader X-Key\n</webhook>", `t.conf:2: header: missing value (want header NAME VALUE)`},
		{"<webhook http://127.0.0.1/x>\nheader Bad:Name v\n</webhook>", `t.conf:2: header: invalid header name "Bad:Name"`},
		{"<webhook http://127.0.0.1/x>\nrecords\n</webhook>", `t.conf:2: records: missing value (want records TYPE,TYPE...)`},
		{"<webhook http://127.0.0.1/x>\nrecords , ,\n</webhook>", `t.conf:2: records: missing record types: want a comma-separated list of r, d, b, t, e, rj, f`},

		// Raw blocks.
		{"<virtual-mta a/b>\n</virtual-mta>", `t.conf:1: <virtual-mta>: invalid name "a/b": want letters, digits, '.', '-' and '_'`},
		{"<virtual-mta v1>\n</virtual-mta>\n<virtual-mta v1>\n</virtual-mta>", `t.conf:3: <virtual-mta>: duplicate block for v1 (first at line 1)`},
		{"<virtual-mta v1>\n<source 0/0>\n</source>\n</virtual-mta>", `t.conf:2: <source>: not allowed inside <virtual-mta> (line 1)`},
		{"<virtual-mta-pool p>\nvirtual-mta missing\n</virtual-mta-pool>", `t.conf:2: virtual-mta: no <virtual-mta missing> block`},
		{"<virtual-mta-pool p>\nsmtp-source-host 1.2.3.4 a\n</virtual-mta-pool>", `t.conf:2: smtp-source-host: not allowed in <virtual-mta-pool> (want virtual-mta NAME)`},
		{"<virtual-mta v1>\n</virtual-mta>\n<virtual-mta-pool p>\nvirtual-mta v1 v2\n</virtual-mta-pool>", `t.conf:4: virtual-mta: want exactly one name (virtual-mta NAME)`},
		{"<smtp-pattern-list p>\n<domain *>\n</domain>\n</smtp-pattern-list>", `t.conf:2: <domain>: not allowed inside <smtp-pattern-list> (line 1)`},

		// Block structure.
		{"<bogus x>\n</bogus>", `t.conf:1: <bogus>: unknown block`},
		{"<domain *>\nretry-after 1m", `t.conf:1: <domain>: block not closed (missing </domain>)`},
		{"</domain>", `t.conf:1: </domain>: no open <domain> block`},
		{"<domain *>\n</source>\n</domain>", `t.conf:2: </source>: no open <source> block (inside <domain> from line 1)`},
		{"<virtual-mta v>\n<domain *>\n</virtual-mta>", `t.conf:2: <domain>: block not closed (missing </domain> before </virtual-mta> at line 3)`},
		{"<domain *", `t.conf:1: malformed block tag "<domain *": want <kind argument>`},
		{"<>", `t.conf:1: malformed block tag "<>": want <kind argument>`},
		{"<domain *>\n</domain", `t.conf:1: <domain>: block not closed (missing </domain>)` + "\n" + `t.conf:2: malformed closing tag "</domain": want </kind>`},
		{"max-errors\x00 1", `t.conf:1: invalid control character '\x00'`},
		{"max-errors \xff", `t.conf:1: invalid UTF-8`},
	}
	for _, tt := range tests {
		_, err := Parse("t.conf", []byte(tt.in))
		if err == nil {
			t.Errorf("Parse(%q) error = nil, want %q", tt.in, tt.want)
			continue
		}
		if got := err.Error(); got != tt.want {
			t.Errorf("Parse(%q) error =\n%s\nwant\n%s", tt.in, got, tt.want)
		}
	}
}

// TestErrorsCollected checks that Parse reports every problem, sorted by
// line, and stops after maxErrors.
func TestErrorsCollected(t *testing.T) {
	in := "<domain *>\nretry-after x\n</domain>\nmax-errors x\nbogus\n"
	want := "t.conf:2: retry-after: invalid duration \"x\": want a number and a unit such as 30s, 10m, 4d12h\n" +
		"t.conf:4: max-errors: invalid number \"x\"\n" +
		"t.conf:5: bogus: unknown directive"
	_, err := Parse("t.conf", []byte(in))
	if err == nil || err.Error() != want {
		t.Errorf("Parse(%q) error =\n%v\nwant\n%s", in, err, want)
	}

	in = strings.Repeat("bogus\n", 30)
	_, err = Parse("t.conf", []byte(in))
	list, ok := err.(ErrorList)
	if !ok {
		t.Fatalf("Parse(30 bad lines) error type %T, want ErrorList", err)
	}
	if len(list) != maxErrors+1 {
		t.Errorf("Parse(30 bad lines) reported %d errors, want %d", len(list), maxErrors+1)
	}
	if got, want := list[len(list)-1].Error(), "t.conf:21: too many errors, stopping"; got != want {
		t.Errorf("last error = %q, want %q", got, want)
	}
}

func TestSourceBlocks(t *testing.T) {
	c := mustParse(t, `
<source 0/0>
    always-allow-relaying no
</source>
<source 10.0.0.0/8>
    always-allow-relaying yes
    max-connections 5
</source>
<source 10.1.0.0/16>
    hide-message-source on
</source>
<source 10.1.2.3>
    always-allow-relaying yes
</source>
<source 2001:db8::/32>
    always-allow-relaying yes
</source>
<source 2001:db8:1::/48>
    max-connections 2
</source>
<source ::1>
    always-allow-relaying true
</source>
`)
	tests := []struct {
		ip       string
		prefix   string
		relay    bool
		hide     bool
		maxConns int
	}{
		{"10.9.9.9", "10.0.0.0/8", true, false, 5},
		{"10.1.9.9", "10.1.0.0/16", false, true, 0}, // no inheritance from 10.0.0.0/8
		{"10.1.2.3", "10.1.2.3/32", true, false, 0},
		{"::ffff:10.1.2.3", "10.1.2.3/32", true, false, 0},
		{"192.0.2.1", "0.0.0.0/0", false, false, 0},
		{"2001:db8:2::1", "2001:db8::/32", true, false, 0},
		{"2001:db8:1::1", "2001:db8:1::/48", false, false, 2},
		{"::1", "::1/128", true, false, 0},
		{"fe80::1%eth0", "::/0", false, false, 0},
		{"2002::1", "::/0", false, false, 0},
	}
	for _, tt := range tests {
		s := c.Source(netip.MustParseAddr(tt.ip))
		got := []any{s.Prefix.String(), s.AlwaysAllowRelaying, s.HideMessageSource, s.MaxConnections}
		want := []any{tt.prefix, tt.relay, tt.hide, tt.maxConns}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("Source(%s) = %v, want %v", tt.ip, got, want)
		}
	}

	for i := 1; i < len(c.Sources); i++ {
		if c.Sources[i-1].Prefix.Bits() < c.Sources[i].Prefix.Bits() {
			t.Errorf("Sources[%d] = %s before longer prefix %s", i-1, c.Sources[i-1].Prefix, c.Sources[i].Prefix)
		}
	}
}

func TestSourceFallback(t *testing.T) {
	c := mustParse(t, "<source 127.0.0.0/8>\nalways-allow-relaying yes\n</source>")
	for _, ip := range []string{"192.0.2.1", "::1", "2001:db8::1"} {
		s := c.Source(netip.MustParseAddr(ip))
		if s == nil || s.AlwaysAllowRelaying || s.Prefix.IsValid() {
			t.Errorf("Source(%s) = %+v, want the fallback denying relaying", ip, s)
		}
	}
	if s := c.Source(netip.Addr{}); s == nil || s.AlwaysAllowRelaying {
		t.Errorf("Source(zero Addr) = %+v, want the fallback denying relaying", s)
	}
	if s := c.Source(netip.MustParseAddr("127.0.0.1")); !s.AlwaysAllowRelaying {
		t.Errorf("Source(127.0.0.1).AlwaysAllowRelaying = false, want true")
	}
}

func TestDomainInheritance(t *testing.T) {
	c := mustParse(t, `
<domain example.com>
    max-smtp-out 5
</domain>
<domain *>
    retry-after 30m
    use-starttls no
    route [127.0.0.1]:2526
</domain>
<domain *.example.org>
    bounce-after 1d
    route relay.example.net
</domain>
<domain Big.Example>
    dsn no
    use-starttls yes
    max-msg-per-connection 1000
</domain>
`)
	star := Domain{Name: "*", Line: 5, Route: Route{Host: "127.0.0.1", Port: 2526, Literal: true},
		RetryAfter: 30 * time.Minute, BounceAfter: 108 * time.Hour, MaxSMTPOut: 20,
		MaxMsgPerConnection: 100, UseStartTLS: false, DSN: true}

	exampleCom := star
	exampleCom.Name, exampleCom.Line, exampleCom.MaxSMTPOut = "example.com", 2, 5

	wildcard := star
	wildcard.Name, wildcard.Line, wildcard.BounceAfter = "*.example.org", 10, 24*time.Hour
	wildcard.Route = Route{Host: "relay.example.net", Port: 25}

	big := star
	big.Name, big.Line, big.DSN, big.UseStartTLS, big.MaxMsgPerConnection = "big.example", 14, false, true, 1000

	tests := []struct {
		name string
		want Domain
	}{
		{"example.com", exampleCom},
		{"EXAMPLE.com.", exampleCom},
		{"sub.example.com", star}, // no *.example.com block
		{"example.org", star},     // a wildcard does not cover its parent
		{"a.example.org", wildcard},
		{"a.b.example.org", wildcard},
		{"big.example", big},
		{"other.test", star},
		{"", star},
	}
	for _, tt := range tests {
		if got := c.Domain(tt.name); !reflect.DeepEqual(*got, tt.want) {
			t.Errorf("Domain(%q) = %+v, want %+v", tt.name, *got, tt.want)
		}
	}
}

func TestDomainBuiltins(t *testing.T) {
	c := mustParse(t, "<domain example.com>\nroute mx.example.net:2525\n</domain>")
	want := Domain{Name: "example.com", Line: 1, Route: Route{Host: "mx.example.net", Port: 2525},
		RetryAfter: 10 * time.Minute, BounceAfter: 4*24*time.Hour + 12*time.Hour,
		MaxSMTPOut: 20, MaxMsgPerConnection: 100, UseStartTLS: true, DSN: true}
	if got := c.Domain("example.com"); !reflect.DeepEqual(*got, want) {
		t.Errorf("Domain(example.com) = %+v, want %+v", *got, want)
	}
	if got := c.Domain("other.test"); got.Name != "*" || got.Line != 0 || !got.Route.IsZero() {
		t.Errorf("Domain(other.test) = %+v, want the built-in defaults", *got)
	}

	var empty Config
	if got := empty.Domain("x.test"); got == nil || got.RetryAfter != 10*time.Minute {
		t.Errorf("zero Config.Domain(x.test) = %+v, want the built-in defaults", got)
	}
}

func TestRoutes(t *testing.T) {
	tests := []struct {
		in   string
		want Route
		str  string
	}{
		{"mx.example.net", Route{Host: "mx.example.net", Port: 25}, "mx.example.net:25"},
		{"mx.example.net:587", Route{Host: "mx.example.net", Port: 587}, "mx.example.net:587"},
		{"[mx.example.net]:25", Route{Host: "mx.example.net", Port: 25, Literal: true}, "[mx.example.net]:25"},
		{"192.0.2.1:2525", Route{Host: "192.0.2.1", Port: 2525, Literal: true}, "[192.0.2.1]:2525"},
		{"[192.0.2.1]", Route{Host: "192.0.2.1", Port: 25, Literal: true}, "[192.0.2.1]:25"},
		{"[2001:db8::1]:26", Route{Host: "2001:db8::1", Port: 26, Literal: true}, "[2001:db8::1]:26"},
		{"[::ffff:192.0.2.1]:25", Route{Host: "192.0.2.1", Port: 25, Literal: true}, "[192.0.2.1]:25"},
	}
	for _, tt := range tests {
		got, err := parseRoute(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("parseRoute(%q) = %+v, %v, want %+v", tt.in, got, err, tt.want)
			continue
		}
		if got.String() != tt.str {
			t.Errorf("parseRoute(%q).String() = %q, want %q", tt.in, got.String(), tt.str)
		}
	}
	for _, in := range []string{"", ":25", "[]:25", "[1.2.3.4]x", "host:99999", "host:-1"} {
		if r, err := parseRoute(in); err == nil {
			t.Errorf("parseRoute(%q) = %+v, want an error", in, r)
		}
	}
}

func TestAcctFileBlock(t *testing.T) {
	c := mustParse(t, `
<acct-file /var/log/smta/acct.csv>
    records r, d,b rj
    max-size 100M
    rotate-interval 1h
    keep 7
    compress yes
</acct-file>
<acct-file /var/log/smta/all files.csv>
</acct-file>
`)
	if len(c.AcctFiles) != 2 {
		t.Fatalf("AcctFiles has %d entries, want 2", len(c.AcctFiles))
	}
	want := AcctFile{Path: "/var/log/smta/acct.csv", Line: 2, Records: []string{"r", "d", "b", "rj"},
		MaxSize: 100 << 20, RotateInterval: time.Hour, Keep: 7, Compress: true}
	if !reflect.DeepEqual(*c.AcctFiles[0], want) {
		t.Errorf("AcctFiles[0] = %+v, want %+v", *c.AcctFiles[0], want)
	}
	want = AcctFile{Path: "/var/log/smta/all files.csv", Line: 9, Records: AllRecordTypes,
		RotateInterval: 24 * time.Hour, Keep: 30}
	if !reflect.DeepEqual(*c.AcctFiles[1], want) {
		t.Errorf("AcctFiles[1] = %+v, want %+v", *c.AcctFiles[1], want)
	}
}

func TestWebhookBlock(t *testing.T) {
	c := mustParse(t, `
<webhook https://127.0.0.1:8443/hook?x=1#frag>
    records d,b,e
    batch-size 500
    max-delay 0
    timeout 2s
    header Authorization Bearer abc def
    header x-extra one
    header X-Extra two
</webhook>
<webhook http://[::1]:9000/>
</webhook>
`)
	if len(c.Webhooks) != 2 {
		t.Fatalf("Webhooks has %d entries, want 2", len(c.Webhooks))
	}
	want := Webhook{URL: "https://127.0.0.1:8443/hook?x=1#frag", Line: 2, Records: []string{"d", "b", "e"},
		BatchSize: 500, MaxDelay: 0, Timeout: 2 * time.Second,
		Header: http.Header{"Authorization": {"Bearer abc def"}, "X-Extra": {"one", "two"}}}
	if !reflect.DeepEqual(*c.Webhooks[0], want) {
		t.Errorf("Webhooks[0] = %+v, want %+v", *c.Webhooks[0], want)
	}
	want = Webhook{URL: "http://[::1]:9000/", Line: 11, Records: AllRecordTypes,
		BatchSize: 100, MaxDelay: 5 * time.Second, Timeout: 30 * time.Second}
	if !reflect.DeepEqual(*c.Webhooks[1], want) {
		t.Errorf("Webhooks[1] = %+v, want %+v", *c.Webhooks[1], want)
	}
}

func TestRawBlocks(t *testing.T) {
	c := mustParse(t, `
<virtual-mta-pool pool1>
    virtual-mta vmta-1
    virtual-mta vmta.2
</virtual-mta-pool>
<virtual-mta vmta-1>
    smtp-source-host 192.0.2.10 mta1.example.com
    <domain *>
        max-smtp-out 5
    </domain>
</virtual-mta>
<virtual-mta vmta.2>
    smtp-source-host 192.0.2.11 mta2.example.com
</virtual-mta>
<smtp-pattern-list blocks>
    reply /too many connections/ mode=backoff
</smtp-pattern-list>
`)
	v := c.VirtualMTAs["vmta-1"]
	if v == nil {
		t.Fatalf("VirtualMTAs[vmta-1] missing, have %v", c.VirtualMTAs)
	}
	want := &RawBlock{Kind: "virtual-mta", Name: "vmta-1", Line: 6,
		Directives: []Directive{{Name: "smtp-source-host", Args: []string{"192.0.2.10", "mta1.example.com"},
			Value: "192.0.2.10 mta1.example.com", Line: 7}},
		Blocks: []*RawBlock{{Kind: "domain", Name: "*", Line: 8,
			Directives: []Directive{{Name: "max-smtp-out", Args: []string{"5"}, Value: "5", Line: 9}}}}}
	if !reflect.DeepEqual(v, want) {
		t.Errorf("VirtualMTAs[vmta-1] = %+v, want %+v", v, want)
	}
	if p := c.VirtualMTAPools["pool1"]; p == nil || len(p.Directives) != 2 || p.Directives[1].Args[0] != "vmta.2" {
		t.Errorf("VirtualMTAPools[pool1] = %+v, want members vmta-1 and vmta.2", p)
	}
	l := c.SMTPPatternLists["blocks"]
	if l == nil || len(l.Directives) != 1 || l.Directives[0].Value != "/too many connections/ mode=backoff" {
		t.Errorf("SMTPPatternLists[blocks] = %+v, want one reply directive", l)
	}
}

func TestLoad(t *testing.T) {
	path := t.TempDir() + "/smta.conf"
	if err := writeFile(path, "max-errors 7\nbogus\n"); err != nil {
		t.Fatal(err)
	}
	_, err := Load(path)
	if want := path + ":2: bogus: unknown directive"; err == nil || err.Error() != want {
		t.Errorf("Load(%s) error = %v, want %q", path, err, want)
	}

	if err := writeFile(path, "max-errors 7\n"); err != nil {
		t.Fatal(err)
	}
	c, err := Load(path)
	if err != nil || c.MaxErrors != 7 || c.File != path {
		t.Errorf("Load(%s) = %+v, %v, want MaxErrors 7 and File set", path, c, err)
	}

	if _, err := Load(path + ".missing"); err == nil || !strings.HasPrefix(err.Error(), "config: open ") {
		t.Errorf("Load(missing file) error = %v, want config: open ...", err)
	}
}

func TestErrorListUnwrap(t *testing.T) {
	_, err := Parse("t.conf", []byte("max-errors x\n"))
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("errors.As(%v, *Error) = false, want true", err)
	}
	want := Error{File: "t.conf", Line: 1, Directive: "max-errors", Msg: `invalid number "x"`}
	if *e != want {
		t.Errorf("errors.As found %+v, want %+v", *e, want)
	}
}
