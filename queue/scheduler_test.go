package queue

import (
	"bufio"
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"smta/acct"
	"smta/delivery"
	"smta/internal/testdns"
	"smta/spool"

	"smta/internal/smtptest"
)

// waitLimit bounds every wait for an asynchronous outcome. It is a guard
// against a hung test, not a performance assertion.
const waitLimit = 20 * time.Second

const testBody = "From: <s@sender.test>\r\nTo: <a@one.test>\r\nSubject: test\r\nMessage-ID: <1@sender.test>\r\n\r\nhello\r\n..leading dot\r\n"

// harness is a Scheduler over a real spool and a real accounting log in
// t.TempDir().
type harness struct {
	t       testing.TB
	acctDir string
	sp      *spool.Spool
	acct    *acct.Logger
	s       *Scheduler

	stopOnce sync.Once
}

// testLogger sends slog output to t.Log, at debug level so a failing test
// shows the scheduler's decisions.
func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// newHarness opens a spool and an accounting log in dir and a Scheduler with
// o, whose Spool, Acct, HostName and Logger it fills in when unset.
func newHarness(t testing.TB, dir string, o Options) *harness {
	t.Helper()
	sp, err := spool.Open(filepath.Join(dir, "spool"), spool.Options{SegmentSize: 1 << 20})
	if err != nil {
		t.Fatalf("spool.Open: %v", err)
	}
	acctDir := t.TempDir() // per run, so records() returns only this run's records
	al, err := acct.Open(acct.Options{Dir: acctDir, Logger: testLogger(t)})
	if err != nil {
		sp.Close()
		t.Fatalf("acct.Open: %v", err)
	}
	o.Spool = sp
	o.Acct = al
	if o.HostName == "" {
		o.HostName = "relay.test"
	}
	if o.Logger == nil {
		o.Logger = testLogger(t)
	}
	h := &harness{t: t, acctDir: acctDir, sp: sp, acct: al, s: New(o)}
	t.Cleanup(h.stop)
	return h
}

// submit stores a message the way the HTTP API does and enqueues it.
func (h *harness) submit(env *spool.Envelope, body string) *spool.Message {
	h.t.Helper()
	if env.Received.IsZero() {
		env.Received = time.Now()
	}
	m, err := h.sp.Inject(env, []byte(body))
	if err != nil {
		h.t.Fatalf("Inject: %v", err)
	}
	h.s.Enqueue(m)
	return m
}

// stop stops the scheduler and closes the accounting log and the spool.
func (h *harness) stop() {
	h.stopOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
		defer cancel()
		if err := h.s.Stop(ctx); err != nil {
			h.t.Errorf("Stop: %v", err)
		}
		if err := h.acct.Close(); err != nil {
			h.t.Errorf("acct Close: %v", err)
		}
		if err := h.sp.Close(); err != nil {
			h.t.Errorf("spool Close: %v", err)
		}
	})
}

// records stops the harness and returns the accounting records written.
func (h *harness) records() []acct.Record {
	h.t.Helper()
	h.stop()
	f, err := os.Open(filepath.Join(h.acctDir, "acct.json"))
	if err != nil {
		h.t.Fatalf("reading accounting file: %v", err)
	}
	defer f.Close()
	var recs []acct.Record
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var r acct.Record
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			h.t.Fatalf("accounting line %q: %v", sc.Text(), err)
		}
		recs = append(recs, r)
	}
	return recs
}

// queue returns the QueueInfo of name, or a zero one.
func (h *harness) queue(name string) QueueInfo {
	for _, q := range h.s.Queues() {
		if q.Name == name {
			return q
		}
	}
	return QueueInfo{}
}

func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// routes returns a Policy function that routes each listed domain to its
// address and applies base to every domain.
func routes(base Policy, byDomain map[string]string) func(string) Policy {
	return func(domain string) Policy {
		p := base
		p.Route = byDomain[domain]
		return p
	}
}

func rcpts(addrs ...string) []spool.Recipient {
	rs := make([]spool.Recipient, len(addrs))
	for i, a := range addrs {
		rs[i] = spool.Recipient{Addr: a}
	}
	return rs
}

func recordsOfType(recs []acct.Record, typ string) []acct.Record {
	var out []acct.Record
	for _, r := range recs {
		if r.Type == typ {
			out = append(out, r)
		}
	}
	return out
}

// dsnField returns the value of the first "name: value" line in a DSN.
func dsnField(data, name string) string {
	for _, line := range strings.Split(data, "\r\n") {
		if v, ok := strings.CutPrefix(line, name+": "); ok {
			return v
		}
	}
	return ""
}

func TestDeliverTwoDomainsViaRoute(t *testing.T) {
	rx1, rx2 := startReceiver(t), startReceiver(t)
	h := newHarness(t, t.TempDir(), Options{
		Policy: routes(Policy{DSN: true}, map[string]string{"one.test": rx1.addr(), "two.test": rx2.addr()}),
	})
	h.s.Start()
	m := h.submit(&spool.Envelope{
		From:       "s@sender.test",
		Rcpts:      rcpts("a@one.test", "b@Two.Test", "c@ONE.test"),
		ClientAddr: "192.0.2.1:40000",
		Helo:       "client.test",
		EnvID:      "env-1",
		JobID:      "job-1",
	}, testBody)
	waitFor(t, "both deliveries", func() bool { return len(rx1.messages()) == 1 && len(rx2.messages()) == 1 })
	waitFor(t, "spool removal", func() bool { return h.sp.Stats().Messages == 0 })

	got1, got2 := rx1.messages()[0], rx2.messages()[0]
	if want := []string{"a@one.test", "c@ONE.test"}; !slices.Equal(got1.rcpts, want) {
		t.Errorf("one.test recipients = %q, want %q", got1.rcpts, want)
	}
	if want := []string{"b@Two.Test"}; !slices.Equal(got2.rcpts, want) {
		t.Errorf("two.test recipients = %q, want %q", got2.rcpts, want)
	}
	if got1.from != "s@sender.test" {
		t.Errorf("MAIL FROM = %q, want %q", got1.from, "s@sender.test")
	}
	if !strings.HasPrefix(got1.data, "Received: from client.test ([192.0.2.1])\r\n\tby relay.test (smta) with ESMTP id "+m.Env.ID+"; ") {
		t.Errorf("two-recipient copy starts %q, want a Received header without a for clause", firstLines(got1.data, 3))
	}
	if !strings.Contains(got2.data, "\r\n\tfor <b@Two.Test>; ") {
		t.Errorf("one-recipient copy starts %q, want a for clause", firstLines(got2.data, 3))
	}
	for _, got := range []rxMessage{got1, got2} {
		if !strings.HasSuffix(got.data, testBody) {
			t.Errorf("delivered data ends %q, want the stored body %q", got.data, testBody)
		}
	}

	infos := map[string]QueueInfo{}
	for _, q := range h.s.Queues() {
		infos[q.Name] = q
	}
	if infos["one.test"].Delivered != 2 || infos["two.test"].Delivered != 1 {
		t.Errorf("Queues delivered = one.test %d, two.test %d, want 2 and 1", infos["one.test"].Delivered, infos["two.test"].Delivered)
	}

	recs := h.records()
	ds := recordsOfType(recs, acct.TypeDelivered)
	if len(ds) != 3 || len(recs) != 3 {
		t.Fatalf("accounting = %d records, %d of type d, want 3 and 3: %+v", len(recs), len(ds), recs)
	}
	for _, r := range ds {
		wantQueue := domainOf(r.Rcpt)
		checkFields(t, "d record for "+r.Rcpt, []field{
			{"queue", r.Queue, wantQueue},
			{"msgId", r.MsgID, m.Env.ID},
			{"orig", r.Orig, "s@sender.test"},
			{"dsnAction", r.DSNAction, "delivered"},
			{"dsnStatus", r.DSNStatus, "2.0.0 (success)"},
			{"dsnDiag", r.DSNDiag, "smtp;250 2.0.0 queued"},
			{"dsnMta", r.DSNMta, "127.0.0.1 (127.0.0.1)"},
			{"numAttempts", r.NumAttempts, 1},
			{"dlvDestinationIp", r.DlvDestinationIP, "127.0.0.1"},
			{"dlvSourceIp", r.DlvSourceIP, "127.0.0.1"},
			{"dlvSize", r.DlvSize, int64(len(testBody))},
			{"srcMta", r.SrcMta, "client.test (192.0.2.1)"},
			{"jobId", r.JobID, "job-1"},
			{"envId", r.EnvID, "env-1"},
		})
	}
}

// field is one checked value of an accounting record.
type field struct {
	name      string
	got, want any
}

// checkFields reports each field whose value differs from the expected one.
func checkFields(t *testing.T, what string, fields []field) {
	t.Helper()
	for _, f := range fields {
		if f.got != f.want {
			t.Errorf("%s: %s = %v, want %v", what, f.name, f.got, f.want)
		}
	}
}

func firstLines(s string, n int) string {
	lines := strings.SplitAfterN(s, "\n", n+1)
	return strings.Join(lines[:min(n, len(lines))], "")
}

func TestDeliverViaMX(t *testing.T) {
	rx := startReceiver(t)
	dns := testdns.Start(t)
	// up.test prefers a host that listens; down.test prefers one that
	// refuses connections (nothing listens on 127.0.0.2 at rx's port).
	dns.AddMX("up.test", 10, "mail.up.test")
	dns.AddMX("up.test", 20, "backup.up.test")
	dns.AddA("mail.up.test", "127.0.0.1")
	dns.AddA("backup.up.test", "127.0.0.2")
	dns.AddMX("down.test", 10, "mail.down.test")
	dns.AddMX("down.test", 20, "backup.down.test")
	dns.AddA("mail.down.test", "127.0.0.2")
	dns.AddA("backup.down.test", "127.0.0.1")

	tests := []struct {
		rcpt    string
		wantMta string
	}{
		{"a@up.test", "mail.up.test (127.0.0.1)"},
		{"a@down.test", "backup.down.test (127.0.0.1)"},
		{"a@[127.0.0.1]", "[127.0.0.1] (127.0.0.1)"}, // address literal: no DNS
	}
	for _, tt := range tests {
		before := len(rx.messages())
		h := newHarness(t, t.TempDir(), Options{
			Resolver: delivery.NewResolver(dns.Addr()),
			MXPort:   rx.port(),
		})
		h.s.Start()
		h.submit(&spool.Envelope{From: "s@sender.test", Rcpts: rcpts(tt.rcpt)}, testBody)
		waitFor(t, "delivery to "+tt.rcpt, func() bool { return len(rx.messages()) == before+1 })

		recs := h.records()
		if len(recs) != 1 || recs[0].Type != acct.TypeDelivered {
			t.Fatalf("%s: accounting = %+v, want one d record", tt.rcpt, recs)
		}
		if got := recs[0].DSNMta; got != tt.wantMta {
			t.Errorf("%s: dsnMta = %q, want %q", tt.rcpt, got, tt.wantMta)
		}
	}
}

func TestTransientThenDelivered(t *testing.T) {
	rx := startReceiver(t)
	rx.script("a@one.test", "451 4.2.0 mailbox busy", "452 4.2.2 over quota for now")
	h := newHarness(t, t.TempDir(), Options{
		Policy: routes(Policy{RetryAfter: 50 * time.Millisecond}, map[string]string{"one.test": rx.addr()}),
	})
	h.s.Start()
	h.submit(&spool.Envelope{From: "s@sender.test", Rcpts: rcpts("a@one.test")}, testBody)
	waitFor(t, "delivery after retries", func() bool { return len(rx.messages()) == 1 })
	waitFor(t, "spool removal", func() bool { return h.sp.Stats().Messages == 0 })

	recs := h.records()
	var types []string
	for _, r := range recs {
		types = append(types, r.Type)
	}
	if want := []string{"t", "t", "d"}; !slices.Equal(types, want) {
		t.Fatalf("record types = %q, want %q", types, want)
	}
	checkFields(t, "first t record", []field{
		{"dsnAction", recs[0].DSNAction, "delayed"},
		{"dsnDiag", recs[0].DSNDiag, "smtp;451 4.2.0 mailbox busy"},
		{"dsnStatus", recs[0].DSNStatus, "4.2.0 (other or undefined mailbox status)"},
		{"numAttempts", recs[0].NumAttempts, 1},
	})
	if recs[2].NumAttempts != 3 {
		t.Errorf("d record numAttempts = %d, want 3", recs[2].NumAttempts)
	}
	// The retries come within connectionIdle, so the idle connection of the
	// first attempt carries them all.
	if n := rx.connections(); n != 1 {
		t.Errorf("receiver connections = %d, want 1 (reused for every attempt)", n)
	}
}

func TestBounceSendsDSN(t *testing.T) {
	dest, home := startReceiver(t), startReceiver(t)
	dest.script("a@dest.test", "550 5.1.1 no such user")
	h := newHarness(t, t.TempDir(), Options{
		Policy: routes(Policy{DSN: true}, map[string]string{"dest.test": dest.addr(), "sender.test": home.addr()}),
	})
	h.s.Start()
	m := h.submit(&spool.Envelope{
		From:  "s@sender.test",
		Rcpts: []spool.Recipient{{Addr: "a@dest.test", ORcpt: "rfc822;a@dest.test"}, {Addr: "b@dest.test"}},
		EnvID: "env-7",
	}, testBody)
	waitFor(t, "the DSN", func() bool { return len(home.messages()) == 1 })
	waitFor(t, "spool removal", func() bool { return h.sp.Stats().Messages == 0 })

	if got := dest.messages(); len(got) != 1 || !slices.Equal(got[0].rcpts, []string{"b@dest.test"}) {
		t.Errorf("destination got %+v, want one message for b@dest.test", got)
	}
	dsn := home.messages()[0]
	if dsn.from != "" {
		t.Errorf("DSN reverse-path = %q, want the null sender", dsn.from)
	}
	if !slices.Equal(dsn.rcpts, []string{"s@sender.test"}) {
		t.Errorf("DSN recipients = %q, want the original sender", dsn.rcpts)
	}
	for name, want := range map[string]string{
		"Final-Recipient":      "rfc822; a@dest.test",
		"Action":               "failed",
		"Status":               "5.1.1",
		"Diagnostic-Code":      "smtp; 550 5.1.1 no such user",
		"Original-Envelope-Id": "env-7",
		"Reporting-MTA":        "dns; relay.test",
	} {
		if got := dsnField(dsn.data, name); got != want {
			t.Errorf("DSN field %s = %q, want %q", name, got, want)
		}
	}
	if strings.Contains(dsn.data, "b@dest.test") {
		t.Errorf("DSN mentions the delivered recipient b@dest.test")
	}

	recs := h.records()
	bs := recordsOfType(recs, acct.TypeBounced)
	if len(bs) != 1 {
		t.Fatalf("b records = %+v, want one", bs)
	}
	checkFields(t, "b record", []field{
		{"rcpt", bs[0].Rcpt, "a@dest.test"},
		{"orcpt", bs[0].ORcpt, "rfc822;a@dest.test"},
		{"msgId", bs[0].MsgID, m.Env.ID},
		{"bounceCat", bs[0].BounceCat, delivery.CategoryBadMailbox},
		{"dsnStatus", bs[0].DSNStatus, "5.1.1 (bad destination mailbox address)"},
		{"dsnAction", bs[0].DSNAction, "failed"},
	})
	if n := len(recordsOfType(recs, acct.TypeDelivered)); n != 2 {
		t.Errorf("d records = %d, want 2 (b@dest.test and the DSN)", n)
	}
}

func TestUnroutableBouncesAtOnce(t *testing.T) {
	home := startReceiver(t)
	dns := testdns.Start(t)
	dns.SetNullMX("null.test")
	// missing.test has no records at all, so the server returns NXDOMAIN.

	tests := []struct {
		rcpt       string
		wantStatus string
	}{
		{"x@null.test", "5.1.10"},
		{"x@missing.test", "5.1.2"},
	}
	for _, tt := range tests {
		before := len(home.messages())
		h := newHarness(t, t.TempDir(), Options{
			Resolver: delivery.NewResolver(dns.Addr()),
			Policy:   routes(Policy{DSN: true}, map[string]string{"sender.test": home.addr()}),
		})
		h.s.Start()
		h.submit(&spool.Envelope{From: "s@sender.test", Rcpts: rcpts(tt.rcpt)}, testBody)
		waitFor(t, "the DSN for "+tt.rcpt, func() bool { return len(home.messages()) == before+1 })

		if got := dsnField(home.messages()[before].data, "Status"); got != tt.wantStatus {
			t.Errorf("%s: DSN Status = %q, want %q", tt.rcpt, got, tt.wantStatus)
		}
		recs := h.records()
		if n := len(recordsOfType(recs, acct.TypeTransient)); n != 0 {
			t.Errorf("%s: t records = %d, want 0 because the failure is final", tt.rcpt, n)
		}
		bs := recordsOfType(recs, acct.TypeBounced)
		if len(bs) != 1 || bs[0].Rcpt != tt.rcpt || bs[0].NumAttempts != 1 {
			t.Errorf("%s: b records = %+v, want one at attempt 1", tt.rcpt, bs)
		}
	}
}

func TestNoDSNForNullSender(t *testing.T) {
	dest := startReceiver(t)
	dest.script("a@dest.test", "550 5.1.1 no such user")
	h := newHarness(t, t.TempDir(), Options{
		Policy: routes(Policy{DSN: true}, map[string]string{"dest.test": dest.addr()}),
	})
	h.s.Start()
	h.submit(&spool.Envelope{From: "", Rcpts: rcpts("a@dest.test")}, testBody)
	waitFor(t, "the bounce", func() bool { return h.queue("dest.test").Failed == 1 })

	// finish stores and enqueues a DSN before it counts the failure, so
	// any DSN would be visible by now.
	if n := h.sp.Stats().Messages; n != 0 {
		t.Errorf("spool holds %d messages after the bounce, want 0 (no DSN)", n)
	}
	if qs := h.s.Queues(); len(qs) != 1 {
		t.Errorf("queues = %+v, want only dest.test", qs)
	}
	recs := h.records()
	if len(recs) != 1 || recs[0].Type != acct.TypeBounced {
		t.Errorf("accounting = %+v, want one b record", recs)
	}
}

func TestExpiry(t *testing.T) {
	dest, home := startReceiver(t), startReceiver(t)
	dest.script("a@dest.test", "451 4.3.0 try later")
	h := newHarness(t, t.TempDir(), Options{
		Policy: routes(Policy{DSN: true, BounceAfter: time.Hour}, map[string]string{"dest.test": dest.addr(), "sender.test": home.addr()}),
	})
	h.s.Start()
	h.submit(&spool.Envelope{
		From:     "s@sender.test",
		Rcpts:    rcpts("a@dest.test"),
		Received: time.Now().Add(-2 * time.Hour),
	}, testBody)
	waitFor(t, "the DSN", func() bool { return len(home.messages()) == 1 })

	dsn := home.messages()[0].data
	if got := dsnField(dsn, "Status"); got != "4.4.7" {
		t.Errorf("DSN Status = %q, want 4.4.7 (delivery time expired)", got)
	}
	if got := dsnField(dsn, "Action"); got != "failed" {
		t.Errorf("DSN Action = %q, want failed", got)
	}
	recs := h.records()
	es := recordsOfType(recs, acct.TypeExpired)
	if len(es) != 1 {
		t.Fatalf("e records = %+v, want one", recs)
	}
	checkFields(t, "e record", []field{
		{"bounceCat", es[0].BounceCat, delivery.CategoryMessageExpired},
		{"dsnStatus", es[0].DSNStatus, "4.4.7 (delivery time expired)"},
		{"dsnDiag", es[0].DSNDiag, "smtp;451 4.3.0 try later"},
		{"dsnAction", es[0].DSNAction, "failed"},
	})
}

func TestConnectionReuse(t *testing.T) {
	const messages = 5
	tests := []struct {
		maxMsgPerConn int
		wantConns     int
	}{
		{0, 1},
		{2, 3},
		{5, 1},
	}
	for _, tt := range tests {
		rx := startReceiver(t)
		h := newHarness(t, t.TempDir(), Options{
			Policy: routes(Policy{MaxSMTPOut: 1, MaxMsgPerConn: tt.maxMsgPerConn}, map[string]string{"one.test": rx.addr()}),
		})
		for range messages {
			h.submit(&spool.Envelope{From: "s@sender.test", Rcpts: rcpts("a@one.test")}, testBody)
		}
		h.s.Start()
		waitFor(t, "every delivery", func() bool { return len(rx.messages()) == messages })
		h.stop()

		if got := rx.connections(); got != tt.wantConns {
			t.Errorf("MaxMsgPerConn=%d: connections = %d, want %d", tt.maxMsgPerConn, got, tt.wantConns)
		}
		perConn := map[int]int{}
		for _, m := range rx.messages() {
			perConn[m.conn]++
		}
		for c, n := range perConn {
			if tt.maxMsgPerConn > 0 && n > tt.maxMsgPerConn {
				t.Errorf("MaxMsgPerConn=%d: connection %d carried %d messages", tt.maxMsgPerConn, c, n)
			}
		}
	}
}

func TestRecoveryDeliversTheRest(t *testing.T) {
	dir := t.TempDir()
	rx := startReceiver(t)
	rx.script("b@dest.test", "451 4.2.0 later")
	policy := routes(Policy{RetryAfter: time.Hour}, map[string]string{"dest.test": rx.addr(), "paused.test": rx.addr()})

	// First run: a@dest.test is delivered, b@dest.test deferred by an hour,
	// and the paused queue never sends.
	h1 := newHarness(t, dir, Options{Policy: policy})
	h1.s.Pause("paused.test")
	h1.s.Start()
	m1 := h1.submit(&spool.Envelope{From: "s@sender.test", Rcpts: rcpts("a@dest.test", "b@dest.test")}, testBody)
	m2 := h1.submit(&spool.Envelope{From: "s@sender.test", Rcpts: rcpts("c@paused.test")}, testBody)
	waitFor(t, "the first attempt", func() bool { return h1.queue("dest.test").Scheduled == 1 })
	if q := h1.queue("paused.test"); q.Mode != ModePaused || q.Ready != 1 {
		t.Errorf("paused.test = %+v, want paused with 1 ready", q)
	}
	h1.stop()

	// Recovery: both messages come back with their states.
	sp, err := spool.Open(filepath.Join(dir, "spool"), spool.Options{SegmentSize: 1 << 20})
	if err != nil {
		t.Fatalf("reopening spool: %v", err)
	}
	recovered := map[string]*spool.Message{}
	if err := sp.Recover(func(m *spool.Message) { recovered[m.Env.ID] = m }); err != nil {
		t.Fatalf("Recover: %v", err)
	}
	sp.Close()
	if len(recovered) != 2 || recovered[m1.Env.ID] == nil || recovered[m2.Env.ID] == nil {
		t.Fatalf("recovered %d messages, want %s and %s", len(recovered), m1.Env.ID, m2.Env.ID)
	}
	r1 := recovered[m1.Env.ID].Env.Rcpts
	if r1[0].State != spool.RcptDelivered || r1[1].State != spool.RcptPending || r1[1].Attempts != 1 || r1[1].NextAttempt.IsZero() {
		t.Errorf("recovered recipients = %+v, want a delivered, b pending after 1 attempt with a next attempt", r1)
	}

	// Second run, with a clock two hours ahead so b's retry is due.
	h2 := newHarness(t, dir, Options{
		Policy: policy,
		Now:    func() time.Time { return time.Now().Add(2 * time.Hour) },
	})
	if err := h2.sp.Recover(h2.s.Enqueue); err != nil {
		t.Fatalf("Recover: %v", err)
	}
	h2.s.Start()
	waitFor(t, "the rest", func() bool { return len(rx.messages()) == 3 })
	waitFor(t, "spool removal", func() bool { return h2.sp.Stats().Messages == 0 })

	var got []string
	for _, m := range rx.messages() {
		got = append(got, m.rcpts...)
	}
	slices.Sort(got)
	if want := []string{"a@dest.test", "b@dest.test", "c@paused.test"}; !slices.Equal(got, want) {
		t.Errorf("delivered recipients = %q, want %q, each once", got, want)
	}
	recs := h2.records()
	if len(recs) != 2 {
		t.Fatalf("second run records = %+v, want 2", recs)
	}
	for _, r := range recs {
		if r.Type != acct.TypeDelivered {
			t.Errorf("record %+v, want type d", r)
		}
		if r.Rcpt == "b@dest.test" && r.NumAttempts != 2 {
			t.Errorf("b@dest.test numAttempts = %d, want 2", r.NumAttempts)
		}
	}
}

func TestEnqueueFutureGoesToSchedule(t *testing.T) {
	s := New(Options{HostName: "relay.test", Logger: testLogger(t)})
	future := time.Now().Add(time.Hour)
	s.Enqueue(&spool.Message{Env: spool.Envelope{ID: "m1", Rcpts: []spool.Recipient{
		{Addr: "a@x.test", NextAttempt: future},
		{Addr: "b@x.test"},
		{Addr: "c@y.test", State: spool.RcptDelivered},
		{Addr: "d@Y.test."},
	}}})
	got := s.Queues()
	want := []QueueInfo{
		{Name: "x.test", Ready: 1, Scheduled: 1, Mode: ModeNormal},
		{Name: "y.test", Ready: 1, Mode: ModeNormal},
	}
	if !slices.Equal(got, want) {
		t.Errorf("Queues() = %+v, want %+v", got, want)
	}
	if err := s.Stop(context.Background()); err != nil {
		t.Errorf("Stop: %v", err)
	}
}

func TestUnreachableHopBacksOff(t *testing.T) {
	down := startReceiver(t)
	down.noGreeting.Store(true)
	dns := testdns.Start(t)
	dns.SetRcode("servfail.test", 2) // SERVFAIL

	tests := []struct {
		domain     string
		wantStatus string
	}{
		{"down.test", "4.4.1 (no answer from host)"},
		{"servfail.test", "4.4.3 (directory server failure)"},
	}
	for _, tt := range tests {
		const messages = 3
		h := newHarness(t, t.TempDir(), Options{
			Resolver: delivery.NewResolver(dns.Addr()),
			Policy:   routes(Policy{RetryAfter: time.Hour, MaxSMTPOut: 1}, map[string]string{"down.test": down.addr()}),
		})
		for range messages {
			h.submit(&spool.Envelope{From: "s@sender.test", Rcpts: rcpts("a@" + tt.domain)}, testBody)
		}
		connsBefore := down.connections()
		h.s.Start()
		waitFor(t, "every message to be scheduled", func() bool { return h.queue(tt.domain).Scheduled == messages })

		q := h.queue(tt.domain)
		if q.Mode != ModeBackoff || q.Ready != 0 || q.Connections != 0 {
			t.Errorf("%s: queue = %+v, want backoff with nothing ready", tt.domain, q)
		}
		if tt.domain == "down.test" {
			if n := down.connections() - connsBefore; n != 1 {
				t.Errorf("%s: connection attempts = %d, want 1 for %d messages", tt.domain, n, messages)
			}
		}
		recs := h.records()
		ts := recordsOfType(recs, acct.TypeTransient)
		if len(ts) != messages || len(recs) != messages {
			t.Fatalf("%s: records = %+v, want %d t records", tt.domain, recs, messages)
		}
		for _, r := range ts {
			if r.DSNStatus != tt.wantStatus || r.NumAttempts != 1 || r.DSNAction != "delayed" {
				t.Errorf("%s: t record = %+v, want status %q at attempt 1", tt.domain, r, tt.wantStatus)
			}
		}
	}
}

func TestNoDSNWhenNotRequested(t *testing.T) {
	tests := []struct {
		name   string
		notify string
		dsn    bool
	}{
		{"notify never", "NEVER", true},
		{"notify success only", "SUCCESS", true},
		{"policy without DSNs", "", false},
	}
	for _, tt := range tests {
		dest, home := startReceiver(t), startReceiver(t)
		dest.script("a@dest.test", "550 5.1.1 no such user")
		h := newHarness(t, t.TempDir(), Options{
			Policy: routes(Policy{DSN: tt.dsn}, map[string]string{"dest.test": dest.addr(), "sender.test": home.addr()}),
		})
		h.s.Start()
		h.submit(&spool.Envelope{
			From:  "s@sender.test",
			Rcpts: []spool.Recipient{{Addr: "a@dest.test", Notify: tt.notify}},
		}, testBody)
		waitFor(t, "the bounce", func() bool { return h.queue("dest.test").Failed == 1 })

		if n := h.sp.Stats().Messages; n != 0 {
			t.Errorf("%s: spool holds %d messages after the bounce, want 0 (no DSN)", tt.name, n)
		}
		h.stop()
		if n := len(home.messages()); n != 0 {
			t.Errorf("%s: sender's domain got %d messages, want none", tt.name, n)
		}
	}
}

func TestStopAbortsInFlightTransaction(t *testing.T) {
	dir := t.TempDir()
	rx := startReceiver(t)
	rx.stallData.Store(true)
	h := newHarness(t, dir, Options{Policy: routes(Policy{}, map[string]string{"one.test": rx.addr()})})
	h.s.Start()
	m := h.submit(&spool.Envelope{From: "s@sender.test", Rcpts: rcpts("a@one.test")}, testBody)
	waitFor(t, "the body at the receiver", func() bool { return len(rx.messages()) == 1 })

	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := h.s.Stop(ctx); err == nil {
		t.Errorf("Stop with a stalled transaction = nil, want the context's error")
	}
	if q := h.queue("one.test"); q.Connections != 0 || q.Delivered != 0 {
		t.Errorf("after Stop: queue = %+v, want no connection and nothing delivered", q)
	}
	h.stop()

	// The outcome is unknown, so the recipient must still be pending.
	sp, err := spool.Open(filepath.Join(dir, "spool"), spool.Options{SegmentSize: 1 << 20})
	if err != nil {
		t.Fatalf("reopening spool: %v", err)
	}
	defer sp.Close()
	var got []*spool.Message
	sp.Recover(func(m *spool.Message) { got = append(got, m) })
	if len(got) != 1 || got[0].Env.ID != m.Env.ID || got[0].Env.Rcpts[0].State != spool.RcptPending {
		t.Errorf("recovered %+v, want %s with its recipient pending", got, m.Env.ID)
	}
}

func TestPauseResume(t *testing.T) {
	rx := startReceiver(t)
	h := newHarness(t, t.TempDir(), Options{Policy: routes(Policy{}, map[string]string{"one.test": rx.addr()})})
	h.s.Pause("One.Test")
	h.s.Start()
	h.submit(&spool.Envelope{From: "s@sender.test", Rcpts: rcpts("a@one.test")}, testBody)

	if q := h.queue("one.test"); q.Mode != ModePaused || q.Ready != 1 {
		t.Errorf("paused queue = %+v, want paused with 1 ready", q)
	}
	if n := rx.connections(); n != 0 {
		t.Errorf("connections while paused = %d, want 0", n)
	}
	h.s.Resume("one.test")
	waitFor(t, "delivery after Resume", func() bool { return len(rx.messages()) == 1 })
	if q := h.queue("one.test"); q.Mode != ModeNormal {
		t.Errorf("resumed queue mode = %q, want %q", q.Mode, ModeNormal)
	}
}

func TestMaxSMTPOutLimitsConnections(t *testing.T) {
	const (
		messages   = 30
		maxSMTPOut = 3
	)
	rx := startReceiver(t)
	h := newHarness(t, t.TempDir(), Options{
		Policy: routes(Policy{MaxSMTPOut: maxSMTPOut, MaxMsgPerConn: 2}, map[string]string{"one.test": rx.addr()}),
	})
	for range messages {
		h.submit(&spool.Envelope{From: "s@sender.test", Rcpts: rcpts("a@one.test")}, testBody)
	}
	h.s.Start()
	waitFor(t, "every delivery", func() bool { return len(rx.messages()) == messages })
	h.stop()

	if got := rx.maxConcurrent(); got > maxSMTPOut {
		t.Errorf("concurrent connections = %d, want at most %d", got, maxSMTPOut)
	}
	if got, want := rx.connections(), messages/2; got < want {
		t.Errorf("connections = %d, want at least %d with 2 messages per connection", got, want)
	}
}

func TestDeliverWithSTARTTLS(t *testing.T) {
	rx := startReceiver(t)
	rx.tlsConfig.Store(smtptest.ServerTLS(t))
	h := newHarness(t, t.TempDir(), Options{
		Policy: routes(Policy{UseTLS: true}, map[string]string{"one.test": rx.addr()}),
	})
	h.s.Start()
	h.submit(&spool.Envelope{From: "s@sender.test", Rcpts: rcpts("a@one.test")}, testBody)
	waitFor(t, "delivery", func() bool { return len(rx.messages()) == 1 })

	if !rx.messages()[0].tls {
		t.Errorf("message arrived without TLS, want it after STARTTLS")
	}
	recs := h.records()
	if len(recs) != 1 || recs[0].Type != acct.TypeDelivered {
		t.Fatalf("accounting = %+v, want one d record", recs)
	}
	if recs[0].TLSProtocol == "" || recs[0].TLSCipher == "" {
		t.Errorf("d record TLS = %q, %q, want the negotiated protocol and cipher", recs[0].TLSProtocol, recs[0].TLSCipher)
	}
}

// TestRouteHostNameUsesMX checks that a route to a host name resolves that
// name's MX records through the configured resolver and keeps the route's
// port, while an IP route is dialed as written.
func TestRouteHostNameUsesMX(t *testing.T) {
	rx := startReceiver(t)
	dns := testdns.Start(t)
	dns.AddMX("relay.example.test", 10, "mx.relay.example.test")
	dns.AddA("mx.relay.example.test", "127.0.0.1")
	route := "relay.example.test:" + strconv.Itoa(rx.port())

	h := newHarness(t, t.TempDir(), Options{
		Resolver: delivery.NewResolver(dns.Addr()),
		Policy: func(string) Policy {
			return Policy{Route: route, RouteMX: true}
		},
	})
	h.s.Start()
	h.submit(&spool.Envelope{From: "s@sender.test", Rcpts: rcpts("a@dest.test")}, testBody)
	waitFor(t, "delivery through the routed MX", func() bool { return len(rx.messages()) == 1 })

	recs := h.records()
	if len(recs) != 1 || recs[0].Type != acct.TypeDelivered {
		t.Fatalf("accounting = %+v, want one d record", recs)
	}
	if got, want := recs[0].DSNMta, "mx.relay.example.test (127.0.0.1)"; got != want {
		t.Errorf("dsnMta = %q, want %q", got, want)
	}
}

// TestIdleConnectionCarriesLaterMessage checks that a message queued
// shortly after the ready list emptied goes over the connection that is
// still open, instead of a new one.
func TestIdleConnectionCarriesLaterMessage(t *testing.T) {
	rx := startReceiver(t)
	h := newHarness(t, t.TempDir(), Options{
		Policy: routes(Policy{}, map[string]string{"one.test": rx.addr()}),
	})
	h.s.Start()
	h.submit(&spool.Envelope{From: "s@sender.test", Rcpts: rcpts("a@one.test")}, testBody)
	waitFor(t, "first delivery", func() bool { return len(rx.messages()) == 1 })
	h.submit(&spool.Envelope{From: "s@sender.test", Rcpts: rcpts("b@one.test")}, testBody)
	waitFor(t, "second delivery", func() bool { return len(rx.messages()) == 2 })

	if n := rx.connections(); n != 1 {
		t.Errorf("receiver connections = %d, want 1", n)
	}
}

// TestIdleConnectionClosedByServer checks that a connection the next hop
// closed while it sat idle is replaced before the next message, so the
// message is delivered at once instead of being deferred.
func TestIdleConnectionClosedByServer(t *testing.T) {
	rx := startReceiver(t)
	rx.closeAfterData.Store(true)
	h := newHarness(t, t.TempDir(), Options{
		Policy: routes(Policy{RetryAfter: time.Hour}, map[string]string{"one.test": rx.addr()}),
	})
	h.s.Start()
	h.submit(&spool.Envelope{From: "s@sender.test", Rcpts: rcpts("a@one.test")}, testBody)
	waitFor(t, "first delivery", func() bool { return len(rx.messages()) == 1 })
	h.submit(&spool.Envelope{From: "s@sender.test", Rcpts: rcpts("b@one.test")}, testBody)
	waitFor(t, "second delivery", func() bool { return len(rx.messages()) == 2 })

	for _, r := range h.records() {
		if r.Type != acct.TypeDelivered {
			t.Errorf("record %s for %s (%s), want only d records", r.Type, r.Rcpt, r.DSNDiag)
		}
	}
	if n := rx.connections(); n != 2 {
		t.Errorf("receiver connections = %d, want 2", n)
	}
}
