package spool

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
)

// Record layout. Every chunk of a body is stored as one record: a fixed
// 24-octet header followed by the payload. All integers are little-endian.
//
//	offset size field
//	     0    4 magic       recordMagic ("SPR1" on disk)
//	     4    4 generation  the segment's generation when the record was written
//	     8    4 sequence    index of this record within its message, from 0
//	    12    4 length      payload length in octets
//	    16    4 flags       flagLast on the final record of a message
//	    20    4 checksum    CRC-32C (Castagnoli) of octets 0..19 and the payload
//	    24    …  payload    body bytes in SMTP wire form
//
// The generation makes bytes left over from an earlier use of a recycled
// segment read back as invalid even when their checksum is intact: the index
// stores the generation each extent was written under and recovery compares
// the two.
const (
	recordHeaderSize = 24
	recordMagic      = 0x31525053 // "SPR1" as little-endian bytes

	flagLast = 1 << 0 // final record of a message
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

var (
	// ErrCorrupt is returned when a record fails verification: wrong magic,
	// generation, sequence or length, or a checksum mismatch.
	ErrCorrupt = errors.New("spool: corrupt record")
)

// recordHeader is the decoded form of a record header.
type recordHeader struct {
	gen    uint32
	seq    uint32
	length uint32
	flags  uint32
	crc    uint32
}

// putHeader encodes h into b[:recordHeaderSize], computing the checksum over
// the header and payload. h.crc is ignored.
func putHeader(b []byte, h recordHeader, payload []byte) {
	binary.LittleEndian.PutUint32(b[0:], recordMagic)
	binary.LittleEndian.PutUint32(b[4:], h.gen)
	binary.LittleEndian.PutUint32(b[8:], h.seq)
	binary.LittleEndian.PutUint32(b[12:], h.length)
	binary.LittleEndian.PutUint32(b[16:], h.flags)
	crc := crc32.Update(0, castagnoli, b[:20])
	crc = crc32.Update(crc, castagnoli, payload)
	binary.LittleEndian.PutUint32(b[20:], crc)
}

// decodeHeader parses a record header without checking the checksum, which
// needs the payload (see verifyRecord). Its errors, like verifyRecord's,
// describe the mismatch only; readRecord adds ErrCorrupt and the location.
func decodeHeader(b []byte) (recordHeader, error) {
	if len(b) < recordHeaderSize {
		return recordHeader{}, fmt.Errorf("header is %d octets, want %d", len(b), recordHeaderSize)
	}
	if m := binary.LittleEndian.Uint32(b[0:]); m != recordMagic {
		return recordHeader{}, fmt.Errorf("magic %#08x, want %#08x", m, recordMagic)
	}
	return recordHeader{
		gen:    binary.LittleEndian.Uint32(b[4:]),
		seq:    binary.LittleEndian.Uint32(b[8:]),
		length: binary.LittleEndian.Uint32(b[12:]),
		flags:  binary.LittleEndian.Uint32(b[16:]),
		crc:    binary.LittleEndian.Uint32(b[20:]),
	}, nil
}

// verifyRecord checks a whole record (header and payload) read from disk
// against the extent the index recorded for it.
func verifyRecord(rec []byte, want extent) error {
	h, err := decodeHeader(rec)
	if err != nil {
		return err
	}
	switch {
	case h.gen != want.Gen:
		return fmt.Errorf("generation %d, want %d (stale data from an earlier use of the segment)", h.gen, want.Gen)
	case h.seq != want.Seq:
		return fmt.Errorf("sequence %d, want %d", h.seq, want.Seq)
	case h.length != want.Len:
		return fmt.Errorf("length %d, want %d", h.length, want.Len)
	case int64(len(rec)) != recordHeaderSize+int64(h.length):
		return fmt.Errorf("record is %d octets, header gives %d", len(rec), recordHeaderSize+int64(h.length))
	}
	crc := crc32.Update(0, castagnoli, rec[:20])
	crc = crc32.Update(crc, castagnoli, rec[recordHeaderSize:])
	if crc != h.crc {
		return fmt.Errorf("checksum %#08x, want %#08x", crc, h.crc)
	}
	return nil
}
