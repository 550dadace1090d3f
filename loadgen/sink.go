package loadgen

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// SinkConfig configures a Sink. The zero value listens on an ephemeral
// loopback port, accepts everything and checks message structure.
type SinkConfig struct {
	// Listen is the host:port to listen on; "" means 127.0.0.1:0. A
	// non-loopback address is rejected unless AllowRemote is set.
	Listen      string
	AllowRemote bool

	// TempFail and PermFail are the shares (0 to 1) of RCPT commands
	// rejected with 451 4.3.0 and 550 5.1.1 replies instead of 250.
	TempFail float64
	PermFail float64

	// Latency delays the reply to end of data, as a server that syncs
	// the message to disk before replying would. GreetingDelay delays
	// the 220 greeting.
	Latency       time.Duration
	GreetingDelay time.Duration

	// CountOnly skips the message structure check.
	CountOnly bool

	// MaxMessages closes Done once this many messages were accepted; 0
	// means no limit. The sink keeps serving after that.
	MaxMessages uint64

	// IdleTimeout closes a connection that sends nothing for this long;
	// 0 means 5 minutes (RFC 5321 section 4.5.3.2.7 server timeout).
	IdleTimeout time.Duration

	// Seed makes fault injection repeatable; 0 picks a random seed.
	Seed uint64

	// Logger receives starts, stops and accept errors; nil means
	// slog.Default().
	Logger *slog.Logger
}

// SinkStats are the counters of a Sink. Messages and Bytes count only
// messages accepted with 250 at end of data, and Bytes is the message size
// after dot-unstuffing, CRLF included.
type SinkStats struct {
	Connections    uint64 `json:"connections"`
	Messages       uint64 `json:"messages"`
	Recipients     uint64 `json:"recipients"` // accepted RCPT commands of accepted messages
	Bytes          uint64 `json:"bytes"`
	TempFailed     uint64 `json:"temp_failed"` // RCPT commands rejected with an injected 451
	PermFailed     uint64 `json:"perm_failed"` // RCPT commands rejected with an injected 550
	Malformed      uint64 `json:"malformed"`   // accepted messages that failed the structure check
	ProtocolErrors uint64 `json:"protocol_errors"`

	// FirstMessage and LastMessage are the times of the first and last
	// accepted end of data, zero before any.
	FirstMessage time.Time `json:"first_message"`
	LastMessage  time.Time `json:"last_message"`
}

// sinkMaxSize is the SIZE limit advertised in EHLO, in octets.
const sinkMaxSize = 64 << 20

// sinkMaxRecipients is the per-transaction recipient limit (RFC 5321
// section 4.5.3.1.8 requires accepting at least 100).
const sinkMaxRecipients = 1000

// Sink is a fast SMTP receiver for benchmarks and tests.
//
// Each connection is served by its own goroutine with a buffered reader
// and writer. Replies are flushed only when the reader has no buffered
// input left, which is what makes PIPELINING (RFC 2920) cheap: a client
// that sends MAIL, RCPT and DATA in one packet gets the three replies in
// one packet. Counters are atomics, updated once per accepted message or
// injected failure, so Stats can be read at any time without stopping the
// sink.
//
// The sink never stores message bodies. It is not an MTA: it accepts any
// address, and it replies 250 to end of data even for a message that
// fails the structure check (counted as Malformed), because a benchmark
// peer must count, not judge.
//
// An event loop (one epoll set for all connections) was not used. The
// sink must be obviously correct, since it judges other servers, and
// goroutines with blocking I/O reach several thousand messages per second
// on two cores (BenchmarkSendSink), far above the servers under test.
type Sink struct {
	// Immutable after StartSink.
	cfg      SinkConfig
	listener net.Listener
	log      *slog.Logger
	done     chan struct{} // closed when MaxMessages were accepted

	// Atomics, updated by connection goroutines.
	connections    atomic.Uint64
	messages       atomic.Uint64
	recipients     atomic.Uint64
	bytes          atomic.Uint64
	tempFailed     atomic.Uint64
	permFailed     atomic.Uint64
	malformed      atomic.Uint64
	protocolErrors atomic.Uint64
	firstMessage   atomic.Int64 // unix nanoseconds; 0 before any
	lastMessage    atomic.Int64 // unix nanoseconds; 0 before any
	connSeq        atomic.Uint64

	// mu guards conns and closed.
	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool

	// Synchronize themselves.
	doneOnce sync.Once      // closes done
	wg       sync.WaitGroup // the accept loop and connection goroutines
}

// StartSink listens on cfg.Listen and serves connections until Close.
func StartSink(cfg SinkConfig) (*Sink, error) {
	if cfg.Listen == "" {
		cfg.Listen = "127.0.0.1:0"
	}

	if err := CheckTarget(cfg.Listen, cfg.AllowRemote); err != nil {
		return nil, fmt.Errorf("loadgen: sink listen address: %w", err)
	}
	if cfg.TempFail < 0 || cfg.PermFail < 0 || cfg.TempFail+cfg.PermFail > 1 {
		return nil, fmt.Errorf("loadgen: invalid failure shares tempfail=%v permfail=%v: each must be in [0, 1] and their sum at most 1", cfg.TempFail, cfg.PermFail)
	}
	if cfg.IdleTimeout == 0 {
		cfg.IdleTimeout = 5 * time.Minute
	}
	if cfg.Seed == 0 {
		cfg.Seed = rand.Uint64()
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}

	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("loadgen: sink listen on %s: %w", cfg.Listen, err)
	}
	s := &Sink{
		cfg:      cfg,
		listener: ln,
		log:      cfg.Logger,
		done:     make(chan struct{}),
		conns:    make(map[net.Conn]struct{}),
	}
	s.log.Info("sink started", "addr", ln.Addr().String(), "tempfail", cfg.TempFail, "permfail", cfg.PermFail, "latency", cfg.Latency)
	s.wg.Add(1)
	go s.acceptLoop()
	return s, nil
}

// Addr returns the address the sink listens on, as host:port.
func (s *Sink) Addr() string { return s.listener.Addr().String() }

// Done is closed once MaxMessages messages were accepted. It is never
// closed when MaxMessages is 0.
func (s *Sink) Done() <-chan struct{} { return s.done }

// Stats returns a snapshot of the counters. Counters are read one by one,
// so a snapshot taken under load may be off by the messages in flight.
func (s *Sink) Stats() SinkStats {
	st := SinkStats{
		Connections:    s.connections.Load(),
		Messages:       s.messages.Load(),
		Recipients:     s.recipients.Load(),
		Bytes:          s.bytes.Load(),
		TempFailed:     s.tempFailed.Load(),
		PermFailed:     s.permFailed.Load(),
		Malformed:      s.malformed.Load(),
		ProtocolErrors: s.protocolErrors.Load(),
	}
	if ns := s.firstMessage.Load(); ns != 0 {
		st.FirstMessage = time.Unix(0, ns)
	}
	if ns := s.lastMessage.Load(); ns != 0 {
		st.LastMessage = time.Unix(0, ns)
	}
	return st
}

// WaitMessages blocks until the sink accepted at least n messages or ctx
// ends. It polls every millisecond, which bounds the added latency.
func (s *Sink) WaitMessages(ctx context.Context, n uint64) error {
	ticker := time.NewTicker(time.Millisecond)
	defer ticker.Stop()
	for s.messages.Load() < n {
		select {
		case <-ctx.Done():
			return fmt.Errorf("loadgen: sink has %d of %d messages: %w", s.messages.Load(), n, ctx.Err())
		case <-ticker.C:
		}
	}
	return nil
}

// Close stops accepting, closes every open connection and waits for the
// connection goroutines to end.
func (s *Sink) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	err := s.listener.Close()
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
	st := s.Stats()
	s.log.Info("sink stopped", "addr", s.Addr(), "messages", st.Messages, "recipients", st.Recipients, "bytes", st.Bytes)
	return err
}

func (s *Sink) acceptLoop() {
	defer s.wg.Done()
	var tempDelay time.Duration
	for {
		c, err := s.listener.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of file descriptors and similar: back off (bounded at
			// one second) as net/http does, instead of spinning.
			tempDelay = min(max(2*tempDelay, 5*time.Millisecond), time.Second)
			s.log.Warn("sink accept failed", "err", err, "retry_in", tempDelay)
			time.Sleep(tempDelay)
			continue
		}
		tempDelay = 0

		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			c.Close()
			return
		}
		s.conns[c] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()

		s.connections.Add(1)
		seq := s.connSeq.Add(1)
		go func() {
			defer s.wg.Done()
			sc := newSinkConn(s, c, seq)
			sc.serve()
			s.mu.Lock()
			delete(s.conns, c)
			s.mu.Unlock()
			c.Close()
		}()
	}
}

// recordMessage counts one accepted message.
func (s *Sink) recordMessage(rcpts int, size int64, malformed bool) {
	now := time.Now().UnixNano()
	s.firstMessage.CompareAndSwap(0, now)
	s.lastMessage.Store(now)
	s.recipients.Add(uint64(rcpts))
	s.bytes.Add(uint64(size))
	if malformed {
		s.malformed.Add(1)
	}
	n := s.messages.Add(1)
	if s.cfg.MaxMessages > 0 && n >= s.cfg.MaxMessages {
		s.doneOnce.Do(func() { close(s.done) })
	}
}
