package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strings"

	"github.com/aldis-im/aldis/bridges/mailxmpp"
	"github.com/aldis-im/aldis/core/certs"
	"github.com/aldis-im/aldis/core/config"
	"github.com/aldis-im/aldis/core/identity"
	"github.com/aldis-im/aldis/core/queue"
	"github.com/aldis-im/aldis/mail/mta"
	"github.com/aldis-im/aldis/mail/relay"
	"github.com/aldis-im/aldis/mail/smtpin"
	"github.com/aldis-im/aldis/mapping/mailmap"
	"github.com/aldis-im/aldis/xmppcore/router"
	"github.com/aldis-im/aldis/xmppcore/seclabel"
)

// mailService is the running [mail] relay: SMTP listeners, the queue's
// delivery scheduler and the mail bridge.
type mailService struct {
	lns     []string
	ingress *smtpin.Server
	bridge  *mailxmpp.Bridge // nil without maps
	stop    context.CancelFunc
	done    chan struct{} // closed when the queue and the bridge have stopped
}

// loadMailMap reads the mail maps [mail] names; nil when there are none or
// mail is off.
func loadMailMap(cfg config.Config, cfgPath string) (*mailmap.Map, error) {
	paths := cfg.MailMapPaths(cfgPath)
	if !cfg.Mail.Enabled || len(paths) == 0 {
		return nil, nil
	}
	return mailmap.Load(paths...)
}

// mailPrincipals are the label principals of a mail map: each mail domain
// ("mail:<domain>") and the bridge as a room occupant ("peer:<gateway>").
func mailPrincipals(cfg config.Config, m *mailmap.Map) map[string]identity.Spec {
	if m == nil {
		return nil
	}
	out := map[string]identity.Spec{}
	for _, d := range m.Domains() {
		out[mailmap.Principal(d)] = identity.Spec{Clearance: d.Clearance, Label: d.Label}
	}
	if c := m.Gateway().Clearance; c != "" {
		out["peer:"+cfg.MailGatewayDomain()] = identity.Spec{Clearance: c}
	}
	return out
}

// startMail starts the mail relay if [mail] enables it, with the bridge
// when mm holds maps; nil otherwise.
func startMail(cfg config.Config, log *slog.Logger, st queue.Store, src *certs.Hosts, rt *router.Router, labels *seclabel.Guard, mm *mailmap.Map, files mailxmpp.Files, links *linkService) (*mailService, error) {
	mc := cfg.Mail
	if !mc.Enabled {
		return nil, nil
	}
	log = log.With("component", "mail")
	host := cfg.MailHostname()
	rc, err := relay.New(relay.Config{
		Hostname: host, Smarthost: mc.Smarthost, Username: mc.SmarthostUser, Password: mc.SmarthostPassword,
		RequireTLS: mc.OutboundRequireTLS,
	})
	if err != nil {
		return nil, err
	}
	// Mail for the links' mail domains crosses them; the rest goes by SMTP.
	var snd mta.Sender = rc
	if links != nil {
		snd = linkSender{next: rc, s: links}
	}
	m, err := mta.New(st, snd, mta.Config{
		Hostname: host, Domains: append(slices.Clone(mc.RelayDomains), cfg.LinkMailDomains()...), MaxHops: mc.MaxHops, Logger: log,
		Queue: queue.Config{
			Workers: mc.Workers, PerDest: mc.PerDomain, MinBackoff: mc.RetryMin, MaxBackoff: mc.RetryMax,
			MaxAge: mc.MaxQueueTime,
		},
	})
	if err != nil {
		return nil, err
	}
	var br *mailxmpp.Bridge
	if mm != nil {
		br, err = mailxmpp.New(mailxmpp.Config{
			Domain: cfg.MailGatewayDomain(), Hostname: host, XMPP: rt, Outbox: m, Map: mm,
			Labels: labels, AuthServID: mc.TrustedAuthservID, Logger: log, Files: files,
		})
		if err != nil {
			return nil, err
		}
		if err := rt.AddService(cfg.MailGatewayDomain(), br); err != nil {
			return nil, fmt.Errorf("mail gateway: %w", err)
		}
		m.SetLocal(br)
	}
	in, err := smtpin.New(smtpin.Config{
		Hostname: host, TLS: src.TLSConfig(), RequireTLS: mc.RequireTLS,
		MaxMessageBytes: int64(mc.MaxMessageSize), MaxRecipients: mc.MaxRecipients,
		MaxConns: mc.MaxConnections, MaxConnsPerIP: mc.MaxConnsPerIP, MessagesPerMinute: mc.MessagesPerMin,
		Recipient: m.Recipient, Deliver: m.Accept, Logger: log,
	})
	if err != nil {
		return nil, err
	}
	ctx, stop := context.WithCancel(context.Background())
	s := &mailService{ingress: in, bridge: br, stop: stop, done: make(chan struct{})}
	qDone := make(chan struct{})
	go func() {
		defer close(qDone)
		_ = m.Run(ctx)
	}()
	go func() {
		defer close(s.done)
		if br != nil {
			_ = br.Run(ctx)
		}
		<-qDone
	}()
	if br != nil {
		log.Info("mail bridge on", "gateway", cfg.MailGatewayDomain(), "users", len(mm.Users()), "rooms", len(mm.Rooms()), "domains", len(mm.Domains()))
	}
	for _, a := range mc.Listen {
		ln, err := net.Listen("tcp", a)
		if err != nil {
			if strings.HasPrefix(a, "[::1]") && len(mc.Listen) > 1 {
				log.Warn("listener unavailable", "addr", a, "err", err)
				continue
			}
			s.shutdown(context.Background())
			return nil, fmt.Errorf("listen on %s: %w", a, err)
		}
		s.lns = append(s.lns, fmt.Sprintf("%s (smtp, STARTTLS)", ln.Addr()))
		go func() {
			if err := in.Serve(ln); err != nil {
				log.Error("smtp listener stopped", "addr", a, "err", err)
			}
		}()
	}
	links.setMTA(m)
	if n, err := m.Queued(ctx); err == nil && n > 0 {
		log.Info("mail queue resumed", "queued", n)
	}
	return s, nil
}

// reloadMap reads the mail maps again for SIGHUP: the new map, or the
// running one when the files have errors (or nil without a bridge).
func (s *mailService) reloadMap(log *slog.Logger, cfg config.Config, cfgPath string, labels *seclabel.Guard) *mailmap.Map {
	if s == nil || s.bridge == nil {
		return nil
	}
	cur := s.bridge.Map()
	m, err := loadMailMap(cfg, cfgPath)
	if err == nil && m == nil {
		log.Warn("reload: turning the mail bridge off needs a restart; keeping its maps")
		return cur
	}
	if err == nil && labels != nil {
		err = m.CheckLabels(labels.Policies())
	}
	if err != nil {
		log.Error("reload: mail maps have errors; keeping the running ones", "err", err)
		return cur
	}
	return m
}

// setMap hands the bridge a reloaded map.
func (s *mailService) setMap(m *mailmap.Map) {
	if s == nil || s.bridge == nil || m == nil {
		return
	}
	s.bridge.SetMap(m)
}

// shutdown stops the listeners (letting transactions under way finish
// until ctx ends), then the deliveries and the bridge; what is cut short
// is due again at the next start.
func (s *mailService) shutdown(ctx context.Context) {
	if s == nil {
		return
	}
	_ = s.ingress.Shutdown(ctx)
	s.stop()
	select {
	case <-s.done:
	case <-ctx.Done():
	}
}
