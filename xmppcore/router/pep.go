package router

import (
	"errors"
	"strconv"

	"github.com/aldis-im/aldis/core/store"
	"github.com/aldis-im/aldis/xmppcore/caps"
	"github.com/aldis-im/aldis/xmppcore/jid"
	"github.com/aldis-im/aldis/xmppcore/stanza"
	"github.com/aldis-im/aldis/xmppcore/wire"
)

// Personal eventing (XEP-0163): every account is a pubsub service with
// nodes such as avatars (XEP-0084) and bookmarks (XEP-0402). Notifications
// go to the resources, the user's own and contacts', whose entity
// capabilities (XEP-0115) ask for "<node>+notify".

const (
	nsPubsub      = "http://jabber.org/protocol/pubsub"
	nsPubsubOwner = "http://jabber.org/protocol/pubsub#owner"
	nsPubsubEvent = "http://jabber.org/protocol/pubsub#event"
	nsPubsubErr   = "http://jabber.org/protocol/pubsub#errors"
	nsPEPStore    = "urn:aldis:pep:0"
	nsDataForm    = "jabber:x:data"

	maxPEPNodes = 100  // nodes per account
	maxPEPItems = 1000 // items per node ("max")
)

type pepItem struct {
	id      string
	payload *wire.Element
}

type pepNode struct {
	name     string
	access   string // "presence" (default), "open", "whitelist", "roster"
	maxItems int
	sendLast bool
	items    []pepItem // oldest first
}

// resource is a full JID whose presence the hub knows, with its caps.
type resource struct {
	caps  caps.Caps
	feats map[string]bool // nil until the caps are learnt
}

func (n *pepNode) last() *pepItem {
	if len(n.items) == 0 {
		return nil
	}
	return &n.items[len(n.items)-1]
}

// loadPEP reads the account's nodes on first use.
func (h *hub) loadPEP() {
	if h.pep != nil {
		return
	}
	h.pep = map[string]*pepNode{}
	idx, err := h.r.cfg.Store.GetXML(h.ctx, h.bare.String(), "pep-index")
	if errors.Is(err, store.ErrNotFound) {
		return
	}
	if err != nil {
		h.r.log.Error("load pep index", "user", h.bare.String(), "err", err)
		return
	}
	el, err := wire.ParseElement(idx)
	if err != nil {
		return
	}
	for n := range el.Elements() {
		name := n.Attr("name")
		x, err := h.r.cfg.Store.GetXML(h.ctx, h.bare.String(), "pep:"+name)
		if err != nil {
			continue
		}
		ne, err := wire.ParseElement(x)
		if err != nil {
			continue
		}
		node := &pepNode{name: name, access: ne.Attr("access"), sendLast: ne.Attr("send-last") != "never"}
		node.maxItems, _ = strconv.Atoi(ne.Attr("max"))
		for it := range ne.Elements() {
			var payload *wire.Element
			for p := range it.Elements() {
				payload = p
			}
			node.items = append(node.items, pepItem{id: it.Attr("id"), payload: payload})
		}
		h.pep[name] = node
	}
}

// savePEP writes a node (nil: deletes it) and the index.
func (h *hub) savePEP(name string, n *pepNode) error {
	user := h.bare.String()
	if n == nil {
		if err := h.r.cfg.Store.DeleteXML(h.ctx, user, "pep:"+name); err != nil {
			return err
		}
	} else {
		e := wire.New("node", nsPEPStore)
		e.SetAttr("access", n.access)
		e.SetAttr("max", strconv.Itoa(n.maxItems))
		if !n.sendLast {
			e.SetAttr("send-last", "never")
		}
		for _, it := range n.items {
			ie := e.AddChild(wire.New("item", ""))
			ie.SetAttr("id", it.id)
			if it.payload != nil {
				ie.AddChild(it.payload)
			}
		}
		if err := h.r.cfg.Store.PutXML(h.ctx, user, "pep:"+name, e.String()); err != nil {
			return err
		}
	}
	idx := wire.New("nodes", nsPEPStore)
	for nm := range h.pep {
		idx.AddChild(wire.New("node", "")).SetAttr("name", nm)
	}
	return h.r.cfg.Store.PutXML(h.ctx, user, "pep-index", idx.String())
}

// pepAllowed reports whether who may see the node's items.
func (h *hub) pepAllowed(n *pepNode, who jid.JID) bool {
	if who.Bare() == h.bare {
		return true
	}
	switch n.access {
	case "open":
		return true
	case "whitelist":
		return false
	default: // presence, roster
		if h.loadRoster() != nil {
			return false
		}
		return subFrom(h.roster[who.Bare()])
	}
}

func pubsubError(st *wire.Element, typ, cond, app string) *wire.Element {
	e := stanza.Error(st, typ, cond, "")
	if app != "" {
		e.Child("error", "").AddChild(wire.New(app, nsPubsubErr))
	}
	return e
}

// pepIQ handles a pubsub iq to the account from its owner or anyone else.
func (h *hub) pepIQ(st, ps *wire.Element, from jid.JID) *wire.Element {
	if !h.exists {
		return stanza.Error(st, stanza.Cancel, "service-unavailable", "")
	}
	h.loadPEP()
	owner := from.Bare() == h.bare
	typ := st.Attr("type")
	var op *wire.Element
	for c := range ps.Elements() {
		if c.Local() != "publish-options" && c.Local() != "options" {
			op = c
			break
		}
	}
	if op == nil {
		return stanza.Error(st, stanza.Modify, "bad-request", "")
	}
	name := op.Attr("node")
	n := h.pep[name]
	switch {
	case ps.Space == nsPubsub && op.Local() == "items" && typ == "get":
		if n == nil {
			return stanza.Error(st, stanza.Cancel, "item-not-found", "")
		}
		if !h.pepAllowed(n, from) {
			if n.access == "whitelist" {
				return pubsubError(st, stanza.Cancel, "not-allowed", "closed-node")
			}
			return pubsubError(st, stanza.Auth, "not-authorized", "presence-subscription-required")
		}
		return h.pepItems(st, n, op)
	case !owner:
		return stanza.Error(st, stanza.Auth, "forbidden", "")
	case ps.Space == nsPubsub && op.Local() == "publish" && typ == "set":
		return h.pepPublish(st, ps, op, name, n)
	case ps.Space == nsPubsub && op.Local() == "retract" && typ == "set":
		return h.pepRetract(st, op, n)
	case ps.Space == nsPubsubOwner && op.Local() == "delete" && typ == "set":
		if n == nil {
			return stanza.Error(st, stanza.Cancel, "item-not-found", "")
		}
		delete(h.pep, name)
		if err := h.savePEP(name, nil); err != nil {
			return stanza.Error(st, stanza.Wait, "internal-server-error", "")
		}
		ev := wire.New("delete", "")
		ev.SetAttr("node", name)
		h.pepNotify(n, ev)
		return stanza.Result(st)
	case ps.Space == nsPubsubOwner && op.Local() == "purge" && typ == "set":
		if n == nil {
			return stanza.Error(st, stanza.Cancel, "item-not-found", "")
		}
		n.items = nil
		if err := h.savePEP(name, n); err != nil {
			return stanza.Error(st, stanza.Wait, "internal-server-error", "")
		}
		return stanza.Result(st)
	case ps.Space == nsPubsubOwner && op.Local() == "configure":
		if n == nil {
			return stanza.Error(st, stanza.Cancel, "item-not-found", "")
		}
		if typ == "get" {
			res := stanza.Result(st)
			c := res.AddChild(wire.New("pubsub", nsPubsubOwner)).AddChild(wire.New("configure", ""))
			c.SetAttr("node", name)
			c.AddChild(nodeForm(n, "form"))
			return res
		}
		applyOptions(n, op.Child("x", nsDataForm))
		if err := h.savePEP(name, n); err != nil {
			return stanza.Error(st, stanza.Wait, "internal-server-error", "")
		}
		return stanza.Result(st)
	default:
		return pubsubError(st, stanza.Cancel, "feature-not-implemented", "unsupported")
	}
}

func (h *hub) pepItems(st *wire.Element, n *pepNode, op *wire.Element) *wire.Element {
	res := stanza.Result(st)
	items := res.AddChild(wire.New("pubsub", nsPubsub)).AddChild(wire.New("items", ""))
	items.SetAttr("node", n.name)
	want := map[string]bool{}
	for it := range op.Elements() {
		if it.Local() == "item" {
			want[it.Attr("id")] = true
		}
	}
	list := n.items
	if m, err := strconv.Atoi(op.Attr("max_items")); err == nil && m >= 0 && m < len(list) {
		list = list[len(list)-m:]
	}
	for _, it := range list {
		if len(want) > 0 && !want[it.id] {
			continue
		}
		items.AddChild(pepItemElement(it))
	}
	return res
}

func pepItemElement(it pepItem) *wire.Element {
	e := wire.New("item", "")
	e.SetAttr("id", it.id)
	if it.payload != nil {
		e.AddChild(it.payload.Copy())
	}
	return e
}

func (h *hub) pepPublish(st, ps, op *wire.Element, name string, n *pepNode) *wire.Element {
	if name == "" {
		return pubsubError(st, stanza.Modify, "bad-request", "nodeid-required")
	}
	it := op.Child("item", "")
	var payload *wire.Element
	if it != nil {
		for p := range it.Elements() {
			if payload != nil {
				return pubsubError(st, stanza.Modify, "bad-request", "invalid-payload")
			}
			payload = p
		}
	}
	if payload == nil {
		return pubsubError(st, stanza.Modify, "bad-request", "payload-required")
	}
	var opts *wire.Element
	if po := ps.Child("publish-options", ""); po != nil {
		opts = po.Child("x", nsDataForm)
	}
	if n == nil {
		if len(h.pep) >= maxPEPNodes {
			return pubsubError(st, stanza.Wait, "resource-constraint", "")
		}
		// Auto-create (XEP-0163 §3) takes the publish options as its
		// configuration.
		n = &pepNode{name: name, access: "presence", maxItems: 1, sendLast: true}
		applyOptions(n, opts)
		h.pep[name] = n
	} else if !optionsMet(n, opts) {
		// Publish options are preconditions on an existing node (XEP-0060
		// §7.1.5): the client reconfigures the node and publishes again.
		return pubsubError(st, stanza.Cancel, "conflict", "precondition-not-met")
	}
	id := it.Attr("id")
	if id == "" {
		id = randomID()
	}
	item := pepItem{id: id, payload: payload.Copy()}
	for i := range n.items {
		if n.items[i].id == id {
			n.items = append(n.items[:i], n.items[i+1:]...)
			break
		}
	}
	n.items = append(n.items, item)
	if len(n.items) > n.maxItems {
		n.items = n.items[len(n.items)-n.maxItems:]
	}
	if err := h.savePEP(name, n); err != nil {
		h.r.log.Error("save pep node", "user", h.bare.String(), "err", err)
		return stanza.Error(st, stanza.Wait, "internal-server-error", "")
	}
	ev := wire.New("items", "")
	ev.SetAttr("node", name)
	ev.AddChild(pepItemElement(item))
	h.pepNotify(n, ev)
	res := stanza.Result(st)
	pub := res.AddChild(wire.New("pubsub", nsPubsub)).AddChild(wire.New("publish", ""))
	pub.SetAttr("node", name)
	pub.AddChild(wire.New("item", "")).SetAttr("id", id)
	return res
}

func (h *hub) pepRetract(st, op *wire.Element, n *pepNode) *wire.Element {
	if n == nil {
		return stanza.Error(st, stanza.Cancel, "item-not-found", "")
	}
	it := op.Child("item", "")
	if it == nil || it.Attr("id") == "" {
		return pubsubError(st, stanza.Modify, "bad-request", "item-required")
	}
	id := it.Attr("id")
	found := false
	for i := range n.items {
		if n.items[i].id == id {
			n.items = append(n.items[:i], n.items[i+1:]...)
			found = true
			break
		}
	}
	if !found {
		return stanza.Error(st, stanza.Cancel, "item-not-found", "")
	}
	if err := h.savePEP(n.name, n); err != nil {
		return stanza.Error(st, stanza.Wait, "internal-server-error", "")
	}
	if nt := op.Attr("notify"); nt == "true" || nt == "1" {
		ev := wire.New("items", "")
		ev.SetAttr("node", n.name)
		ev.AddChild(wire.New("retract", "")).SetAttr("id", id)
		h.pepNotify(n, ev)
	}
	return stanza.Result(st)
}

// applyOptions applies a pubsub#node_config or publish-options form.
func applyOptions(n *pepNode, form *wire.Element) {
	if form == nil {
		return
	}
	for f := range form.Elements() {
		if f.Local() != "field" {
			continue
		}
		v := f.ChildText("value", "")
		switch f.Attr("var") {
		case "pubsub#access_model":
			switch v {
			case "open", "presence", "whitelist", "roster":
				n.access = v
			}
		case "pubsub#max_items":
			if v == "max" {
				n.maxItems = maxPEPItems
			} else if m, err := strconv.Atoi(v); err == nil && m > 0 {
				n.maxItems = min(m, maxPEPItems)
			}
		case "pubsub#send_last_published_item":
			n.sendLast = v != "never"
		}
	}
	if len(n.items) > n.maxItems {
		n.items = n.items[len(n.items)-n.maxItems:]
	}
}

// optionsMet reports whether a node's configuration satisfies publish
// options; options the service does not know are not preconditions.
func optionsMet(n *pepNode, form *wire.Element) bool {
	if form == nil {
		return true
	}
	for f := range form.Elements() {
		if f.Local() != "field" {
			continue
		}
		v := f.ChildText("value", "")
		switch f.Attr("var") {
		case "pubsub#access_model":
			if v != n.access {
				return false
			}
		case "pubsub#max_items":
			want := maxPEPItems
			if v != "max" {
				m, err := strconv.Atoi(v)
				if err != nil || m <= 0 {
					return false
				}
				want = min(m, maxPEPItems) // as applyOptions caps it
			}
			if want != n.maxItems {
				return false
			}
		case "pubsub#send_last_published_item":
			if (v != "never") != n.sendLast {
				return false
			}
		case "pubsub#persist_items":
			if v != "1" && v != "true" {
				return false // items are always persisted
			}
		}
	}
	return true
}

func nodeForm(n *pepNode, typ string) *wire.Element {
	x := wire.New("x", nsDataForm)
	x.SetAttr("type", typ)
	field := func(v, val string) {
		f := x.AddChild(wire.New("field", ""))
		f.SetAttr("var", v)
		f.AddChild(wire.New("value", "")).AddText(val)
	}
	field("FORM_TYPE", "http://jabber.org/protocol/pubsub#node_config")
	x.Child("field", "").SetAttr("type", "hidden")
	field("pubsub#access_model", n.access)
	field("pubsub#max_items", strconv.Itoa(n.maxItems))
	field("pubsub#persist_items", "true")
	sl := "on_sub_and_presence"
	if !n.sendLast {
		sl = "never"
	}
	field("pubsub#send_last_published_item", sl)
	return x
}

// eventMessage wraps an event payload (<items/> or <delete/>).
func (h *hub) eventMessage(ev *wire.Element, to jid.JID) *wire.Element {
	m := wire.New("message", "")
	m.SetAttr("from", h.bare.String())
	m.SetAttr("to", to.String())
	m.SetAttr("type", "headline")
	m.AddChild(wire.New("event", nsPubsubEvent)).AddChild(ev.Copy())
	return m
}

// pepNotify sends an event to every interested resource allowed to see n.
func (h *hub) pepNotify(n *pepNode, ev *wire.Element) {
	want := n.name + "+notify"
	for _, s := range h.sessions {
		if s.available && s.res.feats[want] {
			h.send(s, h.eventMessage(ev, s.b.jid).Append(nil))
		}
	}
	for full, r := range h.contacts {
		if r.feats[want] && h.pepAllowed(n, full) {
			h.r.route(h.eventMessage(ev, full), h.bare, full)
		}
	}
}

// sendLast gives a newly interested resource the last item of each node it
// asks for (XEP-0163 §4.3.4).
func (h *hub) sendLast(to jid.JID, feats map[string]bool, own *sess) {
	if len(feats) == 0 {
		return
	}
	h.loadPEP()
	for _, n := range h.pep {
		last := n.last()
		if last == nil || !n.sendLast || !feats[n.name+"+notify"] || !h.pepAllowed(n, to) {
			continue
		}
		ev := wire.New("items", "")
		ev.SetAttr("node", n.name)
		ev.AddChild(pepItemElement(*last))
		m := h.eventMessage(ev, to)
		if own != nil {
			h.send(own, m.Append(nil))
		} else {
			h.r.route(m, h.bare, to)
		}
	}
}

// learnCaps resolves the caps of a resource that just sent presence, asking
// it with disco#info when the version is new; onFeats runs on the hub.
func (h *hub) learnCaps(full jid.JID, c caps.Caps) {
	if f, ok := h.r.caps.Features(c.Ver); ok {
		h.capsLearnt(full, c.Ver, f)
		return
	}
	first := h.r.caps.Wait(c.Ver, func(f map[string]bool) {
		h.post(event{kind: evCaps, from: full, capsVer: c.Ver, feats: f}, false)
	})
	if !first {
		return
	}
	q := wire.New("query", stanza.NSDiscoInfo)
	q.SetAttr("node", c.Node+"#"+c.Ver)
	h.r.query(h.r.hostOf(h.bare.Domain()), full, q, func(res *wire.Element) {
		if res == nil || res.Attr("type") != "result" || !h.r.caps.Learn(c, res.Child("query", stanza.NSDiscoInfo)) {
			h.r.caps.Forget(c.Ver)
		}
	})
}

// capsLearnt records features for every resource of that version and
// sends them what they now ask for. Waiters are per version, so one answer
// serves every resource with the same client.
func (h *hub) capsLearnt(full jid.JID, ver string, feats map[string]bool) {
	for _, s := range h.sessions {
		if s.available && s.res.caps.Ver == ver && s.res.feats == nil {
			s.res.feats = feats
			h.sendLast(s.b.jid, feats, s)
		}
	}
	for j, r := range h.contacts {
		if r.caps.Ver == ver && r.feats == nil {
			r.feats = feats
			h.sendLast(j, feats, nil)
		}
	}
}

// trackContact follows a contact's resources for PEP notifications.
func (h *hub) trackContact(st *wire.Element, from jid.JID) {
	if from.Bare() == h.bare || from.Resource() == "" {
		return
	}
	switch st.Attr("type") {
	case "":
		c, ok := caps.FromPresence(st)
		if !ok {
			delete(h.contacts, from)
			return
		}
		if r := h.contacts[from]; r != nil && r.caps.Ver == c.Ver {
			return // an update from a client we know
		}
		if h.contacts == nil {
			h.contacts = map[jid.JID]*resource{}
		}
		h.contacts[from] = &resource{caps: c}
		h.learnCaps(from, c)
	case "unavailable", "error":
		delete(h.contacts, from)
	}
}

// trackOwn follows the caps of the user's own session.
func (h *hub) trackOwn(s *sess, st *wire.Element) {
	c, ok := caps.FromPresence(st)
	if !ok {
		s.res = resource{}
		return
	}
	if s.res.caps.Ver == c.Ver {
		return
	}
	s.res = resource{caps: c}
	h.learnCaps(s.b.jid, c)
}
