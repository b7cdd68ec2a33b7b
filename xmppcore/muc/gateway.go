package muc

import (
	"slices"

	"github.com/aldis-im/aldis/xmppcore/jid"
	"github.com/aldis-im/aldis/xmppcore/stanza"
	"github.com/aldis-im/aldis/xmppcore/wire"
)

// A trusted gateway (a domain in Config.Observers, such as the IRC gateway)
// shows the users of another network as occupants. It knows their standing
// there — a channel operator, a voiced user in a moderated channel, a kick,
// a netsplit — which the room cannot derive from affiliations it does not
// hold, so the room takes what the gateway's presence claims in a muc#user
// <x/>: <item role='…'/> on an available presence; status codes 307 or 333
// with <item><actor nick='…'/><reason>…</reason></item> on an unavailable
// one. Presence from anyone else never sets these.

// gatewayExitCodes are the status codes a gateway may give an occupant's
// departure: kicked (307) and removed by an error or a netsplit (333).
var gatewayExitCodes = []string{"307", "333"}

// isGateway reports whether the session's domain is a trusted gateway.
func (r *room) isGateway(ev event) bool {
	return r.s.observers[ev.from.Domain()]
}

// gatewayRole is the role a gateway occupant's available presence claims.
func (r *room) gatewayRole(ev event) (role, bool) {
	if !r.isGateway(ev) {
		return roleNone, false
	}
	x := ev.st.Child("x", NSUser)
	if x == nil {
		return roleNone, false
	}
	it := x.Child("item", "")
	if it == nil {
		return roleNone, false
	}
	rl, ok := parseRole(it.Attr("role"))
	if !ok || rl == roleNone {
		return roleNone, false
	}
	return rl, true
}

// gatewayExit adds to opts the codes, actor and reason of a gateway
// occupant's unavailable presence.
func (r *room) gatewayExit(ev event, opts *presOpts) {
	if !r.isGateway(ev) {
		return
	}
	x := ev.st.Child("x", NSUser)
	if x == nil {
		return
	}
	for c := range x.Elements() {
		if code := c.Attr("code"); c.Local() == "status" && slices.Contains(gatewayExitCodes, code) && !slices.Contains(opts.codes, code) {
			opts.codes = append(opts.codes, code)
		}
	}
	if it := x.Child("item", ""); it != nil {
		if a := it.Child("actor", ""); a != nil {
			opts.actor = a.Attr("nick")
		}
		opts.reason = it.ChildText("reason", "")
	}
}

// NSGateway is the namespace of a room's questions to its gateway: may this
// user join (<join/>)? may this occupant change the subject (<subject/>)?
// A room linked to an IRC channel admits a user only once the channel did
// (PROTOCOLS §7.4): the gateway joins the channel on the user's connection
// and answers with a result, or with the error the join gets (banned:
// forbidden; invite only: registration-required...); likewise the subject
// changes only once the channel's topic did.
const NSGateway = "urn:aldis:muc:gateway:0"

// maxGatewayAsks bounds the joins and subject changes a room holds for its gateway.
const maxGatewayAsks = 256

// gwAsk is a join or a subject change held for the gateway's answer.
type gwAsk struct {
	ev      event
	nick    string
	to      jid.JID // whom the question went to: only it may answer
	subject bool
}

// gatewayOf is the session of the room's gateway itself (a bare domain of
// Config.Observers in the room, not one of its users), if any.
func (r *room) gatewayOf() (jid.JID, bool) {
	for _, o := range r.order {
		if o.real.Local() == "" && r.s.observers[o.real.Domain()] && len(o.sessions) > 0 && o.via == nil {
			return o.sessions[0], true
		}
	}
	return jid.JID{}, false
}

// gatewayJoin holds a new occupant's join while the room's gateway, if it
// has one, admits the user on its network; true: held.
func (r *room) gatewayJoin(ev event) bool {
	if ev.gwOK || r.isGateway(ev) {
		return false
	}
	nick := ev.to.Resource()
	for _, p := range r.gwAsks {
		if !p.subject && fold(p.nick) == fold(nick) {
			r.refuse(ev, stanza.Cancel, "conflict", "the nickname is being joined")
			return true
		}
	}
	return r.askGateway(ev, gwAsk{ev: ev, nick: nick}, wire.New("join", NSGateway))
}

// gatewaySubject holds an occupant's subject change while the room's gateway, if it has one,
// sets the topic on its network; true: held.
func (r *room) gatewaySubject(ev event, o *occupant, text string) bool {
	q := wire.New("subject", NSGateway)
	q.AddText(text)
	return r.askGateway(ev, gwAsk{ev: ev, nick: o.nick, subject: true}, q)
}

// askGateway sends the room's gateway, if it has one, the question q about a (held until it
// answers, or for GatewayTimeout); false: there is nothing to ask (no gateway, the gateway's
// own occupants, or an answer already given).
func (r *room) askGateway(ev event, a gwAsk, q *wire.Element) bool {
	if ev.gwOK || r.isGateway(ev) {
		return false
	}
	gw, ok := r.gatewayOf()
	if !ok {
		return false
	}
	if len(r.gwAsks) >= maxGatewayAsks {
		r.refuse(ev, stanza.Wait, "resource-constraint", "too many joins and subject changes in progress")
		return true
	}
	if r.gwAsks == nil {
		r.gwAsks = map[string]gwAsk{}
	}
	id := randomID()
	a.to = gw
	r.gwAsks[id] = a
	q.SetAttr("nick", a.nick).SetAttr("jid", ev.from.String())
	iq := wire.New("iq", "")
	iq.SetAttr("type", "set").SetAttr("id", id).SetAttr("from", r.jid.String()).SetAttr("to", gw.String())
	iq.AddChild(q)
	r.deliver(iq, r.jid, gw)
	r.after(r.s.cfg.GatewayTimeout, fedEvent{what: gwAskTimeout, id: id})
	return true
}

// gatewayAnswer follows the gateway's answer to a held join or subject
// change: a result lets it go ahead (the room's own conditions are checked
// again), an error refuses it with that error.
func (r *room) gatewayAnswer(ev event) {
	id := ev.st.Attr("id")
	p, ok := r.gwAsks[id]
	if !ok || ev.from != p.to {
		return
	}
	delete(r.gwAsks, id)
	if ev.st.Attr("type") == "result" {
		r.gatewayResume(p)
		return
	}
	typ, cond, text := stanza.Cancel, "remote-server-not-found", ""
	if e := ev.st.Child("error", ""); e != nil {
		if t := e.Attr("type"); t != "" {
			typ = t
		}
		for c := range e.Elements() {
			switch {
			case c.Local() == "text":
				text = c.Text()
			case c.Space == stanza.NSStanzaErr:
				cond = c.Local()
			}
		}
	}
	r.refuse(p.ev, typ, cond, text)
}

// gatewayTimeout goes ahead with what the gateway did not answer in time: a
// stalled gateway must not keep people out of the room (what they say
// reaches the other network only if it let them in).
func (r *room) gatewayTimeout(id string) {
	p, ok := r.gwAsks[id]
	if !ok {
		return
	}
	delete(r.gwAsks, id)
	r.s.log.Warn("the room's gateway did not answer; going ahead", "room", r.jid.String(), "gateway", p.to.String(), "subject", p.subject)
	r.gatewayResume(p)
}

// gatewayResume carries on with what the gateway allowed (or did not answer about); the room's
// own conditions are checked again.
func (r *room) gatewayResume(p gwAsk) {
	p.ev.gwOK = true
	if p.subject {
		r.groupchat(p.ev)
		return
	}
	r.join(p.ev)
}
