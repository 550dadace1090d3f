package acct

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// position is a point in a webhook spool: a segment number (the file id,
// part of the segment's name) and a byte offset into that segment, always at
// the start of a line.
type position struct {
	segment uint64
	offset  int64
}

func (p position) String() string { return fmt.Sprintf("segment %d offset %d", p.segment, p.offset) }

// before reports whether p comes before q in the spool.
func (p position) before(q position) bool {
	return p.segment < q.segment || p.segment == q.segment && p.offset < q.offset
}

// positionFileName is the shipper's persisted position inside the spool
// directory. It is written only after the webhook acknowledged everything
// before that position.
const positionFileName = "position"

// formatPosition returns the position file's content: one line,
// "segment=N offset=M".
func formatPosition(p position) []byte {
	return fmt.Appendf(nil, "segment=%d offset=%d\n", p.segment, p.offset)
}

var errInvalidPosition = errors.New("acct: invalid position file")

// parsePosition parses the content of a position file written by
// formatPosition.
func parsePosition(b []byte) (position, error) {
	line, ok := strings.CutSuffix(string(b), "\n")
	if !ok {
		return position{}, fmt.Errorf("%w: missing final newline in %q", errInvalidPosition, b)
	}
	seg, off, ok := strings.Cut(line, " ")
	if !ok {
		return position{}, fmt.Errorf("%w: %q", errInvalidPosition, line)
	}
	segText, ok1 := strings.CutPrefix(seg, "segment=")
	offText, ok2 := strings.CutPrefix(off, "offset=")
	if !ok1 || !ok2 {
		return position{}, fmt.Errorf("%w: %q", errInvalidPosition, line)
	}
	segment, err := strconv.ParseUint(segText, 10, 64)
	if err != nil || segment == 0 {
		return position{}, fmt.Errorf("%w: segment %q", errInvalidPosition, segText)
	}
	offset, err := strconv.ParseInt(offText, 10, 64)
	if err != nil || offset < 0 {
		return position{}, fmt.Errorf("%w: offset %q", errInvalidPosition, offText)
	}
	return position{segment: segment, offset: offset}, nil
}

// readPosition loads the position file in dir. ok is false when there is
// none yet, meaning nothing has been acknowledged.
func readPosition(dir string) (p position, ok bool, err error) {
	b, err := os.ReadFile(filepath.Join(dir, positionFileName))
	if errors.Is(err, os.ErrNotExist) {
		return position{}, false, nil
	}
	if err != nil {
		return position{}, false, fmt.Errorf("acct: reading webhook position: %w", err)
	}
	p, err = parsePosition(b)
	if err != nil {
		return position{}, false, fmt.Errorf("acct: reading %s: %w", filepath.Join(dir, positionFileName), err)
	}
	return p, true, nil
}

// writePosition replaces the position file in dir durably: it writes a
// temporary file, fsyncs it, renames it over the old one and fsyncs the
// directory, so a crash leaves either the old or the new position.
func writePosition(dir string, p position) error {
	tmp := filepath.Join(dir, positionFileName+".tmp")
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o640)
	if err != nil {
		return fmt.Errorf("acct: writing webhook position: %w", err)
	}
	_, err = f.Write(formatPosition(p))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, filepath.Join(dir, positionFileName))
	}
	if err == nil {
		err = syncDir(dir)
	}
	if err != nil {
		return fmt.Errorf("acct: writing webhook position %v in %s: %w", p, dir, err)
	}
	return nil
}

// syncDir fsyncs a directory so that a create, rename or remove in it
// survives a crash.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}
