package config

import (
	"cmp"
	"net/netip"
	"os"
	"slices"
	"strings"
	"time"
)

// Parse parses a configuration file. filename is used only in error
// messages. On failure the error is an ErrorList with one problem per line,
// each as "file:line: directive: message", and the Config is nil.
func Parse(filename string, data []byte) (*Config, error) {
	if filename == "" {
		filename = "config"
	}
	p := &parser{file: filename}
	root := p.tree(data)

	c := builtinConfig()
	c.File = filename
	p.topLevel(c, root.children)
	if err := p.result(); err != nil {
		return nil, err
	}
	return c, nil
}

// builtinConfig returns a Config with every built-in default and no blocks.
func builtinConfig() *Config {
	return &Config{
		SpoolDir:           "./var/spool",
		LogDir:             "./var/log",
		MaxMessageSize:     50 << 20,
		MaxRecipients:      100, // RFC 5321 section 4.5.3.1.8: the minimum a server must accept
		MaxErrors:          10,
		SMTPCommandTimeout: 5 * time.Minute,
		SMTPDataTimeout:    3 * time.Minute,
		AcctSync:           time.Second,
		SegmentSize:        64 << 20,
		Domains:            map[string]*Domain{},
		VirtualMTAs:        map[string]*RawBlock{},
		VirtualMTAPools:    map[string]*RawBlock{},
		SMTPPatternLists:   map[string]*RawBlock{},
	}
}

func builtinDomain() Domain {
	return Domain{
		Name:                "*",
		RetryAfter:          10 * time.Minute,
		BounceAfter:         4*24*time.Hour + 12*time.Hour,
		MaxSMTPOut:          20,
		MaxMsgPerConnection: 100,
		UseStartTLS:         true,
		DSN:                 true,
	}
}

// topLevel runs the second pass over the file's top level. It applies the
// global directives and the blocks, then fills the defaults that depend on
// other values and checks the rules that span directives.
func (p *parser) topLevel(c *Config, nodes []*node) {
	seen := map[string]int{}
	var domains []*node
	listenerLines := map[netip.AddrPort]int{}
	var tlsListenerLine int

	for _, n := range nodes {
		if !n.block {
			before := len(c.Listeners)
			applyDirective(p, c, globalDirectives, "at top level", seen, n)
			if len(c.Listeners) > before {
				l := c.Listeners[len(c.Listeners)-1]
				if first, dup := listenerLines[l.Addr]; dup {
					p.errorf(n.line, n.name, "duplicate address %s (first at line %d)", l.Addr, first)
				}
				listenerLines[l.Addr] = n.line
				if l.TLS && tlsListenerLine == 0 {
					tlsListenerLine = n.line
				}
			}
			continue
		}

		if !p.blockArgument(n) {
			continue
		}
		switch n.name {
		case "source":
			p.source(c, n)
		case "domain":
			domains = append(domains, n) // after <domain *>, which they inherit from
		case "acct-file":
			p.acctFile(c, n)
		case "webhook":
			p.webhook(c, n)
		case "virtual-mta":
			p.rawBlock(c.VirtualMTAs, n, "domain")
		case "virtual-mta-pool":
			p.rawBlock(c.VirtualMTAPools, n)
		case "smtp-pattern-list":
			p.rawBlock(c.SMTPPatternLists, n)
		default:
			p.errorf(n.line, n.label(), "unknown block")
		}
	}
	p.domains(c, domains)
	p.checkPools(c)

	// Defaults that depend on other values.
	if c.HostName == "" {
		c.HostName = defaultHostName()
	}
	if c.HostID == "" {
		c.HostID = hostIDFromName(c.HostName)
	}
	if len(c.Listeners) == 0 {
		c.Listeners = []Listener{{Addr: netip.MustParseAddrPort("127.0.0.1:2525")}}
	}

	// TLS needs both files, and an implicit-TLS listener needs TLS.
	switch {
	case c.TLSCertificate != "" && c.TLSKey == "":
		p.errorf(seen["tls-certificate"], "tls-certificate", "tls-key is missing (set both or neither)")
	case c.TLSKey != "" && c.TLSCertificate == "":
		p.errorf(seen["tls-key"], "tls-key", "tls-certificate is missing (set both or neither)")
	case c.TLSCertificate == "" && tlsListenerLine != 0:
		p.errorf(tlsListenerLine, "smtp-listener", "tls listener requires tls-certificate and tls-key")
	}

	slices.SortStableFunc(c.Sources, func(a, b *Source) int {
		return cmp.Compare(b.Prefix.Bits(), a.Prefix.Bits())
	})
}

// blockArgument checks that a block tag has exactly one argument, except
// <acct-file PATH> whose path may contain spaces.
func (p *parser) blockArgument(n *node) bool {
	switch {
	case len(n.args) == 0:
		p.errorf(n.line, n.label(), "missing argument (want <%s VALUE>)", n.name)
		return false
	case len(n.args) > 1 && n.name != "acct-file":
		p.errorf(n.line, n.label(), "unexpected argument %q (want <%s VALUE>)", n.args[1], n.name)
		return false
	}
	return true
}

// noNestedBlocks reports every block inside n, because only <virtual-mta>
// may contain blocks.
func (p *parser) noNestedBlocks(n *node) {
	for _, child := range n.children {
		if child.block {
			p.errorf(child.line, child.label(), "not allowed inside <%s> (line %d)", n.name, n.line)
		}
	}
}

// source parses a <source> block. "0/0" means every address of both
// families and becomes two entries, 0.0.0.0/0 and ::/0.
func (p *parser) source(c *Config, n *node) {
	var prefixes []netip.Prefix
	if n.args[0] == "0/0" {
		prefixes = []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0"), netip.MustParsePrefix("::/0")}
	} else {
		prefix, err := parsePrefix(n.args[0])
		if err != nil {
			p.errorf(n.line, n.label(), "%v", err)
			return
		}
		prefixes = []netip.Prefix{prefix}
	}

	s := Source{Line: n.line}
	seen := map[string]int{}
	for _, child := range n.children {
		if !child.block {
			applyDirective(p, &s, sourceDirectives, "in <source>", seen, child)
		}
	}
	p.noNestedBlocks(n)

	for _, prefix := range prefixes {
		if first := findSource(c.Sources, prefix); first != nil {
			p.errorf(n.line, n.label(), "duplicate block for %s (first at line %d)", prefix, first.Line)
			continue
		}
		block := s
		block.Prefix = prefix
		c.Sources = append(c.Sources, &block)
	}
}

func findSource(sources []*Source, prefix netip.Prefix) *Source {
	for _, s := range sources {
		if s.Prefix == prefix {
			return s
		}
	}
	return nil
}

// domains parses the <domain> blocks. <domain *> is applied first, on top
// of the built-in defaults, and every other block starts from its result,
// so a block inherits whatever it does not set wherever <domain *> appears
// in the file.
func (p *parser) domains(c *Config, nodes []*node) {
	lines := map[string]int{}
	names := make([]string, len(nodes))
	for i, n := range nodes {
		name, err := parseDomainName(n.args[0])
		if err != nil {
			p.errorf(n.line, n.label(), "%v", err)
			continue
		}
		if first, dup := lines[name]; dup {
			p.errorf(n.line, n.label(), "duplicate block for %s (first at line %d)", name, first)
			continue
		}
		lines[name] = n.line
		names[i] = name
	}

	base := builtinDomain()
	for i, n := range nodes {
		if names[i] == "*" && lines["*"] == n.line {
			p.domainSettings(&base, n)
			base.Line = n.line
		}
	}
	c.Domains["*"] = &base

	for i, n := range nodes {
		name := names[i]
		if name == "" || name == "*" || lines[name] != n.line {
			continue
		}
		d := base
		d.Name, d.Line = name, n.line
		p.domainSettings(&d, n)
		c.Domains[name] = &d
	}
}

func (p *parser) domainSettings(d *Domain, n *node) {
	seen := map[string]int{}
	for _, child := range n.children {
		if !child.block {
			applyDirective(p, d, domainDirectives, "in <domain>", seen, child)
		}
	}
	p.noNestedBlocks(n)
}

func (p *parser) acctFile(c *Config, n *node) {
	a := &AcctFile{
		Path:           n.value,
		Line:           n.line,
		Records:        slices.Clone(AllRecordTypes),
		RotateInterval: 24 * time.Hour,
		Keep:           30,
	}
	for _, other := range c.AcctFiles {
		if other.Path == a.Path {
			p.errorf(n.line, n.label(), "duplicate block for %s (first at line %d)", a.Path, other.Line)
			return
		}
	}
	seen := map[string]int{}
	for _, child := range n.children {
		if !child.block {
			applyDirective(p, a, acctFileDirectives, "in <acct-file>", seen, child)
		}
	}
	p.noNestedBlocks(n)
	c.AcctFiles = append(c.AcctFiles, a)
}

func (p *parser) webhook(c *Config, n *node) {
	u, err := parseWebhookURL(n.args[0])
	if err != nil {
		p.errorf(n.line, n.label(), "%v", err)
		return
	}
	w := &Webhook{
		URL:       u,
		Line:      n.line,
		Records:   slices.Clone(AllRecordTypes),
		BatchSize: 100,
		MaxDelay:  5 * time.Second,
		Timeout:   30 * time.Second,
	}
	for _, other := range c.Webhooks {
		if other.URL == w.URL {
			p.errorf(n.line, n.label(), "duplicate block for %s (first at line %d)", w.URL, other.Line)
			return
		}
	}
	seen := map[string]int{}
	for _, child := range n.children {
		if !child.block {
			applyDirective(p, w, webhookDirectives, "in <webhook>", seen, child)
		}
	}
	p.noNestedBlocks(n)
	c.Webhooks = append(c.Webhooks, w)
}

// rawBlock stores a block parsed for structure only under its name. nested
// lists the block kinds it may contain, which are stored raw as well.
func (p *parser) rawBlock(dst map[string]*RawBlock, n *node, nested ...string) {
	name := n.args[0]
	if !validBlockName(name) {
		p.errorf(n.line, n.label(), "invalid name %q: want letters, digits, '.', '-' and '_'", name)
		return
	}
	if first, dup := dst[name]; dup {
		p.errorf(n.line, n.label(), "duplicate block for %s (first at line %d)", name, first.Line)
		return
	}
	dst[name] = p.raw(n, nested)
}

func (p *parser) raw(n *node, nested []string) *RawBlock {
	b := &RawBlock{Kind: n.name, Name: n.value, Line: n.line}
	for _, child := range n.children {
		switch {
		case !child.block:
			b.Directives = append(b.Directives, Directive{Name: child.name, Args: child.args, Value: child.value, Line: child.line})
		case slices.Contains(nested, child.name) && p.blockArgument(child):
			b.Blocks = append(b.Blocks, p.raw(child, nil))
		case !slices.Contains(nested, child.name):
			p.errorf(child.line, child.label(), "not allowed inside <%s> (line %d)", n.name, n.line)
		}
	}
	return b
}

// checkPools checks that every <virtual-mta-pool> lists existing
// virtual-mtas with "virtual-mta NAME" lines and nothing else.
func (p *parser) checkPools(c *Config) {
	for _, pool := range c.VirtualMTAPools {
		for _, d := range pool.Directives {
			switch {
			case d.Name != "virtual-mta":
				p.errorf(d.Line, d.Name, "not allowed in <virtual-mta-pool> (want virtual-mta NAME)")
			case len(d.Args) != 1:
				p.errorf(d.Line, d.Name, "want exactly one name (virtual-mta NAME)")
			case c.VirtualMTAs[d.Args[0]] == nil:
				p.errorf(d.Line, d.Name, "no <virtual-mta %s> block", d.Args[0])
			}
		}
	}
}

// defaultHostName returns the kernel's host name, or "localhost" when it is
// unavailable or not a valid DNS name.
func defaultHostName() string {
	name, err := os.Hostname()
	if err != nil || !validHostName(name) {
		return "localhost"
	}
	return strings.ToLower(name)
}
