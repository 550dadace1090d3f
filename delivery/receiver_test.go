package delivery

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// script sets the replies of a receiver.
type script struct {
	greeting   string   // "" means a 220
	noESMTP    bool     // reply 502 to EHLO, so the client falls back to HELO
	extensions []string // EHLO keywords after the greeting line
	tlsConfig  *tls.Config
	mailReply  string
	rcptReply  func(addr string) string // nil: every RCPT gets 250
	dataReply  string
	dotReply   string
	silentDot  bool // never reply to the final dot
	// holdUntilData delays the replies to MAIL and RCPT until DATA arrives.
	// A client that waits for each reply, instead of pipelining, then
	// stalls until its timeout.
	holdUntilData bool
	// discard records nothing, so benchmarks run in constant memory.
	discard bool
}

// receiver is a scripted SMTP server on loopback. It replies to each
// command from its script and records the command lines and the raw DATA bytes, so
// tests can check both the client's per-recipient results and the exact
// octets that arrived.
type receiver struct {
	script
	ln    net.Listener
	ended chan struct{} // receives once per finished session

	mu       sync.Mutex
	commands []string // every command line, in arrival order
	messages [][]byte // raw DATA content up to the terminating dot line
}

func startReceiver(t testing.TB, sc script) *receiver {
	t.Helper()
	r := &receiver{script: sc}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listening: %v", err)
	}
	r.ln = ln
	r.ended = make(chan struct{}, 100)
	var wg sync.WaitGroup
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				r.serve(nc)
				nc.Close()
				select {
				case r.ended <- struct{}{}:
				default:
				}
			})
		}
	})
	return r
}

func (r *receiver) addr() string { return r.ln.Addr().String() }

func (r *receiver) snapshot() (commands []string, messages [][]byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slicesClone(r.commands), slicesClone(r.messages)
}

func slicesClone[T any](s []T) []T { return append([]T(nil), s...) }

func (r *receiver) serve(nc net.Conn) {
	_ = nc.SetDeadline(time.Now().Add(30 * time.Second))
	br := bufio.NewReader(nc)
	write := func(s string) bool {
		_, err := nc.Write([]byte(s + "\r\n"))
		return err == nil
	}
	if !write(orDefault(r.greeting, "220 receiver.test ESMTP")) {
		return
	}
	var held []string
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return
		}
		line = strings.TrimRight(line, "\r\n")
		if !r.discard {
			r.mu.Lock()
			r.commands = append(r.commands, line)
			r.mu.Unlock()
		}

		verb, arg, _ := strings.Cut(line, " ")
		var rep string
		switch strings.ToUpper(verb) {
		case "EHLO":
			if r.noESMTP {
				rep = "502 5.5.2 command not recognized"
				break
			}
			lines := append([]string{"receiver.test"}, r.extensions...)
			if r.tlsConfig != nil {
				if _, ok := nc.(*tls.Conn); !ok {
					lines = append(lines, "STARTTLS")
				}
			}
			var b strings.Builder
			for i, l := range lines {
				sep := "-"
				if i == len(lines)-1 {
					sep = " "
				}
				b.WriteString("250" + sep + l)
				if i < len(lines)-1 {
					b.WriteString("\r\n")
				}
			}
			rep = b.String()
		case "HELO":
			rep = "250 receiver.test"
		case "STARTTLS":
			if !write("220 2.0.0 ready to start TLS") {
				return
			}
			tc := tls.Server(nc, r.tlsConfig)
			if tc.Handshake() != nil {
				return
			}
			nc = tc
			br = bufio.NewReader(nc)
			continue
		case "MAIL":
			rep = orDefault(r.mailReply, "250 2.1.0 ok")
		case "RCPT":
			rep = "250 2.1.5 ok"
			if r.rcptReply != nil {
				addr := strings.TrimSuffix(strings.TrimPrefix(strings.Fields(arg)[0], "TO:<"), ">")
				rep = r.rcptReply(addr)
			}
		case "DATA":
			rep = orDefault(r.dataReply, "354 go ahead")
			for _, h := range held {
				if !write(h) {
					return
				}
			}
			held = nil
			if !write(rep) {
				return
			}
			if !strings.HasPrefix(rep, "354") {
				continue
			}
			msg, ok := readData(br)
			if !ok {
				return
			}
			if !r.discard {
				r.mu.Lock()
				r.messages = append(r.messages, msg)
				r.mu.Unlock()
			}
			if r.silentDot {
				// Hold the connection open without a reply until the
				// client gives up.
				_, _ = br.ReadByte()
				return
			}
			rep = orDefault(r.dotReply, "250 2.0.0 ok: queued")
		case "RSET", "NOOP":
			rep = "250 2.0.0 ok"
		case "QUIT":
			write("221 2.0.0 bye")
			return
		default:
			rep = "500 5.5.1 unknown command"
		}
		if r.holdUntilData && (strings.EqualFold(verb, "MAIL") || strings.EqualFold(verb, "RCPT")) {
			held = append(held, rep)
			continue
		}
		if !write(rep) {
			return
		}
		if strings.HasPrefix(rep, "421") {
			return
		}
	}
}

// readData returns the DATA content up to, not including, the ".\r\n" line,
// exactly as sent (still dot-stuffed).
func readData(br *bufio.Reader) ([]byte, bool) {
	var msg bytes.Buffer
	for {
		line, err := br.ReadBytes('\n')
		if err != nil {
			return nil, false
		}
		if string(line) == ".\r\n" {
			return msg.Bytes(), true
		}
		msg.Write(line)
	}
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
