package ircmuc

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/aldis-im/aldis/core/label"
	"github.com/aldis-im/aldis/irc"
	"github.com/aldis-im/aldis/mapping"
	"github.com/aldis-im/aldis/xmppcore/seclabel"
	"golang.org/x/time/rate"
)

// userConn is an XMPP user's IRC connection on one network, shared by the
// rooms of that network the user is in (through the pool).
type userConn struct {
	key    userKey
	c      *irc.Client
	cancel context.CancelFunc

	mu   sync.Mutex
	nick string
}

// Nick is the connection's current IRC nick.
func (u *userConn) Nick() string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.nick
}

func (u *userConn) setNick(n string) {
	u.mu.Lock()
	u.nick = n
	u.mu.Unlock()
}

// Close quits IRC; the pool calls it after the linger.
func (u *userConn) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := u.c.Quit(ctx, "")
	u.cancel()
	return err
}

// hint records the nick a connection about to be dialled should ask for.
func (b *Bridge) hint(k userKey, nick string) {
	b.mu.Lock()
	b.hints[k] = nick
	b.mu.Unlock()
}

// dialUser opens an XMPP user's connection and waits until it is registered.
func (b *Bridge) dialUser(ctx context.Context, k userKey) (*userConn, error) {
	b.mu.Lock()
	nick := b.hints[k]
	delete(b.hints, k)
	netCfg, ok := b.m.Network(k.Network)
	b.mu.Unlock()
	if !ok {
		return nil, fmt.Errorf("ircmuc: network %q is gone", k.Network)
	}
	if nick == "" {
		nick = irc.FallbackNick(k.User, 9)
	}
	cfg, err := clientConfig(netCfg, nick, b.log.With("user", k.User))
	if err != nil {
		return nil, err
	}
	cfg.RealName = k.User
	c := irc.New(cfg)
	runCtx, cancel := context.WithCancel(b.ctx)
	u := &userConn{key: k, c: c, cancel: cancel, nick: nick}
	go func() { _ = c.Run(runCtx) }()
	ready := make(chan struct{})
	go func() {
		first := true
		for ev := range c.Events() {
			if ev.Kind == irc.Connected {
				u.setNick(c.State().Nick)
				if first {
					first = false
					close(ready)
				}
			}
			if ev.Kind == irc.Unsent {
				if n := b.network(k.Network); n != nil {
					n.post(netEvent{kind: evUser, uc: u, irc: ev})
				}
				continue
			}
			if ev.Kind != irc.Received {
				continue
			}
			if !userEvent(c, u, ev.Msg) {
				continue
			}
			if n := b.network(k.Network); n != nil {
				n.post(netEvent{kind: evUser, uc: u, irc: ev})
			}
		}
	}()
	select {
	case <-ready:
		return u, nil
	case <-ctx.Done():
	case <-c.Done():
	}
	cancel()
	return nil, fmt.Errorf("ircmuc: connect %s to %s: %w", k.User, k.Network, errors.Join(ctx.Err(), errors.New("not registered")))
}

// A connection keeps up to outboxLines of the channel lines it was given
// across an outage, each for up to outboxAge.
const (
	outboxLines = 256
	outboxAge   = 2 * time.Minute
)

// clientConfig is the irc.Config of a connection to network n as nick.
func clientConfig(n mapping.Network, nick string, log *slog.Logger) (irc.Config, error) {
	cfg := irc.Config{
		Addr: n.Servers[0], Addrs: n.Servers[1:], Password: n.Password, Nick: nick,
		SASL:     irc.SASL{Mechanism: n.SASLMechanism, Login: n.SASLLogin, Password: n.SASLPassword},
		NickServ: n.NickServ, NickServAccount: n.NickServAccount, Network: n.Name, Log: log,
		// What XMPP users say on a channel survives a lost connection: sent after the reconnect,
		// or told to them when it waited too long (relayEvent).
		Outbox: outboxLines, OutboxAge: outboxAge,
	}
	if n.FloodInterval > 0 {
		cfg.Rate = rate.Every(n.FloodInterval)
	}
	cfg.Burst = n.FloodBurst
	if n.NoTLS {
		return cfg, nil
	}
	tc := &tls.Config{InsecureSkipVerify: n.TLSSkipVerify, MinVersion: tls.VersionTLS12} //nolint:gosec // an operator's explicit choice for test networks
	if n.TLSCAFile != "" {
		pem, err := os.ReadFile(n.TLSCAFile)
		if err != nil {
			return cfg, fmt.Errorf("network %s: %w", n.Name, err)
		}
		tc.RootCAs = x509.NewCertPool()
		if !tc.RootCAs.AppendCertsFromPEM(pem) {
			return cfg, fmt.Errorf("network %s: no certificate in %s", n.Name, n.TLSCAFile)
		}
	}
	if n.TLSCertFile != "" {
		cert, err := tls.LoadX509KeyPair(n.TLSCertFile, n.TLSKeyFile)
		if err != nil {
			return cfg, fmt.Errorf("network %s: client certificate: %w", n.Name, err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	cfg.TLS = tc
	return cfg, nil
}

// linkLabels is the label IRC messages of link l get and the clearance what
// goes to its channel must have; nil, nil with labels off.
func linkLabels(g *seclabel.Guard, l mapping.Link, n mapping.Network) (*label.Label, *label.Clearance, error) {
	if g == nil {
		return nil, nil, nil
	}
	set := g.Policies()
	lab := g.Default()
	if l.Label != "" {
		var err error
		if lab, err = set.ParseLabel(l.Label); err != nil {
			return nil, nil, fmt.Errorf("link %s: label: %w", l.Room, err)
		}
	}
	expr := l.Clearance
	if expr == "" {
		expr = n.Clearance
	}
	clr := set.Governing.DefaultClearance
	if expr != "" {
		var err error
		if clr, err = set.ParseClearance(expr); err != nil {
			return nil, nil, fmt.Errorf("link %s: clearance: %w", l.Room, err)
		}
	}
	return lab, clr, nil
}

// checkLabels refuses a map whose labels the policy does not accept: the
// bridge is misconfigured (PROTOCOLS §7.5).
func checkLabels(g *seclabel.Guard, m *mapping.Map) error {
	if g == nil {
		return nil
	}
	for _, l := range m.Links() {
		n, _ := m.Network(l.Network)
		if _, _, err := linkLabels(g, l, n); err != nil {
			return fmt.Errorf("ircmuc: %w", err)
		}
	}
	return nil
}

// userEvent reports whether a line u's connection c read concerns the bridge: private messages
// to the user, the connection's own nick changes, joins (which answer admissions, admit.go),
// topic changes (which answer the room's questions) and kicks, and channel errors. Channel traffic is the listener's.
func userEvent(c *irc.Client, u *userConn, m irc.Message) bool {
	switch m.Command {
	case "PRIVMSG", "NOTICE":
		t := irc.Param(&m, 0)
		return t != "" && !strings.ContainsRune("#&+!", rune(t[0]))
	case "JOIN", "KICK", "TOPIC":
		who := m.Nick()
		if m.Command == "KICK" {
			who = irc.Param(&m, 1)
		}
		return c.Fold(who) == c.Fold(u.Nick())
	case "NICK", "471", "473", "474", "475", "482":
		return true
	}
	return false
}
