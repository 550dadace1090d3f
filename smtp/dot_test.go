package smtp

import (
	"bytes"
	"testing"
)

func TestDotStuff(t *testing.T) {
	tests := []struct {
		in, want string
	}{
		{"", ""},
		{"plain\r\n", "plain\r\n"},
		{".\r\n", "..\r\n"},
		{".leading\r\nmiddle.\r\n.\r\n", "..leading\r\nmiddle.\r\n..\r\n"},
		{"a\r\n..b\r\n", "a\r\n...b\r\n"},
		{"a\n.b", "a\n..b"},
		{"no final line ending", "no final line ending"},
	}
	for _, tt := range tests {
		if got := string(DotStuff(nil, []byte(tt.in))); got != tt.want {
			t.Errorf("DotStuff(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestDotUnstuff(t *testing.T) {
	tests := []struct {
		in, want string
	}{
		{"", ""},
		{"plain\r\n", "plain\r\n"},
		{"..\r\n", ".\r\n"},
		{"..leading\r\nmiddle.\r\n..\r\n", ".leading\r\nmiddle.\r\n.\r\n"},
		{"a\r\n...b\r\n", "a\r\n..b\r\n"},
		{".x\r\n", "x\r\n"},
		{"a\n.b", "a\n.b"},
	}
	for _, tt := range tests {
		if got := string(DotUnstuff(nil, []byte(tt.in))); got != tt.want {
			t.Errorf("DotUnstuff(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestDotUnstuffAppends(t *testing.T) {
	got := DotUnstuff([]byte("prefix:"), []byte("..x\r\n"))
	if want := "prefix:.x\r\n"; string(got) != want {
		t.Errorf("DotUnstuff(prefix) = %q, want %q", got, want)
	}
}

// FuzzDotStuff checks that unstuffing undoes stuffing for CRLF text and
// that stuffed text never holds an end-of-data line a Session would see.
func FuzzDotStuff(f *testing.F) {
	f.Add([]byte(".\r\n"))           // a lone dot line
	f.Add([]byte("a\r\n.\r\nb\r\n")) // a dot line in the middle
	f.Add([]byte("..\r\n...\r\n"))   // lines of dots
	f.Add([]byte("x\r\n.\r"))        // trailing partial terminator
	f.Fuzz(func(t *testing.T, plain []byte) {
		if bytes.IndexByte(plain, '\n') >= 0 && bytes.Contains(bytes.ReplaceAll(plain, []byte("\r\n"), nil), []byte("\n")) {
			return // bare LF: not CRLF text
		}
		wire := DotStuff(nil, plain)
		if got := DotUnstuff(nil, wire); !bytes.Equal(got, plain) {
			t.Fatalf("DotUnstuff(DotStuff(%q)) = %q", plain, got)
		}
		if bytes.HasPrefix(wire, []byte(".\r\n")) || bytes.Contains(wire, []byte("\r\n.\r\n")) {
			t.Fatalf("DotStuff(%q) = %q contains an end-of-data line", plain, wire)
		}
	})
}
