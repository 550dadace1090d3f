package loadgen

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// SendConfig configures Send. Messages or Duration (or both) must be set:
// every run is bounded.
type SendConfig struct {
	// Target is the server's host:port; "" means 127.0.0.1:2525. It must
	// be a loopback address unless AllowRemote is set.
	Target      string
	AllowRemote bool

	Connections int           // concurrent SMTP connections; 0 means 1
	Messages    int           // messages to send; 0 means no count limit
	Duration    time.Duration // stop after this long; 0 means no time limit

	// Rate switches to an open loop: messages start at this many per
	// second whether or not earlier ones finished. 0 means closed loop.
	Rate float64

	Pipelining bool     // use PIPELINING (RFC 2920) when the server offers it
	Recipients int      // recipients per message; 0 means 1
	Domains    []string // recipient domains, used in turn; nil means sink.test
	From       string   // envelope and header sender; "" means loadgen@example.org
	Size       SizeSpec // zero means 10 KiB

	// Timeout bounds each connect and each reply wait, and how long a
	// connection keeps retrying to connect before it gives up. 0 means
	// 30 s.
	Timeout time.Duration

	// Progress receives one line per second; nil means none.
	Progress io.Writer

	// Seed makes sizes and bodies repeatable; 0 picks a random seed.
	Seed uint64
}

func (cfg *SendConfig) setDefaults() error {
	if cfg.Target == "" {
		cfg.Target = "127.0.0.1:2525"
	}
	if err := CheckTarget(cfg.Target, cfg.AllowRemote); err != nil {
		return err
	}
	if cfg.Messages < 0 || cfg.Duration < 0 || cfg.Rate < 0 {
		return errors.New("loadgen: messages, duration and rate must not be negative")
	}
	if cfg.Messages == 0 && cfg.Duration == 0 {
		return errors.New("loadgen: unbounded run: set messages, duration or both")
	}

	if cfg.Connections <= 0 {
		cfg.Connections = 1
	}
	if cfg.Recipients <= 0 {
		cfg.Recipients = 1
	}
	if cfg.Recipients > sinkMaxRecipients {
		return fmt.Errorf("loadgen: %d recipients per message is above the maximum of %d", cfg.Recipients, sinkMaxRecipients)
	}
	if len(cfg.Domains) == 0 {
		cfg.Domains = []string{"sink.test"}
	}
	if cfg.From == "" {
		cfg.From = "loadgen@example.org"
	}
	if cfg.Size == (SizeSpec{}) {
		cfg.Size = SizeSpec{Min: 10 << 10, Max: 10 << 10}
	}
	if err := cfg.Size.validate(); err != nil {
		return fmt.Errorf("loadgen: invalid size: %w", err)
	}

	if cfg.Timeout <= 0 {
		cfg.Timeout = 30 * time.Second
	}
	if cfg.Seed == 0 {
		cfg.Seed = rand.Uint64()
	}
	return nil
}

// job is one message to send. intended is when it should have started:
// the start of its attempt in a closed loop, its scheduled time in an
// open loop.
type job struct {
	seq      int
	intended time.Time
}

// Send runs a load against cfg.Target and returns its report. It stops
// when cfg.Messages messages were attempted, cfg.Duration passed, or ctx
// ends, whichever comes first, or when every connection gave up
// connecting. Messages in flight then complete (bounded by cfg.Timeout).
// A run in which no connection could be opened returns an error along
// with the report.
func Send(ctx context.Context, cfg SendConfig) (*Report, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	if cfg.Duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, cfg.Duration)
		defer cancel()
	}
	// stop ends the producer once every worker has given up, so a run
	// against a dead target cannot block on a full job channel.
	ctx, stop := context.WithCancel(ctx)
	defer stop()

	rec := newRecorder()
	start := time.Now()
	jobs := make(chan job, 4096)
	runID := strconv.FormatUint(cfg.Seed%1_000_000, 36) + "." + strconv.FormatInt(start.Unix(), 36)

	// Producer: a closed loop hands out sequence numbers as fast as
	// workers take them, so each worker starts its next message when
	// the previous one finished. An open loop sleeps until each
	// message's scheduled time. When every worker is busy, the job waits
	// in the channel and its latency includes that wait.
	go func() {
		defer close(jobs)
		for seq := 0; cfg.Messages == 0 || seq < cfg.Messages; seq++ {
			j := job{seq: seq}
			if cfg.Rate > 0 {
				j.intended = start.Add(time.Duration(float64(seq) / cfg.Rate * float64(time.Second)))
				if wait := time.Until(j.intended); wait > 0 {
					select {
					case <-ctx.Done():
						return
					case <-time.After(wait):
					}
				}
			}
			select {
			case <-ctx.Done():
				return
			case jobs <- j:
			}
		}
	}()

	var connected atomic.Uint64
	var lastConnErr atomic.Pointer[error]
	var wg sync.WaitGroup
	for w := range cfg.Connections {
		wg.Add(1)
		go func() {
			defer wg.Done()
			wk := worker{cfg: &cfg, rec: rec, runID: runID, rng: rand.New(rand.NewPCG(cfg.Seed, uint64(w)))}
			wk.run(ctx, jobs, &connected, &lastConnErr)
		}()
	}

	// Progress lines until the workers are done.
	workersDone := make(chan struct{})
	go func() {
		wg.Wait()
		stop()
		close(workersDone)
	}()
	if cfg.Progress != nil {
		ticker := time.NewTicker(time.Second)
		last, lastSent := start, uint64(0)
	loop:
		for {
			select {
			case <-workersDone:
				break loop
			case now := <-ticker.C:
				lastSent = rec.progress(cfg.Progress, start, last, lastSent)
				last = now
			}
		}
		ticker.Stop()
	}
	<-workersDone

	// The run ends at the last final reply, not after the QUITs, so the
	// rate counts only message transactions.
	elapsed := time.Since(start)
	rec.mu.Lock()
	if !rec.lastDone.IsZero() {
		elapsed = rec.lastDone.Sub(start)
	}
	rec.mu.Unlock()

	// In an open loop, messages still queued when the run ended were due
	// but never started. They are reported, because leaving them out would
	// hide the worst latencies of an overloaded server.
	var unstarted uint64
	if cfg.Rate > 0 {
		for range jobs {
			unstarted++
		}
	}

	rec.mu.Lock()
	defer rec.mu.Unlock()
	report := &Report{
		Target:      cfg.Target,
		Mode:        "closed",
		Rate:        cfg.Rate,
		Connections: cfg.Connections,
		Size:        cfg.Size.String(),
		Recipients:  cfg.Recipients,
		Pipelining:  cfg.Pipelining,
		Sent:        rec.sent,
		Failed:      rec.failed,
		Accepted:    rec.rcpts,
		Bytes:       rec.bytes,
		Elapsed:     elapsed,
		MsgsPerSec:  float64(rec.sent) / elapsed.Seconds(),
		Latency:     summarize(rec.total),
		Errors:      rec.errors,
		Unstarted:   unstarted,
	}
	if cfg.Rate > 0 {
		report.Mode = "open"
	}
	if connected.Load() == 0 {
		if errp := lastConnErr.Load(); errp != nil {
			return report, fmt.Errorf("loadgen: no connection to %s succeeded: %w", cfg.Target, *errp)
		}
	}
	return report, nil
}

// worker owns one SMTP connection at a time.
type worker struct {
	cfg   *SendConfig
	rec   *recorder
	runID string
	rng   *rand.Rand
	buf   []byte
	rcpts []string
}

// reconnectDelay spaces connection attempts after a failure, so a dead
// target costs a bounded number of attempts per second.
const reconnectDelay = 100 * time.Millisecond

func (wk *worker) run(ctx context.Context, jobs <-chan job, connected *atomic.Uint64, lastConnErr *atomic.Pointer[error]) {
	var c *client
	defer func() {
		if c != nil {
			c.quit()
		}
	}()
	for j := range jobs {
		// Jobs still buffered when the run ends are dropped, not sent.
		if ctx.Err() != nil {
			return
		}

		// Connect (or reconnect after an I/O error) before the message.
		// The job keeps its intended time, so in an open loop the time
		// spent reconnecting counts as latency. A worker that cannot
		// connect for cfg.Timeout gives up, counting the message failed.
		var failingSince time.Time
		for c == nil {
			var err error
			c, err = dialClient(wk.cfg.Target, wk.cfg.Timeout, wk.cfg.Pipelining, 64<<10)
			if err == nil {
				connected.Add(1)
				break
			}
			wk.rec.recordConnectError(err)
			lastConnErr.Store(&err)
			if failingSince.IsZero() {
				failingSince = time.Now()
			}
			if time.Since(failingSince) >= wk.cfg.Timeout {
				wk.rec.recordFailed(err, nil)
				return
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(reconnectDelay):
			}
		}

		if j.intended.IsZero() {
			j.intended = time.Now()
		}
		size := wk.cfg.Size.Draw(wk.rng)
		wk.rcpts = wk.rcpts[:0]
		for i := range wk.cfg.Recipients {
			domain := wk.cfg.Domains[(j.seq+i)%len(wk.cfg.Domains)]
			wk.rcpts = append(wk.rcpts, fmt.Sprintf("user%d@%s", (j.seq*wk.cfg.Recipients+i)%100000, domain))
		}
		wk.buf = AppendMessage(wk.buf[:0], MessageParams{
			From:      wk.cfg.From,
			To:        wk.rcpts,
			MessageID: fmt.Sprintf("%d.%s@loadgen.localdomain", j.seq, wk.runID),
			Date:      time.Now(),
			Size:      size,
		}, wk.rng)

		res, err := c.transaction(wk.cfg.From, wk.rcpts, wk.buf)
		if err != nil {
			wk.rec.recordFailed(err, res.rejected)
			if !isReply(err) && !errors.Is(err, errAllRejected) {
				c.conn.Close()
				c = nil
			}
			continue
		}
		wk.rec.recordSent(time.Since(j.intended), res.accepted, len(wk.buf), res.rejected)
	}
}
