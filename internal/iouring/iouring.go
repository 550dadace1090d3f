//go:build linux

// Package iouring is a minimal io_uring binding for the engine's shards:
// ring setup and teardown, opcode probing, submission and completion queue
// access, and provided-buffer rings. It uses the raw io_uring_setup(2),
// io_uring_enter(2) and io_uring_register(2) system calls through
// golang.org/x/sys/unix and no C library.
//
// # Memory ordering
//
// The submission and completion rings are shared with the kernel through
// mmap, and their head and tail indexes are accessed with sync/atomic. The
// application writes SQEs and then publishes them with an atomic store of
// the SQ tail, which acts as a release. It reads CQEs only after an atomic
// load of the CQ tail, which acts as an acquire. All other ring memory is
// accessed with plain loads and stores.
//
// A Ring is not safe for concurrent use. The engine gives each shard its
// own ring, used only from the shard's locked OS thread.
package iouring

import (
	"errors"
	"fmt"
	"os"
	"sync/atomic"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Opcodes (include/uapi/linux/io_uring.h, enum io_uring_op).
const (
	OpNop         uint8 = 0
	OpPollAdd     uint8 = 6
	OpAccept      uint8 = 13
	OpAsyncCancel uint8 = 14
	OpClose       uint8 = 19
	OpRead        uint8 = 22
	OpWrite       uint8 = 23
	OpSend        uint8 = 26
	OpRecv        uint8 = 27
)

// SQE flags, ioprio flags and CQE flags.
const (
	SqeBufferSelect uint8 = 1 << 5 // IOSQE_BUFFER_SELECT, the kernel picks a buffer from sqe.buf_group

	AcceptMultishot uint16 = 1 << 0 // IORING_ACCEPT_MULTISHOT, in sqe.ioprio
	RecvMultishot   uint16 = 1 << 1 // IORING_RECV_MULTISHOT, in sqe.ioprio

	AsyncCancelAny uint32 = 1 << 2 // IORING_ASYNC_CANCEL_ANY, in sqe.cancel_flags (OpFlags), matches every request

	CqeFBuffer uint32 = 1 << 0 // IORING_CQE_F_BUFFER, the upper 16 bits of the flags name the buffer
	CqeFMore   uint32 = 1 << 1 // IORING_CQE_F_MORE, the multishot request stays armed

	cqeBufferShift = 16
)

const (
	enterGetEvents = 1 << 0 // IORING_ENTER_GETEVENTS
	enterExtArg    = 1 << 3 // IORING_ENTER_EXT_ARG

	featSingleMmap = 1 << 0 // IORING_FEAT_SINGLE_MMAP
	featNoDrop     = 1 << 1 // IORING_FEAT_NODROP
	featExtArg     = 1 << 8 // IORING_FEAT_EXT_ARG

	offSQRing = 0
	offCQRing = 0x8000000
	offSQEs   = 0x10000000

	registerProbe      = 8
	registerPbufRing   = 22
	unregisterPbufRing = 23
	probeOpSupported   = 1 << 0
	probeOps           = 256
	setupClamp         = 1 << 4 // IORING_SETUP_CLAMP
	setupCoopTaskrun   = 1 << 8 // IORING_SETUP_COOP_TASKRUN
	setupSubmitAll     = 1 << 7 // IORING_SETUP_SUBMIT_ALL
)

// ErrUnavailable wraps every reason io_uring cannot be used here: no kernel
// support, disabled by sysctl kernel.io_uring_disabled or a seccomp filter,
// or a missing feature or opcode.
var ErrUnavailable = errors.New("iouring: unavailable")

// SQE is a submission queue entry (struct io_uring_sqe, 64 bytes).
type SQE struct {
	Opcode      uint8
	Flags       uint8
	Ioprio      uint16
	Fd          int32
	Off         uint64
	Addr        uint64
	Len         uint32
	OpFlags     uint32 // msg_flags, accept_flags, poll32_events, ...
	UserData    uint64
	BufGroup    uint16 // buf_index or buf_group
	Personality uint16
	SpliceFdIn  int32
	Addr3       uint64
	_           uint64
}

// CQE is a completion queue entry (struct io_uring_cqe without CQE32).
type CQE struct {
	UserData uint64
	Res      int32
	Flags    uint32
}

// BufferID returns the provided buffer a completion used; valid when
// Flags has CqeFBuffer.
func (c *CQE) BufferID() uint16 { return uint16(c.Flags >> cqeBufferShift) }

type sqringOffsets struct {
	head, tail, ringMask, ringEntries, flags, dropped, array, resv1 uint32
	userAddr                                                        uint64
}

type cqringOffsets struct {
	head, tail, ringMask, ringEntries, overflow, cqes, flags, resv1 uint32
	userAddr                                                        uint64
}

type params struct {
	sqEntries, cqEntries, flags, sqThreadCPU, sqThreadIdle, features, wqFd uint32
	resv                                                                   [3]uint32
	sqOff                                                                  sqringOffsets
	cqOff                                                                  cqringOffsets
}

// Ring is one io_uring instance with its mmapped queues.
type Ring struct {
	fd       int
	features uint32
	ringMem  []byte // SQ and CQ rings (IORING_FEAT_SINGLE_MMAP)
	sqeMem   []byte

	sqHead, sqTail *uint32 // kernel advances head, we advance tail
	sqMask         uint32
	sqArray        []uint32
	sqes           []SQE
	sqLocalTail    uint32 // SQEs handed out, published at Submit

	cqHead, cqTail *uint32 // we advance head, kernel advances tail
	cqMask         uint32
	cqes           []CQE
}

// New sets up a ring with at least entries submission slots and twice as
// many completion slots.
func New(entries uint32) (*Ring, error) {
	if os.Getenv("SMTA_IOURING_DISABLE") == "1" {
		return nil, fmt.Errorf("%w: disabled by SMTA_IOURING_DISABLE", ErrUnavailable)
	}
	var p params
	p.flags = setupClamp | setupSubmitAll
	fd, _, errno := unix.Syscall(unix.SYS_IO_URING_SETUP, uintptr(entries), uintptr(unsafe.Pointer(&p)), 0)
	if errno != 0 {
		if errno == unix.ENOSYS || errno == unix.EPERM || errno == unix.EINVAL || errno == unix.EACCES {
			return nil, fmt.Errorf("%w: %w", ErrUnavailable, os.NewSyscallError("io_uring_setup", errno))
		}
		return nil, os.NewSyscallError("io_uring_setup", errno)
	}
	r := &Ring{fd: int(fd), features: p.features}
	if p.features&featSingleMmap == 0 || p.features&featExtArg == 0 || p.features&featNoDrop == 0 {
		r.Close()
		return nil, fmt.Errorf("%w: kernel lacks IORING_FEAT_SINGLE_MMAP, NODROP or EXT_ARG (features %#x)", ErrUnavailable, p.features)
	}

	sqSize := p.sqOff.array + p.sqEntries*4
	cqSize := p.cqOff.cqes + p.cqEntries*uint32(unsafe.Sizeof(CQE{}))
	size := max(sqSize, cqSize)
	mem, err := unix.Mmap(r.fd, offSQRing, int(size), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
	if err != nil {
		r.Close()
		return nil, os.NewSyscallError("mmap", err)
	}
	r.ringMem = mem
	sqeMem, err := unix.Mmap(r.fd, offSQEs, int(p.sqEntries)*int(unsafe.Sizeof(SQE{})), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
	if err != nil {
		r.Close()
		return nil, os.NewSyscallError("mmap", err)
	}
	r.sqeMem = sqeMem

	base := unsafe.Pointer(&mem[0])
	r.sqHead = (*uint32)(unsafe.Add(base, p.sqOff.head))
	r.sqTail = (*uint32)(unsafe.Add(base, p.sqOff.tail))
	r.sqMask = *(*uint32)(unsafe.Add(base, p.sqOff.ringMask))
	r.sqArray = unsafe.Slice((*uint32)(unsafe.Add(base, p.sqOff.array)), p.sqEntries)
	r.sqes = unsafe.Slice((*SQE)(unsafe.Pointer(&sqeMem[0])), p.sqEntries)
	r.sqLocalTail = atomic.LoadUint32(r.sqTail)

	r.cqHead = (*uint32)(unsafe.Add(base, p.cqOff.head))
	r.cqTail = (*uint32)(unsafe.Add(base, p.cqOff.tail))
	r.cqMask = *(*uint32)(unsafe.Add(base, p.cqOff.ringMask))
	r.cqes = unsafe.Slice((*CQE)(unsafe.Add(base, p.cqOff.cqes)), p.cqEntries)
	return r, nil
}

// Close unmaps the queues and closes the ring. Requests still in flight are
// cancelled by the kernel.
func (r *Ring) Close() error {
	if r.sqeMem != nil {
		unix.Munmap(r.sqeMem)
		r.sqeMem = nil
	}
	if r.ringMem != nil {
		unix.Munmap(r.ringMem)
		r.ringMem = nil
	}
	if r.fd >= 0 {
		err := unix.Close(r.fd)
		r.fd = -1
		return err
	}
	return nil
}

// Probe reports whether the kernel supports every opcode in ops.
func (r *Ring) Probe(ops ...uint8) error {
	// struct io_uring_probe: a 16-byte header, then 8 bytes per opcode.
	buf := make([]byte, 16+8*probeOps)
	_, _, errno := unix.Syscall6(unix.SYS_IO_URING_REGISTER, uintptr(r.fd), registerProbe,
		uintptr(unsafe.Pointer(&buf[0])), probeOps, 0, 0)
	if errno != 0 {
		return fmt.Errorf("%w: %w", ErrUnavailable, os.NewSyscallError("io_uring_register PROBE", errno))
	}
	lastOp := buf[0]
	for _, op := range ops {
		entry := buf[16+8*int(op):]
		if op > lastOp || entry[2]&probeOpSupported == 0 {
			return fmt.Errorf("%w: opcode %d not supported", ErrUnavailable, op)
		}
	}
	return nil
}

// GetSQE returns a zeroed submission entry, or nil when the queue is full;
// the caller then calls Submit and retries.
func (r *Ring) GetSQE() *SQE {
	head := atomic.LoadUint32(r.sqHead)
	if r.sqLocalTail-head >= uint32(len(r.sqes)) {
		return nil
	}
	idx := r.sqLocalTail & r.sqMask
	r.sqLocalTail++
	sqe := &r.sqes[idx]
	*sqe = SQE{}
	r.sqArray[idx] = idx
	return sqe
}

// Pending returns how many SQEs are prepared and not yet submitted.
func (r *Ring) Pending() uint32 { return r.sqLocalTail - *r.sqTail }

// Submit publishes the prepared SQEs and enters the kernel. With wait set
// it also waits for at least one completion, at most timeoutNs nanoseconds
// (0 means without limit). It returns how many SQEs the kernel consumed.
func (r *Ring) Submit(wait bool, timeoutNs int64) (int, error) {
	// Release: the SQE contents must be visible before the new tail.
	atomic.StoreUint32(r.sqTail, r.sqLocalTail)
	toSubmit := r.sqLocalTail - atomic.LoadUint32(r.sqHead)

	var flags, minComplete uint32
	var arg unsafe.Pointer
	var argSize uintptr
	var ext struct {
		sigmask   uint64
		sigmaskSz uint32
		minWait   uint32
		ts        uint64
	}
	var ts unix.Timespec
	if wait {
		flags |= enterGetEvents
		minComplete = 1
		if timeoutNs > 0 {
			ts = unix.NsecToTimespec(timeoutNs)
			ext.ts = uint64(uintptr(unsafe.Pointer(&ts)))
			flags |= enterExtArg
			arg = unsafe.Pointer(&ext)
			argSize = unsafe.Sizeof(ext)
		}
	}
	if toSubmit == 0 && !wait {
		return 0, nil
	}
	n, _, errno := unix.Syscall6(unix.SYS_IO_URING_ENTER, uintptr(r.fd), uintptr(toSubmit), uintptr(minComplete),
		uintptr(flags), uintptr(arg), argSize)
	switch errno {
	case 0:
		return int(n), nil
	case unix.ETIME, unix.EINTR, unix.EAGAIN, unix.EBUSY:
		// Timed out, interrupted, or the completion queue needs draining
		// before more submissions: not errors for an event loop.
		return int(n), nil
	}
	return int(n), os.NewSyscallError("io_uring_enter", errno)
}

// PeekCQE returns the oldest unconsumed completion, or nil. The entry stays
// valid until SeenCQE.
func (r *Ring) PeekCQE() *CQE {
	head := *r.cqHead
	// Acquire: the CQE contents are visible once the tail is.
	if head == atomic.LoadUint32(r.cqTail) {
		return nil
	}
	return &r.cqes[head&r.cqMask]
}

// SeenCQE consumes the completion returned by PeekCQE.
func (r *Ring) SeenCQE() {
	atomic.StoreUint32(r.cqHead, *r.cqHead+1)
}

// BufRing is a provided-buffer ring (IORING_REGISTER_PBUF_RING): count
// buffers of size bytes each that the kernel picks from for recv requests
// with SqeBufferSelect. The ring and the buffers are mmapped anonymous
// memory outside the Go heap, so the garbage collector never scans or
// moves them and the kernel may write into them at any time.
type BufRing struct {
	ring  *Ring
	group uint16
	mem   []byte // the io_uring_buf entries
	bufs  []byte // count*size bytes
	size  int
	mask  uint16
	tail  uint16
}

// bufEntry is struct io_uring_buf. The ring's tail shares the first
// entry's resv field.
type bufEntry struct {
	addr uint64
	len  uint32
	bid  uint16
	resv uint16
}

// NewBufRing registers a provided-buffer ring of count (a power of two up
// to 32768) buffers of size bytes as buffer group group, and provides all
// of them.
func (r *Ring) NewBufRing(group uint16, count, size int) (*BufRing, error) {
	if count <= 0 || count > 1<<15 || count&(count-1) != 0 {
		return nil, fmt.Errorf("iouring: buffer count %d is not a power of two up to 32768", count)
	}
	mem, err := unix.Mmap(-1, 0, count*int(unsafe.Sizeof(bufEntry{})), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_POPULATE)
	if err != nil {
		return nil, os.NewSyscallError("mmap", err)
	}

	bufs, err := unix.Mmap(-1, 0, count*size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		unix.Munmap(mem)
		return nil, os.NewSyscallError("mmap", err)
	}
	reg := struct {
		ringAddr    uint64
		ringEntries uint32
		bgid        uint16
		flags       uint16
		resv        [3]uint64
	}{ringAddr: uint64(uintptr(unsafe.Pointer(&mem[0]))), ringEntries: uint32(count), bgid: group}
	_, _, errno := unix.Syscall6(unix.SYS_IO_URING_REGISTER, uintptr(r.fd), registerPbufRing, uintptr(unsafe.Pointer(&reg)), 1, 0, 0)
	if errno != 0 {
		unix.Munmap(mem)
		unix.Munmap(bufs)
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, os.NewSyscallError("io_uring_register PBUF_RING", errno))
	}
	b := &BufRing{ring: r, group: group, mem: mem, bufs: bufs, size: size, mask: uint16(count - 1)}
	for i := range count {
		b.put(uint16(i))
	}
	b.publish()
	return b, nil
}

// Group returns the buffer group id for SQE.BufGroup.
func (b *BufRing) Group() uint16 { return b.group }

// Buffer returns the first n bytes of buffer id.
func (b *BufRing) Buffer(id uint16, n int) []byte {
	off := int(id) * b.size
	return b.bufs[off : off+n : off+b.size]
}

// Recycle gives buffer id back to the kernel.
func (b *BufRing) Recycle(id uint16) {
	b.put(id)
	b.publish()
}

func (b *BufRing) entries() []bufEntry {
	return unsafe.Slice((*bufEntry)(unsafe.Pointer(&b.mem[0])), int(b.mask)+1)
}

func (b *BufRing) put(id uint16) {
	e := &b.entries()[b.tail&b.mask]
	e.addr = uint64(uintptr(unsafe.Pointer(&b.bufs[int(id)*b.size])))
	e.len = uint32(b.size)
	e.bid = id
	b.tail++
}

// publish stores the tail with release semantics. Go has no 16-bit atomic
// store, so it stores the 32-bit word at offset 12 of the first entry,
// whose low half is that entry's bid and whose high half is the tail
// (little-endian). The bid half is rewritten with its current value, which
// only this goroutine writes.
func (b *BufRing) publish() {
	first := &b.entries()[0]
	word := (*uint32)(unsafe.Pointer(&first.bid))
	atomic.StoreUint32(word, uint32(b.tail)<<16|uint32(first.bid))
}

// Close unregisters the buffer ring and unmaps its memory.
func (b *BufRing) Close() error {
	reg := struct {
		ringAddr    uint64
		ringEntries uint32
		bgid        uint16
		flags       uint16
		resv        [3]uint64
	}{bgid: b.group}
	_, _, errno := unix.Syscall6(unix.SYS_IO_URING_REGISTER, uintptr(b.ring.fd), unregisterPbufRing, uintptr(unsafe.Pointer(&reg)), 1, 0, 0)
	unix.Munmap(b.mem)
	unix.Munmap(b.bufs)
	if errno != 0 {
		return os.NewSyscallError("io_uring_register UNREGISTER_PBUF_RING", errno)
	}
	return nil
}

// Errno converts a negative CQE result to an error.
func Errno(res int32) error {
	if res >= 0 {
		return nil
	}
	return syscall.Errno(-res)
}

// FD returns the ring's file descriptor, which is readable (poll(2)) while
// completions are waiting.
func (r *Ring) FD() int { return r.fd }
