package loadgen

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"
)

// IdleConfig configures HoldIdle.
type IdleConfig struct {
	Target      string // host:port; loopback unless AllowRemote
	AllowRemote bool
	Connections int           // connections to open
	Hold        time.Duration // how long to keep them open once all are up; must be > 0
	Timeout     time.Duration // per connect and greeting; 0 means 30 s
	EHLO        bool          // send EHLO after the greeting, so the session is past its first command

	// Ready, when not nil, is called once with the number of open
	// connections when every attempt finished, before the hold starts.
	// Benchmarks measure server memory there.
	Ready func(open int)
}

// HoldIdle opens cfg.Connections SMTP connections, reads each greeting
// (and EHLO reply), keeps them open and idle for cfg.Hold, then closes
// them. It returns the number that were open. Connections are opened 100
// at a time so the listen backlog of the server is not the limit being
// measured.
func HoldIdle(ctx context.Context, cfg IdleConfig) (int, error) {
	if err := CheckTarget(cfg.Target, cfg.AllowRemote); err != nil {
		return 0, err
	}
	if cfg.Connections <= 0 || cfg.Hold <= 0 {
		return 0, errors.New("loadgen: idle needs connections > 0 and hold > 0")
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 30 * time.Second
	}

	conns := make([]*client, cfg.Connections)
	var firstErr error
	var errMu sync.Mutex
	const batch = 100
	for lo := 0; lo < cfg.Connections && ctx.Err() == nil; lo += batch {
		var wg sync.WaitGroup
		for i := lo; i < min(lo+batch, cfg.Connections); i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				c, err := dialIdle(cfg)
				if err != nil {
					errMu.Lock()
					firstErr = cmpOr(firstErr, err)
					errMu.Unlock()
					return
				}
				conns[i] = c
			}()
		}
		wg.Wait()
	}

	open := 0
	for _, c := range conns {
		if c != nil {
			open++
		}
	}
	if cfg.Ready != nil {
		cfg.Ready(open)
	}
	select {
	case <-ctx.Done():
	case <-time.After(cfg.Hold):
	}
	for _, c := range conns {
		if c != nil {
			c.conn.Close()
		}
	}
	if open < cfg.Connections && firstErr != nil {
		return open, fmt.Errorf("loadgen: %d of %d connections failed, first error: %w", cfg.Connections-open, cfg.Connections, firstErr)
	}
	return open, nil
}

// idleWriteBuffer keeps 10,000 idle clients at 40 MiB of buffers.
const idleWriteBuffer = 4 << 10

func dialIdle(cfg IdleConfig) (*client, error) {
	if cfg.EHLO {
		return dialClient(cfg.Target, cfg.Timeout, false, idleWriteBuffer)
	}
	conn, err := net.DialTimeout("tcp", cfg.Target, cfg.Timeout)
	if err != nil {
		return nil, fmt.Errorf("loadgen: connecting to %s: %w", cfg.Target, err)
	}
	c := newClient(conn, cfg.Timeout, idleWriteBuffer)
	if err := c.expect("greeting", 220); err != nil {
		conn.Close()
		return nil, err
	}
	return c, nil
}

func cmpOr(a, b error) error {
	if a != nil {
		return a
	}
	return b
}
