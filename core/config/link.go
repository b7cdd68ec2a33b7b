package config

import (
	"fmt"
	"net/netip"
	"os"
	"strings"
	"time"
)

// Link transports ([[link]] transport).
const (
	// LinkBRLINKSIS: BRLINK frames over a STANAG 5066 SIS node (HF radio),
	// between two Aldis servers.
	LinkBRLINKSIS = "brlink-sis"
	// LinkBRLINKTCP: BRLINK frames over TCP (satellite or IP), between two
	// Aldis servers.
	LinkBRLINKTCP = "brlink-tcp"
	// LinkXEP0361: a zero-handshake stanza stream (XEP-0361) over TCP or
	// TLS, to any server that speaks it.
	LinkXEP0361 = "xep0361"
	// LinkRCOP: one stanza per U_PDU over a STANAG 5066 SIS node with the
	// RCOP header (XEP-0365 v0.2.1), to any server that speaks it.
	LinkRCOP = "rcop"
)

// Link is one [[link]]: a constrained link to a far-side server (a ship
// and its shore station), carried store-and-forward: every stanza and mail
// for the far side is queued durably, sent in precedence order and kept
// until the far side acknowledges it (PROTOCOLS.md §4.4). The link is a
// principal with a clearance: nothing above it is queued for it.
type Link struct {
	// Name identifies the link in logs, metrics and the queue; unique.
	Name string `toml:"name"`
	// Transport is LinkBRLINKSIS, LinkBRLINKTCP, LinkXEP0361 or LinkRCOP.
	Transport string `toml:"transport"`
	// PeerDomains are the XMPP domains on the far side (its server and
	// its MUC service): stanzas to them take the link, and only they may
	// send over it.
	PeerDomains []string `toml:"peer_domains"`
	// MailDomains are mail domains reached over the link (brlink
	// transports only): mail for them is queued for the link rather than
	// relayed by SMTP.
	MailDomains []string `toml:"mail_domains"`
	// Node is this end's name, told to the far side on link-up (BRLINK
	// HELLO); empty: server.domain.
	Node string `toml:"node"`

	// SIS is the local STANAG 5066 node, host:port (brlink-sis, rcop).
	SIS string `toml:"sis"`
	// SISPeer is the far node's STANAG 5066 address, "a.b.c.d".
	SISPeer string `toml:"sis_peer"`
	// SAP is the SIS service access point; 0: 13 for BRLINK, 6 for RCOP.
	SAP int `toml:"sap"`
	// Broadcast sends without ARQ (shore to many ships, EMCON-friendly;
	// brlink-sis), with every frame compressed on its own.
	Broadcast bool `toml:"broadcast"`
	// Confirm is the SIS delivery confirmation RCOP asks for: "node" or
	// "client" (the default, end to end).
	Confirm string `toml:"confirm"`

	// Connect is the far side's host:port, for a link this side opens
	// (brlink-tcp, xep0361); Listen is where this side accepts it. At
	// least one is needed; both: either side may open it.
	Connect string `toml:"connect"`
	Listen  string `toml:"listen"`
	// MTU is the largest frame over TCP (brlink-tcp); 0: 2048.
	MTU int `toml:"mtu"`
	// TLS protects a xep0361 link; Identity is how the far side is known:
	// "tls-pin" (Pin, the SHA-256 of its certificate's public key, hex),
	// "tls-pki" (a certificate that verifies against CAFile), "ip"
	// (AllowIPs) or "implicit" (Insecure must be set: anyone who can
	// connect is trusted).
	TLS      bool     `toml:"tls"`
	Identity string   `toml:"identity"`
	Pin      string   `toml:"pin"`
	CAFile   string   `toml:"ca_file"`
	AllowIPs []string `toml:"allow_ips"`
	Insecure bool     `toml:"insecure"`
	// Lenient drops a stanza with a wrong from or to and logs it, rather
	// than closing the stream (xep0361): reconnecting is dear on HF.
	Lenient bool `toml:"lenient"`
	// SM is the pre-agreed XEP-0198 acknowledgement on a xep0361 link.
	SM bool `toml:"sm"`

	// Rate is the link's speed in bit/s: the relay paces to it so that
	// precedence decides what goes first, and calls a slower link
	// degraded. 0: 2400 over a STANAG 5066 node, unpaced over TCP.
	Rate int `toml:"rate"`
	// Compression is "none", "frame" (each frame on its own) or "link"
	// (one DEFLATE stream per direction; ARQ only); empty: "link", or
	// "frame" on a broadcast link. On xep0361, "deflate" or "none".
	Compression string `toml:"compression"`
	// Presence is "fold" (only the latest presence per contact crosses),
	// "strip" (only room joins, leaves and subscriptions cross) or "pass".
	Presence string `toml:"presence"`
	// StripChatStates and StripXHTML drop typing notifications and
	// XHTML-IM bodies before they are queued (XEP-0365).
	StripChatStates *bool `toml:"strip_chat_states"`
	StripXHTML      *bool `toml:"strip_xhtml"`
	// Clearance and Label are label expressions (core/label): the link's
	// clearance, and the label of what arrives unlabelled over it.
	Clearance string `toml:"clearance"`
	Label     string `toml:"label"`
	// TTLs: how long an item may wait for the link before its sender is
	// told it was not delivered. 0: 1 h for chat and groupchat, 72 h for
	// mail.
	TTLChat      time.Duration `toml:"ttl_chat"`
	TTLGroupchat time.Duration `toml:"ttl_groupchat"`
	TTLMail      time.Duration `toml:"ttl_mail"`
	// IQTimeout is how long the server waits for the far side to answer
	// its own queries (capabilities, catalogs); 0: 5 minutes, since a
	// round trip over HF can take minutes.
	IQTimeout time.Duration `toml:"iq_timeout"`
	// Window is how many items may be in flight, unacknowledged; 0: 256.
	Window int `toml:"window"`
	// EMCON starts the link receive-only (emission control): traffic is
	// queued, nothing is transmitted.
	EMCON bool `toml:"emcon"`
}

// LinkSAP returns the link's SAP, with the transport's default.
func (l Link) LinkSAP() int {
	switch {
	case l.SAP != 0:
		return l.SAP
	case l.Transport == LinkRCOP:
		return 6
	default:
		return 13
	}
}

// LinkCompression returns the link's compression mode, with the default.
func (l Link) LinkCompression() string {
	switch {
	case l.Compression != "":
		return l.Compression
	case l.Transport == LinkXEP0361 || l.Transport == LinkRCOP:
		return "none"
	case l.Broadcast:
		return "frame"
	default:
		return "link"
	}
}

// LinkIQTimeout returns the link's iq timeout, with the default.
func (l Link) LinkIQTimeout() time.Duration {
	if l.IQTimeout == 0 {
		return 5 * time.Minute
	}
	return l.IQTimeout
}

// LinkRate returns the link's rate in bit/s, with the default: 2400 over
// a STANAG 5066 node, 0 (unpaced) over TCP.
func (l Link) LinkRate() int {
	if l.Rate == 0 && (l.Transport == LinkBRLINKSIS || l.Transport == LinkRCOP) {
		return 2400
	}
	return l.Rate
}

// linkProblems checks every [[link]].
func (c Config) linkProblems(ck *checker, listener func(key, addr string)) {
	names := map[string]bool{}
	claimed := map[string]string{} // peer domain → the key of the link that has it
	local := map[string]bool{}
	for _, d := range c.Domains() {
		local[d] = true
		if c.MUC.Enabled {
			local[c.MUCDomainOf(d)] = true
		}
	}
	for i, p := range c.S2S.Peers {
		claimed[p.Domain] = indexKey("s2s.peer", i)
	}
	for i, l := range c.Links {
		key := indexKey("link", i)
		switch {
		case l.Name == "":
			ck.add("must not be empty: it names the link in logs, metrics and its queue", key+".name", key)
		case strings.ContainsAny(l.Name, " :/\t"):
			ck.add(fmt.Sprintf("%q must not contain spaces, colons or slashes", l.Name), key+".name", key)
		case names[l.Name]:
			ck.add(fmt.Sprintf("%q is the name of another link", l.Name), key+".name", key)
		}
		names[l.Name] = true
		ck.oneOf(key+".transport", l.Transport, LinkBRLINKSIS, LinkBRLINKTCP, LinkXEP0361, LinkRCOP)
		if len(l.PeerDomains) == 0 {
			ck.add("must name at least one domain on the far side", key+".peer_domains", key)
		}
		for j, d := range l.PeerDomains {
			dk := indexKey(key+".peer_domains", j)
			switch msg := checkHostname(d); {
			case msg != "":
				ck.add(msg, dk, key)
			case local[d]:
				ck.add(fmt.Sprintf("%q is served by this server", d), dk, key)
			case claimed[d] != "":
				ck.add(fmt.Sprintf("%q is already reached over %s", d, claimed[d]), dk, key)
			default:
				claimed[d] = key
			}
		}
		brlink := l.Transport == LinkBRLINKSIS || l.Transport == LinkBRLINKTCP
		for j, d := range l.MailDomains {
			if msg := checkHostname(d); msg != "" {
				ck.add(msg, indexKey(key+".mail_domains", j), key)
			}
		}
		if len(l.MailDomains) > 0 && !c.Mail.Enabled {
			ck.add("needs [mail] enabled = true: mail for the link passes through the mail relay", key+".mail_domains", key)
		}
		if len(l.MailDomains) > 0 && !brlink {
			ck.add("needs a brlink transport: mail crosses only between Aldis servers", key+".mail_domains", key)
		}
		sis := l.Transport == LinkBRLINKSIS || l.Transport == LinkRCOP
		if sis {
			if l.SIS == "" {
				ck.add("must be the host:port of the local STANAG 5066 node", key+".sis", key)
			} else if _, msg := checkListen(l.SIS); msg != "" {
				ck.add(msg, key+".sis", key)
			}
			if !validSISAddr(l.SISPeer) {
				ck.add(fmt.Sprintf("%q must be the far node's STANAG 5066 address, a.b.c.d (a up to 15)", l.SISPeer), key+".sis_peer", key)
			}
			ck.intRange(key+".sap", l.SAP, 0, 15)
		}
		if l.Confirm != "" {
			ck.oneOf(key+".confirm", l.Confirm, "node", "client")
		}
		if l.Broadcast && l.Transport != LinkBRLINKSIS {
			ck.add("needs transport brlink-sis", key+".broadcast", key)
		}
		if l.Transport == LinkBRLINKTCP || l.Transport == LinkXEP0361 {
			if l.Connect == "" && l.Listen == "" {
				ck.add("a TCP link needs connect, listen or both", key+".connect", key)
			}
			if l.Connect != "" {
				if _, msg := checkListen(l.Connect); msg != "" {
					ck.add(msg, key+".connect", key)
				}
			}
			if l.Listen != "" {
				listener(key+".listen", l.Listen)
			}
		}
		if l.MTU != 0 {
			ck.intRange(key+".mtu", l.MTU, 64, 65535)
		}
		if l.Transport == LinkXEP0361 {
			ck.oneOf(key+".identity", l.Identity, "tls-pin", "tls-pki", "ip", "implicit")
			switch l.Identity {
			case "tls-pin":
				if len(l.Pin) != 64 || strings.Trim(strings.ToLower(l.Pin), "0123456789abcdef") != "" {
					ck.add("must be the SHA-256 of the far side's public key, 64 hex digits", key+".pin", key)
				}
				if !l.TLS {
					ck.add("tls-pin needs tls = true", key+".identity", key)
				}
			case "tls-pki":
				if !l.TLS {
					ck.add("tls-pki needs tls = true", key+".identity", key)
				}
				if l.CAFile != "" {
					if _, err := os.Stat(l.CAFile); err != nil {
						ck.add(fmt.Sprintf("cannot read %s: %v", l.CAFile, err), key+".ca_file", key)
					}
				}
			case "ip":
				for j, a := range l.AllowIPs {
					if _, err := netip.ParsePrefix(a); err != nil {
						if _, err := netip.ParseAddr(a); err != nil {
							ck.add(fmt.Sprintf("%q is not an IP address or prefix", a), indexKey(key+".allow_ips", j), key)
						}
					}
				}
				if len(l.AllowIPs) == 0 {
					ck.add("identity ip needs the far side's addresses in allow_ips", key+".allow_ips", key)
				}
			case "implicit":
				if !l.Insecure {
					ck.add("implicit trusts anyone who can connect; set insecure = true to mean it", key+".identity", key)
				}
			}
		}
		ck.intRange(key+".rate", l.Rate, 0, 100_000_000)
		switch l.Transport {
		case LinkXEP0361:
			ck.oneOf(key+".compression", l.LinkCompression(), "none", "deflate")
		case LinkRCOP:
			ck.oneOf(key+".compression", l.LinkCompression(), "none")
		default:
			ck.oneOf(key+".compression", l.LinkCompression(), "none", "frame", "link")
			if l.Broadcast && l.LinkCompression() == "link" {
				ck.add("a broadcast link loses frames, so each must decompress on its own: use frame", key+".compression", key)
			}
		}
		if l.Presence != "" {
			ck.oneOf(key+".presence", l.Presence, "fold", "strip", "pass")
		}
		for _, t := range []struct {
			k string
			v time.Duration
		}{{"ttl_chat", l.TTLChat}, {"ttl_groupchat", l.TTLGroupchat}, {"ttl_mail", l.TTLMail}} {
			if t.v != 0 {
				ck.durRange(key+"."+t.k, t.v, time.Minute, 30*24*time.Hour)
			}
		}
		ck.intRange(key+".window", l.Window, 0, 100_000)
		if l.IQTimeout != 0 {
			ck.durRange(key+".iq_timeout", l.IQTimeout, time.Second, 24*time.Hour)
		}
	}
}

// validSISAddr reports whether s is a STANAG 5066 address in dotted form.
func validSISAddr(s string) bool {
	parts := strings.Split(s, ".")
	if len(parts) != 4 {
		return false
	}
	for i, p := range parts {
		if p == "" || len(p) > 3 || strings.Trim(p, "0123456789") != "" {
			return false
		}
		n := 0
		for _, r := range p {
			n = n*10 + int(r-'0')
		}
		if n > 255 || i == 0 && n > 15 { // a 28-bit address: the first part has 4 bits
			return false
		}
	}
	return true
}
