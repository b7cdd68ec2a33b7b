// Package peering decides, per remote domain, whether a server may federate and what may pass to and from it: the peering controls of [[s2s.peer]].
//
// A Policy holds one Rule per configured peer, exact ("partner.example")
// or for every subdomain of a domain ("*.example.mil"); Lookup finds the
// one that applies to a domain (an exact rule wins, then the longest
// wildcard, then the default rule). Rules are read-only after New apart
// from their rate limiter, so a Policy is safe for concurrent use.
package peering

import (
	"context"
	"fmt"
	"strings"
	"time"

	"golang.org/x/time/rate"

	"github.com/aldis-im/aldis/xmppcore/wire"
)

// Kind is a set of stanza kinds.
type Kind uint8

// The stanza kinds.
const (
	Message Kind = 1 << iota
	Presence
	IQ

	AllKinds = Message | Presence | IQ
)

// KindOf returns the kind of a stanza's element name, 0 for none.
func KindOf(local string) Kind {
	switch local {
	case "message":
		return Message
	case "presence":
		return Presence
	case "iq":
		return IQ
	}
	return 0
}

// Spec is one peer's controls, as configured.
type Spec struct {
	// Domain is exact, or "*.example.mil" for every subdomain of
	// example.mil (not example.mil itself).
	Domain string
	Allow  bool
	// CertificateOnly: the peer must prove its domain with a certificate
	// that verifies; Server Dialback is refused. Nil: the default.
	CertificateOnly *bool
	// RequireTLS: streams with the peer must be encrypted. Nil: the default.
	RequireTLS *bool
	// Kinds that may pass, both ways; 0 means all.
	Kinds Kind
	// DenyNamespaces are refused anywhere in a stanza, both ways.
	DenyNamespaces []string
	// Rate is stanzas per second accepted from the peer, Burst above it;
	// Rate 0: unlimited; Burst 0: Rate.
	Rate, Burst int
}

// Defaults apply to domains no Spec matches, and fill what a Spec leaves out.
type Defaults struct {
	Allow           bool
	CertificateOnly bool
	RequireTLS      bool
}

// Rule is the effective controls for the domains one Spec (or the
// defaults) covers.
type Rule struct {
	// Name is the configured domain ("*.example.mil"), or "" for the
	// default rule.
	Name            string
	Allow           bool
	CertificateOnly bool
	RequireTLS      bool
	kinds           Kind
	denyNS          map[string]bool
	lim             *rate.Limiter // nil: unlimited; shared by every stream of the peer
}

// Policy is the set of rules.
type Policy struct {
	exact map[string]*Rule
	wild  map[string]*Rule // by the domain after "*."
	def   *Rule
}

// New builds a policy; it fails on a malformed or repeated domain.
func New(def Defaults, specs []Spec) (*Policy, error) {
	p := &Policy{exact: map[string]*Rule{}, wild: map[string]*Rule{},
		def: &Rule{Allow: def.Allow, CertificateOnly: def.CertificateOnly, RequireTLS: def.RequireTLS, kinds: AllKinds}}
	for _, s := range specs {
		r := &Rule{Name: s.Domain, Allow: s.Allow, CertificateOnly: def.CertificateOnly, RequireTLS: def.RequireTLS,
			kinds: s.Kinds}
		if s.CertificateOnly != nil {
			r.CertificateOnly = *s.CertificateOnly
		}
		if s.RequireTLS != nil {
			r.RequireTLS = *s.RequireTLS
		}
		if r.kinds == 0 {
			r.kinds = AllKinds
		}
		if len(s.DenyNamespaces) > 0 {
			r.denyNS = make(map[string]bool, len(s.DenyNamespaces))
			for _, ns := range s.DenyNamespaces {
				r.denyNS[ns] = true
			}
		}
		if s.Rate > 0 {
			burst := s.Burst
			if burst <= 0 {
				burst = s.Rate
			}
			r.lim = rate.NewLimiter(rate.Limit(s.Rate), burst)
		}
		m, d := p.exact, s.Domain
		if rest, ok := strings.CutPrefix(s.Domain, "*."); ok {
			m, d = p.wild, rest
		}
		if d == "" || strings.ContainsAny(d, "*@/ ") {
			return nil, fmt.Errorf("peering: invalid peer domain %q", s.Domain)
		}
		if m[d] != nil {
			return nil, fmt.Errorf("peering: peer domain %q is configured twice", s.Domain)
		}
		m[d] = r
	}
	return p, nil
}

// Lookup returns the rule for a remote domain: its own, else that of the
// longest wildcard covering it, else the default. It never returns nil.
func (p *Policy) Lookup(domain string) *Rule {
	if p == nil {
		return &Rule{Allow: true, kinds: AllKinds}
	}
	if r := p.exact[domain]; r != nil {
		return r
	}
	if len(p.wild) > 0 {
		for d := domain; ; {
			_, parent, ok := strings.Cut(d, ".")
			if !ok || parent == "" {
				break
			}
			if r := p.wild[parent]; r != nil {
				return r
			}
			d = parent
		}
	}
	return p.def
}

// Reason says why a stanza may not pass.
type Reason string

// Reasons, also the values of the metrics' reason label.
const (
	OK        Reason = ""
	Denied    Reason = "denied"    // the peer may not federate
	KindRule  Reason = "kind"      // its stanza kind is not allowed
	Namespace Reason = "namespace" // it carries a refused namespace
	RateLimit Reason = "rate"      // the peer sends faster than its rate
)

// Check says whether a stanza may pass to or from a peer of this rule.
// Errors pass the kind rule, so that a refused stanza can be answered. It
// does not consume rate (see Take).
func (r *Rule) Check(st *wire.Element) Reason {
	k := KindOf(st.Local())
	switch {
	case !r.Allow:
		return Denied
	case k == 0 || (k&r.kinds == 0 && st.Attr("type") != "error"):
		return KindRule
	case len(r.denyNS) > 0 && r.carriesDenied(st):
		return Namespace
	}
	return OK
}

// Kinds reports the kinds that may pass.
func (r *Rule) Kinds() Kind { return r.kinds }

// carriesDenied reports whether a refused namespace appears on any element
// below st. The wire decoder bounds the depth and size of what it reads.
func (r *Rule) carriesDenied(st *wire.Element) bool {
	for c := range st.Elements() {
		if r.denyNS[c.Space] || r.carriesDenied(c) {
			return true
		}
	}
	return false
}

// Take consumes one stanza of the peer's rate; false means the peer is
// over it.
func (r *Rule) Take(now time.Time) bool {
	return r.lim == nil || r.lim.AllowN(now, 1)
}

// Wait blocks until the peer's rate allows one more stanza, and consumes
// it, or until ctx ends.
func (r *Rule) Wait(ctx context.Context) error {
	if r.lim == nil {
		return nil
	}
	return r.lim.Wait(ctx)
}

// Limited reports whether the rule has a rate limit.
func (r *Rule) Limited() bool { return r.lim != nil }
