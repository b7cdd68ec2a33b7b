package router

import (
	"strconv"
	"unicode/utf8"

	"github.com/aldis-im/aldis/core/store"
	"github.com/aldis-im/aldis/xmppcore/jid"
	"github.com/aldis-im/aldis/xmppcore/stanza"
	"github.com/aldis-im/aldis/xmppcore/wire"
)

// maxRosterText bounds roster item names and group names.
const maxRosterText = 1023

// accountIQ handles roster, blocking and registration iqs from the user's own
// sessions; these change state the hub owns.
func (h *hub) accountIQ(s *sess, st *wire.Element) {
	typ := st.Attr("type")
	if typ != "get" && typ != "set" {
		return // replies to roster and blocking pushes
	}
	p := stanza.Payload(st)
	if p == nil {
		h.reply(s, stanza.Error(st, stanza.Modify, "bad-request", "an iq get or set carries exactly one child"))
		return
	}
	switch p.Space {
	case stanza.NSRoster:
		h.rosterIQ(s, st, p, typ)
	case stanza.NSBlocking:
		h.blockingIQ(s, st, p, typ)
	case stanza.NSRegister:
		h.registerIQ(s, st, p, typ)
	case stanza.NSCarbons:
		h.carbonsIQ(s, st, p, typ)
	case nsPubsub, nsPubsubOwner:
		h.reply(s, h.pepIQ(st, p, s.b.jid))
	default:
		h.reply(s, stanza.Error(st, stanza.Cancel, "service-unavailable", ""))
	}
}

func (h *hub) reply(s *sess, st *wire.Element) { s.b.sess.Send(st.Append(nil)) }

func itemElement(it *store.RosterItem, remove bool) *wire.Element {
	e := wire.New("item", "")
	e.SetAttr("jid", it.Contact)
	if remove {
		e.SetAttr("subscription", "remove")
		return e
	}
	if it.Name != "" {
		e.SetAttr("name", it.Name)
	}
	sub := it.Subscription
	if sub == "" {
		sub = "none"
	}
	e.SetAttr("subscription", sub)
	if it.Ask {
		e.SetAttr("ask", "subscribe")
	}
	if it.Approved {
		e.SetAttr("approved", "true")
	}
	for _, g := range it.Groups {
		e.AddChild(wire.New("group", "")).AddText(g)
	}
	return e
}

// saveItem stores a changed roster item and pushes it to interested resources.
func (h *hub) saveItem(contact jid.JID, it *store.RosterItem) {
	ver, err := h.r.cfg.Store.PutRosterItem(h.ctx, h.bare.String(), *it)
	if err != nil {
		h.r.log.Error("save roster item", "user", h.bare.String(), "err", err)
		return
	}
	h.roster[contact] = it
	h.rosterVer = ver
	h.push(itemElement(it, false))
}

func (h *hub) push(item *wire.Element) {
	iq := wire.New("iq", "")
	iq.SetAttr("type", "set")
	iq.SetAttr("id", "push-"+randomID())
	q := iq.AddChild(wire.New("query", stanza.NSRoster))
	q.SetAttr("ver", strconv.FormatInt(h.rosterVer, 10))
	q.AddChild(item)
	var b []byte
	for _, s := range h.sessions {
		if s.interested {
			if b == nil {
				b = iq.Append(nil)
			}
			h.send(s, b)
		}
	}
}

func (h *hub) rosterIQ(s *sess, st, q *wire.Element, typ string) {
	if err := h.loadRoster(); err != nil {
		h.r.log.Error("load roster", "user", h.bare.String(), "err", err)
		h.reply(s, stanza.Error(st, stanza.Wait, "internal-server-error", ""))
		return
	}
	if typ == "get" {
		s.interested = true
		res := stanza.Result(st)
		ver := strconv.FormatInt(h.rosterVer, 10)
		if q.HasAttr("ver") && q.Attr("ver") == ver {
			h.reply(s, res) // XEP-0237: unchanged, pushes follow
			return
		}
		rq := res.AddChild(wire.New("query", stanza.NSRoster))
		rq.SetAttr("ver", ver)
		for _, it := range h.roster {
			rq.AddChild(itemElement(it, false))
		}
		h.reply(s, res)
		return
	}
	var item *wire.Element
	n := 0
	for c := range q.Elements() {
		if c.Local() == "item" {
			item = c
			n++
		}
	}
	if n != 1 {
		h.reply(s, stanza.Error(st, stanza.Modify, "bad-request", "a roster set carries exactly one item"))
		return
	}
	contact, err := jid.Parse(item.Attr("jid"))
	if err != nil {
		h.reply(s, stanza.Error(st, stanza.Modify, "jid-malformed", ""))
		return
	}
	contact = contact.Bare()
	it := h.roster[contact]
	if item.Attr("subscription") == "remove" {
		if it == nil {
			h.reply(s, stanza.Error(st, stanza.Cancel, "item-not-found", ""))
			return
		}
		h.removeItem(contact, it)
		h.reply(s, stanza.Result(st))
		return
	}
	name := item.Attr("name")
	if len(name) > maxRosterText || !utf8.ValidString(name) {
		h.reply(s, stanza.Error(st, stanza.Modify, "not-acceptable", "name too long"))
		return
	}
	var groups []string
	seen := map[string]bool{}
	for g := range item.Elements() {
		if g.Local() != "group" {
			continue
		}
		t := g.Text()
		if t == "" || len(t) > maxRosterText {
			h.reply(s, stanza.Error(st, stanza.Modify, "not-acceptable", "empty or overlong group name"))
			return
		}
		if !seen[t] {
			seen[t] = true
			groups = append(groups, t)
		}
	}
	if it == nil {
		it = &store.RosterItem{Contact: contact.String(), Subscription: "none"}
	} else {
		c := *it
		it = &c
	}
	it.Name, it.Groups = name, groups
	h.saveItem(contact, it)
	h.reply(s, stanza.Result(st))
}

// removeItem cancels subscriptions both ways and deletes the item (RFC 6121 §2.5).
func (h *hub) removeItem(contact jid.JID, it *store.RosterItem) {
	if subTo(it) || it.Ask {
		h.r.route(subscription("unsubscribe", contact, h.bare), h.bare, contact)
	}
	if subFrom(it) || it.Approved {
		h.presenceTo(contact, true)
		h.r.route(subscription("unsubscribed", contact, h.bare), h.bare, contact)
	}
	h.deleteSubRequest(contact)
	ver, err := h.r.cfg.Store.DeleteRosterItem(h.ctx, h.bare.String(), contact.String())
	if err != nil && !isNotFound(err) {
		h.r.log.Error("delete roster item", "user", h.bare.String(), "err", err)
		return
	}
	delete(h.roster, contact)
	if err == nil {
		h.rosterVer = ver
	}
	h.push(itemElement(it, true))
}
