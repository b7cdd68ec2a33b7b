package config

import (
	"testing"
	"time"
)

func TestParseLinks(t *testing.T) {
	src := `
[mail]
enabled = true

[[link]]
name = "ship1"
transport = "brlink-sis"
peer_domains = ["ship1.example", "conference.ship1.example"]
mail_domains = ["ship1.example"]
sis = "127.0.0.1:5066"
sis_peer = "0.0.0.2"
ttl_chat = "2h"

[[link]]
name = "sat"
transport = "xep0361"
peer_domains = ["base.example"]
connect = "127.0.0.1:5270"
tls = true
identity = "tls-pin"
pin = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
compression = "deflate"
`
	c, err := Parse("aldis.toml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Links) != 2 {
		t.Fatalf("links = %+v", c.Links)
	}
	l := c.Links[0]
	if l.LinkSAP() != 13 || l.LinkCompression() != "link" || l.LinkRate() != 2400 || l.TTLChat != 2*time.Hour {
		t.Errorf("link defaults: sap %d compression %q rate %d ttl %v", l.LinkSAP(), l.LinkCompression(), l.LinkRate(), l.TTLChat)
	}
	if c.Links[1].LinkCompression() != "deflate" {
		t.Errorf("xep0361 compression = %q", c.Links[1].LinkCompression())
	}
	if (Link{Transport: LinkRCOP}).LinkSAP() != 6 || (Link{Transport: LinkBRLINKSIS, Broadcast: true}).LinkCompression() != "frame" {
		t.Error("transport defaults")
	}
}

func TestParseLinkErrors(t *testing.T) {
	src := `
[[link]]
name = "a b"
transport = "radio"
peer_domains = ["localhost"]

[[link]]
name = "hf"
transport = "brlink-sis"
peer_domains = ["ship.example"]
sis_peer = "16.0.0.1"
compression = "deflate"

[[link]]
name = "hf"
transport = "rcop"
peer_domains = ["ship.example"]
mail_domains = ["ship.example"]
sis = "127.0.0.1:5066"
sis_peer = "0.0.0.1"

[[link]]
name = "ip"
transport = "xep0361"
peer_domains = ["other.example"]
identity = "implicit"
ttl_chat = "1s"

[[link]]
name = "sat"
transport = "xep0361"
peer_domains = ["sat.example"]
listen = "127.0.0.1:0"
identity = "ip"
allow_ips = ["10.0.0.0/8", "192.0.2.1", "nowhere"]
`
	_, err := Parse("aldis.toml", []byte(src))
	assertErrors(t, err,
		`aldis.toml:3: link[0].name: "a b" must not contain spaces, colons or slashes`,
		`aldis.toml:4: link[0].transport: "radio" is not one of brlink-sis, brlink-tcp, xep0361, rcop`,
		`aldis.toml:5: link[0].peer_domains[0]: "localhost" is served by this server`,
		`aldis.toml:7: link[1]: must be the host:port of the local STANAG 5066 node`,
		`aldis.toml:11: link[1].sis_peer: "16.0.0.1" must be the far node's STANAG 5066 address, a.b.c.d (a up to 15)`,
		`aldis.toml:12: link[1].compression: "deflate" is not one of none, frame, link`,
		`aldis.toml:15: link[2].name: "hf" is the name of another link`,
		`aldis.toml:17: link[2].peer_domains[0]: "ship.example" is already reached over link[1]`,
		`aldis.toml:18: link[2].mail_domains: needs [mail] enabled = true: mail for the link passes through the mail relay`,
		`aldis.toml:18: link[2].mail_domains: needs a brlink transport: mail crosses only between Aldis servers`,
		`aldis.toml:22: link[3]: a TCP link needs connect, listen or both`,
		`aldis.toml:26: link[3].identity: implicit trusts anyone who can connect; set insecure = true to mean it`,
		`aldis.toml:27: link[3].ttl_chat: must be between 1m and 720h`,
		`aldis.toml:35: link[4].allow_ips[2]: "nowhere" is not an IP address or prefix`,
	)
}

// A link is the label principal of every domain behind it.
func TestLinkPrincipals(t *testing.T) {
	c := Default()
	c.Links = []Link{{Name: "hf", PeerDomains: []string{"ship.example", "conference.ship.example"}, Clearance: "SECRET", Label: "UNCLASSIFIED"}}
	got := map[string]Principal{}
	for _, p := range c.Principals() {
		got[p.Name] = p
	}
	for _, d := range []string{"peer:ship.example", "peer:conference.ship.example"} {
		if p := got[d]; p.Clearance != "SECRET" || p.Label != "UNCLASSIFIED" {
			t.Errorf("%s = %+v", d, p)
		}
	}
	if (Link{}).LinkIQTimeout() != 5*time.Minute {
		t.Error("iq_timeout default")
	}
}
