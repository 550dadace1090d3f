package config

import (
	"fmt"
	"net/http"
	"strings"
	"time"
)

// directive describes one directive allowed in a block of type T. It
// gives the number of arguments, whether the directive may repeat, and how
// it sets its value.
type directive[T any] struct {
	usage    string // arguments as shown in error messages, "ADDR:PORT [tls]"
	min, max int    // argument count; max < 0 means no upper bound
	repeat   bool
	set      func(t *T, n *node) error
}

// Upper bounds for counts. They catch typos (an extra digit) rather than
// encode limits of the implementation.
const (
	maxCount       = 10_000_000
	maxWorkers     = 4096
	maxRecipients  = 1_000_000
	minMessageSize = 64 << 10 // RFC 5321 section 4.5.3.1.7: servers accept at least 64K octets
	minSegmentSize = 1 << 20
)

var globalDirectives = map[string]directive[Config]{
	"host-name": {usage: "NAME", min: 1, max: 1, set: func(c *Config, n *node) error {
		if !validHostName(n.args[0]) {
			return fmt.Errorf("invalid host name %q", n.args[0])
		}
		c.HostName = n.args[0]
		return nil
	}},
	"host-id": {usage: "ID", min: 1, max: 1, set: func(c *Config, n *node) error {
		if !validHostID(n.args[0]) {
			return fmt.Errorf("invalid host id %q: want 1 to 32 letters and digits", n.args[0])
		}
		c.HostID = n.args[0]
		return nil
	}},
	"smtp-listener": {usage: "ADDR:PORT [tls]", min: 1, max: 2, repeat: true, set: func(c *Config, n *node) error {
		ap, err := parseAddrPort(n.args[0], true)
		if err != nil {
			return err
		}
		l := Listener{Addr: ap}
		if len(n.args) == 2 {
			if !strings.EqualFold(n.args[1], "tls") {
				return fmt.Errorf("unexpected argument %q: want tls or nothing", n.args[1])
			}
			l.TLS = true
		}
		c.Listeners = append(c.Listeners, l)
		return nil
	}},
	"spool-dir": {usage: "PATH", min: 1, max: -1, set: func(c *Config, n *node) error {
		c.SpoolDir = n.value
		return nil
	}},
	"log-dir": {usage: "PATH", min: 1, max: -1, set: func(c *Config, n *node) error {
		c.LogDir = n.value
		return nil
	}},
	"max-message-size": {usage: "SIZE", min: 1, max: 1, set: func(c *Config, n *node) error {
		return setSize(&c.MaxMessageSize, n.args[0], minMessageSize)
	}},
	"max-recipients": {usage: "N", min: 1, max: 1, set: func(c *Config, n *node) error {
		return setCount(&c.MaxRecipients, n.args[0], 1, maxRecipients)
	}},
	"max-errors": {usage: "N", min: 1, max: 1, set: func(c *Config, n *node) error {
		return setCount(&c.MaxErrors, n.args[0], 1, maxCount)
	}},
	"dns-server": {usage: "IP:PORT", min: 1, max: 1, repeat: true, set: func(c *Config, n *node) error {
		ap, err := parseAddrPort(n.args[0], false)
		if err != nil {
			return err
		}
		c.DNSServers = append(c.DNSServers, ap)
		return nil
	}},
	"inbound-mode": {usage: "epoll|io_uring|goroutine", min: 1, max: 1, set: func(c *Config, n *node) error {
		switch m := strings.ToLower(n.args[0]); m {
		case "epoll", "io_uring", "goroutine":
			c.InboundMode = m
			return nil
		}
		return fmt.Errorf("invalid mode %q: want epoll, io_uring or goroutine", n.args[0])
	}},
	"inbound-workers": {usage: "N", min: 1, max: 1, set: func(c *Config, n *node) error {
		return setCount(&c.InboundWorkers, n.args[0], 0, maxWorkers)
	}},
	"inbound-cpu-affinity": {usage: "yes|no", min: 1, max: 1, set: func(c *Config, n *node) error {
		return setBool(&c.InboundCPUAffinity, n.args[0])
	}},
	"max-connections": {usage: "N", min: 1, max: 1, set: func(c *Config, n *node) error {
		return setCount(&c.MaxConnections, n.args[0], 0, maxCount)
	}},
	"max-connections-per-ip": {usage: "N", min: 1, max: 1, set: func(c *Config, n *node) error {
		return setCount(&c.MaxConnectionsPerIP, n.args[0], 0, maxCount)
	}},
	"smtp-command-timeout": {usage: "DURATION", min: 1, max: 1, set: func(c *Config, n *node) error {
		return setDuration(&c.SMTPCommandTimeout, n.args[0], time.Second)
	}},
	"smtp-data-timeout": {usage: "DURATION", min: 1, max: 1, set: func(c *Config, n *node) error {
		return setDuration(&c.SMTPDataTimeout, n.args[0], time.Second)
	}},
	"tls-certificate": {usage: "PATH", min: 1, max: -1, set: func(c *Config, n *node) error {
		c.TLSCertificate = n.value
		return nil
	}},
	"tls-key": {usage: "PATH", min: 1, max: -1, set: func(c *Config, n *node) error {
		c.TLSKey = n.value
		return nil
	}},
	"acct-sync": {usage: "DURATION", min: 1, max: 1, set: func(c *Config, n *node) error {
		return setDuration(&c.AcctSync, n.args[0], time.Millisecond)
	}},
	"segment-size": {usage: "SIZE", min: 1, max: 1, set: func(c *Config, n *node) error {
		return setSize(&c.SegmentSize, n.args[0], minSegmentSize)
	}},
	"http-mgmt-listener": {usage: "ADDR:PORT", min: 1, max: 1, set: func(c *Config, n *node) error {
		ap, err := parseAddrPort(n.args[0], true)
		if err != nil {
			return err
		}
		c.HTTPMgmtListener = ap
		return nil
	}},
}

var sourceDirectives = map[string]directive[Source]{
	"always-allow-relaying": {usage: "yes|no", min: 1, max: 1, set: func(s *Source, n *node) error {
		return setBool(&s.AlwaysAllowRelaying, n.args[0])
	}},
	"hide-message-source": {usage: "yes|no", min: 1, max: 1, set: func(s *Source, n *node) error {
		return setBool(&s.HideMessageSource, n.args[0])
	}},
	"max-connections": {usage: "N", min: 1, max: 1, set: func(s *Source, n *node) error {
		return setCount(&s.MaxConnections, n.args[0], 0, maxCount)
	}},
}

var domainDirectives = map[string]directive[Domain]{
	"route": {usage: "HOST:PORT", min: 1, max: 1, set: func(d *Domain, n *node) error {
		r, err := parseRoute(n.args[0])
		if err != nil {
			return err
		}
		d.Route = r
		return nil
	}},
	"retry-after": {usage: "DURATION", min: 1, max: 1, set: func(d *Domain, n *node) error {
		return setDuration(&d.RetryAfter, n.args[0], time.Second)
	}},
	"bounce-after": {usage: "DURATION", min: 1, max: 1, set: func(d *Domain, n *node) error {
		return setDuration(&d.BounceAfter, n.args[0], time.Second)
	}},
	"max-smtp-out": {usage: "N", min: 1, max: 1, set: func(d *Domain, n *node) error {
		return setCount(&d.MaxSMTPOut, n.args[0], 1, maxCount)
	}},
	"max-msg-per-connection": {usage: "N", min: 1, max: 1, set: func(d *Domain, n *node) error {
		return setCount(&d.MaxMsgPerConnection, n.args[0], 1, maxCount)
	}},
	"use-starttls": {usage: "yes|no", min: 1, max: 1, set: func(d *Domain, n *node) error {
		return setBool(&d.UseStartTLS, n.args[0])
	}},
	"dsn": {usage: "yes|no", min: 1, max: 1, set: func(d *Domain, n *node) error {
		return setBool(&d.DSN, n.args[0])
	}},
}

var acctFileDirectives = map[string]directive[AcctFile]{
	"records": {usage: "TYPE,TYPE...", min: 1, max: -1, set: func(a *AcctFile, n *node) error {
		return setRecords(&a.Records, n)
	}},
	"max-size": {usage: "SIZE", min: 1, max: 1, set: func(a *AcctFile, n *node) error {
		return setSize(&a.MaxSize, n.args[0], 0)
	}},
	"rotate-interval": {usage: "DURATION", min: 1, max: 1, set: func(a *AcctFile, n *node) error {
		return setDuration(&a.RotateInterval, n.args[0], time.Minute)
	}},
	"keep": {usage: "N", min: 1, max: 1, set: func(a *AcctFile, n *node) error {
		return setCount(&a.Keep, n.args[0], 0, maxCount)
	}},
	"compress": {usage: "yes|no", min: 1, max: 1, set: func(a *AcctFile, n *node) error {
		return setBool(&a.Compress, n.args[0])
	}},
}

var webhookDirectives = map[string]directive[Webhook]{
	"records": {usage: "TYPE,TYPE...", min: 1, max: -1, set: func(w *Webhook, n *node) error {
		return setRecords(&w.Records, n)
	}},
	"batch-size": {usage: "N", min: 1, max: 1, set: func(w *Webhook, n *node) error {
		return setCount(&w.BatchSize, n.args[0], 1, maxCount)
	}},
	"max-delay": {usage: "DURATION", min: 1, max: 1, set: func(w *Webhook, n *node) error {
		return setDuration(&w.MaxDelay, n.args[0], 0)
	}},
	"timeout": {usage: "DURATION", min: 1, max: 1, set: func(w *Webhook, n *node) error {
		return setDuration(&w.Timeout, n.args[0], time.Millisecond)
	}},
	"header": {usage: "NAME VALUE", min: 2, max: -1, repeat: true, set: func(w *Webhook, n *node) error {
		name := n.args[0]
		if !validHeaderName(name) {
			return fmt.Errorf("invalid header name %q", name)
		}
		if w.Header == nil {
			w.Header = http.Header{}
		}
		w.Header.Add(name, strings.TrimSpace(n.value[len(name):]))
		return nil
	}},
}

// applyDirective checks one directive's arguments and repetition, then sets
// it on t. seen maps directive names to the line that first set them in the
// current block.
func applyDirective[T any](p *parser, t *T, table map[string]directive[T], where string, seen map[string]int, n *node) {
	d, ok := table[n.name]
	if !ok {
		if places := allowedIn(n.name); places != "" {
			p.errorf(n.line, n.name, "not allowed %s (allowed %s)", where, places)
		} else if guess := closestName(n.name, table); guess != "" {
			p.errorf(n.line, n.name, "unknown directive (did you mean %s?)", guess)
		} else {
			p.errorf(n.line, n.name, "unknown directive")
		}
		return
	}
	if len(n.args) < d.min {
		p.errorf(n.line, n.name, "missing value (want %s %s)", n.name, d.usage)
		return
	}
	if d.max >= 0 && len(n.args) > d.max {
		p.errorf(n.line, n.name, "unexpected argument %q (want %s %s)", n.args[d.max], n.name, d.usage)
		return
	}
	if first, dup := seen[n.name]; dup && !d.repeat {
		p.errorf(n.line, n.name, "duplicate directive (first at line %d)", first)
		return
	}
	seen[n.name] = n.line
	if err := d.set(t, n); err != nil {
		p.errorf(n.line, n.name, "%v", err)
	}
}

// allowedIn names the places where a directive is valid, for the error
// about a directive in the wrong block; "" means it is valid nowhere.
func allowedIn(name string) string {
	var places []string
	if _, ok := globalDirectives[name]; ok {
		places = append(places, "at top level")
	}
	if _, ok := sourceDirectives[name]; ok {
		places = append(places, "in <source>")
	}
	if _, ok := domainDirectives[name]; ok {
		places = append(places, "in <domain>")
	}
	if _, ok := acctFileDirectives[name]; ok {
		places = append(places, "in <acct-file>")
	}
	if _, ok := webhookDirectives[name]; ok {
		places = append(places, "in <webhook>")
	}
	return strings.Join(places, ", ")
}

func setSize(dst *int64, s string, min int64) error {
	v, err := parseSize(s)
	if err != nil {
		return err
	}
	if v < min {
		return fmt.Errorf("size %q below the minimum of %d octets", s, min)
	}
	*dst = v
	return nil
}

func setCount(dst *int, s string, min, max int) error {
	v, err := parseCount(s, min, max)
	if err != nil {
		return err
	}
	*dst = v
	return nil
}

func setDuration(dst *time.Duration, s string, min time.Duration) error {
	v, err := parseDuration(s)
	if err != nil {
		return err
	}
	if v < min {
		return fmt.Errorf("duration %q below the minimum of %v", s, min)
	}
	*dst = v
	return nil
}

func setBool(dst *bool, s string) error {
	v, err := parseBool(s)
	if err != nil {
		return err
	}
	*dst = v
	return nil
}

// setRecords accepts "r,d,b", "r, d, b" and "r d b" alike.
func setRecords(dst *[]string, n *node) error {
	v, err := parseRecords(n.value)
	if err != nil {
		return err
	}
	*dst = v
	return nil
}

// closestName returns the directive in table within edit distance 2 of
// name, for a "did you mean" hint, or "" when none is that close. Ties go
// to the alphabetically first name so the message is stable.
func closestName[T any](name string, table map[string]directive[T]) string {
	best, bestDist := "", 3
	for candidate := range table {
		d := editDistance(name, candidate)
		if d < bestDist || (d == bestDist && best != "" && candidate < best) {
			best, bestDist = candidate, d
		}
	}
	return best
}

// editDistance is the Levenshtein distance between a and b in bytes.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
