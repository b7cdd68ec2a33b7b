package main

import (
	"context"
	"crypto/x509"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"

	"github.com/aldis-im/aldis/core/certs"
	"github.com/aldis-im/aldis/core/config"
	"github.com/aldis-im/aldis/core/obs"
	"github.com/aldis-im/aldis/xmppcore/component"
	"github.com/aldis-im/aldis/xmppcore/peering"
	"github.com/aldis-im/aldis/xmppcore/router"
	"github.com/aldis-im/aldis/xmppcore/s2s"
)

// peers are the server's connections to other servers and components.
type peers struct {
	s2s   *s2s.Manager
	comps *component.Server
	lns   []string // "listening on" descriptions
	log   *slog.Logger
}

// startPeers registers the configured components with the router, sets up
// federation, and starts their listeners. Call it before clients connect:
// the router's services are fixed from then on.
func startPeers(cfg config.Config, log *slog.Logger, m *obs.Metrics, rt *router.Router, src *certs.Hosts) (*peers, error) {
	p := &peers{log: log}
	local := map[string]bool{}
	for _, d := range cfg.Domains() {
		local[d] = true
		if cfg.MUC.Enabled {
			local[cfg.MUCDomainOf(d)] = true
		}
	}
	if len(cfg.Components.Component) > 0 {
		secrets := map[string]string{}
		for _, c := range cfg.Components.Component {
			secrets[c.Domain] = c.Secret
		}
		p.comps = component.New(component.Config{Secrets: secrets, Router: rt, MaxStanza: cfg.S2S.MaxStanzaSize,
			HandshakeTimeout: cfg.S2S.ConnectTimeout, Log: log})
		for d := range secrets {
			if err := rt.AddService(d, p.comps.Service(d)); err != nil {
				return nil, fmt.Errorf("component %s: %w", d, err)
			}
			local[d] = true
		}
	}
	if cfg.S2S.Enabled {
		var roots *x509.CertPool
		if cfg.S2S.CAFile != "" {
			pem, err := os.ReadFile(cfg.S2S.CAFile)
			if err != nil {
				return nil, fmt.Errorf("s2s.ca_file: %w", err)
			}
			roots = x509.NewCertPool()
			if !roots.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("s2s.ca_file: no PEM certificates in %s", cfg.S2S.CAFile)
			}
		}
		policy, err := peeringPolicy(cfg.S2S)
		if err != nil {
			return nil, err
		}
		p.s2s = s2s.New(s2s.Config{Peering: policy,
			Local: func(d string) bool { return local[d] }, Router: rt, Certificate: src.Certificate, Roots: roots,
			RequireTLS: cfg.S2S.RequireTLS, RequireCertificates: cfg.S2S.RequireCertificates, Hosts: cfg.S2S.Hosts,
			MaxStanza: cfg.S2S.MaxStanzaSize, ConnectTimeout: cfg.S2S.ConnectTimeout, IdleTimeout: cfg.S2S.IdleTimeout,
			Queue: cfg.S2S.Queue, RateBytes: cfg.S2S.RateBytes, RateBurst: cfg.S2S.RateBurst,
			MaxPerIP: cfg.S2S.MaxIncomingPerIP, Bidi: cfg.S2S.Bidi, Log: log, Metrics: m,
		})
		rt.SetRemote(p.s2s)
	}
	return p, p.listen(cfg)
}

func (p *peers) listen(cfg config.Config) error {
	listen := func(addrs []string, kind string, serve func(net.Listener) error) error {
		for _, a := range addrs {
			ln, err := net.Listen("tcp", a)
			if err != nil {
				// A host without IPv6 loopback should still start on IPv4.
				if strings.HasPrefix(a, "[::1]") && len(addrs) > 1 {
					p.log.Warn("listener unavailable", "addr", a, "err", err)
					continue
				}
				return fmt.Errorf("listen on %s: %w", a, err)
			}
			p.lns = append(p.lns, fmt.Sprintf("%s (%s)", ln.Addr(), kind))
			go func() {
				if err := serve(ln); err != nil {
					p.log.Error(kind+" listener stopped", "addr", a, "err", err)
				}
			}()
		}
		return nil
	}
	if p.s2s != nil {
		if err := listen(cfg.S2S.Listen, "s2s, STARTTLS", func(ln net.Listener) error { return p.s2s.Serve(ln, false) }); err != nil {
			return err
		}
		if err := listen(cfg.S2S.ListenTLS, "s2s, direct TLS", func(ln net.Listener) error { return p.s2s.Serve(ln, true) }); err != nil {
			return err
		}
	}
	if p.comps != nil {
		return listen(cfg.Components.Listen, "components", p.comps.Serve)
	}
	return nil
}

// shutdown closes the listeners and streams; what outgoing streams hold is
// written first.
func (p *peers) shutdown(ctx context.Context) {
	if p.s2s != nil {
		if err := p.s2s.Shutdown(ctx); err != nil {
			p.log.Warn("server-to-server streams did not close in time", "err", err)
		}
	}
	if p.comps != nil {
		if err := p.comps.Shutdown(ctx); err != nil {
			p.log.Warn("component streams did not close in time", "err", err)
		}
	}
}

// peeringPolicy builds the peering controls from [s2s] and its [[s2s.peer]]
// tables, which config has validated.
func peeringPolicy(c config.S2S) (*peering.Policy, error) {
	specs := make([]peering.Spec, 0, len(c.Peers))
	for _, p := range c.Peers {
		s := peering.Spec{Domain: p.Domain, Allow: p.Allowed(), RequireTLS: p.RequireTLS,
			DenyNamespaces: p.DenyNamespaces, Rate: p.Rate, Burst: p.Burst}
		switch p.Auth {
		case config.PeerAuthCertificate:
			s.CertificateOnly = new(true)
		case config.PeerAuthDialback:
			s.CertificateOnly = new(false)
		}
		for _, k := range p.Stanzas {
			s.Kinds |= peering.KindOf(k)
		}
		specs = append(specs, s)
	}
	policy, err := peering.New(peering.Defaults{Allow: c.DefaultPeer != "deny", RequireTLS: c.RequireTLS,
		CertificateOnly: c.RequireCertificates}, specs)
	if err != nil {
		return nil, fmt.Errorf("s2s.peer: %w", err)
	}
	return policy, nil
}
