package router

import (
	"errors"
	"time"

	"github.com/aldis-im/aldis/core/label"
	"github.com/aldis-im/aldis/core/store"
	"github.com/aldis-im/aldis/xmppcore/jid"
	"github.com/aldis-im/aldis/xmppcore/seclabel"
	"github.com/aldis-im/aldis/xmppcore/stanza"
	"github.com/aldis-im/aldis/xmppcore/wire"
)

// route sends a stanza that a hub produced (a presence, a subscription, an
// error) to its recipient. It never waits (see post).
func (r *Router) route(st *wire.Element, from, to jid.JID) {
	if svc := r.services[to.Domain()]; svc != nil {
		if ext, ok := svc.(External); ok && !r.egressAllowed(st, ext.Principal()) {
			return
		}
		svc.Route(st, from, to)
		return
	}
	if to.Local() == "" && to.Resource() == "" && r.isHost(to.Domain()) && st.Local() == "iq" {
		r.answer(st, from) // a service answering one of the server's queries
		return
	}
	if !r.isHost(to.Domain()) {
		if r.hasRemote() {
			r.sendRemote(st, from, to)
		}
		return
	}
	if to.Local() == "" {
		return // stanzas a hub or service produced for the server itself are dropped
	}
	r.post(to.Bare(), event{kind: evDeliver, st: st, from: from, to: to}, false)
}

// bounce returns an error for st to its sender; errors are never bounced.
func (r *Router) bounce(st *wire.Element, typ, condition string) {
	if st.Attr("type") == "error" {
		return
	}
	from, err := jid.Parse(st.Attr("from"))
	if err != nil {
		return
	}
	to, _ := jid.Parse(st.Attr("to"))
	r.route(stanza.Error(st, typ, condition, ""), to, from)
}

// deliverRaw delivers a room's broadcast (DeliverRaw: st has no to, raw is
// it addressed to to) the common way, without an addressed copy of st: to
// a session of this user, with nothing that needs the addressed stanza. It
// reports false, having done nothing, when deliverMessage must handle it.
func (h *hub) deliverRaw(st *wire.Element, raw []byte, from, to jid.JID) bool {
	if !h.exists || st.Attr("type") != "groupchat" || h.blocks(from) {
		return false
	}
	if g := h.r.cfg.Labels; g != nil {
		// A refusal is audited with the addressed stanza, and a label
		// shown in the recipient's own policy changes the bytes: both are
		// deliverMessage's.
		c := h.clearance()
		if !g.Permits(st, c, nil) || (c != nil && g.Rewrite(st, c.Policy) != st) {
			return false
		}
	}
	s := h.byResource(to.Resource())
	if s == nil || !h.send(s, raw) {
		// The room learns that the occupant has gone.
		h.r.bounce(st.WithAttr("to", to.String()), stanza.Cancel, "service-unavailable")
	}
	// Groupchat is not carbon-copied (XEP-0280 §6) and not archived here.
	return true
}

// deliverMessage applies RFC 6121 §8.5 to a message for this user. raw,
// when not nil, is st already serialised; it is used while st is unchanged.
func (h *hub) deliverMessage(st *wire.Element, raw []byte, from, to jid.JID) {
	orig := st
	bytesOf := func() []byte {
		if raw != nil && st == orig {
			return raw
		}
		return st.Append(nil)
	}
	typ := st.Attr("type")
	if !h.exists {
		h.r.bounce(st, stanza.Cancel, "service-unavailable")
		return
	}
	if h.blocks(from) {
		h.r.bounce(st, stanza.Cancel, "service-unavailable")
		return
	}
	if g := h.r.cfg.Labels; g != nil {
		c := h.clearance()
		if !g.Allowed(st, c, nil, seclabel.PointDelivery, h.bare.String()) {
			// A room filters its own fan-out; anything else learns it was refused.
			if !h.r.isService(from.Domain()) {
				h.r.bounce(st, stanza.Auth, "forbidden")
			}
			return
		}
		if c != nil {
			st = g.Rewrite(st, c.Policy) // the user's policy's marking first
		}
	}
	if typ != "error" && typ != "groupchat" {
		st = h.archiveIncoming(st, from)
	}
	if res := to.Resource(); res != "" {
		if s := h.byResource(res); s != nil {
			if h.send(s, bytesOf()) {
				h.carbonReceived(st, func(o *sess) bool { return o == s })
				return
			}
		}
		switch {
		case typ == "error" || typ == "headline":
			return
		case typ == "groupchat" || h.r.isService(from.Domain()):
			// A room's messages, private ones included, are for the session
			// that joined: the bounce tells the room that occupant is gone.
			h.r.bounce(st, stanza.Cancel, "service-unavailable")
			return
		}
		// chat and normal fall back to the bare JID rules.
	}
	switch typ {
	case "groupchat":
		h.r.bounce(st, stanza.Cancel, "service-unavailable")
	case "error":
	case "headline":
		b := bytesOf()
		for _, s := range h.sessions {
			if s.available && s.priority >= 0 {
				h.send(s, b)
			}
		}
	default:
		if best := h.deliverToBest(st); best >= 0 {
			h.carbonReceived(st, func(o *sess) bool { return o.available && o.priority == best })
		} else {
			h.storeOffline(st)
		}
	}
}

// carbonReceived copies a delivered message to the user's other sessions
// that enabled carbons.
func (h *hub) carbonReceived(st *wire.Element, got func(*sess) bool) {
	if h.carbonSessions.Load() == 0 || !carbonEligible(st) {
		return
	}
	if from, err := jid.Parse(st.Attr("from")); err == nil && h.r.isService(from.Domain()) {
		return // sent by a room or another service (XEP-0280 §6)
	}
	h.carbonCopies(st, "received", got)
}

// deliverToBest sends st to the available resources of highest
// non-negative priority and returns that priority, or -1 when none took it.
func (h *hub) deliverToBest(st *wire.Element) int {
	best := -1
	for _, s := range h.sessions {
		if s.available && s.priority > best {
			best = s.priority
		}
	}
	if best < 0 {
		return -1
	}
	var b []byte
	ok := false
	for _, s := range h.sessions {
		if s.available && s.priority == best {
			if b == nil {
				b = st.Append(nil)
			}
			ok = h.send(s, b) || ok
		}
	}
	if !ok {
		return -1
	}
	return best
}

func (h *hub) storeOffline(st *wire.Element) {
	max := int(h.r.offlineMax.Load())
	if max <= 0 {
		// Offline storage is off (RFC 6121 §8.5.2.2.1).
		h.r.bounce(st, stanza.Cancel, "service-unavailable")
		return
	}
	_, err := h.r.cfg.Store.StoreOffline(h.ctx, h.bare.String(), st.String(), max)
	switch {
	case err == nil:
		h.r.offlineCount.Inc()
	case isQuota(err):
		h.r.bounce(st, stanza.Cancel, "service-unavailable") // XEP-0160 §2: the queue is full
	default:
		h.r.log.Error("store offline message", "user", h.bare.String(), "err", err)
		h.r.bounce(st, stanza.Wait, "internal-server-error")
	}
}

// clearance is the user's effective clearance (labels on only).
func (h *hub) clearance() *label.Clearance {
	return h.r.cfg.Labels.UserClearance(h.ctx, h.bare.String())
}

func isQuota(err error) bool { return errors.Is(err, store.ErrQuota) }

// deliverOffline sends stored messages to a session that just became
// available, each with an XEP-0203 delay, and deletes what was sent.
func (h *hub) deliverOffline(s *sess) {
	msgs, err := h.r.cfg.Store.OfflineMessages(h.ctx, h.bare.String())
	if err != nil {
		h.r.log.Error("read offline messages", "user", h.bare.String(), "err", err)
		return
	}
	if len(msgs) == 0 {
		return
	}
	ids := make([]int64, 0, len(msgs))
	for _, m := range msgs {
		el, err := wire.ParseElement(m.Stanza)
		if err != nil {
			h.r.log.Error("corrupt offline message dropped", "user", h.bare.String(), "id", m.ID, "err", err)
			ids = append(ids, m.ID)
			continue
		}
		// The user's clearance may have changed since the message was stored.
		if g := h.r.cfg.Labels; g != nil && !g.Allowed(el, h.clearance(), nil, seclabel.PointOffline, h.bare.String()) {
			h.r.bounce(el, stanza.Auth, "forbidden")
			ids = append(ids, m.ID)
			continue
		}
		// A message resent after a lost session may carry our delay already.
		if d := el.Child("delay", stanza.NSDelay); d == nil || d.Attr("from") != h.bare.Domain() {
			d := el.AddChild(wire.New("delay", stanza.NSDelay))
			d.SetAttr("from", h.bare.Domain())
			d.SetAttr("stamp", m.Stored.UTC().Format(time.RFC3339))
			d.AddText("Offline storage")
		}
		if !h.send(s, el.Append(nil)) {
			break
		}
		ids = append(ids, m.ID)
	}
	if err := h.r.cfg.Store.DeleteOffline(h.ctx, h.bare.String(), ids); err != nil {
		h.r.log.Error("delete offline messages", "user", h.bare.String(), "err", err)
	}
}

// deliverIQ handles an iq for this user from another entity.
func (h *hub) deliverIQ(st *wire.Element, from, to jid.JID) {
	typ := st.Attr("type")
	query := typ == "get" || typ == "set"
	if !h.exists || h.blocks(from) {
		if query {
			h.r.bounce(st, stanza.Cancel, "service-unavailable")
		}
		return
	}
	if to.Resource() != "" {
		if s := h.byResource(to.Resource()); s != nil && h.send(s, st.Append(nil)) {
			return
		}
		if query {
			h.r.bounce(st, stanza.Cancel, "service-unavailable")
		}
		return
	}
	if !query {
		return
	}
	// The server answers for the account (RFC 6120 §10.5.4).
	var reply *wire.Element
	if p := stanza.Payload(st); p != nil && (p.Space == nsPubsub || p.Space == nsPubsubOwner) {
		reply = h.pepIQ(st, p, from)
	} else {
		reply = h.r.publicAccountIQ(h.ctx, h.bare, st)
	}
	if reply != nil {
		h.r.route(reply, h.bare, from)
	}
}
