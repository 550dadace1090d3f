package testdns

import (
	"errors"
	"net"
	"testing"
	"time"

	"github.com/miekg/dns"
)

func exchange(t *testing.T, srv *Server, network, name string, qtype uint16) *dns.Msg {
	t.Helper()
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), qtype)
	c := &dns.Client{Net: network, Timeout: 5 * time.Second}
	resp, _, err := c.Exchange(m, srv.Addr())
	if err != nil {
		t.Fatalf("exchange %s %s over %s: %v", name, dns.TypeToString[qtype], network, err)
	}
	return resp
}

func TestServerAnswers(t *testing.T) {
	srv := Start(t)
	srv.AddMX("Example.COM", 10, "mx.example.com")
	srv.AddA("mx.example.com", "127.0.0.1")
	srv.AddAAAA("mx.example.com", "::1")
	srv.AddTXT("example.com", "v=spf1 -all")

	tests := []struct {
		name    string
		qtype   uint16
		rcode   int
		answers int
	}{
		{"example.com", dns.TypeMX, dns.RcodeSuccess, 1},
		{"EXAMPLE.com.", dns.TypeMX, dns.RcodeSuccess, 1},
		{"mx.example.com", dns.TypeA, dns.RcodeSuccess, 1},
		{"mx.example.com", dns.TypeAAAA, dns.RcodeSuccess, 1},
		{"example.com", dns.TypeTXT, dns.RcodeSuccess, 1},
		{"example.com", dns.TypeA, dns.RcodeSuccess, 0}, // NODATA
		{"missing.example.com", dns.TypeA, dns.RcodeNameError, 0},
	}
	for _, network := range []string{"udp", "tcp"} {
		for _, tt := range tests {
			resp := exchange(t, srv, network, tt.name, tt.qtype)
			if resp.Rcode != tt.rcode || len(resp.Answer) != tt.answers {
				t.Errorf("%s %s %s: rcode %s with %d answers, want %s with %d",
					network, tt.name, dns.TypeToString[tt.qtype],
					dns.RcodeToString[resp.Rcode], len(resp.Answer),
					dns.RcodeToString[tt.rcode], tt.answers)
			}
			if !resp.Authoritative {
				t.Errorf("%s %s: AA bit not set", network, tt.name)
			}
		}
	}
	if got, want := srv.Queries(), int64(2*len(tests)); got != want {
		t.Errorf("Queries() = %d, want %d", got, want)
	}
	if got, want := srv.TCPQueries(), int64(len(tests)); got != want {
		t.Errorf("TCPQueries() = %d, want %d", got, want)
	}
}

func TestServerFailureInjection(t *testing.T) {
	srv := Start(t)
	srv.AddMX("example.com", 10, "mx.example.com")
	srv.AddMX("null.example", 10, "mx.null.example")
	srv.SetNullMX("null.example")

	resp := exchange(t, srv, "udp", "null.example", dns.TypeMX)
	if len(resp.Answer) != 1 || resp.Answer[0].(*dns.MX).Mx != "." {
		t.Errorf("null MX answer = %v, want the single record 0 .", resp.Answer)
	}

	srv.SetRcode("example.com", dns.RcodeServerFailure)
	if resp := exchange(t, srv, "udp", "example.com", dns.TypeMX); resp.Rcode != dns.RcodeServerFailure {
		t.Errorf("rcode after SetRcode = %s, want SERVFAIL", dns.RcodeToString[resp.Rcode])
	}
	srv.SetRcode("example.com", dns.RcodeSuccess)
	if resp := exchange(t, srv, "udp", "example.com", dns.TypeMX); resp.Rcode != dns.RcodeSuccess {
		t.Errorf("rcode after clearing = %s, want NOERROR", dns.RcodeToString[resp.Rcode])
	}

	srv.SetTruncated("example.com", true)
	if resp := exchange(t, srv, "udp", "example.com", dns.TypeMX); !resp.Truncated || len(resp.Answer) != 0 {
		t.Errorf("udp answer when truncated: TC=%v with %d answers, want TC=true with 0", resp.Truncated, len(resp.Answer))
	}
	if resp := exchange(t, srv, "tcp", "example.com", dns.TypeMX); resp.Truncated || len(resp.Answer) != 1 {
		t.Errorf("tcp answer when truncated: TC=%v with %d answers, want TC=false with 1", resp.Truncated, len(resp.Answer))
	}

	srv.SetDrop("example.com", true)
	m := new(dns.Msg)
	m.SetQuestion("example.com.", dns.TypeMX)
	c := &dns.Client{Net: "udp", Timeout: 100 * time.Millisecond}
	_, _, err := c.Exchange(m, srv.Addr())
	var netErr net.Error
	if !errors.As(err, &netErr) || !netErr.Timeout() {
		t.Errorf("exchange of a dropped name: %v, want a timeout", err)
	}
}

func TestAddTXTSplitsLongStrings(t *testing.T) {
	srv := Start(t)
	long := make([]byte, 600)
	for i := range long {
		long[i] = 'a' + byte(i%26)
	}
	srv.AddTXT("k._domainkey.example.com", string(long))
	resp := exchange(t, srv, "tcp", "k._domainkey.example.com", dns.TypeTXT)
	if len(resp.Answer) != 1 {
		t.Fatalf("got %d answers, want 1", len(resp.Answer))
	}
	parts := resp.Answer[0].(*dns.TXT).Txt
	if len(parts) != 3 {
		t.Errorf("TXT has %d strings, want 3 (255+255+90)", len(parts))
	}
	joined := ""
	for _, p := range parts {
		joined += p
	}
	if joined != string(long) {
		t.Errorf("joined TXT differs from the added text")
	}
}

func TestServerCNAMEAndPTR(t *testing.T) {
	srv := Start(t)
	srv.AddCNAME("www.example.com", "web.example.com")
	srv.AddA("web.example.com", "127.0.0.8")
	srv.AddCNAME("loop1.example.com", "loop2.example.com")
	srv.AddCNAME("loop2.example.com", "loop1.example.com")
	srv.AddPTR("127.0.0.8", "web.example.com")
	srv.AddPTR("::1", "localhost.example.com")

	resp := exchange(t, srv, "udp", "www.example.com", dns.TypeA)
	if len(resp.Answer) != 2 {
		t.Fatalf("A www.example.com: %d answers, want CNAME and A", len(resp.Answer))
	}
	if cname, ok := resp.Answer[0].(*dns.CNAME); !ok || cname.Target != "web.example.com." {
		t.Errorf("first answer = %v, want CNAME to web.example.com.", resp.Answer[0])
	}
	if a, ok := resp.Answer[1].(*dns.A); !ok || a.A.String() != "127.0.0.8" || a.Hdr.Name != "web.example.com." {
		t.Errorf("second answer = %v, want web.example.com. A 127.0.0.8", resp.Answer[1])
	}

	if resp := exchange(t, srv, "udp", "loop1.example.com", dns.TypeA); len(resp.Answer) != maxCNAMEChain {
		t.Errorf("CNAME loop: %d answers, want %d", len(resp.Answer), maxCNAMEChain)
	}

	for ip, want := range map[string]string{"127.0.0.8": "web.example.com.", "::1": "localhost.example.com."} {
		rev, _ := dns.ReverseAddr(ip)
		resp := exchange(t, srv, "udp", rev, dns.TypePTR)
		if len(resp.Answer) != 1 || resp.Answer[0].(*dns.PTR).Ptr != want {
			t.Errorf("PTR %s = %v, want %s", ip, resp.Answer, want)
		}
	}
}
