package queue

import (
	"bufio"
	"crypto/tls"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// receiver is a loopback SMTP server with scripted replies, standing in for
// a next hop. It speaks enough ESMTP for delivery.Conn: EHLO with
// PIPELINING, 8BITMIME, SMTPUTF8 and DSN, MAIL, RCPT, DATA, RSET, NOOP and
// QUIT, one reply per command in order (which also serves pipelined
// commands).
type receiver struct {
	t  testing.TB
	ln net.Listener

	// noGreeting makes the receiver close each connection before the
	// greeting, like a host that is down. stallData makes it store a
	// message and then never reply to the final dot, until the client
	// closes the connection.
	noGreeting atomic.Bool
	stallData  atomic.Bool
	// closeAfterData makes the receiver close the connection right after
	// its reply to the final dot, like a server that times out idle clients.
	closeAfterData atomic.Bool

	// tlsConfig, when set, makes the receiver offer STARTTLS (RFC 3207).
	tlsConfig atomic.Pointer[tls.Config]

	// mu guards the following.
	mu          sync.Mutex
	rcptReplies map[string][]string // per lowercased recipient, one reply consumed per RCPT; default 250
	msgs        []rxMessage
	conns       int // connections accepted
	active      int // connections open now
	maxActive   int // max of active
}

// rxMessage is one message the receiver accepted.
type rxMessage struct {
	conn  int      // connection number, from 0
	from  string   // reverse-path without angle brackets
	rcpts []string // accepted recipients
	data  string   // wire form without the final ".\r\n"
	tls   bool     // received after STARTTLS
}

func startReceiver(t testing.TB) *receiver {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	r := &receiver{t: t, ln: ln, rcptReplies: make(map[string][]string)}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			r.mu.Lock()
			n := r.conns
			r.conns++
			r.mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				r.serve(c, n)
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	return r
}

func (r *receiver) addr() string { return r.ln.Addr().String() }

func (r *receiver) port() int { return r.ln.Addr().(*net.TCPAddr).Port }

// script queues replies for RCPT TO of rcpt, used one per attempt before the
// default 250.
func (r *receiver) script(rcpt string, replies ...string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	k := strings.ToLower(rcpt)
	r.rcptReplies[k] = append(r.rcptReplies[k], replies...)
}

func (r *receiver) messages() []rxMessage {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]rxMessage(nil), r.msgs...)
}

func (r *receiver) connections() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.conns
}

// maxConcurrent returns the max number of connections open at once.
func (r *receiver) maxConcurrent() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.maxActive
}

func (r *receiver) rcptReply(rcpt string) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	k := strings.ToLower(rcpt)
	if q := r.rcptReplies[k]; len(q) > 0 {
		r.rcptReplies[k] = q[1:]
		return q[0]
	}
	return "250 2.1.5 ok"
}

// enter counts an open connection and returns the function that uncounts
// it, once however often it is called.
func (r *receiver) enter() (leave func()) {
	r.mu.Lock()
	r.active++
	r.maxActive = max(r.maxActive, r.active)
	r.mu.Unlock()

	left := false
	return func() {
		if left {
			return
		}
		left = true
		r.mu.Lock()
		r.active--
		r.mu.Unlock()
	}
}

// readData reads a message body up to the line with a single dot.
func readData(br *bufio.Reader) (string, bool) {
	var data strings.Builder
	for {
		l, err := br.ReadString('\n')
		if err != nil {
			return "", false
		}
		if l == ".\r\n" {
			return data.String(), true
		}
		data.WriteString(l)
	}
}

func (r *receiver) serve(c net.Conn, n int) {
	// leave also runs before the reply to QUIT, so a client that opens its
	// next connection after reading that reply never overlaps with this one.
	leave := r.enter()
	defer leave()
	defer c.Close()
	c.SetDeadline(time.Now().Add(time.Minute)) // a stuck client must not hang the test

	br := bufio.NewReader(c)
	write := func(s string) bool {
		_, err := c.Write([]byte(s + "\r\n"))
		return err == nil
	}
	if r.noGreeting.Load() {
		return
	}
	if !write("220 rx.test ESMTP") {
		return
	}

	var tx *rxMessage
	secure := false
	tlsConfig := r.tlsConfig.Load()
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return
		}
		line = strings.TrimRight(line, "\r\n")
		verb, arg, _ := strings.Cut(line, " ")
		ok := true
		switch strings.ToUpper(verb) {
		case "EHLO":
			if tlsConfig != nil && !secure {
				ok = write("250-rx.test\r\n250-STARTTLS\r\n250-PIPELINING\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n250 DSN")
				break
			}
			ok = write("250-rx.test\r\n250-PIPELINING\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n250 DSN")
		case "STARTTLS":
			if tlsConfig == nil || secure {
				ok = write("502 5.5.1 not offered")
				break
			}
			if !write("220 2.0.0 ready to start TLS") {
				return
			}
			tc := tls.Server(c, tlsConfig)
			if err := tc.Handshake(); err != nil {
				return
			}
			c, br, secure, tx = tc, bufio.NewReader(tc), true, nil
		case "HELO", "NOOP":
			ok = write("250 2.0.0 ok")
		case "RSET":
			tx = nil
			ok = write("250 2.0.0 ok")
		case "MAIL":
			tx = &rxMessage{conn: n, from: angle(arg), tls: secure}
			ok = write("250 2.1.0 ok")
		case "RCPT":
			rcpt := angle(arg)
			reply := r.rcptReply(rcpt)
			if tx != nil && strings.HasPrefix(reply, "2") {
				tx.rcpts = append(tx.rcpts, rcpt)
			}
			ok = write(reply)
		case "DATA":
			if tx == nil || len(tx.rcpts) == 0 {
				ok = write("554 5.5.1 no valid recipients")
				break
			}
			if !write("354 go ahead") {
				return
			}
			data, complete := readData(br)
			if !complete {
				return
			}
			tx.data = data
			r.mu.Lock()
			r.msgs = append(r.msgs, *tx)
			r.mu.Unlock()
			tx = nil
			if r.stallData.Load() {
				br.ReadString('\n') // returns when the client closes
				return
			}
			ok = write("250 2.0.0 queued")
			if r.closeAfterData.Load() {
				return
			}
		case "QUIT":
			leave()
			write("221 2.0.0 bye")
			return
		default:
			ok = write("502 5.5.2 command not implemented")
		}
		if !ok {
			return
		}
	}
}

// angle returns the address inside "<...>" of a MAIL or RCPT argument.
func angle(arg string) string {
	i := strings.IndexByte(arg, '<')
	j := strings.IndexByte(arg, '>')
	if i < 0 || j < i {
		return ""
	}
	return arg[i+1 : j]
}
