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

func TestParsePeeringControls(t *testing.T) {
	src := `
[s2s]
default_peer = "deny"

[[s2s.peer]]
domain = "partner.example"
auth = "certificate"
require_tls = true
stanzas = ["message", "presence"]
deny_namespaces = ["http://jabber.org/protocol/si", "urn:xmpp:jingle:1"]
rate = 50
burst = 100

[[s2s.peer]]
domain = "*.example.mil"
allow = false
`
	c, err := Parse("aldis.toml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	if c.S2S.DefaultPeer != "deny" || len(c.S2S.Peers) != 2 {
		t.Fatalf("s2s = %+v", c.S2S)
	}
	p, w := c.S2S.Peers[0], c.S2S.Peers[1]
	if !p.Allowed() || p.Auth != "certificate" || p.RequireTLS == nil || !*p.RequireTLS ||
		len(p.Stanzas) != 2 || len(p.DenyNamespaces) != 2 || p.Rate != 50 || p.Burst != 100 {
		t.Errorf("peer[0] = %+v", p)
	}
	if w.Allowed() || w.Domain != "*.example.mil" || w.RequireTLS != nil || w.Stanzas != nil {
		t.Errorf("peer[1] = %+v", w)
	}
}

func TestPeeringControlErrors(t *testing.T) {
	src := `
[s2s]
default_peer = "maybe"

[[s2s.peer]]
domain = "a.example"
auth = "password"
stanzas = ["message", "chat", "message"]

[[s2s.peer]]
domain = "*.Example"
allow = "no"
burst = 5

[[s2s.peer]]
domain = "b.example"
auth = "certificate"
require_tls = false
stanzas = []
deny_namespaces = ["", "a b"]
rate = -1

[[s2s.peer]]
domain = "localhost"

[[s2s.peer]]
domain = "a.example"
`
	_, err := Parse("aldis.toml", []byte(src))
	assertErrors(t, err,
		`aldis.toml:3: s2s.default_peer: "maybe" is not one of allow, deny`,
		`aldis.toml:7: s2s.peer[0].auth: "password" is not one of any, certificate, dialback`,
		`aldis.toml:8: s2s.peer[0].stanzas[1]: "chat" is not one of message, presence, iq`,
		`aldis.toml:8: s2s.peer[0].stanzas[2]: "message" is listed twice`,
		`aldis.toml:11: s2s.peer[1].domain: "Example" must be lowercase`,
		`aldis.toml:12: s2s.peer[1].allow: must be true or false, not a string`,
		`aldis.toml:13: s2s.peer[1].burst: has no effect without a rate: set rate (stanzas per second) too`,
		`aldis.toml:18: s2s.peer[2].require_tls: auth = "certificate" needs TLS: remove require_tls = false`,
		`aldis.toml:19: s2s.peer[2].stanzas: must name at least one of "message", "presence", "iq"; to refuse the peer, set allow = false`,
		`aldis.toml:20: s2s.peer[2].deny_namespaces[0]: "" is not a namespace name (a URI such as "urn:xmpp:jingle:1")`,
		`aldis.toml:20: s2s.peer[2].deny_namespaces[1]: "a b" is not a namespace name (a URI such as "urn:xmpp:jingle:1")`,
		`aldis.toml:21: s2s.peer[2].rate: must be between 0 and 1000000`,
		`aldis.toml:24: s2s.peer[3].domain: "localhost" is served by this server, not a peer`,
		`aldis.toml:27: s2s.peer[4].domain: "a.example" has another [[s2s.peer]] already`,
	)
}
