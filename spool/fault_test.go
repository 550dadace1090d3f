package spool

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"golang.org/x/sys/unix"
)

// TestRecoveryCorruption damages stored records in the ways a disk or a bug
// can, and checks that Open moves exactly the damaged messages aside and
// keeps the others.
func TestRecoveryCorruption(t *testing.T) {
	dir := t.TempDir()
	opts := Options{SegmentSize: minSegmentSize}
	s := openTest(t, dir, opts)

	// Five 5 KiB messages, written one after another into one segment,
	// except the last, which gets a segment of its own.
	names := []string{"intact", "flipped", "stale", "truncated", "missing segment"}
	msgs := make(map[string]*Message)
	bodies := make(map[string][]byte)
	for i, name := range names {
		body := testBody(uint64(i), 5<<10)
		if name == "missing segment" {
			// Seal the segment so this message starts a new one.
			if err := s.rotate(s.active.Load()); err != nil {
				t.Fatalf("rotate() = %v", err)
			}
		}
		m, err := s.Inject(testEnvelope("r@example.com"), body)
		if err != nil {
			t.Fatalf("Inject = %v", err)
		}
		msgs[name] = m
		bodies[name] = body
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close() = %v", err)
	}
	if msgs["missing segment"].exts[0].Seg == msgs["intact"].exts[0].Seg {
		t.Fatalf("message %q shares segment %d with the others", "missing segment", msgs["intact"].exts[0].Seg)
	}
	segPath := func(m *Message) string {
		return segmentPath(filepath.Join(dir, "segments"), m.exts[0].Seg)
	}

	// Flip one payload byte: the checksum must catch it.
	x := msgs["flipped"].exts[0]
	f, err := os.OpenFile(segPath(msgs["flipped"]), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	p := make([]byte, 1)
	off := x.Off + recordHeaderSize + 100
	f.ReadAt(p, off)
	p[0] ^= 0x20
	if _, err := f.WriteAt(p, off); err != nil {
		t.Fatal(err)
	}

	// Rewrite a record under another generation with a valid checksum:
	// only the generation check can catch it.
	x = msgs["stale"].exts[0]
	rec := make([]byte, recordHeaderSize+int(x.Len))
	if _, err := f.ReadAt(rec, x.Off); err != nil {
		t.Fatal(err)
	}
	h, err := decodeHeader(rec)
	if err != nil {
		t.Fatal(err)
	}
	h.gen--
	putHeader(rec, h, rec[recordHeaderSize:])
	if _, err := f.WriteAt(rec, x.Off); err != nil {
		t.Fatal(err)
	}

	// Truncate the segment in the middle of the last message's payload.
	x = msgs["truncated"].exts[0]
	if x.Seg != msgs["flipped"].exts[0].Seg {
		t.Fatalf("truncated message in segment %d, want %d", x.Seg, msgs["flipped"].exts[0].Seg)
	}
	if err := f.Truncate(x.Off + recordHeaderSize + 100); err != nil {
		t.Fatal(err)
	}
	f.Close()

	// Delete the file of the message that sits alone in its segment.
	if err := os.Remove(segPath(msgs["missing segment"])); err != nil {
		t.Fatal(err)
	}

	s = openTest(t, dir, opts)
	got := recoverAll(t, s)
	if st := s.Stats(); st.Corrupt != 4 {
		t.Errorf("Stats().Corrupt = %d, want 4", st.Corrupt)
	}
	if len(got) != 1 {
		t.Errorf("recovered %d messages, want 1", len(got))
	}
	intact := got[msgs["intact"].Env.ID]
	if intact == nil {
		t.Fatalf("intact message %s not recovered", msgs["intact"].Env.ID)
	}
	if b := readBody(t, s, intact); !bytes.Equal(b, bodies["intact"]) {
		t.Errorf("body of the intact message differs after recovery")
	}
	for _, name := range names[1:] {
		id := msgs[name].Env.ID
		if _, ok := got[id]; ok {
			t.Errorf("%s message %s recovered, want it moved aside", name, id)
		}
		if !hasKey(t, s.db, prefixCorrupt+id) {
			t.Errorf("%s message %s: key %s missing", name, id, prefixCorrupt+id)
		}
		if hasKey(t, s.db, prefixMessage+id) {
			t.Errorf("%s message %s: key %s still present", name, id, prefixMessage+id)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close() = %v", err)
	}

	// The damaged messages were moved once; the next open finds only the
	// intact one and reports nothing new.
	s = openTest(t, dir, opts)
	defer s.Close()
	got = recoverAll(t, s)
	if st := s.Stats(); st.Corrupt != 0 || len(got) != 1 {
		t.Errorf("second reopen: %d corrupt, %d recovered, want 0 and 1", st.Corrupt, len(got))
	}
}

func hasKey(t *testing.T, db *pebble.DB, key string) bool {
	t.Helper()
	_, closer, err := db.Get([]byte(key))
	if errors.Is(err, pebble.ErrNotFound) {
		return false
	}
	if err != nil {
		t.Fatalf("Get(%q) = %v", key, err)
	}
	closer.Close()
	return true
}

// TestBodyDetectsCorruption checks that Body verifies records as it reads,
// not only at Open.
func TestBodyDetectsCorruption(t *testing.T) {
	s := openTest(t, t.TempDir(), Options{})
	defer s.Close()
	m, err := s.Inject(testEnvelope("r@example.com"), testBody(1, 3*maxChunk))
	if err != nil {
		t.Fatalf("Inject = %v", err)
	}

	// Damage the second of three records.
	x := m.exts[1]
	if _, err := x.seg.f.WriteAt([]byte{0xff}, x.Off+recordHeaderSize+7); err != nil {
		t.Fatal(err)
	}

	r, err := s.Body(m)
	if err != nil {
		t.Fatalf("Body = %v", err)
	}
	buf := make([]byte, 4096)
	total := 0
	for {
		n, err := r.Read(buf)
		total += n
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Errorf("Read error = %v, want ErrCorrupt", err)
			}
			break
		}
	}
	// Only the first record's bytes may be returned.
	if total != maxChunk {
		t.Errorf("read %d octets before the error, want %d (the first record)", total, maxChunk)
	}
}

// TestPreallocateFallback checks the path for filesystems without
// fallocate: segments are filled with zeros instead and work as usual.
func TestPreallocateFallback(t *testing.T) {
	saved := fallocate
	defer func() { fallocate = saved }()
	calls := 0
	fallocate = func(fd int, mode uint32, off, size int64) error {
		calls++
		return unix.EOPNOTSUPP
	}

	dir := t.TempDir()
	s := openTest(t, dir, Options{SegmentSize: minSegmentSize})
	if !s.zeroFillWarned.Load() {
		t.Errorf("no warning recorded after fallocate returned EOPNOTSUPP")
	}
	var ms []*Message
	for i := range 20 { // about 3 segments
		m, err := s.Inject(testEnvelope("r@example.com"), testBody(uint64(i), 20<<10))
		if err != nil {
			t.Fatalf("Inject = %v", err)
		}
		ms = append(ms, m)
	}
	if calls < 3 {
		t.Errorf("fallocate called %d times, want one per segment (at least 3)", calls)
	}
	fi, err := os.Stat(segmentPath(filepath.Join(dir, "segments"), ms[0].exts[0].Seg))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Size() != minSegmentSize {
		t.Errorf("zero-filled segment is %d octets, want %d", fi.Size(), minSegmentSize)
	}
	for i, m := range ms {
		if b := readBody(t, s, m); !bytes.Equal(b, testBody(uint64(i), 20<<10)) {
			t.Errorf("body of %s differs", m.Env.ID)
		}
	}
	s.Close()
}
