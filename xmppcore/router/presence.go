package router

import (
	"strconv"

	"github.com/aldis-im/aldis/core/store"
	"github.com/aldis-im/aldis/xmppcore/jid"
	"github.com/aldis-im/aldis/xmppcore/wire"
)

func subFrom(it *store.RosterItem) bool {
	return it != nil && (it.Subscription == "from" || it.Subscription == "both")
}

func subTo(it *store.RosterItem) bool {
	return it != nil && (it.Subscription == "to" || it.Subscription == "both")
}

// Subscription transitions (RFC 6121 Appendix A): "to" is the user's
// subscription to the contact's presence, "from" the contact's to the user's.
func addTo(it *store.RosterItem) {
	switch it.Subscription {
	case "none", "":
		it.Subscription = "to"
	case "from":
		it.Subscription = "both"
	}
}

func dropTo(it *store.RosterItem) {
	switch it.Subscription {
	case "to":
		it.Subscription = "none"
	case "both":
		it.Subscription = "from"
	}
}

func addFrom(it *store.RosterItem) {
	switch it.Subscription {
	case "none", "":
		it.Subscription = "from"
	case "to":
		it.Subscription = "both"
	}
}

func dropFrom(it *store.RosterItem) {
	switch it.Subscription {
	case "from":
		it.Subscription = "none"
	case "both":
		it.Subscription = "to"
	}
}

// itemFor returns it, or a new item with no subscription for contact.
func itemFor(it *store.RosterItem, contact jid.JID) *store.RosterItem {
	if it == nil {
		return &store.RosterItem{Contact: contact.String(), Subscription: "none"}
	}
	return it
}

// outboundPresence handles a presence one of the user's sessions sent.
func (h *hub) outboundPresence(s *sess, st *wire.Element, to jid.JID) {
	typ := st.Attr("type")
	if to.IsZero() || to == h.bare {
		switch typ {
		case "":
			h.available(s, st)
		case "unavailable":
			if s.available {
				h.broadcastPresence(s, st)
				s.available, s.presence, s.directed, s.res = false, nil, nil, resource{}
			}
		}
		return
	}
	switch typ {
	case "subscribe", "subscribed", "unsubscribe", "unsubscribed":
		h.outboundSubscription(s, st, typ, to.Bare())
	case "", "unavailable":
		// Directed presence (RFC 6121 §4.6): remember it so the recipient
		// learns when this session goes away. A service (a room joined
		// before initial presence) is remembered regardless.
		if typ == "" && (s.available || h.r.isService(to.Domain())) {
			if s.directed == nil {
				s.directed = make(map[jid.JID]struct{})
			}
			s.directed[to] = struct{}{}
		} else {
			delete(s.directed, to)
		}
		h.r.route(st, s.b.jid, to)
	case "error":
		h.r.route(st, s.b.jid, to)
	}
}

// available processes initial or updated presence from s.
func (h *hub) available(s *sess, st *wire.Element) {
	initial := !s.available
	s.available = true
	s.priority = 0
	if p := st.ChildText("priority", ""); p != "" {
		if n, err := strconv.Atoi(p); err == nil && n >= -128 && n <= 127 {
			s.priority = n
		}
	}
	s.presence = st
	h.broadcastPresence(s, st)
	h.trackOwn(s, st)
	if !initial {
		return
	}
	if err := h.loadRoster(); err == nil {
		for c, it := range h.roster {
			if subTo(it) {
				p := wire.New("presence", "")
				p.SetAttr("from", s.b.jid.String())
				p.SetAttr("to", c.String())
				p.SetAttr("type", "probe")
				h.r.route(p, s.b.jid, c)
			}
		}
	}
	// The new resource learns about the user's other resources.
	for _, o := range h.sessions {
		if o != s && o.available && o.presence != nil {
			h.send(s, o.presence.Append(nil))
		}
	}
	if s.priority >= 0 {
		h.deliverOffline(s)
	}
	reqs, err := h.r.cfg.Store.SubRequests(h.ctx, h.bare.String())
	if err != nil {
		h.r.log.Error("read subscription requests", "user", h.bare.String(), "err", err)
	}
	for _, rq := range reqs {
		h.send(s, []byte(rq.Stanza))
	}
}

// broadcastPresence sends p (from s's full JID) to the contacts subscribed
// to the user, to the user's available resources, and, for unavailable
// presence, to those s sent directed presence to.
func (h *hub) broadcastPresence(s *sess, p *wire.Element) {
	if err := h.loadRoster(); err != nil {
		h.r.log.Error("load roster", "user", h.bare.String(), "err", err)
	}
	for c, it := range h.roster {
		if subFrom(it) && !h.blocks(c) {
			h.r.route(withTo(p, c), s.b.jid, c)
		}
	}
	if p.Attr("type") == "unavailable" {
		for d := range s.directed {
			if !subFrom(h.roster[d.Bare()]) {
				h.r.route(withTo(p, d), s.b.jid, d)
			}
		}
	}
	b := p.Append(nil)
	for _, o := range h.sessions {
		if o.available || o == s {
			h.send(o, b)
		}
	}
}

func withTo(p *wire.Element, to jid.JID) *wire.Element {
	c := p.Copy()
	c.SetAttr("to", to.String())
	return c
}

// inboundPresence handles presence addressed to this user.
func (h *hub) inboundPresence(st *wire.Element, from, to jid.JID) {
	if !h.exists || h.blocks(from) {
		return
	}
	switch typ := st.Attr("type"); typ {
	case "subscribe", "subscribed", "unsubscribe", "unsubscribed":
		h.inboundSubscription(st, typ, from.Bare())
	case "probe":
		h.answerProbe(from)
	default:
		h.trackContact(st, from)
		if res := to.Resource(); res != "" {
			if s := h.byResource(res); s != nil {
				h.send(s, st.Append(nil))
			}
			return
		}
		h.toAvailable(st)
	}
}

func (h *hub) toAvailable(st *wire.Element) {
	var b []byte
	for _, s := range h.sessions {
		if s.available {
			if b == nil {
				b = st.Append(nil)
			}
			h.send(s, b)
		}
	}
}

// answerProbe tells a subscribed contact which resources are available.
func (h *hub) answerProbe(from jid.JID) {
	if err := h.loadRoster(); err != nil || !subFrom(h.roster[from.Bare()]) {
		return
	}
	sent := false
	for _, s := range h.sessions {
		if s.available && s.presence != nil {
			h.r.route(withTo(s.presence, from), s.b.jid, from)
			sent = true
		}
	}
	if !sent {
		u := wire.New("presence", "")
		u.SetAttr("from", h.bare.String())
		u.SetAttr("to", from.String())
		u.SetAttr("type", "unavailable")
		h.r.route(u, h.bare, from)
	}
}

// presenceTo sends the current presence (or unavailable) of every available
// resource to contact.
func (h *hub) presenceTo(contact jid.JID, unavailable bool) {
	for _, s := range h.sessions {
		if !s.available || s.presence == nil {
			continue
		}
		p := withTo(s.presence, contact)
		if unavailable {
			p = wire.New("presence", "")
			p.SetAttr("from", s.b.jid.String())
			p.SetAttr("to", contact.String())
			p.SetAttr("type", "unavailable")
		}
		h.r.route(p, s.b.jid, contact)
	}
}

func subscription(typ string, contact, from jid.JID) *wire.Element {
	p := wire.New("presence", "")
	p.SetAttr("from", from.String())
	p.SetAttr("to", contact.String())
	p.SetAttr("type", typ)
	return p
}

// outboundSubscription applies RFC 6121 §3 (and Appendix A) to a
// subscription stanza the user sent to contact.
func (h *hub) outboundSubscription(s *sess, st *wire.Element, typ string, contact jid.JID) {
	if err := h.loadRoster(); err != nil {
		h.r.log.Error("load roster", "user", h.bare.String(), "err", err)
		return
	}
	it := h.roster[contact]
	// Subscription stanzas leave stamped with the bare JID (RFC 6121 §3.1.2).
	out := st.Copy()
	out.SetAttr("from", h.bare.String())
	out.SetAttr("to", contact.String())
	switch typ {
	case "subscribe":
		it = itemFor(it, contact)
		if !subTo(it) && !it.Ask {
			it.Ask = true
			h.saveItem(contact, it)
		}
		h.r.route(out, h.bare, contact)
	case "unsubscribe":
		if it != nil && (subTo(it) || it.Ask) {
			it.Ask = false
			dropTo(it)
			h.saveItem(contact, it)
		}
		h.r.route(out, h.bare, contact)
	case "subscribed":
		if subFrom(it) {
			return // nothing changes; RFC 6121 A.3.2 says not to route it
		}
		if !h.hasSubRequest(contact) {
			// Pre-approval (RFC 6121 §3.4).
			it = itemFor(it, contact)
			if !it.Approved {
				it.Approved = true
				h.saveItem(contact, it)
			}
			return
		}
		h.grantFrom(contact, itemFor(it, contact))
		h.r.route(out, h.bare, contact)
		h.presenceTo(contact, false)
	case "unsubscribed":
		pending := h.hasSubRequest(contact)
		if pending {
			h.deleteSubRequest(contact)
		}
		if it != nil && (subFrom(it) || it.Approved) {
			it.Approved = false
			dropFrom(it)
			h.saveItem(contact, it)
			h.r.route(out, h.bare, contact)
			h.presenceTo(contact, true)
		} else if pending {
			h.r.route(out, h.bare, contact)
		}
	}
}

// grantFrom records that contact may now see the user's presence.
func (h *hub) grantFrom(contact jid.JID, it *store.RosterItem) {
	addFrom(it)
	it.Approved = false
	h.saveItem(contact, it)
	h.deleteSubRequest(contact)
}

// inboundSubscription handles a subscription stanza from contact.
func (h *hub) inboundSubscription(st *wire.Element, typ string, contact jid.JID) {
	if err := h.loadRoster(); err != nil {
		h.r.log.Error("load roster", "user", h.bare.String(), "err", err)
		return
	}
	it := h.roster[contact]
	switch typ {
	case "subscribe":
		if subFrom(it) {
			h.r.route(subscription("subscribed", contact, h.bare), h.bare, contact)
			return
		}
		if it != nil && it.Approved {
			h.grantFrom(contact, it)
			h.r.route(subscription("subscribed", contact, h.bare), h.bare, contact)
			h.presenceTo(contact, false)
			return
		}
		err := h.r.cfg.Store.PutSubRequest(h.ctx, h.bare.String(), store.SubRequest{Contact: contact.String(), Stanza: st.String()})
		if err != nil {
			h.r.log.Error("store subscription request", "user", h.bare.String(), "err", err)
		}
		h.toAvailable(st)
	case "subscribed":
		if it == nil || !it.Ask {
			return
		}
		it.Ask = false
		addTo(it)
		h.saveItem(contact, it)
		h.toAvailable(st)
	case "unsubscribe":
		h.deleteSubRequest(contact)
		if subFrom(it) {
			dropFrom(it)
			h.saveItem(contact, it)
			h.toAvailable(st)
			h.presenceTo(contact, true)
		}
	case "unsubscribed":
		if it != nil && (subTo(it) || it.Ask) {
			it.Ask = false
			dropTo(it)
			h.saveItem(contact, it)
			h.toAvailable(st)
		}
	}
}

func (h *hub) hasSubRequest(contact jid.JID) bool {
	reqs, err := h.r.cfg.Store.SubRequests(h.ctx, h.bare.String())
	if err != nil {
		h.r.log.Error("read subscription requests", "user", h.bare.String(), "err", err)
		return false
	}
	for _, r := range reqs {
		if r.Contact == contact.String() {
			return true
		}
	}
	return false
}

func (h *hub) deleteSubRequest(contact jid.JID) {
	if err := h.r.cfg.Store.DeleteSubRequest(h.ctx, h.bare.String(), contact.String()); err != nil {
		h.r.log.Error("delete subscription request", "user", h.bare.String(), "err", err)
	}
}
