package config

import "path/filepath"

// IRC is the [irc] table: the IRC gateway.
type IRC struct {
	// Maps are the bridge map files (IRC networks and linked channels, see package mapping);
	// none leaves the gateway off. Relative paths are relative to the configuration file.
	Maps []string `toml:"maps"`
}

func (c Config) ircProblems(ck *checker) {
	for i, m := range c.IRC.Maps {
		if m == "" {
			ck.add("must not be empty", indexKey("irc.maps", i))
		}
	}
}

// MapPaths resolves irc.maps relative to the configuration file's directory, as PolicyPath does
// for the policy file.
func (c Config) MapPaths(configFile string) []string {
	out := make([]string, len(c.IRC.Maps))
	for i, m := range c.IRC.Maps {
		if filepath.IsAbs(m) || configFile == "" {
			out[i] = m
			continue
		}
		out[i] = filepath.Join(filepath.Dir(configFile), m)
	}
	return out
}
