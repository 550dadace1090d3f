package delivery

import (
	"bufio"
	"errors"
	"io"
	"slices"
	"strings"
	"testing"
)

func TestReadReply(t *testing.T) {
	tests := []struct {
		in       string
		code     int
		enhanced string
		lines    []string
	}{
		{"250 ok\r\n", 250, "", []string{"ok"}},
		{"250\r\n", 250, "", []string{""}},
		{"220 mx.example.com ESMTP\n", 220, "", []string{"mx.example.com ESMTP"}},
		{"550 5.1.1 no such user\r\n", 550, "5.1.1", []string{"no such user"}},
		{"550 5.1.1\r\n", 550, "5.1.1", []string{""}},
		{"250-mx.example.com\r\n250-PIPELINING\r\n250-SIZE 1000\r\n250 8BITMIME\r\n", 250, "",
			[]string{"mx.example.com", "PIPELINING", "SIZE 1000", "8BITMIME"}},
		{"451-4.7.1 greylisted\r\n451 4.7.1 try later\r\n", 451, "4.7.1", []string{"greylisted", "try later"}},
		// An enhanced code whose class differs from the reply code is text.
		{"550 4.1.1 odd\r\n", 550, "", []string{"4.1.1 odd"}},
		{"452 4.5.3 too many\r\n", 452, "4.5.3", []string{"too many"}},
		{"250 2.0.0 ok\tqueued\r\n", 250, "2.0.0", []string{"ok queued"}},
		{"550 5.7.1000 too long a detail\r\n", 550, "", []string{"5.7.1000 too long a detail"}},
	}
	for _, tt := range tests {
		r, err := readReply(bufio.NewReader(strings.NewReader(tt.in)))
		if err != nil {
			t.Errorf("readReply(%q): %v", tt.in, err)
			continue
		}
		if r.code != tt.code || r.enhanced != tt.enhanced || !slices.Equal(r.lines, tt.lines) {
			t.Errorf("readReply(%q) = %d %q %q, want %d %q %q", tt.in, r.code, r.enhanced, r.lines, tt.code, tt.enhanced, tt.lines)
		}
	}
}

func TestReadReplyMalformed(t *testing.T) {
	tests := []string{
		"25\r\n",
		"abc ok\r\n",
		"650 out of range\r\n",
		"160 out of range\r\n",
		"270 second digit out of range\r\n",
		"250_ok\r\n",
		"250-first\r\n251 other code\r\n",
		strings.Repeat("250-x\r\n", maxReplyLines) + "250 end\r\n",
		"250 " + strings.Repeat("x", maxReplyLine) + "\r\n",
	}
	for _, in := range tests {
		_, err := readReply(bufio.NewReaderSize(strings.NewReader(in), maxReplyLine))
		if !errors.Is(err, errProtocol) {
			t.Errorf("readReply(%.40q) error = %v, want errProtocol", in, err)
		}
	}

	// A reply cut off by the end of the connection is an I/O error, not a
	// protocol error.
	for _, in := range []string{"", "250-more\r\n", "250 no line end"} {
		_, err := readReply(bufio.NewReader(strings.NewReader(in)))
		if !errors.Is(err, io.EOF) {
			t.Errorf("readReply(%q) error = %v, want io.EOF", in, err)
		}
	}
}

func TestParseEHLO(t *testing.T) {
	ext := parseEHLO([]string{"mx.example.com greets you", "PIPELINING", "size 35882577", "8BITMIME",
		"SMTPUTF8", "DSN", "STARTTLS", "ENHANCEDSTATUSCODES", "AUTH PLAIN LOGIN"})
	want := extensions{pipelining: true, size: true, maxSize: 35882577, eightBit: true,
		smtpUTF8: true, dsn: true, startTLS: true, enhanced: true}
	if ext != want {
		t.Errorf("parseEHLO = %+v, want %+v", ext, want)
	}
	// The greeting line is never a keyword.
	if ext := parseEHLO([]string{"PIPELINING"}); ext.pipelining {
		t.Errorf("parseEHLO took the greeting line for PIPELINING")
	}
	if ext := parseEHLO([]string{"mx", "SIZE"}); !ext.size || ext.maxSize != 0 {
		t.Errorf("parseEHLO(SIZE without limit) = %+v, want size with maxSize 0", ext)
	}
}

func FuzzReadReply(f *testing.F) {
	// Single-line replies, with and without enhanced codes and text.
	f.Add([]byte("250 ok\r\n"))
	f.Add([]byte("550 5.1.1 <a@example.com>: no such user\r\n"))
	f.Add([]byte("250\r\n"))
	// Multi-line replies: an EHLO reply and an RFC 2034 repeated code.
	f.Add([]byte("250-mx.example.com\r\n250-PIPELINING\r\n250 SIZE 1000\r\n"))
	f.Add([]byte("451-4.7.1 greylisted\r\n451 4.7.1 come back later\r\n"))
	// Two replies back to back, as a pipelining server sends them.
	f.Add([]byte("250 2.1.0 ok\r\n250 2.1.5 ok\r\n354 go ahead\r\n"))
	// Broken input: mixed codes, bare LF, control bytes, truncation.
	f.Add([]byte("250-a\r\n550 b\r\n"))
	f.Add([]byte("220 x\n250 y\r\n"))
	f.Add([]byte("250 a\x00b\x7fc\r\n"))
	f.Add([]byte("25"))
	// An EHLO reply with a negative SIZE limit.
	f.Add([]byte("250-mx\r\n250 SIZE -5\r\n"))

	f.Fuzz(func(t *testing.T, data []byte) {
		br := bufio.NewReaderSize(strings.NewReader(string(data)), maxReplyLine)
		for range len(data) + 1 {
			r, err := readReply(br)
			if err != nil {
				return
			}
			if r.code < 200 || r.code > 559 {
				t.Fatalf("code %d out of range for %q", r.code, data)
			}
			if r.enhanced != "" && (!validEnhanced(r.enhanced) || int(r.enhanced[0]-'0') != r.code/100) {
				t.Fatalf("enhanced code %q does not match %d for %q", r.enhanced, r.code, data)
			}
			if len(r.lines) == 0 || len(r.lines) > maxReplyLines {
				t.Fatalf("%d lines for %q", len(r.lines), data)
			}
			for _, l := range r.lines {
				if strings.ContainsFunc(l, func(c rune) bool { return c < ' ' || c == 0x7f }) {
					t.Fatalf("line %q keeps a control character", l)
				}
			}
			if ext := parseEHLO(r.lines); ext.maxSize < 0 {
				t.Fatalf("parseEHLO(%q) gave a negative SIZE %d", r.lines, ext.maxSize)
			}
		}
		t.Fatalf("readReply did not consume input %q", data)
	})
}
