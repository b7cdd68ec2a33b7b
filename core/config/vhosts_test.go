package config

import (
	"slices"
	"testing"
)

func TestVirtualHosts(t *testing.T) {
	src := `
[server]
domain = "example.com"
domains = ["example.org", "example.net"]

[tls]
cert_file = "a.crt"
key_file = "a.key"

[[tls.host]]
domain = "example.org"
cert_file = "org.crt"
key_file = "org.key"

[muc]
domain = "chat.example.com"
`
	c, err := Parse("aldis.toml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Domains(); !slices.Equal(got, []string{"example.com", "example.org", "example.net"}) {
		t.Errorf("Domains() = %q", got)
	}
	for host, want := range map[string]string{"example.com": "chat.example.com", "example.org": "conference.example.org"} {
		if got := c.MUCDomainOf(host); got != want {
			t.Errorf("MUCDomainOf(%s) = %q, want %q", host, got, want)
		}
	}
	if len(c.TLS.Hosts) != 1 || c.TLS.Hosts[0].CertFile != "org.crt" {
		t.Errorf("tls.host = %+v", c.TLS.Hosts)
	}
}

func TestVirtualHostErrors(t *testing.T) {
	src := `
[server]
domain = "example.com"
domains = ["example.org", "Example.net", "example.com", "example.org", "conference.example.org"]

[[tls.host]]
domain = "other.example"
cert_file = "x.crt"

[[components.component]]
domain = "conference.example.org"
secret = "0123456789"
`
	_, err := Parse("aldis.toml", []byte(src))
	assertErrors(t, err,
		`aldis.toml:4: server.domains[1]: "Example.net" must be lowercase`,
		`aldis.toml:4: server.domains[2]: "example.com" is served already (server.domain or earlier in this list)`,
		`aldis.toml:4: server.domains[3]: "example.org" is served already (server.domain or earlier in this list)`,
		`aldis.toml:4: server.domains[4]: "conference.example.org" is the chat service of example.org`,
		`aldis.toml:7: tls.host[0].domain: "other.example" is not served: it must be server.domain or in server.domains`,
		`aldis.toml:8: tls.host[0].cert_file: needs both cert_file and key_file`,
		`aldis.toml:11: components.component[0].domain: "conference.example.org" is already served by this server or another component`,
	)
}
