package acct

import (
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func openTestAccessLog(t *testing.T, dir string, o AccessOptions) *AccessLog {
	t.Helper()
	o.Logger = discardLogger()
	a, err := OpenAccessLog(dir, o)
	if err != nil {
		t.Fatalf("OpenAccessLog: %v", err)
	}
	return a
}

func readLines(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s := strings.TrimSuffix(string(b), "\n")
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

var testTime = time.Date(2026, 12, 4, 20, 30, 0, 123e6, time.UTC)

func TestAppendAccessLine(t *testing.T) {
	ip := netip.MustParseAddr("192.0.2.7")
	tests := []struct {
		kind  accessKind
		entry AccessEntry
		want  string
	}{
		{
			accessSession,
			AccessEntry{Time: testTime, SessionID: "S1", ClientIP: ip, HELO: "mx.example", AuthUser: "u", Messages: 2, Duration: 1500 * time.Millisecond, Reply: "221 2.0.0 Bye"},
			`2026-12-04T20:30:00.123Z session id="S1" ip=192.0.2.7 helo="mx.example" user="u" msgs=2 duration=1.5s reply="221 2.0.0 Bye"`,
		},
		{
			accessFailure,
			AccessEntry{Time: testTime, SessionID: "S1", ClientIP: ip, Command: "RCPT TO:<a@b>", Reply: "550 5.1.1 unknown"},
			`2026-12-04T20:30:00.123Z failure id="S1" ip=192.0.2.7 command="RCPT TO:<a@b>" reply="550 5.1.1 unknown"`,
		},
		{
			// A HELO name with a line break and a quote stays on one line.
			accessFailure,
			AccessEntry{Time: testTime, ClientIP: netip.MustParseAddr("2001:db8::1"), HELO: "x\n2026 session ip=\"1.2.3.4\"", Reply: "501"},
			`2026-12-04T20:30:00.123Z failure ip=2001:db8::1 helo="x\n2026 session ip=\"1.2.3.4\"" reply="501"`,
		},
		{
			accessFailure,
			AccessEntry{Time: testTime, Command: "AUTH PLAIN AGpvZQBzZWNyZXQ=", Reply: "535 5.7.8 failed"},
			`2026-12-04T20:30:00.123Z failure command="AUTH PLAIN [redacted]" reply="535 5.7.8 failed"`,
		},
	}
	for _, tt := range tests {
		got := string(appendAccessLine(nil, tt.kind, &tt.entry))
		if got != tt.want+"\n" {
			t.Errorf("appendAccessLine(%+v) =\n%s\nwant\n%s", tt.entry, got, tt.want)
		}
	}
}

func TestRedactCommand(t *testing.T) {
	tests := []struct{ in, want string }{
		{"AUTH PLAIN AGpvZQBzZWNyZXQ=", "AUTH PLAIN [redacted]"},
		{"auth login dXNlcg==", "auth login [redacted]"},
		{"AUTH LOGIN", "AUTH LOGIN"},
		{"MAIL FROM:<a@b>", "MAIL FROM:<a@b>"},
	}
	for _, tt := range tests {
		if got := redactCommand(tt.in); got != tt.want {
			t.Errorf("redactCommand(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestAccessLogRateLimitPerIP(t *testing.T) {
	dir := t.TempDir()
	// A tiny rate means no refill during the test: each IP gets its burst.
	a := openTestAccessLog(t, dir, AccessOptions{BurstPerIP: 5, RatePerIP: 1e-9})
	noisy := netip.MustParseAddr("198.51.100.1")
	quiet := netip.MustParseAddr("198.51.100.2")
	for range 20 {
		a.Failure(AccessEntry{ClientIP: noisy, Command: "AUTH LOGIN", Reply: "535 5.7.8 failed"})
	}
	for range 3 {
		a.Session(AccessEntry{ClientIP: quiet, Reply: "221 2.0.0 Bye"})
	}
	if err := a.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	counts := map[string]int{}
	for _, line := range readLines(t, filepath.Join(dir, AccessLogName)) {
		for _, ip := range []netip.Addr{noisy, quiet} {
			if strings.Contains(line, " ip="+ip.String()+" ") {
				counts[ip.String()]++
			}
		}
	}
	if counts[noisy.String()] != 5 {
		t.Errorf("lines for the noisy client = %d, want the burst of 5", counts[noisy.String()])
	}
	if counts[quiet.String()] != 3 {
		t.Errorf("lines for the quiet client = %d, want 3", counts[quiet.String()])
	}
	if st := a.Stats(); st.Written != 8 || st.RateLimited != 15 || st.Dropped != 0 {
		t.Errorf("Stats() = %+v, want Written 8, RateLimited 15, Dropped 0", st)
	}
}

// TestAccessLogDropsWhenFull holds the writer so the ring fills, and checks
// that further lines are dropped and counted instead of blocking.
func TestAccessLogDropsWhenFull(t *testing.T) {
	dir := t.TempDir()
	entered := make(chan struct{})
	release := make(chan struct{})
	first := true
	a := openTestAccessLog(t, dir, AccessOptions{RingSize: 2, beforeWrite: func() {
		if first {
			first = false
			close(entered)
			<-release
		}
	}})

	a.Session(AccessEntry{SessionID: "held"})
	<-entered // the writer popped the first line and waits
	for range 2 + 3 {
		a.Session(AccessEntry{SessionID: "queued"})
	}
	close(release)
	if err := a.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	if st := a.Stats(); st.Dropped != 3 || st.Written != 3 {
		t.Errorf("Stats() = %+v, want Dropped 3, Written 3", st)
	}
	if got := len(readLines(t, filepath.Join(dir, AccessLogName))); got != 3 {
		t.Errorf("lines written = %d, want 3", got)
	}
}

func TestAccessLogReopen(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, AccessLogName)
	a := openTestAccessLog(t, dir, AccessOptions{})
	a.Session(AccessEntry{SessionID: "before"})
	waitFor(t, "first line written", func() bool { return a.Stats().Written == 1 })
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	if err := a.Reopen(); err != nil {
		t.Fatalf("Reopen: %v", err)
	}
	a.Session(AccessEntry{SessionID: "after"})
	if err := a.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	old := readLines(t, path+".1")
	if len(old) != 1 || !strings.Contains(old[0], `id="before"`) {
		t.Errorf("rotated access log = %q, want the line of session before", old)
	}
	cur := readLines(t, path)
	if len(cur) != 1 || !strings.Contains(cur[0], `id="after"`) {
		t.Errorf("reopened access log = %q, want the line of session after", cur)
	}
}
