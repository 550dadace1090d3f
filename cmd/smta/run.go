package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"smta/config"
	"smta/internal/daemon"
)

func runCommand() *cli.Command {
	return &cli.Command{
		Name:  "run",
		Usage: "run the relay in the foreground until SIGTERM or SIGINT",
		Flags: []cli.Flag{
			configFlag,
			&cli.StringFlag{Name: "log-level", Value: "info", Usage: "`LEVEL` of the daemon log on stderr: debug, info, warn or error"},
			&cli.StringFlag{Name: "pprof", Usage: "serve Go's pprof profiles on `ADDR` (for example 127.0.0.1:6060); keep it on loopback"},
			&cli.DurationFlag{Name: "shutdown-timeout", Value: 30 * time.Second, Usage: "`DURATION` sessions may take to finish their transaction after SIGTERM or SIGINT"},
		},
		Action: run,
	}
}

func run(c *cli.Context) error {
	var level slog.Level
	if err := level.UnmarshalText([]byte(c.String("log-level"))); err != nil {
		return fmt.Errorf("invalid --log-level %q: use debug, info, warn or error", c.String("log-level"))
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	slog.SetDefault(logger)

	// Catch signals before starting, so that a SIGTERM or SIGINT that
	// arrives during recovery stops the daemon as soon as it is up instead
	// of being lost.
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)

	cfg, err := loadConfig(c)
	if err != nil {
		return err
	}
	if addr := c.String("pprof"); addr != "" {
		if err := servePprof(addr, logger); err != nil {
			return err
		}
	}
	d, err := daemon.Start(cfg, logger)
	if err != nil {
		return err
	}

	for sig := range sigs {
		if sig == syscall.SIGHUP {
			reload(c, d, logger)
			continue
		}
		logger.Info("shutting down", "signal", sig.String())
		break
	}
	signal.Stop(sigs)

	ctx, cancel := context.WithTimeout(context.Background(), c.Duration("shutdown-timeout"))
	defer cancel()
	return d.Shutdown(ctx)
}

// reload re-reads the configuration file. A file with errors is rejected
// whole and the running configuration stays.
func reload(c *cli.Context, d *daemon.Daemon, logger *slog.Logger) {
	path := c.String("config")
	if path == "" {
		d.Reload(config.Default())
		return
	}
	cfg, err := config.Load(path)
	if err != nil {
		logger.Error("reload rejected, keeping the running configuration", "file", path, "error", err)
		return
	}
	d.Reload(cfg)
}
