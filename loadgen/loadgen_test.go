package loadgen

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// quietLogger keeps sink start and stop lines out of test output.
var quietLogger = slog.New(slog.NewTextHandler(io.Discard, nil))

func startTestSink(t *testing.T, cfg SinkConfig) *Sink {
	t.Helper()
	cfg.Logger = quietLogger
	if cfg.Seed == 0 {
		cfg.Seed = 1
	}
	s, err := StartSink(cfg)
	if err != nil {
		t.Fatalf("StartSink: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestSendCountsExact(t *testing.T) {
	tests := []struct {
		name        string
		connections int
		messages    int
		recipients  int
		pipelining  bool
		size        SizeSpec
	}{
		{"one connection", 1, 50, 1, false, SizeSpec{Min: 1024, Max: 1024}},
		{"many connections", 16, 400, 1, false, SizeSpec{Min: 10240, Max: 10240}},
		{"pipelining", 8, 300, 3, true, SizeSpec{Min: 1024, Max: 1024}},
		{"size range", 4, 200, 2, true, SizeSpec{Min: 2048, Max: 100 << 10}},
		{"more connections than messages", 20, 5, 1, false, SizeSpec{Min: 4096, Max: 4096}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sink := startTestSink(t, SinkConfig{})
			report, err := Send(context.Background(), SendConfig{
				Target:      sink.Addr(),
				Connections: tt.connections,
				Messages:    tt.messages,
				Recipients:  tt.recipients,
				Pipelining:  tt.pipelining,
				Size:        tt.size,
				Domains:     []string{"a.example", "b.example"},
				Seed:        7,
			})
			if err != nil {
				t.Fatalf("Send: %v", err)
			}
			st := sink.Stats()
			if report.Sent != uint64(tt.messages) {
				t.Errorf("report.Sent = %d, want %d (errors %v)", report.Sent, tt.messages, report.Errors)
			}
			if report.Failed != 0 {
				t.Errorf("report.Failed = %d, want 0 (errors %v)", report.Failed, report.Errors)
			}
			if st.Messages != uint64(tt.messages) {
				t.Errorf("sink messages = %d, want %d", st.Messages, tt.messages)
			}
			if want := uint64(tt.messages * tt.recipients); st.Recipients != want {
				t.Errorf("sink recipients = %d, want %d", st.Recipients, want)
			}
			if st.Bytes != report.Bytes {
				t.Errorf("sink bytes = %d, sender bytes = %d, want equal", st.Bytes, report.Bytes)
			}
			if st.Malformed != 0 {
				t.Errorf("sink malformed = %d, want 0", st.Malformed)
			}
			if st.ProtocolErrors != 0 {
				t.Errorf("sink protocol errors = %d, want 0", st.ProtocolErrors)
			}
			if st.Connections > uint64(tt.connections) {
				t.Errorf("sink connections = %d, want at most %d", st.Connections, tt.connections)
			}
		})
	}
}

func TestSendDurationBound(t *testing.T) {
	sink := startTestSink(t, SinkConfig{Latency: 5 * time.Millisecond})
	report, err := Send(context.Background(), SendConfig{
		Target:      sink.Addr(),
		Connections: 2,
		Duration:    300 * time.Millisecond,
		Size:        SizeSpec{Min: 1024, Max: 1024},
	})
	if err != nil {
		t.Fatalf("Send: %v", err)
	}
	if report.Sent == 0 {
		t.Errorf("report.Sent = 0, want some messages within the duration")
	}
	// Every message the sender counts was counted by the sink too.
	if st := sink.Stats(); st.Messages != report.Sent {
		t.Errorf("sink messages = %d, report.Sent = %d, want equal", st.Messages, report.Sent)
	}
}

func TestSendLatencyIncludesSinkDelay(t *testing.T) {
	const delay = 20 * time.Millisecond
	sink := startTestSink(t, SinkConfig{Latency: delay})
	report, err := Send(context.Background(), SendConfig{
		Target:      sink.Addr(),
		Connections: 4,
		Messages:    40,
		Size:        SizeSpec{Min: 1024, Max: 1024},
	})
	if err != nil {
		t.Fatalf("Send: %v", err)
	}
	// A lower bound, not a speed threshold: the sink sleeps before every
	// end-of-data reply, so no message can complete faster.
	if report.Latency.P50 < delay {
		t.Errorf("p50 latency = %s, want at least the injected %s", report.Latency.P50, delay)
	}
	if report.Latency.Max < report.Latency.P50 {
		t.Errorf("max latency %s < p50 %s", report.Latency.Max, report.Latency.P50)
	}
}

func TestOpenLoopIncludesQueueing(t *testing.T) {
	// One connection to a sink that needs at least delay per message,
	// offered rate messages per second. Message i is scheduled at
	// i/rate but cannot finish before (i+1)*delay, so its latency is at
	// least (i+1)*delay - i/rate. A harness that measured from the moment
	// the connection became free would report about delay for all.
	const (
		delay    = 20 * time.Millisecond
		rate     = 1000.0
		messages = 30
	)
	sink := startTestSink(t, SinkConfig{Latency: delay})

	report, err := Send(context.Background(), SendConfig{
		Target:      sink.Addr(),
		Connections: 1,
		Messages:    messages,
		Rate:        rate,
		Size:        SizeSpec{Min: 1024, Max: 1024},
	})
	if err != nil {
		t.Fatalf("Send: %v", err)
	}
	if report.Mode != "open" {
		t.Errorf("report.Mode = %q, want open", report.Mode)
	}
	if report.Sent != messages {
		t.Fatalf("report.Sent = %d, want %d", report.Sent, messages)
	}

	lowerBound := func(i int) time.Duration {
		return time.Duration(i+1)*delay - time.Duration(float64(i)/rate*float64(time.Second))
	}
	if want := lowerBound(messages - 1); report.Latency.Max < want {
		t.Errorf("max latency = %s, want at least %s", report.Latency.Max, want)
	}
	// The median message is number messages/2 - 1 or later.
	if want := lowerBound(messages/2 - 1); report.Latency.P50 < want {
		t.Errorf("p50 latency = %s, want at least %s", report.Latency.P50, want)
	}
}

func TestSinkFaultInjection(t *testing.T) {
	// 400 messages with 5 recipients each make 2000 RCPT commands. The
	// number of injected failures is binomial. The band is the mean plus
	// or minus 5 standard deviations, so a correct sink falls outside it
	// with probability below 1e-6, and the fixed seed makes it repeatable.
	const rcpts = 2000
	tests := []struct {
		tempFail, permFail float64
	}{
		{0.3, 0},
		{0, 0.3},
		{0.1, 0.2},
	}
	for _, tt := range tests {
		sink := startTestSink(t, SinkConfig{TempFail: tt.tempFail, PermFail: tt.permFail, Seed: 42})
		report, err := Send(context.Background(), SendConfig{
			Target:      sink.Addr(),
			Connections: 4,
			Messages:    rcpts / 5,
			Recipients:  5,
			Pipelining:  true,
			Size:        SizeSpec{Min: 1024, Max: 1024},
		})
		if err != nil {
			t.Fatalf("Send(tempfail=%v permfail=%v): %v", tt.tempFail, tt.permFail, err)
		}
		st := sink.Stats()
		checkBand := func(what string, got uint64, p float64) {
			t.Helper()
			mean := rcpts * p
			sd := math.Sqrt(rcpts * p * (1 - p))
			if float64(got) < mean-5*sd || float64(got) > mean+5*sd {
				t.Errorf("tempfail=%v permfail=%v: %s = %d, want within %.0f ± %.0f", tt.tempFail, tt.permFail, what, got, mean, 5*sd)
			}
		}
		checkBand("temp failed", st.TempFailed, tt.tempFail)
		checkBand("perm failed", st.PermFailed, tt.permFail)

		if got := report.Errors["RCPT 451"]; got != st.TempFailed {
			t.Errorf("sender counted RCPT 451 = %d, sink injected %d", got, st.TempFailed)
		}
		if got := report.Errors["RCPT 550"]; got != st.PermFailed {
			t.Errorf("sender counted RCPT 550 = %d, sink injected %d", got, st.PermFailed)
		}
		if got, want := st.Recipients+st.TempFailed+st.PermFailed, uint64(rcpts); got != want {
			t.Errorf("accepted + failed recipients = %d, want %d", got, want)
		}
		if report.Sent+report.Failed != rcpts/5 {
			t.Errorf("sent %d + failed %d, want %d messages", report.Sent, report.Failed, rcpts/5)
		}
		if st.Messages != report.Sent {
			t.Errorf("sink messages = %d, report.Sent = %d, want equal", st.Messages, report.Sent)
		}
	}
}

func TestSinkCountsSmtpSource(t *testing.T) {
	const smtpSource = "/usr/sbin/smtp-source"
	if _, err := exec.LookPath(smtpSource); err != nil {
		t.Fatalf("%s is required (Debian package postfix): %v", smtpSource, err)
	}
	tests := []struct {
		args       []string
		messages   int
		recipients int
	}{
		{[]string{"-s", "5", "-m", "200", "-l", "10240"}, 200, 200},
		{[]string{"-s", "3", "-m", "90", "-r", "4", "-l", "2048"}, 90, 360},
		{[]string{"-d", "-s", "2", "-m", "60", "-l", "1024"}, 60, 60},
	}
	for _, tt := range tests {
		sink := startTestSink(t, SinkConfig{})
		args := append([]string{"-f", "src@example.org", "-t", "dst@example.com"}, tt.args...)
		args = append(args, sink.Addr())
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		out, err := exec.CommandContext(ctx, smtpSource, args...).CombinedOutput()
		cancel()
		if err != nil {
			t.Fatalf("smtp-source %v: %v\n%s", args, err, out)
		}
		st := sink.Stats()
		if st.Messages != uint64(tt.messages) {
			t.Errorf("smtp-source %v: sink messages = %d, want %d", tt.args, st.Messages, tt.messages)
		}
		if st.Recipients != uint64(tt.recipients) {
			t.Errorf("smtp-source %v: sink recipients = %d, want %d", tt.args, st.Recipients, tt.recipients)
		}
		if st.Malformed != 0 {
			t.Errorf("smtp-source %v: sink malformed = %d, want 0", tt.args, st.Malformed)
		}
		if st.ProtocolErrors != 0 {
			t.Errorf("smtp-source %v: sink protocol errors = %d, want 0", tt.args, st.ProtocolErrors)
		}
	}
}

// dialog sends each command line to a fresh sink connection and returns
// the reply lines.
func dialog(t *testing.T, addr, input string) []string {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, input); err != nil {
		t.Fatalf("write: %v", err)
	}
	out, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	return strings.Split(strings.TrimSuffix(string(out), "\r\n"), "\r\n")
}

// replyCodes returns the codes of the final lines of each reply.
func replyCodes(lines []string) []string {
	var codes []string
	for _, l := range lines {
		if len(l) >= 4 && l[3] == '-' {
			continue
		}
		codes = append(codes, l[:min(3, len(l))])
	}
	return codes
}

func TestSinkDialog(t *testing.T) {
	tests := []struct {
		name  string
		input string
		want  string // reply codes after the greeting
	}{
		{"rcpt before mail", "EHLO x\r\nRCPT TO:<a@b>\r\nQUIT\r\n", "250 503 221"},
		{"data without rcpt", "HELO x\r\nMAIL FROM:<a@b>\r\nDATA\r\nQUIT\r\n", "250 250 554 221"},
		{"nested mail", "EHLO x\r\nMAIL FROM:<a@b>\r\nMAIL FROM:<a@b>\r\nQUIT\r\n", "250 250 503 221"},
		{"unknown verb", "EHLO x\r\nVRFY bob\r\nQUIT\r\n", "250 502 221"},
		{"size too big", "EHLO x\r\nMAIL FROM:<a@b> SIZE=999999999999\r\nQUIT\r\n", "250 552 221"},
		{"bad size", "EHLO x\r\nMAIL FROM:<a@b> SIZE=x\r\nQUIT\r\n", "250 501 221"},
		{"mail syntax", "EHLO x\r\nMAIL <a@b>\r\nQUIT\r\n", "250 501 221"},
		{"rset clears", "EHLO x\r\nMAIL FROM:<a@b>\r\nRSET\r\nRCPT TO:<c@d>\r\nQUIT\r\n", "250 250 250 503 221"},
		{"full message", "EHLO x\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\nDate: x\r\nFrom: a\r\n\r\nhi\r\n.\r\nQUIT\r\n", "250 250 250 354 250 221"},
	}
	for _, tt := range tests {
		sink := startTestSink(t, SinkConfig{})
		lines := dialog(t, sink.Addr(), tt.input)
		codes := replyCodes(lines)
		if len(codes) == 0 || codes[0] != "220" {
			t.Fatalf("%s: greeting = %q, want 220", tt.name, lines)
		}
		if got := strings.Join(codes[1:], " "); got != tt.want {
			t.Errorf("%s: dialog(%q) codes = %q, want %q", tt.name, tt.input, got, tt.want)
		}
	}
}

func TestSinkBodyAccounting(t *testing.T) {
	tests := []struct {
		name      string
		body      string // as sent, dot-stuffed, without the final "."
		wantBytes uint64
		malformed bool
	}{
		{"plain", "Date: x\r\nFrom: a\r\n\r\nhello\r\n", 27, false},
		{"dot stuffed", "Date: x\r\nFrom: a\r\n\r\n..dot\r\n", 26, false},
		{"no date", "From: a\r\n\r\nhello\r\n", 18, true},
		{"bare lf", "Date: x\r\nFrom: a\r\n\r\nhello\n", 26, true},
		{"header without colon", "Date: x\r\nFrom: a\r\nbogus\r\n\r\n", 27, true},
		{"folded header", "Date: x\r\nFrom: a,\r\n b\r\n\r\n", 25, false},
		{"long line", "Date: x\r\nFrom: a\r\n\r\n" + strings.Repeat("x", 1200) + "\r\n", 1222, true},
	}
	for _, tt := range tests {
		sink := startTestSink(t, SinkConfig{})
		input := "EHLO x\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n" + tt.body + ".\r\nQUIT\r\n"
		codes := replyCodes(dialog(t, sink.Addr(), input))
		if got := strings.Join(codes, " "); got != "220 250 250 250 354 250 221" {
			t.Fatalf("%s: codes = %q", tt.name, got)
		}
		st := sink.Stats()
		if st.Bytes != tt.wantBytes {
			t.Errorf("%s: bytes = %d, want %d", tt.name, st.Bytes, tt.wantBytes)
		}
		if got := st.Malformed == 1; got != tt.malformed {
			t.Errorf("%s: malformed = %v, want %v", tt.name, got, tt.malformed)
		}
	}
}

func TestSinkCountOnlySkipsCheck(t *testing.T) {
	sink := startTestSink(t, SinkConfig{CountOnly: true})
	dialog(t, sink.Addr(), "EHLO x\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\nno headers\n.\r\nQUIT\r\n")
	if st := sink.Stats(); st.Messages != 1 || st.Malformed != 0 {
		t.Errorf("count-only stats = %+v, want 1 message, 0 malformed", st)
	}
}

func TestSinkMaxMessagesClosesDone(t *testing.T) {
	sink := startTestSink(t, SinkConfig{MaxMessages: 10})
	if _, err := Send(context.Background(), SendConfig{Target: sink.Addr(), Messages: 10, Size: SizeSpec{Min: 1024, Max: 1024}}); err != nil {
		t.Fatalf("Send: %v", err)
	}
	select {
	case <-sink.Done():
	case <-time.After(5 * time.Second):
		t.Fatalf("Done not closed after 10 messages (stats %+v)", sink.Stats())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := sink.WaitMessages(ctx, 10); err != nil {
		t.Errorf("WaitMessages(10) = %v, want nil", err)
	}
}

func TestSinkGreetingDelay(t *testing.T) {
	const delay = 50 * time.Millisecond
	sink := startTestSink(t, SinkConfig{GreetingDelay: delay})
	report, err := Send(context.Background(), SendConfig{Target: sink.Addr(), Messages: 5, Rate: 1000, Size: SizeSpec{Min: 1024, Max: 1024}})
	if err != nil {
		t.Fatalf("Send: %v", err)
	}
	// In an open loop the first message waits for the connection, so its
	// latency includes the greeting delay.
	if report.Latency.Max < delay {
		t.Errorf("max latency = %s, want at least the greeting delay %s", report.Latency.Max, delay)
	}
}

func TestSendRejectsUnboundedAndRemote(t *testing.T) {
	tests := []struct {
		name string
		cfg  SendConfig
		want string
	}{
		{"unbounded", SendConfig{Target: "127.0.0.1:1"}, "unbounded run"},
		{"remote", SendConfig{Target: "192.0.2.1:25", Messages: 1}, "not a loopback address"},
		{"remote name", SendConfig{Target: "mail.example.com:25", Messages: 1}, "not a loopback address"},
		{"negative", SendConfig{Target: "127.0.0.1:1", Messages: -1}, "must not be negative"},
	}
	for _, tt := range tests {
		_, err := Send(context.Background(), tt.cfg)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: Send(%+v) error = %v, want containing %q", tt.name, tt.cfg, err, tt.want)
		}
	}
}

func TestSendNoServer(t *testing.T) {
	// Reserve a port, then close it so nothing listens there.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()

	report, err := Send(context.Background(), SendConfig{Target: addr, Messages: 3, Duration: 500 * time.Millisecond})
	if err == nil {
		t.Fatalf("Send to closed port %s: error = nil, want connection failure", addr)
	}
	if report == nil {
		t.Fatalf("Send to closed port returned no report")
	}
	if report.Sent != 0 {
		t.Errorf("report.Sent = %d, want 0", report.Sent)
	}
	if report.Errors["connect io"] == 0 {
		t.Errorf("report.Errors = %v, want connect io errors counted", report.Errors)
	}
}

func TestCheckTarget(t *testing.T) {
	tests := []struct {
		addr        string
		allowRemote bool
		ok          bool
	}{
		{"127.0.0.1:2525", false, true},
		{"127.3.4.5:25", false, true},
		{"[::1]:2525", false, true},
		{"localhost:2525", false, true},
		{"10.0.0.1:25", false, false},
		{"[2001:db8::1]:25", false, false},
		{"mx.example.com:25", false, false},
		{"0.0.0.0:25", false, false},
		{"127.0.0.1", false, false},
		{"10.0.0.1:25", true, true},
	}
	for _, tt := range tests {
		err := CheckTarget(tt.addr, tt.allowRemote)
		if (err == nil) != tt.ok {
			t.Errorf("CheckTarget(%q, %v) = %v, want ok %v", tt.addr, tt.allowRemote, err, tt.ok)
		}
	}
}

func TestParseSize(t *testing.T) {
	tests := []struct {
		in      string
		want    SizeSpec
		wantErr bool
	}{
		{"10240", SizeSpec{10240, 10240}, false},
		{"10k", SizeSpec{10240, 10240}, false},
		{"1K", SizeSpec{1024, 1024}, false},
		{"2k-100k", SizeSpec{2048, 102400}, false},
		{"1m", SizeSpec{1 << 20, 1 << 20}, false},
		{" 4k ", SizeSpec{4096, 4096}, false},
		{"100", SizeSpec{}, true},
		{"100k-2k", SizeSpec{}, true},
		{"abc", SizeSpec{}, true},
		{"-5", SizeSpec{}, true},
		{"1000m", SizeSpec{}, true},
		{"", SizeSpec{}, true},
	}
	for _, tt := range tests {
		got, err := ParseSize(tt.in)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("ParseSize(%q) = %v, %v, want %v, error %v", tt.in, got, err, tt.want, tt.wantErr)
		}
	}
}

func TestSizeDrawWithinRange(t *testing.T) {
	spec := SizeSpec{Min: 2048, Max: 102400}
	r := rand.New(rand.NewPCG(1, 2))
	var below10k int
	for range 10000 {
		n := spec.Draw(r)
		if n < spec.Min || n > spec.Max {
			t.Fatalf("Draw() = %d, want within [%d, %d]", n, spec.Min, spec.Max)
		}
		if n < 10240 {
			below10k++
		}
	}
	// Log-uniform: P(size < 10k) = ln(5)/ln(50) ≈ 0.41, where a uniform
	// draw would give 0.08.
	if below10k < 3500 || below10k > 4700 {
		t.Errorf("draws below 10 KiB = %d of 10000, want about 4100 (log-uniform)", below10k)
	}
}

func TestAppendMessage(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for _, size := range []int{512, 513, 600, 1024, 10240, 10241, 100 << 10} {
		for _, nrcpt := range []int{1, 3, 20} {
			rcpts := make([]string, nrcpt)
			for i := range rcpts {
				rcpts[i] = "user@example.com"
			}
			msg := AppendMessage(nil, MessageParams{
				From: "a@example.org", To: rcpts, MessageID: "1.x@loadgen",
				Date: time.Unix(1700000000, 0), Size: size,
			}, r)
			if len(msg) != size && !(nrcpt == 20 && size < 1024) {
				t.Errorf("AppendMessage(size=%d, rcpts=%d) length = %d, want %d", size, nrcpt, len(msg), size)
			}
			var check structureCheck
			sc := bufio.NewScanner(bytes.NewReader(msg))
			sc.Split(scanCRLFLines)
			for sc.Scan() {
				line := sc.Bytes()
				if len(line) > 0 && line[0] == '.' {
					t.Errorf("AppendMessage(size=%d): line %q starts with a dot", size, line)
				}
				check.feed(line, true, bytes.HasSuffix(line, []byte("\n")), len(line))
			}
			if !check.valid() || !check.inBody {
				t.Errorf("AppendMessage(size=%d, rcpts=%d) fails the structure check: %+v", size, nrcpt, check)
			}
			if !bytes.HasSuffix(msg, []byte("\r\n")) {
				t.Errorf("AppendMessage(size=%d) does not end in CRLF", size)
			}
		}
	}
}

// scanCRLFLines splits after each '\n' and keeps the line ending.
func scanCRLFLines(data []byte, atEOF bool) (int, []byte, error) {
	if i := bytes.IndexByte(data, '\n'); i >= 0 {
		return i + 1, data[:i+1], nil
	}
	if atEOF && len(data) > 0 {
		return len(data), data, nil
	}
	return 0, nil, nil
}

func TestReportBenchmarkLine(t *testing.T) {
	r := &Report{Connections: 50, Size: "10240", Mode: "closed", Sent: 1000, Elapsed: time.Second, MsgsPerSec: 1000}
	want := "BenchmarkSend/conns=50/size=10240\t1000\t1000000 ns/op\t1000.0 msgs/s\t0 p50-us\t0 p99-us"
	if got := r.BenchmarkLine(); got != want {
		t.Errorf("BenchmarkLine() = %q, want %q", got, want)
	}
}

func TestHoldIdleOpensConnections(t *testing.T) {
	sink := startTestSink(t, SinkConfig{})
	for _, ehlo := range []bool{false, true} {
		before := sink.Stats().Connections
		var ready int
		open, err := HoldIdle(context.Background(), IdleConfig{
			Target:      sink.Addr(),
			Connections: 250,
			Hold:        10 * time.Millisecond,
			EHLO:        ehlo,
			Ready:       func(n int) { ready = n },
		})
		if err != nil {
			t.Fatalf("HoldIdle(ehlo=%v): %v", ehlo, err)
		}
		if open != 250 || ready != 250 {
			t.Errorf("HoldIdle(ehlo=%v) open = %d, ready = %d, want 250", ehlo, open, ready)
		}
		if got := sink.Stats().Connections - before; got != 250 {
			t.Errorf("HoldIdle(ehlo=%v): sink saw %d connections, want 250", ehlo, got)
		}
	}
}

func TestReportBenchmarkName(t *testing.T) {
	tests := []struct {
		report Report
		want   string
	}{
		{Report{Connections: 50, Size: "10240", Mode: "closed"}, "BenchmarkSend/conns=50/size=10240"},
		{Report{Label: "relay", Connections: 50, Size: "10240", Mode: "closed"}, "BenchmarkSend/relay/conns=50/size=10240"},
		{Report{Connections: 200, Size: "1024", Mode: "open", Rate: 500, Pipelining: true}, "BenchmarkSend/conns=200/size=1024/rate=500/pipelining=true"},
		{Report{Connections: 1, Size: "2048-102400", Mode: "closed", Recipients: 3}, "BenchmarkSend/conns=1/size=2048-102400/rcpts=3"},
	}
	for _, tt := range tests {
		if got := tt.report.BenchmarkName(); got != tt.want {
			t.Errorf("BenchmarkName(%+v) = %q, want %q", tt.report, got, tt.want)
		}
	}
}

func TestOpenLoopCountsUnstarted(t *testing.T) {
	// One connection, 50 ms per message, 200 messages/s offered for
	// 300 ms: about 60 messages come due but at most 7 can finish, so
	// most are still queued when the run ends.
	sink := startTestSink(t, SinkConfig{Latency: 50 * time.Millisecond})
	report, err := Send(context.Background(), SendConfig{
		Target:      sink.Addr(),
		Connections: 1,
		Duration:    300 * time.Millisecond,
		Rate:        200,
		Size:        SizeSpec{Min: 1024, Max: 1024},
	})
	if err != nil {
		t.Fatalf("Send: %v", err)
	}
	if report.Unstarted == 0 {
		t.Errorf("report.Unstarted = 0, want > 0 (sent %d)", report.Sent)
	}
	if report.Sent > 7 {
		t.Errorf("report.Sent = %d, want at most 7 at 50 ms per message in 300 ms", report.Sent)
	}
}

func TestSendAllRecipientsRejected(t *testing.T) {
	for _, pipelining := range []bool{false, true} {
		sink := startTestSink(t, SinkConfig{PermFail: 1})
		report, err := Send(context.Background(), SendConfig{
			Target:     sink.Addr(),
			Messages:   10,
			Recipients: 3,
			Pipelining: pipelining,
			Size:       SizeSpec{Min: 1024, Max: 1024},
		})
		if err != nil {
			t.Fatalf("Send(pipelining=%v): %v", pipelining, err)
		}
		if report.Failed != 10 {
			t.Errorf("pipelining=%v: report.Failed = %d, want 10", pipelining, report.Failed)
		}
		if got := report.Errors["RCPT 550"]; got != 30 {
			t.Errorf("pipelining=%v: RCPT 550 errors = %d, want 30 (one per recipient)", pipelining, got)
		}
		// Without PIPELINING the client skips DATA; with it, the server
		// rejects DATA after the rejected recipients.
		wantKey := "all-rcpts-rejected"
		if pipelining {
			wantKey = "DATA 554"
		}
		if got := report.Errors[wantKey]; got != 10 {
			t.Errorf("pipelining=%v: %s errors = %d, want 10 (errors %v)", pipelining, wantKey, got, report.Errors)
		}
		if st := sink.Stats(); st.Connections != 1 {
			t.Errorf("pipelining=%v: sink connections = %d, want 1 (rejections keep the connection)", pipelining, st.Connections)
		}
	}
}

func TestSendGivesUpOnDeadTarget(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()

	// No duration: only the connect timeout bounds the run, for open and
	// closed loops alike.
	for _, rate := range []float64{0, 100} {
		report, err := Send(context.Background(), SendConfig{
			Target:      addr,
			Connections: 3,
			Messages:    1000,
			Rate:        rate,
			Timeout:     300 * time.Millisecond,
		})
		if err == nil {
			t.Fatalf("Send(rate=%v) to closed port: error = nil, want connection failure", rate)
		}
		if report.Sent != 0 {
			t.Errorf("Send(rate=%v): report.Sent = %d, want 0", rate, report.Sent)
		}
		if report.Failed != 3 {
			t.Errorf("Send(rate=%v): report.Failed = %d, want 3 (one per worker that gave up)", rate, report.Failed)
		}
	}
}
