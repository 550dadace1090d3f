package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/urfave/cli/v2"

	"smta/loadgen"
)

func sendCommand() *cli.Command {
	return &cli.Command{
		Name:  "send",
		Usage: "send messages to an SMTP server and report throughput and latency",
		Description: "Closed loop by default: each connection sends its next message when the\n" +
			"previous one got its reply to end of data. With --rate, an open loop where\n" +
			"latency is measured from each message's scheduled start. The run stops after\n" +
			"--messages or --duration, whichever comes first.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "target", Value: "127.0.0.1:2525", Usage: "server `host:port`; must be loopback unless --allow-remote"},
			&cli.BoolFlag{Name: "allow-remote", Usage: "allow a non-loopback target (only servers you operate)"},
			&cli.IntFlag{Name: "connections", Aliases: []string{"c"}, Value: 10, Usage: "concurrent SMTP connections"},
			&cli.IntFlag{Name: "messages", Aliases: []string{"n"}, Value: 10000, Usage: "messages to send; 0 means bounded by --duration only"},
			&cli.DurationFlag{Name: "duration", Usage: "stop after this long (e.g. 30s); 0 means bounded by --messages only"},
			&cli.Float64Flag{Name: "rate", Usage: "open loop: start this many messages per second; 0 means closed loop"},
			&cli.StringFlag{Name: "size", Value: "10k", Usage: "message size in octets: 10240, 10k, or a log-uniform range such as 2k-100k"},
			&cli.BoolFlag{Name: "pipelining", Usage: "send MAIL, RCPT and DATA in one write when the server offers PIPELINING"},
			&cli.IntFlag{Name: "recipients", Value: 1, Usage: "recipients per message"},
			&cli.StringFlag{Name: "domains", Value: "sink.test", Usage: "comma-separated recipient domains, used in turn; the default sink.test is routed to a local sink by the embedded configuration"},
			&cli.StringFlag{Name: "from", Value: "loadgen@example.org", Usage: "envelope and header sender"},
			&cli.DurationFlag{Name: "timeout", Value: loadgenDefaultTimeout, Usage: "timeout for each connect and each reply"},
			&cli.StringFlag{Name: "json", Usage: "also write the report as JSON to `FILE`"},
			&cli.StringFlag{Name: "label", Usage: "scenario name inserted in the benchmark line (BenchmarkSend/LABEL/conns=...)"},
			&cli.BoolFlag{Name: "quiet", Aliases: []string{"q"}, Usage: "no per-second progress lines"},
			&cli.BoolFlag{Name: "starttls", Hidden: true},
			&cli.BoolFlag{Name: "bdat", Hidden: true},
			&cli.StringFlag{Name: "auth", Hidden: true},
		},
		Action: runSend,
	}
}

func runSend(c *cli.Context) error {
	for _, name := range []string{"starttls", "bdat", "auth"} {
		if c.IsSet(name) {
			return fmt.Errorf("--%s is not supported yet", name)
		}
	}
	size, err := loadgen.ParseSize(c.String("size"))
	if err != nil {
		return err
	}
	var domains []string
	for _, d := range strings.Split(c.String("domains"), ",") {
		if d = strings.TrimSpace(d); d != "" {
			domains = append(domains, d)
		}
	}
	cfg := loadgen.SendConfig{
		Target:      c.String("target"),
		AllowRemote: c.Bool("allow-remote"),
		Connections: c.Int("connections"),
		Messages:    c.Int("messages"),
		Duration:    c.Duration("duration"),
		Rate:        c.Float64("rate"),
		Pipelining:  c.Bool("pipelining"),
		Recipients:  c.Int("recipients"),
		Domains:     domains,
		From:        c.String("from"),
		Size:        size,
		Timeout:     c.Duration("timeout"),
	}
	if !c.Bool("quiet") {
		cfg.Progress = os.Stderr
	}

	// SIGINT and SIGTERM end the run early; the report still prints.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	report, sendErr := loadgen.Send(ctx, cfg)
	if report == nil {
		return sendErr
	}
	report.Label = c.String("label")
	report.WriteSummary(os.Stderr)
	if path := c.String("json"); path != "" {
		if err := report.WriteJSON(path); err != nil {
			return errors.Join(sendErr, err)
		}
	}
	fmt.Println(report.BenchmarkLine())
	return sendErr
}
