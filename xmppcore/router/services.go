package router

import (
	"context"
	"errors"
	"github.com/aldis-im/aldis/xmppcore/caps"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/aldis-im/aldis/core/store"
	"github.com/aldis-im/aldis/xmppcore/accounts"
	"github.com/aldis-im/aldis/xmppcore/jid"
	"github.com/aldis-im/aldis/xmppcore/seclabel"
	"github.com/aldis-im/aldis/xmppcore/stanza"
	"github.com/aldis-im/aldis/xmppcore/wire"
)

// ServerFeatures are the disco#info features of the server itself.
func (r *Router) ServerFeatures() []string {
	f := []string{
		stanza.NSDiscoInfo, stanza.NSDiscoItem, stanza.NSPing, stanza.NSVersion, stanza.NSTime,
		stanza.NSVCard, stanza.NSPrivate, stanza.NSBlocking, stanza.NSRoster, stanza.NSOffline,
		stanza.NSDelay, stanza.NSCarbons, "iq", "presence", "http://jabber.org/protocol/caps",
	}
	if r.registration.Load() {
		f = append(f, stanza.NSRegister)
	}
	if r.cfg.Labels != nil {
		f = append(f, seclabel.Features...)
	}
	return f
}

// capsNode names Aldis in entity capabilities (XEP-0115).
const capsNode = "https://aldis.im"

// ServerCaps returns the node and verification string of the server's
// disco#info (XEP-0115), which clients cache instead of asking each time.
func (r *Router) ServerCaps() (node, ver string) {
	q := discoInfo(wire.New("iq", ""), "server", "im", "Aldis", r.ServerFeatures()).Child("query", stanza.NSDiscoInfo)
	return capsNode, caps.Ver(q, "sha-1")
}

var accountFeatures = []string{stanza.NSDiscoInfo, stanza.NSDiscoItem, stanza.NSPing, stanza.NSVCard,
	nsPubsub + "#publish", nsPubsub + "#publish-options", nsPubsub + "#retrieve-items",
	nsPubsub + "#retract-items", nsPubsub + "#delete-nodes", nsPubsub + "#purge-nodes",
	nsPubsub + "#config-node", nsPubsub + "#auto-create", nsPubsub + "#last-published",
	nsPubsub + "#persistent-items", nsPubsub + "#access-presence", nsPubsub + "#access-open",
	nsPubsub + "#access-whitelist"}

func discoInfo(st *wire.Element, category, typ, name string, features []string) *wire.Element {
	res := stanza.Result(st)
	q := res.AddChild(wire.New("query", stanza.NSDiscoInfo))
	id := q.AddChild(wire.New("identity", ""))
	id.SetAttr("category", category)
	id.SetAttr("type", typ)
	if name != "" {
		id.SetAttr("name", name)
	}
	for _, f := range features {
		q.AddChild(wire.New("feature", "")).SetAttr("var", f)
	}
	return res
}

// handleServer answers stanzas addressed to the server's domain.
func (r *Router) handleServer(b *Binding, st *wire.Element, to jid.JID) {
	switch st.Local() {
	case "presence":
		return // presence for the server itself means nothing
	case "message":
		// The server has no use for messages; say so rather than drop them.
		if t := st.Attr("type"); t != "error" {
			b.reply(stanza.Error(st, stanza.Cancel, "service-unavailable", ""))
		}
		return
	}
	typ := st.Attr("type")
	if typ != "get" && typ != "set" {
		r.answer(st, b.jid) // an answer to one of the server's own queries
		return
	}
	p := stanza.Payload(st)
	if p == nil {
		b.reply(stanza.Error(st, stanza.Modify, "bad-request", "an iq get or set carries exactly one child"))
		return
	}
	if to.Resource() != "" {
		b.reply(stanza.Error(st, stanza.Cancel, "service-unavailable", ""))
		return
	}
	if p.Space == stanza.NSRegister {
		b.h.post(event{kind: evFromSession, binding: b, st: st}, true)
		return
	}
	if seclabel.IsCatalog(p.Space) {
		r.catalog(b, st, p)
		return
	}
	if typ == "set" && p.Space != stanza.NSPing {
		switch p.Space {
		case stanza.NSDiscoInfo, stanza.NSDiscoItem, stanza.NSVersion, stanza.NSTime:
			b.reply(stanza.Error(st, stanza.Cancel, "feature-not-implemented", ""))
			return
		}
	}
	switch p.Space {
	case stanza.NSDiscoInfo:
		node, ver := r.ServerCaps()
		switch n := p.Attr("node"); n {
		case "":
			b.reply(discoInfo(st, "server", "im", "Aldis", r.ServerFeatures()))
		case node + "#" + ver:
			res := discoInfo(st, "server", "im", "Aldis", r.ServerFeatures())
			res.Child("query", stanza.NSDiscoInfo).SetAttr("node", n)
			b.reply(res)
		default:
			b.reply(stanza.Error(st, stanza.Cancel, "item-not-found", ""))
		}
	case stanza.NSDiscoItem:
		res := stanza.Result(st)
		q := res.AddChild(wire.New("query", stanza.NSDiscoItem))
		for _, d := range slices.Sorted(maps.Keys(r.services)) {
			if r.hostOf(d).Domain() != to.Domain() {
				continue // another virtual host's service
			}
			_, _, name := r.services[d].Identity()
			it := q.AddChild(wire.New("item", ""))
			it.SetAttr("jid", d)
			if name != "" {
				it.SetAttr("name", name)
			}
		}
		b.reply(res)
	case stanza.NSPing:
		b.reply(stanza.Result(st))
	case stanza.NSVersion:
		res := stanza.Result(st)
		q := res.AddChild(wire.New("query", stanza.NSVersion))
		q.AddChild(wire.New("name", "")).AddText("Aldis")
		q.AddChild(wire.New("version", "")).AddText(r.cfg.Version)
		b.reply(res)
	case stanza.NSTime:
		res := stanza.Result(st)
		t := res.AddChild(wire.New("time", stanza.NSTime))
		t.AddChild(wire.New("tzo", "")).AddText("+00:00")
		t.AddChild(wire.New("utc", "")).AddText(time.Now().UTC().Format("2006-01-02T15:04:05.000Z"))
		b.reply(res)
	default:
		b.reply(stanza.Error(st, stanza.Cancel, "service-unavailable", ""))
	}
}

// handleAccountIQ answers iqs a session addresses to its own account that
// need no hub state; it reports false for those the hub must handle.
func (b *Binding) handleAccountIQ(st *wire.Element, to jid.JID) bool {
	typ := st.Attr("type")
	if typ != "get" && typ != "set" {
		return false
	}
	p := stanza.Payload(st)
	if p == nil {
		b.reply(stanza.Error(st, stanza.Modify, "bad-request", "an iq get or set carries exactly one child"))
		return true
	}
	r := b.r
	ctx := r.ctx
	user := b.jid.Bare().String()
	switch p.Space {
	case stanza.NSRoster, stanza.NSBlocking, stanza.NSRegister, stanza.NSCarbons, nsPubsub, nsPubsubOwner:
		return false
	case stanza.NSVCard:
		if typ == "get" {
			b.reply(r.vcard(ctx, b.jid.Bare(), st))
			return true
		}
		if p.Local() != "vCard" {
			b.reply(stanza.Error(st, stanza.Modify, "bad-request", ""))
			return true
		}
		if err := r.cfg.Store.PutXML(ctx, user, "vcard", p.String()); err != nil {
			r.log.Error("store vcard", "user", user, "err", err)
			b.reply(stanza.Error(st, stanza.Wait, "internal-server-error", ""))
			return true
		}
		b.reply(stanza.Result(st))
	case stanza.NSPrivate:
		b.reply(r.private(ctx, user, st, p, typ))
	case nsMAM:
		if r.cfg.Archive == nil {
			b.reply(stanza.Error(st, stanza.Cancel, "service-unavailable", ""))
			return true
		}
		r.cfg.Archive.HandleIQ(ctx, b.jid.Bare(), b.jid, st, b.reply)
	case stanza.NSDiscoInfo, stanza.NSDiscoItem, stanza.NSPing:
		b.reply(r.publicAccountIQ(ctx, b.jid.Bare(), st))
	default:
		b.reply(stanza.Error(st, stanza.Cancel, "service-unavailable", ""))
	}
	return true
}

// publicAccountIQ answers an iq get/set to a user's bare JID that anyone may
// send: disco, ping and vCard retrieval.
func (r *Router) publicAccountIQ(ctx context.Context, user jid.JID, st *wire.Element) *wire.Element {
	p := stanza.Payload(st)
	if p == nil {
		return stanza.Error(st, stanza.Modify, "bad-request", "")
	}
	get := st.Attr("type") == "get"
	switch {
	case p.Space == stanza.NSDiscoInfo && get:
		if p.Attr("node") != "" {
			return stanza.Error(st, stanza.Cancel, "item-not-found", "")
		}
		feats := accountFeatures
		if r.cfg.Archive != nil {
			feats = append(slices.Clip(feats), nsMAM, nsMAM+"#extended", nsSID)
		}
		res := discoInfo(st, "account", "registered", "", feats)
		pep := wire.New("identity", "")
		pep.SetAttr("category", "pubsub")
		pep.SetAttr("type", "pep")
		q := res.Child("query", stanza.NSDiscoInfo)
		q.Nodes = append([]wire.Node{{Elem: pep}}, q.Nodes...)
		return res
	case p.Space == stanza.NSDiscoItem && get:
		res := stanza.Result(st)
		res.AddChild(wire.New("query", stanza.NSDiscoItem))
		return res
	case p.Space == stanza.NSPing:
		return stanza.Result(st)
	case p.Space == stanza.NSVCard && get:
		return r.vcard(ctx, user, st)
	default:
		return stanza.Error(st, stanza.Cancel, "service-unavailable", "")
	}
}

func (r *Router) vcard(ctx context.Context, user jid.JID, st *wire.Element) *wire.Element {
	res := stanza.Result(st)
	x, err := r.cfg.Store.GetXML(ctx, user.String(), "vcard")
	switch {
	case errors.Is(err, store.ErrNotFound):
		res.AddChild(wire.New("vCard", stanza.NSVCard))
	case err != nil:
		r.log.Error("read vcard", "user", user.String(), "err", err)
		return stanza.Error(st, stanza.Wait, "internal-server-error", "")
	default:
		el, err := wire.ParseElement(x)
		if err != nil {
			res.AddChild(wire.New("vCard", stanza.NSVCard))
		} else {
			res.AddChild(el)
		}
	}
	return res
}

// private implements XEP-0049 private XML storage.
func (r *Router) private(ctx context.Context, user string, st, q *wire.Element, typ string) *wire.Element {
	var child *wire.Element
	n := 0
	for c := range q.Elements() {
		child = c
		n++
	}
	if n != 1 {
		return stanza.Error(st, stanza.Modify, "not-acceptable", "exactly one child element is required")
	}
	ns := child.Space
	if ns == "" || strings.HasPrefix(ns, "jabber:") || strings.HasPrefix(ns, "http://jabber.org/") || ns == stanza.NSPrivate {
		return stanza.Error(st, stanza.Modify, "not-acceptable", "reserved namespace")
	}
	key := "private:" + ns
	if typ == "set" {
		if err := r.cfg.Store.PutXML(ctx, user, key, child.String()); err != nil {
			r.log.Error("store private xml", "user", user, "err", err)
			return stanza.Error(st, stanza.Wait, "internal-server-error", "")
		}
		return stanza.Result(st)
	}
	res := stanza.Result(st)
	rq := res.AddChild(wire.New("query", stanza.NSPrivate))
	x, err := r.cfg.Store.GetXML(ctx, user, key)
	if err == nil {
		if el, perr := wire.ParseElement(x); perr == nil {
			rq.AddChild(el)
			return res
		}
	} else if !errors.Is(err, store.ErrNotFound) {
		r.log.Error("read private xml", "user", user, "err", err)
		return stanza.Error(st, stanza.Wait, "internal-server-error", "")
	}
	rq.AddChild(child.Copy())
	return res
}

// registerIQ implements the authenticated part of XEP-0077: password change
// and account removal.
func (h *hub) registerIQ(s *sess, st, q *wire.Element, typ string) {
	if typ == "get" {
		res := stanza.Result(st)
		rq := res.AddChild(wire.New("query", stanza.NSRegister))
		rq.AddChild(wire.New("registered", ""))
		rq.AddChild(wire.New("username", "")).AddText(h.bare.Local())
		rq.AddChild(wire.New("password", ""))
		h.reply(s, res)
		return
	}
	if q.Child("remove", "") != nil {
		if !h.r.registration.Load() {
			h.reply(s, stanza.Error(st, stanza.Cancel, "not-allowed", "account removal is disabled"))
			return
		}
		if err := h.r.cfg.Accounts.Delete(h.ctx, h.bare); err != nil {
			h.r.log.Error("remove account", "user", h.bare.String(), "err", err)
			h.reply(s, stanza.Error(st, stanza.Wait, "internal-server-error", ""))
			return
		}
		h.reply(s, stanza.Result(st))
		h.exists = false
		h.roster, h.rosterLoaded = nil, false
		for _, o := range append([]*sess(nil), h.sessions...) {
			o.available = false // contacts' subscriptions are gone with the account
			h.removeSession(o)
			o.b.sess.Close("not-authorized", "account removed")
		}
		return
	}
	pw := q.ChildText("password", "")
	if u := q.ChildText("username", ""); u != "" && u != h.bare.Local() {
		h.reply(s, stanza.Error(st, stanza.Modify, "bad-request", "username does not match the account"))
		return
	}
	if pw == "" {
		h.reply(s, stanza.Error(st, stanza.Modify, "bad-request", "password required"))
		return
	}
	err := h.r.cfg.Accounts.SetPassword(h.ctx, h.bare, pw)
	switch {
	case errors.Is(err, accounts.ErrWeakPassword):
		h.reply(s, stanza.Error(st, stanza.Modify, "not-acceptable", err.Error()))
	case err != nil:
		h.r.log.Error("change password", "user", h.bare.String(), "err", err)
		h.reply(s, stanza.Error(st, stanza.Wait, "internal-server-error", ""))
	default:
		h.reply(s, stanza.Result(st))
	}
}
