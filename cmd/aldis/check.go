package main

import (
	"flag"
	"fmt"
	"io"

	"github.com/aldis-im/aldis/core/config"
	"github.com/aldis-im/aldis/core/label"
	"github.com/aldis-im/aldis/mapping"
	"github.com/aldis-im/aldis/mapping/mailmap"
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
	var set *label.Set
	if err == nil {
		set, err = loadPolicy(cfg, *path)
	}
	if err == nil {
		err = checkMaps(cfg, *path, set)
	}
	if err == nil {
		var mm *mailmap.Map
		if mm, err = loadMailMap(cfg, *path); err == nil && mm != nil && set != nil {
			err = mm.CheckLabels(set)
		}
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

// checkMaps validates the IRC bridge maps, and their label expressions when labels are on.
func checkMaps(cfg config.Config, cfgPath string, set *label.Set) error {
	paths := cfg.MapPaths(cfgPath)
	if len(paths) == 0 {
		return nil
	}
	m, err := mapping.Load(paths...)
	if err != nil {
		return err
	}
	if set != nil {
		return m.CheckLabels(set)
	}
	return nil
}
