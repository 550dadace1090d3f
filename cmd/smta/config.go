package main

import (
	"smta/config"

	"github.com/urfave/cli/v2"
)

// loadConfig reads --config, or the embedded default when it is not given.
func loadConfig(c *cli.Context) (*config.Config, error) {
	path := c.String("config")
	if path == "" {
		return config.Default(), nil
	}
	return config.Load(path)
}
