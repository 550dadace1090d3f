package acct

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// Environment of the child process in TestWebhookCrashRecovery.
const (
	crashDirEnv = "ACCT_CRASH_DIR"
	crashURLEnv = "ACCT_CRASH_URL"
)

const crashRecords = 500

// TestWebhookCrashRecovery runs a logger in a child process that kills
// itself with SIGKILL while its shipper is busy, then opens the same
// directory again. Every record must reach the webhook in order; the only
// duplicates allowed are one batch whose 2xx arrived just before the kill.
func TestWebhookCrashRecovery(t *testing.T) {
	if dir := os.Getenv(crashDirEnv); dir != "" {
		crashChild(t, dir, os.Getenv(crashURLEnv))
		return
	}

	rc, url := startReceiver(t)
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestWebhookCrashRecovery$", "-test.count=1")
	cmd.Env = append(os.Environ(), crashDirEnv+"="+dir, crashURLEnv+"="+url)
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("child process = %v, want killed by SIGKILL; output:\n%s", err, out)
	}
	beforeRestart := rc.received()
	if beforeRestart == 0 || beforeRestart >= crashRecords {
		t.Fatalf("records received before the crash = %d, want between 1 and %d", beforeRestart, crashRecords-1)
	}

	l := openTestLogger(t, Options{Dir: dir, SyncInterval: 5 * time.Millisecond, Webhooks: []WebhookOptions{fastWebhook(url)}})
	waitFor(t, "every record after the restart", func() bool {
		records, _, _ := rc.snapshot()
		return len(dedupe(records)) >= crashRecords
	})
	closeLogger(t, l)

	records, _, _ := rc.snapshot()
	unique := dedupe(records)
	checkSequences(t, unique, 1, crashRecords)
	if dup := len(records) - len(unique); dup > fastWebhook(url).BatchSize {
		t.Errorf("duplicate records after the crash = %d, want at most one batch (%d)", dup, fastWebhook(url).BatchSize)
	}
	// The accounting file kept every record that was synced before the kill,
	// and the child waited for a sync after the last one.
	checkSequences(t, readRecords(t, filepath.Join(dir, DefaultFileName)), 1, crashRecords)
}

// crashChild logs the records, waits until they are synced and the shipper
// has had some acknowledged, and kills its own process mid-flight.
func crashChild(t *testing.T, dir, url string) {
	wo := fastWebhook(url)
	wo.BatchSize = 10
	wo.MaxDelay = time.Millisecond
	l := openTestLogger(t, Options{Dir: dir, SyncInterval: 2 * time.Millisecond, Webhooks: []WebhookOptions{wo}})
	for i := range crashRecords {
		l.Log(numbered(TypeDelivered, 0, i))
	}
	waitFor(t, "every record written", func() bool { return l.Stats().Written == crashRecords })
	syncs := l.Stats().Syncs
	waitFor(t, "a sync round after the last write and some records shipped", func() bool {
		st := l.Stats()
		return st.Syncs > syncs && st.Webhooks[0].Sent >= 100
	})
	syscall.Kill(os.Getpid(), syscall.SIGKILL)
	time.Sleep(time.Minute) // not reached
}

// dedupe drops repeated records, keeping the first of each.
func dedupe(records []Record) []Record {
	seen := map[string]bool{}
	var out []Record
	for _, r := range records {
		key := r.Orig + "/" + r.MsgID
		if !seen[key] {
			seen[key] = true
			out = append(out, r)
		}
	}
	return out
}
