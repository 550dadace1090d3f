package acct

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

// marshalStd encodes r with encoding/json the way appendRecord promises to:
// without HTML escaping, followed by a newline.
func marshalStd(t testing.TB, r *Record) []byte {
	t.Helper()
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(r); err != nil {
		t.Fatalf("encoding/json: %v", err)
	}
	return buf.Bytes()
}

func fullRecord() *Record {
	return &Record{
		Type:             TypeDelivered,
		TimeLogged:       "2026-12-04T20:30:00.123Z",
		TimeQueued:       "2026-12-04T20:29:59.001Z",
		Orig:             "sender@example.com",
		Rcpt:             "rcpt@example.net",
		ORcpt:            "rfc822;rcpt@example.net",
		DSNAction:        "relayed",
		DSNStatus:        "2.0.0 (success)",
		DSNDiag:          "smtp;250 2.0.0 ok",
		DSNMta:           "mx.example.net (192.0.2.1)",
		BounceCat:        "bad-mailbox",
		SrcMta:           "client.example.org (198.51.100.7)",
		DlvSourceIP:      "203.0.113.5",
		DlvDestinationIP: "192.0.2.1",
		DlvSize:          12345,
		VMTA:             "vmta1",
		VMTAPool:         "pool1",
		Queue:            "example.net/vmta1",
		NumAttempts:      3,
		TLSProtocol:      "TLSv1.3",
		TLSCipher:        "TLS_AES_128_GCM_SHA256",
		SessionID:        "s-1",
		JobID:            "job-7",
		EnvID:            "env-9",
		MsgID:            "<id@example.com>",
		Reply:            "550 5.7.1 rejected",
		Meta:             map[string]string{"z": "last", "a": "first", "m": "x\"y"},
	}
}

func TestAppendRecordMatchesEncodingJSON(t *testing.T) {
	tests := []struct {
		name   string
		record *Record
	}{
		{"empty", &Record{}},
		{"minimal", &Record{Type: TypeReceived, TimeLogged: "2026-12-04T20:30:00.000Z", Orig: "a@b"}},
		{"all fields", fullRecord()},
		{"escapes", &Record{Type: "d", Orig: "quote\" backslash\\ nl\n cr\r tab\t nul\x00 bell\x07 del\x7f"}},
		{"html kept", &Record{Type: "d", Orig: "<a&b>"}},
		{"non-ascii", &Record{Type: "d", Orig: "jürgen@bücher.example 日本"}},
		{"line separators", &Record{Type: "d", Orig: "a\u2028b\u2029c"}},
		{"invalid utf-8", &Record{Type: "d", Orig: "bad\xff\xfe end \xe2\x82"}},
		{"negative size", &Record{Type: "d", DlvSize: -1, NumAttempts: -2}},
		{"empty meta", &Record{Type: "d", Meta: map[string]string{}}},
	}
	for _, tt := range tests {
		got := appendRecord(nil, tt.record)
		want := marshalStd(t, tt.record)
		if !bytes.Equal(got, want) {
			t.Errorf("appendRecord(%s) = %s, want %s", tt.name, got, want)
		}
	}
}

func TestAppendRecordNoAllocs(t *testing.T) {
	r := fullRecord()
	r.Meta = nil
	buf := appendRecord(nil, r)
	allocs := testing.AllocsPerRun(100, func() {
		buf = appendRecord(buf[:0], r)
	})
	if allocs != 0 {
		t.Errorf("appendRecord allocations per record = %v, want 0", allocs)
	}
}

func TestParseRecordSet(t *testing.T) {
	tests := []struct {
		types   []string
		want    recordSet
		wantErr bool
	}{
		{nil, allRecords, false},
		{[]string{"d"}, typeDelivered, false},
		{[]string{"b", "rj"}, typeBounced | typeRejected, false},
		{[]string{"r", "d", "t", "b", "e", "rj", "f"}, allRecords &^ typeOther, false},
		{[]string{"x"}, 0, true},
		{[]string{"D"}, 0, true},
		{[]string{""}, 0, true},
	}
	for _, tt := range tests {
		got, err := parseRecordSet(tt.types)
		if (err != nil) != tt.wantErr {
			t.Errorf("parseRecordSet(%q) error = %v, want error %v", tt.types, err, tt.wantErr)
			continue
		}
		if got != tt.want {
			t.Errorf("parseRecordSet(%q) = %b, want %b", tt.types, got, tt.want)
		}
	}
}

// FuzzAppendRecord checks that every encoded record is one line of valid
// JSON that decodes to what encoding/json's own output decodes to.
func FuzzAppendRecord(f *testing.F) {
	f.Add("d", "a@b", "k", "v", int64(0))                // plain
	f.Add("rj", "q\"uote\\", "\n", "\x00", int64(-5))    // escapes and controls
	f.Add("b", "\xff\xfe", "\u2028", "日本", int64(1<<62)) // invalid UTF-8, separators
	f.Add("", "", "", "", int64(0))                      // all empty
	f.Fuzz(func(t *testing.T, typ, orig, key, value string, size int64) {
		r := &Record{Type: typ, Orig: orig, Reply: value, DlvSize: size, Meta: map[string]string{key: value}}
		got := appendRecord(nil, r)

		if bytes.Count(got, []byte{'\n'}) != 1 || got[len(got)-1] != '\n' {
			t.Fatalf("appendRecord(%+v) = %q, want exactly one line", r, got)
		}
		if !json.Valid(got) {
			t.Fatalf("appendRecord(%+v) = %q, not valid JSON", r, got)
		}
		var fromOurs, fromStd Record
		if err := json.Unmarshal(got, &fromOurs); err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(marshalStd(t, r), &fromStd); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(fromOurs, fromStd) {
			t.Fatalf("decoded appendRecord output = %+v, want %+v", fromOurs, fromStd)
		}
	})
}

func TestParsePosition(t *testing.T) {
	tests := []struct {
		in      string
		want    position
		wantErr bool
	}{
		{"segment=1 offset=0\n", position{1, 0}, false},
		{"segment=42 offset=123456\n", position{42, 123456}, false},
		{"segment=1 offset=0", position{}, true},          // no newline: torn write
		{"segment=0 offset=0\n", position{}, true},        // segments start at 1
		{"segment=1 offset=-1\n", position{}, true},       // negative offset
		{"segment=1  offset=1\n", position{}, true},       // double space
		{"offset=1 segment=1\n", position{}, true},        // wrong order
		{"segment=x offset=1\n", position{}, true},        // not a number
		{"", position{}, true},                            // empty file
		{"segment=1 offset=1\nextra\n", position{}, true}, // trailing data
	}
	for _, tt := range tests {
		got, err := parsePosition([]byte(tt.in))
		if (err != nil) != tt.wantErr {
			t.Errorf("parsePosition(%q) error = %v, want error %v", tt.in, err, tt.wantErr)
			continue
		}
		if got != tt.want {
			t.Errorf("parsePosition(%q) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

func FuzzParsePosition(f *testing.F) {
	f.Add("segment=1 offset=0\n")                                      // valid
	f.Add("segment=18446744073709551615 offset=9223372036854775807\n") // largest values
	f.Add("segment=1 offset=")                                         // truncated
	f.Add("segment=+1 offset=+1\n")                                    // signs
	f.Fuzz(func(t *testing.T, in string) {
		p, err := parsePosition([]byte(in))
		if err != nil {
			return
		}
		again, err := parsePosition(formatPosition(p))
		if err != nil || again != p {
			t.Fatalf("parsePosition(formatPosition(%v)) = %v, %v, want %v", p, again, err, p)
		}
		if strings.Count(in, "\n") != 1 {
			t.Fatalf("parsePosition(%q) accepted more than one line", in)
		}
	})
}
