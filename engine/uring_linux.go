//go:build linux

package engine

import (
	"errors"
	"fmt"
	"io"
	"runtime"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"smta/internal/iouring"
)

// The io_uring mode runs the same shards, connection table, Session driving
// and inbox as the epoll mode, and only the poller differs. Each shard owns
// one ring and submits:
//
//   - a multishot accept per listener, so one request accepts every
//     connection until it is cancelled;
//   - a multishot receive per connection with buffer selection from a
//     provided-buffer ring (buffers mmapped outside the Go heap), so an idle
//     connection has a request in flight but no buffer. Received bytes are
//     copied into the connection's pooled buffer and the kernel buffer is
//     recycled at once;
//   - a send per burst of replies, from a pooled buffer the connection keeps
//     until the send completes;
//   - a read of the inbox eventfd;
//   - positional file writes queued through ConnInfo.Files (FileWriter),
//     which the daemon uses for a message's last spool record. fdatasync
//     stays with the spool's committer, whose one call per commit window
//     covers the writes of every shard.
//
// All submissions of a turn go to the kernel in the io_uring_enter that
// also waits for completions, so a busy shard makes about one system call
// per turn.
//
// Memory the kernel writes into lives outside the Go heap (the provided
// buffers) or is pinned with runtime.Pinner (the eventfd read's 8 octets).
// Memory it only reads (a send's buffer, a file write's slice) stays
// reachable from the poller until the request's final completion.
//
// The receive stays armed while a commit is outstanding: a client that
// pipelines the next commands meanwhile has its bytes buffered, and past
// maxSpill buffered octets the receive is cancelled, which is this mode's
// backpressure.

func init() { modes["io_uring"] = newUringServer }

const (
	uringEntries  = 1024 // submission queue size, and half the completion queue size
	uringBuffers  = 256  // provided buffers per shard, readBufSize each (mmapped lazily)
	uringBufGroup = 0

	// maxSpill is the received input, in octets, a connection may have
	// buffered beyond its read buffer before its receive is cancelled.
	maxSpill = 64 << 10
)

// Request kinds in the top byte of a request's user data.
const (
	opAccept uint8 = iota + 1
	opRecv
	opSend
	opEventfd
	opCancel
	opFileWrite // the slot field holds the write's id in uringPoller.files
)

// userData packs a request kind, a slot and the low 24 bits of the slot's
// generation into the 64-bit user data the kernel returns in the CQE.
func userData(op uint8, slot, gen uint32) uint64 {
	return uint64(op)<<56 | uint64(gen&0xFFFFFF)<<32 | uint64(slot)
}

func splitUserData(ud uint64) (op uint8, slot, gen uint32) {
	return uint8(ud >> 56), uint32(ud), uint32(ud>>32) & 0xFFFFFF
}

// newUringServer returns a sharded server in io_uring mode, or in epoll mode
// with one warning when this kernel cannot run it.
func newUringServer(cfg Config, b Backend) (inbound, error) {
	if err := probeUring(); err != nil {
		if cfg.Logger != nil {
			cfg.Logger.Warn("io_uring unavailable, using epoll", "error", err)
		}
		return newShardedServer(cfg, b, "epoll")
	}
	return newShardedServer(cfg, b, "io_uring")
}

// probeUring checks that a ring can be set up, that the opcodes the shard
// uses exist, and that a multishot receive with a provided-buffer ring
// works (Linux 6.0 and later).
func probeUring() error {
	r, err := iouring.New(8)
	if err != nil {
		return err
	}
	defer r.Close()
	if err := r.Probe(iouring.OpAccept, iouring.OpRecv, iouring.OpSend, iouring.OpRead, iouring.OpWrite, iouring.OpAsyncCancel); err != nil {
		return err
	}
	br, err := r.NewBufRing(uringBufGroup, 2, 64)
	if err != nil {
		return err
	}
	defer br.Close()

	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return osErr("socketpair", err)
	}
	defer unix.Close(fds[0])
	defer unix.Close(fds[1])
	if _, err := unix.Write(fds[1], []byte{'x'}); err != nil {
		return osErr("write", err)
	}
	sqe := r.GetSQE()
	sqe.Opcode = iouring.OpRecv
	sqe.Fd = int32(fds[0])
	sqe.Flags = iouring.SqeBufferSelect
	sqe.BufGroup = br.Group()
	sqe.Ioprio = iouring.RecvMultishot
	if _, err := r.Submit(true, int64(time.Second)); err != nil {
		return err
	}
	cqe := r.PeekCQE()
	if cqe == nil {
		return fmt.Errorf("%w: multishot receive did not complete", iouring.ErrUnavailable)
	}
	defer r.SeenCQE()
	if cqe.Res != 1 || cqe.Flags&iouring.CqeFMore == 0 {
		return fmt.Errorf("%w: multishot receive unsupported (result %d, flags %#x)", iouring.ErrUnavailable, cqe.Res, cqe.Flags)
	}
	return nil
}

// uringPoller is a shard's io_uring state. Owned by the shard thread.
type uringPoller struct {
	sh   *shard
	ring *iouring.Ring
	bufs *iouring.BufRing
	// pin keeps the shard's eventfd scratch buffer, which the kernel
	// writes into from the eventfd read, pinned while that read can be in
	// flight.
	pin runtime.Pinner

	// spill holds received input that did not fit a connection's read
	// buffer, by slot. It is rare, so it lives here rather than in conn.
	spill map[uint32][]byte
	// orphans keeps the buffers of sends still in flight on closed
	// connections, by user data, so the kernel never reads freed memory.
	orphans map[uint64]*[readBufSize]byte
	// inflight counts submitted requests whose final completion (one
	// without CqeFMore) has not arrived.
	inflight int

	// files holds the file writes in flight, by id. The entry keeps the
	// written slice reachable while the kernel reads from it.
	files    map[uint32]*fileWrite
	nextFile uint32
	closing  bool // close has started; WriteAt queues nothing more
}

// fileWrite is one FileWriter.WriteAt request.
type fileWrite struct {
	fd   int32
	p    []byte
	off  int64
	n    int // octets written so far
	done func(n int, err error)
}

func (sh *shard) initUring() error {
	r, err := iouring.New(uringEntries)
	if err != nil {
		return fmt.Errorf("engine: %w", err)
	}
	br, err := r.NewBufRing(uringBufGroup, uringBuffers, readBufSize)
	if err != nil {
		r.Close()
		return fmt.Errorf("engine: %w", err)
	}
	u := &uringPoller{
		sh:      sh,
		ring:    r,
		bufs:    br,
		spill:   make(map[uint32][]byte),
		orphans: make(map[uint64]*[readBufSize]byte),
		files:   make(map[uint32]*fileWrite),
	}
	sh.uring = u
	u.pin.Pin(&sh.scratch)
	u.armEventfd()
	for i := range sh.listeners {
		u.armAccept(i)
	}
	return nil
}

// close cancels every request and waits, at most a second, for their final
// completions before it unmaps the provided buffers, which the kernel could
// otherwise still write into.
func (u *uringPoller) close() {
	u.closing = true
	sqe := u.sqe()
	sqe.Opcode = iouring.OpAsyncCancel
	sqe.OpFlags = iouring.AsyncCancelAny
	sqe.UserData = userData(opCancel, 0, 0)
	u.inflight++

	deadline := time.Now().Add(time.Second)
	for u.inflight > 0 && time.Now().Before(deadline) {
		if _, err := u.ring.Submit(true, int64(100*time.Millisecond)); err != nil {
			break
		}
		for cqe := u.ring.PeekCQE(); cqe != nil; cqe = u.ring.PeekCQE() {
			ud, res, flags := cqe.UserData, cqe.Res, cqe.Flags
			if flags&iouring.CqeFMore == 0 {
				u.inflight--
			}
			u.ring.SeenCQE()
			if op, id, _ := splitUserData(ud); op == opFileWrite {
				u.fileWritten(id, res)
			}
		}
	}
	for _, fw := range u.files {
		// Never completed: report the failure, and keep the entry so that
		// the slice stays reachable in case the kernel still reads it.
		fw.done(fw.n, fmt.Errorf("engine: file write on shard %d did not complete before the shard stopped", u.sh.id))
		fw.done = func(int, error) {}
	}
	if u.inflight > 0 {
		u.sh.srv.log.Warn("io_uring requests still in flight at shard exit", "shard", u.sh.id, "requests", u.inflight)
		u.ring.Close()
		return // leave the buffers mapped rather than risk a kernel write into reused memory
	}
	u.bufs.Close()
	u.ring.Close()
	u.pin.Unpin()
}

// sqe returns a free submission entry, submitting the queued ones first if
// the queue is full.
func (u *uringPoller) sqe() *iouring.SQE {
	for {
		if sqe := u.ring.GetSQE(); sqe != nil {
			return sqe
		}
		u.submit()
	}
}

func (u *uringPoller) submit() {
	if _, err := u.ring.Submit(false, 0); err != nil {
		u.sh.srv.log.Error("io_uring submit failed", "shard", u.sh.id, "error", err)
	}
	add(&u.sh.counters.syscalls, 1)
}

func (u *uringPoller) armEventfd() {
	sqe := u.sqe()
	sqe.Opcode = iouring.OpRead
	sqe.Fd = int32(u.sh.evfd)
	sqe.Addr = uint64(uintptr(unsafe.Pointer(&u.sh.scratch[0])))
	sqe.Len = uint32(len(u.sh.scratch))
	sqe.Off = ^uint64(0) // the current position; an eventfd has none
	sqe.UserData = userData(opEventfd, 0, 0)
	u.inflight++
}

func (u *uringPoller) armAccept(li int) {
	sqe := u.sqe()
	sqe.Opcode = iouring.OpAccept
	sqe.Fd = int32(u.sh.listeners[li])
	sqe.Ioprio = iouring.AcceptMultishot
	sqe.OpFlags = unix.SOCK_NONBLOCK | unix.SOCK_CLOEXEC
	sqe.UserData = userData(opAccept, uint32(li), 0)
	u.inflight++
}

func (u *uringPoller) armRecv(c *conn) {
	sqe := u.sqe()
	sqe.Opcode = iouring.OpRecv
	sqe.Fd = c.fd
	sqe.Flags = iouring.SqeBufferSelect
	sqe.BufGroup = u.bufs.Group()
	sqe.Ioprio = iouring.RecvMultishot
	sqe.UserData = userData(opRecv, c.slot, c.gen)
	c.flags |= flagRecvArmed
	u.inflight++
}

// cancel submits a cancellation of the request with user data ud.
func (u *uringPoller) cancel(ud uint64) {
	sqe := u.sqe()
	sqe.Opcode = iouring.OpAsyncCancel
	sqe.Addr = ud
	sqe.UserData = userData(opCancel, 0, 0)
	u.inflight++
}

// runUring is the io_uring event loop.
func (sh *shard) runUring() {
	u := sh.uring
	for {
		// Submit this turn's requests and wait for a completion, for at
		// most one wheel tick, and not at all while completions are
		// already waiting or the run queue has work. Waiting inside
		// io_uring_enter also runs the ring's deferred task work, which a
		// thread parked elsewhere would delay.
		wait := u.ring.PeekCQE() == nil && sh.mayBlock()
		_, err := u.ring.Submit(wait, int64(sh.wheel.tick))
		sh.sleeping.Store(false)
		add(&sh.counters.syscalls, 1)
		if err != nil {
			sh.srv.log.Error("io_uring_enter failed, closing the shard", "shard", sh.id, "error", err)
			sh.closeAll(false)
			return
		}
		for {
			cqe := u.ring.PeekCQE()
			if cqe == nil {
				break
			}
			ud, res, flags := cqe.UserData, cqe.Res, cqe.Flags
			u.ring.SeenCQE()
			u.complete(ud, res, flags)
		}
		if sh.endTurn() {
			return
		}
	}
}

// complete handles one completion.
func (u *uringPoller) complete(ud uint64, res int32, flags uint32) {
	sh := u.sh
	if flags&iouring.CqeFMore == 0 {
		u.inflight--
	}
	op, slot, gen := splitUserData(ud)
	switch op {
	case opEventfd:
		// endTurn drains the inbox; the read only ended the wait.
		add(&sh.counters.wakeups, 1)
		if !sh.exited.Load() {
			u.armEventfd()
		}

	case opAccept:
		li := int(slot)
		if res >= 0 {
			u.accepted(int(res), li)
		} else if err := iouring.Errno(res); !errors.Is(err, unix.ECANCELED) && !errors.Is(err, unix.EAGAIN) {
			sh.srv.log.Warn("accept failed", "shard", sh.id, "error", err)
		}
		if flags&iouring.CqeFMore == 0 && sh.listeners[li] >= 0 {
			u.armAccept(li)
		}

	case opRecv:
		u.received(slot, gen, res, flags)

	case opSend:
		u.sent(ud, slot, gen, res)

	case opFileWrite:
		u.fileWritten(slot, res)
	}
}

// WriteAt implements FileWriter.
//
// REQUIRES: the caller is the shard thread.
func (u *uringPoller) WriteAt(fd int, p []byte, off int64, done func(n int, err error)) bool {
	if u.closing || len(p) == 0 {
		return false
	}
	id := u.nextFile
	for u.files[id] != nil {
		id++
	}
	u.nextFile = id + 1
	fw := &fileWrite{fd: int32(fd), p: p, off: off, done: done}
	u.files[id] = fw
	u.submitFileWrite(id, fw)
	add(&u.sh.counters.fileWrites, 1)
	return true
}

func (u *uringPoller) submitFileWrite(id uint32, fw *fileWrite) {
	rest := fw.p[fw.n:]
	sqe := u.sqe()
	sqe.Opcode = iouring.OpWrite
	sqe.Fd = fw.fd
	sqe.Addr = uint64(uintptr(unsafe.Pointer(&rest[0])))
	sqe.Len = uint32(len(rest))
	sqe.Off = uint64(fw.off + int64(fw.n))
	sqe.UserData = userData(opFileWrite, id, 0)
	u.inflight++
}

// fileWritten handles the completion of file write id: it resubmits the
// rest after a short write and otherwise calls the write's done.
func (u *uringPoller) fileWritten(id uint32, res int32) {
	fw := u.files[id]
	if fw == nil {
		return
	}
	var err error
	switch {
	case res > 0:
		fw.n += int(res)
		if fw.n < len(fw.p) && !u.closing {
			u.submitFileWrite(id, fw)
			return
		}
		if fw.n < len(fw.p) {
			err = io.ErrShortWrite
		}
	case res == 0:
		err = io.ErrShortWrite
	default:
		err = iouring.Errno(res)
		if (errors.Is(err, unix.EINTR) || errors.Is(err, unix.EAGAIN)) && !u.closing {
			u.submitFileWrite(id, fw)
			return
		}
	}
	delete(u.files, id)
	fw.done(fw.n, err)
}

func (u *uringPoller) accepted(fd, li int) {
	sh := u.sh
	add(&sh.counters.accepted, 1)
	sa, err := unix.Getpeername(fd)
	add(&sh.counters.syscalls, 1)
	if err != nil {
		unix.Close(fd) // reset before we looked at it
		return
	}
	sh.admit(fd, fromSockaddr(sa), li)
}

// live returns the connection in slot if it still has generation gen.
func (u *uringPoller) live(slot, gen uint32) *conn {
	if int(slot) >= len(u.sh.conns) {
		return nil
	}
	c := &u.sh.conns[slot]
	if c.fd < 0 || c.gen&0xFFFFFF != gen {
		return nil
	}
	return c
}

func (u *uringPoller) received(slot, gen uint32, res int32, flags uint32) {
	sh := u.sh
	var data []byte
	if flags&iouring.CqeFBuffer != 0 {
		id := uint16(flags >> 16)
		data = u.bufs.Buffer(id, int(max(res, 0)))
		// buffer copies the bytes out before the deferred Recycle.
		defer u.bufs.Recycle(id)
	}
	c := u.live(slot, gen)
	if c == nil {
		return
	}
	if flags&iouring.CqeFMore == 0 {
		c.flags &^= flagRecvArmed | flagCancelSent
	}

	switch {
	case res > 0:
		add(&sh.counters.bytesIn, uint64(res))
		u.buffer(c, data)
		timeout := sh.timing.command
		if c.sess.InData() {
			timeout = sh.timing.data
		}
		c.deadline = sh.wheel.now + sh.wheel.ticksFor(timeout)
	case res == 0:
		c.flags |= flagPeerClosed
	default:
		switch err := iouring.Errno(res); {
		case errors.Is(err, unix.ENOBUFS):
			// Every provided buffer is in use, so retry on the next turn.
			if c.flags&flagQueued == 0 {
				c.flags |= flagQueued
				sh.runq = append(sh.runq, timerEntry{c.slot, c.gen})
			}
			return
		case errors.Is(err, unix.ECANCELED):
		default:
			sh.closeConn(c)
			return
		}
	}
	sh.serve(slot)
}

// buffer appends received bytes to c's read buffer, spilling what does not
// fit. With a spill, later bytes go to the spill too, to keep their order.
func (u *uringPoller) buffer(c *conn, data []byte) {
	if sp, ok := u.spill[c.slot]; ok {
		u.spill[c.slot] = append(sp, data...)
		u.limitSpill(c)
		return
	}
	if c.buf == nil {
		u.sh.getBuf(c)
	}
	if c.r == c.w {
		c.r, c.w = 0, 0
	} else if int(c.w)+len(data) > readBufSize && c.r > 0 {
		c.w = int32(copy(c.buf[:], c.buf[c.r:c.w]))
		c.r = 0
	}
	n := copy(c.buf[c.w:], data)
	c.w += int32(n)
	if n < len(data) {
		u.spill[c.slot] = append([]byte(nil), data[n:]...)
		u.limitSpill(c)
	}
}

// limitSpill cancels c's receive once its spill passes maxSpill. resume
// re-arms it when the spill has been consumed.
func (u *uringPoller) limitSpill(c *conn) {
	if len(u.spill[c.slot]) > maxSpill && c.flags&(flagRecvArmed|flagCancelSent) == flagRecvArmed {
		u.cancel(userData(opRecv, c.slot, c.gen))
		c.flags |= flagCancelSent
	}
}

// refill moves spilled input into c's read buffer and reports whether it
// moved any.
func (u *uringPoller) refill(c *conn) bool {
	sp := u.spill[c.slot]
	if len(sp) == 0 {
		return false
	}
	if c.buf == nil {
		u.sh.getBuf(c)
	}
	if c.r > 0 {
		c.w = int32(copy(c.buf[:], c.buf[c.r:c.w]))
		c.r = 0
	}
	n := copy(c.buf[c.w:], sp)
	c.w += int32(n)
	if n == len(sp) {
		delete(u.spill, c.slot)
	} else {
		u.spill[c.slot] = sp[n:]
	}
	return n > 0
}

func (u *uringPoller) dropSpill(c *conn) { delete(u.spill, c.slot) }

// resume arms c's receive unless one is in flight or c must not read
// because the peer closed, a hand-off is pending, or too much input is
// buffered.
func (u *uringPoller) resume(c *conn) {
	if c.r == c.w && len(u.spill[c.slot]) == 0 {
		u.sh.putBuf(c)
	}
	if c.flags&(flagRecvArmed|flagPeerClosed|flagTLSPending) == 0 && len(u.spill[c.slot]) <= maxSpill {
		u.armRecv(c)
	}
}

// send starts a send of c's pending output unless one is in flight. It
// always returns true, because failures arrive as completions.
func (u *uringPoller) send(c *conn) bool {
	if c.flags&flagWriteBlocked != 0 {
		return true
	}
	out := c.sess.Output()
	if len(out) == 0 {
		return true
	}
	if c.out == nil {
		if n := len(u.sh.bufs); n > 0 {
			c.out = u.sh.bufs[n-1]
			u.sh.bufs = u.sh.bufs[:n-1]
		} else {
			c.out = new([readBufSize]byte)
		}
	}
	n := copy(c.out[:], out)
	c.sess.Advance(n)
	c.outOff, c.outLen = 0, int32(n)
	u.submitSend(c)
	return true
}

func (u *uringPoller) submitSend(c *conn) {
	sqe := u.sqe()
	sqe.Opcode = iouring.OpSend
	sqe.Fd = c.fd
	sqe.Addr = uint64(uintptr(unsafe.Pointer(&c.out[c.outOff])))
	sqe.Len = uint32(c.outLen - c.outOff)
	sqe.OpFlags = unix.MSG_NOSIGNAL
	sqe.UserData = userData(opSend, c.slot, c.gen)
	c.flags |= flagWriteBlocked
	u.inflight++
}

func (u *uringPoller) sent(ud uint64, slot, gen uint32, res int32) {
	sh := u.sh
	c := u.live(slot, gen)
	if c == nil {
		if buf, ok := u.orphans[ud]; ok {
			delete(u.orphans, ud)
			if len(sh.bufs) < maxPooledBufs {
				sh.bufs = append(sh.bufs, buf)
			}
		}
		return
	}
	if res < 0 {
		sh.closeConn(c)
		return
	}
	add(&sh.counters.bytesOut, uint64(res))
	c.outOff += res
	if c.outOff < c.outLen {
		u.submitSend(c)
		return
	}
	c.flags &^= flagWriteBlocked
	if len(sh.bufs) < maxPooledBufs {
		sh.bufs = append(sh.bufs, c.out)
	}
	c.out = nil
	sh.serve(slot)
}

// readyForHandOff reports whether no request on c is in flight, cancelling
// its receive if one is.
func (u *uringPoller) readyForHandOff(c *conn) bool {
	if c.flags&flagRecvArmed != 0 {
		if c.flags&flagCancelSent == 0 {
			u.cancel(userData(opRecv, c.slot, c.gen))
			c.flags |= flagCancelSent
		}
		return false
	}
	return c.flags&flagWriteBlocked == 0
}

// detach prepares c's socket to be closed. It cancels the receive, keeps
// the buffer of a send in flight alive, and submits, so that every request
// naming the descriptor reaches the kernel before the descriptor number can
// be reused.
func (u *uringPoller) detach(c *conn) {
	if c.flags&flagRecvArmed != 0 {
		u.cancel(userData(opRecv, c.slot, c.gen))
	}
	if c.flags&flagWriteBlocked != 0 && c.out != nil {
		u.orphans[userData(opSend, c.slot, c.gen)] = c.out
		c.out = nil
	}
	delete(u.spill, c.slot)
	u.submit()
}
