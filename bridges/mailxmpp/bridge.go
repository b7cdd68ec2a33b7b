// Package mailxmpp is the mail ⇄ XMPP bridge: mail for mapped addresses becomes messages to users and rooms, and messages to escaped JIDs on the gateway domain (or in mapped rooms) become mail, with threads and security labels carried across.
//
// The bridge is a service on the gateway domain. It meets the XMPP side
// through XMPP (one method: deliver a stanza) and Route (stanzas for its
// domain), so it could run as an XEP-0114 component as well as in-process;
// it meets the mail side as the MTA's mta.Local (mail in) and through an
// Outbox (mail out, on the durable queue).
package mailxmpp

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aldis-im/aldis/mail/mta"
	"github.com/aldis-im/aldis/mapping/mailmap"
	"github.com/aldis-im/aldis/xmppcore/jid"
	"github.com/aldis-im/aldis/xmppcore/seclabel"
	"github.com/aldis-im/aldis/xmppcore/stanza"
	"github.com/aldis-im/aldis/xmppcore/wire"
)

// XMPP is the bridge's way into the XMPP side: router.Router in-process,
// a component connection otherwise. Deliver must not block.
type XMPP interface {
	Deliver(st *wire.Element, from, to jid.JID)
}

// Outbox queues mail to send, durably: mta.MTA.
type Outbox interface {
	Submit(ctx context.Context, s mta.Submission) error
}

// Config sets up a Bridge. Domain, Hostname, XMPP, Outbox and Map are
// required.
type Config struct {
	// Domain is the gateway domain: alice\40example.com@<Domain> is the
	// address alice@example.com.
	Domain string
	// Hostname is the mail host name, for Message-IDs.
	Hostname string
	XMPP     XMPP
	Outbox   Outbox
	Map      *mailmap.Map
	// Labels decides labels; nil means labels are off.
	Labels *seclabel.Guard
	// AuthServID is the authserv-id of the relaying MTA whose
	// Authentication-Results are trusted; empty trusts none, so a domain
	// that requires SPF or DKIM gets no mail.
	AuthServID string
	// Threads bounds the thread table (default 10000 threads).
	Threads int
	// Queue bounds the messages waiting to become mail (default 256); more
	// are refused with resource-constraint.
	Queue int
	// JoinRetry is how often rooms the bridge is not in are joined again
	// (default 30 seconds).
	JoinRetry time.Duration
	// Files keeps mail attachments and returns links to them (the HTTP
	// file upload service); nil: attachments are only named.
	Files  Files
	Logger *slog.Logger
	Now    func() time.Time
}

// Files stores a file and returns the URL it is served from, and opens
// a file it stores by that URL.
type Files interface {
	Store(name, contentType string, data []byte) (string, error)
	Open(url string) (name, contentType string, data []byte, ok bool)
}

// Bridge is the running bridge.
type Bridge struct {
	cfg     Config
	domain  jid.JID
	log     *slog.Logger
	m       atomic.Pointer[mailmap.Map]
	threads *threads
	out     chan outJob
	kick    chan struct{} // capacity 1: join rooms now
	pending *pendingSet   // mail handed to XMPP, in case it is refused

	mu     sync.Mutex
	joined map[string]bool // room bare JID (folded) → in the room
}

// New checks cfg and builds a bridge; Run starts its work.
func New(cfg Config) (*Bridge, error) {
	if cfg.Domain == "" || cfg.Hostname == "" || cfg.XMPP == nil || cfg.Outbox == nil || cfg.Map == nil {
		return nil, errors.New("mailxmpp: Domain, Hostname, XMPP, Outbox and Map are required")
	}
	d, err := jid.New("", cfg.Domain, "")
	if err != nil {
		return nil, fmt.Errorf("mailxmpp: gateway domain %q: %w", cfg.Domain, err)
	}
	if cfg.Threads <= 0 {
		cfg.Threads = 10000
	}
	if cfg.Queue <= 0 {
		cfg.Queue = 256
	}
	if cfg.JoinRetry <= 0 {
		cfg.JoinRetry = 30 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	b := &Bridge{
		cfg: cfg, domain: d, log: cfg.Logger.With("component", "mailxmpp"),
		threads: newThreads(cfg.Threads), out: make(chan outJob, cfg.Queue),
		kick: make(chan struct{}, 1), joined: map[string]bool{}, pending: newPendingSet(),
	}
	b.m.Store(cfg.Map)
	return b, nil
}

// Domain returns the gateway domain.
func (b *Bridge) Domain() jid.JID { return b.domain }

// SetMap switches to a reloaded map; rooms new to it are joined.
func (b *Bridge) SetMap(m *mailmap.Map) {
	b.m.Store(m)
	select {
	case b.kick <- struct{}{}:
	default:
	}
}

func (b *Bridge) mapping() *mailmap.Map { return b.m.Load() }

// Identity is the disco identity of the gateway (PROTOCOLS.md §5.3).
func (b *Bridge) Identity() (category, typ, name string) { return "gateway", "smtp", "Mail gateway" }

// Run joins the mapped rooms and turns queued messages into mail until
// ctx ends.
func (b *Bridge) Run(ctx context.Context) error {
	t := time.NewTicker(b.cfg.JoinRetry)
	defer t.Stop()
	b.joinRooms()
	for {
		select {
		case <-ctx.Done():
			return nil
		case j := <-b.out:
			b.sendMail(ctx, j)
		case <-b.kick:
			b.joinRooms()
		case <-t.C:
			b.joinRooms()
		}
	}
}

// Route takes a stanza for the gateway domain; it never blocks.
func (b *Bridge) Route(st *wire.Element, from, to jid.JID) {
	switch st.Local() {
	case "message":
		b.routeMessage(st, from, to)
	case "presence":
		b.routePresence(st, from, to)
	case "iq":
		b.routeIQ(st, from, to)
	}
}

func (b *Bridge) routeIQ(st *wire.Element, from, to jid.JID) {
	switch t := st.Attr("type"); {
	case t == "result" || t == "error":
		return
	case t == "get" && to.Local() == "" && to.Resource() == "":
		if p := stanza.Payload(st); p != nil && p.Space == stanza.NSDiscoInfo && p.Local() == "query" {
			res := stanza.Result(st)
			q := res.AddChild(wire.New("query", stanza.NSDiscoInfo))
			cat, typ, name := b.Identity()
			q.AddChild(wire.New("identity", "")).SetAttr("category", cat).SetAttr("type", typ).SetAttr("name", name)
			q.AddChild(wire.New("feature", "")).SetAttr("var", stanza.NSDiscoInfo)
			q.AddChild(wire.New("feature", "")).SetAttr("var", "urn:xmpp:sec-label:0")
			b.answer(res, from, to)
			return
		}
	}
	b.refuse(st, from, to, stanza.Cancel, "service-unavailable", "")
}

// routePresence answers subscriptions to escaped addresses, so they can
// sit in rosters, and follows the bridge's own room presence.
func (b *Bridge) routePresence(st *wire.Element, from, to jid.JID) {
	if to.Local() == "" && to.Resource() != "" {
		b.roomPresence(st, from, to)
		return
	}
	if to.Local() == "" {
		return
	}
	reply := func(typ string) {
		p := wire.New("presence", "")
		if typ != "" {
			p.SetAttr("type", typ)
		}
		p.SetAttr("from", to.Bare().String()).SetAttr("to", from.Bare().String())
		b.cfg.XMPP.Deliver(p, to.Bare(), from.Bare())
	}
	switch st.Attr("type") {
	case "subscribe":
		reply("subscribed")
		reply("")
	case "probe":
		reply("")
	}
}

func newID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// Map returns the map in use.
func (b *Bridge) Map() *mailmap.Map { return b.mapping() }
