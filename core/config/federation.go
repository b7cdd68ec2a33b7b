package config

import (
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"
	"time"
)

// S2S is the [s2s] table: server-to-server federation (RFC 6120, XEP-0220). Per-peer policy (the
// peering controls) is in the [[s2s.peer]] array of tables; the settings here are the defaults.
type S2S struct {
	Enabled   bool     `toml:"enabled"`
	Listen    []string `toml:"listen"`     // STARTTLS listeners, host:port (the standard port is 5269)
	ListenTLS []string `toml:"listen_tls"` // direct TLS listeners (XEP-0368 for servers; conventionally 5270)
	// RequireTLS refuses streams, both ways, that do not negotiate TLS.
	RequireTLS bool `toml:"require_tls"`
	// RequireCertificates refuses Server Dialback: peers must present a certificate that
	// verifies against CAFile (or the system roots) and authenticate with SASL EXTERNAL.
	RequireCertificates bool `toml:"require_certificates"`
	// CAFile is a PEM bundle of the CAs trusted for peer certificates; empty = the system roots.
	CAFile string `toml:"ca_file"`
	// Hosts maps remote domains to "host:port" addresses, used instead of DNS SRV records.
	Hosts            map[string]string `toml:"hosts"`
	MaxStanzaSize    int               `toml:"max_stanza_size"` // bytes
	ConnectTimeout   time.Duration     `toml:"connect_timeout"` // from dialling to an authenticated stream
	IdleTimeout      time.Duration     `toml:"idle_timeout"`    // a stream with no traffic for this long is closed
	Queue            int               `toml:"queue"`           // stanzas waiting per remote domain
	RateBytes        int               `toml:"rate_bytes"`      // bytes per second per incoming stream; 0 = unlimited
	RateBurst        int               `toml:"rate_burst"`      // bytes
	MaxIncomingPerIP int               `toml:"max_incoming_per_ip"`
	// Bidi offers and requests bidirectional streams (XEP-0288).
	Bidi bool `toml:"bidi"`
	// DefaultPeer is "allow" or "deny": whether a remote domain no [[s2s.peer]] matches may
	// federate.
	DefaultPeer string `toml:"default_peer"`
	// Peers are per-domain settings of remote servers.
	Peers []Peer `toml:"peer"`
}

// Peer authentication requirements ([[s2s.peer]] auth).
const (
	PeerAuthAny         = "any"         // what s2s.require_certificates says
	PeerAuthCertificate = "certificate" // a certificate that verifies, nothing else
	PeerAuthDialback    = "dialback"    // a certificate, or dialback even when s2s.require_certificates is set
)

// Stanza kinds a peer may be restricted to ([[s2s.peer]] stanzas).
var stanzaKinds = []string{"message", "presence", "iq"}

// Peer is one [[s2s.peer]]: the peering controls of a remote domain, or
// of every subdomain of one ("*.example.mil"; an exact entry wins over a
// wildcard, and a longer wildcard over a shorter one). Security labels
// apply at the boundary: nothing the clearance does not grant is sent to
// the peer, or accepted from it.
type Peer struct {
	Domain string `toml:"domain"`
	// Clearance and Label are label expressions (see core/label): the
	// peer's clearance, and the label of what it sends unlabelled. Empty:
	// the policy's default clearance and label.
	Clearance string `toml:"clearance"`
	Label     string `toml:"label"`
	// Allow: whether the peer may federate. Unset: a listed peer may.
	Allow *bool `toml:"allow"`
	// Auth is how the peer must prove its domain: PeerAuthAny (the
	// default), PeerAuthCertificate or PeerAuthDialback.
	Auth string `toml:"auth"`
	// RequireTLS overrides s2s.require_tls for this peer.
	RequireTLS *bool `toml:"require_tls"`
	// Stanzas are the kinds that may pass, both ways; unset: all three.
	Stanzas []string `toml:"stanzas"`
	// DenyNamespaces are payload namespaces refused both ways: a stanza
	// with a child element in one of them does not pass.
	DenyNamespaces []string `toml:"deny_namespaces"`
	// Rate is the stanzas per second accepted from the peer (all its
	// streams together), with Burst above it; 0: unlimited. Burst 0
	// means Rate.
	Rate  int `toml:"rate"`
	Burst int `toml:"burst"`
}

// Allowed reports whether the peer may federate.
func (p Peer) Allowed() bool { return p.Allow == nil || *p.Allow }

// Components is the [components] table: external components (XEP-0114).
type Components struct {
	Listen    []string    `toml:"listen"`
	Component []Component `toml:"component"`
}

// Component is one [[components.component]]: a subdomain an external process serves.
type Component struct {
	Domain string `toml:"domain"`
	Secret string `toml:"secret"`
	// Clearance and Label are as for an [[s2s.peer]]: a component is an
	// external principal too.
	Clearance string `toml:"clearance"`
	Label     string `toml:"label"`
}

func defaultS2S() S2S {
	return S2S{
		Listen:           []string{"127.0.0.1:5269", "[::1]:5269"},
		ListenTLS:        []string{},
		RequireTLS:       true,
		Hosts:            map[string]string{},
		Peers:            []Peer{},
		MaxStanzaSize:    256 << 10,
		ConnectTimeout:   30 * time.Second,
		IdleTimeout:      10 * time.Minute,
		Queue:            1000,
		RateBytes:        8 << 20,
		RateBurst:        16 << 20,
		MaxIncomingPerIP: 20,
		DefaultPeer:      "allow",
		Bidi:             true,
	}
}

func defaultComponents() Components {
	return Components{Listen: []string{}, Component: []Component{}}
}

// federationProblems checks [s2s] and [components]; listener records listen addresses against clashes.
func (c Config) federationProblems(ck *checker, listener func(key, addr string)) {
	s := c.S2S
	if s.Enabled {
		for i, a := range s.Listen {
			listener(indexKey("s2s.listen", i), a)
		}
		for i, a := range s.ListenTLS {
			listener(indexKey("s2s.listen_tls", i), a)
		}
	}
	if s.CAFile != "" {
		if _, err := os.Stat(s.CAFile); err != nil {
			ck.add(fmt.Sprintf("cannot read %s: %v", s.CAFile, err), "s2s.ca_file")
		}
	}
	for _, domain := range slices.Sorted(maps.Keys(s.Hosts)) {
		addr := s.Hosts[domain]
		key := joinKey("s2s.hosts", domain)
		if msg := checkHostname(domain); msg != "" {
			ck.add("domain "+msg, key)
			continue
		}
		if _, msg := checkListen(addr); msg != "" || addr == "" {
			ck.add(msg, key)
		}
	}
	ck.intRange("s2s.max_stanza_size", s.MaxStanzaSize, minStanzaSize, maxStanzaSize)
	ck.durRange("s2s.connect_timeout", s.ConnectTimeout, time.Second, 10*time.Minute)
	ck.durRange("s2s.idle_timeout", s.IdleTimeout, 10*time.Second, 24*time.Hour)
	ck.intRange("s2s.queue", s.Queue, 1, maxQueue)
	ck.intRange("s2s.rate_bytes", s.RateBytes, 0, maxRate)
	ck.intRange("s2s.rate_burst", s.RateBurst, 0, maxRate)
	if s.RateBytes > 0 && s.RateBurst < s.MaxStanzaSize && s.RateBurst >= 0 && s.MaxStanzaSize >= minStanzaSize {
		ck.add(fmt.Sprintf("s2s.rate_burst (%d) must be at least s2s.max_stanza_size (%d) while s2s.rate_bytes limits the rate",
			s.RateBurst, s.MaxStanzaSize), "s2s.rate_burst", "s2s.max_stanza_size", "s2s.rate_bytes")
	}
	ck.intRange("s2s.max_incoming_per_ip", s.MaxIncomingPerIP, 1, maxCount)
	ck.oneOf("s2s.default_peer", s.DefaultPeer, "allow", "deny")
	peers := map[string]bool{}
	for i, p := range s.Peers {
		peerProblems(ck, indexKey("s2s.peer", i), p, peers, c.Domains())
	}

	for i, a := range c.Components.Listen {
		listener(indexKey("components.listen", i), a)
	}
	seen := map[string]bool{}
	for _, d := range c.Domains() {
		seen[d] = true
		if c.MUC.Enabled {
			seen[c.MUCDomainOf(d)] = true
		}
	}
	for i, comp := range c.Components.Component {
		key := indexKey("components.component", i)
		if msg := checkHostname(comp.Domain); msg != "" {
			ck.add(msg, key+".domain", key)
		} else if seen[comp.Domain] {
			ck.add(fmt.Sprintf("%q is already served by this server or another component", comp.Domain), key+".domain", key)
		}
		seen[comp.Domain] = true
		if len(comp.Secret) < 8 {
			ck.add("must be at least 8 characters: it is the component's password", key+".secret", key)
		}
	}
}

// peerProblems checks one [[s2s.peer]]; seen collects the domains of the
// entries before it, local the domains this server serves.
func peerProblems(ck *checker, key string, p Peer, seen map[string]bool, local []string) {
	host, wild := strings.CutPrefix(p.Domain, "*.")
	if msg := checkHostname(host); msg != "" {
		if wild || p.Domain == "" {
			ck.add(msg, key+".domain", key)
		} else {
			ck.add(msg+` (or "*.domain" for every subdomain of one)`, key+".domain", key)
		}
	} else if seen[p.Domain] {
		ck.add(fmt.Sprintf("%q has another [[s2s.peer]] already", p.Domain), key+".domain", key)
	} else if !wild && slices.Contains(local, p.Domain) {
		ck.add(fmt.Sprintf("%q is served by this server, not a peer", p.Domain), key+".domain", key)
	}
	seen[p.Domain] = true
	if p.Auth != "" {
		ck.oneOf(key+".auth", p.Auth, PeerAuthAny, PeerAuthCertificate, PeerAuthDialback)
	}
	if p.Auth == PeerAuthCertificate && p.RequireTLS != nil && !*p.RequireTLS {
		ck.add(`auth = "certificate" needs TLS: remove require_tls = false`, key+".require_tls")
	}
	if p.Stanzas != nil && len(p.Stanzas) == 0 {
		ck.add(`must name at least one of "message", "presence", "iq"; to refuse the peer, set allow = false`, key+".stanzas")
	}
	kinds := map[string]bool{}
	for j, k := range p.Stanzas {
		switch {
		case !slices.Contains(stanzaKinds, k):
			ck.add(fmt.Sprintf("%q is not one of message, presence, iq", k), indexKey(key+".stanzas", j), key+".stanzas")
		case kinds[k]:
			ck.add(fmt.Sprintf("%q is listed twice", k), indexKey(key+".stanzas", j), key+".stanzas")
		}
		kinds[k] = true
	}
	for j, ns := range p.DenyNamespaces {
		if ns == "" || strings.ContainsAny(ns, " \t\r\n<>'\"") {
			ck.add(fmt.Sprintf("%q is not a namespace name (a URI such as \"urn:xmpp:jingle:1\")", ns),
				indexKey(key+".deny_namespaces", j), key+".deny_namespaces")
		}
	}
	ck.intRange(key+".rate", p.Rate, 0, maxCount)
	ck.intRange(key+".burst", p.Burst, 0, maxCount)
	if p.Burst > 0 && p.Rate == 0 {
		ck.add("has no effect without a rate: set rate (stanzas per second) too", key+".burst")
	}
}
