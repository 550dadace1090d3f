package config

import (
	"bytes"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"
)

func writeFile(path, text string) error {
	return os.WriteFile(path, []byte(text), 0o644)
}

// TestDefaultConfig checks the values the embedded default documents.
func TestDefaultConfig(t *testing.T) {
	c := Default()
	if c.File != "default.conf" {
		t.Errorf("File = %q, want default.conf", c.File)
	}
	want := []Listener{{Addr: netip.MustParseAddrPort("127.0.0.1:2525")}}
	if fmt.Sprint(c.Listeners) != fmt.Sprint(want) {
		t.Errorf("Listeners = %v, want %v", c.Listeners, want)
	}
	if c.SpoolDir != "./var/spool" || c.LogDir != "./var/log" {
		t.Errorf("SpoolDir, LogDir = %q, %q, want ./var/spool, ./var/log", c.SpoolDir, c.LogDir)
	}
	if c.InboundMode != "" {
		t.Errorf("InboundMode = %q, want unset", c.InboundMode)
	}
	if len(c.DNSServers) != 0 {
		t.Errorf("DNSServers = %v, want none", c.DNSServers)
	}

	relay := []struct {
		ip   string
		want bool
	}{
		{"127.0.0.1", true},
		{"127.8.9.10", true},
		{"::1", true},
		{"::ffff:127.0.0.1", true},
		{"192.0.2.1", false},
		{"10.0.0.1", false},
		{"2001:db8::1", false},
		{"::2", false},
	}
	for _, tt := range relay {
		if got := c.Source(netip.MustParseAddr(tt.ip)).AlwaysAllowRelaying; got != tt.want {
			t.Errorf("Default().Source(%s).AlwaysAllowRelaying = %v, want %v", tt.ip, got, tt.want)
		}
	}

	d := c.Domain("example.com")
	if d.Name != "*" || !d.Route.IsZero() || d.RetryAfter != 10*time.Minute || d.BounceAfter != 108*time.Hour ||
		d.MaxSMTPOut != 20 || d.MaxMsgPerConnection != 100 || !d.UseStartTLS || !d.DSN {
		t.Errorf("Default().Domain(example.com) = %+v, want the documented defaults", *d)
	}

	if !bytes.Equal(DefaultText(), defaultConf) {
		t.Errorf("DefaultText() differs from the embedded default.conf")
	}
	DefaultText()[0] = 'X'
	if defaultConf[0] == 'X' {
		t.Errorf("DefaultText() returned the embedded bytes, want a copy")
	}
}

// TestDefaultExamples checks that the commented examples in default.conf
// parse once uncommented, so they stay valid as the syntax changes.
func TestDefaultExamples(t *testing.T) {
	var b strings.Builder
	for line := range strings.Lines(string(defaultConf)) {
		trimmed := strings.TrimSpace(line)
		for _, prefix := range []string{"# dns-server"} {
			if strings.HasPrefix(trimmed, prefix) {
				line = strings.TrimPrefix(trimmed, "# ") + "\n"
			}
		}
		b.WriteString(line)
	}
	c, err := Parse("default.conf", []byte(b.String()))
	if err != nil {
		t.Fatalf("default.conf with examples uncommented:\n%v", err)
	}
	if len(c.DNSServers) != 1 {
		t.Errorf("DNSServers = %v, want the example resolver", c.DNSServers)
	}
	if got := c.Domain("sink.test").Route; got.Host != "127.0.0.1" || got.Port != 2526 || !got.Literal {
		t.Errorf("Domain(sink.test).Route = %+v, want [127.0.0.1]:2526", got)
	}
	if got := c.Domain("example.com").Route; !got.IsZero() {
		t.Errorf("Domain(example.com).Route = %+v, want none (MX resolution)", got)
	}
}

// TestApplianceConfig checks that the production file shipped in the .deb
// parses and holds its documented values.
func TestApplianceConfig(t *testing.T) {
	c, err := Load("../appliance/smta.conf")
	if err != nil {
		t.Fatalf("Load(../appliance/smta.conf):\n%v", err)
	}
	want := []Listener{{Addr: netip.MustParseAddrPort("0.0.0.0:25")}}
	if fmt.Sprint(c.Listeners) != fmt.Sprint(want) {
		t.Errorf("Listeners = %v, want %v", c.Listeners, want)
	}
	if c.SpoolDir != "/var/spool/smta" || c.LogDir != "/var/log/smta" {
		t.Errorf("SpoolDir, LogDir = %q, %q, want /var/spool/smta, /var/log/smta", c.SpoolDir, c.LogDir)
	}
	for _, tt := range []struct {
		ip   string
		want bool
	}{{"127.0.0.1", true}, {"::1", true}, {"192.0.2.1", false}, {"2001:db8::1", false}} {
		if got := c.Source(netip.MustParseAddr(tt.ip)).AlwaysAllowRelaying; got != tt.want {
			t.Errorf("Source(%s).AlwaysAllowRelaying = %v, want %v", tt.ip, got, tt.want)
		}
	}
}

func FuzzParse(f *testing.F) {
	// The embedded default: every block kind it uses, comments, alignment.
	f.Add(string(defaultConf))
	// Every directive, from the reference example.
	if full, err := os.ReadFile("testdata/full.conf"); err == nil {
		f.Add(string(full))
	}
	// Every global directive once.
	f.Add("host-name a.example\nhost-id A1\nsmtp-listener [::1]:25 tls\ntls-certificate c\ntls-key k\n" +
		"max-message-size 1G\ndns-server 127.0.0.1:53\ninbound-mode epoll\nsmtp-data-timeout 4d12h\n")
	// Blocks of every kind, including raw ones with a nested block.
	f.Add("<source 0/0>\nmax-connections 1\n</source>\n<domain *.x>\nroute [::1]:2\n</domain>\n" +
		"<acct-file /a b>\nrecords r,d\n</acct-file>\n<webhook http://127.0.0.1/>\nheader A b c\n</webhook>\n" +
		"<virtual-mta v>\n<domain *>\n</domain>\n</virtual-mta>\n<virtual-mta-pool p>\nvirtual-mta v\n</virtual-mta-pool>\n")
	// Broken structure: unclosed, mismatched and stray tags.
	f.Add("<domain *>\n<source 1.2.3.4>\n</domain>\n</source>\n<>\n</\n<x")
	// Odd bytes: CR, NUL, invalid UTF-8, comment markers inside values.
	f.Add("a\r\n\x00\n\xff\n#\n x#y # z\n<domain #>\n")
	// Numbers at the edges of overflow.
	f.Add("max-message-size 9223372036854775807\nsegment-size 8589934592G\nacct-sync 106751d\n")

	f.Fuzz(func(t *testing.T, text string) {
		c, err := Parse("f.conf", []byte(text))
		if err == nil {
			if c == nil || c.Domain("a.b") == nil || len(c.Listeners) == 0 {
				t.Fatalf("Parse(%q) = %+v without error, want a complete Config", text, c)
			}
			return
		}
		if c != nil {
			t.Fatalf("Parse(%q) returned a Config and an error", text)
		}
		lines := strings.Split(err.Error(), "\n")
		if len(lines) > maxErrors+1 {
			t.Fatalf("Parse(%q) returned %d error lines, want at most %d", text, len(lines), maxErrors+1)
		}
		for _, line := range lines {
			var n int
			if _, scanErr := fmt.Sscanf(line, "f.conf:%d:", &n); scanErr != nil || n < 1 {
				t.Fatalf("Parse(%q) error line %q lacks file:line:", text, line)
			}
		}
	})
}

func BenchmarkParse(b *testing.B) {
	text, err := os.ReadFile("../appliance/smta.conf")
	if err != nil {
		b.Fatal(err)
	}
	for _, file := range []struct {
		name string
		data []byte
	}{{"default", defaultConf}, {"appliance", text}} {
		b.Run("file="+file.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(file.data)))
			for b.Loop() {
				if _, err := Parse(file.name, file.data); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkSource measures the per-connection policy lookup, which runs on
// a shard's event loop and must not allocate.
func BenchmarkSource(b *testing.B) {
	for _, n := range []int{4, 64} {
		var text strings.Builder
		for i := range n {
			fmt.Fprintf(&text, "<source 10.%d.0.0/16>\nalways-allow-relaying yes\n</source>\n", i)
		}
		text.WriteString("<source 0/0>\n</source>\n")
		c, err := Parse("b.conf", []byte(text.String()))
		if err != nil {
			b.Fatal(err)
		}
		ip := netip.MustParseAddr("192.0.2.1") // falls through every block to 0/0
		b.Run(fmt.Sprintf("sources=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if c.Source(ip).AlwaysAllowRelaying {
					b.Fatal("192.0.2.1 may relay")
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "lookups/s")
		})
	}
}

// BenchmarkDomain measures the per-recipient settings lookup, which must not
// allocate for lower-case names.
func BenchmarkDomain(b *testing.B) {
	c, err := Parse("b.conf", []byte("<domain *.example.org>\n</domain>\n<domain example.com>\n</domain>\n"))
	if err != nil {
		b.Fatal(err)
	}
	for _, name := range []string{"example.com", "a.b.example.org", "mail.other.test"} {
		b.Run("domain="+name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if c.Domain(name) == nil {
					b.Fatal("nil Domain")
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "lookups/s")
		})
	}
}
