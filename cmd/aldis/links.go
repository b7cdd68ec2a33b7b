package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/mail"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/emersion/go-smtp"

	"github.com/aldis-im/aldis/bridges/brass/brlink"
	"github.com/aldis-im/aldis/bridges/brass/relay"
	"github.com/aldis-im/aldis/bridges/brass/sis"
	"github.com/aldis-im/aldis/bridges/brass/zh"
	"github.com/aldis-im/aldis/core/certs"
	"github.com/aldis-im/aldis/core/config"
	"github.com/aldis-im/aldis/core/obs"
	"github.com/aldis-im/aldis/core/queue"
	"github.com/aldis-im/aldis/mail/mta"
	"github.com/aldis-im/aldis/mail/smtpin"
	"github.com/aldis-im/aldis/xmppcore/jid"
	"github.com/aldis-im/aldis/xmppcore/muc"
	"github.com/aldis-im/aldis/xmppcore/router"
	"github.com/aldis-im/aldis/xmppcore/seclabel"
	"github.com/aldis-im/aldis/xmppcore/wire"
)

// linkService runs the [[link]]s: constrained links to far-side servers,
// carried store-and-forward by bridges/brass/relay.
type linkService struct {
	links  []*relay.Link
	byMail map[string]*relay.Link // mail domain → the link that reaches it
	// mta is the mail relay, set once it runs: mail crossing the links
	// enters it, and failures are reported through it.
	mta    atomic.Pointer[mta.MTA]
	rooms  []*muc.Service
	log    *slog.Logger
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// linkDomains lists the peer domains of every link: the chat services
// keep sending to them through an outage, since the link queues durably.
func linkDomains(cfg config.Config) []string {
	var out []string
	for _, l := range cfg.Links {
		out = append(out, l.PeerDomains...)
	}
	return out
}

// localLinkDomains lists the domains served here that may talk over a link.
func localLinkDomains(cfg config.Config) []string {
	var out []string
	for _, d := range cfg.Domains() {
		out = append(out, d)
		if cfg.MUC.Enabled {
			out = append(out, cfg.MUCDomainOf(d))
		}
	}
	if len(cfg.IRC.Maps) > 0 {
		out = append(out, cfg.IRCDomain())
	}
	if cfg.Mail.Enabled && len(cfg.Mail.Maps) > 0 {
		out = append(out, cfg.MailGatewayDomain())
	}
	return out
}

// startLinks builds every [[link]], routes its peer domains to it and
// starts it; nil without links.
func startLinks(cfg config.Config, log *slog.Logger, m *obs.Metrics, st queue.Store, rt *router.Router,
	labels *seclabel.Guard, rooms []*muc.Service, src *certs.Hosts) (*linkService, error) {
	if len(cfg.Links) == 0 {
		return nil, nil
	}
	s := &linkService{byMail: map[string]*relay.Link{}, rooms: rooms, log: log}
	local := localLinkDomains(cfg)
	for i, lc := range cfg.Links {
		key := fmt.Sprintf("link[%d] (%s)", i, lc.Name)
		llog := log.With("link", lc.Name)
		bearer, err := newBearer(cfg, lc, local, src, llog)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", key, err)
		}
		rc := relay.Config{
			Name: lc.Name, LocalDomains: local, PeerDomains: lc.PeerDomains, Bearer: bearer, Store: st,
			Owner:  nodeName(cfg, lc),
			Inject: rt.Inject, Bounce: rt.Deliver,
			Allowed:         linkAllowed(labels),
			OnState:         s.onState(lc.PeerDomains),
			Presence:        relay.PresenceMode(lc.Presence),
			StripChatStates: lc.StripChatStates == nil || *lc.StripChatStates,
			StripXHTML:      lc.StripXHTML == nil || *lc.StripXHTML,
			ChatTTL:         lc.TTLChat, GroupchatTTL: lc.TTLGroupchat, EmailTTL: lc.TTLMail,
			Window: lc.Window, EMCON: lc.EMCON, Metrics: m, Logger: llog,
		}
		if len(lc.MailDomains) > 0 {
			rc.Mail = s.mailIn(lc.Name)
			rc.MailFailed = s.mailFailed
		}
		lk, err := relay.New(rc)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", key, err)
		}
		for _, d := range lc.PeerDomains {
			rt.SetRemoteFor(d, lk)
			rt.SetQueryTimeout(d, lc.LinkIQTimeout())
		}
		for _, d := range lc.MailDomains {
			s.byMail[d] = lk
		}
		s.links = append(s.links, lk)
		llog.Info("link configured", "transport", lc.Transport, "peer_domains", lc.PeerDomains, "rate", lc.LinkRate())
	}
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	for _, lk := range s.links {
		s.wg.Go(func() {
			if err := lk.Run(ctx); err != nil {
				log.Error("link stopped", "err", err)
			}
		})
	}
	return s, nil
}

// nodeName is this end's name on a link.
func nodeName(cfg config.Config, l config.Link) string {
	if l.Node != "" {
		return l.Node
	}
	return cfg.Server.Domain
}

// newBearer builds the carrier a [[link]] names.
func newBearer(cfg config.Config, l config.Link, local []string, src *certs.Hosts, log *slog.Logger) (relay.Bearer, error) {
	switch l.Transport {
	case config.LinkRCOP:
		peer, err := sis.ParseAddr(l.SISPeer)
		if err != nil {
			return nil, err
		}
		return zh.NewRCOP(zh.RCOPConfig{
			Name: l.Name, Node: l.SIS, Peer: peer, SAP: uint8(l.LinkSAP()), ClientConfirm: l.Confirm != "node",
			LocalDomains: local, PeerDomains: l.PeerDomains, Logger: log,
		})
	case config.LinkXEP0361:
		return newStreamBearer(l, local, src, log)
	case config.LinkBRLINKSIS, config.LinkBRLINKTCP:
		return newBRLINKBearer(cfg, l, log)
	}
	return nil, fmt.Errorf("unknown transport %q", l.Transport)
}

// newStreamBearer builds a XEP-0361 zero-handshake link.
func newStreamBearer(l config.Link, local []string, src *certs.Hosts, log *slog.Logger) (relay.Bearer, error) {
	sc := zh.StreamConfig{
		Name: l.Name, Connect: l.Connect, Listen: l.Listen, LocalDomains: local, PeerDomains: l.PeerDomains,
		TLS: l.TLS, Insecure: l.Insecure, Lenient: l.Lenient, SM: l.SM, Logger: log,
		Certificate: func() *tls.Certificate { return src.Certificate(local[0]) },
	}
	switch {
	case l.Connect != "" && l.Listen != "":
		sc.Direction = zh.Both
	case l.Connect != "":
		sc.Direction = zh.Initiate
	default:
		sc.Direction = zh.Accept
	}
	var err error
	if sc.Identity, err = zh.ParseIdentity(l.Identity); err != nil {
		return nil, err
	}
	if sc.Compression, err = zh.ParseCompression(l.LinkCompression()); err != nil {
		return nil, err
	}
	if l.Pin != "" {
		p, err := zh.ParsePin(l.Pin)
		if err != nil {
			return nil, err
		}
		sc.Pins = []zh.Pin{p}
	}
	if l.CAFile != "" {
		pem, err := os.ReadFile(l.CAFile)
		if err != nil {
			return nil, fmt.Errorf("ca_file: %w", err)
		}
		sc.RootCAs = x509.NewCertPool()
		if !sc.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("ca_file: no PEM certificates in %s", l.CAFile)
		}
	}
	for _, a := range l.AllowIPs {
		p, err := parsePrefix(a)
		if err != nil {
			return nil, fmt.Errorf("allow_ips: %w", err)
		}
		sc.AllowedIPs = append(sc.AllowedIPs, p)
	}
	return zh.NewStream(sc)
}

// parsePrefix reads an address or a CIDR prefix.
func parsePrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		return netip.ParsePrefix(s)
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// linkAllowed checks a stanza against the clearance of the link it is
// about to cross, as the router did at enqueue: the clearance may have
// been reloaded since.
func linkAllowed(g *seclabel.Guard) func(st *wire.Element) bool {
	if g == nil {
		return nil
	}
	return func(st *wire.Element) bool {
		to, err := jid.Parse(st.Attr("to"))
		if err != nil {
			return false
		}
		return g.EgressAllowed(st, "peer:"+to.Domain())
	}
}

// onState tells the chat services when the far side comes and goes, so
// federated rooms (XEP-0289) mark its occupants and rejoin it.
func (s *linkService) onState(domains []string) func(relay.State) {
	return func(st relay.State) {
		for _, svc := range s.rooms {
			for _, d := range domains {
				switch st {
				case relay.StateDown:
					svc.PeerDown(d)
				case relay.StateUp, relay.StateDegraded:
					svc.PeerUp(d)
				}
			}
		}
	}
}

// setMTA connects the links to the mail relay once it runs.
func (s *linkService) setMTA(m *mta.MTA) {
	if s != nil && m != nil {
		s.mta.Store(m)
	}
}

// mailIn hands a mail that crossed link name to the mail relay, as if an
// SMTP client had sent it; a refusal goes back to its sender as a DSN.
func (s *linkService) mailIn(name string) func(ctx context.Context, env relay.Envelope, msg []byte) error {
	return func(ctx context.Context, env relay.Envelope, msg []byte) error {
		m := s.mta.Load()
		if m == nil {
			return errors.New("the mail relay is not running")
		}
		// The same mail delivered again by the link gets the same ID, so
		// the relay queues it once.
		id := "link-" + mailKey(name, env, msg)
		err := m.Accept(ctx, smtpin.Envelope{ID: id, From: env.From, To: env.To, Helo: name, Remote: "link:" + name}, msg)
		var se *smtp.SMTPError
		if errors.As(err, &se) && se.Code >= 500 {
			s.log.Warn("mail from the link refused; its sender gets a DSN", "link", name, "from", env.From, "to", env.To, "code", se.Code, "reason", se.Message)
			status := fmt.Sprintf("%d.%d.%d", se.EnhancedCode[0], se.EnhancedCode[1], se.EnhancedCode[2])
			return m.Report(ctx, id, env.From, env.To, msg, status, fmt.Errorf("%d %s", se.Code, se.Message))
		}
		return err
	}
}

// mailFailed reports mail a link could not carry: expired (4.4.7) or
// refused by the far side.
func (s *linkService) mailFailed(ctx context.Context, env relay.Envelope, msg []byte, cause error) error {
	m := s.mta.Load()
	if m == nil {
		return errors.New("the mail relay is not running")
	}
	status := "5.4.0"
	if errors.Is(cause, relay.ErrExpired) {
		status = "4.4.7"
	} else if errors.Is(cause, relay.ErrForbidden) {
		status = "5.7.1"
	}
	return m.Report(ctx, "link-failed-"+mailKey("", env, msg), env.From, env.To, msg, status, cause)
}

// mailKey names a mail crossing a link (name, "" for our own) stably, so
// that handling it twice is recognised.
func mailKey(name string, env relay.Envelope, msg []byte) string {
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00%s\x00%s\x00", name, env.From, strings.Join(env.To, ","))
	h.Write(msg)
	return hex.EncodeToString(h.Sum(nil)[:12])
}

// linkSender sends mail for the links' mail domains over the links, and
// the rest through next (SMTP).
type linkSender struct {
	next mta.Sender
	s    *linkService
}

func (ls linkSender) Send(ctx context.Context, from, to string, data []byte) error {
	if ls.s != nil {
		if lk := ls.s.byMail[mta.DomainOf(to)]; lk != nil {
			return lk.SendMail(ctx, relay.Envelope{From: from, To: []string{to}}, data, mailPrecedence(data))
		}
	}
	return ls.next.Send(ctx, from, to, data)
}

// mailPrecedence reads RFC 6477's MMHS-Primary-Precedence (0 deferred to
// 5 override) from the header; routine without it.
func mailPrecedence(data []byte) brlink.Precedence {
	msg, err := mail.ReadMessage(bytes.NewReader(data))
	if err != nil {
		return brlink.Routine
	}
	v, _, _ := strings.Cut(msg.Header.Get("MMHS-Primary-Precedence"), ";")
	if n, err := strconv.Atoi(strings.TrimSpace(v)); err == nil && n >= 0 && n <= int(brlink.Override) {
		return brlink.Precedence(n)
	}
	return brlink.Routine
}

// shutdown stops the links: each commits what it holds to its queue.
func (s *linkService) shutdown(ctx context.Context) {
	if s == nil {
		return
	}
	s.cancel()
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
	}
}

// newBRLINKBearer builds a BRLINK link between two Aldis servers, over a
// STANAG 5066 node or TCP.
func newBRLINKBearer(cfg config.Config, l config.Link, log *slog.Logger) (relay.Bearer, error) {
	bc := relay.BRLINKConfig{
		Name: nodeName(cfg, l), Compression: l.LinkCompression(), Rate: l.LinkRate(), Logger: log,
	}
	if l.Transport == config.LinkBRLINKTCP {
		return relay.NewTCPBearer(relay.TCPConfig{BRLINKConfig: bc, Connect: l.Connect, Listen: l.Listen, MTU: l.MTU})
	}
	peer, err := sis.ParseAddr(l.SISPeer)
	if err != nil {
		return nil, err
	}
	return relay.NewSISBearer(relay.SISConfig{
		BRLINKConfig: bc, Node: l.SIS, Peer: peer, SAP: uint8(l.LinkSAP()), NonARQ: l.Broadcast,
	})
}
