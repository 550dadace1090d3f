package main

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"smta/loadgen"
)

func runApp(args ...string) error {
	return newApp().Run(append([]string{"smta-loadgen"}, args...))
}

func readJSON(t *testing.T, path string) map[string]any {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return m
}

func TestSendRejectsBadFlags(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"send", "--target", "192.0.2.1:25", "-n", "1"}, "not a loopback address"},
		{[]string{"send", "--starttls", "-n", "1"}, "--starttls is not supported yet"},
		{[]string{"send", "--bdat", "-n", "1"}, "--bdat is not supported yet"},
		{[]string{"send", "--auth", "user:pass", "-n", "1"}, "--auth is not supported yet"},
		{[]string{"send", "--size", "2k-1k", "-n", "1"}, "invalid size"},
		{[]string{"send", "-n", "0"}, "unbounded run"},
		{[]string{"sink", "--listen", "192.0.2.1:2526", "--duration", "1s"}, "not a loopback address"},
		{[]string{"sink", "--listen", "127.0.0.1:0", "--tempfail", "0.8", "--permfail", "0.8", "--duration", "1s"}, "invalid failure shares"},
	}
	for _, tt := range tests {
		err := runApp(tt.args...)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("smta-loadgen %v = %v, want error containing %q", tt.args, err, tt.want)
		}
	}
}

// quietSink starts a library sink without log output. Tests pair one
// command with the library, never two commands: urfave/cli apps share the
// global help flag, so two of them running at once in one process race.
func quietSink(t *testing.T) *loadgen.Sink {
	t.Helper()
	sink, err := loadgen.StartSink(loadgen.SinkConfig{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sink.Close() })
	return sink
}

func TestSinkCommandCountsAndExits(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()

	sinkJSON := filepath.Join(t.TempDir(), "sink.json")
	sinkDone := make(chan error, 1)
	go func() {
		sinkDone <- runApp("sink", "--listen", addr, "--messages", "20", "--duration", "30s", "--json", sinkJSON)
	}()

	// The sink command starts asynchronously; Send retries connections
	// every 100 ms, bounded by the duration.
	report, err := loadgen.Send(context.Background(), loadgen.SendConfig{
		Target:      addr,
		Connections: 4,
		Messages:    20,
		Recipients:  2,
		Duration:    20 * time.Second,
		Size:        loadgen.SizeSpec{Min: 2048, Max: 8192},
	})
	if err != nil {
		t.Fatalf("Send: %v", err)
	}
	select {
	case err := <-sinkDone:
		if err != nil {
			t.Fatalf("sink: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("sink command did not exit after 20 messages")
	}

	sink := readJSON(t, sinkJSON)
	if sink["messages"] != 20.0 {
		t.Errorf("sink JSON messages = %v, want 20", sink["messages"])
	}
	if sink["recipients"] != 40.0 {
		t.Errorf("sink JSON recipients = %v, want 40", sink["recipients"])
	}
	if sink["bytes"] != float64(report.Bytes) {
		t.Errorf("sink JSON bytes = %v, sender bytes = %d, want equal", sink["bytes"], report.Bytes)
	}
	if last, ok := sink["last_message_unix"].(float64); !ok || last <= 0 {
		t.Errorf("sink JSON last_message_unix = %v, want a Unix time", sink["last_message_unix"])
	}
}

func TestSendCommandWritesJSON(t *testing.T) {
	sink := quietSink(t)
	sendJSON := filepath.Join(t.TempDir(), "send.json")
	if err := runApp("send", "--target", sink.Addr(), "-c", "4", "-n", "20", "--size", "2k-8k", "--pipelining", "--recipients", "2", "--label", "accept", "-q", "--json", sendJSON); err != nil {
		t.Fatalf("send: %v", err)
	}

	send := readJSON(t, sendJSON)
	if send["sent"] != 20.0 {
		t.Errorf("send JSON sent = %v, want 20", send["sent"])
	}
	if send["label"] != "accept" {
		t.Errorf("send JSON label = %v, want accept", send["label"])
	}
	st := sink.Stats()
	if st.Messages != 20 {
		t.Errorf("sink messages = %d, want 20", st.Messages)
	}
	if send["bytes"] != float64(st.Bytes) {
		t.Errorf("send JSON bytes = %v, sink bytes = %d, want equal", send["bytes"], st.Bytes)
	}
}

func TestIdleCommand(t *testing.T) {
	sink := quietSink(t)
	if err := runApp("idle", "--target", sink.Addr(), "-c", "50", "--hold", "10ms", "--ehlo"); err != nil {
		t.Fatalf("idle: %v", err)
	}
	if got := sink.Stats().Connections; got != 50 {
		t.Errorf("sink connections = %d, want 50", got)
	}
}
