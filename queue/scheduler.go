package queue

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"smta/acct"
	"smta/delivery"
	"smta/spool"
)

// Defaults applied to zero Policy fields.
const (
	DefaultRetryAfter  = 10 * time.Minute
	DefaultBounceAfter = 4 * 24 * time.Hour
	DefaultMaxSMTPOut  = 20
)

// Policy is the delivery policy of one destination domain, taken from the
// current configuration snapshot. Zero fields mean the defaults above.
type Policy struct {
	// Route is a "host:port" next hop for every message of the queue. It
	// overrides MX resolution of the recipient domain; "" means resolve MX.
	Route string
	// RouteMX makes a Route whose host is a name resolve through that
	// name's MX records (with implicit MX), as an unbracketed route host
	// does in smta.conf. The route's port then replaces port 25.
	RouteMX bool
	// RetryAfter is the delay between a transient failure and the next
	// attempt for the same recipients.
	RetryAfter time.Duration
	// BounceAfter is the message age (since reception) after which a
	// transient failure becomes final and the recipient expires.
	BounceAfter time.Duration
	// MaxSMTPOut is the maximum number of concurrent connections of the queue.
	MaxSMTPOut int
	// MaxMsgPerConn is the maximum number of transactions on one connection;
	// 0 means no limit (a connection closes when the ready list is empty).
	MaxMsgPerConn int
	// UseTLS enables STARTTLS when the next hop offers it.
	UseTLS bool
	// DSN enables delivery status notifications for bounces and expiries.
	DSN bool
}

func (p Policy) withDefaults() Policy {
	if p.RetryAfter <= 0 {
		p.RetryAfter = DefaultRetryAfter
	}
	if p.BounceAfter <= 0 {
		p.BounceAfter = DefaultBounceAfter
	}
	if p.MaxSMTPOut <= 0 {
		p.MaxSMTPOut = DefaultMaxSMTPOut
	}
	if p.MaxMsgPerConn < 0 {
		p.MaxMsgPerConn = 0
	}
	return p
}

// Options configures a Scheduler.
type Options struct {
	// HostName is the EHLO name, the Reporting-MTA of DSNs and the domain of
	// their MAILER-DAEMON sender.
	HostName string
	// Spool stores the messages; required.
	Spool *spool.Spool
	// Acct receives one record per delivery, transient failure, bounce and
	// expiry; nil disables accounting.
	Acct *acct.Logger
	// Resolver looks up MX records; nil means delivery.NewResolver(""), the
	// system resolver.
	Resolver *delivery.Resolver
	// Policy returns the policy of a destination domain. It is called when a
	// queue is created and before every connection, so it must be cheap and
	// safe for concurrent use. Nil means the zero Policy for every domain.
	Policy func(domain string) Policy
	// Logger receives operational logs; nil means slog.Default(). Messages
	// carry no package prefix, so callers add one with Logger.With.
	Logger *slog.Logger
	// Now returns the current time; nil means time.Now. Timers still run on
	// the real clock, so Now only shifts the times that are computed and
	// stored (next attempt, expiry).
	Now func() time.Time
	// MXPort is the TCP port of next hops found by MX resolution; 0 means 25.
	// Tests point it at a loopback receiver; production leaves it 0.
	MXPort int
}

// QueueInfo is a snapshot of one queue, as reported by Queues.
type QueueInfo struct {
	Name        string // destination domain, lowercased
	Ready       int    // messages due now
	Scheduled   int    // messages waiting for their next attempt
	Connections int    // open connections to the next hop
	Mode        string // "normal", "paused" or "backoff"
	Delivered   uint64 // recipients delivered since start
	Failed      uint64 // recipients bounced or expired since start
}

// Queue modes reported in QueueInfo.Mode.
const (
	ModeNormal  = "normal"
	ModePaused  = "paused"
	ModeBackoff = "backoff"
)

// Scheduler moves spooled messages to their next hops. See the package
// documentation for the design.
type Scheduler struct {
	// Immutable after New.
	o      Options
	sp     *spool.Spool
	res    *delivery.Resolver
	log    *slog.Logger
	now    func() time.Time
	mxPort int

	// ctx is the parent of every dial and transaction. Stop cancels it when
	// its own deadline passes, which aborts in-flight transactions.
	ctx     context.Context
	cancel  context.CancelFunc
	workers sync.WaitGroup // one count per delivery worker goroutine
	// stopped is closed by Stop, which ends the wait of idle workers.
	stopped chan struct{}

	// mu guards the following and the fields of every queue marked "s.mu".
	// Lock order: a message's mu before s.mu; never the other way round.
	mu       sync.Mutex
	queues   map[string]*queue
	started  bool // Start was called: workers may run and timers are armed
	stopping bool // Stop was called: no new workers, Enqueue drops messages
}

// New returns a Scheduler that delivers nothing until Start.
func New(o Options) *Scheduler {
	s := &Scheduler{
		o:      o,
		sp:     o.Spool,
		res:    o.Resolver,
		log:    o.Logger,
		now:    o.Now,
		mxPort: o.MXPort,
		queues: make(map[string]*queue),
	}
	if s.res == nil {
		s.res = delivery.NewResolver("")
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.mxPort == 0 {
		s.mxPort = 25
	}
	if s.o.Policy == nil {
		s.o.Policy = func(string) Policy { return Policy{} }
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.stopped = make(chan struct{})
	return s
}

// policy returns the current policy of domain with defaults applied.
func (s *Scheduler) policy(domain string) Policy {
	return s.o.Policy(domain).withDefaults()
}

// Enqueue hands a committed message to the scheduler: its pending recipients
// join the queues of their domains, due now or at their NextAttempt. It runs
// on the spool's committer goroutine (and after Recover), so it only takes
// the scheduler lock and starts goroutines. After Stop it drops the message,
// which stays in the spool for the next start.
func (s *Scheduler) Enqueue(m *spool.Message) {
	msg := &message{m: m}
	groups := groupRecipients(&m.Env)
	if len(groups) == 0 {
		return
	}
	now := s.now()

	s.mu.Lock()
	stopping := s.stopping
	if !stopping {
		s.enqueueLocked(msg, groups, now)
	}
	s.mu.Unlock()
	if stopping {
		s.log.Debug("message not enqueued, scheduler stopping", "msg", m.Env.ID)
	}
}

// enqueueLocked adds the items of msg, one per recipient group.
// REQUIRES: s.mu held.
func (s *Scheduler) enqueueLocked(msg *message, groups []rcptGroup, now time.Time) {
	for _, g := range groups {
		q := s.queueLocked(g.domain)
		it := &item{msg: msg, rcpts: g.rcpts, due: g.due}
		if g.due.After(now) {
			q.schedule(it)
			s.armLocked(q, now)
		} else {
			q.ready.push(it)
			s.kickLocked(q, now)
		}
	}
}

// Start starts delivery of everything enqueued so far and of what comes later.
func (s *Scheduler) Start() {
	s.mu.Lock()
	if s.started || s.stopping {
		s.mu.Unlock()
		return
	}
	s.started = true
	now := s.now()
	for _, q := range s.queues {
		s.promoteLocked(q, now)
		s.armLocked(q, now)
		s.kickLocked(q, now)
	}
	queues := len(s.queues)
	s.mu.Unlock()

	s.log.Info("scheduler started", "queues", queues)
}

// Stop stops taking work and waits for in-flight transactions to finish.
// Each finished transaction has already stored its recipient states with
// spool.Update or spool.Remove, so nothing else needs persisting. Those
// writes are not synced, so a crash before the spool's index reaches the disk
// repeats the attempts (at least once, never lost). When ctx ends first, Stop
// aborts the open transactions, whose recipients stay pending (they are
// delivered again after restart: at least once), and returns ctx's error.
func (s *Scheduler) Stop(ctx context.Context) error {
	s.mu.Lock()
	if !s.stopping {
		close(s.stopped)
	}
	s.stopping = true
	for _, q := range s.queues {
		if q.timer != nil {
			q.timer.Stop()
		}
	}
	s.mu.Unlock()

	done := make(chan struct{})
	go func() {
		s.workers.Wait()
		close(done)
	}()
	select {
	case <-done:
		s.cancel()
		s.log.Info("scheduler stopped")
		return nil
	case <-ctx.Done():
		s.cancel()
		<-done
		s.log.Warn("scheduler stopped, in-flight transactions aborted", "err", ctx.Err())
		return fmt.Errorf("queue: stop: %w", ctx.Err())
	}
}

// Queues returns a snapshot of every queue, sorted by name.
func (s *Scheduler) Queues() []QueueInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	infos := make([]QueueInfo, 0, len(s.queues))
	for _, q := range s.queues {
		infos = append(infos, QueueInfo{
			Name:        q.name,
			Ready:       q.ready.len(),
			Scheduled:   len(q.sched),
			Connections: q.conns,
			Mode:        q.modeLocked(now),
			Delivered:   q.delivered,
			Failed:      q.failed,
		})
	}
	slices.SortFunc(infos, func(a, b QueueInfo) int { return strings.Compare(a.Name, b.Name) })
	return infos
}

// Pause stops new transactions of the named queue (created if unknown, so a
// domain can be paused before mail for it arrives). Transactions in flight
// finish; their connections then close.
func (s *Scheduler) Pause(name string) {
	name = normalizeDomain(name)
	s.mu.Lock()
	s.queueLocked(name).paused = true
	s.mu.Unlock()

	s.log.Info("paused", "queue", name)
}

// Resume undoes Pause.
func (s *Scheduler) Resume(name string) {
	name = normalizeDomain(name)
	s.mu.Lock()
	q, ok := s.queues[name]
	resumed := ok && q.paused
	if resumed {
		q.paused = false
		s.kickLocked(q, s.now())
	}
	s.mu.Unlock()

	if resumed {
		s.log.Info("resumed", "queue", name)
	}
}

// queueLocked returns the queue of domain, creating it.
// NOTE: queues are never deleted, so the map grows with every domain seen
// since start. Idle queues keep their counters for Queues.
// REQUIRES: s.mu held.
func (s *Scheduler) queueLocked(domain string) *queue {
	q, ok := s.queues[domain]
	if !ok {
		q = &queue{name: domain, policy: s.policy(domain), wakeup: make(chan struct{}, 1)}
		s.queues[domain] = q
	}
	return q
}

// kickLocked starts delivery workers for q while it has ready messages that
// no starting worker will take, up to the queue's MaxSMTPOut.
// REQUIRES: s.mu held.
func (s *Scheduler) kickLocked(q *queue, now time.Time) {
	if !s.started || s.stopping || q.modeLocked(now) != ModeNormal {
		return
	}
	if q.idle > 0 && q.ready.len() > 0 {
		select {
		case q.wakeup <- struct{}{}:
		default:
		}
	}
	for q.workers < q.policy.MaxSMTPOut && q.ready.len() > q.starting+q.idle {
		q.workers++
		q.starting++
		s.workers.Add(1)
		go s.runWorker(q)
	}
}

// promoteLocked moves the scheduled messages of q that are due to its ready
// list and ends an expired backoff.
// REQUIRES: s.mu held.
func (s *Scheduler) promoteLocked(q *queue, now time.Time) {
	for len(q.sched) > 0 && !q.sched[0].due.After(now) {
		q.ready.push(q.unschedule())
	}
	if !q.backoffUntil.IsZero() && !q.backoffUntil.After(now) {
		q.backoffUntil = time.Time{}
	}
}

// armLocked sets q's timer to its next event: the earliest scheduled
// message or the end of a backoff. One runtime timer per queue lets the Go
// timer heap order the queues, so no goroutine scans them.
// REQUIRES: s.mu held.
func (s *Scheduler) armLocked(q *queue, now time.Time) {
	if !s.started || s.stopping {
		return
	}
	var next time.Time
	if len(q.sched) > 0 {
		next = q.sched[0].due
	}
	if !q.backoffUntil.IsZero() && (next.IsZero() || q.backoffUntil.Before(next)) {
		next = q.backoffUntil
	}
	if next.IsZero() {
		return
	}
	if q.timer != nil && q.timerAt.Equal(next) {
		return
	}
	d := max(next.Sub(now), 0)
	q.timerAt = next
	if q.timer == nil {
		q.timer = time.AfterFunc(d, func() { s.onTimer(q) })
		return
	}
	q.timer.Reset(d)
}

// onTimer runs on the runtime's timer goroutine when q's next event is due.
func (s *Scheduler) onTimer(q *queue) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopping {
		return
	}
	now := s.now()
	q.timerAt = time.Time{}
	s.promoteLocked(q, now)
	s.armLocked(q, now)
	s.kickLocked(q, now)
}
