package muc

import (
	"cmp"
	"maps"
	"slices"

	"github.com/aldis-im/aldis/xmppcore/jid"
	"github.com/aldis-im/aldis/xmppcore/stanza"
	"github.com/aldis-im/aldis/xmppcore/wire"
)

// affiliation is a user's long-lived standing in a room, ordered from
// outcast to owner (XEP-0045 §5.2).
type affiliation int8

const (
	affOutcast affiliation = iota - 1
	affNone
	affMember
	affAdmin
	affOwner
)

func (a affiliation) String() string {
	switch a {
	case affOutcast:
		return "outcast"
	case affMember:
		return "member"
	case affAdmin:
		return "admin"
	case affOwner:
		return "owner"
	}
	return "none"
}

func parseAffiliation(s string) (affiliation, bool) {
	switch s {
	case "outcast":
		return affOutcast, true
	case "none":
		return affNone, true
	case "member":
		return affMember, true
	case "admin":
		return affAdmin, true
	case "owner":
		return affOwner, true
	}
	return affNone, false
}

// role is an occupant's standing for this visit (XEP-0045 §5.1).
type role int8

const (
	roleNone role = iota
	roleVisitor
	roleParticipant
	roleModerator
)

func (r role) String() string {
	switch r {
	case roleVisitor:
		return "visitor"
	case roleParticipant:
		return "participant"
	case roleModerator:
		return "moderator"
	}
	return "none"
}

func parseRole(s string) (role, bool) {
	switch s {
	case "none":
		return roleNone, true
	case "visitor":
		return roleVisitor, true
	case "participant":
		return roleParticipant, true
	case "moderator":
		return roleModerator, true
	}
	return roleNone, false
}

// defaultRole is the role an occupant with affiliation a gets on entering
// (XEP-0045 §5.1.2).
func (r *room) defaultRole(a affiliation) role {
	switch {
	case a >= affAdmin:
		return roleModerator
	case a == affMember || !r.conf.Moderated:
		return roleParticipant
	}
	return roleVisitor
}

// adminIQ handles muc#admin: role and affiliation lists and changes.
func (r *room) adminIQ(ev event, q *wire.Element) {
	actor := r.sessions[ev.from]
	actorAff := r.affiliationOf(ev.from)
	var items []*wire.Element
	for it := range q.Elements() {
		if it.Local() == "item" {
			items = append(items, it)
		}
	}
	if len(items) == 0 {
		r.refuse(ev, stanza.Modify, "bad-request", "no item")
		return
	}
	if ev.st.Attr("type") == "get" {
		r.adminList(ev, items[0], actor, actorAff)
		return
	}
	// Check every item before applying any, so a refused request changes nothing.
	var changes []change
	for _, it := range items {
		c, typ, cond, text := r.checkChange(it, actor, actorAff, ev.from)
		if cond != "" {
			r.refuse(ev, typ, cond, text)
			return
		}
		changes = append(changes, c)
	}
	if n := r.ownersAfter(changes); n == 0 && r.owners() > 0 {
		r.refuse(ev, stanza.Cancel, "conflict", "a room needs an owner")
		return
	}
	actorNick := ""
	if actor != nil {
		actorNick = actor.nick
	}
	r.apply(ev, changes, actorNick)
}

// change is one checked item of a muc#admin set.
type change struct {
	isRole bool
	target *occupant // role changes
	user   jid.JID   // affiliation changes: the bare JID (or domain)
	role   role
	aff    affiliation
	reason string
}

// checkChange validates one item against the XEP-0045 §8-§10 permissions.
func (r *room) checkChange(it *wire.Element, actor *occupant, actorAff affiliation, from jid.JID) (c change, typ, cond, text string) {
	roleAttr, affAttr := it.Attr("role"), it.Attr("affiliation")
	c.reason = it.ChildText("reason", "")
	switch {
	case (roleAttr == "") == (affAttr == ""):
		return c, stanza.Modify, "bad-request", "an item changes either a role or an affiliation"
	case roleAttr != "":
		nr, ok := parseRole(roleAttr)
		if !ok {
			return c, stanza.Modify, "bad-request", "unknown role"
		}
		if actor == nil || actor.role != roleModerator {
			return c, stanza.Auth, "forbidden", "only moderators change roles"
		}
		t := r.occupants[fold(it.Attr("nick"))]
		if it.Attr("nick") == "" || t == nil {
			return c, stanza.Cancel, "item-not-found", "no such occupant"
		}
		ta := r.affiliationOf(t.real)
		switch {
		case nr == roleModerator || t.role == roleModerator:
			// Granting or revoking moderator is for admins and owners.
			if actorAff < affAdmin {
				return c, stanza.Cancel, "not-allowed", "only admins and owners grant or revoke moderator"
			}
		}
		if nr < t.role && ta >= affAdmin && ta >= actorAff {
			return c, stanza.Cancel, "not-allowed", "the occupant's affiliation protects it"
		}
		if nr == roleNone && t == actor {
			return c, stanza.Cancel, "conflict", "you cannot kick yourself"
		}
		c.isRole, c.target, c.role = true, t, nr
		return c, "", "", ""
	default:
		na, ok := parseAffiliation(affAttr)
		if !ok {
			return c, stanza.Modify, "bad-request", "unknown affiliation"
		}
		j, err := jid.Parse(it.Attr("jid"))
		if err != nil {
			if it.Attr("nick") != "" && it.Attr("jid") == "" {
				if t := r.occupants[fold(it.Attr("nick"))]; t != nil {
					j, err = t.real, nil
				}
			}
			if err != nil {
				return c, stanza.Modify, "jid-malformed", "an affiliation item needs a jid"
			}
		}
		j = j.Bare()
		ta := r.affs[j].aff // an explicit entry: a domain ban does not make the user's own
		switch {
		case actorAff < affAdmin:
			return c, stanza.Auth, "forbidden", "only admins and owners change affiliations"
		case actorAff == affAdmin && (ta >= affAdmin || na >= affAdmin):
			return c, stanza.Cancel, "not-allowed", "admins cannot change admins or owners"
		}
		c.user, c.aff = j, na
		return c, "", "", ""
	}
}

// ownersAfter counts the owners once changes are applied.
func (r *room) ownersAfter(changes []change) int {
	owners := map[jid.JID]bool{}
	for j, e := range r.affs {
		if e.aff == affOwner {
			owners[j] = true
		}
	}
	for _, c := range changes {
		if !c.isRole {
			owners[c.user] = c.aff == affOwner
		}
	}
	n := 0
	for _, ok := range owners {
		if ok {
			n++
		}
	}
	return n
}

// apply carries out checked changes. Occupants who must leave are told
// first, then the requester gets its result, then everyone else learns
// the outcome (XEP-0045 §8.2).
func (r *room) apply(ev event, changes []change, actorNick string) {
	r.applyChanges(changes, actorNick, func() { r.deliver(reply(ev), ev.to, ev.from) })
}

// applyChanges is apply with answer (may be nil) called where the
// requester's result belongs. A user whose affiliation changes while not
// in the room is told by a message with status 101 (§9.3 and §10.6).
func (r *room) applyChanges(changes []change, actorNick string, answer func()) {
	type update struct {
		o     *occupant
		codes []string
	}
	var removed, updated []update
	reasons := map[*occupant]string{}
	for _, c := range changes {
		if c.isRole {
			o := c.target
			if r.occupants[fold(o.nick)] != o {
				continue // removed by an earlier item
			}
			reasons[o] = c.reason
			if c.role == roleNone {
				removed = append(removed, update{o, []string{"307"}})
				r.dropOccupant(o)
				continue
			}
			becameModerator := c.role == roleModerator && o.role != roleModerator
			o.role = c.role
			updated = append(updated, update{o, nil})
			if becameModerator && !r.conf.NonAnonymous {
				defer r.sendOccupantsTo(o) // moderators now see real JIDs
			}
			continue
		}
		old := r.affiliationOf(c.user)
		e := affEntry{aff: c.aff, reason: c.reason}
		if c.aff == affNone {
			delete(r.affs, c.user)
		} else {
			r.affs[c.user] = e
		}
		r.saveAff(c.user, e)
		if c.user.Local() != "" && len(r.occupantsOf(c.user)) == 0 && c.aff != old {
			r.tellAbsent(c.user, c.aff, c.reason)
		}
		for _, o := range r.occupantsOf(c.user) {
			reasons[o] = c.reason
			switch {
			case c.aff == affOutcast:
				removed = append(removed, update{o, []string{"301"}})
				r.dropOccupant(o)
			case r.conf.MembersOnly && c.aff == affNone:
				removed = append(removed, update{o, []string{"321"}})
				r.dropOccupant(o)
			default:
				switch {
				case c.aff >= affAdmin:
					o.role = roleModerator
				case old >= affAdmin:
					o.role = r.defaultRole(c.aff)
				case c.aff == affMember && o.role == roleVisitor:
					o.role = roleParticipant
				}
				updated = append(updated, update{o, nil})
			}
		}
	}
	for _, u := range removed {
		r.tellSelf(u.o, presOpts{unavailable: true, codes: u.codes, actor: actorNick, reason: reasons[u.o]})
	}
	if answer != nil {
		answer()
	}
	for _, u := range removed {
		r.broadcastPresence(u.o, presOpts{unavailable: true, codes: u.codes, actor: actorNick, reason: reasons[u.o]}, false)
	}
	for _, u := range updated {
		r.broadcastPresence(u.o, presOpts{actor: actorNick, reason: reasons[u.o]}, true)
	}
}

// tellAbsent sends a user not in the room its new affiliation (status 101).
func (r *room) tellAbsent(user jid.JID, a affiliation, reason string) {
	m := wire.New("message", "")
	m.SetAttr("from", r.jid.String()).SetAttr("to", user.String()).SetAttr("id", randomID())
	x := m.AddChild(wire.New("x", NSUser))
	it := x.AddChild(wire.New("item", ""))
	it.SetAttr("affiliation", a.String()).SetAttr("jid", user.String())
	if reason != "" {
		it.AddChild(wire.New("reason", "")).AddText(reason)
	}
	x.AddChild(wire.New("status", "")).SetAttr("code", "101")
	r.deliver(m, r.jid, user)
}

// adminList answers a muc#admin get for the occupants with a role or the
// users with an affiliation.
func (r *room) adminList(ev event, it *wire.Element, actor *occupant, actorAff affiliation) {
	res := reply(ev)
	q := res.AddChild(wire.New("query", NSAdmin))
	switch {
	case it.Attr("role") != "":
		want, ok := parseRole(it.Attr("role"))
		if !ok || want == roleNone {
			r.refuse(ev, stanza.Modify, "bad-request", "unknown role")
			return
		}
		if actor == nil || actor.role != roleModerator {
			r.refuse(ev, stanza.Auth, "forbidden", "only moderators list roles")
			return
		}
		for _, o := range r.order {
			if o.role != want {
				continue
			}
			e := q.AddChild(wire.New("item", ""))
			e.SetAttr("affiliation", r.affiliationOf(o.real).String()).SetAttr("role", o.role.String())
			e.SetAttr("nick", o.nick).SetAttr("jid", o.shownJID.String())
		}
	case it.Attr("affiliation") != "":
		want, ok := parseAffiliation(it.Attr("affiliation"))
		if !ok || want == affNone {
			r.refuse(ev, stanza.Modify, "bad-request", "unknown affiliation")
			return
		}
		if actorAff < affAdmin {
			r.refuse(ev, stanza.Auth, "forbidden", "only admins and owners list affiliations")
			return
		}
		for _, j := range slices.SortedFunc(maps.Keys(r.affs), func(a, b jid.JID) int { return cmp.Compare(a.String(), b.String()) }) {
			e := r.affs[j]
			if e.aff != want {
				continue
			}
			el := q.AddChild(wire.New("item", ""))
			el.SetAttr("affiliation", e.aff.String()).SetAttr("jid", j.String())
			if e.reason != "" {
				el.AddChild(wire.New("reason", "")).AddText(e.reason)
			}
		}
	default:
		r.refuse(ev, stanza.Modify, "bad-request", "an item names a role or an affiliation")
		return
	}
	r.deliver(res, ev.to, ev.from)
}

// occupantsOf returns the occupants whose real bare JID is user (or, for a
// domain, whose domain it is).
func (r *room) occupantsOf(user jid.JID) []*occupant {
	var out []*occupant
	for _, o := range r.order {
		if o.real == user || (user.Local() == "" && o.real.Domain() == user.Domain()) {
			out = append(out, o)
		}
	}
	return out
}
