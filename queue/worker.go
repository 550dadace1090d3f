package queue

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"smta/delivery"
)

// hop is the connected next hop of an attempt, for accounting and DSNs.
type hop struct {
	name   string     // MX target or route host
	remote netip.Addr // zero when no connection was made
	local  netip.Addr

	tlsProtocol, tlsCipher string // "" without STARTTLS
}

// mta formats the hop as accounting's dsnMta:
// "mx.example.com (192.0.2.1)".
func (h hop) mta() string {
	switch {
	case h.name == "":
		return ""
	case !h.remote.IsValid():
		return h.name
	}
	return h.name + " (" + h.remote.String() + ")"
}

// hopError is a failure to reach any next hop. Its reply stands for the
// recipients' result in accounting records and DSNs.
type hopError struct {
	reply delivery.Result
	err   error
}

func (e *hopError) Error() string { return "queue: " + e.reply.String() + ": " + e.err.Error() }
func (e *hopError) Unwrap() error { return e.err }

// Synthetic replies for failures that happen before any SMTP reply, with
// RFC 3463 enhanced codes. The null MX reply is the one RFC 7505 section 4.2
// recommends.
var (
	replyNullMX     = delivery.Result{Code: 556, Enhanced: "5.1.10", Text: "recipient domain publishes a null MX"}
	replyNoDomain   = delivery.Result{Code: 550, Enhanced: "5.1.2", Text: "recipient domain has no mail host"}
	replyNoAddress  = delivery.Result{Code: 550, Enhanced: "5.1.3", Text: "recipient address has no domain"}
	replyDNSFailure = delivery.Result{Code: 451, Enhanced: "4.4.3", Text: "MX lookup failed"}
	replyNoAnswer   = delivery.Result{Code: 451, Enhanced: "4.4.1", Text: "no next hop accepted a connection"}
	replyBroken     = delivery.Result{Code: 451, Enhanced: "4.4.2", Text: "connection lost during the transaction"}
	replyLocal      = delivery.Result{Code: 451, Enhanced: "4.3.0", Text: "local error reading the message"}
)

// runWorker is one delivery worker of q: it takes a ready item, connects to
// the next hop, and sends ready items over that connection until the queue
// has none, the per-connection limit is reached, or the queue stops.
func (s *Scheduler) runWorker(q *queue) {
	defer s.workers.Done()

	s.mu.Lock()
	q.starting--
	q.policy = s.policy(q.name)
	pol := q.policy
	first := s.takeLocked(q)
	s.mu.Unlock()
	if first == nil {
		s.exitWorker(q, false)
		return
	}

	c, h, err := s.connect(q, pol)
	if err != nil {
		s.connectFailed(q, pol, first, err)
		s.exitWorker(q, false)
		return
	}
	s.mu.Lock()
	q.conns++
	q.backoffUntil = time.Time{}
	s.mu.Unlock()

	it := first
	sent := 0
	for it != nil {
		ok, stale := s.deliver(q, pol, c, h, it, sent > 0)
		if stale {
			// The next hop closed the connection while it sat idle
			// (servers time idle clients out). A new connection gets the
			// message instead of a deferral.
			s.log.Debug("reused connection lost, reconnecting", "queue", q.name, "msg", it.msg.m.Env.ID)
			c.Close()
			var err error
			c, h, err = s.connect(q, pol)
			if err != nil {
				s.mu.Lock()
				q.conns--
				s.mu.Unlock()
				s.connectFailed(q, pol, it, err)
				s.exitWorker(q, false)
				return
			}
			sent = 0
			ok, _ = s.deliver(q, pol, c, h, it, false)
		}
		sent++
		if !ok || (pol.MaxMsgPerConn > 0 && sent >= pol.MaxMsgPerConn) {
			break
		}
		it = s.takeOrIdle(q)
	}
	// Quit closes the connection in every case, after a short wait for the
	// reply, or at once when the connection is already broken.
	if err := c.Quit(); err != nil {
		s.log.Debug("quit failed", "queue", q.name, "err", err)
	}
	s.exitWorker(q, true)
}

// connectionIdle is how long a connected worker waits for another ready
// message before it sends QUIT. Reusing a connection saves the TCP and
// SMTP handshakes, which cost more than the transaction itself for small
// messages; Postfix's connection cache keeps connections for a similar
// time (smtp_connection_cache_time_limit, 2s by default).
const connectionIdle = 2 * time.Second

// takeOrIdle pops the next ready item of q, waiting up to connectionIdle
// for one to arrive. It returns nil when none came or the queue must not
// start transactions.
func (s *Scheduler) takeOrIdle(q *queue) *item {
	var deadline *time.Timer
	s.mu.Lock()
	defer s.mu.Unlock()
	for {
		if it := s.takeLocked(q); it != nil || s.stopping || q.modeLocked(s.now()) != ModeNormal {
			return it
		}
		if deadline == nil {
			deadline = time.NewTimer(connectionIdle)
			defer deadline.Stop()
		}

		q.idle++
		s.mu.Unlock()
		timedOut := false
		select {
		case <-q.wakeup:
		case <-deadline.C:
			timedOut = true
		case <-s.stopped:
			timedOut = true
		}
		s.mu.Lock()
		q.idle--
		if timedOut {
			return s.takeLocked(q)
		}
	}
}

// takeLocked pops the next ready item of q, or returns nil when the queue
// has none or must not start transactions now.
// REQUIRES: s.mu held.
func (s *Scheduler) takeLocked(q *queue) *item {
	if s.stopping || q.modeLocked(s.now()) != ModeNormal {
		return nil
	}
	return q.ready.pop()
}

// exitWorker accounts for a worker leaving and starts replacements when
// ready items remain, for example after MaxMsgPerConn was reached.
func (s *Scheduler) exitWorker(q *queue, connected bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	q.workers--
	if connected {
		q.conns--
	}
	now := s.now()
	s.armLocked(q, now)
	s.kickLocked(q, now)
}

// connect resolves q's next hops and dials them in order until one greets.
// Errors are *hopError.
func (s *Scheduler) connect(q *queue, pol Policy) (*delivery.Conn, hop, error) {
	targets, err := s.nextHops(q.name, pol)
	if err != nil {
		return nil, hop{}, err
	}

	// NOTE: queues are keyed by domain only and dial from the kernel's
	// choice of source address. The envelope's VMTA does not select a
	// source IP or EHLO name yet.
	opts := delivery.DialOptions{HeloName: s.o.HostName, UseTLS: pol.UseTLS}
	var errs []error
	for _, t := range targets {
		c, err := delivery.Dial(s.ctx, t.addr, opts)
		if err != nil {
			s.log.Debug("connection failed", "queue", q.name, "host", t.name, "addr", t.addr, "err", err)
			errs = append(errs, err)
			continue
		}
		h := hop{name: t.name, remote: c.RemoteAddr().Addr().Unmap(), local: c.LocalAddr().Addr().Unmap()}
		h.tlsProtocol, h.tlsCipher = c.TLSState()
		return c, h, nil
	}
	return nil, hop{}, &hopError{reply: replyNoAnswer, err: errors.Join(errs...)}
}

// target is one address to dial.
type target struct {
	name string // host name, for logs and dsnMta
	addr string // "host:port"
}

// nextHops returns the addresses to try for domain, best first: the policy
// route, an address literal, or the MX hosts in preference order with
// s.mxPort (RFC 5321 5.1).
func (s *Scheduler) nextHops(domain string, pol Policy) ([]target, error) {
	port := strconv.Itoa(s.mxPort)
	if pol.Route != "" {
		host, routePort, err := net.SplitHostPort(pol.Route)
		if err != nil {
			return nil, &hopError{reply: replyNoAnswer, err: fmt.Errorf("invalid route %q: %w", pol.Route, err)}
		}
		if _, err := netip.ParseAddr(host); err == nil || !pol.RouteMX {
			return []target{{name: host, addr: pol.Route}}, nil
		}
		domain, port = host, routePort
	}
	if domain == "" {
		return nil, &hopError{reply: replyNoAddress, err: errors.New("no domain to route to")}
	}
	if lit, ok := addressLiteral(domain); ok {
		return []target{{name: domain, addr: net.JoinHostPort(lit.String(), port)}}, nil
	}

	hosts, err := s.res.LookupMX(s.ctx, domain)
	switch {
	case errors.Is(err, delivery.ErrNullMX):
		return nil, &hopError{reply: replyNullMX, err: err}
	case delivery.IsPermanent(err):
		return nil, &hopError{reply: replyNoDomain, err: err}
	case err != nil:
		return nil, &hopError{reply: replyDNSFailure, err: err}
	}
	var targets []target
	for _, h := range hosts {
		for _, a := range h.Addrs {
			targets = append(targets, target{name: strings.TrimSuffix(h.Name, "."), addr: net.JoinHostPort(a.String(), port)})
		}
	}
	if len(targets) == 0 {
		return nil, &hopError{reply: replyDNSFailure, err: fmt.Errorf("no address for any MX host of %s", domain)}
	}
	return targets, nil
}

// addressLiteral parses a domain of the form "[192.0.2.1]" or
// "[IPv6:2001:db8::1]" (RFC 5321 4.1.3).
func addressLiteral(d string) (netip.Addr, bool) {
	if len(d) < 2 || d[0] != '[' || d[len(d)-1] != ']' {
		return netip.Addr{}, false
	}
	s := d[1 : len(d)-1]
	if len(s) > 5 && strings.EqualFold(s[:5], "ipv6:") {
		a, err := netip.ParseAddr(s[5:])
		return a, err == nil && a.Is6()
	}
	a, err := netip.ParseAddr(s)
	return a, err == nil && a.Is4()
}

// connectFailed finishes first with the connection error. A permanent error
// (null MX, no such domain) fails every ready item of the queue at once. A
// transient error does the same when no other worker of the queue holds a
// connection, and then puts the queue in backoff for RetryAfter. So a dead
// next hop costs one failed connection per retry interval, not one per
// message.
func (s *Scheduler) connectFailed(q *queue, pol Policy, first *item, err error) {
	var he *hopError
	if !errors.As(err, &he) {
		he = &hopError{reply: replyNoAnswer, err: err}
	}
	if s.ctx.Err() != nil {
		s.requeue(q, first)
		return
	}

	items := []*item{first}
	s.mu.Lock()
	if he.reply.Permanent() || q.conns == 0 {
		items = append(items, q.ready.drain()...)
	}
	if !he.reply.Permanent() && q.conns == 0 {
		q.backoffUntil = s.now().Add(pol.RetryAfter)
	}
	s.mu.Unlock()

	s.log.Warn("next hop unavailable", "queue", q.name, "reply", he.reply.String(), "messages", len(items), "err", he.err)
	for _, it := range items {
		s.finish(q, pol, hop{}, it, sameResults(he.reply, len(it.rcpts)))
	}
}

// requeue returns an item to the tail of the ready list when a stop aborted
// its attempt before any transaction, so Queues still counts it.
func (s *Scheduler) requeue(q *queue, it *item) {
	s.mu.Lock()
	q.ready.push(it)
	s.mu.Unlock()
}

func sameResults(r delivery.Result, n int) []delivery.Result {
	res := make([]delivery.Result, n)
	for i := range res {
		res[i] = r
	}
	return res
}

// deliver runs one transaction for it on c and finishes the attempt. It
// returns false when the connection is no longer usable.
//
// When reused is set (c already carried a transaction) and c turns out to
// be closed by the peer before any reply, deliver records nothing and
// reports stale, so the caller can retry on a new connection.
func (s *Scheduler) deliver(q *queue, pol Policy, c *delivery.Conn, h hop, it *item, reused bool) (ok, stale bool) {
	env := &it.msg.m.Env
	body, err := s.sp.Body(it.msg.m)
	if err != nil {
		s.log.Error("reading message body failed", "queue", q.name, "msg", env.ID, "err", err)
		s.finish(q, pol, h, it, sameResults(replyLocal, len(it.rcpts)))
		return true, false // no transaction was started, so the connection is idle
	}
	if cl, ok := body.(io.Closer); ok {
		defer cl.Close()
	}

	job := &delivery.Job{
		From:     env.From,
		Rcpts:    make([]delivery.Rcpt, len(it.rcpts)),
		Body:     body,
		Body8Bit: env.Body8Bit,
		SMTPUTF8: env.SMTPUTF8,
		EnvID:    env.EnvID,
		Ret:      env.Ret,
	}
	for i, idx := range it.rcpts {
		r := &env.Rcpts[idx]
		job.Rcpts[i] = delivery.Rcpt{Addr: r.Addr, Notify: r.Notify, ORcpt: r.ORcpt}
	}
	forRcpt := ""
	if len(job.Rcpts) == 1 {
		forRcpt = job.Rcpts[0].Addr
	}
	job.Prepend = receivedHeader(env, s.o.HostName, forRcpt, s.now())
	job.Size = body.Size() // Send adds len(Prepend) for SIZE=

	results, err := c.Send(s.ctx, job)
	if err != nil && s.ctx.Err() != nil {
		// Stop aborted the transaction: the outcome is unknown, so the
		// recipients stay pending and are sent again after restart.
		return false, false
	}
	if err != nil && reused && closedBeforeReply(results, err) {
		return false, true
	}
	s.finish(q, pol, h, it, normalizeResults(results, err, len(it.rcpts)))
	return err == nil, false
}

// closedBeforeReply reports whether a Send failed because the connection
// was gone, not because the server replied 421: every result is then the
// client's own 4.4.2 stand-in.
func closedBeforeReply(results []delivery.Result, err error) bool {
	var re *delivery.ReplyError
	if errors.As(err, &re) {
		return false
	}
	for _, r := range results {
		if r.Code != 0 && r.Enhanced != "4.4.2" {
			return false
		}
	}
	return true
}

// normalizeResults returns exactly n results. When the transaction failed
// (err != nil), a 2xx or missing result is not trusted, because the
// connection may have dropped before the end-of-data reply, and becomes a
// transient failure: a duplicate is acceptable, a lost message is not.
func normalizeResults(results []delivery.Result, err error, n int) []delivery.Result {
	out := make([]delivery.Result, n)
	for i := range out {
		var r delivery.Result
		if i < len(results) {
			r = results[i]
		}
		if r.Code == 0 || (err != nil && r.OK()) {
			r = replyBroken
			if err != nil {
				r.Text += ": " + err.Error()
			}
		}
		out[i] = r
	}
	return out
}
