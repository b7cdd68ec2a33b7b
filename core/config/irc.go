package config

import (
	"path/filepath"
	"time"
)

// IRC is the [irc] table: the IRC gateway.
type IRC struct {
	// Maps are the bridge map files (IRC networks and linked channels, see package mapping);
	// none leaves the gateway off. Relative paths are relative to the configuration file.
	Maps []string `toml:"maps"`
	// Domain is the gateway's own XMPP domain, where IRC users' JIDs live; empty: irc.<server domain>.
	Domain string `toml:"domain"`
	// Linger keeps an XMPP user's IRC connection open after they left their last linked room.
	Linger time.Duration `toml:"linger"`
	// RejoinInterval is how often the gateway tries again to join a linked room it is not in.
	RejoinInterval time.Duration `toml:"rejoin_interval"`
	// OutageGrace is how long IRC users stay in the rooms after the gateway lost its connection
	// to their network (a netsplit usually heals); then they leave with status 333.
	OutageGrace time.Duration `toml:"outage_grace"`
}

// Gateway is the [gateway] table: the XMPP server `aldis gateway irc` connects to as an
// XEP-0114 component serving irc.domain (which must then be set). `aldis serve` ignores it.
type Gateway struct {
	// Server is the server's component port, host:port.
	Server string `toml:"server"`
	// Secret is the component's shared secret, as configured on the server.
	Secret string `toml:"secret"`
}

// GatewayProblems reports what `aldis gateway irc` needs and c lacks.
func (c Config) GatewayProblems() error {
	ck := &checker{}
	if c.Gateway.Server == "" {
		ck.add("must be set (the server's component port, host:port)", "gateway.server")
	}
	if c.Gateway.Secret == "" {
		ck.add("must be set", "gateway.secret")
	}
	if c.IRC.Domain == "" {
		ck.add("must be set: the component's domain on the server", "irc.domain")
	}
	if len(c.IRC.Maps) == 0 {
		ck.add("must name at least one bridge map", "irc.maps")
	}
	if len(ck.probs) == 0 {
		return nil
	}
	errs := make(Errors, len(ck.probs))
	for i, p := range ck.probs {
		errs[i] = &Error{Key: p.keys[0], Msg: p.msg}
	}
	return errs
}

// IRCDomain returns the IRC gateway's domain.
func (c Config) IRCDomain() string {
	if c.IRC.Domain != "" {
		return c.IRC.Domain
	}
	return "irc." + c.Server.Domain
}

func (c Config) ircProblems(ck *checker) {
	for i, m := range c.IRC.Maps {
		if m == "" {
			ck.add("must not be empty", indexKey("irc.maps", i))
		}
	}
	if c.IRC.Linger < 0 {
		ck.add("must not be negative", "irc.linger")
	}
	if c.IRC.RejoinInterval < time.Second {
		ck.add("must be at least 1s", "irc.rejoin_interval")
	}
	if c.IRC.OutageGrace < time.Second {
		ck.add("must be at least 1s", "irc.outage_grace")
	}
	if d := c.IRCDomain(); len(c.IRC.Maps) > 0 && (d == c.Server.Domain || d == c.MUCDomain()) {
		ck.add("must differ from the server's and the chat service's domains", "irc.domain")
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
