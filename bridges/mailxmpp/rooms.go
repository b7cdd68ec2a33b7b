package mailxmpp

import (
	"github.com/aldis-im/aldis/mapping/mailmap"
	"github.com/aldis-im/aldis/xmppcore/jid"
	"github.com/aldis-im/aldis/xmppcore/stanza"
	"github.com/aldis-im/aldis/xmppcore/wire"
)

const (
	nsMUC     = "http://jabber.org/protocol/muc"
	nsMUCUser = nsMUC + "#user"
)

// occupantJID is the bridge's own JID in a room: the gateway domain with
// the room's bare JID as the resource, one per room.
func (b *Bridge) occupantJID(room jid.JID) (jid.JID, error) {
	return jid.New("", b.cfg.Domain, room.Bare().String())
}

func (b *Bridge) inRoom(room jid.JID) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.joined[mailmap.Fold(room.Bare().String())]
}

func (b *Bridge) setInRoom(room jid.JID, in bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	k := mailmap.Fold(room.Bare().String())
	if in {
		b.joined[k] = true
	} else {
		delete(b.joined, k)
	}
}

// joinRooms sends a join to every mapped room the bridge is not in, and
// leaves rooms no longer mapped.
func (b *Bridge) joinRooms() {
	m := b.mapping()
	want := map[string]bool{}
	for _, r := range m.Rooms() {
		room, err := jid.Parse(r.Room)
		if err != nil {
			b.log.Warn("mapped room is not a JID", "room", r.Room, "err", err)
			continue
		}
		want[mailmap.Fold(room.String())] = true
		if b.inRoom(room) {
			continue
		}
		occ, err1 := b.occupantJID(room)
		to, err2 := room.WithResource(r.Nick)
		if err1 != nil || err2 != nil {
			b.log.Warn("cannot join mapped room", "room", r.Room, "nick", r.Nick)
			continue
		}
		p := wire.New("presence", "")
		p.SetAttr("from", occ.String()).SetAttr("to", to.String())
		x := p.AddChild(wire.New("x", nsMUC))
		x.AddChild(wire.New("history", "")).SetAttr("maxstanzas", "0")
		b.cfg.XMPP.Deliver(p, occ, to)
	}
	b.mu.Lock()
	var leave []string
	for k := range b.joined {
		if !want[k] {
			leave = append(leave, k)
		}
	}
	b.mu.Unlock()
	for _, k := range leave {
		room, err := jid.Parse(k)
		if err != nil {
			continue
		}
		b.setInRoom(room, false)
		occ, _ := b.occupantJID(room)
		p := wire.New("presence", "")
		p.SetAttr("type", "unavailable").SetAttr("from", occ.String()).SetAttr("to", room.String())
		b.cfg.XMPP.Deliver(p, occ, room)
	}
}

// roomPresence follows the bridge's own presence in a room: the self-
// presence (status 110) says it is in, an error or unavailable that it is
// out.
func (b *Bridge) roomPresence(st *wire.Element, from, to jid.JID) {
	room := from.Bare()
	if to.Resource() != room.String() {
		return
	}
	self := false
	if x := st.Child("x", nsMUCUser); x != nil {
		for c := range x.Elements() {
			if c.Local() == "status" && c.Attr("code") == "110" {
				self = true
			}
		}
	}
	switch t := st.Attr("type"); {
	case t == "error":
		b.setInRoom(room, false)
		b.log.Warn("cannot join mapped room", "room", room.String(), "error", errorCondition(st))
	case self && t == "unavailable":
		b.setInRoom(room, false)
		b.log.Info("left mapped room", "room", room.String())
	case self && t == "":
		if !b.inRoom(room) {
			b.log.Info("joined mapped room", "room", room.String())
		}
		b.setInRoom(room, true)
	}
}

// errorCondition is the defined condition of an error stanza.
func errorCondition(st *wire.Element) string {
	e := st.Child("error", "")
	if e == nil {
		return ""
	}
	for c := range e.Elements() {
		if c.Space == stanza.NSStanzaErr && c.Local() != "text" {
			return c.Local()
		}
	}
	return ""
}
