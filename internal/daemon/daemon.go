// Package daemon wires smta's packages into the running relay: the inbound
// engine feeds the spool through a Backend, every committed message goes to
// the queue scheduler, and every event becomes an accounting record.
//
// It is the only package that imports both the inbound side (engine) and
// the outbound side (spool, queue, delivery); the layering test keeps it so.
package daemon

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync/atomic"
	"time"

	"smta/acct"
	"smta/config"
	"smta/delivery"
	"smta/engine"
	"smta/queue"
	"smta/smtp"
	"smta/spool"
)

// Daemon is one running relay.
type Daemon struct {
	// Immutable after Start.
	logger *slog.Logger
	spool  *spool.Spool
	acct   *acct.Logger
	access *acct.AccessLog
	sched  *queue.Scheduler
	srv    *engine.Server

	// cfg is the current configuration snapshot, swapped whole on reload.
	cfg atomic.Pointer[config.Config]

	stats counters
}

type counters struct {
	received  atomic.Uint64
	spoolFail atomic.Uint64
	relayDeny atomic.Uint64
	// failuresDropped counts failure replies that did not reach the access
	// log because a session sent more than it keeps between two reports.
	failuresDropped atomic.Uint64
}

// Start opens the spool and accounting log, recovers queued messages, starts
// the scheduler and begins accepting SMTP.
func Start(cfg *config.Config, logger *slog.Logger) (*Daemon, error) {
	if logger == nil {
		logger = slog.Default()
	}
	d := &Daemon{logger: logger}
	d.cfg.Store(cfg)

	for _, dir := range []string{cfg.SpoolDir, cfg.LogDir} {
		if err := os.MkdirAll(dir, 0o750); err != nil {
			return nil, fmt.Errorf("daemon: creating %s: %w", dir, err)
		}
	}

	sp, err := spool.Open(cfg.SpoolDir, spool.Options{SegmentSize: cfg.SegmentSize, HostID: cfg.HostID})
	if err != nil {
		return nil, fmt.Errorf("daemon: opening spool %s: %w", cfg.SpoolDir, err)
	}
	d.spool = sp

	al, err := acct.Open(acctOptions(cfg, logger))
	if err != nil {
		sp.Close()
		return nil, fmt.Errorf("daemon: opening accounting log in %s: %w", cfg.LogDir, err)
	}
	d.acct = al

	access, err := acct.OpenAccessLog(cfg.LogDir, acct.AccessOptions{Logger: logger.With("component", "access")})
	if err != nil {
		al.Close()
		sp.Close()
		return nil, fmt.Errorf("daemon: opening access log in %s: %w", cfg.LogDir, err)
	}
	d.access = access

	resolverAddr := ""
	if len(cfg.DNSServers) > 0 {
		resolverAddr = cfg.DNSServers[0].String()
	}
	d.sched = queue.New(queue.Options{
		HostName: cfg.HostName,
		Spool:    sp,
		Acct:     al,
		Resolver: delivery.NewResolver(resolverAddr),
		Policy:   d.policy,
		Logger:   logger.With("component", "queue"),
	})

	// Recovery re-queues everything not yet final before new mail arrives.
	recovered := 0
	if err := sp.Recover(func(m *spool.Message) {
		recovered++
		d.sched.Enqueue(m)
	}); err != nil {
		d.closeStores()
		return nil, fmt.Errorf("daemon: recovering spool: %w", err)
	}
	logger.Info("spool recovered", "messages", recovered, "dir", cfg.SpoolDir)
	d.sched.Start()

	ecfg, err := engineConfig(cfg, logger)
	if err != nil {
		d.sched.Stop(context.Background())
		d.closeStores()
		return nil, err
	}
	srv, err := engine.New(ecfg, &backend{d: d})
	if err == nil {
		err = srv.Start()
	}
	if err != nil {
		d.sched.Stop(context.Background())
		d.closeStores()
		return nil, err
	}
	d.srv = srv
	logger.Info("smta started", "host_name", cfg.HostName, "inbound_mode", srv.Mode(), "listeners", addrStrings(srv.Addrs()))
	return d, nil
}

func addrStrings(addrs []net.Addr) []string {
	out := make([]string, len(addrs))
	for i, a := range addrs {
		out[i] = a.String()
	}
	return out
}

// Addrs returns the bound SMTP listener addresses.
func (d *Daemon) Addrs() []net.Addr { return d.srv.Addrs() }

// Mode returns the inbound mode in use.
func (d *Daemon) Mode() string { return d.srv.Mode() }

// Config returns the current configuration snapshot.
func (d *Daemon) Config() *config.Config { return d.cfg.Load() }

// Reload swaps in a new configuration snapshot and reopens the accounting
// files. Listener, spool and inbound-mode changes need a restart; they are
// reported and otherwise ignored.
func (d *Daemon) Reload(cfg *config.Config) {
	old := d.cfg.Load()
	if fmt.Sprint(old.Listeners) != fmt.Sprint(cfg.Listeners) || old.SpoolDir != cfg.SpoolDir || old.InboundMode != cfg.InboundMode {
		d.logger.Warn("listener, spool-dir and inbound-mode changes take effect at the next restart")
	}
	d.cfg.Store(cfg)
	if err := d.acct.Reopen(); err != nil {
		d.logger.Error("reopening accounting files failed", "error", err)
	}
	if err := d.access.Reopen(); err != nil {
		d.logger.Error("reopening the access log failed", "error", err)
	}
	d.logger.Info("configuration reloaded", "file", cfg.File)
}

// Shutdown stops accepting mail, lets sessions finish their transaction
// until ctx is done, stops delivery and closes the spool.
func (d *Daemon) Shutdown(ctx context.Context) error {
	var errs []error
	if err := d.srv.Shutdown(ctx); err != nil {
		errs = append(errs, err)
	}
	if err := d.sched.Stop(ctx); err != nil {
		errs = append(errs, err)
	}
	if err := d.closeStores(); err != nil {
		errs = append(errs, err)
	}
	in := d.srv.Stats()
	d.logger.Info("smta stopped",
		"messages_received", d.stats.received.Load(),
		"spool_failures", d.stats.spoolFail.Load(),
		"relay_denied", d.stats.relayDeny.Load(),
		"connections_accepted", in.Accepted,
		"connections_rejected", in.Rejected,
		"connection_timeouts", in.Timeouts,
		"tls_handoffs", in.TLSHandoffs,
		"bytes_in", in.BytesIn,
		"bytes_out", in.BytesOut,
		"shard_syscalls", in.Syscalls,
		"shard_wakeups", in.Wakeups,
		"ring_file_writes", in.FileWrites)
	return errors.Join(errs...)
}

func (d *Daemon) closeStores() error {
	return errors.Join(d.spool.Close(), d.acct.Close(), d.access.Close())
}

// policy maps a destination domain to its queue policy in the current
// configuration snapshot.
func (d *Daemon) policy(domain string) queue.Policy {
	dom := d.cfg.Load().Domain(domain)
	return queue.Policy{
		Route:         routeAddr(dom.Route),
		RouteMX:       !dom.Route.IsZero() && !dom.Route.Literal,
		RetryAfter:    dom.RetryAfter,
		BounceAfter:   dom.BounceAfter,
		MaxSMTPOut:    dom.MaxSMTPOut,
		MaxMsgPerConn: dom.MaxMsgPerConnection,
		UseTLS:        dom.UseStartTLS,
		DSN:           dom.DSN,
	}
}

func routeAddr(r config.Route) string {
	if r.IsZero() {
		return ""
	}
	return net.JoinHostPort(r.Host, fmt.Sprint(r.Port))
}

func engineConfig(cfg *config.Config, logger *slog.Logger) (engine.Config, error) {
	ec := engine.Config{
		Mode:        cfg.InboundMode,
		Workers:     cfg.InboundWorkers,
		CPUAffinity: cfg.InboundCPUAffinity,
		Session: smtp.Config{
			Hostname:       cfg.HostName,
			MaxMessageSize: cfg.MaxMessageSize,
			MaxRecipients:  cfg.MaxRecipients,
			MaxErrors:      cfg.MaxErrors,
		},
		Timeouts: engine.Timeouts{
			Command: cfg.SMTPCommandTimeout,
			Data:    cfg.SMTPDataTimeout,
		},
		MaxConnections:      cfg.MaxConnections,
		MaxConnectionsPerIP: cfg.MaxConnectionsPerIP,
		Logger:              logger.With("component", "engine"),
	}
	for _, l := range cfg.Listeners {
		ec.Listeners = append(ec.Listeners, engine.Listener{Addr: l.Addr.String(), TLS: l.TLS})
	}
	if cfg.TLSCertificate != "" {
		cert, err := tls.LoadX509KeyPair(cfg.TLSCertificate, cfg.TLSKey)
		if err != nil {
			return ec, fmt.Errorf("daemon: loading tls-certificate %s and tls-key %s: %w", cfg.TLSCertificate, cfg.TLSKey, err)
		}
		ec.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	return ec, nil
}

func acctOptions(cfg *config.Config, logger *slog.Logger) acct.Options {
	o := acct.Options{
		Dir:          cfg.LogDir,
		SyncInterval: cfg.AcctSync,
		Logger:       logger.With("component", "acct"),
	}
	for _, f := range cfg.AcctFiles {
		o.Files = append(o.Files, acct.FileOptions{
			Path: f.Path, Records: f.Records, MaxSize: f.MaxSize,
			RotateInterval: f.RotateInterval, Keep: f.Keep, Compress: f.Compress,
		})
	}
	for _, w := range cfg.Webhooks {
		headers := map[string]string{}
		for k := range w.Header {
			headers[k] = w.Header.Get(k)
		}
		o.Webhooks = append(o.Webhooks, acct.WebhookOptions{
			URL: w.URL, Records: w.Records, BatchSize: w.BatchSize,
			MaxDelay: w.MaxDelay, Timeout: w.Timeout, Headers: headers,
		})
	}
	return o
}

// timeRFC3339 formats t as accounting records do.
func timeRFC3339(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000Z07:00") }
