// Command smta is the relay daemon. Subcommands: run, check-config, version.
package main

import (
	"fmt"
	"os"
	"strings"

	"github.com/urfave/cli/v2"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	app := &cli.App{
		Name:  "smta",
		Usage: "high-performance SMTP relay",
		Commands: []*cli.Command{
			runCommand(),
			checkConfigCommand(),
			versionCommand(),
		},
	}
	if err := app.Run(os.Args); err != nil {
		// A configuration error lists one problem per line. Prefix each
		// line, so that every one reads the same in a log or a terminal.
		for line := range strings.SplitSeq(err.Error(), "\n") {
			fmt.Fprintln(os.Stderr, "smta:", line)
		}
		os.Exit(1)
	}
}

var configFlag = &cli.StringFlag{
	Name:    "config",
	Aliases: []string{"c"},
	Usage:   "configuration `FILE`; without it the embedded default is used (loopback only, ./var)",
}
