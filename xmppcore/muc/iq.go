package muc

import (
	"strconv"
	"time"

	"github.com/aldis-im/aldis/xmppcore/jid"
	"github.com/aldis-im/aldis/xmppcore/seclabel"
	"github.com/aldis-im/aldis/xmppcore/stanza"
	"github.com/aldis-im/aldis/xmppcore/wire"
)

const (
	maxPendingIQs = 256             // iqs between occupants awaiting an answer, per room
	pendingIQLife = 2 * time.Minute // after which an unanswered one is forgotten
)

// pendingIQ is an iq forwarded from one occupant to another.
type pendingIQ struct {
	id        string  // the requester's id
	requester jid.JID // real full JID
	target    jid.JID // where it was sent, whose answer is expected
	nick      string  // the target's nick, the answer's from
	sent      time.Time
}

// iq handles an iq to the room or to an occupant.
func (r *room) iq(ev event) {
	if ev.to.Resource() != "" {
		r.occupantIQ(ev)
		return
	}
	typ := ev.st.Attr("type")
	if typ == "result" || typ == "error" {
		r.gatewayAnswer(ev)
		return
	}
	if typ != "get" && typ != "set" {
		return
	}
	p := stanza.Payload(ev.st)
	if p == nil {
		r.refuse(ev, stanza.Modify, "bad-request", "an iq get or set carries exactly one child")
		return
	}
	owner := r.affiliationOf(ev.from) == affOwner
	switch {
	case p.Space == NSOwner && p.Local() == "query":
		r.ownerIQ(ev, p)
	case r.locked && !owner:
		r.refuse(ev, stanza.Cancel, "item-not-found", "")
	case p.Space == NSAdmin && p.Local() == "query":
		r.adminIQ(ev, p)
	case p.Space == stanza.NSPing:
		r.deliver(reply(ev), ev.to, ev.from)
	case p.Space == NSMAM && r.archiving():
		r.archiveIQ(ev)
	case seclabel.IsCatalog(p.Space) && typ == "get":
		r.catalogIQ(ev, p)
	case p.Space == stanza.NSRegister:
		r.registerIQ(ev, p)
	case typ != "get":
		r.refuse(ev, stanza.Cancel, "service-unavailable", "")
	case p.Space == stanza.NSDiscoInfo:
		r.discoInfo(ev, p)
	case p.Space == stanza.NSDiscoItem:
		// Occupants are listed to those who may see who is there: an
		// occupant of the room who sees real JIDs (§6.5). Everyone else
		// gets an empty list, which tells a semi-anonymous room's
		// outsiders nothing.
		res := reply(ev)
		q := res.AddChild(wire.New("query", stanza.NSDiscoItem))
		if v := r.sessions[ev.from]; v != nil && r.seesJIDs(v) {
			for _, o := range r.order {
				if r.conf.broadcasts(o.role) {
					q.AddChild(wire.New("item", "")).SetAttr("jid", r.occJID(o.nick).String())
				}
			}
		}
		r.deliver(res, ev.to, ev.from)
	default:
		r.refuse(ev, stanza.Cancel, "service-unavailable", "")
	}
}

// discoInfo answers disco#info on the room (XEP-0045 §6.4).
func (r *room) discoInfo(ev event, p *wire.Element) {
	res := reply(ev)
	q := res.AddChild(wire.New("query", stanza.NSDiscoInfo))
	switch node := p.Attr("node"); node {
	case "":
	case "x-roomuser-item":
		// The requester's registered nickname, if any (§7.12).
		q.SetAttr("node", node)
		if nick := r.conf.Nicks[ev.from.Bare().String()]; nick != "" {
			q.AddChild(wire.New("identity", "")).SetAttr("category", "conference").SetAttr("name", nick).SetAttr("type", "text")
		}
		r.deliver(res, ev.to, ev.from)
		return
	default:
		r.refuse(ev, stanza.Cancel, "item-not-found", "")
		return
	}
	c := r.conf
	id := q.AddChild(wire.New("identity", ""))
	name := c.Name
	if name == "" {
		name = r.jid.Local()
	}
	id.SetAttr("category", "conference").SetAttr("type", "text").SetAttr("name", name)
	pick := func(b bool, yes, no string) string {
		if b {
			return yes
		}
		return no
	}
	feats := []string{
		NS, NSStableID, NSSelfPing, NSRequest, stanza.NSDiscoInfo, stanza.NSRegister,
		pick(c.Public, "muc_public", "muc_hidden"),
		pick(c.Persistent, "muc_persistent", "muc_temporary"),
		pick(c.MembersOnly, "muc_membersonly", "muc_open"),
		pick(c.Moderated, "muc_moderated", "muc_unmoderated"),
		pick(c.NonAnonymous, "muc_nonanonymous", "muc_semianonymous"),
		pick(c.Password != "", "muc_passwordprotected", "muc_unsecured"),
	}
	if r.archiving() {
		feats = append(feats, NSMAM)
	}
	if r.s.cfg.Labels != nil {
		feats = append(feats, seclabel.Features...)
	}
	for _, f := range feats {
		q.AddChild(wire.New("feature", "")).SetAttr("var", f)
	}
	x := q.AddChild(wire.New("x", NSData))
	x.SetAttr("type", "result")
	hidden(x, "FORM_TYPE", NSRoomInfo)
	field(x, "text-single", "muc#roominfo_description", "Description", c.Description)
	field(x, "text-single", "muc#roominfo_subject", "Subject", r.subject.Text)
	field(x, "boolean", "muc#roominfo_subjectmod", "Occupants may change the subject", boolValue(c.ChangeSubject))
	field(x, "text-single", "muc#roominfo_occupants", "Number of occupants", strconv.Itoa(len(r.order)))
	field(x, "text-single", "muc#maxhistoryfetch", "Maximum number of history messages returned by the room",
		strconv.Itoa(max(r.hist.max, 0)))
	field(x, "list-single", "muc#roomconfig_allowpm", "Who may send private messages", c.AllowPM)
	r.deliver(res, ev.to, ev.from)
}

// archiveIQ passes a MAM iq to the room's archive if the sender may read
// it: an occupant, or a member, admin or owner. Results come from the
// occupant JIDs, so a semi-anonymous room reveals no real JIDs through them.
// The archive answers on a goroutine of its own, so a slow store does not
// hold up the room; results are from the room's bare JID to the sender.
func (r *room) archiveIQ(ev event) {
	if r.sessions[ev.from] == nil && r.affiliationOf(ev.from) < affMember {
		r.refuse(ev, stanza.Auth, "forbidden", "only occupants and members may read the room's archive")
		return
	}
	s, room, requester := r.s, ev.to.Bare(), ev.from
	send := func(st *wire.Element) {
		st.SetAttr("from", room.String())
		st.SetAttr("to", requester.String())
		s.deliver(st, room, requester)
	}
	s.wg.Add(1) // the room's goroutine holds a count too, so Close waits for this one
	go func() {
		defer s.wg.Done()
		s.cfg.Archive.HandleRoomIQ(s.ctx, room, requester, ev.st, send)
	}()
}

// occupantIQ handles an iq to an occupant JID: the XEP-0410 self-ping is
// answered here, other requests are forwarded to the occupant (§7.5's
// rules for private messages: only occupants may send them).
func (r *room) occupantIQ(ev event) {
	st := ev.st
	typ := st.Attr("type")
	if typ == "result" || typ == "error" {
		r.iqAnswer(ev)
		return
	}
	if typ != "get" && typ != "set" {
		return
	}
	sender := r.sessions[ev.from]
	target := r.occupants[fold(ev.to.Resource())]
	if isSelfPingShape(st) && sender != nil && sender == target {
		r.deliver(reply(ev), ev.to, ev.from)
		return
	}
	p := stanza.Payload(st)
	switch {
	case sender == nil:
		r.refuse(ev, stanza.Cancel, "not-acceptable", "you are not in the room")
		return
	case target == nil:
		r.refuse(ev, stanza.Cancel, "item-not-found", "no such occupant")
		return
	case p == nil:
		r.refuse(ev, stanza.Modify, "bad-request", "an iq get or set carries exactly one child")
		return
	}
	if len(r.iqs) >= maxPendingIQs {
		r.expireIQs()
		if len(r.iqs) >= maxPendingIQs {
			r.refuse(ev, stanza.Wait, "resource-constraint", "too many requests in flight")
			return
		}
	}
	to := target.shownJID
	if p.Space == stanza.NSVCard {
		to = target.real // the server answers for the account (§7.5 note on vCards)
	}
	id := randomID()
	from := r.occJID(sender.nick)
	fwd := st.Copy()
	fwd.SetAttr("id", id)
	fwd.SetAttr("from", from.String())
	fwd.SetAttr("to", to.String())
	r.iqs[id] = pendingIQ{id: st.Attr("id"), requester: ev.from, target: to, nick: target.nick, sent: r.now()}
	r.deliver(fwd, from, to)
}

// iqAnswer returns the answer to a forwarded iq to the occupant that asked.
func (r *room) iqAnswer(ev event) {
	pi, ok := r.iqs[ev.st.Attr("id")]
	if !ok || pi.target != ev.from {
		return
	}
	delete(r.iqs, ev.st.Attr("id"))
	from := r.occJID(pi.nick)
	a := ev.st.Copy()
	a.SetAttr("id", pi.id)
	a.SetAttr("from", from.String())
	a.SetAttr("to", pi.requester.String())
	r.deliver(a, from, pi.requester)
}

func (r *room) expireIQs() {
	cut := r.now().Add(-pendingIQLife)
	for id, pi := range r.iqs {
		if pi.sent.Before(cut) {
			delete(r.iqs, id)
		}
	}
}
