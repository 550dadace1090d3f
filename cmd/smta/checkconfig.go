package main

import (
	"fmt"

	"github.com/urfave/cli/v2"
)

func checkConfigCommand() *cli.Command {
	return &cli.Command{
		Name:  "check-config",
		Usage: "validate a configuration file and exit; errors name file, line and directive",
		Flags: []cli.Flag{configFlag},
		Action: func(c *cli.Context) error {
			cfg, err := loadConfig(c)
			if err != nil {
				return err
			}
			name := cfg.File
			if c.String("config") == "" {
				name = "embedded default configuration"
			}
			fmt.Fprintf(c.App.Writer, "%s: ok\n", name)
			return nil
		},
	}
}
