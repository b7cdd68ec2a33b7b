package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"strings"

	"github.com/aldis-im/aldis/core/certs"
	"github.com/aldis-im/aldis/core/config"
	"github.com/aldis-im/aldis/core/queue"
	"github.com/aldis-im/aldis/mail/mta"
	"github.com/aldis-im/aldis/mail/relay"
	"github.com/aldis-im/aldis/mail/smtpin"
)

// mailService is the running [mail] relay: SMTP listeners and the queue's
// delivery scheduler.
type mailService struct {
	lns     []string
	ingress *smtpin.Server
	stopQ   context.CancelFunc
	qDone   chan struct{}
}

// startMail starts the mail relay if [mail] enables it; nil otherwise.
func startMail(cfg config.Config, log *slog.Logger, st queue.Store, src *certs.Source) (*mailService, error) {
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
	m, err := mta.New(st, rc, mta.Config{
		Hostname: host, Domains: mc.RelayDomains, MaxHops: mc.MaxHops, Logger: log,
		Queue: queue.Config{
			Workers: mc.Workers, PerDest: mc.PerDomain, MinBackoff: mc.RetryMin, MaxBackoff: mc.RetryMax,
			MaxAge: mc.MaxQueueTime,
		},
	})
	if err != nil {
		return nil, err
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
	qctx, stopQ := context.WithCancel(context.Background())
	s := &mailService{ingress: in, stopQ: stopQ, qDone: make(chan struct{})}
	go func() {
		defer close(s.qDone)
		_ = m.Run(qctx)
	}()
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
	if n, err := m.Queued(qctx); err == nil && n > 0 {
		log.Info("mail queue resumed", "queued", n)
	}
	return s, nil
}

// shutdown stops the listeners (letting transactions under way finish
// until ctx ends), then the deliveries; what is cut short is due again at
// the next start.
func (s *mailService) shutdown(ctx context.Context) {
	if s == nil {
		return
	}
	_ = s.ingress.Shutdown(ctx)
	s.stopQ()
	select {
	case <-s.qDone:
	case <-ctx.Done():
	}
}
