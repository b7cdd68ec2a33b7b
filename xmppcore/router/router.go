// Package router delivers stanzas between local sessions and services under the RFC 6121 rules.
//
// Each user (bare JID) has a hub: one goroutine that owns that user's
// sessions, presence, roster cache and blocklist and receives events on a
// bounded channel. Sessions and other hubs never touch that state directly,
// so it needs no locks. The router keeps the registry of hubs.
package router

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"github.com/VictoriaMetrics/metrics"
	"github.com/aldis-im/aldis/xmppcore/caps"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aldis-im/aldis/core/label"
	"github.com/aldis-im/aldis/core/obs"
	"github.com/aldis-im/aldis/core/store"
	"github.com/aldis-im/aldis/xmppcore/accounts"
	"github.com/aldis-im/aldis/xmppcore/jid"
	"github.com/aldis-im/aldis/xmppcore/seclabel"
	"github.com/aldis-im/aldis/xmppcore/stanza"
	"github.com/aldis-im/aldis/xmppcore/wire"
)

// Session is a bound client session as the router sees it.
type Session interface {
	// Send queues a serialised stanza for the client; false means the
	// session is gone or its queue overflowed, and the stanza was not queued.
	Send(b []byte) bool
	// Close ends the session with a stream error condition.
	Close(condition, text string)
}

// Config configures a Router.
type Config struct {
	// Domain is the primary domain; Domains are further domains served
	// (virtual hosts). Users of all of them are local.
	Domain     string
	Domains    []string
	Store      store.Store
	Accounts   *accounts.Manager
	Log        *slog.Logger
	Metrics    *obs.Metrics
	OfflineMax int // offline messages kept per user; 0 disables offline storage
	// Registration enables XEP-0077 password change and account removal.
	Registration bool
	Version      string
	// Archive keeps message archives (XEP-0313); nil disables them.
	Archive Archive
	// HubIdle is how long a hub with no sessions lingers before exiting.
	HubIdle time.Duration
	// Labels enforces security labels (XEP-0258); nil turns them off.
	Labels *seclabel.Guard
}

// Service is a component with a domain of its own, such as the MUC
// service on conference.<domain>.
type Service interface {
	// Route takes a stanza for the service's domain, from a verified
	// sender. It must not block: a service queues internally.
	Route(st *wire.Element, from, to jid.JID)
	// Identity is the service's disco#info identity, for the server's
	// disco#items listing.
	Identity() (category, typ, name string)
}

// External is what a Service outside the server's trust (an XEP-0114
// component) also implements: the label principal whose clearance stanzas
// to it must pass, as stanzas to a remote server do.
type External interface {
	Principal() string
}

// Router routes stanzas for one domain.
type Router struct {
	cfg      Config
	domain   jid.JID         // the primary domain
	hosts    map[string]bool // every domain served, the primary included
	log      *slog.Logger
	services map[string]Service // by domain; fixed before serving starts
	remote   Remote             // other domains (remote.go); fixed before serving starts
	remotes  map[string]Remote  // domains with their own carrier (a constrained link); fixed before serving
	// queryTimeouts override queryTimeout per domain; fixed before serving.
	queryTimeouts map[string]time.Duration

	mu   sync.Mutex
	hubs map[jid.JID]*hub

	qmu     sync.Mutex
	queries map[string]pendingQuery // iqs the server sent, by id
	caps    *caps.Cache
	wg      sync.WaitGroup

	ctx    context.Context
	cancel context.CancelFunc

	// Settings SIGHUP may change while running (see SetPolicy).
	offlineMax   atomic.Int64
	registration atomic.Bool

	hubCount     atomic.Int64
	sessionCount atomic.Int64
	offlineCount *metrics.Counter
	// delivered counts stanzas handed to sessions: message, presence, iq.
	delivered [3]*metrics.Counter
}

// New builds a Router; call Close to stop its hubs.
func New(cfg Config) (*Router, error) {
	d, err := jid.New("", cfg.Domain, "")
	if err != nil {
		return nil, err
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Metrics == nil {
		cfg.Metrics = obs.NewMetrics()
	}
	if cfg.HubIdle <= 0 {
		cfg.HubIdle = 30 * time.Second
	}
	hosts := map[string]bool{d.Domain(): true}
	for _, h := range cfg.Domains {
		hd, err := jid.New("", h, "")
		if err != nil {
			return nil, fmt.Errorf("router: domain %q: %w", h, err)
		}
		hosts[hd.Domain()] = true
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &Router{cfg: cfg, domain: d, hosts: hosts, log: cfg.Log, hubs: make(map[jid.JID]*hub), services: map[string]Service{}, ctx: ctx, cancel: cancel,
		queries: map[string]pendingQuery{}, caps: caps.NewCache()}
	r.SetPolicy(cfg.OfflineMax, cfg.Registration)
	r.offlineCount = cfg.Metrics.Counter("aldis_offline_stored_total")
	for i, kind := range []string{"message", "presence", "iq"} {
		r.delivered[i] = cfg.Metrics.Counter(`aldis_stanzas_delivered_total{type="` + kind + `"}`)
	}
	cfg.Metrics.Gauge("aldis_hubs", func() float64 { return float64(r.hubCount.Load()) })
	cfg.Metrics.Gauge("aldis_sessions", func() float64 { return float64(r.sessionCount.Load()) })
	return r, nil
}

// SetPolicy changes the offline quota and whether accounts may remove
// themselves (XEP-0077), for a configuration reload.
func (r *Router) SetPolicy(offlineMax int, registration bool) {
	r.offlineMax.Store(int64(offlineMax))
	r.registration.Store(registration)
}

// AddService makes s handle every stanza for domain. Call it before
// sessions are bound.
func (r *Router) AddService(domain string, s Service) error {
	d, err := jid.New("", domain, "")
	if err != nil {
		return fmt.Errorf("service domain %q: %w", domain, err)
	}
	if r.hosts[d.Domain()] || r.services[d.Domain()] != nil {
		return fmt.Errorf("service domain %q is already served", domain)
	}
	r.services[d.Domain()] = s
	return nil
}

// Deliver sends a stanza from a service to its recipient (a local user,
// or another service); it never blocks.
func (r *Router) Deliver(st *wire.Element, from, to jid.JID) { r.route(st, from, to) }

// DeliverRaw is Deliver for a message the service serialised already: a
// room writes a broadcast once and only splices in each occupant's JID.
// st is the message without a to, the same read-only element for every
// recipient; raw is st addressed to to. A local recipient's hub hands raw
// to the session and builds an addressed copy of st only when it needs one
// (a bounce, a label rewritten for the recipient), so a broadcast costs no
// element per occupant; when that hub is idle, on the caller's goroutine
// (see hub.postRaw).
func (r *Router) DeliverRaw(st *wire.Element, raw []byte, from, to jid.JID) {
	if r.isHost(to.Domain()) && to.Local() != "" {
		h := r.acquire(to.Bare())
		h.postRaw(st, raw, from, to)
		h.release()
		return
	}
	r.route(st.WithAttr("to", to.String()), from, to)
}

// Resend routes again a stanza that reached a session which then went away
// without acknowledging it (XEP-0198): it goes to the recipient's bare JID,
// so another resource or offline storage gets it.
func (r *Router) Resend(st *wire.Element) {
	to, err := jid.Parse(st.Attr("to"))
	if err != nil {
		return
	}
	from, _ := jid.Parse(st.Attr("from"))
	r.route(st, from, to.Bare())
}

// Drain waits until every hub has processed its queued events, or until
// timeout: what services and sessions sent last reaches its recipients
// before the listeners shut down.
func (r *Router) Drain(timeout time.Duration) {
	deadline := time.Now().Add(timeout)
	for !r.quiet() && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
}

// isService reports whether a domain belongs to a service.
func (r *Router) isService(domain string) bool { return r.services[domain] != nil }

// isHost reports whether domain is one this server serves users of.
func (r *Router) isHost(domain string) bool { return r.hosts[domain] }

// hostOf returns the served domain that domain is, or is a subdomain of
// (a service's host), as a JID; the primary domain for anything else.
func (r *Router) hostOf(domain string) jid.JID {
	for d := domain; d != ""; {
		if r.hosts[d] {
			j, _ := jid.New("", d, "")
			return j
		}
		_, d, _ = strings.Cut(d, ".")
	}
	return r.domain
}

// Domain is the primary domain the router serves.
func (r *Router) Domain() jid.JID { return r.domain }

// Sessions is the number of bound sessions.
func (r *Router) Sessions() int64 { return r.sessionCount.Load() }

// Close stops every hub once the queued events are processed (or after
// timeout), so that what was accepted reaches a session or offline storage.
// Call it after the listeners have stopped feeding it.
func (r *Router) Close(timeout time.Duration) {
	r.Drain(timeout)
	// Stopped hubs start no goroutine, so Wait cannot race with Add.
	r.mu.Lock()
	for _, h := range r.hubs {
		h.stop()
	}
	r.mu.Unlock()
	r.wg.Wait()
	r.cancel()
}

func (r *Router) quiet() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, h := range r.hubs {
		if h.busyOrPending() {
			return false
		}
	}
	return true
}

// acquire returns the hub of bare, starting it if needed, with a reference
// held so that it cannot exit until release.
func (r *Router) acquire(bare jid.JID) *hub {
	r.mu.Lock()
	h := r.hubs[bare]
	if h == nil {
		h = newHub(r, bare)
		r.hubs[bare] = h
		r.hubCount.Add(1)
	}
	h.refs.Add(1)
	r.mu.Unlock()
	return h
}

func (h *hub) release() { h.refs.Add(-1) }

// tryRetire removes an idle hub from the registry; it reports whether the
// hub may exit. Holding r.mu orders it against acquire.
func (r *Router) tryRetire(h *hub) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if h.refs.Load() != 0 || h.pending() != 0 {
		return false
	}
	delete(r.hubs, h.bare)
	r.hubCount.Add(-1)
	return true
}

// post delivers an event to the hub of bare. Session readers pass
// wait=true and so feel backpressure; hubs pass false, because a hub that
// waited on another hub could deadlock with it.
func (r *Router) post(bare jid.JID, ev event, wait bool) {
	h := r.acquire(bare)
	h.post(ev, wait)
	h.release()
}

// Binding is a session bound to a full JID; the session sends its stanzas
// through it. It holds a reference on the user's hub for its lifetime.
type Binding struct {
	r    *Router
	h    *hub
	jid  jid.JID
	sess Session
	done atomic.Bool
}

// JID is the bound full JID.
func (b *Binding) JID() jid.JID { return b.jid }

// Bind binds a session of the bare JID user; an empty resource gets a
// generated one. An existing session with the same resource is replaced and
// closed with a conflict stream error (RFC 6120 §7.7.2.2).
func (r *Router) Bind(ctx context.Context, user jid.JID, resource string, s Session) (*Binding, error) {
	if resource == "" {
		resource = randomID()
	}
	full, err := user.WithResource(resource)
	if err != nil {
		return nil, err
	}
	h := r.acquire(user.Bare())
	done := make(chan struct{})
	b := &Binding{r: r, h: h, jid: full, sess: s}
	h.post(event{kind: evBind, binding: b, done: done}, false)
	select {
	case <-done:
	case <-ctx.Done():
		// The hub may still process the bind; undo it.
		go func() {
			select {
			case <-done:
			case <-r.ctx.Done():
			}
			b.Unbind()
		}()
		return nil, ctx.Err()
	case <-r.ctx.Done():
		h.release()
		return nil, r.ctx.Err()
	}
	r.sessionCount.Add(1)
	return b, nil
}

// Unbind removes the session: the user's contacts see it go unavailable.
// It is idempotent.
func (b *Binding) Unbind() {
	if b.done.Swap(true) {
		return
	}
	b.r.sessionCount.Add(-1)
	b.h.post(event{kind: evUnbind, binding: b}, false)
	b.h.release()
}

// Inbound processes a stanza the session sent. The stanza must already have
// passed the stream-level checks; from is stamped here.
func (b *Binding) Inbound(st *wire.Element) {
	r := b.r
	st.SetAttr("from", b.jid.String())
	var to jid.JID
	if t := st.Attr("to"); t != "" {
		var err error
		to, err = jid.Parse(t)
		if err != nil {
			b.reply(stanza.Error(st, stanza.Modify, "jid-malformed", ""))
			return
		}
	}
	name := st.Local()
	toService := !to.IsZero() && r.services[to.Domain()] != nil
	if g := r.cfg.Labels; g != nil {
		// The sender must be cleared for what it sends; a message for one
		// of our own services (a room) stays unstamped, as its default applies.
		_, external := r.services[to.Domain()].(External)
		user := b.jid.Bare().String()
		v, reply := g.Ingress(st, func() *label.Clearance { return g.UserClearance(r.ctx, user) }, nil, user, !toService || external)
		switch v {
		case seclabel.Refuse:
			b.reply(reply)
			return
		case seclabel.Discard:
			return
		}
	}
	// Outbound blocking (XEP-0191): refuse to send to a blocked entity.
	if !to.IsZero() && name != "iq" && b.h.blocks(to) {
		if name == "message" {
			er := stanza.Error(st, stanza.Cancel, "not-acceptable", "")
			er.Child("error", "").AddChild(wire.New("blocked", stanza.NSBlockErr))
			b.reply(er)
		}
		return
	}
	if toService {
		// Through the hub, in order: it tracks directed presence so the
		// service learns when this session goes away, and a join must not
		// be overtaken by the message sent right after it.
		b.h.post(event{kind: evToService, binding: b, st: st, to: to}, true)
		return
	}
	switch {
	case to.IsZero() || to == b.jid.Bare():
		// Addressed to the user's own account.
		switch name {
		case "iq":
			if b.handleAccountIQ(st, to) {
				return
			}
			b.h.post(event{kind: evFromSession, binding: b, st: st}, true)
		case "presence":
			b.h.post(event{kind: evFromSession, binding: b, st: st, to: to}, true)
		default:
			// A message to one's own bare JID goes to one's resources.
			b.h.post(event{kind: evDeliver, st: st, from: b.jid, to: b.jid.Bare()}, true)
		}
	case r.isHost(to.Domain()) && to.Local() == "":
		r.handleServer(b, st, to)
	case r.isHost(to.Domain()) || r.hasRemote():
		if name == "presence" {
			// Subscriptions and directed presence change the sender's state first.
			b.h.post(event{kind: evFromSession, binding: b, st: st, to: to}, true)
			return
		}
		if name == "message" && r.cfg.Archive != nil {
			r.cfg.Archive.Record(b.jid.Bare(), to.Bare(), st, true)
		}
		if b.h.busyOrPending() {
			// A presence this session sent just before may still be passing
			// through its hub: follow it, so the recipient sees the
			// sender's stanzas in order (RFC 6120 §10.1).
			b.h.post(event{kind: evForward, binding: b, st: st, to: to}, true)
		} else if r.isHost(to.Domain()) {
			r.post(to.Bare(), event{kind: evDeliver, st: st, from: b.jid, to: to}, true)
		} else {
			r.sendRemote(st, b.jid, to) // never blocks: a queue per remote domain
		}
		if name == "message" && b.h.carbonSessions.Load() > 0 && carbonEligible(st) {
			b.h.post(event{kind: evSent, binding: b, st: st}, true)
		}
	default:
		// No federation: other domains are unreachable.
		if name != "presence" {
			b.reply(stanza.Error(st, stanza.Cancel, "remote-server-not-found", ""))
		}
	}
}

// reply sends a stanza back to this session.
func (b *Binding) reply(st *wire.Element) {
	b.sess.Send(st.Append(nil))
}

func randomID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
