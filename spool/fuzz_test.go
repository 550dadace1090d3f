package spool

import (
	"encoding/binary"
	"reflect"
	"testing"
	"time"
)

// FuzzRecord feeds arbitrary bytes to the record decoder and verifier. They
// must never panic, and a record that verifies must re-encode to the same
// bytes.
func FuzzRecord(f *testing.F) {
	valid := func(gen, seq uint32, flags uint32, payload string) []byte {
		rec := make([]byte, recordHeaderSize+len(payload))
		copy(rec[recordHeaderSize:], payload)
		putHeader(rec, recordHeader{gen: gen, seq: seq, length: uint32(len(payload)), flags: flags}, rec[recordHeaderSize:])
		return rec
	}
	// A valid single-record body.
	f.Add(valid(1, 0, flagLast, "Subject: x\r\n\r\nhi\r\n"))
	// A valid empty final record.
	f.Add(valid(7, 3, flagLast, ""))
	// A header with no payload although its length field is 5.
	f.Add(valid(1, 0, 0, "hello")[:recordHeaderSize])
	// A payload byte flipped after the checksum was computed.
	flipped := valid(1, 0, 0, "hello")
	flipped[recordHeaderSize] ^= 1
	f.Add(flipped)
	// Zeros, as read from a preallocated segment never written.
	f.Add(make([]byte, recordHeaderSize+8))
	// Too short for a header.
	f.Add([]byte("SPR1"))
	// A length field of 2^32-1 octets with a short payload.
	huge := valid(1, 0, 0, "hi")
	binary.LittleEndian.PutUint32(huge[12:], 0xffffffff)
	f.Add(huge)

	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := decodeHeader(b)
		if err != nil {
			return
		}
		want := extent{Gen: h.gen, Seq: h.seq, Len: h.length}
		if err := verifyRecord(b, want); err != nil {
			return
		}
		again := make([]byte, len(b))
		copy(again[recordHeaderSize:], b[recordHeaderSize:])
		putHeader(again, h, again[recordHeaderSize:])
		if string(again) != string(b) {
			t.Errorf("record %q verifies but re-encodes as %q", b, again)
		}
	})
}

// FuzzEntry feeds arbitrary bytes to the index entry decoder. It must never
// panic, and an entry it accepts must survive an encode and decode round
// trip unchanged.
func FuzzEntry(f *testing.F) {
	env := testEnvelope("a@example.com", "b@example.net")
	env.ID = "mx1-tpjfmb-1"
	env.Size = 30
	env.Rcpts[1].State = RcptBounced
	env.Rcpts[1].NextAttempt = time.Unix(1700000600, 5).UTC()
	good := encodeEntry(env, []extent{{Seg: 3, Gen: 2, Seq: 0, Off: 4096, Len: 20}, {Seg: 4, Gen: 1, Seq: 1, Off: 0, Len: 10}})
	// A valid entry: two extents, two recipients, one with a retry time.
	f.Add(good)
	// A valid entry with an empty body and no recipients.
	f.Add(encodeEntry(&Envelope{ID: "x"}, nil))
	// Truncated in the middle.
	f.Add(good[:len(good)/2])
	// An unknown version.
	f.Add(append([]byte{entryVersion + 1}, good[1:]...))
	// An extent count far beyond the octets that follow.
	f.Add([]byte{entryVersion, 0xff, 0xff, 0xff, 0xff, 0x0f})
	// Extents that do not add up to the size.
	f.Add(encodeEntry(&Envelope{ID: "x", Size: 99}, []extent{{Len: 1}}))
	// A negative offset.
	f.Add(encodeEntry(&Envelope{ID: "x", Size: 1}, []extent{{Off: -24, Len: 1}}))
	// No id.
	f.Add(encodeEntry(&Envelope{}, nil))

	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := decodeEntry(b)
		if err != nil {
			return
		}
		// Re-encoding can only differ in non-minimal varints, which the
		// decoder accepts, so compare decoded forms.
		again := encodeEntry(&e.Env, e.Extents)
		e2, err := decodeEntry(again)
		if err != nil {
			t.Fatalf("decodeEntry(encodeEntry(%+v)) = %v", e, err)
		}
		if !reflect.DeepEqual(e, e2) {
			t.Errorf("entry round trip changed it:\n%+v\n%+v", e, e2)
		}
	})
}
