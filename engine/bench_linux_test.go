//go:build linux

package engine

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// BenchmarkEngine measures messages accepted per second over loopback:
// clients on benchClients connections send 1 KiB messages, pipelining
// MAIL, RCPT and DATA (RFC 2920) and waiting for each end-of-data reply.
// Commit completes on another goroutine, as with the spool.
func BenchmarkEngine(b *testing.B) {
	const benchClients = 16
	body := strings.Repeat("0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopq\r\n", 16) // 1 KiB
	for _, mode := range []string{"goroutine", "epoll", "io_uring"} {
		b.Run("mode="+mode, func(b *testing.B) {
			backend := newMemBackend()
			backend.delay, backend.keep = 0, false
			cfg := testConfig(mode)
			cfg.Workers = runtime.NumCPU()
			srv := startServer(b, cfg, backend)
			addr := srv.Addrs()[0].String()

			conns := make([]*client, benchClients)
			for i := range conns {
				nc, err := net.Dial("tcp", addr)
				if err != nil {
					b.Fatal(err)
				}
				defer nc.Close()
				conns[i] = &client{t: b, conn: nc, r: bufio.NewReaderSize(nc, 4096)}
				conns[i].expect(220)
				conns[i].cmd("EHLO bench.test", 250)
			}

			b.ReportAllocs()
			b.SetBytes(int64(len(body)))
			b.ResetTimer()
			start := time.Now()
			var wg sync.WaitGroup
			errs := make(chan error, benchClients)
			for i, c := range conns {
				n := b.N / benchClients
				if i < b.N%benchClients {
					n++
				}
				wg.Add(1)
				go func() {
					defer wg.Done()
					errs <- benchSend(c, n, body)
				}()
			}
			wg.Wait()
			elapsed := time.Since(start)
			b.StopTimer()
			close(errs)
			for err := range errs {
				if err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "msgs/s")
		})
	}
}

// benchSend sends n messages on c, checking every reply code.
func benchSend(c *client, n int, body string) error {
	envelope := "MAIL FROM:<bench@example.com>\r\nRCPT TO:<sink@example.com>\r\nDATA\r\n"
	payload := body + ".\r\n"
	for range n {
		if _, err := io.WriteString(c.conn, envelope); err != nil {
			return err
		}
		for _, want := range []int{250, 250, 354} {
			if code, text, err := c.reply(); err != nil || code != want {
				return fmt.Errorf("envelope reply %q (%v), want %d", text, err, want)
			}
		}
		if _, err := io.WriteString(c.conn, payload); err != nil {
			return err
		}
		if code, text, err := c.reply(); err != nil || code != 250 {
			return fmt.Errorf("end-of-data reply %q (%v), want 250", text, err)
		}
	}
	return nil
}

// BenchmarkIdleConnections reports the server's Go heap per idle
// connection: each connection has received the greeting and answered EHLO,
// then waits. The client side of the loopback connections is measured
// separately and subtracted. Kernel socket memory is not included.
func BenchmarkIdleConnections(b *testing.B) {
	const idle = 2000
	for _, mode := range []string{"goroutine", "epoll", "io_uring"} {
		b.Run("mode="+mode, func(b *testing.B) {
			for range b.N {
				b.ReportMetric(measureIdle(b, mode, idle), "bytes/conn")
			}
		})
	}
}

// measureIdle opens n idle sessions and returns the server's heap growth
// per session.
func measureIdle(tb testing.TB, mode string, n int) float64 {
	srv, err := New(testConfig(mode), newMemBackend())
	if err != nil {
		tb.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		tb.Fatal(err)
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	}()

	// One session first, so per-shard tables and pools exist before the
	// baseline.
	warm := dialSession(tb, srv)
	defer warm.Close()

	clients := make([]net.Conn, 0, n)
	readers := make([]*bufio.Reader, n)
	for i := range readers {
		readers[i] = bufio.NewReaderSize(nil, 512)
	}
	before := heapInUse()
	for i := range n {
		nc, err := net.Dial("tcp", srv.Addrs()[0].String())
		if err != nil {
			tb.Fatal(err)
		}
		clients = append(clients, nc)
		readers[i].Reset(nc)
		c := &client{t: tb, conn: nc, r: readers[i]}
		c.expect(220)
		c.cmd("EHLO idle.test", 250)
	}
	after := heapInUse()
	runtime.KeepAlive(readers)
	for _, nc := range clients {
		nc.Close()
	}
	return float64(int64(after)-int64(before))/float64(n) - clientHeap(tb, n)
}

// clientHeap returns the Go heap per connection that net.Dial holds on the
// client side, measured against a listener that never accepts, so the
// connections wait in the kernel's accept queue and the server allocates
// nothing.
func clientHeap(tb testing.TB, n int) float64 {
	fd, bound, err := listenReusePort(netip.MustParseAddrPort("127.0.0.1:0"))
	if err != nil {
		tb.Fatal(err)
	}
	defer unix.Close(fd)
	if err := unix.Listen(fd, n); err != nil {
		tb.Fatal(err)
	}
	clients := make([]net.Conn, 0, n)
	before := heapInUse()
	for range n {
		nc, err := net.Dial("tcp", bound.String())
		if err != nil {
			tb.Fatal(err)
		}
		clients = append(clients, nc)
	}
	after := heapInUse()
	for _, nc := range clients {
		nc.Close()
	}
	return float64(int64(after)-int64(before)) / float64(n)
}

func dialSession(tb testing.TB, srv *Server) net.Conn {
	nc, err := net.Dial("tcp", srv.Addrs()[0].String())
	if err != nil {
		tb.Fatal(err)
	}
	c := &client{t: tb, conn: nc, r: bufio.NewReader(nc)}
	c.expect(220)
	c.cmd("EHLO warm.test", 250)
	return nc
}

func heapInUse() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// BenchmarkEngineSMTPSource measures messages accepted per second with
// Postfix's smtp-source as the client, in its own process: 16 sessions, each
// sending messages of 1 KiB over one connection (-d).
func BenchmarkEngineSMTPSource(b *testing.B) {
	const sessions = 16
	tool, err := exec.LookPath("smtp-source")
	if err != nil {
		tool = "/usr/sbin/smtp-source"
	}
	for _, mode := range []string{"goroutine", "epoll", "io_uring"} {
		b.Run("mode="+mode, func(b *testing.B) {
			backend := newMemBackend()
			backend.delay, backend.keep = 0, false
			cfg := testConfig(mode)
			srv := startServer(b, cfg, backend)
			n := max(b.N, sessions)

			b.SetBytes(1024)
			b.ResetTimer()
			start := time.Now()
			out, err := exec.Command(tool, "-d", "-s", fmt.Sprint(sessions), "-m", fmt.Sprint(n), "-l", "1024",
				"-f", "bench@example.com", "-t", "sink@example.com", srv.Addrs()[0].String()).CombinedOutput()
			elapsed := time.Since(start)
			b.StopTimer()
			if err != nil {
				b.Fatalf("smtp-source: %v\n%s", err, out)
			}
			if got := backend.seq.Load(); got != uint64(n) {
				b.Fatalf("server committed %d messages, want %d", got, n)
			}
			b.ReportMetric(float64(n)/elapsed.Seconds(), "msgs/s")
		})
	}
}
