package engine

import (
	"bufio"
	"net"
	"testing"
	"time"
)

func TestLatency(t *testing.T) {
	for _, mode := range []string{"goroutine", "epoll", "io_uring"} {
		b := newMemBackend()
		b.delay = 0
		b.keep = false
		cfg := testConfig(mode)
		srv := startServer(t, cfg, b)
		nc, _ := net.Dial("tcp", srv.Addrs()[0].String())
		c := &client{t: t, conn: nc, r: bufio.NewReader(nc)}
		c.expect(220)
		c.cmd("EHLO x", 250)
		var d [4]time.Duration
		for range 1000 {
			s := time.Now()
			c.cmd("MAIL FROM:<a@b.c>", 250)
			d[0] += time.Since(s)
			s = time.Now()
			c.cmd("RCPT TO:<a@b.c>", 250)
			d[1] += time.Since(s)
			s = time.Now()
			c.cmd("DATA", 354)
			d[2] += time.Since(s)
			s = time.Now()
			c.send("x\r\n.\r\n")
			c.expect(250)
			d[3] += time.Since(s)
		}
		t.Logf("%s: mail %v rcpt %v data %v end %v", mode, d[0]/1000, d[1]/1000, d[2]/1000, d[3]/1000)
		nc.Close()
	}
}
