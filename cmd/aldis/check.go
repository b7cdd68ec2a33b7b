package main

import (
	"flag"
	"fmt"
	"io"

	"github.com/aldis-im/aldis/core/config"
)

func cmdCheck(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("check", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "", "configuration file to validate")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *path == "" {
		fmt.Fprintln(stderr, "aldis check: --config FILE is required")
		return 2
	}
	cfg, err := config.Load(*path)
	if err == nil {
		_, err = loadPolicy(cfg, *path)
	}
	if err != nil {
		printConfigErr(stderr, err)
		return 1
	}
	fmt.Fprintf(stdout, "%s: ok\n", *path)
	return 0
}

// loadConfig reads the file, or returns the embedded defaults when path is empty.
func loadConfig(path string) (config.Config, error) {
	if path == "" {
		c := config.Default()
		return c, c.Validate()
	}
	return config.Load(path)
}
