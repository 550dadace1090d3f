package delivery

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/net/idna"
)

// Errors of MX resolution. IsPermanent distinguishes them from temporary
// failures such as SERVFAIL and timeouts.
var (
	// ErrNoSuchDomain means an authoritative NXDOMAIN for the domain itself:
	// mail to it bounces (RFC 5321 section 5.1).
	ErrNoSuchDomain = errors.New("delivery: no such domain (NXDOMAIN)")

	// ErrNoMailHosts means the domain exists but neither its MX records nor
	// its implicit MX lead to any address.
	ErrNoMailHosts = errors.New("delivery: domain has no MX and no address records")

	// ErrInvalidDomain means the name cannot be a mail domain, for example a
	// malformed domain literal.
	ErrInvalidDomain = errors.New("delivery: invalid domain")
)

// IsPermanent reports whether err from LookupMX means the domain can never
// receive mail, so the message bounces instead of waiting for a retry. Every
// other error, including a DNS timeout or SERVFAIL, is temporary.
func IsPermanent(err error) bool {
	return errors.Is(err, ErrNoSuchDomain) || errors.Is(err, ErrNullMX) ||
		errors.Is(err, ErrNoMailHosts) || errors.Is(err, ErrInvalidDomain)
}

// LookupError describes a DNS query that failed.
type LookupError struct {
	Name  string // the queried name
	Type  string // "MX", "A" or "AAAA"
	Rcode int    // DNS response code; -1 when no response arrived
	Err   error  // ErrNoSuchDomain for NXDOMAIN, else the cause
}

func (e *LookupError) Error() string {
	if e.Rcode >= 0 {
		return fmt.Sprintf("delivery: looking up %s %s: %s", e.Name, e.Type, dns.RcodeToString[e.Rcode])
	}
	return fmt.Sprintf("delivery: looking up %s %s: %v", e.Name, e.Type, e.Err)
}

func (e *LookupError) Unwrap() error { return e.Err }

// Resolver resolves the next hops for a mail domain with its own DNS client
// (github.com/miekg/dns), so the query timeout, the retry and the choice of
// server stay under our control instead of the C library's or Go's stub
// resolver. Queries go over UDP and are repeated over TCP when the answer is
// truncated.
//
// Set the exported fields before the first lookup. A Resolver is safe for
// concurrent use afterwards.
type Resolver struct {
	// Timeout bounds one query attempt. 0 means 5 seconds.
	Timeout time.Duration
	// Retries is the number of extra attempts per server after a timeout or
	// network error. 0 means 1; a negative value means none.
	Retries int

	// Immutable after NewResolver.
	servers []string // "host:port"
	udp     *dns.Client
	tcp     *dns.Client
}

// NewResolver returns a Resolver that queries the DNS server at server
// ("host:port"). An empty server means the name servers listed in
// /etc/resolv.conf, and 127.0.0.1:53 when that file cannot be read.
func NewResolver(server string) *Resolver {
	r := &Resolver{
		udp: &dns.Client{Net: "udp"},
		tcp: &dns.Client{Net: "tcp"},
	}
	if server != "" {
		r.servers = []string{server}
		return r
	}
	conf, err := dns.ClientConfigFromFile("/etc/resolv.conf")
	if err != nil || len(conf.Servers) == 0 {
		r.servers = []string{"127.0.0.1:53"}
		return r
	}
	for _, s := range conf.Servers {
		r.servers = append(r.servers, net.JoinHostPort(s, conf.Port))
	}
	return r
}

func (r *Resolver) timeout() time.Duration {
	if r.Timeout > 0 {
		return r.Timeout
	}
	return 5 * time.Second
}

func (r *Resolver) retries() int {
	switch {
	case r.Retries < 0:
		return 0
	case r.Retries == 0:
		return 1
	}
	return r.Retries
}

// LookupMX returns the hosts that receive mail for domain, in the order to
// try them: MX records by ascending preference, with hosts of equal
// preference shuffled to spread load (RFC 5321 section 5.1). Each host
// carries its IPv4 addresses followed by its IPv6 addresses; hosts without
// any address are left out.
//
// A domain without MX records gets the implicit MX: the domain itself with
// preference 0. A domain whose only MX is "." returns ErrNullMX (RFC 7505).
// A domain literal such as "[192.0.2.1]" or "[IPv6:2001:db8::1]" returns
// that address without any query (RFC 5321 section 4.1.3). A domain in
// Unicode is converted to its A-label form before the lookup.
//
// Use IsPermanent to decide whether an error bounces the mail.
func (r *Resolver) LookupMX(ctx context.Context, domain string) ([]Host, error) {
	if strings.HasPrefix(domain, "[") {
		return lookupLiteral(domain)
	}
	domain = strings.TrimSuffix(domain, ".")
	if !isASCII(domain) {
		// An internationalized domain (RFC 6531 recipients) is looked up
		// by its A-label form (RFC 5891).
		ascii, err := idna.Lookup.ToASCII(domain)
		if err != nil {
			return nil, fmt.Errorf("%w: %q: %v", ErrInvalidDomain, domain, err)
		}
		domain = ascii
	}
	if domain == "" || len(domain) > 253 {
		return nil, fmt.Errorf("%w: %q", ErrInvalidDomain, domain)
	}
	if _, ok := dns.IsDomainName(domain); !ok {
		return nil, fmt.Errorf("%w: %q", ErrInvalidDomain, domain)
	}

	resp, err := r.query(ctx, domain, dns.TypeMX)
	if err != nil {
		return nil, err
	}
	var mxs []*dns.MX
	for _, rr := range resp.Answer {
		if mx, ok := rr.(*dns.MX); ok {
			mxs = append(mxs, mx)
		}
	}

	// Implicit MX (RFC 5321 section 5.1): the domain's own addresses.
	if len(mxs) == 0 {
		h, err := r.lookupHost(ctx, domain, 0)
		if err != nil {
			return nil, err
		}
		if len(h.Addrs) == 0 {
			return nil, fmt.Errorf("%w: %s", ErrNoMailHosts, domain)
		}
		return []Host{h}, nil
	}

	// Null MX (RFC 7505 section 3): a single record with target ".". A "."
	// among other records is a misconfiguration and is skipped below.
	if len(mxs) == 1 && mxs[0].Mx == "." {
		return nil, fmt.Errorf("%w: %s", ErrNullMX, domain)
	}
	mxs = slices.DeleteFunc(mxs, func(mx *dns.MX) bool { return mx.Mx == "." })
	sortMX(mxs)

	return r.resolveTargets(ctx, domain, mxs)
}

// sortMX orders records by preference and shuffles each run of equal
// preference, as RFC 5321 section 5.1 recommends.
func sortMX(mxs []*dns.MX) {
	rand.Shuffle(len(mxs), func(i, j int) { mxs[i], mxs[j] = mxs[j], mxs[i] })
	slices.SortStableFunc(mxs, func(a, b *dns.MX) int { return int(a.Preference) - int(b.Preference) })
}

// resolveTargets looks up the addresses of every MX target in parallel,
// because each target costs two round trips and a domain may list several.
func (r *Resolver) resolveTargets(ctx context.Context, domain string, mxs []*dns.MX) ([]Host, error) {
	hosts := make([]Host, len(mxs))
	errs := make([]error, len(mxs))
	var wg sync.WaitGroup
	for i, mx := range mxs {
		wg.Go(func() {
			hosts[i], errs[i] = r.lookupHost(ctx, strings.TrimSuffix(mx.Mx, "."), mx.Preference)
		})
	}
	wg.Wait()

	var out []Host
	var temporary error
	for i, h := range hosts {
		if len(h.Addrs) > 0 {
			out = append(out, h)
			continue
		}
		if errs[i] != nil && !errors.Is(errs[i], ErrNoSuchDomain) && temporary == nil {
			temporary = errs[i]
		}
	}
	switch {
	case len(out) > 0:
		return out, nil
	case temporary != nil:
		// NB: one target failing temporarily makes the whole lookup
		// temporary, so a DNS outage never turns into a bounce.
		return nil, temporary
	}
	return nil, fmt.Errorf("%w: no MX target of %s has an address", ErrNoMailHosts, domain)
}

// lookupHost queries A and AAAA for name in parallel. An NXDOMAIN for both is
// returned as ErrNoSuchDomain; NODATA for both returns a host without
// addresses and no error.
func (r *Resolver) lookupHost(ctx context.Context, name string, pref uint16) (Host, error) {
	h := Host{Name: name, Preference: pref}
	var v4, v6 *dns.Msg
	var err4, err6 error
	var wg sync.WaitGroup
	wg.Go(func() { v4, err4 = r.query(ctx, name, dns.TypeA) })
	v6, err6 = r.query(ctx, name, dns.TypeAAAA)
	wg.Wait()

	if v4 != nil {
		for _, rr := range v4.Answer {
			if a, ok := rr.(*dns.A); ok {
				if addr, ok := netip.AddrFromSlice(a.A); ok {
					h.Addrs = append(h.Addrs, addr.Unmap())
				}
			}
		}
	}
	if v6 != nil {
		for _, rr := range v6.Answer {
			if a, ok := rr.(*dns.AAAA); ok {
				if addr, ok := netip.AddrFromSlice(a.AAAA); ok {
					h.Addrs = append(h.Addrs, addr)
				}
			}
		}
	}

	switch {
	case len(h.Addrs) > 0:
		return h, nil
	case err4 != nil && !errors.Is(err4, ErrNoSuchDomain):
		return h, err4
	case err6 != nil && !errors.Is(err6, ErrNoSuchDomain):
		return h, err6
	case err4 != nil:
		return h, err4
	}
	return h, err6
}

// query sends one question to each server in turn until one answers with
// NOERROR or NXDOMAIN. It retries over UDP after a timeout and repeats the
// query over TCP when the UDP answer is truncated.
func (r *Resolver) query(ctx context.Context, name string, qtype uint16) (*dns.Msg, error) {
	req := new(dns.Msg)
	req.SetQuestion(dns.Fqdn(name), qtype)
	req.RecursionDesired = true
	// Advertise a 1232-octet UDP buffer (the DNS flag day 2020 value), so
	// answers with many MX or AAAA records rarely need TCP.
	req.SetEdns0(1232, false)
	typ := dns.TypeToString[qtype]

	lastErr := &LookupError{Name: name, Type: typ, Rcode: -1, Err: errors.New("no DNS server configured")}
	for _, server := range r.servers {
	attempts:
		for attempt := 0; attempt <= r.retries(); attempt++ {
			if err := ctx.Err(); err != nil {
				return nil, &LookupError{Name: name, Type: typ, Rcode: -1, Err: err}
			}
			resp, err := r.exchange(ctx, req, server)
			if err != nil {
				lastErr = &LookupError{Name: name, Type: typ, Rcode: -1, Err: err}
				continue
			}

			switch resp.Rcode {
			case dns.RcodeSuccess:
				return resp, nil
			case dns.RcodeNameError:
				return nil, &LookupError{Name: name, Type: typ, Rcode: resp.Rcode, Err: ErrNoSuchDomain}
			}
			// SERVFAIL, REFUSED and the rest: this server cannot answer
			// now, so ask the next one instead of repeating the question.
			lastErr = &LookupError{Name: name, Type: typ, Rcode: resp.Rcode}
			break attempts
		}
	}
	return nil, lastErr
}

// exchange runs one attempt: UDP, then TCP when the UDP answer is truncated.
func (r *Resolver) exchange(ctx context.Context, req *dns.Msg, server string) (*dns.Msg, error) {
	ctx, cancel := context.WithTimeout(ctx, r.timeout())
	defer cancel()
	resp, _, err := r.udp.ExchangeContext(ctx, req, server)
	if err != nil {
		return nil, err
	}
	if resp.Truncated {
		resp, _, err = r.tcp.ExchangeContext(ctx, req, server)
		if err != nil {
			return nil, fmt.Errorf("retrying truncated UDP response over TCP: %w", err)
		}
	}
	return resp, nil
}

// lookupLiteral parses an address literal (RFC 5321 section 4.1.3).
func lookupLiteral(domain string) ([]Host, error) {
	inner, ok := strings.CutSuffix(strings.TrimPrefix(domain, "["), "]")
	if !ok {
		return nil, fmt.Errorf("%w: unterminated address literal %q", ErrInvalidDomain, domain)
	}
	v6, isV6 := cutPrefixFold(inner, "IPv6:")
	if isV6 {
		inner = v6
	}
	addr, err := netip.ParseAddr(inner)
	if err != nil || addr.Zone() != "" || addr.Is4() == isV6 {
		return nil, fmt.Errorf("%w: address literal %q", ErrInvalidDomain, domain)
	}
	return []Host{{Name: domain, Addrs: []netip.Addr{addr}}}, nil
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

func cutPrefixFold(s, prefix string) (string, bool) {
	if len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix) {
		return s[len(prefix):], true
	}
	return s, false
}
