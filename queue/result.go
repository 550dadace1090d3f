package queue

import (
	"net/netip"
	"strings"
	"time"

	"smta/acct"
	"smta/delivery"
	"smta/spool"
)

// timeLayout is RFC 3339 with milliseconds, the accounting time format.
const timeLayout = "2006-01-02T15:04:05.000Z07:00"

// finish applies the results of one attempt on it, where results[i] is the
// outcome for recipient it.rcpts[i]. It updates the recipient states, stores
// one DSN for the recipients that failed, stores the states in the spool,
// writes the accounting records and schedules the retry.
//
// Order matters for at-least-once delivery. The DSN is injected, and synced,
// before the final states are stored or the message is removed. So a crash
// in between repeats the attempt, and perhaps the DSN, but loses neither.
func (s *Scheduler) finish(q *queue, pol Policy, h hop, it *item, results []delivery.Result) {
	now := s.now()
	msg := it.msg
	env := &msg.m.Env

	var (
		records   []*acct.Record
		failed    []delivery.FailedRcpt
		reported  []int // positions in it.rcpts of the recipients in failed
		retry     []int
		delivered int
		lastRetry string // a reply of a deferred recipient, for the log
		lastFail  string // a reply of a bounced or expired recipient, for the log
	)
	next := now.Add(pol.RetryAfter)

	// Recipient states.
	msg.mu.Lock()
	for i, idx := range it.rcpts {
		r := &env.Rcpts[idx]
		res := results[i]
		r.Attempts++
		r.LastReply = res.String()
		rec := s.record(q, h, env, r, now)
		rec.DSNDiag = "smtp;" + r.LastReply
		rec.DSNStatus = statusText(enhancedOf(res))

		switch {
		case res.OK():
			r.State = spool.RcptDelivered
			rec.Type = acct.TypeDelivered
			rec.DSNAction = "delivered"
			delivered++
		case res.Permanent():
			r.State = spool.RcptBounced
			rec.Type = acct.TypeBounced
			rec.DSNAction = "failed"
			rec.BounceCat = delivery.BounceCategory(res)
			lastFail = r.LastReply
			if notifyFailure(r.Notify) {
				failed = append(failed, failedRcpt(r, enhancedOf(res), h))
				reported = append(reported, i)
			}
		case !env.Received.IsZero() && now.Sub(env.Received) > pol.BounceAfter:
			// RFC 3463 4.4.7: delivery time expired. A message without a
			// reception time never expires, rather than at once.
			r.State = spool.RcptExpired
			rec.Type = acct.TypeExpired
			rec.DSNAction = "failed"
			rec.DSNStatus = statusText("4.4.7")
			rec.BounceCat = delivery.CategoryMessageExpired
			lastFail = r.LastReply
			if notifyFailure(r.Notify) {
				failed = append(failed, failedRcpt(r, "4.4.7", h))
				reported = append(reported, i)
			}
		default:
			r.NextAttempt = next
			rec.Type = acct.TypeTransient
			rec.DSNAction = "delayed"
			retry = append(retry, idx)
			lastRetry = r.LastReply
		}
		records = append(records, rec)
	}
	final := allFinal(env)

	// DSN, before Remove so the original body is still readable.
	var dsn *spool.Message
	var dsnErr error
	if len(failed) > 0 && pol.DSN && env.From != "" {
		dsn, dsnErr = s.injectDSN(msg.m, failed, now)
	}

	// A DSN that could not be stored must not be lost: its recipients go
	// back to pending and retry, which bounces or expires them again.
	if dsnErr != nil {
		s.log.Error("storing DSN failed, retrying its recipients", "queue", q.name, "msg", env.ID, "err", dsnErr)
		for _, i := range reported {
			idx := it.rcpts[i]
			env.Rcpts[idx].State = spool.RcptPending
			env.Rcpts[idx].NextAttempt = next
			retry = append(retry, idx)
			records[i].Type = acct.TypeTransient
			records[i].DSNAction = "delayed"
			records[i].BounceCat = ""
		}
		failed = nil
		final = false
	}

	// Persist. Update is not synced: a crash may lose it and repeat the
	// attempt, which at-least-once delivery allows.
	if final {
		if err := s.sp.Remove(msg.m); err != nil {
			s.log.Error("removing delivered message failed", "queue", q.name, "msg", env.ID, "err", err)
		}
	} else if err := s.sp.Update(msg.m); err != nil {
		s.log.Error("storing recipient states failed", "queue", q.name, "msg", env.ID, "err", err)
	}
	msg.mu.Unlock()
	failures := len(it.rcpts) - delivered - len(retry)

	// Accounting and logs, outside the message lock because Log may wait
	// for room in the accounting ring.
	if s.o.Acct != nil {
		for _, rec := range records {
			s.o.Acct.Log(rec)
		}
	}
	if failures > 0 {
		s.log.Info("recipients failed", "queue", q.name, "msg", env.ID, "failed", failures, "reply", lastFail, "dsn", dsn != nil)
	}
	if len(retry) > 0 {
		s.log.Debug("delivery deferred", "queue", q.name, "msg", env.ID, "rcpts", len(retry), "reply", lastRetry, "next", next)
	}
	if dsn != nil {
		s.Enqueue(dsn)
	}

	// Counters and the retry.
	s.mu.Lock()
	defer s.mu.Unlock()
	q.delivered += uint64(delivered)
	q.failed += uint64(failures)
	if len(retry) > 0 {
		q.schedule(&item{msg: msg, rcpts: retry, due: next})
		s.armLocked(q, now)
	}
}

// record returns an accounting record with the fields common to every
// outcome of r.
func (s *Scheduler) record(q *queue, h hop, env *spool.Envelope, r *spool.Recipient, now time.Time) *acct.Record {
	rec := &acct.Record{
		TimeLogged:  now.UTC().Format(timeLayout),
		TimeQueued:  env.Received.UTC().Format(timeLayout),
		Orig:        env.From,
		Rcpt:        r.Addr,
		ORcpt:       r.ORcpt,
		DSNMta:      h.mta(),
		SrcMta:      srcMta(env),
		DlvSize:     env.Size,
		VMTA:        env.VMTA,
		Queue:       q.name,
		TLSProtocol: h.tlsProtocol,
		TLSCipher:   h.tlsCipher,
		NumAttempts: r.Attempts,
		JobID:       env.JobID,
		EnvID:       env.EnvID,
		MsgID:       env.ID,
	}
	if h.local.IsValid() {
		rec.DlvSourceIP = h.local.String()
	}
	if h.remote.IsValid() {
		rec.DlvDestinationIP = h.remote.String()
	}
	return rec
}

// srcMta formats the injecting client as "helo (ip)".
func srcMta(env *spool.Envelope) string {
	ip := ""
	if ap, err := netip.ParseAddrPort(env.ClientAddr); err == nil {
		ip = ap.Addr().Unmap().String()
	}
	switch {
	case env.Helo == "" && ip == "":
		return ""
	case ip == "":
		return env.Helo
	}
	return env.Helo + " (" + ip + ")"
}

// failedRcpt returns the DSN entry of a recipient that failed with status.
func failedRcpt(r *spool.Recipient, status string, h hop) delivery.FailedRcpt {
	return delivery.FailedRcpt{
		Addr:       r.Addr,
		ORcpt:      r.ORcpt,
		Action:     "failed",
		Status:     status,
		RemoteMTA:  h.name, // RFC 3464 2.3.5: a host name, without the address comment
		Diagnostic: r.LastReply,
	}
}

// notifyFailure reports whether a recipient's RFC 3461 NOTIFY parameter
// requests failure DSNs. Without NOTIFY the MTA decides (RFC 3461 4.1), and smta
// reports failures.
func notifyFailure(notify string) bool {
	if notify == "" {
		return true
	}
	for _, kw := range strings.Split(notify, ",") {
		if strings.EqualFold(strings.TrimSpace(kw), "FAILURE") {
			return true
		}
	}
	return false
}

func allFinal(env *spool.Envelope) bool {
	for i := range env.Rcpts {
		if !env.Rcpts[i].State.Final() {
			return false
		}
	}
	return true
}

// injectDSN stores a DSN for failed, addressed to the sender of m with the
// null reverse-path so that it can never bounce back (RFC 3464 section 2,
// RFC 5321 4.5.5).
// REQUIRES: the message lock of m held, and m not yet removed.
func (s *Scheduler) injectDSN(m *spool.Message, failed []delivery.FailedRcpt, now time.Time) (*spool.Message, error) {
	env := &m.Env
	p := delivery.DSNParams{
		ReportingMTA: s.o.HostName,
		From:         "MAILER-DAEMON@" + s.o.HostName,
		To:           env.From,
		EnvID:        env.EnvID,
		Arrival:      env.Received,
		Date:         now,
		Failed:       failed,
		ReturnFull:   strings.EqualFold(env.Ret, "FULL"),
	}
	body, err := s.sp.Body(m)
	if err != nil {
		s.log.Warn("DSN without the original message", "msg", env.ID, "err", err)
	} else {
		p.Original = body
	}
	wire := delivery.BuildDSN(p)
	if c, ok := p.Original.(interface{ Close() error }); ok {
		c.Close()
	}

	denv := &spool.Envelope{
		From:     "",
		Rcpts:    []spool.Recipient{{Addr: env.From}},
		Received: now,
		JobID:    env.JobID,
		VMTA:     env.VMTA,
		SMTPUTF8: env.SMTPUTF8,
	}
	return s.sp.Inject(denv, wire)
}

// enhancedOf returns the enhanced status code of res, or the class default
// ("5.0.0") when the server sent none.
func enhancedOf(res delivery.Result) string {
	if res.Enhanced != "" {
		return res.Enhanced
	}
	switch {
	case res.OK():
		return "2.0.0"
	case res.Permanent():
		return "5.0.0"
	}
	return "4.0.0"
}

// statusTexts are the RFC 3463 descriptions of the common subject.detail
// codes, for accounting's dsnStatus ("5.1.1 (bad destination mailbox
// address)").
var statusTexts = map[string]string{
	"0.0":  "other undefined status",
	"1.0":  "other address status",
	"1.1":  "bad destination mailbox address",
	"1.2":  "bad destination system address",
	"1.3":  "bad destination mailbox address syntax",
	"1.10": "recipient address has null MX",
	"2.0":  "other or undefined mailbox status",
	"2.1":  "mailbox disabled, not accepting messages",
	"2.2":  "mailbox full",
	"2.3":  "message length exceeds administrative limit",
	"3.0":  "other or undefined mail system status",
	"3.4":  "message too big for system",
	"4.0":  "other or undefined network or routing status",
	"4.1":  "no answer from host",
	"4.2":  "bad connection",
	"4.3":  "directory server failure",
	"4.4":  "unable to route",
	"4.7":  "delivery time expired",
	"5.0":  "other or undefined protocol status",
	"7.0":  "other or undefined security status",
	"7.1":  "delivery not authorized, message refused",
}

// statusText formats an enhanced status code with its description, as
// accounting's dsnStatus: "2.0.0 (success)".
func statusText(code string) string {
	if strings.HasPrefix(code, "2.") {
		return code + " (success)"
	}
	_, subject, ok := strings.Cut(code, ".")
	if !ok {
		return code
	}
	if text, ok := statusTexts[subject]; ok {
		return code + " (" + text + ")"
	}
	return code + " (" + statusTexts["0.0"] + ")"
}
