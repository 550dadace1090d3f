package config

import (
	"fmt"
	"math"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// This file converts directive values. Each function returns an error whose
// text follows "directive:" in the final message, so it names the value and
// what a valid one looks like.

// parseSize converts "10M", "512k", "1G" or a plain number of octets. The
// units are powers of 1024 and case-insensitive.
func parseSize(s string) (int64, error) {
	num, mult := s, int64(1)
	if n := len(s); n > 0 {
		switch s[n-1] {
		case 'k', 'K':
			num, mult = s[:n-1], 1<<10
		case 'm', 'M':
			num, mult = s[:n-1], 1<<20
		case 'g', 'G':
			num, mult = s[:n-1], 1<<30
		}
	}
	if num == "" || strings.TrimLeft(num, "0123456789") != "" {
		return 0, fmt.Errorf("invalid size %q: want octets or a number with k, M or G (1024-based)", s)
	}
	v, err := strconv.ParseInt(num, 10, 64)
	if err != nil || v > math.MaxInt64/mult {
		return 0, fmt.Errorf("invalid size %q: too large", s)
	}
	return v * mult, nil
}

// durationUnits extends time.ParseDuration's units with days, because
// bounce-after is usually days ("4d12h").
var durationUnits = map[string]time.Duration{
	"ns": time.Nanosecond,
	"us": time.Microsecond,
	"µs": time.Microsecond,
	"μs": time.Microsecond,
	"ms": time.Millisecond,
	"s":  time.Second,
	"m":  time.Minute,
	"h":  time.Hour,
	"d":  24 * time.Hour,
}

// parseDuration converts a non-negative Go duration with the extra unit "d"
// (24 hours): "10m", "1.5h", "4d12h". A bare "0" is zero; other numbers
// need a unit.
func parseDuration(s string) (time.Duration, error) {
	if s == "0" {
		return 0, nil
	}
	bad := func(why string) (time.Duration, error) {
		return 0, fmt.Errorf("invalid duration %q: %s", s, why)
	}
	if s == "" {
		return bad("empty")
	}

	var total time.Duration
	for rest := s; rest != ""; {
		// One component: a decimal number, then a unit.
		i := 0
		for i < len(rest) && (rest[i] >= '0' && rest[i] <= '9' || rest[i] == '.') {
			i++
		}
		num := rest[:i]
		rest = rest[i:]
		j := 0
		for j < len(rest) && !(rest[j] >= '0' && rest[j] <= '9' || rest[j] == '.') {
			j++
		}
		unit := rest[:j]
		rest = rest[j:]

		if num == "" || num == "." || strings.Count(num, ".") > 1 {
			return bad("want a number and a unit such as 30s, 10m, 4d12h")
		}
		if unit == "" {
			return bad("missing unit (ms, s, m, h or d)")
		}
		mult, ok := durationUnits[unit]
		if !ok {
			return bad(fmt.Sprintf("unknown unit %q (want ms, s, m, h or d)", unit))
		}
		f, err := strconv.ParseFloat(num, 64)
		if err != nil {
			return bad("want a number and a unit such as 30s, 10m, 4d12h")
		}
		part := f * float64(mult)
		if part >= math.MaxInt64 || float64(total)+part >= math.MaxInt64 {
			return bad("too large")
		}
		total += time.Duration(part)
	}
	return total, nil
}

// parseBool accepts yes/no, true/false and on/off in any case.
func parseBool(s string) (bool, error) {
	switch strings.ToLower(s) {
	case "yes", "true", "on":
		return true, nil
	case "no", "false", "off":
		return false, nil
	}
	return false, fmt.Errorf("invalid boolean %q: want yes or no", s)
}

// parseCount converts a decimal integer in [min, max].
func parseCount(s string, min, max int) (int, error) {
	v, err := strconv.Atoi(s)
	if err != nil || strings.HasPrefix(s, "+") {
		return 0, fmt.Errorf("invalid number %q", s)
	}
	if v < min || v > max {
		return 0, fmt.Errorf("%d out of range [%d, %d]", v, min, max)
	}
	return v, nil
}

// parseAddrPort converts "192.0.2.1:25" or "[2001:db8::1]:25". Host names
// are rejected: a listener or resolver address must not depend on DNS.
func parseAddrPort(s string, allowPortZero bool) (netip.AddrPort, error) {
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("invalid address %q: want IP:PORT, with IPv6 in brackets ([::1]:25)", s)
	}
	if ap.Port() == 0 && !allowPortZero {
		return netip.AddrPort{}, fmt.Errorf("invalid address %q: port 0 is not allowed", s)
	}
	return ap, nil
}

// parsePrefix converts a <source> argument: a CIDR prefix (host bits are
// masked off, so 127.0.0.1/8 is 127.0.0.0/8) or a bare IP address.
func parsePrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("invalid prefix %q: want an IP address, CIDR prefix, 0/0 or ::/0", s)
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" {
		return netip.Prefix{}, fmt.Errorf("invalid address %q: want an IP address, CIDR prefix, 0/0 or ::/0", s)
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// validHostName reports whether s is a DNS name of letters, digits,
// hyphens and underscores in dot-separated labels. RFC 1035 section 2.3.4
// limits a label to 63 octets and a name to 255 octets in wire form, which
// is 253 characters as text.
func validHostName(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	for label := range strings.SplitSeq(s, ".") {
		if label == "" || len(label) > 63 {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}

// parseDomainName converts a <domain> argument to its lower-case key:
// "*", "*.example.com" or a host name, with any trailing dot removed.
func parseDomainName(s string) (string, error) {
	name := strings.ToLower(strings.TrimSuffix(s, "."))
	if name == "*" {
		return name, nil
	}
	if validHostName(strings.TrimPrefix(name, "*.")) {
		return name, nil
	}
	return "", fmt.Errorf("invalid domain %q: want a domain name, *.domain or *", s)
}

// validHostID reports whether s is 1 to 32 ASCII letters and digits, the
// form message ids embed.
func validHostID(s string) bool {
	if s == "" || len(s) > 32 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

// hostIDFromName derives a host id from the first label of a host name,
// keeping letters and digits: "mx-1.example.com" becomes "mx1". Appliances
// sharing a first label need an explicit host-id.
func hostIDFromName(name string) string {
	label, _, _ := strings.Cut(name, ".")
	var b strings.Builder
	for i := 0; i < len(label) && b.Len() < 32; i++ {
		c := label[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' {
			b.WriteByte(c)
		}
	}
	if b.Len() == 0 {
		return "smta"
	}
	return b.String()
}

// validBlockName reports whether s can name a virtual-mta, pool or pattern
// list: letters, digits, '.', '-' and '_'.
func validBlockName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// parseRoute converts "HOST:PORT", "[IP]:PORT", "HOST" or "[IP]". A missing
// port means 25.
func parseRoute(s string) (Route, error) {
	bad := func(why string) (Route, error) {
		return Route{}, fmt.Errorf("invalid route %q: %s", s, why)
	}

	host, port := s, "25"
	switch {
	case strings.HasPrefix(s, "["):
		end := strings.IndexByte(s, ']')
		if end < 0 {
			return bad("missing ]")
		}
		host = s[1:end]
		switch rest := s[end+1:]; {
		case rest == "":
		case strings.HasPrefix(rest, ":"):
			port = rest[1:]
		default:
			return bad("want [IP]:PORT")
		}
	case strings.Count(s, ":") == 1:
		host, port, _ = strings.Cut(s, ":")
	case strings.Contains(s, ":"):
		return bad("write an IPv6 address in brackets ([2001:db8::1]:25)")
	}

	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil || p == 0 {
		return bad(fmt.Sprintf("invalid port %q", port))
	}
	r := Route{Host: host, Port: uint16(p)}
	if a, err := netip.ParseAddr(host); err == nil && a.Zone() == "" {
		r.Host, r.Literal = a.Unmap().String(), true
		return r, nil
	}
	if !validHostName(host) {
		return bad(fmt.Sprintf("invalid host %q: want a host name or IP address", host))
	}
	r.Literal = strings.HasPrefix(s, "[")
	return r, nil
}

// parseRecords converts a list of accounting record types separated by
// commas or spaces ("r,d,b,t,e,rj,f") into a list without duplicates, in
// file order.
func parseRecords(s string) ([]string, error) {
	var out []string
	for t := range strings.FieldsFuncSeq(s, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' }) {
		t = strings.ToLower(t)
		if !slices.Contains(AllRecordTypes, t) {
			return nil, fmt.Errorf("invalid record type %q: want a comma-separated list of r, d, b, t, e, rj, f", t)
		}
		if !slices.Contains(out, t) {
			out = append(out, t)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("missing record types: want a comma-separated list of r, d, b, t, e, rj, f")
	}
	return out, nil
}

// parseWebhookURL checks that s is an absolute http or https URL with a host.
func parseWebhookURL(s string) (string, error) {
	u, err := url.Parse(s)
	if err != nil {
		return "", fmt.Errorf("invalid URL %q: %v", s, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return "", fmt.Errorf("invalid URL %q: want an http or https URL", s)
	}
	if u.Host == "" {
		return "", fmt.Errorf("invalid URL %q: missing host", s)
	}
	return u.String(), nil
}

// validHeaderName reports whether s is an HTTP field name token
// (RFC 9110 section 5.1).
func validHeaderName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' {
			continue
		}
		if !strings.ContainsRune("!#$%&'*+-.^_`|~", rune(c)) {
			return false
		}
	}
	return true
}
