package muc

import (
	"slices"

	"github.com/aldis-im/aldis/xmppcore/jid"
	"github.com/aldis-im/aldis/xmppcore/seclabel"
	"github.com/aldis-im/aldis/xmppcore/stanza"
	"github.com/aldis-im/aldis/xmppcore/wire"
)

// isGhost reports whether a delivery error means the occupant is gone
// (XEP-0045 §18.1.2); service-unavailable is what the router returns for a
// groupchat message to a resource that has disappeared.
func isGhost(condition string) bool {
	switch condition {
	case "gone", "item-not-found", "recipient-unavailable", "redirect",
		"remote-server-not-found", "remote-server-timeout", "service-unavailable":
		return true
	}
	return false
}

func (r *room) message(ev event) {
	st := ev.st
	typ := st.Attr("type")
	switch {
	case typ == "error":
		// A bounce of something the room sent to an occupant.
		if o := r.sessions[ev.from]; o != nil && isGhost(errorCondition(st)) {
			r.leave(o, ev.from, presOpts{unavailable: true, codes: []string{"333"}}, false)
		}
	case ev.to.Resource() != "":
		r.private(ev)
	case typ == "groupchat":
		r.groupchat(ev)
	default:
		if x := st.Child("x", NSUser); x != nil {
			if x.Child("invite", "") != nil {
				r.invite(ev, x)
				return
			}
			if d := x.Child("decline", ""); d != nil {
				r.decline(ev, d)
				return
			}
		}
		if f := st.Child("x", NSData); f != nil && formType(f) == NSRequest {
			r.voiceRequest(ev, f)
			return
		}
		r.refuse(ev, stanza.Modify, "bad-request", "messages to the room have type groupchat")
	}
}

// groupchat reflects a message to every occupant, the sender included, or
// changes the subject.
func (r *room) groupchat(ev event) {
	st := ev.st
	o := r.sessions[ev.from]
	switch {
	case o == nil && r.locked:
		r.refuse(ev, stanza.Cancel, "item-not-found", "")
		return
	case o == nil:
		r.refuse(ev, stanza.Cancel, "not-acceptable", "you are not in the room")
		return
	}
	from := r.occJID(o.nick)
	// A subject with a body or a thread is an ordinary message (§8.1).
	if subj := st.Child("subject", ""); subj != nil && st.Child("body", "") == nil && st.Child("thread", "") == nil {
		if o.role != roleModerator && !(r.conf.ChangeSubject && o.role >= roleParticipant) {
			r.refuse(ev, stanza.Auth, "forbidden", "you may not change the subject")
			return
		}
		if r.gatewaySubject(ev, o, subj.Text()) {
			return // held until the gateway set the topic
		}
		r.subject = subject{Text: subj.Text(), By: o.nick, Stamp: r.now(), Set: true}
		m := reflect(st, from)
		seclabel.Strip(m) // a subject carries no label and is not checked (XEP-0258 §MUC)
		r.broadcast(m, from)
		r.save()
		for _, p := range r.peers() {
			if p.state == peerJoined {
				r.sendToPeer(p, r.fedCopy(m, ev.from), p.room)
			}
		}
		return
	}
	if o.role < roleParticipant {
		r.refuse(ev, stanza.Auth, "forbidden", "visitors may not speak in this room")
		return
	}
	if r.up != nil && !r.localGroupchat(ev, o) {
		return
	}
	m := reflect(st, from)
	if !r.admit(ev, m) {
		return
	}
	if r.seen != nil {
		// Identified on every node, so that an echo or a redelivery
		// after an outage is not shown twice.
		ensureOriginID(m)
		r.seen.seen(originKey(m, ev.from), r.now())
	}
	if m.Child("body", "") != nil && r.archiving() {
		if id := r.s.cfg.Archive.RecordRoom(r.jid, m); id != "" {
			m.AddChild(r.stanzaID(id))
		}
	}
	r.broadcast(m, from)
	if m.Child("body", "") != nil {
		r.hist.add(m, from, ev.from, r.now())
	}
	if r.federated() {
		r.fanMessage(m, ev.from, nil, false)
	}
}

// archiving reports whether the room keeps an archive: a persistent room
// whose owners have not turned it off, on a service with archives.
func (r *room) archiving() bool {
	return r.s.cfg.Archive != nil && r.conf.Persistent && !r.conf.NoArchive
}

// stanzaID is the XEP-0359 stanza-id of an archived message of the room.
func (r *room) stanzaID(id string) *wire.Element {
	e := wire.New("stanza-id", NSSID)
	e.SetAttr("by", r.jid.String()).SetAttr("id", id)
	return e
}

// reflect copies a message for the occupants: from the occupant JID, with
// the sender's id or one generated for all copies (muc#stable_id). What a
// client put in the muc#user namespace is dropped: status codes and
// invitations there speak for the room, not for an occupant, and so does a
// stanza-id by the room (XEP-0359 §5).
func reflect(st *wire.Element, from jid.JID) *wire.Element {
	m := st.Copy()
	m.RemoveChildren("x", NSUser)
	room := from.Bare().String()
	m.Nodes = slices.DeleteFunc(m.Nodes, func(n wire.Node) bool {
		return n.Elem != nil && n.Elem.Local() == "stanza-id" && n.Elem.Space == NSSID && n.Elem.Attr("by") == room
	})
	m.RemoveAttr("to")
	m.SetAttr("from", from.String())
	if m.Attr("id") == "" {
		m.SetAttr("id", randomID())
	}
	return m
}

// broadcast sends m (which has no to) to every session in the room whose
// user is cleared for it; the others silently get nothing.
func (r *room) broadcast(m *wire.Element, from jid.JID) {
	labelled := r.s.cfg.Labels != nil && m.Local() == "message"
	rd, once := r.s.cfg.Router.(RawDeliverer)
	var tmpl wire.Template
	if once {
		tmpl = wire.NewTemplate(m, "to")
	}
	for _, o := range r.order {
		if labelled && !r.mayReceive(m, o, seclabel.PointFanout) {
			continue
		}
		for _, sj := range o.sessions {
			if once {
				rd.DeliverRaw(m, tmpl.Append(nil, sj.String()), from, sj)
			} else {
				r.deliver(m.WithAttr("to", sj.String()), from, sj)
			}
		}
	}
}

// private relays a message between occupants (XEP-0045 §7.5).
func (r *room) private(ev event) {
	st := ev.st
	if st.Attr("type") == "groupchat" {
		r.refuse(ev, stanza.Modify, "bad-request", "private messages are not groupchat")
		return
	}
	o := r.sessions[ev.from]
	if o == nil {
		r.refuse(ev, stanza.Cancel, "not-acceptable", "you are not in the room")
		return
	}
	t := r.occupants[fold(ev.to.Resource())]
	if t == nil {
		r.refuse(ev, stanza.Cancel, "item-not-found", "no such occupant")
		return
	}
	if !r.mayPM(o) {
		r.refuse(ev, stanza.Auth, "forbidden", "private messages are not allowed in this room")
		return
	}
	from := r.occJID(o.nick)
	m := st.Copy()
	m.RemoveAttr("to")
	m.SetAttr("from", from.String())
	// The marker of a private message in a room (§7.5), and nothing else
	// in that namespace from the sender.
	m.RemoveChildren("x", NSUser)
	m.AddChild(wire.New("x", NSUser))
	if !r.admit(ev, m) {
		return
	}
	if !r.mayReceive(m, t, seclabel.PointDelivery) {
		r.deliver(seclabel.Forbidden(ev.st, ""), ev.to, ev.from) // E2
		return
	}
	if t.via != nil {
		r.pmToPeer(m, ev.from, t)
		return
	}
	for _, sj := range t.sessions {
		r.deliver(m.WithAttr("to", sj.String()), from, sj)
	}
}

func (r *room) mayPM(o *occupant) bool {
	switch r.conf.AllowPM {
	case "participants":
		return o.role >= roleParticipant
	case "moderators":
		return o.role == roleModerator
	case "none":
		return false
	}
	return true
}

// invite relays mediated invitations (XEP-0045 §7.8.2).
func (r *room) invite(ev event, x *wire.Element) {
	o := r.sessions[ev.from]
	if o == nil {
		r.refuse(ev, stanza.Cancel, "not-acceptable", "you are not in the room")
		return
	}
	aff := r.affiliationOf(ev.from)
	privileged := aff >= affAdmin || o.role == roleModerator
	if r.conf.MembersOnly && !r.conf.AllowInvites && !privileged {
		r.refuse(ev, stanza.Auth, "forbidden", "only moderators may invite to this room")
		return
	}
	var invitees []jid.JID
	var invites []*wire.Element
	for inv := range x.Elements() {
		if inv.Local() != "invite" {
			continue
		}
		j, err := jid.Parse(inv.Attr("to"))
		if err != nil {
			r.refuse(ev, stanza.Modify, "jid-malformed", "an invitation needs a valid to")
			return
		}
		invitees = append(invitees, j)
		invites = append(invites, inv)
	}
	_, lab := seclabel.Count(ev.st)
	for i, to := range invitees {
		m := wire.New("message", "")
		m.SetAttr("from", r.jid.String()).SetAttr("to", to.String())
		if id := ev.st.Attr("id"); id != "" {
			m.SetAttr("id", id)
		}
		ux := m.AddChild(wire.New("x", NSUser))
		in := ux.AddChild(wire.New("invite", ""))
		in.SetAttr("from", ev.from.String())
		reason := invites[i].ChildText("reason", "")
		if reason != "" {
			in.AddChild(wire.New("reason", "")).AddText(reason)
		}
		if r.conf.Password != "" {
			ux.AddChild(wire.New("password", "")).AddText(r.conf.Password)
		}
		body := ev.from.Bare().String() + " invites you to the room " + r.jid.String()
		if reason != "" {
			body += ": " + reason
		}
		m.AddChild(wire.New("body", "")).AddText(body)
		if g := r.s.cfg.Labels; g != nil && lab != nil {
			// A labelled invitation reaches only an invitee cleared for it.
			m.AddChild(lab.Copy())
			if !g.Allowed(m, r.clearanceOf(to.Bare()), nil, seclabel.PointDelivery, to.Bare().String()) {
				r.deliver(seclabel.Forbidden(ev.st, ""), ev.to, ev.from)
				continue
			}
		}
		// In a members-only room an allowed invitation makes a member.
		if r.conf.MembersOnly && r.affiliationOf(to) == affNone {
			e := affEntry{aff: affMember}
			r.affs[to.Bare()] = e
			r.saveAff(to.Bare(), e)
		}
		r.deliver(m, r.jid, to)
	}
}

// decline relays an invitee's refusal to the inviter.
func (r *room) decline(ev event, d *wire.Element) {
	to, err := jid.Parse(d.Attr("to"))
	if err != nil {
		r.refuse(ev, stanza.Modify, "jid-malformed", "a decline needs a valid to")
		return
	}
	m := wire.New("message", "")
	m.SetAttr("from", r.jid.String()).SetAttr("to", to.String())
	ux := m.AddChild(wire.New("x", NSUser))
	dc := ux.AddChild(wire.New("decline", ""))
	dc.SetAttr("from", ev.from.Bare().String())
	if reason := d.ChildText("reason", ""); reason != "" {
		dc.AddChild(wire.New("reason", "")).AddText(reason)
	}
	r.deliver(m, r.jid, to)
}

// voiceRequest handles the muc#request form (XEP-0045 §7.13, §8.6): a
// visitor's request goes to the moderators, and a moderator's approval
// grants voice.
func (r *room) voiceRequest(ev event, f *wire.Element) {
	o := r.sessions[ev.from]
	if o == nil {
		r.refuse(ev, stanza.Cancel, "not-acceptable", "you are not in the room")
		return
	}
	fields := formValues(f)
	if o.role == roleModerator {
		if allow, err := parseBool(first(fields["muc#request_allow"])); err != nil || !allow {
			return
		}
		t := r.occupants[fold(first(fields["muc#roomnick"]))]
		if t == nil {
			if j, err := jid.Parse(first(fields["muc#jid"])); err == nil {
				t = r.sessions[j]
			}
		}
		if t != nil && t.role == roleVisitor {
			t.role = roleParticipant
			r.broadcastPresence(t, presOpts{actor: o.nick}, true)
		}
		return
	}
	if o.role != roleVisitor {
		return // it has voice already
	}
	m := wire.New("message", "")
	m.SetAttr("from", r.jid.String())
	x := m.AddChild(wire.New("x", NSData))
	x.SetAttr("type", "form")
	x.AddChild(wire.New("title", "")).AddText("Voice request")
	hidden(x, "FORM_TYPE", NSRequest)
	field(x, "list-single", "muc#role", "Requested role", "participant")
	field(x, "jid-single", "muc#jid", "User ID", o.shownJID.String())
	field(x, "text-single", "muc#roomnick", "Room nickname", o.nick)
	field(x, "boolean", "muc#request_allow", "Grant voice to this person?", "false")
	for _, v := range r.order {
		if v.role != roleModerator {
			continue
		}
		for _, sj := range v.sessions {
			r.deliver(m.WithAttr("to", sj.String()), r.jid, sj)
		}
	}
}
