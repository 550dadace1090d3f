package daemon

import (
	"strings"
	"time"

	"smta/acct"
	"smta/engine"
	"smta/smtp"
	"smta/spool"
)

// Replies the backend adds to the smtp package's own. Their texts are bland
// on purpose: a client learns what to do, not how smta is built.
var (
	replyRelayDenied  = smtp.Reply{Code: 550, Enhanced: "5.7.1", Text: "Relaying denied"}
	replyNoDomain     = smtp.Reply{Code: 550, Enhanced: "5.1.3", Text: "Recipient address needs a domain"}
	replySpoolFailure = smtp.Reply{Code: 451, Enhanced: "4.3.0", Text: "Temporary failure storing the message, try again later"}
)

// backend is the engine.Backend of the daemon: relay policy from <source>
// blocks, bodies into the spool, committed messages into the scheduler.
type backend struct {
	d *Daemon
}

var _ engine.Backend = (*backend)(nil)

func (b *backend) Connect(c *engine.ConnInfo) smtp.Reply { return smtp.Reply{} }

func (b *backend) Helo(c *engine.ConnInfo, name string) smtp.Reply { return smtp.Reply{} }

func (b *backend) Failure(c *engine.ConnInfo, failures []smtp.Failure, dropped int) {
	ip := c.Remote.Addr().Unmap()
	for _, f := range failures {
		b.d.access.Failure(acct.AccessEntry{
			SessionID: c.SessionID,
			ClientIP:  ip,
			HELO:      c.Helo,
			Command:   f.Command,
			Reply:     engine.FormatReplyLine(f.Reply),
		})
		// A rejected envelope command or message is an accounting event,
		// because operators reconcile what applications sent against what
		// smta accepted.
		switch f.Command {
		case "MAIL", "RCPT", "DATA":
			b.d.acct.Log(&acct.Record{
				Type:      acct.TypeRejected,
				Orig:      f.From,
				Rcpt:      f.Rcpt,
				SrcMta:    srcMta(c),
				SessionID: c.SessionID,
				Reply:     f.Command + ": " + engine.FormatReplyLine(f.Reply),
			})
		}
	}
	if dropped > 0 {
		b.d.stats.failuresDropped.Add(uint64(dropped))
	}
}

func (b *backend) Disconnect(c *engine.ConnInfo, messages int) {
	b.d.access.Session(acct.AccessEntry{
		SessionID: c.SessionID,
		ClientIP:  c.Remote.Addr().Unmap(),
		HELO:      c.Helo,
		Messages:  messages,
		Duration:  time.Since(c.Start),
	})
}

func (b *backend) Mail(c *engine.ConnInfo, tx *smtp.Transaction) smtp.Reply { return smtp.Reply{} }

func (b *backend) Rcpt(c *engine.ConnInfo, tx *smtp.Transaction, rcpt smtp.Recipient) smtp.Reply {
	// smta relays only: every recipient goes to another host, so a client
	// that may not relay may not send at all.
	src := b.d.cfg.Load().Source(c.Remote.Addr().Unmap())
	if !src.AlwaysAllowRelaying {
		b.d.stats.relayDeny.Add(1)
		return replyRelayDenied
	}
	if strings.LastIndexByte(rcpt.Addr, '@') < 0 {
		return replyNoDomain
	}
	return smtp.Reply{}
}

func (b *backend) Data(c *engine.ConnInfo, tx *smtp.Transaction) (engine.MessageWriter, smtp.Reply) {
	env := &spool.Envelope{
		From:       tx.From,
		Received:   time.Now(),
		ClientAddr: c.Remote.String(),
		Helo:       c.Helo,
		EnvID:      tx.MailParams.EnvID,
		Ret:        tx.MailParams.Ret,
		Body8Bit:   tx.MailParams.Body == "8BITMIME",
		SMTPUTF8:   tx.MailParams.SMTPUTF8,
	}
	env.Rcpts = make([]spool.Recipient, len(tx.Rcpts))
	for i, r := range tx.Rcpts {
		env.Rcpts[i] = spool.Recipient{Addr: r.Addr, ORcpt: r.Params.ORcpt, Notify: r.Params.Notify}
	}
	w := b.d.spool.NewWriter()
	if c.Files != nil {
		// io_uring mode: the last record rides on the shard's ring.
		w.SetAsync(c.Files)
	}
	return &inboundMessage{d: b.d, w: w, env: env, sessionID: c.SessionID, srcMta: srcMta(c)}, smtp.Reply{}
}

func srcMta(c *engine.ConnInfo) string {
	ip := c.Remote.Addr().Unmap().String()
	if c.Helo == "" {
		return "(" + ip + ")"
	}
	return c.Helo + " (" + ip + ")"
}

// inboundMessage is one message being received. It is used by one driver
// thread until Commit; the completion runs on the spool's committer.
type inboundMessage struct {
	d         *Daemon
	w         *spool.Writer
	env       *spool.Envelope
	sessionID string
	srcMta    string
	err       error
}

func (m *inboundMessage) Write(p []byte) error {
	if m.err != nil {
		return m.err
	}
	_, m.err = m.w.Write(p)
	return m.err
}

func (m *inboundMessage) Abort() { m.w.Abort() }

func (m *inboundMessage) Commit(done func(id string, failure smtp.Reply)) {
	d := m.d
	if m.err != nil {
		d.stats.spoolFail.Add(1)
		d.logger.Error("spool write failed", "session", m.sessionID, "error", m.err)
		m.w.Abort()
		done("", replySpoolFailure)
		return
	}
	m.w.Commit(m.env, func(msg *spool.Message, err error) {
		if err != nil {
			d.stats.spoolFail.Add(1)
			d.logger.Error("spool commit failed", "session", m.sessionID, "error", err)
			done("", replySpoolFailure)
			return
		}
		d.stats.received.Add(1)
		m.logReceived(msg)
		d.sched.Enqueue(msg)
		done(msg.Env.ID, smtp.Reply{})
	})
}

// logReceived writes one reception record per recipient, as PowerMTA does.
func (m *inboundMessage) logReceived(msg *spool.Message) {
	env := &msg.Env
	queued := timeRFC3339(env.Received)
	for _, r := range env.Rcpts {
		m.d.acct.Log(&acct.Record{
			Type:       acct.TypeReceived,
			TimeQueued: queued,
			Orig:       env.From,
			Rcpt:       r.Addr,
			ORcpt:      r.ORcpt,
			SrcMta:     m.srcMta,
			DlvSize:    env.Size,
			EnvID:      env.EnvID,
			JobID:      env.JobID,
			MsgID:      env.ID,
			SessionID:  m.sessionID,
		})
	}
}
