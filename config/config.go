// Package config parses smta.conf, the appliance's configuration file.
//
// The syntax follows PowerMTA, because operators of bulk mail relays already
// know it. Each line holds one directive (`name value...`), and `#` starts a
// comment at the beginning of a line or after whitespace. Blocks such as
// `<domain example.com>` … `</domain>` scope directives to a domain, a client
// address range, an accounting file or a webhook.
//
// Parsing runs in two passes. The first pass (tree.go) only splits lines and
// matches block tags, producing a tree of nodes with their line numbers. The
// second pass (parse.go) walks the tree with one directive table per block
// kind, converts values and checks them. Errors from both passes are
// collected, so a single run of `smta check-config` reports up to
// maxErrors problems, each as "file:line: directive: message".
//
// Each block kind has a table of the directives it allows (directives.go),
// with argument counts, whether the directive may repeat, and a setter. The
// tables also produce the "not allowed in <source> (allowed in <domain>)"
// message, so a directive in the wrong block is explained rather than
// reported as unknown.
//
// Inheritance is resolved during Parse. Every <domain> block starts from the
// merged <domain *> settings, and Config.Domain returns a complete Domain.
// Readers on the delivery path therefore read fields directly and never walk
// a chain of parents. Keeping unset fields as "unset" and resolving them per
// read was rejected, because every reader would have to repeat the rules.
// Values that a file leaves unset hold their built-in defaults after Parse
// for the same reason.
//
// A parsed Config is immutable and safe for concurrent readers. Reloading
// (SIGHUP) parses a new Config and swaps the pointer, and nothing is patched
// in place. A file with any error yields no Config at all, so a reload never
// applies half of a broken file.
package config

import (
	_ "embed"
	"fmt"
	"net/http"
	"net/netip"
	"os"
	"strings"
	"time"
)

//go:embed default.conf
var defaultConf []byte

// Config is one parsed smta.conf. Every field holds its built-in default when
// the file does not set it. Callers must not modify a Config or anything it
// points to, because the daemon shares one Config between all goroutines and
// replaces it as a whole on reload.
type Config struct {
	File string // the file name given to Parse, used in error messages

	HostName string // greeting and EHLO name; default os.Hostname
	HostID   string // message-id prefix, [A-Za-z0-9]{1,32}; default derived from HostName

	// Listeners are the addresses smta accepts SMTP on, in file order.
	// Default: 127.0.0.1:2525 when the file names none.
	Listeners []Listener

	// SpoolDir and LogDir are used as written. A relative path is resolved
	// against the daemon's working directory when the daemon opens it,
	// which is what `make run` relies on (./var/spool).
	SpoolDir string // default "./var/spool"
	LogDir   string // default "./var/log"

	MaxMessageSize int64 // octets, at least 64k (RFC 5321 section 4.5.3.1.7); default 50M
	MaxRecipients  int   // per transaction; default 100
	MaxErrors      int   // protocol errors per session before 421; default 10

	DNSServers []netip.AddrPort // resolvers for MX lookups; empty means /etc/resolv.conf

	InboundMode    string // "epoll", "io_uring", "goroutine", or "" for the engine's choice
	InboundWorkers int    // shards; 0 means one per CPU
	// InboundCPUAffinity pins shard i's thread to CPU i modulo the CPU
	// count (epoll and io_uring modes); default no.
	InboundCPUAffinity bool

	MaxConnections      int // concurrent inbound sessions; 0 means no limit
	MaxConnectionsPerIP int // concurrent inbound sessions per client address; 0 means no limit

	// Server timeouts, after RFC 5321 section 4.5.3.2.
	SMTPCommandTimeout time.Duration // waiting for the next command; default 5m (section 4.5.3.2.7)
	SMTPDataTimeout    time.Duration // waiting for the next block of DATA; default 3m (section 4.5.3.2.5)

	// TLSCertificate and TLSKey are PEM file paths, both set or both empty.
	// Without them smta offers no STARTTLS and accepts no implicit-TLS listener.
	TLSCertificate string
	TLSKey         string

	AcctSync    time.Duration // how often accounting files are synced to disk; default 1s
	SegmentSize int64         // spool segment file size in octets; default 64M

	HTTPMgmtListener netip.AddrPort // management API address; zero means disabled

	// Sources are the <source> blocks sorted by prefix length, longest
	// first, so the first match is the most specific one. Use Source.
	Sources []*Source

	// Domains maps lower-case block names ("example.com", "*.example.com",
	// "*") to settings already merged with <domain *> and the built-in
	// defaults. Always contains "*". Use Domain.
	Domains map[string]*Domain

	AcctFiles []*AcctFile
	Webhooks  []*Webhook

	// The following blocks are parsed for structure only. Their directives
	// are kept as written for the packages that interpret them.
	VirtualMTAs      map[string]*RawBlock // <virtual-mta NAME>
	VirtualMTAPools  map[string]*RawBlock // <virtual-mta-pool NAME>; members checked to exist
	SMTPPatternLists map[string]*RawBlock // <smtp-pattern-list NAME>
}

// Listener is one smtp-listener directive.
type Listener struct {
	Addr netip.AddrPort // port 0 lets the kernel choose a free port (for tests)
	TLS  bool           // implicit TLS on connect (port 465 style) instead of STARTTLS
}

// Source holds the policy for SMTP clients whose address falls in Prefix.
// Settings do not inherit between <source> blocks: a block sets everything
// it does not mention to the defaults below.
type Source struct {
	Prefix netip.Prefix // masked; invalid for the built-in fallback
	Line   int          // line of the <source> tag; 0 for the built-in fallback

	AlwaysAllowRelaying bool // accept any recipient domain; default no
	HideMessageSource   bool // omit the client address from the Received header; default no

	// MaxConnections bounds concurrent sessions from each client address in
	// Prefix, replacing max-connections-per-ip; 0 means the global limit.
	MaxConnections int
}

// Domain holds delivery settings for one destination domain.
type Domain struct {
	Name string // block name as matched: "example.com", "*.example.com" or "*"
	Line int    // line of the <domain> tag; 0 for built-in settings

	Route Route // next hop; zero means MX resolution of the recipient domain

	RetryAfter          time.Duration // delay between attempts after a 4xx; default 10m
	BounceAfter         time.Duration // age at which a message expires and bounces; default 4d12h
	MaxSMTPOut          int           // concurrent outbound connections to this domain; default 20
	MaxMsgPerConnection int           // messages sent over one connection before QUIT; default 100
	UseStartTLS         bool          // STARTTLS when the server offers it; default yes
	DSN                 bool          // send delivery status notifications for bounces; default yes
}

// Route is a fixed next hop from a route directive.
type Route struct {
	Host string // host name or IP address, without brackets
	Port uint16 // default 25
	// Literal is set when the host was written in brackets ("[192.0.2.1]:25")
	// or is an IP address: connect to it directly, without MX resolution.
	// An unbracketed host name is resolved through its MX records.
	Literal bool
}

// IsZero reports whether no route was configured.
func (r Route) IsZero() bool { return r.Host == "" }

// String formats the route as it is written in the configuration file.
func (r Route) String() string {
	if r.Host == "" {
		return ""
	}
	host := r.Host
	if r.Literal {
		host = "[" + host + "]"
	}
	return fmt.Sprintf("%s:%d", host, r.Port)
}

// AcctFile is one <acct-file PATH> block: where accounting records go and
// how the file rotates.
type AcctFile struct {
	Path string // as written; a relative path is relative to the working directory
	Line int

	Records        []string      // record types (acct.TypeReceived...); default all
	MaxSize        int64         // octets before rotation; 0 means rotate by time only (default)
	RotateInterval time.Duration // default 24h
	Keep           int           // rotated files kept; default 30
	Compress       bool          // gzip rotated files; default no
}

// Webhook is one <webhook URL> block: an HTTP endpoint that receives
// accounting records as JSON batches.
type Webhook struct {
	URL  string // absolute http or https URL
	Line int

	Records   []string      // record types; default all
	BatchSize int           // records per POST; default 100
	MaxDelay  time.Duration // maximum time a record waits for its batch to fill; default 5s
	Timeout   time.Duration // per request; default 30s
	Header    http.Header   // extra request headers (header NAME VALUE); never logged
}

// RawBlock is a block parsed for structure only.
type RawBlock struct {
	Kind       string // "virtual-mta", "virtual-mta-pool", "smtp-pattern-list", or a nested kind
	Name       string
	Line       int
	Directives []Directive
	Blocks     []*RawBlock // nested blocks, such as <domain> inside <virtual-mta>
}

// Directive is one raw configuration line.
type Directive struct {
	Name  string   // lower case
	Args  []string // whitespace-separated values
	Value string   // everything after the name, for values that contain spaces
	Line  int
}

// AllRecordTypes are the accounting record types in PowerMTA's order.
var AllRecordTypes = []string{"r", "d", "b", "t", "e", "rj", "f"}

// Load reads and parses the file at path.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return Parse(path, data)
}

// Default parses the embedded default configuration, which `make run` uses
// and `smta run` falls back to without --config. It panics if the embedded
// file is invalid, which the package tests rule out.
func Default() *Config {
	c, err := Parse("default.conf", defaultConf)
	if err != nil {
		panic("config: embedded default.conf: " + err.Error())
	}
	return c
}

// DefaultText returns a copy of the embedded default configuration file.
func DefaultText() []byte {
	return append([]byte(nil), defaultConf...)
}

// Domain returns the delivery settings for a destination domain: its own
// <domain> block (names compare case-insensitively, trailing dot ignored),
// else the nearest wildcard block ("*.example.com" covers a.example.com and
// a.b.example.com, but not example.com itself), else <domain *>. The result
// is never nil and must not be modified.
func (c *Config) Domain(name string) *Domain {
	name = strings.ToLower(strings.TrimSuffix(name, "."))
	if d, ok := c.Domains[name]; ok {
		return d
	}

	// NB: the map lookup with string(key) does not allocate, so the
	// wildcard walk costs no garbage per recipient.
	var buf [256]byte
	for rest := name; ; {
		i := strings.IndexByte(rest, '.')
		if i < 0 {
			break
		}
		rest = rest[i+1:]
		key := append(append(buf[:0], "*."...), rest...)
		if d, ok := c.Domains[string(key)]; ok {
			return d
		}
	}
	if d, ok := c.Domains["*"]; ok {
		return d
	}
	d := builtinDomain()
	return &d
}

// Source returns the policy for a client address: the matching <source>
// block with the longest prefix, else a fallback that denies relaying.
// IPv4-mapped IPv6 addresses (::ffff:192.0.2.1) match IPv4 blocks. The
// result is never nil and must not be modified.
func (c *Config) Source(ip netip.Addr) *Source {
	ip = ip.Unmap().WithZone("")
	for _, s := range c.Sources {
		if s.Prefix.Contains(ip) {
			return s
		}
	}
	return &fallbackSource
}

// fallbackSource applies to clients that no <source> block matches.
var fallbackSource = Source{}
