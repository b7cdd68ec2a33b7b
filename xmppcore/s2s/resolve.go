package s2s

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
)

// target is one address to try for a remote domain.
type target struct {
	addr      string
	directTLS bool
}

// errNoService is a domain that says it offers no federation (an SRV
// target of ".") or does not resolve at all.
var errNoService = errors.New("s2s: remote domain has no XMPP service")

// resolve returns the addresses to try for domain, in order: the static
// route; else the SRV records of _xmpps-server._tcp (direct TLS) and
// _xmpp-server._tcp (RFC 6120 §3.2, XEP-0368) by priority; else the
// domain itself on port 5269.
func (m *Manager) resolve(ctx context.Context, domain string) ([]target, error) {
	if a, ok := m.cfg.Hosts[domain]; ok {
		return []target{{addr: a}}, nil
	}
	type rec struct {
		t    target
		prio uint16
	}
	var recs []rec
	found := false
	for _, svc := range []struct {
		name   string
		direct bool
	}{{"xmpps-server", true}, {"xmpp-server", false}} {
		if svc.direct && m.cfg.Certificate == nil {
			continue
		}
		_, srvs, err := m.cfg.Resolver.LookupSRV(ctx, svc.name, "tcp", domain)
		if err != nil {
			continue
		}
		found = found || len(srvs) > 0
		for _, s := range srvs {
			host := strings.TrimSuffix(s.Target, ".")
			if host == "" {
				continue // "." : no service of this kind
			}
			recs = append(recs, rec{target{net.JoinHostPort(host, strconv.Itoa(int(s.Port))), svc.direct}, s.Priority})
		}
	}
	if found && len(recs) == 0 {
		return nil, fmt.Errorf("%w: %s", errNoService, domain)
	}
	if !found {
		if _, err := m.cfg.Resolver.LookupHost(ctx, domain); err != nil {
			return nil, fmt.Errorf("%w: %s: %v", errNoService, domain, err)
		}
		return []target{{addr: net.JoinHostPort(domain, "5269")}}, nil
	}
	// Stable by priority: LookupSRV already shuffled each list by weight.
	for i := 1; i < len(recs); i++ {
		for j := i; j > 0 && recs[j].prio < recs[j-1].prio; j-- {
			recs[j], recs[j-1] = recs[j-1], recs[j]
		}
	}
	out := make([]target, len(recs))
	for i, r := range recs {
		out[i] = r.t
	}
	return out, nil
}
