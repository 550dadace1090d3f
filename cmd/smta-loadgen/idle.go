package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"smta/loadgen"
)

func idleCommand() *cli.Command {
	return &cli.Command{
		Name:  "idle",
		Usage: "open many SMTP connections and hold them idle, to measure memory per connection",
		Description: "Opens --connections connections, reads each greeting (and the EHLO reply with\n" +
			"--ehlo), prints \"open N\" on stdout when every attempt finished, holds them\n" +
			"for --hold, then closes them. The caller measures the server's memory while\n" +
			"they are open.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "target", Value: "127.0.0.1:2525", Usage: "server `host:port`; must be loopback unless --allow-remote"},
			&cli.BoolFlag{Name: "allow-remote", Usage: "allow a non-loopback target (only servers you operate)"},
			&cli.IntFlag{Name: "connections", Aliases: []string{"c"}, Value: 1000, Usage: "connections to open"},
			&cli.DurationFlag{Name: "hold", Value: 10 * time.Second, Usage: "how long to keep the connections open"},
			&cli.BoolFlag{Name: "ehlo", Usage: "send EHLO on each connection before idling"},
			&cli.DurationFlag{Name: "timeout", Value: loadgenDefaultTimeout, Usage: "timeout for each connect and greeting"},
		},
		Action: func(c *cli.Context) error {
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			start := time.Now()
			open, err := loadgen.HoldIdle(ctx, loadgen.IdleConfig{
				Target:      c.String("target"),
				AllowRemote: c.Bool("allow-remote"),
				Connections: c.Int("connections"),
				Hold:        c.Duration("hold"),
				EHLO:        c.Bool("ehlo"),
				Timeout:     c.Duration("timeout"),
				Ready: func(n int) {
					fmt.Printf("open %d\n", n)
					fmt.Fprintf(os.Stderr, "%d connections open after %s, holding for %s\n", n, time.Since(start).Round(time.Millisecond), c.Duration("hold"))
				},
			})
			fmt.Fprintf(os.Stderr, "closed %d connections\n", open)
			return err
		},
	}
}
