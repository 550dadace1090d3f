//go:build linux

package engine

import (
	"errors"
	"fmt"
	"math"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"smta/ring"
	"smta/smtp"
)

const (
	// readBufSize is the size of a pooled read buffer. It holds any command
	// line the session accepts and many DATA lines, so one read usually
	// carries a whole pipelined batch or a large body chunk.
	readBufSize = 16 << 10

	// maxPooledBufs bounds each shard's free list of read buffers, so a
	// burst of busy connections does not pin memory after it ends.
	maxPooledBufs = 256

	// readsPerTurn is how many reads one connection gets before the loop
	// moves on to other ready connections. With edge-triggered epoll a
	// connection that still has input is put on the run queue instead of
	// being drained, so a fast sender cannot starve the others.
	readsPerTurn = 4

	// maxOutputBacklog is the unsent session output, in octets, above which
	// the shard stops reading from a connection until the client reads its
	// replies.
	maxOutputBacklog = 64 << 10

	// acceptsPerTurn bounds accept4 calls per listener readiness, so a
	// connection storm does not starve established sessions.
	acceptsPerTurn = 64

	// inboxSize is the capacity of a shard's completion ring. A full ring
	// never blocks a producer: see post.
	inboxSize = 1024

	// Epoll tokens. A connection's token is its slot index (non-negative),
	// and its generation fills the other half of the event data. Listeners
	// and the eventfd use negative tokens.
	tokenEventfd    = math.MinInt32
	tokenListener0  = -1 // listener i has token tokenListener0 - i
	pollEventsBatch = 256
)

// connFlags are a connection's state bits beyond what its Session tracks.
type connFlags uint16

const (
	flagReadable     connFlags = 1 << iota // the socket may hold unread input (edge-triggered)
	flagWriteBlocked                       // a write returned EAGAIN; waiting for EPOLLOUT
	flagPeerClosed                         // read returned EOF; finish buffered input, then close
	flagClosing                            // close once the output is flushed
	flagInTx                               // MAIL accepted and the transaction not yet ended
	flagQueued                             // on the run queue
	flagHangup                             // epoll reported EPOLLRDHUP, EPOLLHUP or EPOLLERR; read until EOF or an error

	// io_uring mode only.
	flagRecvArmed  // a multishot receive is in flight
	flagCancelSent // that receive is being cancelled
	flagTLSPending // STARTTLS accepted; hand off once no request is in flight
)

// conn is one slot of a shard's connection table. A free slot has fd -1.
// The struct stays small because an idle connection costs its slot, its
// Session and its ConnInfo: the read buffer goes back to the pool whenever
// no unconsumed input is left.
//
// Owned by the shard thread.
type conn struct {
	fd       int32
	slot     uint32 // index in the table, fixed for the slot's lifetime
	gen      uint32 // incremented when the slot is freed, see the tokens
	flags    connFlags
	r, w     int32 // buf[r:w] is input not yet consumed by the session
	deadline int64 // wheel tick at which the current timeout expires
	buf      *[readBufSize]byte
	out      *[readBufSize]byte // io_uring mode: the bytes of the send in flight
	outOff   int32              // io_uring mode: out[outOff:outLen] is not yet sent
	outLen   int32
	sess     *smtp.Session
	info     *ConnInfo
	msg      MessageWriter // non-nil while DATA is being received
}

// completion is one record of a shard's inbox.
type completion struct {
	kind    completionKind
	slot    uint32
	gen     uint32
	id      string     // commit: queue id on success
	failure smtp.Reply // commit: non-zero on failure
}

type completionKind uint8

const (
	completionCommit completionKind = iota // a MessageWriter.Commit finished
	completionDrain                        // stop accepting and end idle sessions
	completionForce                        // end every session now
)

type stopMode = completionKind

const (
	stopDrain = completionDrain
	stopForce = completionForce
)

// shard is one event loop: a thread, an epoll set, the listening sockets it
// accepts on, its connections and its timers. See the package documentation
// for the loop and the inbox protocol.
type shard struct {
	// Immutable after newShard.
	srv     *epollServer
	id      int
	epfd    int          // epoll mode; -1 in io_uring mode
	uring   *uringPoller // io_uring mode; nil in epoll mode
	evfd    int
	timing  timeouts
	inbox   *ring.MPSC[completion]
	done    chan struct{} // closed when run returns
	scratch [8]byte       // target of the io_uring mode's eventfd read (epoll mode never reads the eventfd)

	// Inbox wakeup protocol, shared with producers.
	sleeping atomic.Bool // the shard may block; the next producer clears it and writes the eventfd
	exited   atomic.Bool // run returned; producers drop completions
	overMu   sync.Mutex  // guards overflow
	overflow []completion
	overLen  atomic.Int32 // len(overflow), read without overMu by the shard

	// Owned by the shard thread.
	listeners []int // listening sockets; -1 once closed
	conns     []conn
	free      []uint32 // free slots, used as a stack
	live      int      // open connections
	bufs      []*[readBufSize]byte
	runq      []timerEntry
	wheel     *timerWheel
	draining  bool
	batch     []completion
	failures  []smtp.Failure // scratch for reportFailures

	counters shardCounters
}

func newShard(srv *epollServer, id int, listeners []int, timing timeouts) (*shard, error) {
	evfd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		return nil, osErr("eventfd", err)
	}
	sh := &shard{
		srv:       srv,
		id:        id,
		epfd:      -1,
		evfd:      evfd,
		timing:    timing,
		inbox:     ring.New[completion](inboxSize),
		done:      make(chan struct{}),
		listeners: listeners,
		batch:     make([]completion, 64),
	}
	tick := min(timing.command, timing.data) / 16
	sh.wheel = newTimerWheel(min(max(tick, 5*time.Millisecond), time.Second), time.Now())

	if srv.kind == "io_uring" {
		err = sh.initUring()
	} else {
		err = sh.initEpoll()
	}
	if err != nil {
		sh.closeFDs()
		return nil, err
	}
	return sh, nil
}

func (sh *shard) initEpoll() error {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return osErr("epoll_create1", err)
	}
	sh.epfd = epfd

	// The eventfd is edge-triggered and never read: each write queues one
	// event, which only ends the wait (see mayBlock). The listeners are
	// level-triggered: the loop accepts a bounded batch per turn and relies
	// on the next epoll_wait to report the rest.
	if err := sh.ctl(unix.EPOLL_CTL_ADD, sh.evfd, unix.EPOLLIN|unix.EPOLLET, tokenEventfd, 0); err != nil {
		return err
	}
	for i, fd := range sh.listeners {
		if err := sh.ctl(unix.EPOLL_CTL_ADD, fd, unix.EPOLLIN, int32(tokenListener0-i), 0); err != nil {
			return err
		}
	}
	return nil
}

func (sh *shard) ctl(op, fd int, events uint32, token int32, gen uint32) error {
	ev := unix.EpollEvent{Events: events, Fd: token, Pad: int32(gen)}
	if err := unix.EpollCtl(sh.epfd, op, fd, &ev); err != nil {
		return osErr("epoll_ctl", err)
	}
	return nil
}

func (sh *shard) closeFDs() {
	if sh.epfd >= 0 {
		unix.Close(sh.epfd)
	}
	if sh.uring != nil {
		sh.uring.close()
	}
	unix.Close(sh.evfd)
}

// post delivers c to the shard's inbox from any goroutine and wakes the shard
// unless a wakeup is already pending.
//
// A push never blocks: the done callback of Commit may run on the shard
// thread itself, which must not wait for its own ring to drain. When the
// ring is full the record goes to a locked overflow list instead.
func (sh *shard) post(c completion) {
	if sh.exited.Load() {
		return
	}
	if !sh.inbox.TryPush(c) {
		sh.overMu.Lock()
		sh.overflow = append(sh.overflow, c)
		sh.overLen.Store(int32(len(sh.overflow)))
		sh.overMu.Unlock()
	}
	if sh.sleeping.Load() && sh.sleeping.CompareAndSwap(true, false) {
		// The write adds 1 to the eventfd counter. eventfd(2) fails it with
		// EAGAIN only when the counter would overflow, and then the eventfd
		// is readable anyway.
		var one = [8]byte{1}
		unix.Write(sh.evfd, one[:])
	}
}

// stop posts a drain or force record to the shard's inbox.
func (sh *shard) stop(mode stopMode) {
	sh.post(completion{kind: mode})
}

// run is the event loop. It returns once the shard has drained.
func (sh *shard) run() {
	runtime.LockOSThread()
	if sh.srv.cfg.CPUAffinity {
		// NB: the thread stays locked when run returns, so the runtime
		// ends it instead of reusing a thread with a narrowed CPU set.
		sh.pinToCPU()
	} else {
		defer runtime.UnlockOSThread()
	}
	defer close(sh.done)
	sh.srv.log.Debug("shard started", "shard", sh.id, "mode", sh.srv.kind)

	if sh.uring != nil {
		sh.runUring()
	} else {
		sh.runEpoll()
	}

	sh.exited.Store(true)
	sh.closeListeners()
	sh.closeFDs()
	sh.srv.log.Debug("shard stopped", "shard", sh.id)
}

// runEpoll is the epoll event loop.
func (sh *shard) runEpoll() {
	events := make([]unix.EpollEvent, pollEventsBatch)
	for {
		// Wait no longer than one wheel tick, and not at all while
		// connections on the run queue still have input or completions
		// are pending.
		//
		// NOTE: a goroutine blocked in a system call keeps its P until the
		// runtime's monitor retakes it (20 µs and up), so goroutines this
		// shard made runnable just before, such as a committer it woke,
		// can wait that long. Parking in Go's netpoller instead hands the
		// P over at once, but on a locked thread each park costs two
		// thread handoffs, and it measured slower and less steady. Giving
		// the runtime more Ps than CPUs (one per shard on top) also
		// measured slower in bench/modes.sh: more threads then compete for
		// the same CPUs. The engine leaves GOMAXPROCS alone.
		wait := 0
		if sh.mayBlock() {
			wait = int(sh.wheel.tick / time.Millisecond)
		}
		n, err := unix.EpollWait(sh.epfd, events, wait)
		sh.sleeping.Store(false)
		add(&sh.counters.syscalls, 1)
		if err != nil && !errors.Is(err, unix.EINTR) {
			sh.srv.log.Error("epoll_wait failed, closing the shard", "shard", sh.id, "error", err)
			sh.closeAll(false)
			return
		}
		for i := range max(n, 0) {
			sh.dispatch(&events[i])
		}

		if sh.endTurn() {
			return
		}
	}
}

// endTurn runs the work at the end of every loop turn and reports whether
// the loop should exit.
func (sh *shard) endTurn() bool {
	sh.drainInbox()
	sh.runQueue()
	sh.wheel.advance(sh.wheel.ticksAt(time.Now()), sh.expire)
	return sh.draining && sh.live == 0
}

func (sh *shard) dispatch(ev *unix.EpollEvent) {
	switch {
	case ev.Fd == tokenEventfd:
		// Edge-triggered and never read: every write queues a new event,
		// and endTurn drains the inbox.
		add(&sh.counters.wakeups, 1)
	case ev.Fd < 0:
		sh.accept(int(tokenListener0 - ev.Fd))
	default:
		slot := uint32(ev.Fd)
		c := &sh.conns[slot]
		if c.fd < 0 || c.gen != uint32(ev.Pad) {
			return // closed since the event was queued
		}
		if ev.Events&unix.EPOLLOUT != 0 && c.flags&flagWriteBlocked != 0 {
			c.flags &^= flagWriteBlocked
		}
		if ev.Events&(unix.EPOLLIN|unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) != 0 {
			c.flags |= flagReadable
		}
		if ev.Events&(unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) != 0 {
			c.flags |= flagHangup
		}
		sh.serve(slot)
	}
}

// mayBlock announces that the shard is about to wait in the kernel and
// reports whether it may: not while the run queue has work, and not when
// completions arrived meanwhile.
//
// NB: sleeping is set before the inbox is drained one last time. A producer
// that pushes after the drain finds sleeping set and writes the eventfd, so
// the wait returns at once. A producer that pushed before it is seen by the
// drain. Either way no completion waits for a wakeup that never comes. While
// the shard is busy, sleeping stays clear and producers only push: the
// drain at the end of every turn picks their records up without any
// system call on either side.
func (sh *shard) mayBlock() bool {
	if len(sh.runq) > 0 {
		return false
	}
	sh.sleeping.Store(true)
	if sh.drainInbox() > 0 || len(sh.runq) > 0 {
		sh.sleeping.Store(false)
		return false
	}
	return true
}

// drainInbox applies every completion posted so far and returns how many.
func (sh *shard) drainInbox() int {
	total := 0
	for {
		n := sh.inbox.PopBatch(sh.batch)
		for i := range n {
			sh.apply(sh.batch[i])
			sh.batch[i] = completion{}
		}
		total += n
		if n < len(sh.batch) {
			break
		}
	}
	if sh.overLen.Load() > 0 {
		sh.overMu.Lock()
		over := sh.overflow
		sh.overflow = nil
		sh.overLen.Store(0)
		sh.overMu.Unlock()
		for _, c := range over {
			sh.apply(c)
		}
		total += len(over)
	}
	return total
}

func (sh *shard) apply(cp completion) {
	add(&sh.counters.completions, 1)
	switch cp.kind {
	case completionDrain:
		sh.beginDrain()
	case completionForce:
		sh.draining = true
		sh.closeListeners()
		sh.closeAll(true)
	case completionCommit:
		c := &sh.conns[cp.slot]
		if c.fd < 0 || c.gen != cp.gen {
			return // the client went away while the spool committed
		}
		if cp.failure.IsZero() {
			c.sess.AcceptQueued(cp.id)
		} else {
			c.sess.Reject(cp.failure)
		}
		c.deadline = sh.wheel.now + sh.wheel.ticksFor(sh.timing.command)
		sh.serve(cp.slot)
	}
}

// beginDrain closes the listeners and ends every session that is not inside
// a transaction. The others end when their transaction does (see serve).
func (sh *shard) beginDrain() {
	sh.draining = true
	sh.closeListeners()
	for slot := range sh.conns {
		c := &sh.conns[slot]
		if c.fd >= 0 && sh.idle(c) {
			sh.shutdownConn(c)
		}
	}
}

func (sh *shard) closeListeners() {
	for i, fd := range sh.listeners {
		if fd >= 0 {
			if sh.uring != nil {
				sh.uring.cancel(userData(opAccept, uint32(i), 0))
			}
			unix.Close(fd)
			sh.listeners[i] = -1
		}
	}
}

// closeAll ends every session, sending 421 first when polite is set.
func (sh *shard) closeAll(polite bool) {
	for slot := range sh.conns {
		c := &sh.conns[slot]
		if c.fd < 0 {
			continue
		}
		if polite {
			c.sess.Shutdown()
			sh.flush(c)
		}
		if c.fd >= 0 {
			sh.closeConn(c)
		}
	}
}

// idle reports whether c is between transactions with nothing outstanding.
func (sh *shard) idle(c *conn) bool {
	return c.flags&flagInTx == 0 && !c.sess.Pending() && !c.sess.InData()
}

// shutdownConn sends 421 and closes c once the reply is written.
func (sh *shard) shutdownConn(c *conn) {
	c.sess.Shutdown()
	c.flags |= flagClosing
	if sh.flush(c) && c.flags&flagWriteBlocked == 0 {
		sh.closeConn(c)
	}
}

// accept takes a bounded batch of connections from listener li.
func (sh *shard) accept(li int) {
	lfd := sh.listeners[li]
	if lfd < 0 {
		return
	}
	for range acceptsPerTurn {
		nfd, sa, err := unix.Accept4(lfd, unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC)
		add(&sh.counters.syscalls, 1)
		if err != nil {
			switch {
			case errors.Is(err, unix.EAGAIN), errors.Is(err, unix.EINTR), errors.Is(err, unix.ECONNABORTED):
			default:
				// EMFILE, ENFILE, ENOBUFS: the listener stays readable and
				// the next turn retries; the wheel tick paces the retries.
				sh.srv.log.Warn("accept failed", "shard", sh.id, "error", err)
			}
			return
		}
		add(&sh.counters.accepted, 1)
		sh.admit(nfd, fromSockaddr(sa), li)
	}
}

// admit applies the limits and Backend.Connect to a new connection and gives
// it a slot, or turns it away.
func (sh *shard) admit(fd int, remote netip.AddrPort, li int) {
	srv := sh.srv
	ip := remote.Addr()
	if !srv.limits.acquire(ip) {
		add(&sh.counters.rejected, 1)
		msg := fmt.Sprintf("421 4.7.0 %s too many connections, try again later\r\n", srv.cfg.Session.Hostname)
		unix.Write(fd, []byte(msg)) // best effort: the socket buffer is empty
		unix.Close(fd)
		return
	}
	unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)

	info := &ConnInfo{
		SessionID: newSessionID("e", srv.nextSession.Add(1)),
		Remote:    remote,
		Local:     fromAddrString(srv.bound[li].String()),
		Start:     time.Now(),
	}
	if info.Local.Addr().IsUnspecified() {
		if sa, err := unix.Getsockname(fd); err == nil {
			info.Local = fromSockaddr(sa)
		}
	}

	if srv.cfg.Listeners[li].TLS {
		// Implicit TLS: the whole session runs on a TLS goroutine, which
		// also calls Backend.Connect.
		add(&sh.counters.tlsHandoffs, 1)
		srv.serveTLS(fd, info, nil, nil)
		return
	}

	if sh.uring != nil {
		info.Files = sh.uring
	}
	if r := srv.backend.Connect(info); !r.IsZero() {
		add(&sh.counters.rejected, 1)
		unix.Write(fd, []byte(FormatReply(r)))
		unix.Close(fd)
		srv.limits.release(ip)
		return
	}

	cfg := new(smtp.Config)
	*cfg = srv.cfg.Session
	cfg.RemoteAddr = remote
	cfg.StartTLS = srv.cfg.TLS != nil
	sess := smtp.NewSession(cfg)
	sess.Start()

	slot := sh.allocSlot()
	c := &sh.conns[slot]
	c.fd = int32(fd)
	c.sess = sess
	c.info = info
	c.flags = flagReadable // input may have arrived before registration
	c.deadline = sh.wheel.now + sh.wheel.ticksFor(sh.timing.command)
	sh.wheel.schedule(timerEntry{slot, c.gen}, c.deadline)
	sh.live++
	sh.counters.open.Add(1)

	if sh.uring != nil {
		sh.serve(slot) // writes the greeting and arms the receive
		return
	}
	// Edge-triggered: the kernel reports each transition once, so the
	// shard never has to change the interest set when it pauses a
	// connection. It only has to remember (flagReadable) that input may be
	// waiting, and read until EAGAIN when it resumes.
	if err := sh.ctl(unix.EPOLL_CTL_ADD, fd, unix.EPOLLIN|unix.EPOLLOUT|unix.EPOLLRDHUP|unix.EPOLLET, int32(slot), c.gen); err != nil {
		sh.srv.log.Error("registering connection failed", "shard", sh.id, "session", info.SessionID, "error", err)
		sh.closeConn(c)
		return
	}
	sh.serve(slot)
}

func fromAddrString(s string) netip.AddrPort {
	ap, _ := netip.ParseAddrPort(s)
	return ap
}

func (sh *shard) allocSlot() uint32 {
	if n := len(sh.free); n > 0 {
		slot := sh.free[n-1]
		sh.free = sh.free[:n-1]
		return slot
	}
	slot := uint32(len(sh.conns))
	sh.conns = append(sh.conns, conn{fd: -1, slot: slot})
	return slot
}

// closeConn closes c's socket and frees its slot, its buffer and its place
// in the limits.
func (sh *shard) closeConn(c *conn) {
	if sh.uring != nil {
		sh.uring.detach(c)
	}
	unix.Close(int(c.fd)) // also removes it from the epoll set
	sh.srv.limits.release(c.info.Remote.Addr())
	if c.sess != nil {
		reportFailures(sh.srv.backend, c.info, c.sess, &sh.failures)
		sh.srv.backend.Disconnect(c.info, c.sess.Messages())
	}
	sh.releaseSlot(c)
}

// releaseSlot frees c's slot without touching its socket.
func (sh *shard) releaseSlot(c *conn) {
	if c.msg != nil {
		c.msg.Abort()
	}
	sh.putBuf(c)
	if c.out != nil && len(sh.bufs) < maxPooledBufs {
		sh.bufs = append(sh.bufs, c.out)
	}
	*c = conn{fd: -1, slot: c.slot, gen: c.gen + 1}
	sh.free = append(sh.free, c.slot)
	sh.live--
	sh.counters.open.Add(-1)
}

func (sh *shard) getBuf(c *conn) {
	if n := len(sh.bufs); n > 0 {
		c.buf = sh.bufs[n-1]
		sh.bufs = sh.bufs[:n-1]
		return
	}
	c.buf = new([readBufSize]byte)
}

// putBuf returns c's buffer to the pool; any unconsumed input is dropped.
func (sh *shard) putBuf(c *conn) {
	if c.buf == nil {
		return
	}
	if len(sh.bufs) < maxPooledBufs {
		sh.bufs = append(sh.bufs, c.buf)
	}
	c.buf = nil
	c.r, c.w = 0, 0
}

// runQueue gives another turn to connections that used up their read budget.
func (sh *shard) runQueue() {
	q := sh.runq
	sh.runq = nil
	for _, e := range q {
		c := &sh.conns[e.slot]
		if c.fd < 0 || c.gen != e.gen {
			continue
		}
		c.flags &^= flagQueued
		sh.serve(e.slot)
	}
	if sh.runq == nil {
		sh.runq = q[:0]
	}
}

// expire handles a wheel entry that came due.
func (sh *shard) expire(e timerEntry) {
	c := &sh.conns[e.slot]
	if c.fd < 0 || c.gen != e.gen {
		return
	}
	now := sh.wheel.now
	if c.deadline > now {
		sh.wheel.schedule(e, c.deadline)
		return
	}
	if c.sess.Pending() && c.flags&flagClosing == 0 {
		// Waiting for the spool is not the client's delay.
		c.deadline = now + sh.wheel.ticksFor(sh.timing.command)
		sh.wheel.schedule(e, c.deadline)
		return
	}

	add(&sh.counters.timeouts, 1)
	if c.flags&flagClosing == 0 {
		c.sess.Timeout()
		sh.flush(c)
	}
	if c.fd >= 0 {
		sh.closeConn(c)
	}
}

// pinToCPU restricts the calling thread to CPU sh.id modulo the CPU count.
// A failure (for example a cgroup that excludes that CPU) is logged and
// the shard runs unpinned.
//
// REQUIRES: the caller is the shard thread, locked with LockOSThread.
func (sh *shard) pinToCPU() {
	var set unix.CPUSet
	cpu := sh.id % runtime.NumCPU()
	set.Set(cpu)
	if err := unix.SchedSetaffinity(0, &set); err != nil {
		sh.srv.log.Warn("cpu affinity failed, shard runs unpinned", "shard", sh.id, "cpu", cpu, "error", err)
		return
	}
	sh.srv.log.Debug("shard pinned", "shard", sh.id, "cpu", cpu)
}
