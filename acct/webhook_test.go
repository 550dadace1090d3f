package acct

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"sync"
	"testing"
	"time"
)

// receiver is a webhook endpoint on loopback that records what it accepts.
// fail decides, from the 1-based request number, whether to respond 503.
type receiver struct {
	mu         sync.Mutex
	fail       func(request int) bool
	requests   int
	failed     int
	records    []Record
	batchSizes []int
	headers    []http.Header
}

func (rc *receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	rc.requests++
	if rc.fail != nil && rc.fail(rc.requests) {
		rc.failed++
		http.Error(w, "unavailable", http.StatusServiceUnavailable)
		return
	}
	var batch []Record
	if err := json.NewDecoder(req.Body).Decode(&batch); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	rc.records = append(rc.records, batch...)
	rc.batchSizes = append(rc.batchSizes, len(batch))
	rc.headers = append(rc.headers, req.Header.Clone())
	w.WriteHeader(http.StatusNoContent)
}

func (rc *receiver) setFail(fail func(int) bool) {
	rc.mu.Lock()
	rc.fail = fail
	rc.mu.Unlock()
}

func (rc *receiver) received() int {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return len(rc.records)
}

func (rc *receiver) snapshot() (records []Record, batchSizes []int, failed int) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]Record(nil), rc.records...), append([]int(nil), rc.batchSizes...), rc.failed
}

func startReceiver(t *testing.T) (*receiver, string) {
	t.Helper()
	rc := &receiver{}
	srv := httptest.NewServer(rc) // listens on 127.0.0.1
	t.Cleanup(srv.Close)
	return rc, srv.URL + "/acct"
}

// fastWebhook returns webhook options with short delays so tests finish
// quickly.
func fastWebhook(url string) WebhookOptions {
	return WebhookOptions{
		URL:       url,
		BatchSize: 50,
		MaxDelay:  10 * time.Millisecond,
		Timeout:   5 * time.Second,
		RetryMin:  time.Millisecond,
		RetryMax:  10 * time.Millisecond,
	}
}

func TestWebhookRetriesUntilDelivered(t *testing.T) {
	const total, failures = 1000, 5
	rc, url := startReceiver(t)
	rc.setFail(func(n int) bool { return n <= failures })

	wo := fastWebhook(url)
	wo.Headers = map[string]string{"Authorization": "Bearer test-token"}
	l := openTestLogger(t, Options{Dir: t.TempDir(), SyncInterval: 5 * time.Millisecond, Webhooks: []WebhookOptions{wo}})
	for i := range total {
		l.Log(numbered(TypeDelivered, 0, i))
	}
	waitFor(t, "webhook to receive every record", func() bool { return rc.received() >= total })
	closeLogger(t, l)

	records, sizes, failed := rc.snapshot()
	checkSequences(t, records, 1, total)
	if failed != failures {
		t.Errorf("failed requests = %d, want %d", failed, failures)
	}
	for i, n := range sizes {
		if n < 1 || n > wo.BatchSize {
			t.Errorf("batch %d has %d records, want 1..%d", i, n, wo.BatchSize)
		}
	}
	st := l.Stats().Webhooks[0]
	if st.Sent != total || st.Failures != failures || st.Batches != uint64(len(sizes)) {
		t.Errorf("webhook stats = %+v, want Sent %d, Failures %d, Batches %d", st, total, failures, len(sizes))
	}
	rc.mu.Lock()
	h := rc.headers[0]
	rc.mu.Unlock()
	if got := h.Get("Authorization"); got != "Bearer test-token" {
		t.Errorf("Authorization header = %q, want %q", got, "Bearer test-token")
	}
	if got := h.Get("Content-Type"); got != "application/json" {
		t.Errorf("Content-Type header = %q, want application/json", got)
	}
}

// TestWebhookRestartExactlyOnce acknowledges a few batches, then fails
// every request across a Close and Open on the same directory, then
// recovers: every record must arrive exactly once and in order.
func TestWebhookRestartExactlyOnce(t *testing.T) {
	const firstRun, secondRun = 600, 400
	rc, url := startReceiver(t)
	rc.setFail(func(n int) bool { return n > 3 })
	dir := t.TempDir()
	o := Options{Dir: dir, SyncInterval: 5 * time.Millisecond, Webhooks: []WebhookOptions{fastWebhook(url)}}

	l := openTestLogger(t, o)
	for i := range firstRun {
		l.Log(numbered(TypeDelivered, 0, i))
	}
	waitFor(t, "three acknowledged batches and a failure", func() bool {
		_, sizes, failed := rc.snapshot()
		return len(sizes) == 3 && failed > 0
	})
	closeLogger(t, l)
	acked := rc.received()
	if acked == 0 || acked >= firstRun {
		t.Fatalf("records acknowledged before restart = %d, want between 1 and %d", acked, firstRun-1)
	}
	if st := l.Stats().Webhooks[0]; st.Sent != uint64(acked) {
		t.Errorf("Stats().Webhooks[0].Sent = %d, want %d", st.Sent, acked)
	}

	rc.setFail(nil)
	l = openTestLogger(t, o)
	for i := firstRun; i < firstRun+secondRun; i++ {
		l.Log(numbered(TypeDelivered, 0, i))
	}
	waitFor(t, "webhook to receive every record", func() bool { return rc.received() >= firstRun+secondRun })
	closeLogger(t, l)

	records, _, _ := rc.snapshot()
	checkSequences(t, records, 1, firstRun+secondRun)
}

// TestWebhookSegmentRotation uses tiny spool segments so the shipper
// crosses many sealed segments while the writer keeps appending.
func TestWebhookSegmentRotation(t *testing.T) {
	const producers, perProducer = 4, 250
	rc, url := startReceiver(t)
	dir := t.TempDir()
	wo := fastWebhook(url)
	wo.SegmentSize = 1000
	l := openTestLogger(t, Options{Dir: dir, SyncInterval: 2 * time.Millisecond, Webhooks: []WebhookOptions{wo}})

	var wg sync.WaitGroup
	for p := range producers {
		wg.Go(func() {
			for i := range perProducer {
				l.Log(numbered(TypeDelivered, p, i))
				if i%50 == 0 {
					time.Sleep(time.Millisecond) // spread the records over many syncs
				}
			}
		})
	}
	wg.Wait()
	waitFor(t, "webhook to receive every record", func() bool { return rc.received() >= producers*perProducer })
	closeLogger(t, l)

	records, _, _ := rc.snapshot()
	checkSequences(t, records, producers, perProducer)
	if got := l.Stats().Webhooks[0].Backlog; got != 0 {
		t.Errorf("Stats().Webhooks[0].Backlog after everything was acknowledged = %d, want 0", got)
	}

	segments, err := listSegments(webhookDir(dir, url))
	if err != nil {
		t.Fatal(err)
	}
	if len(segments) != 1 {
		t.Errorf("segments left after everything was acknowledged = %v, want only the active one", segments)
	}
	if len(segments) > 0 && segments[0] < 2 {
		t.Errorf("active segment = %d, want at least 2 after writing more than one segment", segments[0])
	}
}

func TestWebhookRecordFilter(t *testing.T) {
	rc, url := startReceiver(t)
	wo := fastWebhook(url)
	wo.Records = []string{TypeBounced}
	l := openTestLogger(t, Options{Dir: t.TempDir(), SyncInterval: 5 * time.Millisecond, Webhooks: []WebhookOptions{wo}})
	for i, typ := range []string{TypeDelivered, TypeBounced, TypeReceived, TypeBounced} {
		l.Log(numbered(typ, 0, i))
	}
	waitFor(t, "two bounces", func() bool { return rc.received() >= 2 })
	closeLogger(t, l)

	records, _, _ := rc.snapshot()
	if len(records) != 2 {
		t.Fatalf("received %d records, want 2", len(records))
	}
	for _, r := range records {
		if r.Type != TypeBounced {
			t.Errorf("received record type %q, want only %q", r.Type, TypeBounced)
		}
	}
}

// TestWebhookMaxDelaySendsPartialBatch checks that a batch that never fills
// is sent once its first record has waited MaxDelay, without Close.
func TestWebhookMaxDelaySendsPartialBatch(t *testing.T) {
	rc, url := startReceiver(t)
	wo := fastWebhook(url)
	wo.BatchSize = 100
	wo.MaxDelay = 20 * time.Millisecond
	l := openTestLogger(t, Options{Dir: t.TempDir(), SyncInterval: 5 * time.Millisecond, Webhooks: []WebhookOptions{wo}})
	defer closeLogger(t, l)

	for i := range 3 {
		l.Log(numbered(TypeDelivered, 0, i))
	}
	waitFor(t, "a partial batch", func() bool { return rc.received() == 3 })
	_, sizes, _ := rc.snapshot()
	if len(sizes) == 0 || sizes[0] > 3 {
		t.Errorf("batch sizes = %v, want partial batches of at most 3", sizes)
	}
}

// TestWebhookDownAtCloseKeepsSpool checks that records a webhook never
// acknowledged stay on disk with the position unchanged.
func TestWebhookDownAtCloseKeepsSpool(t *testing.T) {
	rc, url := startReceiver(t)
	rc.setFail(func(int) bool { return true })
	dir := t.TempDir()
	l := openTestLogger(t, Options{Dir: dir, SyncInterval: 5 * time.Millisecond, Webhooks: []WebhookOptions{fastWebhook(url)}})
	for i := range 10 {
		l.Log(numbered(TypeDelivered, 0, i))
	}
	closeLogger(t, l)

	spool := webhookDir(dir, url)
	if got := l.Stats().Webhooks[0].Backlog; got <= 0 {
		t.Errorf("Stats().Webhooks[0].Backlog with 10 records unsent = %d, want > 0", got)
	}
	if _, ok, err := readPosition(spool); err != nil || ok {
		t.Errorf("readPosition after only failures = ok %v, err %v, want no position file", ok, err)
	}
	segments, err := listSegments(spool)
	if err != nil || len(segments) == 0 {
		t.Fatalf("listSegments = %v, %v, want the spooled segment", segments, err)
	}
	checkSequences(t, readRecords(t, segmentName(spool, segments[0])), 1, 10)
	if _, err := os.Stat(spool); err != nil {
		t.Error(err)
	}
}

// TestWebhookTransportFailures makes the first request time out and the
// second lose its connection; the shipper must retry both and deliver
// every record once.
func TestWebhookTransportFailures(t *testing.T) {
	const total = 120
	rc := &receiver{}
	var mu sync.Mutex
	requests := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		mu.Lock()
		requests++
		n := requests
		mu.Unlock()
		switch n {
		case 1:
			// Hold the request until the client times out. The server
			// notices the closed connection only after the body was read.
			io.Copy(io.Discard, req.Body)
			select {
			case <-req.Context().Done():
			case <-time.After(10 * time.Second):
			}
			return
		case 2:
			conn, _, err := w.(http.Hijacker).Hijack()
			if err == nil {
				conn.Close() // close without a response
			}
			return
		}
		rc.ServeHTTP(w, req)
	}))
	t.Cleanup(srv.Close)

	wo := fastWebhook(srv.URL)
	wo.Timeout = 100 * time.Millisecond
	l := openTestLogger(t, Options{Dir: t.TempDir(), SyncInterval: 5 * time.Millisecond, Webhooks: []WebhookOptions{wo}})
	for i := range total {
		l.Log(numbered(TypeDelivered, 0, i))
	}
	waitFor(t, "webhook to receive every record", func() bool { return rc.received() >= total })
	closeLogger(t, l)

	records, _, _ := rc.snapshot()
	checkSequences(t, records, 1, total)
	if st := l.Stats().Webhooks[0]; st.Failures != 2 {
		t.Errorf("Stats().Webhooks[0].Failures = %d, want 2 (timeout and closed connection)", st.Failures)
	}
}

func TestWebhookRedirectIsFailure(t *testing.T) {
	var redirected sync.WaitGroup
	redirected.Add(1)
	var once sync.Once
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		t.Error("the shipper followed a redirect")
	}))
	t.Cleanup(target.Close)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		once.Do(redirected.Done)
		http.Redirect(w, req, target.URL, http.StatusTemporaryRedirect)
	}))
	t.Cleanup(srv.Close)

	l := openTestLogger(t, Options{Dir: t.TempDir(), SyncInterval: 5 * time.Millisecond, Webhooks: []WebhookOptions{fastWebhook(srv.URL)}})
	l.Log(numbered(TypeDelivered, 0, 0))
	redirected.Wait()
	waitFor(t, "a failed request", func() bool { return l.Stats().Webhooks[0].Failures >= 1 })
	closeLogger(t, l)
	if st := l.Stats().Webhooks[0]; st.Sent != 0 {
		t.Errorf("Stats().Webhooks[0].Sent after only redirects = %d, want 0", st.Sent)
	}
}

func TestShipperBacklogEstimate(t *testing.T) {
	tests := []struct {
		acked, synced position
		want          int64
	}{
		{position{1, 0}, position{1, 0}, 0},
		{position{1, 100}, position{1, 350}, 250},
		{position{1, 400}, position{2, 50}, 600 + 50},          // rest of 1, then 50 of 2
		{position{1, 400}, position{4, 50}, 600 + 2*1000 + 50}, // two full segments between
		{position{1, 1200}, position{2, 0}, 0},                 // segment 1 ran past segmentSize
		{position{3, 0}, position{2, 900}, 0},                  // acked ahead: nothing pending
	}
	for _, tt := range tests {
		s := &shipper{spool: &webhookSpool{segmentSize: 1000}}
		s.setAcked(tt.acked)
		s.spool.synced.Store(&tt.synced)
		if got := s.backlog(); got != tt.want {
			t.Errorf("backlog(acked %v, synced %v) = %d, want %d", tt.acked, tt.synced, got, tt.want)
		}
	}
}
