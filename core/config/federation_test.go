package config

import (
	"testing"
)

func TestParseFederation(t *testing.T) {
	src := `
[s2s]
enabled = true
listen = ["127.0.0.2:5269"]
hosts = { "example.net" = "127.0.0.3:5269" }

[components]
listen = ["127.0.0.1:5347"]

[[components.component]]
domain = "irc.localhost"
secret = "0123456789"
`
	c, err := Parse("aldis.toml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	if got := c.S2S.Hosts["example.net"]; got != "127.0.0.3:5269" {
		t.Errorf("hosts[example.net] = %q", got)
	}
	if len(c.Components.Component) != 1 || c.Components.Component[0].Domain != "irc.localhost" {
		t.Errorf("components = %+v", c.Components.Component)
	}
}

func TestParseFederationErrors(t *testing.T) {
	src := `
[s2s]
hosts = { "example.net" = "nowhere", "Bad" = "127.0.0.1:1" }

[[components.component]]
domain = "localhost"
secret = "x"

[[components.component]]
domain = "irc.localhost"
secret = "0123456789"
port = 3
`
	_, err := Parse("aldis.toml", []byte(src))
	assertErrors(t, err,
		`aldis.toml:3: s2s.hosts.Bad: domain "Bad" must be lowercase`,
		`aldis.toml:3: s2s.hosts."example.net": invalid address "nowhere": want host:port, such as "127.0.0.1:5222" or "[::1]:5222"`,
		`aldis.toml:6: components.component[0].domain: "localhost" is already served by this server or another component`,
		`aldis.toml:7: components.component[0].secret: must be at least 8 characters: it is the component's password`,
		`aldis.toml:12: components.component[1].port: unknown key`,
	)
}
