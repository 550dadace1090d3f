package main

import (
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
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

func TestSendToSinkCommand(t *testing.T) {
	// Pick a free port for the sink command, which exits after 20
	// messages.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
	ln.Close()

	dir := t.TempDir()
	sinkJSON := filepath.Join(dir, "sink.json")
	sendJSON := filepath.Join(dir, "send.json")
	sinkDone := make(chan error, 1)
	go func() {
		sinkDone <- runApp("sink", "--listen", "127.0.0.1:"+port, "--messages", "20", "--duration", "30s", "--json", sinkJSON)
	}()

	// The sink command starts asynchronously; wait (bounded) for it.
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.Dial("tcp", "127.0.0.1:"+port)
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("sink command did not listen: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}

	if err := runApp("send", "--target", "127.0.0.1:"+port, "-c", "4", "-n", "20", "--size", "2k-8k", "--pipelining", "--recipients", "2", "-q", "--json", sendJSON); err != nil {
		t.Fatalf("send: %v", err)
	}
	select {
	case err := <-sinkDone:
		if err != nil {
			t.Fatalf("sink: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("sink command did not exit after 20 messages")
	}

	send := readJSON(t, sendJSON)
	if send["sent"] != 20.0 {
		t.Errorf("send JSON sent = %v, want 20", send["sent"])
	}
	sink := readJSON(t, sinkJSON)
	if sink["messages"] != 20.0 {
		t.Errorf("sink JSON messages = %v, want 20", sink["messages"])
	}
	if sink["recipients"] != 40.0 {
		t.Errorf("sink JSON recipients = %v, want 40", sink["recipients"])
	}
	if sink["bytes"] != send["bytes"] {
		t.Errorf("sink JSON bytes = %v, send JSON bytes = %v, want equal", sink["bytes"], send["bytes"])
	}
	if last, ok := sink["last_message_unix"].(float64); !ok || last <= 0 {
		t.Errorf("sink JSON last_message_unix = %v, want a Unix time", sink["last_message_unix"])
	}
}

func TestIdleCommand(t *testing.T) {
	sink, err := loadgen.StartSink(loadgen.SinkConfig{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	if err := runApp("idle", "--target", sink.Addr(), "-c", "50", "--hold", "10ms", "--ehlo"); err != nil {
		t.Fatalf("idle: %v", err)
	}
	if got := sink.Stats().Connections; got != 50 {
		t.Errorf("sink connections = %d, want 50", got)
	}
}
