package spool

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// crashChildEnv switches the test binary into the child role of
// TestCrashRecovery; its value is the spool directory.
const crashChildEnv = "SPOOL_CRASH_CHILD_DIR"

const (
	crashWriters     = 8
	crashMaxMessages = 20000 // per writer; the parent kills the child long before
	crashMaxDuration = 60 * time.Second
)

// crashBodySize derives a body size from a seed: mostly small, some spanning
// several records.
func crashBodySize(seed uint64) int {
	if seed%17 == 0 {
		return 300<<10 + int(seed%5000)
	}
	return 100 + int(seed*7919%20000)
}

// crashChild commits messages from several goroutines and prints
// "<id> <seed>" for each one only after its commit callback reported
// success. It runs until killed, or stops by itself after crashMaxMessages
// per writer or crashMaxDuration.
func crashChild(dir string) {
	s, err := Open(dir, Options{SegmentSize: 1 << 20, HostID: "crash"})
	if err != nil {
		fmt.Fprintln(os.Stderr, "open:", err)
		os.Exit(2)
	}
	var (
		mu       sync.Mutex
		out      = bufio.NewWriter(os.Stdout)
		wg       sync.WaitGroup
		deadline = time.Now().Add(crashMaxDuration)
	)
	for w := range crashWriters {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range crashMaxMessages {
				if time.Now().After(deadline) {
					return
				}
				seed := uint64(w*crashMaxMessages + i)
				body := testBody(seed, crashBodySize(seed))
				wr := s.NewWriter()
				for rest := body; len(rest) > 0; {
					k := min(len(rest), 4096)
					wr.Write(rest[:k])
					rest = rest[k:]
				}
				done := make(chan struct{})
				wr.Commit(testEnvelope("r@example.com"), func(m *Message, err error) {
					if err != nil {
						fmt.Fprintln(os.Stderr, "commit:", err)
						os.Exit(2)
					}
					mu.Lock()
					fmt.Fprintf(out, "%s %d\n", m.Env.ID, seed)
					out.Flush()
					mu.Unlock()
					close(done)
				})
				<-done
			}
		}()
	}
	wg.Wait()
	s.Close()
	os.Exit(0)
}

// TestCrashRecovery runs crashChild in a child process, kills it with
// SIGKILL in the middle of committing, and checks that every message whose
// commit callback ran is recovered with the exact body.
func TestCrashRecovery(t *testing.T) {
	dir := t.TempDir()
	for round := range 3 {
		acked := runCrashChild(t, dir, 300+round*200)

		s := openTest(t, dir, Options{SegmentSize: 1 << 20})
		got := recoverAll(t, s)
		if st := s.Stats(); st.Corrupt != 0 {
			t.Errorf("round %d: %d messages moved aside as corrupt, want 0", round, st.Corrupt)
		}
		for id, seed := range acked {
			m := got[id]
			if m == nil {
				t.Errorf("round %d: acknowledged message %s not recovered", round, id)
				continue
			}
			if b := readBody(t, s, m); !bytes.Equal(b, testBody(seed, crashBodySize(seed))) {
				t.Errorf("round %d: body of %s differs after the crash", round, id)
			}
		}
		t.Logf("round %d: %d acknowledged, %d recovered", round, len(acked), len(got))

		// Mark everything delivered so the next round starts from a spool
		// whose segments are partly recycled.
		for _, m := range got {
			if err := s.Remove(m); err != nil {
				t.Fatalf("Remove(%s) = %v", m.Env.ID, err)
			}
		}
		if err := s.Close(); err != nil {
			t.Fatalf("Close() = %v", err)
		}
	}
}

// runCrashChild starts the child on dir, kills it by PID with SIGKILL once
// it has acknowledged killAfter messages, and returns every acknowledged
// id with its body seed.
func runCrashChild(t *testing.T, dir string, killAfter int) map[string]uint64 {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), crashChildEnv+"="+dir)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting crash child: %v", err)
	}

	acked := make(map[string]uint64)
	killed := false
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		id, seedText, ok := strings.Cut(sc.Text(), " ")
		seed, err := strconv.ParseUint(seedText, 10, 64)
		if !ok || err != nil {
			t.Fatalf("crash child printed %q, want \"<id> <seed>\"", sc.Text())
		}
		acked[id] = seed
		if !killed && len(acked) >= killAfter {
			if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
				t.Fatalf("killing crash child %d: %v", cmd.Process.Pid, err)
			}
			killed = true
		}
	}
	err = cmd.Wait()
	if !killed {
		t.Fatalf("crash child exited (%v) after %d messages before it was killed; stderr: %s", err, len(acked), stderr.String())
	}
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("crash child ended with %v, want killed by SIGKILL; stderr: %s", err, stderr.String())
	}
	return acked
}
