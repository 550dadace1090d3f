package smtptest

import (
	"strings"
	"testing"
)

func TestParseSegments(t *testing.T) {
	const text = `config: maxsize=100 starttls
S: 220 mx.test ESMTP smta
C: EHLO a.test
E: helo a.test
S: @ehlo
C: STARTTLS
E: starttls
S: 220 2.0.0 Ready to start TLS
A: tls
R: "MAIL FROM:<>\r\n" "x"*3
E: data-end
D: reject 451 4.3.0 Later
`
	tr, err := Parse("inline", strings.NewReader(text))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	if got, want := tr.Config, (Config{MaxMessageSize: 100, StartTLS: true}); got != want {
		t.Errorf("Config = %+v, want %+v", got, want)
	}
	if got := len(tr.Segments); got != 2 {
		t.Fatalf("len(Segments) = %d, want 2", got)
	}
	first, second := tr.Segments[0], tr.Segments[1]
	if got, want := string(first.Input), "EHLO a.test\r\nSTARTTLS\r\n"; got != want {
		t.Errorf("Segments[0].Input = %q, want %q", got, want)
	}
	if first.Action != ActionTLS || first.Replies != 3 {
		t.Errorf("Segments[0] action, replies = %q, %d, want %q, 3", first.Action, first.Replies, ActionTLS)
	}
	if got, want := string(second.Input), "MAIL FROM:<>\r\nxxx"; got != want {
		t.Errorf("Segments[1].Input = %q, want %q", got, want)
	}
	if got, want := tr.DefaultDecision(2), "reject 451 4.3.0 Later"; got != want {
		t.Errorf("DefaultDecision(2) = %q, want %q", got, want)
	}
	if got, want := tr.DefaultDecision(0), "accept"; got != want {
		t.Errorf("DefaultDecision(0) = %q, want %q", got, want)
	}
	if got, want := CountReplies([]string{"250-a", "250 b", "@ehlo", "421 x"}, 4), 3; got != want {
		t.Errorf("CountReplies = %d, want %d", got, want)
	}
}

func TestParseErrors(t *testing.T) {
	for _, text := range []string{
		"X: what",
		"no directive",
		"config: maxsize=big",
		"config: color=1",
		`R: "unterminated`,
		`R: "x"*99999999`,
		"D: accept",
		"E: mail <a@b>\nD: reject 250 2.0.0 Ok",
		"E: mail <a@b>\nD: maybe",
		"A: reboot",
	} {
		if _, err := Parse("inline", strings.NewReader(text)); err == nil {
			t.Errorf("Parse(%q) = nil error, want an error", text)
		}
	}
}

func TestTestdataParses(t *testing.T) {
	files, err := Glob("../../smtp/testdata")
	if err != nil {
		t.Fatal(err)
	}
	for _, file := range files {
		if _, err := Load(file); err != nil {
			t.Errorf("Load(%q): %v", file, err)
		}
	}
}

func FuzzParse(f *testing.F) {
	// A whole small dialogue with every directive.
	f.Add("config: maxrcpts=2\nS: 220 x\nC: HELO a\nE: helo a\nR: \"DATA\\r\\n\"*2\nB: \"b\"\nE: data-end\nD: queued Q1\nA: timeout\n")
	// Malformed quoting and repeat counts.
	f.Add("R: \"a\"*\nR: \"\\x\"\n")
	// Directive without a space and a decision before any event.
	f.Add("S:\nD: accept\n")
	f.Fuzz(func(t *testing.T, text string) {
		tr, err := Parse("fuzz", strings.NewReader(text))
		if err != nil {
			return
		}
		if len(tr.Segments) == 0 || tr.Segments[len(tr.Segments)-1].Action != ActionNone {
			t.Fatalf("Parse(%q): segments %+v do not end with a plain segment", text, tr.Segments)
		}
		for i := range tr.Events {
			if _, err := ParseDecision(tr.DefaultDecision(i)); err != nil {
				t.Fatalf("Parse(%q): decision %d does not parse: %v", text, i, err)
			}
		}
	})
}
