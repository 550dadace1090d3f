package spool

import (
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// Index keys in Pebble.
//
//	m/<id>        entry: encoded envelope and extents of a live message
//	corrupt/<id>  entry of a message whose body failed verification, kept for inspection
//	s/<segno>     uint32 generation of segment <segno> (decimal text)
//	meta/idepoch  last id epoch handed out (decimal unix seconds)
const (
	prefixMessage = "m/"
	prefixCorrupt = "corrupt/"
	prefixSegment = "s/"
	keyIDEpoch    = "meta/idepoch"
)

// extent locates one record of a message body.
type extent struct {
	Seg uint32 `json:"s"` // segment number
	Gen uint32 `json:"g"` // segment generation the record was written under
	Seq uint32 `json:"q"` // record sequence within the message
	Off int64  `json:"o"` // offset of the record header in the segment file
	Len uint32 `json:"n"` // payload length in octets

	seg *segment // in-memory only; set when the extent is written or resolved at open
}

// entry is the index value of one message.
//
// NOTE: entries are JSON for readability while the format settles; a binary
// encoding would halve their size and the decode cost at recovery.
type entry struct {
	Env     Envelope `json:"env"`
	Extents []extent `json:"ext"`
}

func messageKey(id string) []byte { return []byte(prefixMessage + id) }

func segmentKey(no uint32) []byte { return fmt.Appendf(nil, "%s%08d", prefixSegment, no) }

func encodeEntry(env *Envelope, exts []extent) ([]byte, error) {
	b, err := json.Marshal(entry{Env: *env, Extents: exts})
	if err != nil {
		return nil, fmt.Errorf("spool: encoding entry %s: %w", env.ID, err)
	}
	return b, nil
}

// decodeEntry parses an index value and checks that its extents are
// consistent: sequences count up from 0 and the payload lengths add up to
// Env.Size.
func decodeEntry(b []byte) (entry, error) {
	var e entry
	if err := json.Unmarshal(b, &e); err != nil {
		return entry{}, fmt.Errorf("spool: decoding entry: %w", err)
	}
	if e.Env.ID == "" {
		return entry{}, fmt.Errorf("spool: entry has no message id")
	}
	var total int64
	for i, x := range e.Extents {
		if x.Seq != uint32(i) {
			return entry{}, fmt.Errorf("spool: entry %s: extent %d has sequence %d", e.Env.ID, i, x.Seq)
		}
		if x.Off < 0 {
			return entry{}, fmt.Errorf("spool: entry %s: extent %d has negative offset %d", e.Env.ID, i, x.Off)
		}
		total += int64(x.Len)
	}
	if total != e.Env.Size {
		return entry{}, fmt.Errorf("spool: entry %s: extents hold %d octets, envelope size is %d", e.Env.ID, total, e.Env.Size)
	}
	return e, nil
}

// Message ids have the form <hostid>-<epoch>-<counter>, epoch and counter in
// base 36. The epoch is the unix second at which the spool was opened. Open
// raises it to one more than the epoch persisted by the previous open when
// needed, so two runs never share an epoch, even when they start in the same
// second or the clock steps back. The counter starts at 1 for each epoch. The flock on the
// spool directory makes one process the only id source for a spool.

// defaultHostID derives a host id from the short host name, keeping only
// letters, digits and '_' so ids stay safe in keys, file names and replies.
func defaultHostID() string {
	name, err := os.Hostname()
	if err != nil || name == "" {
		return "smta"
	}
	name, _, _ = strings.Cut(name, ".")
	return sanitizeHostID(name)
}

func sanitizeHostID(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '_':
			b.WriteRune(r)
		}
	}
	if b.Len() == 0 {
		return "smta"
	}
	return b.String()
}

func formatID(host string, epoch int64, n uint64) string {
	b := make([]byte, 0, len(host)+24)
	b = append(b, host...)
	b = append(b, '-')
	b = strconv.AppendInt(b, epoch, 36)
	b = append(b, '-')
	b = strconv.AppendUint(b, n, 36)
	return string(b)
}
