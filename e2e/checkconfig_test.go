package e2e

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestCheckConfig runs `smta check-config` on a valid file and on a file
// with three errors: each error gets a line of its own, prefixed and
// naming the file, the line and the directive, and the exit status is 1.
func TestCheckConfig(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.conf")
	bad := filepath.Join(dir, "bad.conf")
	if err := os.WriteFile(good, []byte("inbound-mode io_uring\ninbound-workers 2\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bad, []byte("inbound-mode kqueue\ninbound-workers 5000\ninbound-worker 2\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	out, err := exec.Command(smtaBin, "check-config", "--config", good).CombinedOutput()
	if err != nil {
		t.Fatalf("check-config on a valid file: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), good+": ok") {
		t.Errorf("check-config output = %q, want %q", out, good+": ok")
	}

	out, err = exec.Command(smtaBin, "check-config", "--config", bad).CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 {
		t.Fatalf("check-config on an invalid file: err = %v, want exit status 1\n%s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	want := []string{
		"smta: " + bad + ":1: inbound-mode: ",
		"smta: " + bad + ":2: inbound-workers: ",
		"smta: " + bad + ":3: inbound-worker: unknown directive (did you mean inbound-workers?)",
	}
	if len(lines) != len(want) {
		t.Fatalf("check-config printed %d lines, want %d:\n%s", len(lines), len(want), out)
	}
	for i, prefix := range want {
		if !strings.HasPrefix(lines[i], prefix) {
			t.Errorf("line %d = %q, want it to start with %q", i+1, lines[i], prefix)
		}
	}
}
