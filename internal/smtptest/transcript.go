// Package smtptest parses the SMTP transcript files in smtp/testdata, so
// that the same dialogues can be replayed against the sans-I/O
// smtp.Session and against every inbound driver of package engine.
//
// It imports nothing of smta: package smtp's own tests import it, and an
// import of smtp here would be a cycle.
//
// # Format
//
// One directive per line; blank lines and lines starting with "#" are
// ignored. The first directive may be a config line:
//
//	config: maxsize=1000 maxrcpts=2 maxerrors=3 starttls
//
// The host name is always "mx.test". Then, in dialogue order:
//
//	C: EHLO client.test      client bytes: the text plus CRLF
//	R: "DATA\n" "x"*998      client bytes: Go-quoted strings, each
//	                         optionally repeated with *N, nothing added
//	S: 250 2.1.0 Ok          one expected server reply line (without CRLF)
//	S: @ehlo                 any multi-line 250 reply (the EHLO reply)
//	E: rcpt <a@b.test>       one expected event
//	D: reject 550 5.7.1 No   decision for the preceding E: "accept",
//	                         "reject" (the session's default reply),
//	                         "reject CODE ENH TEXT" or "queued ID";
//	                         default "accept", and "queued qN" for the
//	                         Nth data-end
//	B: "hello\r\n"           expected body bytes (wire form, same syntax
//	                         as R) of the next data-end, concatenated
//	A: tls                   segment boundary: the STARTTLS handshake
//	                         (the driver discards its unconsumed bytes)
//	A: timeout | shutdown    segment boundary, then a timeout or shutdown
//
// The client bytes of a segment are one stream: lines written apart in
// the file are still sent together, so every transcript also exercises
// pipelining. Expected replies (S) and events (E) are two ordered lists
// over the whole run. Their interleaving in the file is for the reader,
// except that a boundary records how many S lines precede it.
package smtptest

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Config is the session configuration a transcript requests. Zero fields
// mean the session's defaults.
type Config struct {
	MaxMessageSize int64 // bytes
	MaxRecipients  int
	MaxErrors      int
	StartTLS       bool
}

// Hostname is the server host name every transcript expects.
const Hostname = "mx.test"

// Boundary actions that end a segment.
const (
	ActionNone     = ""
	ActionTLS      = "tls"
	ActionTimeout  = "timeout"
	ActionShutdown = "shutdown"
)

// Transcript is one parsed dialogue.
type Transcript struct {
	Name     string // file base name, e.g. "basic.txt"
	Config   Config
	Segments []Segment // at least one; the last has ActionNone
	Replies  []string  // expected reply lines, "@ehlo" for a whole EHLO reply
	Events   []string  // expected events, in order
	// Decisions maps an index into Events to its decision text; events
	// without an entry get DefaultDecision.
	Decisions map[int]string
	// Bodies maps a data-end ordinal (1-based) to the expected body.
	Bodies map[int][]byte
}

// Segment is the client input up to one boundary action.
type Segment struct {
	Input  []byte
	Action string // boundary action after the segment: one of the Action constants
	// Replies is the number of S lines before the boundary, counted from
	// the start of the file.
	Replies int
}

// Decision is a parsed D line.
type Decision struct {
	Verb string // "accept", "reject" or "queued"
	// Code, Enhanced and Text are the reject reply; Code is 0 for a bare
	// "reject", which requests the session's default reply.
	Code     int
	Enhanced string
	Text     string
	ID       string // queue id of "queued ID"
}

// Load parses the transcript in file.
func Load(file string) (*Transcript, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, fmt.Errorf("smtptest: %w", err)
	}
	defer f.Close()
	return Parse(filepath.Base(file), f)
}

// Glob returns the transcript files (*.txt) in dir, sorted by name. It
// fails when there are none, so that a moved directory cannot pass as an
// empty suite.
func Glob(dir string) ([]string, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.txt"))
	if err != nil {
		return nil, fmt.Errorf("smtptest: %w", err)
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("smtptest: no transcripts (*.txt) in %s", dir)
	}
	return files, nil
}

// Parse reads a transcript from r; name is used in the Transcript and in
// error messages.
func Parse(name string, r io.Reader) (*Transcript, error) {
	tr := &Transcript{
		Name:      name,
		Decisions: map[int]string{},
		Bodies:    map[int][]byte{},
	}
	cur := Segment{}
	dataEnds := 0
	var pendingBody []byte
	sc := bufio.NewScanner(r)
	sc.Buffer(nil, 1<<20)
	lineNo := 0
	for sc.Scan() {
		lineNo++
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		kind, rest, ok := strings.Cut(line, ": ")
		if !ok {
			kind, rest, ok = strings.Cut(line, ":")
			if !ok || rest != "" {
				return nil, fmt.Errorf("smtptest: %s:%d: missing directive in %q", name, lineNo, line)
			}
		}
		switch kind {
		case "config":
			if err := parseConfig(&tr.Config, rest); err != nil {
				return nil, fmt.Errorf("smtptest: %s:%d: %w", name, lineNo, err)
			}
		case "C":
			cur.Input = append(cur.Input, rest+"\r\n"...)
		case "R":
			b, err := ParseQuoted(rest)
			if err != nil {
				return nil, fmt.Errorf("smtptest: %s:%d: %w", name, lineNo, err)
			}
			cur.Input = append(cur.Input, b...)
		case "S":
			tr.Replies = append(tr.Replies, rest)
		case "E":
			tr.Events = append(tr.Events, rest)
			if rest == "data-end" {
				dataEnds++
				if pendingBody != nil {
					tr.Bodies[dataEnds] = pendingBody
					pendingBody = nil
				}
			}
		case "D":
			if len(tr.Events) == 0 {
				return nil, fmt.Errorf("smtptest: %s:%d: decision %q before any event", name, lineNo, rest)
			}
			if _, err := ParseDecision(rest); err != nil {
				return nil, fmt.Errorf("smtptest: %s:%d: %w", name, lineNo, err)
			}
			tr.Decisions[len(tr.Events)-1] = rest
		case "B":
			b, err := ParseQuoted(rest)
			if err != nil {
				return nil, fmt.Errorf("smtptest: %s:%d: %w", name, lineNo, err)
			}
			pendingBody = append(pendingBody, b...)
			if pendingBody == nil {
				pendingBody = []byte{}
			}
		case "A":
			switch rest {
			case ActionTLS, ActionTimeout, ActionShutdown:
			default:
				return nil, fmt.Errorf("smtptest: %s:%d: unknown action %q, want tls, timeout or shutdown", name, lineNo, rest)
			}
			cur.Action = rest
			cur.Replies = len(tr.Replies)
			tr.Segments = append(tr.Segments, cur)
			cur = Segment{}
		default:
			return nil, fmt.Errorf("smtptest: %s:%d: unknown directive %q", name, lineNo, kind)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("smtptest: reading %s: %w", name, err)
	}
	cur.Replies = len(tr.Replies)
	tr.Segments = append(tr.Segments, cur)
	return tr, nil
}

func parseConfig(cfg *Config, s string) error {
	for _, f := range strings.Fields(s) {
		key, value, hasValue := strings.Cut(f, "=")
		if key == "starttls" {
			cfg.StartTLS = true
			continue
		}
		n, err := strconv.Atoi(value)
		if !hasValue || err != nil || n < 0 {
			return fmt.Errorf("invalid config value %q, want KEY=N with N >= 0", f)
		}
		switch key {
		case "maxsize":
			cfg.MaxMessageSize = int64(n)
		case "maxrcpts":
			cfg.MaxRecipients = n
		case "maxerrors":
			cfg.MaxErrors = n
		default:
			return fmt.Errorf("unknown config key %q", key)
		}
	}
	return nil
}

// ParseQuoted decodes a sequence of Go-quoted strings, each optionally
// followed by *N to repeat it.
func ParseQuoted(s string) ([]byte, error) {
	var out []byte
	for s = strings.TrimSpace(s); s != ""; s = strings.TrimSpace(s) {
		q, err := strconv.QuotedPrefix(s)
		if err != nil {
			return nil, fmt.Errorf("invalid quoted string %q: %w", s, err)
		}
		text, _ := strconv.Unquote(q)
		s = s[len(q):]
		repeat := 1
		if strings.HasPrefix(s, "*") {
			end := 1
			for end < len(s) && s[end] >= '0' && s[end] <= '9' {
				end++
			}
			repeat, err = strconv.Atoi(s[1:end])
			// 1 MiB of output per string bounds what a typo can allocate.
			if err != nil || repeat < 0 || len(text)*repeat > 1<<20 {
				return nil, fmt.Errorf("invalid repeat count in %q", s)
			}
			s = s[end:]
		}
		out = append(out, strings.Repeat(text, repeat)...)
	}
	return out, nil
}

// DefaultDecision returns the decision for event index i of tr: its D line,
// or "accept", or "queued qN" when the event is the Nth data-end.
func (tr *Transcript) DefaultDecision(i int) string {
	if d, ok := tr.Decisions[i]; ok {
		return d
	}
	if i < len(tr.Events) && tr.Events[i] == "data-end" {
		n := 0
		for _, ev := range tr.Events[:i+1] {
			if ev == "data-end" {
				n++
			}
		}
		return fmt.Sprintf("queued q%d", n)
	}
	return "accept"
}

// ParseDecision parses the text of a D line.
func ParseDecision(d string) (Decision, error) {
	verb, rest, _ := strings.Cut(d, " ")
	switch verb {
	case "accept":
		if rest != "" {
			return Decision{}, fmt.Errorf("invalid decision %q: accept takes no arguments", d)
		}
		return Decision{Verb: verb}, nil
	case "queued":
		if rest == "" {
			return Decision{}, fmt.Errorf("invalid decision %q: want queued ID", d)
		}
		return Decision{Verb: verb, ID: rest}, nil
	case "reject":
		if rest == "" {
			return Decision{Verb: verb}, nil
		}
		f := strings.SplitN(rest, " ", 3)
		if len(f) < 3 {
			return Decision{}, fmt.Errorf("invalid decision %q: want reject CODE ENHANCED TEXT", d)
		}
		code, err := strconv.Atoi(f[0])
		if err != nil || code < 400 || code > 599 {
			return Decision{}, fmt.Errorf("invalid decision %q: reply code must be 4xx or 5xx", d)
		}
		return Decision{Verb: verb, Code: code, Enhanced: f[1], Text: f[2]}, nil
	}
	return Decision{}, fmt.Errorf("unknown decision %q, want accept, reject or queued", d)
}

// MatchReplies compares server output with the expected S lines; "@ehlo"
// matches any multi-line 250 reply.
func MatchReplies(output []byte, want []string) error {
	text := string(output)
	if text != "" && !strings.HasSuffix(text, "\r\n") {
		return fmt.Errorf("output %q does not end with CRLF", text)
	}
	got := strings.Split(strings.TrimSuffix(text, "\r\n"), "\r\n")
	if text == "" {
		got = nil
	}
	i := 0
	for k, w := range want {
		if w == "@ehlo" {
			for i < len(got) && strings.HasPrefix(got[i], "250-") {
				i++
			}
			if i >= len(got) || !strings.HasPrefix(got[i], "250 ") {
				return fmt.Errorf("reply %d: got %q, want the end of an EHLO reply", k, lineAt(got, i))
			}
			i++
			continue
		}
		if i >= len(got) || got[i] != w {
			return fmt.Errorf("reply %d: got %q, want %q\nwhole output:\n%s", k, lineAt(got, i), w, text)
		}
		i++
	}
	if i < len(got) {
		return fmt.Errorf("unexpected extra replies %q\nwhole output:\n%s", got[i:], text)
	}
	return nil
}

// CountReplies returns how many whole replies the expected lines want[:n]
// spell: a reply ends with "@ehlo" or a line whose fourth byte is not '-'.
func CountReplies(want []string, n int) int {
	count := 0
	for _, w := range want[:n] {
		if w == "@ehlo" || len(w) < 4 || w[3] != '-' {
			count++
		}
	}
	return count
}

func lineAt(lines []string, i int) string {
	if i < len(lines) {
		return lines[i]
	}
	return "<end of output>"
}
