package spool

import (
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
	Seg uint32 // segment number
	Gen uint32 // segment generation the record was written under
	Seq uint32 // record sequence within the message
	Off int64  // offset of the record header in the segment file
	Len uint32 // payload length in octets

	seg *segment // in-memory only; set when the extent is written or resolved at open
}

// entry is the index value of one message; entry.go has its encoding.
type entry struct {
	Env     Envelope
	Extents []extent
}

func messageKey(id string) []byte { return []byte(prefixMessage + id) }

func segmentKey(no uint32) []byte { return fmt.Appendf(nil, "%s%08d", prefixSegment, no) }

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
