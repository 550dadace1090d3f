// Package testdns runs a small authoritative DNS server on loopback for
// tests, so code that resolves MX, A, AAAA or TXT records is tested against
// real DNS messages over real UDP and TCP sockets instead of a mocked
// resolver.
//
// The server answers from an in-memory zone that the test fills:
//
//	srv := testdns.Start(t)
//	srv.AddMX("example.com", 10, "mx1.example.com")
//	srv.AddA("mx1.example.com", "127.0.0.1")
//	r := delivery.NewResolver(srv.Addr())
//
// Names are case-insensitive and may be given with or without the final dot.
// CNAMEs are followed within the zone, and AddPTR fills the reverse tree.
// A name with no records gets NXDOMAIN; a name that has records, but none of
// the requested type, gets an empty NOERROR answer (NODATA). SetRcode,
// SetTruncated and SetDrop inject the failures a resolver must handle.
package testdns

import (
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/miekg/dns"
)

// ttl is the TTL of every record, in seconds.
const ttl = 60

// Server is a DNS server bound to 127.0.0.1 on one port, for both UDP and
// TCP. Its methods are safe for concurrent use, so a test may change the zone
// while a resolver queries it.
type Server struct {
	// Immutable after Start.
	addr string
	udp  *dns.Server
	tcp  *dns.Server

	// Counters, read with Queries and TCPQueries.
	queries    atomic.Int64
	tcpQueries atomic.Int64

	// mu guards the zone and the injected failures.
	mu        sync.Mutex
	records   map[string][]dns.RR // by canonical (lowercase, fully qualified) owner name
	rcodes    map[string]int      // forced response code per owner name
	truncated map[string]bool     // UDP answers carry TC=1 and no records
	dropped   map[string]bool     // queries get no response at all
}

// Start binds the server to a free loopback port, serves UDP and TCP until the
// test ends, and registers the shutdown with t.Cleanup. It fails the test if
// the server cannot start.
func Start(t testing.TB) *Server {
	t.Helper()
	s := &Server{
		records:   make(map[string][]dns.RR),
		rcodes:    make(map[string]int),
		truncated: make(map[string]bool),
		dropped:   make(map[string]bool),
	}

	pc, ln := listenPair(t)
	s.addr = pc.LocalAddr().String()

	var started sync.WaitGroup
	started.Add(2)
	s.udp = &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(s.serveDNS), NotifyStartedFunc: started.Done}
	s.tcp = &dns.Server{Listener: ln, Handler: dns.HandlerFunc(s.serveDNS), NotifyStartedFunc: started.Done}
	for _, srv := range []*dns.Server{s.udp, s.tcp} {
		go func() {
			// ActivateAndServe returns when Shutdown closes the socket, so
			// its error after cleanup carries no information.
			_ = srv.ActivateAndServe()
		}()
	}
	started.Wait()

	t.Cleanup(func() {
		_ = s.udp.Shutdown()
		_ = s.tcp.Shutdown()
	})
	return s
}

// listenPair binds UDP and TCP sockets to the same free port on 127.0.0.1.
// The kernel picks the UDP port; the TCP bind to that port can fail when
// another process holds it, so a few attempts are made.
func listenPair(t testing.TB) (net.PacketConn, net.Listener) {
	t.Helper()
	var lastErr error
	for range 20 {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("testdns: listening on udp: %v", err)
		}
		ln, err := net.Listen("tcp", pc.LocalAddr().String())
		if err == nil {
			return pc, ln
		}
		lastErr = err
		pc.Close()
	}
	t.Fatalf("testdns: no port free for both udp and tcp: %v", lastErr)
	return nil, nil
}

// Addr returns the server address as "127.0.0.1:port".
func (s *Server) Addr() string { return s.addr }

// Queries returns the number of queries received over UDP and TCP together.
func (s *Server) Queries() int64 { return s.queries.Load() }

// TCPQueries returns the number of queries received over TCP.
func (s *Server) TCPQueries() int64 { return s.tcpQueries.Load() }

// AddMX adds an MX record for domain pointing at host.
func (s *Server) AddMX(domain string, pref uint16, host string) {
	s.add(&dns.MX{Hdr: header(domain, dns.TypeMX), Preference: pref, Mx: dns.Fqdn(host)})
}

// AddCNAME makes name an alias of target. Queries for other types at name
// get the CNAME followed by target's records of that type, as a recursive
// resolver returns them.
func (s *Server) AddCNAME(name, target string) {
	s.add(&dns.CNAME{Hdr: header(name, dns.TypeCNAME), Target: canonical(target)})
}

// AddPTR adds a PTR record mapping ip to host in the in-addr.arpa or
// ip6.arpa tree, for reverse lookups such as iprev. It panics if ip is not
// an IP address.
func (s *Server) AddPTR(ip, host string) {
	rev, err := dns.ReverseAddr(netip.MustParseAddr(ip).String())
	if err != nil {
		panic("testdns: AddPTR: " + err.Error())
	}
	s.add(&dns.PTR{Hdr: header(rev, dns.TypePTR), Ptr: canonical(host)})
}

// SetNullMX replaces the MX records of domain with the single null MX of
// RFC 7505 ("0 .").
func (s *Server) SetNullMX(domain string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	name := canonical(domain)
	kept := s.records[name][:0]
	for _, rr := range s.records[name] {
		if rr.Header().Rrtype != dns.TypeMX {
			kept = append(kept, rr)
		}
	}
	s.records[name] = append(kept, &dns.MX{Hdr: header(domain, dns.TypeMX), Preference: 0, Mx: "."})
}

// AddA adds an A record. It panics if ip is not an IPv4 address, because that
// is a mistake in the test itself.
func (s *Server) AddA(host, ip string) {
	a := netip.MustParseAddr(ip)
	if !a.Is4() {
		panic("testdns: AddA needs an IPv4 address, got " + ip)
	}
	s.add(&dns.A{Hdr: header(host, dns.TypeA), A: a.AsSlice()})
}

// AddAAAA adds an AAAA record. It panics if ip is not an IPv6 address.
func (s *Server) AddAAAA(host, ip string) {
	a := netip.MustParseAddr(ip)
	if !a.Is6() || a.Is4In6() {
		panic("testdns: AddAAAA needs an IPv6 address, got " + ip)
	}
	s.add(&dns.AAAA{Hdr: header(host, dns.TypeAAAA), AAAA: a.AsSlice()})
}

// AddTXT adds a TXT record. A txt longer than 255 octets is split into
// several character-strings, as DNS requires and as SPF and DKIM records use.
func (s *Server) AddTXT(name, txt string) {
	var parts []string
	for len(txt) > 255 {
		parts = append(parts, txt[:255])
		txt = txt[255:]
	}
	parts = append(parts, txt)
	s.add(&dns.TXT{Hdr: header(name, dns.TypeTXT), Txt: parts})
}

// SetRcode makes every query for name get rcode (for example
// dns.RcodeServerFailure) and no records. dns.RcodeSuccess removes the
// override.
func (s *Server) SetRcode(name string, rcode int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if rcode == dns.RcodeSuccess {
		delete(s.rcodes, canonical(name))
		return
	}
	s.rcodes[canonical(name)] = rcode
}

// SetTruncated makes UDP answers for name carry the TC bit and no records,
// so a resolver has to repeat the query over TCP to see them.
func (s *Server) SetTruncated(name string, on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.truncated[canonical(name)] = on
}

// SetDrop makes the server ignore queries for name, over UDP and TCP, so the
// resolver runs into its timeout.
func (s *Server) SetDrop(name string, on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.dropped[canonical(name)] = on
}

func (s *Server) add(rr dns.RR) {
	s.mu.Lock()
	defer s.mu.Unlock()
	name := rr.Header().Name
	s.records[name] = append(s.records[name], rr)
}

func (s *Server) serveDNS(w dns.ResponseWriter, req *dns.Msg) {
	s.queries.Add(1)
	overTCP := false
	if _, ok := w.RemoteAddr().(*net.TCPAddr); ok {
		overTCP = true
		s.tcpQueries.Add(1)
	}

	resp := new(dns.Msg)
	resp.SetReply(req)
	resp.Authoritative = true
	if len(req.Question) != 1 {
		resp.Rcode = dns.RcodeFormatError
		_ = w.WriteMsg(resp)
		return
	}
	q := req.Question[0]
	name := canonical(q.Name)

	s.mu.Lock()
	drop := s.dropped[name]
	rcode, forced := s.rcodes[name]
	truncate := s.truncated[name] && !overTCP
	_, known := s.records[name]
	answer := s.answerLocked(name, q.Qtype)
	s.mu.Unlock()

	switch {
	case drop:
		return
	case forced:
		resp.Rcode = rcode
	case truncate:
		resp.Truncated = true
	case !known:
		resp.Rcode = dns.RcodeNameError
	default:
		for _, rr := range answer {
			// Keep the spelling of the question, as real servers do.
			if canonical(rr.Header().Name) == name {
				rr.Header().Name = q.Name
			}
		}
		resp.Answer = answer
	}
	// A failed write means the client has timed out or gone away, and the
	// client's test reports that on its own side.
	_ = w.WriteMsg(resp)
}

// maxCNAMEChain bounds how many aliases answerLocked follows, so a CNAME
// loop in a test zone ends.
const maxCNAMEChain = 8

// answerLocked returns copies of the records of qtype at name, following
// CNAMEs within the zone. REQUIRES: s.mu held.
func (s *Server) answerLocked(name string, qtype uint16) []dns.RR {
	var answer []dns.RR
	for range maxCNAMEChain {
		var alias *dns.CNAME
		for _, rr := range s.records[name] {
			switch {
			case qtype == dns.TypeANY || rr.Header().Rrtype == qtype:
				answer = append(answer, dns.Copy(rr))
			case rr.Header().Rrtype == dns.TypeCNAME:
				alias = rr.(*dns.CNAME)
			}
		}
		if alias == nil || qtype == dns.TypeCNAME || qtype == dns.TypeANY {
			return answer
		}
		answer = append(answer, dns.Copy(alias))
		name = alias.Target
	}
	return answer
}

func header(name string, rrtype uint16) dns.RR_Header {
	return dns.RR_Header{Name: canonical(name), Rrtype: rrtype, Class: dns.ClassINET, Ttl: ttl}
}

func canonical(name string) string { return strings.ToLower(dns.Fqdn(name)) }
