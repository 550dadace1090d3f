package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// webhookSink is an HTTP receiver on loopback for accounting batches. It
// replies 503 while failing is set and stores every record it accepts.
type webhookSink struct {
	failing  atomic.Bool
	requests atomic.Int32

	mu      sync.Mutex
	records []map[string]any
}

func (w *webhookSink) ServeHTTP(rw http.ResponseWriter, r *http.Request) {
	w.requests.Add(1)
	body, _ := io.ReadAll(r.Body)
	if w.failing.Load() {
		http.Error(rw, "down for the test", http.StatusServiceUnavailable)
		return
	}
	var batch []map[string]any
	if err := json.Unmarshal(body, &batch); err != nil {
		http.Error(rw, err.Error(), http.StatusBadRequest)
		return
	}
	w.mu.Lock()
	w.records = append(w.records, batch...)
	w.mu.Unlock()
}

func (w *webhookSink) got() []map[string]any {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]map[string]any(nil), w.records...)
}

// TestWebhookSurvivesOutageAndRestart sends mail while the webhook fails,
// restarts smta in the middle, and checks that once the webhook recovers it
// receives every reception and delivery record exactly once, in order.
func TestWebhookSurvivesOutageAndRestart(t *testing.T) {
	hook := &webhookSink{}
	hook.failing.Store(true)
	srv := httptest.NewServer(hook)
	defer srv.Close()

	rcv := startReceiver(t, 0)
	extra := fmt.Sprintf("acct-sync 50ms\n<webhook %s/acct>\n  records r,d\n  batch-size 3\n  max-delay 100ms\n</webhook>\n", srv.URL)
	dir := t.TempDir()
	d := startDaemon(t, dir, freePort(t), relayConfig("goroutine", rcv.port(), extra))

	const perRun = 4
	send := func(first int) {
		for i := first; i < first+perRun; i++ {
			out, err := swaks(t, d.port, "--from", "alice@sender.test", "--to", fmt.Sprintf("rcpt%d@example.com", i))
			if err != nil {
				t.Fatalf("swaks %d: %v\n%s", i, err, out)
			}
		}
	}
	send(0)
	waitFor(t, 20*time.Second, "first deliveries", func() bool { return len(rcv.messages()) == perRun })
	waitFor(t, 20*time.Second, "a failed webhook attempt", func() bool { return hook.requests.Load() > 0 })

	d.stop()
	d.start()
	send(perRun)
	waitFor(t, 20*time.Second, "second deliveries", func() bool { return len(rcv.messages()) == 2*perRun })

	hook.failing.Store(false)
	want := 4 * perRun // one r and one d record per message
	waitFor(t, 60*time.Second, "every record at the webhook", func() bool { return len(hook.got()) >= want })
	time.Sleep(300 * time.Millisecond) // a duplicate would arrive in this window

	got := hook.got()
	if len(got) != want {
		t.Errorf("webhook received %d records, want %d", len(got), want)
	}
	seen := map[string]int{}
	for _, r := range got {
		seen[fmt.Sprint(r["type"], " ", r["rcpt"])]++
		if typ := r["type"]; typ != "r" && typ != "d" {
			t.Errorf("webhook received a %v record, want only r and d", typ)
		}
	}
	for i := range 2 * perRun {
		for _, typ := range []string{"r", "d"} {
			key := fmt.Sprintf("%s rcpt%d@example.com", typ, i)
			if seen[key] != 1 {
				t.Errorf("record %q received %d times, want once", key, seen[key])
			}
		}
	}

	// Records keep the order they were logged in: each recipient's r comes
	// before its d.
	pos := map[string]int{}
	for i, r := range got {
		pos[fmt.Sprint(r["type"], " ", r["rcpt"])] = i
	}
	for i := range 2 * perRun {
		rcpt := fmt.Sprintf("rcpt%d@example.com", i)
		if pos["r "+rcpt] > pos["d "+rcpt] {
			t.Errorf("d record of %s arrived before its r record", rcpt)
		}
	}
}
