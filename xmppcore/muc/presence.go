package muc

import (
	"slices"
	"strings"
	"time"

	"github.com/aldis-im/aldis/xmppcore/jid"
	"github.com/aldis-im/aldis/xmppcore/stanza"
	"github.com/aldis-im/aldis/xmppcore/wire"
)

// occupant is one nick in the room. The same user may be in the room with
// several sessions under one nick (multi-session); they share the occupant.
type occupant struct {
	nick     string
	real     jid.JID // bare
	role     role
	sessions []jid.JID // real full JIDs, in join order
	shownJID jid.JID   // the session whose JID the room shows: the one that spoke last
	pres     []wire.Node
	presNS   []wire.Attr // xmlns:p declarations the payload may rely on
	// Federation: the peer room the occupant is on (nil: it is local, and
	// has sessions here); for a local one, whether the room we joined has
	// it; for a remote one, whether a rejoin has not confirmed it yet.
	via      *fedPeer
	upJoined bool
	stale    bool
}

// presOpts describes one presence of an occupant.
type presOpts struct {
	unavailable bool
	self        bool // for the occupant itself: status 110
	withJID     bool // show the real JID
	codes       []string
	newNick     string // nick change (303): the new nick, and the role is kept
	actor       string
	reason      string
	status      string // exit text of an unavailable presence
	destroy     *wire.Element
	id          string
	noUp        bool // not for the room we joined: it knows already
}

// presence handles a presence to the room or an occupant JID.
func (r *room) presence(ev event) {
	st := ev.st
	o := r.sessions[ev.from]
	switch st.Attr("type") {
	case "":
		nick := ev.to.Resource()
		switch {
		case nick == "":
			r.refuse(ev, stanza.Modify, "jid-malformed", "a nickname is required")
		case o == nil:
			r.join(ev)
		case fold(nick) != fold(o.nick):
			r.changeNick(ev, o)
		case st.Child("x", NS) != nil:
			// A join from a session already in the room: it lost track,
			// so it gets everything again.
			o.setPresence(st, ev.from)
			r.welcome(ev, o, nil)
		default:
			o.setPresence(st, ev.from)
			if rl, ok := r.gatewayRole(ev); ok {
				o.role = rl
			}
			r.broadcastPresence(o, presOpts{}, true)
		}
	case "unavailable":
		if o != nil {
			opts := presOpts{unavailable: true, status: st.ChildText("status", "")}
			r.gatewayExit(ev, &opts)
			r.leave(o, ev.from, opts, true)
		}
	case "error":
		if o != nil {
			r.leave(o, ev.from, presOpts{unavailable: true, codes: []string{"333"}}, false)
		}
	}
}

// join admits a new session, checking the XEP-0045 §7.2 entry conditions
// in the order the XEP lists them.
func (r *room) join(ev event) {
	st := ev.st
	nick := ev.to.Resource()
	x := st.Child("x", NS)
	if x == nil {
		r.deliver(notInRoom(ev), ev.to, ev.from)
		return
	}
	if strings.TrimSpace(nick) == "" {
		r.refuse(ev, stanza.Modify, "jid-malformed", "a nickname must not be blank")
		return
	}
	creating := !r.exists
	aff := r.affiliationOf(ev.from)
	if creating {
		aff = affOwner
	}
	existing := r.occupants[fold(nick)]
	switch {
	case creating:
	case r.locked && aff != affOwner:
		r.refuse(ev, stanza.Cancel, "item-not-found", "the room is being set up")
		return
	case aff == affOutcast:
		r.refuse(ev, stanza.Auth, "forbidden", "you are banned from this room")
		return
	case !r.mayEnter(ev):
		// Like a ban, and saying no more: the room label is not disclosed.
		r.refuse(ev, stanza.Auth, "forbidden", "")
		return
	case r.conf.MembersOnly && aff < affMember:
		r.refuse(ev, stanza.Auth, "registration-required", "the room is members-only")
		return
	case existing != nil && existing.real != ev.from.Bare():
		r.refuse(ev, stanza.Cancel, "conflict", "the nickname is in use")
		return
	case r.reservedFor(nick, ev.from.Bare()):
		r.refuse(ev, stanza.Cancel, "conflict", "the nickname is registered to someone else")
		return
	case r.conf.Password != "" && aff < affOwner && password(st, x) != r.conf.Password:
		r.refuse(ev, stanza.Auth, "not-authorized", "a password is required")
		return
	case existing == nil && len(r.order) >= r.conf.MaxUsers && aff < affAdmin:
		r.refuse(ev, stanza.Wait, "service-unavailable", "the room is full")
		return
	}
	var codes []string
	if creating {
		r.exists = true
		r.affs[ev.from.Bare()] = affEntry{aff: affOwner}
		if r.up == nil {
			r.locked = true
			codes = append(codes, "201")
		} else {
			// Configured by the operator: the room opens at once.
			r.publish()
		}
	}
	if existing == nil && !creating && r.gatewayJoin(ev) {
		return // held until the gateway answers
	}
	if existing == nil && r.fedJoin(ev) {
		return // held until the federated room answers
	}
	o := existing
	if o == nil {
		o = &occupant{nick: nick, real: ev.from.Bare(), role: r.defaultRole(aff)}
		if rl, ok := r.gatewayRole(ev); ok {
			o.role = rl
		}
		r.occupants[fold(nick)] = o
		r.order = append(r.order, o)
		r.s.occupants.Add(1)
	}
	o.sessions = append(o.sessions, ev.from)
	r.sessions[ev.from] = o
	o.setPresence(st, ev.from)
	if existing == nil {
		r.broadcastPresence(o, presOpts{noUp: ev.fedOK}, false)
	}
	r.welcome(ev, o, codes)
	if creating {
		r.publish()
	}
}

// welcome sends a session that joined what XEP-0045 §7.2.3 lists, in its
// order: the other occupants, its own presence, the history, the subject.
func (r *room) welcome(ev event, o *occupant, codes []string) {
	sj := ev.from
	r.sendOccupants(o, []jid.JID{sj})
	if r.conf.NonAnonymous {
		codes = append(codes, "100")
	}
	if r.archiving() {
		codes = append(codes, "170") // the room is logged (§7.2.12)
	}
	self := r.presenceOf(o, presOpts{self: true, withJID: true, codes: codes, id: ev.st.Attr("id")})
	r.deliver(self.WithAttr("to", sj.String()), r.occJID(o.nick), sj)
	var hist *wire.Element
	if x := ev.st.Child("x", NS); x != nil {
		hist = x.Child("history", "")
	}
	r.loadHistory()
	r.sendHistory(sj, hist)
	r.sendSubject(sj)
}

// sendOccupants sends the presence of every other occupant to sessions of viewer.
func (r *room) sendOccupants(viewer *occupant, sessions []jid.JID) {
	see := r.seesJIDs(viewer)
	for _, o := range r.order {
		if o == viewer || !r.conf.broadcasts(o.role) {
			continue
		}
		p := r.presenceOf(o, presOpts{withJID: see})
		for _, sj := range sessions {
			r.deliver(p.WithAttr("to", sj.String()), r.occJID(o.nick), sj)
		}
	}
}

// sendOccupantsTo sends every session of viewer the other occupants.
func (r *room) sendOccupantsTo(viewer *occupant) {
	if r.occupants[fold(viewer.nick)] == viewer {
		r.sendOccupants(viewer, viewer.sessions)
	}
}

func (r *room) sendSubject(to jid.JID) {
	from := r.jid
	if r.subject.Set && r.subject.By != "" {
		from = r.occJID(r.subject.By)
	}
	m := wire.New("message", "")
	m.SetAttr("from", from.String()).SetAttr("to", to.String()).SetAttr("type", "groupchat").SetAttr("id", randomID())
	m.AddChild(wire.New("subject", "")).AddText(r.subject.Text)
	if r.subject.Set {
		m.AddChild(r.delay(r.subject.Stamp))
	}
	r.deliver(m, from, to)
}

func (r *room) delay(t time.Time) *wire.Element {
	d := wire.New("delay", stanza.NSDelay)
	d.SetAttr("from", r.jid.String()).SetAttr("stamp", t.UTC().Format("2006-01-02T15:04:05.000Z"))
	return d
}

// changeNick renames an occupant (XEP-0045 §7.6): everyone sees the old
// nick leave with status 303 and the new one arrive.
func (r *room) changeNick(ev event, o *occupant) {
	nick := ev.to.Resource()
	if strings.TrimSpace(nick) == "" {
		r.refuse(ev, stanza.Modify, "jid-malformed", "a nickname must not be blank")
		return
	}
	if other := r.occupants[fold(nick)]; other != nil && other != o {
		r.refuse(ev, stanza.Cancel, "conflict", "the nickname is in use")
		return
	}
	if r.reservedFor(nick, o.real) {
		r.refuse(ev, stanza.Cancel, "conflict", "the nickname is registered to someone else")
		return
	}
	r.broadcastPresence(o, presOpts{unavailable: true, newNick: nick, codes: []string{"303"}}, true)
	delete(r.occupants, fold(o.nick))
	o.nick = nick
	r.occupants[fold(nick)] = o
	o.setPresence(ev.st, ev.from)
	r.broadcastPresence(o, presOpts{}, true)
}

// leave removes one session of o; the occupant leaves with its last
// session. tell says whether that session is told (it is not when it is
// known to be gone).
func (r *room) leave(o *occupant, sj jid.JID, opts presOpts, tell bool) {
	if tell {
		p := r.presenceOf(o, withSelf(opts))
		r.deliver(p.WithAttr("to", sj.String()), r.occJID(o.nick), sj)
	}
	if i := slices.Index(o.sessions, sj); i >= 0 {
		o.sessions = slices.Delete(o.sessions, i, i+1)
	}
	delete(r.sessions, sj)
	if len(o.sessions) > 0 {
		if o.shownJID == sj {
			o.shownJID = o.sessions[len(o.sessions)-1]
		}
		return
	}
	r.dropOccupant(o)
	r.broadcastPresence(o, opts, false)
}

// dropOccupant takes o out of the room; its sessions stay listed in o so
// that they can still be told why.
func (r *room) dropOccupant(o *occupant) {
	if r.occupants[fold(o.nick)] != o {
		return
	}
	delete(r.occupants, fold(o.nick))
	if i := slices.Index(r.order, o); i >= 0 {
		r.order = slices.Delete(r.order, i, i+1)
	}
	for _, sj := range o.sessions {
		delete(r.sessions, sj)
	}
	r.s.occupants.Add(-1)
}

// tellSelf sends o's presence to each of o's sessions.
func (r *room) tellSelf(o *occupant, opts presOpts) {
	p := r.presenceOf(o, withSelf(opts))
	for _, sj := range o.sessions {
		r.deliver(p.WithAttr("to", sj.String()), r.occJID(o.nick), sj)
	}
}

func withSelf(opts presOpts) presOpts {
	opts.self, opts.withJID = true, true
	return opts
}

// broadcastPresence sends o's presence to the other occupants and, with
// self, to o's own sessions. Each recipient gets one of at most two
// stanzas, built once: with the real JID (non-anonymous rooms, moderators)
// or without.
func (r *room) broadcastPresence(o *occupant, opts presOpts, self bool) {
	var with, without *wire.Element
	from := r.occJID(o.nick)
	// The presence of a role the room does not broadcast reaches no one
	// but the occupant itself (muc#roomconfig_presencebroadcast).
	hidden := !r.conf.broadcasts(o.role)
	for _, v := range r.order {
		if v == o || hidden {
			continue
		}
		var p *wire.Element
		if r.seesJIDs(v) {
			if with == nil {
				opts.withJID = true
				with = r.presenceOf(o, opts)
			}
			p = with
		} else {
			if without == nil {
				opts.withJID = false
				without = r.presenceOf(o, opts)
			}
			p = without
		}
		for _, sj := range v.sessions {
			r.deliver(p.WithAttr("to", sj.String()), from, sj)
		}
	}
	if self {
		r.tellSelf(o, opts)
	}
	if r.federated() {
		opts.self = false
		r.fanPresence(o, opts)
		if opts.unavailable && opts.newNick == "" && o.via == nil {
			r.fedLeft()
		}
	}
}

// seesJIDs reports whether viewer sees occupants' real JIDs: everyone in a
// non-anonymous room, moderators and trusted observers in a semi-anonymous one.
func (r *room) seesJIDs(viewer *occupant) bool {
	return r.conf.NonAnonymous || viewer.role == roleModerator || r.s.observers[viewer.real.Domain()]
}

// presenceOf builds a presence of o, without a to.
func (r *room) presenceOf(o *occupant, opts presOpts) *wire.Element {
	p := wire.New("presence", "")
	p.SetAttr("from", r.occJID(o.nick).String())
	if opts.id != "" {
		p.SetAttr("id", opts.id)
	}
	if opts.unavailable {
		p.SetAttr("type", "unavailable")
		if opts.status != "" {
			p.AddChild(wire.New("status", "")).AddText(opts.status)
		}
	} else {
		for _, a := range o.presNS {
			p.SetAttr(a.Name, a.Value)
		}
		p.Nodes = append(p.Nodes, o.pres...) // shared, read-only
	}
	x := p.AddChild(wire.New("x", NSUser))
	it := x.AddChild(wire.New("item", ""))
	aff := r.affiliationOf(o.real)
	if opts.destroy != nil {
		aff = affNone
	}
	rl := o.role
	if opts.unavailable && opts.newNick == "" {
		rl = roleNone
	}
	it.SetAttr("affiliation", aff.String()).SetAttr("role", rl.String())
	if opts.withJID {
		it.SetAttr("jid", o.shownJID.String())
	}
	if opts.newNick != "" {
		it.SetAttr("nick", opts.newNick)
	}
	if opts.actor != "" {
		it.AddChild(wire.New("actor", "")).SetAttr("nick", opts.actor)
	}
	if opts.reason != "" {
		it.AddChild(wire.New("reason", "")).AddText(opts.reason)
	}
	if opts.destroy != nil {
		x.AddChild(opts.destroy)
	}
	if opts.self {
		x.AddChild(wire.New("status", "")).SetAttr("code", "110")
	}
	for _, c := range opts.codes {
		x.AddChild(wire.New("status", "")).SetAttr("code", c)
	}
	return p
}

// setPresence records the presence a session sent, minus the MUC elements
// the room itself adds.
func (o *occupant) setPresence(st *wire.Element, from jid.JID) {
	o.shownJID = from
	o.pres = o.pres[:0:0]
	for c := range st.Elements() {
		if c.Local() == "x" && (c.Space == NS || c.Space == NSUser) {
			continue
		}
		o.pres = append(o.pres, wire.Node{Elem: c})
	}
	o.presNS = o.presNS[:0:0]
	for _, a := range st.Attrs {
		if strings.HasPrefix(a.Name, "xmlns:") {
			o.presNS = append(o.presNS, a)
		}
	}
}

// password is the room password given with a join, in the muc <x/> (or,
// as some clients send it, the muc#user one).
func password(st, x *wire.Element) string {
	if p := x.Child("password", ""); p != nil {
		return p.Text()
	}
	if ux := st.Child("x", NSUser); ux != nil {
		return ux.ChildText("password", "")
	}
	return ""
}
