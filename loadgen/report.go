package loadgen

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// Histogram range: 1 µs to 10 minutes at 3 significant digits. Latencies
// above the range are clamped to its maximum and still counted.
const (
	histMinMicros = 1
	histMaxMicros = int64(10 * time.Minute / time.Microsecond)
	histDigits    = 3
)

// recorder collects latencies and errors from every worker. A mutex is
// enough: one Lock per message is cheap next to the socket round trips
// each message costs.
type recorder struct {
	mu       sync.Mutex
	total    *hdrhistogram.Histogram
	interval *hdrhistogram.Histogram // since the last progress line
	errors   map[string]uint64
	sent     uint64 // messages accepted with 250 at end of data
	failed   uint64
	rcpts    uint64    // accepted recipients of sent messages
	bytes    uint64    // message octets of sent messages
	lastDone time.Time // when the last message got its final reply
}

func newRecorder() *recorder {
	return &recorder{
		total:    hdrhistogram.New(histMinMicros, histMaxMicros, histDigits),
		interval: hdrhistogram.New(histMinMicros, histMaxMicros, histDigits),
		errors:   make(map[string]uint64),
	}
}

func (r *recorder) recordSent(latency time.Duration, rcpts, size int, rejected []*replyError) {
	us := min(max(latency.Microseconds(), histMinMicros), histMaxMicros)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.lastDone = time.Now()
	r.total.RecordValue(us)
	r.interval.RecordValue(us)
	r.sent++
	r.rcpts += uint64(rcpts)
	r.bytes += uint64(size)
	for _, re := range rejected {
		r.errors[re.key()]++
	}
}

func (r *recorder) recordFailed(err error, rejected []*replyError) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.lastDone = time.Now()
	r.failed++
	r.errors[errKey(err)]++
	for _, re := range rejected {
		r.errors[re.key()]++
	}
}

// recordConnectError counts a failed connection attempt; it is not a
// message failure because the message is retried on a new connection.
func (r *recorder) recordConnectError(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.errors["connect "+errKey(err)]++
}

// Latency is a latency summary. It encodes to JSON in microseconds.
type Latency struct {
	P50  time.Duration
	P95  time.Duration
	P99  time.Duration
	Max  time.Duration
	Mean time.Duration
}

func summarize(h *hdrhistogram.Histogram) Latency {
	us := func(v int64) time.Duration { return time.Duration(v) * time.Microsecond }
	return Latency{
		P50:  us(h.ValueAtQuantile(50)),
		P95:  us(h.ValueAtQuantile(95)),
		P99:  us(h.ValueAtQuantile(99)),
		Max:  us(h.Max()),
		Mean: time.Duration(h.Mean() * float64(time.Microsecond)),
	}
}

// MarshalJSON writes durations as whole microseconds.
func (l Latency) MarshalJSON() ([]byte, error) {
	return json.Marshal(map[string]int64{
		"p50_us":  l.P50.Microseconds(),
		"p95_us":  l.P95.Microseconds(),
		"p99_us":  l.P99.Microseconds(),
		"max_us":  l.Max.Microseconds(),
		"mean_us": l.Mean.Microseconds(),
	})
}

// Report is the result of a Send run.
type Report struct {
	Label       string        `json:"label,omitempty"` // first element of the benchmark name
	Target      string        `json:"target"`
	Mode        string        `json:"mode"` // "closed" or "open"
	Rate        float64       `json:"rate,omitempty"`
	Connections int           `json:"connections"`
	Size        string        `json:"size"`
	Recipients  int           `json:"recipients_per_message"`
	Pipelining  bool          `json:"pipelining"`
	Sent        uint64        `json:"sent"`   // messages accepted with 250 at end of data
	Failed      uint64        `json:"failed"` // messages not accepted
	Accepted    uint64        `json:"accepted_recipients"`
	Bytes       uint64        `json:"bytes"`
	Elapsed     time.Duration `json:"elapsed_ns"` // start to the last final reply

	MsgsPerSec float64           `json:"msgs_per_sec"`
	Latency    Latency           `json:"latency"`
	Errors     map[string]uint64 `json:"errors"` // by command and reply code, or "io"

	// Unstarted counts open-loop messages that were due before the run
	// ended but found no free connection. Always 0 in a closed loop.
	Unstarted uint64 `json:"unstarted"`
}

// BenchmarkName is the Go benchmark name of the run, for benchstat. Runs
// against different servers get the same name so that benchstat, given
// one file per server, compares them.
func (r *Report) BenchmarkName() string {
	name := "BenchmarkSend"
	if r.Label != "" {
		name += "/" + r.Label
	}
	name += fmt.Sprintf("/conns=%d/size=%s", r.Connections, r.Size)
	if r.Mode == "open" {
		name += fmt.Sprintf("/rate=%g", r.Rate)
	}
	if r.Pipelining {
		name += "/pipelining=true"
	}
	if r.Recipients > 1 {
		name += fmt.Sprintf("/rcpts=%d", r.Recipients)
	}
	return name
}

// BenchmarkLine formats the run as one line of Go benchmark output, so
// benchstat can compare runs: name, messages, ns per message, msgs/s and
// latency percentiles.
func (r *Report) BenchmarkLine() string {
	nsPerOp := 0.0
	if r.Sent > 0 {
		nsPerOp = float64(r.Elapsed.Nanoseconds()) / float64(r.Sent)
	}
	return fmt.Sprintf("%s\t%d\t%.0f ns/op\t%.1f msgs/s\t%d p50-us\t%d p99-us",
		r.BenchmarkName(), r.Sent, nsPerOp, r.MsgsPerSec,
		r.Latency.P50.Microseconds(), r.Latency.P99.Microseconds())
}

// WriteSummary writes a human-readable summary.
func (r *Report) WriteSummary(w io.Writer) {
	fmt.Fprintf(w, "target %s, %s loop, %d connections, size %s, %d recipients per message\n",
		r.Target, r.Mode, r.Connections, r.Size, r.Recipients)
	fmt.Fprintf(w, "sent %d, failed %d, recipients %d, %d bytes in %s\n",
		r.Sent, r.Failed, r.Accepted, r.Bytes, r.Elapsed.Round(time.Millisecond))
	fmt.Fprintf(w, "throughput %.1f msgs/s, %.2f MB/s\n", r.MsgsPerSec, float64(r.Bytes)/1e6/max(r.Elapsed.Seconds(), 1e-9))
	fmt.Fprintf(w, "latency p50 %s, p95 %s, p99 %s, max %s\n", r.Latency.P50, r.Latency.P95, r.Latency.P99, r.Latency.Max)
	if len(r.Errors) > 0 {
		fmt.Fprintf(w, "errors %s\n", formatErrors(r.Errors))
	}
	if r.Unstarted > 0 {
		fmt.Fprintf(w, "unstarted %d: due in the open loop but no connection was free before the run ended\n", r.Unstarted)
	}
}

// WriteJSON writes the report to path as indented JSON.
func (r *Report) WriteJSON(path string) error {
	data, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return fmt.Errorf("loadgen: encoding report: %w", err)
	}
	if err := os.WriteFile(path, append(data, '\n'), 0o644); err != nil {
		return fmt.Errorf("loadgen: writing report: %w", err)
	}
	return nil
}

func formatErrors(errs map[string]uint64) string {
	var b strings.Builder
	for i, k := range slices.Sorted(maps.Keys(errs)) {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s=%d", k, errs[k])
	}
	return b.String()
}

// progress writes one line per call with the rate since the previous call
// and the overall rate.
func (r *recorder) progress(w io.Writer, start, last time.Time, lastSent uint64) uint64 {
	now := time.Now()
	r.mu.Lock()
	sent := r.sent
	lat := summarize(r.interval)
	r.interval.Reset()
	errs := formatErrors(r.errors)
	r.mu.Unlock()

	nowRate := float64(sent-lastSent) / max(now.Sub(last).Seconds(), 1e-9)
	overall := float64(sent) / max(now.Sub(start).Seconds(), 1e-9)
	line := fmt.Sprintf("%6.1fs sent %d  msgs/s now %.0f overall %.0f  p50 %s p95 %s p99 %s max %s",
		now.Sub(start).Seconds(), sent, nowRate, overall,
		lat.P50, lat.P95, lat.P99, lat.Max)
	if errs != "" {
		line += "  errors " + errs
	}
	fmt.Fprintln(w, line)
	return sent
}
