// Command smta-loadgen sends SMTP load to a server and receives relayed
// mail, for benchmarks that compare smta with other MTAs. The logic lives
// in package loadgen; this file only wires the subcommands.
package main

import (
	"fmt"
	"os"

	"github.com/urfave/cli/v2"
)

func main() {
	if err := newApp().Run(os.Args); err != nil {
		fmt.Fprintln(os.Stderr, "smta-loadgen:", err)
		os.Exit(1)
	}
}

func newApp() *cli.App {
	return &cli.App{
		Name:  "smta-loadgen",
		Usage: "SMTP load generator and sink for benchmarks (loopback by default)",
		Commands: []*cli.Command{
			sendCommand(),
			sinkCommand(),
			idleCommand(),
		},
	}
}
