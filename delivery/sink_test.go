package delivery

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

const smtpSinkPath = "/usr/sbin/smtp-sink"

// startSmtpSink runs Postfix's smtp-sink on a free loopback port, capturing
// every transaction into a file under the returned directory, and stops it
// when the test ends. The test fails when smtp-sink is missing.
func startSmtpSink(t testing.TB, extraArgs ...string) (addr, dumpDir string) {
	t.Helper()
	if _, err := os.Stat(smtpSinkPath); err != nil {
		t.Fatalf("smtp-sink is required (install postfix): %v", err)
	}

	// smtp-sink drops privileges to nobody when started as root, so the
	// dump directory must be writable for everyone.
	dumpDir, err := os.MkdirTemp("", "smtp-sink-")
	if err != nil {
		t.Fatalf("creating dump directory: %v", err)
	}
	t.Cleanup(func() { os.RemoveAll(dumpDir) })
	if err := os.Chmod(dumpDir, 0o777); err != nil {
		t.Fatalf("chmod dump directory: %v", err)
	}

	return runSmtpSink(t, append([]string{"-d", filepath.Join(dumpDir, "msg.")}, extraArgs...)), dumpDir
}

// startSmtpSinkNoDump runs smtp-sink without capture files, for benchmarks.
func startSmtpSinkNoDump(t testing.TB) string {
	t.Helper()
	if _, err := os.Stat(smtpSinkPath); err != nil {
		t.Fatalf("smtp-sink is required (install postfix): %v", err)
	}
	return runSmtpSink(t, nil)
}

// runSmtpSink starts smtp-sink with args on a free port and returns the
// address once it accepts connections.
func runSmtpSink(t testing.TB, args []string) string {
	t.Helper()
	for attempt := 0; attempt < 5; attempt++ {
		addr := freeLoopbackPort(t)
		args := append([]string{"-u", "nobody", "-h", "sink.test"}, args...)
		args = append(args, addr, "16")
		cmd := exec.Command(smtpSinkPath, args...)
		var stderr strings.Builder
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatalf("starting smtp-sink: %v", err)
		}
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait() }()
		t.Cleanup(func() {
			_ = cmd.Process.Kill()
			<-exited
		})

		// Wait until it accepts connections; it exits at once when the port
		// was taken in the meantime.
		deadline := time.Now().Add(10 * time.Second)
		for time.Now().Before(deadline) {
			select {
			case err := <-exited:
				exited <- err
				t.Logf("smtp-sink exited on %s: %v: %s", addr, err, stderr.String())
				deadline = time.Time{}
				continue
			default:
			}
			if nc, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
				nc.Close()
				return addr
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	t.Fatalf("smtp-sink did not start")
	return ""
}

func freeLoopbackPort(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("finding a free port: %v", err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// sinkDumps returns the contents of the capture files, waiting up to 10
// seconds for want of them, because smtp-sink writes a file when it has
// replied to the final dot.
func sinkDumps(t *testing.T, dir string, want int) []string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		names, err := filepath.Glob(filepath.Join(dir, "msg.*"))
		if err != nil {
			t.Fatalf("listing dumps: %v", err)
		}
		if len(names) >= want || time.Now().After(deadline) {
			var out []string
			for _, n := range names {
				b, err := os.ReadFile(n)
				if err != nil {
					t.Fatalf("reading dump: %v", err)
				}
				out = append(out, string(b))
			}
			return out
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestSendSmtpSinkPipelined(t *testing.T) {
	addr, dumpDir := startSmtpSink(t)
	c := dialTest(t, addr, DialOptions{})
	if !c.ext.pipelining || !c.ext.dsn || !c.ext.eightBit {
		t.Fatalf("smtp-sink extensions = %+v, want PIPELINING, DSN and 8BITMIME", c.ext)
	}

	const messages = 5
	for i := range messages {
		j := testJob(fmt.Sprintf("a%d@example.com", i), fmt.Sprintf("b%d@example.com", i), fmt.Sprintf("c%d@example.com", i))
		j.Body8Bit = true
		j.EnvID = fmt.Sprintf("env%d", i)
		j.Rcpts[0].Notify = "FAILURE"
		res := send(t, c, j)
		for k, r := range res {
			if !r.OK() {
				t.Errorf("message %d recipient %d: %v, want 2xx", i, k, r)
			}
		}
	}
	if err := c.Quit(); err != nil {
		t.Errorf("Quit: %v", err)
	}

	dumps := sinkDumps(t, dumpDir, messages)
	if len(dumps) != messages {
		t.Fatalf("smtp-sink captured %d messages, want %d", len(dumps), messages)
	}
	for _, d := range dumps {
		if n := strings.Count(d, "X-Rcpt-Args: "); n != 3 {
			t.Errorf("captured transaction has %d recipients, want 3:\n%s", n, d)
		}
		if !strings.Contains(d, "BODY=8BITMIME") || !strings.Contains(d, "ENVID=env") {
			t.Errorf("captured MAIL lacks BODY=8BITMIME or ENVID:\n%s", d)
		}
		if !strings.Contains(d, "NOTIFY=FAILURE") {
			t.Errorf("captured RCPT lacks NOTIFY=FAILURE:\n%s", d)
		}
		if !strings.Contains(d, "Subject: test") || !strings.Contains(d, "last line") {
			t.Errorf("captured message lacks the body:\n%s", d)
		}
	}
}

func TestSendSmtpSink421(t *testing.T) {
	// -Q RCPT: smtp-sink replies 421 to the first RCPT and hangs up.
	addr, _ := startSmtpSink(t, "-Q", "RCPT")
	c := dialTest(t, addr, DialOptions{})

	res, err := c.Send(context.Background(), testJob("a@example.com", "b@example.com"))
	if err == nil {
		t.Fatalf("Send succeeded with %v, want a connection error", res)
	}
	for i, r := range res {
		if r.Code != 421 || r.Permanent() {
			t.Errorf("result %d = %v, want a 421", i, r)
		}
	}
}

func TestSendSmtpSinkWithoutPipelining(t *testing.T) {
	// -p withholds PIPELINING and -e ESMTP altogether, so the client falls
	// back to HELO and one command per round trip.
	for _, flag := range []string{"-p", "-e"} {
		t.Run(flag, func(t *testing.T) {
			addr, dumpDir := startSmtpSink(t, flag)
			c := dialTest(t, addr, DialOptions{})
			if c.ext.pipelining {
				t.Errorf("smtp-sink %s advertised PIPELINING", flag)
			}
			if got, want := c.ESMTP(), flag != "-e"; got != want {
				t.Errorf("ESMTP() = %v with smtp-sink %s, want %v", got, flag, want)
			}
			res := send(t, c, testJob("a@example.com", "b@example.com"))
			if got := codes(res); !slices.Equal(got, []int{250, 250}) {
				t.Errorf("result codes = %v, want [250 250]", got)
			}
			if err := c.Quit(); err != nil {
				t.Errorf("Quit: %v", err)
			}
			if dumps := sinkDumps(t, dumpDir, 1); len(dumps) != 1 {
				t.Errorf("smtp-sink captured %d messages, want 1", len(dumps))
			}
		})
	}
}
