package bench

import (
	"context"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"smta/loadgen"
)

// freePort returns a loopback TCP port that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func TestPrivatePostfixRelaysToSink(t *testing.T) {
	if _, err := os.Stat("/usr/sbin/postfix"); err != nil {
		t.Fatalf("/usr/sbin/postfix is required (Debian package postfix): %v", err)
	}
	if os.Geteuid() != 0 {
		t.Fatalf("postfix -c DIR start needs root; run the tests as root")
	}
	systemPid := "/var/spool/postfix/pid/master.pid"
	_, statErr := os.Stat(systemPid)
	systemRunningBefore := statErr == nil

	sink, err := loadgen.StartSink(loadgen.SinkConfig{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	_, sinkPort, _ := net.SplitHostPort(sink.Addr())

	// t.TempDir is mode 0700 under a 0700 parent; Postfix daemons run as
	// user postfix and must reach their data directory.
	dir := filepath.Join(t.TempDir(), "postfix")
	for _, d := range []string{filepath.Dir(filepath.Dir(dir)), filepath.Dir(dir)} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	port := freePort(t)
	script := func(args ...string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		out, err := exec.CommandContext(ctx, "bash", append([]string{"postfix.sh"}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("postfix.sh %v: %v\n%s", args, err, out)
		}
	}
	script("start", dir, strconv.Itoa(port), sinkPort)
	defer script("stop", dir)

	const messages = 100
	report, err := loadgen.Send(context.Background(), loadgen.SendConfig{
		Target:      "127.0.0.1:" + strconv.Itoa(port),
		Connections: 5,
		Messages:    messages,
		Recipients:  2,
		Size:        loadgen.SizeSpec{Min: 2048, Max: 2048},
		Duration:    60 * time.Second,
	})
	if err != nil {
		t.Fatalf("Send to Postfix: %v", err)
	}
	if report.Sent != messages {
		t.Fatalf("Postfix accepted %d of %d messages (errors %v); see %s/maillog", report.Sent, messages, report.Errors, dir)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := sink.WaitMessages(ctx, messages); err != nil {
		t.Fatalf("sink after Postfix relay: %v; see %s/maillog", err, dir)
	}
	st := sink.Stats()
	// Both recipients go to the same relayhost, so Postfix delivers each
	// message in one transaction.
	if st.Messages != messages {
		t.Errorf("sink messages = %d, want %d", st.Messages, messages)
	}
	if st.Recipients != 2*messages {
		t.Errorf("sink recipients = %d, want %d", st.Recipients, 2*messages)
	}
	if st.Malformed != 0 {
		t.Errorf("sink malformed = %d, want 0", st.Malformed)
	}

	_, statErr = os.Stat(systemPid)
	if systemRunning := statErr == nil; systemRunning != systemRunningBefore {
		t.Errorf("system Postfix running = %v, was %v before: the private instance touched it", systemRunning, systemRunningBefore)
	}
}
