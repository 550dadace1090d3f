// Package e2e runs the smta binary as a separate process against real
// peers on loopback: swaks as the client, and SMTP receivers written here
// or Postfix's smtp-sink as the next hop.
package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// smtaBin is the daemon binary built once by TestMain.
var smtaBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "smta-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	smtaBin = filepath.Join(dir, "smta")
	build := exec.Command("go", "build", "-o", smtaBin, "../cmd/smta")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building smta:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// freePort returns a loopback port that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// waitFor polls cond every 50 ms until it holds or limit passes.
func waitFor(t *testing.T, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", limit, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// daemon is one smta process started by a test.
type daemon struct {
	t       *testing.T
	dir     string // working directory: spool and logs live under it
	conf    string // configuration file path
	port    int    // SMTP listener port
	cmd     *exec.Cmd
	exited  chan struct{} // closed when cmd has been reaped
	stderr  *bytes.Buffer
	stopped bool
}

// startDaemon writes conf (with %PORT% and %DIR% substituted) and starts
// smta on it, waiting until the SMTP port accepts connections.
func startDaemon(t *testing.T, dir string, port int, conf string) *daemon {
	t.Helper()
	conf = strings.ReplaceAll(conf, "%PORT%", fmt.Sprint(port))
	conf = strings.ReplaceAll(conf, "%DIR%", dir)
	path := filepath.Join(dir, "smta.conf")
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	d := &daemon{t: t, dir: dir, conf: path, port: port}
	d.start()
	t.Cleanup(d.stop)
	return d
}

func (d *daemon) start() {
	d.t.Helper()
	d.stderr = &bytes.Buffer{}
	d.cmd = exec.Command(smtaBin, "run", "--config", d.conf, "--log-level", "debug", "--shutdown-timeout", "5s")
	d.cmd.Dir = d.dir
	d.cmd.Stderr = &lockedWriter{w: d.stderr}
	if err := d.cmd.Start(); err != nil {
		d.t.Fatal(err)
	}
	d.reapInBackground()
	exited := d.exited
	deadline := time.Now().Add(20 * time.Second)
	for {
		c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", d.port))
		if err == nil {
			c.Close()
			return
		}
		select {
		case <-exited:
			d.t.Fatalf("smta exited during start:\n%s", d.stderr)
		default:
		}
		if time.Now().After(deadline) {
			d.kill()
			d.t.Fatalf("smta did not listen on port %d:\n%s", d.port, d.stderr)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// reapInBackground waits for the process in one goroutine, the only
// caller of cmd.Wait, and closes d.exited when it has ended.
func (d *daemon) reapInBackground() {
	d.stopped = false
	d.exited = make(chan struct{})
	cmd, exited := d.cmd, d.exited
	go func() {
		cmd.Wait()
		close(exited)
	}()
}

// kill sends SIGKILL to the process this test started and reaps it.
func (d *daemon) kill() {
	if d.stopped {
		return
	}
	d.cmd.Process.Signal(syscall.SIGKILL)
	<-d.exited
	d.stopped = true
}

// stop sends SIGTERM and waits for a clean exit, then kills as a last resort.
func (d *daemon) stop() {
	if d.stopped {
		return
	}
	d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.exited:
		d.stopped = true
		if code := d.cmd.ProcessState.ExitCode(); code != 0 {
			d.t.Errorf("smta exited with status %d after SIGTERM:\n%s", code, d.stderr)
		}
	case <-time.After(20 * time.Second):
		d.kill()
		d.t.Errorf("smta did not exit within 20s of SIGTERM:\n%s", d.stderr)
	}
}

// logLine returns the first line of the daemon's log that contains msg,
// failing the test if there is none.
func (d *daemon) logLine(msg string) string {
	d.t.Helper()
	for line := range strings.SplitSeq(d.stderr.String(), "\n") {
		if strings.Contains(line, msg) {
			return line
		}
	}
	d.t.Fatalf("no log line contains %q:\n%s", msg, d.stderr)
	return ""
}

// acctRecords reads every record of the accounting file.
func (d *daemon) acctRecords() []map[string]any {
	d.t.Helper()
	data, err := os.ReadFile(filepath.Join(d.dir, "log", "acct.json"))
	if err != nil {
		return nil
	}
	var out []map[string]any
	for _, line := range bytes.Split(data, []byte("\n")) {
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		var rec map[string]any
		if err := json.Unmarshal(line, &rec); err != nil {
			d.t.Fatalf("acct.json line %q: %v", line, err)
		}
		out = append(out, rec)
	}
	return out
}

// countRecords counts accounting records of type typ for rcpt.
func countRecords(recs []map[string]any, typ, rcpt string) int {
	n := 0
	for _, r := range recs {
		if r["type"] == typ && (rcpt == "" || r["rcpt"] == rcpt) {
			n++
		}
	}
	return n
}

type lockedWriter struct {
	mu sync.Mutex
	w  *bytes.Buffer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// swaks runs the swaks client against port and returns its transcript. It
// fails the test when swaks is missing: the relay tests need a client that
// was not written by us.
func swaks(t *testing.T, port int, args ...string) (string, error) {
	t.Helper()
	path, err := exec.LookPath("swaks")
	if err != nil {
		t.Fatalf("swaks is required (apt-get install swaks): %v", err)
	}
	full := append([]string{"--server", fmt.Sprintf("127.0.0.1:%d", port), "--timeout", "20"}, args...)
	out, err := exec.Command(path, full...).CombinedOutput()
	return string(out), err
}

// receivedMessage is one transaction a receiver accepted.
type receivedMessage struct {
	From  string
	Rcpts []string
	Data  []byte // wire form, without the final ".\r\n"
}

// receiver is a scripted SMTP server on loopback standing in for the next
// hop. Reply decides the reply to RCPT TO and end of data; nil accepts.
type receiver struct {
	ln    net.Listener
	Reply func(stage, arg string) string

	mu    sync.Mutex
	msgs  []receivedMessage
	conns int
	wg    sync.WaitGroup
}

func startReceiver(t *testing.T, port int) *receiver {
	t.Helper()
	ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		t.Fatal(err)
	}
	r := &receiver{ln: ln}
	r.wg.Add(1)
	go r.acceptLoop()
	t.Cleanup(r.close)
	return r
}

func (r *receiver) port() int { return r.ln.Addr().(*net.TCPAddr).Port }

func (r *receiver) close() {
	r.ln.Close()
	r.wg.Wait()
}

func (r *receiver) messages() []receivedMessage {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]receivedMessage(nil), r.msgs...)
}

func (r *receiver) connections() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.conns
}

func (r *receiver) acceptLoop() {
	defer r.wg.Done()
	for {
		c, err := r.ln.Accept()
		if err != nil {
			return
		}
		r.mu.Lock()
		r.conns++
		r.mu.Unlock()
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			r.serve(c)
		}()
	}
}

func (r *receiver) reply(stage, arg, def string) string {
	if r.Reply != nil {
		if s := r.Reply(stage, arg); s != "" {
			return s
		}
	}
	return def
}

func (r *receiver) serve(c net.Conn) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(60 * time.Second))
	br := bufio.NewReader(c)
	w := bufio.NewWriter(c)
	send := func(s string) { w.WriteString(s + "\r\n") }
	send("220 receiver.test ESMTP")
	w.Flush()
	var cur receivedMessage
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return
		}
		line = strings.TrimRight(line, "\r\n")
		verb := strings.ToUpper(line)
		switch {
		case strings.HasPrefix(verb, "EHLO"):
			send("250-receiver.test")
			send("250-PIPELINING")
			send("250-8BITMIME")
			send("250 SIZE 100000000")
		case strings.HasPrefix(verb, "HELO"):
			send("250 receiver.test")
		case strings.HasPrefix(verb, "MAIL FROM:"):
			cur = receivedMessage{From: addrArg(line[10:])}
			send("250 2.1.0 ok")
		case strings.HasPrefix(verb, "RCPT TO:"):
			rcpt := addrArg(line[8:])
			rep := r.reply("rcpt", rcpt, "250 2.1.5 ok")
			if strings.HasPrefix(rep, "2") {
				cur.Rcpts = append(cur.Rcpts, rcpt)
			}
			send(rep)
		case verb == "DATA":
			if len(cur.Rcpts) == 0 {
				send("554 5.5.1 no valid recipients")
				break
			}
			send("354 go ahead")
			w.Flush()
			var data bytes.Buffer
			for {
				l, err := br.ReadString('\n')
				if err != nil {
					return
				}
				if l == ".\r\n" {
					break
				}
				data.WriteString(l)
			}
			cur.Data = data.Bytes()
			rep := r.reply("data", string(cur.Data), "250 2.0.0 ok")
			if strings.HasPrefix(rep, "2") {
				r.mu.Lock()
				r.msgs = append(r.msgs, cur)
				r.mu.Unlock()
			}
			send(rep)
		case verb == "RSET":
			cur = receivedMessage{}
			send("250 2.0.0 ok")
		case verb == "QUIT":
			send("221 2.0.0 bye")
			w.Flush()
			return
		default:
			send("250 ok")
		}
		if br.Buffered() == 0 {
			w.Flush()
		}
	}
}

// addrArg extracts the address between angle brackets.
func addrArg(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '>'); strings.HasPrefix(s, "<") && i > 0 {
		return s[1:i]
	}
	return strings.Fields(s)[0]
}

// startDefault starts smta on its embedded default configuration, with
// d.dir as the working directory so that ./var lands there.
func (d *daemon) startDefault() {
	d.t.Helper()
	d.stderr = &bytes.Buffer{}
	d.cmd = exec.Command(smtaBin, "run", "--shutdown-timeout", "5s")
	d.cmd.Dir = d.dir
	d.cmd.Stderr = &lockedWriter{w: d.stderr}
	if err := d.cmd.Start(); err != nil {
		d.t.Fatal(err)
	}
	d.reapInBackground()
	waitFor(d.t, 20*time.Second, "smta to listen on the default port", func() bool {
		c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", d.port))
		if err == nil {
			c.Close()
		}
		return err == nil
	})
}

// startProcess starts a helper program (a peer such as smtp-sink) and
// stops it by PID when the test ends. The working directory is made
// world-writable because peers drop root privileges.
func startProcess(t *testing.T, dir, path string, args ...string) *exec.Cmd {
	t.Helper()
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(path, args...)
	cmd.Dir = dir
	var stderr bytes.Buffer
	cmd.Stderr = &lockedWriter{w: &stderr}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", path, err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	})
	return cmd
}
