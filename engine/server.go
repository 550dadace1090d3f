package engine

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"time"

	"smta/smtp"
)

// Listener is one address smta accepts SMTP on.
type Listener struct {
	Addr string // host:port
	TLS  bool   // implicit TLS (port 465 style) instead of plaintext with STARTTLS
}

// Timeouts are the server-side timeouts of RFC 5321 section 4.5.3.2.
type Timeouts struct {
	Command time.Duration // waiting for a command line; 0 means 5m
	Data    time.Duration // waiting for the next DATA block; 0 means 3m
}

// Config configures an inbound Server. Immutable once passed to New.
type Config struct {
	Mode    string // "goroutine", "epoll" or "io_uring"; "" means epoll where available
	Workers int    // shards for epoll/io_uring; 0 means one per CPU
	// CPUAffinity pins shard i's thread to CPU i modulo the CPU count
	// (sched_setaffinity), so a shard keeps its caches; epoll/io_uring only.
	CPUAffinity bool
	Listeners   []Listener
	TLS         *tls.Config // nil: no STARTTLS and no implicit TLS listeners
	Session     smtp.Config // per-session limits; RemoteAddr is filled per connection
	Timeouts    Timeouts
	// MaxConnections and MaxConnectionsPerIP bound concurrent sessions; 0 means no limit.
	MaxConnections      int
	MaxConnectionsPerIP int
	Logger              *slog.Logger
}

// inbound is the interface every inbound mode implements.
type inbound interface {
	name() string // the mode actually running, after any fallback
	start() error
	addrs() []net.Addr
	shutdown(ctx context.Context) error
}

// modes maps a Config.Mode to its constructor. Modes register themselves in
// init functions so that platform-specific files stay self-contained.
var modes = map[string]func(Config, Backend) (inbound, error){}

// Server accepts SMTP connections in one of the inbound modes.
type Server struct {
	impl inbound
}

// New creates a Server in cfg.Mode. Unknown modes are an error.
func New(cfg Config, b Backend) (*Server, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	mode := cfg.Mode
	if mode == "" {
		mode = "epoll"
		if _, ok := modes[mode]; !ok {
			mode = "goroutine"
		}
	}
	ctor, ok := modes[mode]
	if !ok {
		return nil, fmt.Errorf("engine: unknown inbound mode %q", mode)
	}
	impl, err := ctor(cfg, b)
	if err != nil {
		return nil, err
	}
	return &Server{impl: impl}, nil
}

// Mode returns the inbound mode actually in use (after any fallback).
func (s *Server) Mode() string { return s.impl.name() }

// Start binds the listeners and begins accepting.
func (s *Server) Start() error { return s.impl.start() }

// Addrs returns the bound listener addresses, in Config.Listeners order.
func (s *Server) Addrs() []net.Addr { return s.impl.addrs() }

// Shutdown stops accepting, lets sessions finish their current transaction
// until ctx is done, replies 421 to the rest and returns when all are closed.
func (s *Server) Shutdown(ctx context.Context) error { return s.impl.shutdown(ctx) }
