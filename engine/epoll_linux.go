//go:build linux

package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

func init() { modes["epoll"] = newEpollServer }

// epollServer runs Config.Workers shards, each with its own listening
// sockets, epoll set and connection table. See the package documentation for
// the design.
type epollServer struct {
	// Immutable after newEpollServer.
	cfg     Config
	backend Backend
	log     *slog.Logger
	limits  *connLimits
	kind    string // "epoll", or "io_uring" for shards driven by a ring

	// Set once by start, read-only afterwards.
	shards []*shard
	bound  []net.Addr

	// tlsSrv serves connections handed off for TLS with the goroutine
	// mode's driver; see tls_linux.go. Its own limits are off because the
	// shards count those connections in limits.
	tlsSrv *goroutineServer

	nextSession atomic.Uint64
	stopOnce    sync.Once
}

func newEpollServer(cfg Config, b Backend) (inbound, error) {
	return newShardedServer(cfg, b, "epoll")
}

func newShardedServer(cfg Config, b Backend, kind string) (*epollServer, error) {
	if len(cfg.Listeners) == 0 {
		return nil, errors.New("engine: no listeners configured")
	}
	for _, l := range cfg.Listeners {
		if l.TLS && cfg.TLS == nil {
			return nil, fmt.Errorf("engine: listener %s wants TLS but no certificate is configured", l.Addr)
		}
	}
	if cfg.Workers <= 0 {
		cfg.Workers = runtime.NumCPU()
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}

	s := &epollServer{
		cfg:     cfg,
		backend: b,
		log:     cfg.Logger,
		limits:  newConnLimits(cfg.MaxConnections, cfg.MaxConnectionsPerIP),
		kind:    kind,
	}
	gcfg := cfg
	gcfg.Listeners = nil
	gcfg.MaxConnections, gcfg.MaxConnectionsPerIP = 0, 0
	gs, err := newGoroutineServer(gcfg, b)
	if err != nil {
		return nil, err
	}
	s.tlsSrv = gs.(*goroutineServer)
	return s, nil
}

func (s *epollServer) name() string { return s.kind }

func (s *epollServer) addrs() []net.Addr { return s.bound }

// start binds one SO_REUSEPORT socket per listener and shard, then starts the
// shards. Port 0 is resolved by the first shard's bind, and the other shards
// bind the same port so the kernel spreads connections over all of them.
func (s *epollServer) start() error {
	fds := make([][]int, s.cfg.Workers) // [shard][listener]
	closeAll := func() {
		for _, row := range fds {
			for _, fd := range row {
				unix.Close(fd)
			}
		}
	}
	for _, l := range s.cfg.Listeners {
		ap, err := parseListenAddr(l.Addr)
		if err != nil {
			closeAll()
			return err
		}
		for k := range fds {
			fd, bound, err := listenReusePort(ap)
			if err != nil {
				closeAll()
				return fmt.Errorf("engine: listening on %s: %w", l.Addr, err)
			}
			fds[k] = append(fds[k], fd)
			if k == 0 {
				ap = bound
				s.bound = append(s.bound, net.TCPAddrFromAddrPort(bound))
			}
		}
	}

	timing := newTimeouts(s.cfg.Timeouts)
	for k := range fds {
		sh, err := newShard(s, k, fds[k], timing)
		if err != nil {
			for _, started := range s.shards {
				started.stop(stopForce)
			}
			closeAll()
			return err
		}
		s.shards = append(s.shards, sh)
	}
	for _, sh := range s.shards {
		go sh.run()
	}
	s.log.Info("inbound started", "mode", s.kind, "shards", len(s.shards), "listeners", len(s.bound))
	return nil
}

// shutdown stops accepting, lets transactions in progress finish until ctx
// is done, then sends 421 to every remaining session.
func (s *epollServer) shutdown(ctx context.Context) error {
	for _, sh := range s.shards {
		sh.stop(stopDrain)
	}
	tlsDone := make(chan error, 1)
	go func() { tlsDone <- s.tlsSrv.shutdown(ctx) }()

	if !s.waitShards(ctx) {
		for _, sh := range s.shards {
			sh.stop(stopForce)
		}
		late, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if !s.waitShards(late) {
			return errors.New("engine: shards still running after shutdown deadline")
		}
	}
	return <-tlsDone
}

// waitShards waits until every shard has exited, or ctx is done, and reports
// whether they all exited.
func (s *epollServer) waitShards(ctx context.Context) bool {
	for _, sh := range s.shards {
		select {
		case <-sh.done:
		case <-ctx.Done():
			return false
		}
	}
	return true
}

func (s *epollServer) stats() Stats {
	var st Stats
	for _, sh := range s.shards {
		sh.counters.sumInto(&st)
	}
	st.Open += s.tlsSrv.open.Load()
	return st
}

// timeouts are the session timeouts with defaults applied.
type timeouts struct {
	command, data time.Duration
}

func newTimeouts(t Timeouts) timeouts {
	// RFC 5321 section 4.5.3.2.7 recommends 5 minutes between commands and
	// section 4.5.3.2.6 recommends 3 minutes between DATA blocks.
	out := timeouts{command: 5 * time.Minute, data: 3 * time.Minute}
	if t.Command > 0 {
		out.command = t.Command
	}
	if t.Data > 0 {
		out.data = t.Data
	}
	return out
}

// parseListenAddr accepts "ip:port" and ":port". Host names are rejected so
// that binding never depends on a resolver.
func parseListenAddr(s string) (netip.AddrPort, error) {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("engine: invalid listener address %q: %w", s, err)
	}
	if host == "" {
		host = "::"
	}
	ap, err := netip.ParseAddrPort(net.JoinHostPort(host, port))
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("engine: invalid listener address %q: the host must be an IP address: %w", s, err)
	}
	return ap, nil
}

// listenReusePort opens a non-blocking listening TCP socket on ap with
// SO_REUSEADDR and SO_REUSEPORT and returns it with the address it bound.
func listenReusePort(ap netip.AddrPort) (int, netip.AddrPort, error) {
	family := unix.AF_INET6
	if ap.Addr().Is4() {
		family = unix.AF_INET
	}
	fd, err := unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, unix.IPPROTO_TCP)
	if err != nil {
		return -1, netip.AddrPort{}, osErr("socket", err)
	}
	fail := func(call string, err error) (int, netip.AddrPort, error) {
		unix.Close(fd)
		return -1, netip.AddrPort{}, osErr(call, err)
	}

	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1); err != nil {
		return fail("setsockopt SO_REUSEADDR", err)
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEPORT, 1); err != nil {
		return fail("setsockopt SO_REUSEPORT", err)
	}
	if family == unix.AF_INET6 && ap.Addr().IsUnspecified() {
		// "[::]:25" and ":25" serve IPv4 too, through mapped addresses.
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, 0); err != nil {
			return fail("setsockopt IPV6_V6ONLY", err)
		}
	}

	if err := unix.Bind(fd, toSockaddr(ap)); err != nil {
		return fail("bind", err)
	}
	// The backlog is capped by net.core.somaxconn.
	if err := unix.Listen(fd, 4096); err != nil {
		return fail("listen", err)
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		return fail("getsockname", err)
	}
	return fd, fromSockaddr(sa), nil
}

func toSockaddr(ap netip.AddrPort) unix.Sockaddr {
	if ap.Addr().Is4() {
		return &unix.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().As4()}
	}
	return &unix.SockaddrInet6{Port: int(ap.Port()), Addr: ap.Addr().As16()}
}

func fromSockaddr(sa unix.Sockaddr) netip.AddrPort {
	switch sa := sa.(type) {
	case *unix.SockaddrInet4:
		return netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), uint16(sa.Port))
	case *unix.SockaddrInet6:
		return netip.AddrPortFrom(netip.AddrFrom16(sa.Addr).Unmap(), uint16(sa.Port))
	}
	return netip.AddrPort{}
}

func osErr(call string, err error) error {
	return fmt.Errorf("engine: %w", os.NewSyscallError(call, err))
}
