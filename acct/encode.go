package acct

import (
	"fmt"
	"slices"
	"strconv"
	"unicode/utf8"
)

// recordSet is a set of record types, one bit per type. Records whose type
// is not one of the Type constants fall under typeOther, which only the
// default set (all types) contains.
type recordSet uint16

const (
	typeOther recordSet = 1 << iota
	typeReceived
	typeDelivered
	typeTransient
	typeBounced
	typeExpired
	typeRejected
	typeFeedback

	allRecords recordSet = 1<<iota - 1
)

// recordTypeBit returns the set bit for a record's Type field.
func recordTypeBit(typ string) recordSet {
	switch typ {
	case TypeReceived:
		return typeReceived
	case TypeDelivered:
		return typeDelivered
	case TypeTransient:
		return typeTransient
	case TypeBounced:
		return typeBounced
	case TypeExpired:
		return typeExpired
	case TypeRejected:
		return typeRejected
	case TypeFeedback:
		return typeFeedback
	}
	return typeOther
}

// parseRecordSet converts a list of record types (the Type constants) into
// a set. An empty list means every type, including unknown ones.
func parseRecordSet(types []string) (recordSet, error) {
	if len(types) == 0 {
		return allRecords, nil
	}
	var s recordSet
	for _, t := range types {
		bit := recordTypeBit(t)
		if bit == typeOther {
			return 0, fmt.Errorf("acct: invalid record type %q (want one of r, d, t, b, e, rj, f)", t)
		}
		s |= bit
	}
	return s, nil
}

func (s recordSet) contains(typ string) bool { return s&recordTypeBit(typ) != 0 }

// timeLoggedLayout is RFC 3339 with milliseconds, as Record.TimeLogged uses.
const timeLoggedLayout = "2006-01-02T15:04:05.000Z07:00"

// appendRecord appends r as one line of JSON, terminated by '\n', to dst.
// It produces the same object as encoding/json.Marshal(r), with the same
// field order and omitempty rules and Meta keys sorted, but writes straight
// into dst without reflection, so encoding a record does not allocate once
// dst has grown. Strings are escaped as RFC 8259 section 7 requires, and
// invalid UTF-8 becomes U+FFFD as in encoding/json; unlike encoding/json it
// does not escape <, > and &, because the output is never embedded in HTML.
func appendRecord(dst []byte, r *Record) []byte {
	dst = append(dst, `{"type":`...)
	dst = appendString(dst, r.Type)
	dst = append(dst, `,"timeLogged":`...)
	dst = appendString(dst, r.TimeLogged)
	dst = appendOptional(dst, `,"timeQueued":`, r.TimeQueued)
	dst = append(dst, `,"orig":`...)
	dst = appendString(dst, r.Orig)
	dst = appendOptional(dst, `,"rcpt":`, r.Rcpt)
	dst = appendOptional(dst, `,"orcpt":`, r.ORcpt)
	dst = appendOptional(dst, `,"dsnAction":`, r.DSNAction)
	dst = appendOptional(dst, `,"dsnStatus":`, r.DSNStatus)
	dst = appendOptional(dst, `,"dsnDiag":`, r.DSNDiag)
	dst = appendOptional(dst, `,"dsnMta":`, r.DSNMta)
	dst = appendOptional(dst, `,"bounceCat":`, r.BounceCat)
	dst = appendOptional(dst, `,"srcMta":`, r.SrcMta)
	dst = appendOptional(dst, `,"dlvSourceIp":`, r.DlvSourceIP)
	dst = appendOptional(dst, `,"dlvDestinationIp":`, r.DlvDestinationIP)
	if r.DlvSize != 0 {
		dst = append(dst, `,"dlvSize":`...)
		dst = strconv.AppendInt(dst, r.DlvSize, 10)
	}
	dst = appendOptional(dst, `,"vmta":`, r.VMTA)
	dst = appendOptional(dst, `,"vmtaPool":`, r.VMTAPool)
	dst = appendOptional(dst, `,"queue":`, r.Queue)
	if r.NumAttempts != 0 {
		dst = append(dst, `,"numAttempts":`...)
		dst = strconv.AppendInt(dst, int64(r.NumAttempts), 10)
	}
	dst = appendOptional(dst, `,"tlsProtocol":`, r.TLSProtocol)
	dst = appendOptional(dst, `,"tlsCipher":`, r.TLSCipher)
	dst = appendOptional(dst, `,"sessionId":`, r.SessionID)
	dst = appendOptional(dst, `,"jobId":`, r.JobID)
	dst = appendOptional(dst, `,"envId":`, r.EnvID)
	dst = appendOptional(dst, `,"msgId":`, r.MsgID)
	dst = appendOptional(dst, `,"reply":`, r.Reply)
	if len(r.Meta) > 0 {
		dst = appendMeta(dst, r.Meta)
	}
	return append(dst, "}\n"...)
}

func appendOptional(dst []byte, key, value string) []byte {
	if value == "" {
		return dst
	}
	dst = append(dst, key...)
	return appendString(dst, value)
}

// appendMeta appends the meta object with keys in sorted order, as
// encoding/json does. Sorting needs a key slice, so records with Meta
// allocate once per record.
func appendMeta(dst []byte, meta map[string]string) []byte {
	keys := make([]string, 0, len(meta))
	for k := range meta {
		keys = append(keys, k)
	}
	slices.Sort(keys)

	dst = append(dst, `,"meta":{`...)
	for i, k := range keys {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = appendString(dst, k)
		dst = append(dst, ':')
		dst = appendString(dst, meta[k])
	}
	return append(dst, '}')
}

const hexDigits = "0123456789abcdef"

// appendString appends s as a quoted JSON string.
func appendString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch c {
			case '"', '\\':
				dst = append(dst, '\\', c)
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}

		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i++
			start = i
			continue
		}
		// U+2028 and U+2029 are valid JSON but end lines in JavaScript, so
		// encoding/json escapes them; do the same for consumers that eval.
		if r == '\u2028' || r == '\u2029' {
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}
