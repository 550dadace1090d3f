package main

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"smta/loadgen"
)

// loadgenDefaultTimeout is the default per-reply timeout of send.
const loadgenDefaultTimeout = 30 * time.Second

// sinkDefaultDuration bounds a sink started without --duration or
// --messages, so a forgotten sink stops by itself.
const sinkDefaultDuration = 30 * time.Minute

func sinkCommand() *cli.Command {
	return &cli.Command{
		Name:  "sink",
		Usage: "receive SMTP mail, count it and print a summary",
		Description: "Accepts every address and never stores bodies. Exits after --duration,\n" +
			"after --messages accepted messages, or on SIGINT/SIGTERM. Without either\n" +
			"bound it stops after 30 minutes.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "listen", Value: "127.0.0.1:2526", Usage: "listen `host:port`; must be loopback unless --allow-remote"},
			&cli.BoolFlag{Name: "allow-remote", Usage: "allow listening on a non-loopback address"},
			&cli.Float64Flag{Name: "tempfail", Usage: "share (0 to 1) of RCPT commands to reject with 451"},
			&cli.Float64Flag{Name: "permfail", Usage: "share (0 to 1) of RCPT commands to reject with 550"},
			&cli.DurationFlag{Name: "latency", Usage: "delay before each reply to end of data"},
			&cli.DurationFlag{Name: "greeting-delay", Usage: "delay before the 220 greeting"},
			&cli.BoolFlag{Name: "count-only", Usage: "skip the RFC 5322 structure check"},
			&cli.DurationFlag{Name: "duration", Usage: "exit after this long"},
			&cli.Uint64Flag{Name: "messages", Usage: "exit after this many accepted messages"},
			&cli.StringFlag{Name: "json", Usage: "write the final counters as JSON to `FILE`"},
		},
		Action: runSink,
	}
}

func runSink(c *cli.Context) error {
	logger := slog.New(slog.NewTextHandler(os.Stderr, nil))
	sink, err := loadgen.StartSink(loadgen.SinkConfig{
		Listen:        c.String("listen"),
		AllowRemote:   c.Bool("allow-remote"),
		TempFail:      c.Float64("tempfail"),
		PermFail:      c.Float64("permfail"),
		Latency:       c.Duration("latency"),
		GreetingDelay: c.Duration("greeting-delay"),
		CountOnly:     c.Bool("count-only"),
		MaxMessages:   c.Uint64("messages"),
		Logger:        logger,
	})
	if err != nil {
		return err
	}

	duration := c.Duration("duration")
	if duration == 0 && c.Uint64("messages") == 0 {
		duration = sinkDefaultDuration
	}
	var timeout <-chan time.Time
	if duration > 0 {
		timer := time.NewTimer(duration)
		defer timer.Stop()
		timeout = timer.C
	}
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(signals)

	start := time.Now()
	ticker := time.NewTicker(time.Second)
	defer ticker.Stop()
	var lastMessages uint64
	reason := ""
	for reason == "" {
		select {
		case <-sink.Done():
			reason = "message count reached"
		case <-timeout:
			reason = "duration reached"
		case sig := <-signals:
			reason = "signal " + sig.String()
		case <-ticker.C:
			st := sink.Stats()
			fmt.Fprintf(os.Stderr, "%6.1fs messages %d  msgs/s now %d  recipients %d  connections %d\n",
				time.Since(start).Seconds(), st.Messages, st.Messages-lastMessages, st.Recipients, st.Connections)
			lastMessages = st.Messages
		}
	}
	closeErr := sink.Close()

	st := sink.Stats()
	elapsed := st.LastMessage.Sub(st.FirstMessage)
	rate := 0.0
	if st.Messages > 1 && elapsed > 0 {
		rate = float64(st.Messages-1) / elapsed.Seconds()
	}
	fmt.Fprintf(os.Stderr, "sink stopped (%s): %d messages, %d recipients, %d bytes, %d malformed, %d injected 4xx, %d injected 5xx, %.1f msgs/s first to last\n",
		reason, st.Messages, st.Recipients, st.Bytes, st.Malformed, st.TempFailed, st.PermFailed, rate)
	if path := c.String("json"); path != "" {
		// The Unix times in seconds spare scripts from parsing RFC 3339
		// with nanoseconds.
		out := struct {
			loadgen.SinkStats
			FirstMessageUnix float64 `json:"first_message_unix"`
			LastMessageUnix  float64 `json:"last_message_unix"`
		}{st, unixSeconds(st.FirstMessage), unixSeconds(st.LastMessage)}
		data, err := json.MarshalIndent(out, "", "  ")
		if err != nil {
			return fmt.Errorf("encoding sink counters: %w", err)
		}
		if err := os.WriteFile(path, append(data, '\n'), 0o644); err != nil {
			return fmt.Errorf("writing sink counters: %w", err)
		}
	}
	return closeErr
}

func unixSeconds(t time.Time) float64 {
	if t.IsZero() {
		return 0
	}
	return float64(t.UnixNano()) / 1e9
}
