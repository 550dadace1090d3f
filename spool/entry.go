package spool

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"time"
)

// Entry encoding (the value of an m/<id> index key). Integers are varints
// from encoding/binary: uvarint for counts and unsigned fields, zig-zag
// varint otherwise. A string is a uvarint length followed by the bytes. A
// time is a varint of nanoseconds since the Unix epoch in UTC, or 0 for the
// zero time.
//
//	version   byte, entryVersion
//	extents   uvarint count, then per extent:
//	          uvarint segment, uvarint generation, varint offset, uvarint length
//	          (the sequence is the extent's position)
//	envelope  string id, string from,
//	          uvarint recipient count, then per recipient:
//	              string addr, string orcpt, string notify, byte state,
//	              varint attempts, time next attempt, string last reply
//	          time received, string client, string helo, string envid,
//	          string ret, byte flags (bit 0 8BITMIME, bit 1 SMTPUTF8),
//	          string job, string vmta, varint size
//
// A binary form is used instead of JSON because every commit encodes an
// entry and every recovery decodes all of them, and JSON costs several times
// more on both paths. TestEntryCoversEnvelope fails when a field is added to
// Envelope or Recipient without being added here.
const entryVersion = 1

var errShortEntry = errors.New("spool: entry truncated")

func encodeEntry(env *Envelope, exts []extent) []byte {
	n := 64 + len(env.ID) + len(env.From) + len(env.ClientAddr) + len(env.Helo) + len(env.EnvID) +
		len(env.Ret) + len(env.JobID) + len(env.VMTA) + 16*len(exts)
	for i := range env.Rcpts {
		r := &env.Rcpts[i]
		n += 24 + len(r.Addr) + len(r.ORcpt) + len(r.Notify) + len(r.LastReply)
	}
	b := make([]byte, 0, n)

	b = append(b, entryVersion)
	b = binary.AppendUvarint(b, uint64(len(exts)))
	for _, x := range exts {
		b = binary.AppendUvarint(b, uint64(x.Seg))
		b = binary.AppendUvarint(b, uint64(x.Gen))
		b = binary.AppendVarint(b, x.Off)
		b = binary.AppendUvarint(b, uint64(x.Len))
	}

	b = appendString(b, env.ID)
	b = appendString(b, env.From)
	b = binary.AppendUvarint(b, uint64(len(env.Rcpts)))
	for i := range env.Rcpts {
		r := &env.Rcpts[i]
		b = appendString(b, r.Addr)
		b = appendString(b, r.ORcpt)
		b = appendString(b, r.Notify)
		b = append(b, byte(r.State))
		b = binary.AppendVarint(b, int64(r.Attempts))
		b = appendTime(b, r.NextAttempt)
		b = appendString(b, r.LastReply)
	}
	b = appendTime(b, env.Received)
	b = appendString(b, env.ClientAddr)
	b = appendString(b, env.Helo)
	b = appendString(b, env.EnvID)
	b = appendString(b, env.Ret)
	var flags byte
	if env.Body8Bit {
		flags |= 1 << 0
	}
	if env.SMTPUTF8 {
		flags |= 1 << 1
	}
	b = append(b, flags)
	b = appendString(b, env.JobID)
	b = appendString(b, env.VMTA)
	b = binary.AppendVarint(b, env.Size)
	return b
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func appendTime(b []byte, t time.Time) []byte {
	if t.IsZero() {
		return binary.AppendVarint(b, 0)
	}
	return binary.AppendVarint(b, t.UnixNano())
}

// decodeEntry parses an index value and checks that its extents are
// consistent: offsets are not negative and the payload lengths add up to
// Env.Size.
func decodeEntry(b []byte) (entry, error) {
	d := entryDecoder{b: b}
	if v := d.byte(); d.err == nil && v != entryVersion {
		return entry{}, fmt.Errorf("spool: entry version %d, want %d", v, entryVersion)
	}

	// Every extent takes at least 4 octets, which bounds the allocation
	// for a corrupt count.
	var e entry
	if n := d.count(4); n > 0 {
		e.Extents = make([]extent, n)
		for i := range e.Extents {
			x := &e.Extents[i]
			x.Seg = d.uint32()
			x.Gen = d.uint32()
			x.Seq = uint32(i)
			x.Off = d.varint()
			x.Len = d.uint32()
		}
	}

	env := &e.Env
	env.ID = d.string()
	env.From = d.string()
	if n := d.count(7); n > 0 {
		env.Rcpts = make([]Recipient, n)
		for i := range env.Rcpts {
			r := &env.Rcpts[i]
			r.Addr = d.string()
			r.ORcpt = d.string()
			r.Notify = d.string()
			r.State = RcptState(d.byte())
			r.Attempts = int(d.varint())
			r.NextAttempt = d.time()
			r.LastReply = d.string()
		}
	}
	env.Received = d.time()
	env.ClientAddr = d.string()
	env.Helo = d.string()
	env.EnvID = d.string()
	env.Ret = d.string()
	flags := d.byte()
	env.Body8Bit = flags&(1<<0) != 0
	env.SMTPUTF8 = flags&(1<<1) != 0
	env.JobID = d.string()
	env.VMTA = d.string()
	env.Size = d.varint()

	if d.err != nil {
		return entry{}, d.err
	}
	if len(d.b) != 0 {
		return entry{}, fmt.Errorf("spool: entry %s has %d trailing octets", env.ID, len(d.b))
	}
	if env.ID == "" {
		return entry{}, fmt.Errorf("spool: entry has no message id")
	}
	var total int64
	for i, x := range e.Extents {
		if x.Off < 0 {
			return entry{}, fmt.Errorf("spool: entry %s: extent %d has negative offset %d", env.ID, i, x.Off)
		}
		total += int64(x.Len)
	}
	if total != env.Size {
		return entry{}, fmt.Errorf("spool: entry %s: extents hold %d octets, envelope size is %d", env.ID, total, env.Size)
	}
	return e, nil
}

// entryDecoder reads the fields of an entry. After the first error every
// read returns a zero value and err keeps that error.
type entryDecoder struct {
	b   []byte
	err error
}

func (d *entryDecoder) fail(err error) {
	if d.err == nil {
		d.err = err
	}
	d.b = nil
}

func (d *entryDecoder) byte() byte {
	if len(d.b) < 1 {
		d.fail(errShortEntry)
		return 0
	}
	v := d.b[0]
	d.b = d.b[1:]
	return v
}

func (d *entryDecoder) uvarint() uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail(errShortEntry)
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *entryDecoder) varint() int64 {
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail(errShortEntry)
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *entryDecoder) uint32() uint32 {
	v := d.uvarint()
	if v > math.MaxUint32 {
		d.fail(fmt.Errorf("spool: entry field %d exceeds 32 bits", v))
		return 0
	}
	return uint32(v)
}

// count reads an element count and rejects one that the remaining octets
// cannot hold at minSize octets per element.
func (d *entryDecoder) count(minSize int) int {
	v := d.uvarint()
	if v > uint64(len(d.b)/minSize) {
		d.fail(fmt.Errorf("spool: entry count %d exceeds the %d octets left", v, len(d.b)))
		return 0
	}
	return int(v)
}

func (d *entryDecoder) string() string {
	n := d.uvarint()
	if n > uint64(len(d.b)) {
		d.fail(errShortEntry)
		return ""
	}
	s := string(d.b[:n])
	d.b = d.b[n:]
	return s
}

func (d *entryDecoder) time() time.Time {
	ns := d.varint()
	if ns == 0 {
		return time.Time{}
	}
	return time.Unix(0, ns).UTC()
}
