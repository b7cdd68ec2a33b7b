package muc

import (
	"maps"
	"strings"

	"github.com/aldis-im/aldis/xmppcore/jid"
	"github.com/aldis-im/aldis/xmppcore/stanza"
	"github.com/aldis-im/aldis/xmppcore/wire"
)

// Registered nicknames (XEP-0045 §7.10): a user may reserve a nickname in a
// room; nobody else may then take it. In an open room registering makes
// the user a member; in a members-only room only members may register.

// NSRegisterForm is the FORM_TYPE of the registration form.
const NSRegisterForm = NS + "#register"

// maxNick bounds a registered nickname, in bytes (a JID resource's limit).
const maxNick = 1023

// reservedFor reports whether nick is registered to someone other than user.
func (r *room) reservedFor(nick string, user jid.JID) bool {
	f := fold(nick)
	for owner, n := range r.conf.Nicks {
		if fold(n) == f && owner != user.String() {
			return true
		}
	}
	return false
}

// registerIQ answers jabber:iq:register on the room: the form, a
// registration, or its removal.
func (r *room) registerIQ(ev event, q *wire.Element) {
	user := ev.from.Bare()
	aff := r.affiliationOf(ev.from)
	switch {
	case aff == affOutcast:
		r.refuse(ev, stanza.Auth, "forbidden", "you are banned from this room")
		return
	case r.conf.MembersOnly && aff < affMember:
		// Registering would make anyone a member of a closed room.
		r.refuse(ev, stanza.Cancel, "not-allowed", "the room is members-only: ask an admin for membership")
		return
	}
	current := r.conf.Nicks[user.String()]
	if ev.st.Attr("type") == "get" {
		res := reply(ev)
		rq := res.AddChild(wire.New("query", stanza.NSRegister))
		if current != "" {
			rq.AddChild(wire.New("registered", ""))
			rq.AddChild(wire.New("username", "")).AddText(current)
			r.deliver(res, ev.to, ev.from)
			return
		}
		rq.AddChild(wire.New("instructions", "")).AddText("Choose the nickname to register in this room.")
		x := rq.AddChild(wire.New("x", NSData))
		x.SetAttr("type", "form")
		x.AddChild(wire.New("title", "")).AddText("Register with " + r.jid.String())
		hidden(x, "FORM_TYPE", NSRegisterForm)
		f := field(x, "text-single", "muc#register_roomnick", "Desired nickname")
		f.AddChild(wire.New("required", ""))
		r.deliver(res, ev.to, ev.from)
		return
	}
	if q.Child("remove", "") != nil {
		if current == "" {
			r.refuse(ev, stanza.Cancel, "item-not-found", "no nickname is registered")
			return
		}
		r.setNick(user, "")
		r.deliver(reply(ev), ev.to, ev.from)
		return
	}
	x := q.Child("x", NSData)
	if x == nil || x.Attr("type") != "submit" {
		r.refuse(ev, stanza.Modify, "bad-request", "submit the registration form")
		return
	}
	fields := formValues(x)
	if ft := first(fields["FORM_TYPE"]); ft != "" && ft != NSRegisterForm {
		r.refuse(ev, stanza.Modify, "bad-request", "FORM_TYPE is not "+NSRegisterForm)
		return
	}
	nick := first(fields["muc#register_roomnick"])
	switch {
	case strings.TrimSpace(nick) == "" || len(nick) > maxNick:
		r.refuse(ev, stanza.Modify, "not-acceptable", "a nickname is required")
		return
	case r.reservedFor(nick, user):
		r.refuse(ev, stanza.Cancel, "conflict", "the nickname is registered to someone else")
		return
	}
	if o := r.occupants[fold(nick)]; o != nil && o.real != user {
		r.refuse(ev, stanza.Cancel, "conflict", "the nickname is in use")
		return
	}
	r.setNick(user, nick)
	if aff == affNone {
		e := affEntry{aff: affMember}
		r.affs[user] = e
		r.saveAff(user, e)
	}
	r.deliver(reply(ev), ev.to, ev.from)
}

// setNick registers (or, with "", frees) user's nickname and stores it.
func (r *room) setNick(user jid.JID, nick string) {
	nicks := maps.Clone(r.conf.Nicks)
	if nicks == nil {
		nicks = map[string]string{}
	}
	if nick == "" {
		delete(nicks, user.String())
	} else {
		nicks[user.String()] = nick
	}
	if len(nicks) == 0 {
		nicks = nil
	}
	r.conf.Nicks = nicks
	r.save()
}
