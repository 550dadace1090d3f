package config

import (
	"fmt"
	"net/netip"
	"reflect"
	"testing"
	"time"
)

// TestFullExample checks every value of testdata/full.conf, which sets
// each directive once to a value other than its default.
func TestFullExample(t *testing.T) {
	c, err := Load("testdata/full.conf")
	if err != nil {
		t.Fatalf("Load(testdata/full.conf):\n%v", err)
	}

	global := []struct {
		name string
		got  any
		want any
	}{
		{"host-name", c.HostName, "mta1.relay.example"},
		{"host-id", c.HostID, "mta1"},
		{"smtp-listener", fmt.Sprint(c.Listeners), "[{0.0.0.0:25 false} {[::]:25 false} {0.0.0.0:465 true}]"},
		{"spool-dir", c.SpoolDir, "/srv/smta/spool"},
		{"log-dir", c.LogDir, "/srv/smta/log"},
		{"max-message-size", c.MaxMessageSize, int64(25 << 20)},
		{"max-recipients", c.MaxRecipients, 500},
		{"max-errors", c.MaxErrors, 5},
		{"dns-server", fmt.Sprint(c.DNSServers), "[192.0.2.53:53 [2001:db8::53]:53]"},
		{"inbound-mode", c.InboundMode, "epoll"},
		{"inbound-workers", c.InboundWorkers, 4},
		{"max-connections", c.MaxConnections, 100000},
		{"max-connections-per-ip", c.MaxConnectionsPerIP, 200},
		{"smtp-command-timeout", c.SMTPCommandTimeout, 2 * time.Minute},
		{"smtp-data-timeout", c.SMTPDataTimeout, 90 * time.Second},
		{"tls-certificate", c.TLSCertificate, "/etc/smta/tls/cert.pem"},
		{"tls-key", c.TLSKey, "/etc/smta/tls/key.pem"},
		{"acct-sync", c.AcctSync, 500 * time.Millisecond},
		{"segment-size", c.SegmentSize, int64(128 << 20)},
		{"http-mgmt-listener", c.HTTPMgmtListener, netip.MustParseAddrPort("127.0.0.1:8025")},
	}
	for _, tt := range global {
		if !reflect.DeepEqual(tt.got, tt.want) {
			t.Errorf("%s = %v, want %v", tt.name, tt.got, tt.want)
		}
	}

	sources := []struct {
		ip   string
		want Source
	}{
		{"198.51.100.7", Source{Prefix: netip.MustParsePrefix("198.51.100.0/24"), Line: 34,
			AlwaysAllowRelaying: true, HideMessageSource: true, MaxConnections: 1000}},
		{"2001:db8:100::7", Source{Prefix: netip.MustParsePrefix("2001:db8:100::/48"), Line: 39, AlwaysAllowRelaying: true}},
		{"203.0.113.1", Source{Prefix: netip.MustParsePrefix("0.0.0.0/0"), Line: 31}},
		{"2001:db8:200::1", Source{Prefix: netip.MustParsePrefix("::/0"), Line: 31}},
	}
	for _, tt := range sources {
		if got := c.Source(netip.MustParseAddr(tt.ip)); *got != tt.want {
			t.Errorf("Source(%s) = %+v, want %+v", tt.ip, *got, tt.want)
		}
	}

	star := Domain{Name: "*", Line: 44, RetryAfter: 15 * time.Minute, BounceAfter: 72 * time.Hour,
		MaxSMTPOut: 10, MaxMsgPerConnection: 50, UseStartTLS: true, DSN: true}
	big := star
	big.Name, big.Line, big.MaxSMTPOut, big.MaxMsgPerConnection = "big-provider.example", 52, 50, 500
	internal := star
	internal.Name, internal.Line, internal.UseStartTLS, internal.DSN = "*.internal.example", 56, false, false
	internal.Route = Route{Host: "192.0.2.25", Port: 2525, Literal: true}
	domains := []struct {
		name string
		want Domain
	}{
		{"gmail.example", star},
		{"big-provider.example", big},
		{"db.internal.example", internal},
		{"internal.example", star},
	}
	for _, tt := range domains {
		if got := c.Domain(tt.name); *got != tt.want {
			t.Errorf("Domain(%s) = %+v, want %+v", tt.name, *got, tt.want)
		}
	}

	if len(c.AcctFiles) != 1 {
		t.Fatalf("AcctFiles has %d entries, want 1", len(c.AcctFiles))
	}
	wantAcct := AcctFile{Path: "/srv/smta/log/bounces.csv", Line: 62, Records: []string{"b", "rj"},
		MaxSize: 1 << 30, RotateInterval: 24 * time.Hour, Keep: 90, Compress: true}
	if !reflect.DeepEqual(*c.AcctFiles[0], wantAcct) {
		t.Errorf("AcctFiles[0] = %+v, want %+v", *c.AcctFiles[0], wantAcct)
	}

	if len(c.Webhooks) != 1 {
		t.Fatalf("Webhooks has %d entries, want 1", len(c.Webhooks))
	}
	w := c.Webhooks[0]
	if w.URL != "https://hooks.example/smta?source=mta1" || w.Line != 70 || fmt.Sprint(w.Records) != "[d b e]" ||
		w.BatchSize != 250 || w.MaxDelay != 2*time.Second || w.Timeout != 10*time.Second ||
		w.Header.Get("Authorization") != "Bearer not-a-real-token" {
		t.Errorf("Webhooks[0] = %+v, want the values of testdata/full.conf", *w)
	}

	if len(c.VirtualMTAs) != 2 || len(c.VirtualMTAs["vmta1"].Blocks) != 1 {
		t.Errorf("VirtualMTAs = %v, want vmta1 with one nested block and vmta2", c.VirtualMTAs)
	}
	if p := c.VirtualMTAPools["pool1"]; p == nil || len(p.Directives) != 2 {
		t.Errorf("VirtualMTAPools[pool1] = %+v, want two members", p)
	}
	if l := c.SMTPPatternLists["backoff-replies"]; l == nil || len(l.Directives) != 1 {
		t.Errorf("SMTPPatternLists[backoff-replies] = %+v, want one reply line", l)
	}
}
