// Package ircmuc is the IRC gateway: an XMPP service that links MUC rooms to IRC channels, so IRC users appear as room occupants and room occupants on IRC.
//
// The bridge owns a domain of its own (e.g. irc.example.org) and speaks to
// the XMPP side only through XMPP.Deliver and Route, so it runs the same way
// in-process and as an XEP-0114 component. It never changes the rooms: it
// joins each linked room as an occupant itself (its nick is the channel's
// name), which shows it the XMPP occupants and their messages, and it joins
// each IRC user of the channel as an occupant from a JID on its domain,
// "<ircnick>%<network>@<domain>/<n>".
//
// On the IRC side each network has one listener connection, which joins every
// linked channel and is the only one whose channel traffic is read, so each
// IRC message reaches a room exactly once. XMPP occupants speak through a
// connection of their own, one per (XMPP user, network) from a shared pool
// (core/pool), or, beyond the network's budget, through the listener as
// "<nick> text" (or with RELAYMSG under their own name where the server
// offers it). Channel lines survive a lost connection (fromxmpp.go).
//
// Each network's state (its links, the IRC users, the XMPP occupants) is
// owned by one goroutine that receives events on a bounded channel: IRC's
// QUIT and NICK concern every channel of the network at once, and the pooled
// connections are per network, so the network is the unit that owns them.
package ircmuc

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/aldis-im/aldis/core/obs"
	"github.com/aldis-im/aldis/core/pool"
	"github.com/aldis-im/aldis/mapping"
	"github.com/aldis-im/aldis/xmppcore/jid"
	"github.com/aldis-im/aldis/xmppcore/seclabel"
	"github.com/aldis-im/aldis/xmppcore/stanza"
	"github.com/aldis-im/aldis/xmppcore/wire"
)

// XMPP is the bridge's way to the XMPP side: the router in-process, or a
// component connection. Deliver must not block.
type XMPP interface {
	Deliver(st *wire.Element, from, to jid.JID)
}

// Config configures a Bridge.
type Config struct {
	// Domain is the bridge's own domain, e.g. irc.example.org.
	Domain string
	XMPP   XMPP
	Map    *mapping.Map
	// Labels enforces the links' labels and clearances; nil: labels off.
	Labels *seclabel.Guard
	// Linger keeps a user's IRC connection open after they left the last room; default 60s.
	Linger time.Duration
	// RejoinInterval is how often the bridge tries again to join a room it is not in (the room
	// does not exist yet, or refused it); default 30s.
	RejoinInterval time.Duration
	// OutageGrace is how long IRC users stay in the rooms after the listener lost its network;
	// then they leave with status 333 (and come back from NAMES when it returns). Default 120s.
	OutageGrace time.Duration
	// Queue bounds the events waiting for a network's goroutine; default 4096. Stanzas beyond it
	// are dropped and counted.
	Queue   int
	Log     *slog.Logger
	Metrics *obs.Metrics
}

// userKey names one per-user IRC connection.
type userKey struct {
	User    string // the XMPP user's bare JID, or the occupant JID when the room hides real JIDs
	Network string
}

// Bridge is the IRC gateway service.
type Bridge struct {
	cfg    Config
	domain jid.JID
	self   jid.JID // the bridge's own occupant JID in every room
	log    *slog.Logger
	pool   *pool.Pool[userKey, *userConn]

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu       sync.Mutex
	m        *mapping.Map
	networks map[string]*network
	hints    map[userKey]string // the IRC nick a connection being dialled should ask for

	dropped, relayed, denied, fromIRC, toIRC *metrics.Counter
}

// New builds a bridge for the links of cfg.Map; Start starts it.
func New(cfg Config) (*Bridge, error) {
	d, err := jid.New("", cfg.Domain, "")
	if err != nil {
		return nil, fmt.Errorf("ircmuc: domain %q: %w", cfg.Domain, err)
	}
	self, err := d.WithResource("bridge")
	if err != nil {
		return nil, fmt.Errorf("ircmuc: %w", err)
	}
	if cfg.XMPP == nil || cfg.Map == nil {
		return nil, errors.New("ircmuc: XMPP and Map are required")
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Metrics == nil {
		cfg.Metrics = obs.NewMetrics()
	}
	if cfg.Linger <= 0 {
		cfg.Linger = 60 * time.Second
	}
	if cfg.RejoinInterval <= 0 {
		cfg.RejoinInterval = 30 * time.Second
	}
	if cfg.OutageGrace <= 0 {
		cfg.OutageGrace = 120 * time.Second
	}
	if cfg.Queue <= 0 {
		cfg.Queue = 4096
	}
	if err := checkLabels(cfg.Labels, cfg.Map); err != nil {
		return nil, err
	}
	b := &Bridge{cfg: cfg, domain: d, self: self, log: cfg.Log, m: cfg.Map,
		networks: map[string]*network{}, hints: map[userKey]string{}}
	b.ctx, b.cancel = context.WithCancel(context.Background())
	b.pool = pool.New(pool.Config[userKey, *userConn]{
		Name:    "irc",
		Dial:    b.dialUser,
		Group:   func(k userKey) string { return k.Network },
		Budget:  b.budget,
		Linger:  cfg.Linger,
		Metrics: cfg.Metrics,
		Log:     cfg.Log,
	})
	m := cfg.Metrics
	b.dropped = m.Counter("aldis_ircmuc_dropped_total")
	b.relayed = m.Counter("aldis_ircmuc_relayed_total")
	b.denied = m.Counter("aldis_ircmuc_label_denied_total")
	b.fromIRC = m.Counter(`aldis_ircmuc_messages_total{dir="from_irc"}`)
	b.toIRC = m.Counter(`aldis_ircmuc_messages_total{dir="to_irc"}`)
	return b, nil
}

// Domain is the bridge's domain, to register it with the router.
func (b *Bridge) Domain() string { return b.domain.Domain() }

// Start connects to every network of the map and joins the linked rooms.
func (b *Bridge) Start() {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, n := range b.m.Networks() {
		if links := b.m.LinksOn(n.Name); len(links) > 0 {
			b.startNetwork(n, links)
		}
	}
}

// startNetwork runs a network's goroutine; b.mu is held.
func (b *Bridge) startNetwork(cfg mapping.Network, links []mapping.Link) {
	ctx, cancel := context.WithCancel(b.ctx)
	n := newNetwork(b, cfg, cancel)
	b.networks[cfg.Name] = n
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		n.run(ctx, links)
	}()
}

// Apply switches to a reloaded map: networks that changed start again, and
// the links added, removed or changed on the others are applied without
// touching the rest.
func (b *Bridge) Apply(m *mapping.Map, ch mapping.Changes) error {
	if err := checkLabels(b.cfg.Labels, m); err != nil {
		return err
	}
	b.mu.Lock()
	if b.ctx.Err() != nil {
		b.mu.Unlock()
		return errors.New("ircmuc: closed")
	}
	b.m = m
	restart := map[string]bool{}
	var old []*network
	for _, name := range ch.Networks {
		restart[name] = true
		if n := b.networks[name]; n != nil {
			n.stop()
			old = append(old, n)
			delete(b.networks, name)
		}
	}
	b.mu.Unlock()
	// A network's new connections start once the old ones quit, so that its nicks are free.
	for _, n := range old {
		<-n.done
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, net := range m.Networks() {
		if b.networks[net.Name] == nil {
			if links := m.LinksOn(net.Name); len(links) > 0 {
				b.startNetwork(net, links)
			}
		}
	}
	touched := map[string]bool{}
	for _, l := range slices.Concat(ch.Added, ch.Removed, ch.Changed) {
		if !restart[l.Network] {
			touched[l.Network] = true
		}
	}
	for _, name := range slices.Sorted(maps.Keys(touched)) {
		n := b.networks[name]
		if n == nil {
			continue
		}
		n.post(netEvent{kind: evLinks, links: m.LinksOn(name)})
	}
	return nil
}

// Close leaves the rooms, quits IRC and waits for the networks' goroutines,
// or for ctx.
func (b *Bridge) Close(ctx context.Context) error {
	b.mu.Lock()
	for _, n := range b.networks {
		n.stop()
	}
	b.mu.Unlock()
	done := make(chan struct{})
	go func() {
		b.wg.Wait()
		close(done)
	}()
	var err error
	select {
	case <-done:
	case <-ctx.Done():
		err = fmt.Errorf("ircmuc: close: %w", ctx.Err())
	}
	b.cancel()
	_ = b.pool.Close()
	return err
}

// Rejoin joins every linked room again: the way to the XMPP server was lost
// and is back (a component reconnected), so the rooms may have dropped the
// bridge and its IRC users.
func (b *Bridge) Rejoin() {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, n := range b.networks {
		n.post(netEvent{kind: evRejoin})
	}
}

// Identity implements router.Service.
func (b *Bridge) Identity() (category, typ, name string) { return "gateway", "irc", "IRC gateway" }

// Route implements router.Service: it hands st to the goroutine of the
// network it concerns and never blocks.
func (b *Bridge) Route(st *wire.Element, from, to jid.JID) {
	if to.Local() == "" && to.Resource() == "" {
		b.serviceIQ(st, from, to)
		return
	}
	b.mu.Lock()
	var n *network
	if to.Local() == "" {
		// To the bridge's own occupant: find the room's network.
		if l, ok := b.m.ByRoom(from.Bare().String()); ok {
			n = b.networks[l.Network]
		}
	} else if net, ok := networkOf(to.Local()); ok {
		n = b.networks[net]
	}
	b.mu.Unlock()
	if n == nil {
		if st.Local() != "presence" {
			b.refuse(st, from, to, stanza.Cancel, "item-not-found")
		}
		return
	}
	if !n.post(netEvent{kind: evXMPP, st: st, from: from, to: to}) {
		b.refuse(st, from, to, stanza.Wait, "resource-constraint")
	}
}

// serviceIQ answers what is addressed to the bridge's domain itself.
func (b *Bridge) serviceIQ(st *wire.Element, from, to jid.JID) {
	if st.Local() != "iq" || (st.Attr("type") != "get" && st.Attr("type") != "set") {
		if st.Local() == "message" {
			b.refuse(st, from, to, stanza.Cancel, "service-unavailable")
		}
		return
	}
	p := stanza.Payload(st)
	if p == nil || st.Attr("type") != "get" || p.Space != stanza.NSDiscoInfo && p.Space != stanza.NSPing {
		b.refuse(st, from, to, stanza.Cancel, "service-unavailable")
		return
	}
	res := stanza.Result(st)
	if p.Space == stanza.NSDiscoInfo {
		q := res.AddChild(wire.New("query", stanza.NSDiscoInfo))
		id := q.AddChild(wire.New("identity", ""))
		id.SetAttr("category", "gateway").SetAttr("type", "irc").SetAttr("name", "IRC gateway")
		q.AddChild(wire.New("feature", "")).SetAttr("var", stanza.NSDiscoInfo)
	}
	b.send(res, to, from)
}

// refuse answers st with an error, unless it is one.
func (b *Bridge) refuse(st *wire.Element, from, to jid.JID, typ, cond string) {
	if t := st.Attr("type"); t == "error" || t == "result" {
		return
	}
	b.send(stanza.Error(st, typ, cond, ""), to, from)
}

// send delivers st with its addresses set.
func (b *Bridge) send(st *wire.Element, from, to jid.JID) {
	st.SetAttr("from", from.String())
	st.SetAttr("to", to.String())
	b.cfg.XMPP.Deliver(st, from, to)
}

// budget is the per-user connection budget of a network.
func (b *Bridge) budget(network string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	if n, ok := b.m.Network(network); ok {
		if n.MaxConnections > 0 {
			return n.MaxConnections
		}
		return mapping.DefaultMaxConnections
	}
	return 1
}

// network returns the running network called name, or nil.
func (b *Bridge) network(name string) *network {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.networks[name]
}
