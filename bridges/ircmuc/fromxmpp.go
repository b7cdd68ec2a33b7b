package ircmuc

import (
	"errors"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/aldis-im/aldis/core/label"
	"github.com/aldis-im/aldis/irc"
	"github.com/aldis-im/aldis/irc/format"
	"github.com/aldis-im/aldis/mapping"
	"github.com/aldis-im/aldis/xmppcore/jid"
	"github.com/aldis-im/aldis/xmppcore/seclabel"
	"github.com/aldis-im/aldis/xmppcore/stanza"
	"github.com/aldis-im/aldis/xmppcore/wire"
)

const (
	nsMUC     = "http://jabber.org/protocol/muc"
	nsMUCUser = nsMUC + "#user"
)

// fromXMPP handles a stanza for the bridge's occupant (to is b.self) or for
// a puppet (to is an IRC user's JID).
func (n *network) fromXMPP(st *wire.Element, from, to jid.JID) {
	l := n.links[from.Bare()]
	if l == nil {
		if st.Local() == "message" {
			n.b.refuse(st, from, to, stanza.Cancel, "item-not-found")
		}
		return
	}
	if to == n.b.self {
		switch st.Local() {
		case "presence":
			n.roomPresence(l, st, from)
		case "message":
			if st.Attr("type") == "groupchat" {
				n.groupchatToIRC(l, st, from)
			}
		case "iq":
			n.admit(l, st, from)
		}
		return
	}
	p := l.byJID[to]
	if p == nil {
		if st.Local() == "message" {
			n.b.refuse(st, from, to, stanza.Cancel, "item-not-found")
		}
		return
	}
	switch st.Local() {
	case "presence":
		switch {
		case st.Attr("type") == "error" && from.Resource() == p.roomNick:
			n.puppetRefused(l, p, st)
		case st.Attr("type") == "unavailable" && from.Resource() == p.roomNick:
			if x := st.Child("x", nsMUCUser); hasStatus(x, "307") || hasStatus(x, "301") {
				n.puppetKicked(l, p, x)
			}
		}
	case "message":
		switch st.Attr("type") {
		case "error":
			n.b.log.Warn("linked room refused an IRC user's message", "room", l.room.String(), "nick", p.nick, "error", errorCondition(st))
			if st.Child("body", "") != nil {
				n.roomAcked(l)
			}
		case "chat", "normal", "":
			n.privateToIRC(l, p, st, from, to)
		}
	}
}

// roomPresence follows the room's occupants as the bridge's occupant sees them.
func (n *network) roomPresence(l *link, st *wire.Element, from jid.JID) {
	nick := from.Resource()
	typ := st.Attr("type")
	x := st.Child("x", nsMUCUser)
	if nick == l.cfg.Channel || hasStatus(x, "110") {
		switch typ {
		case "":
			n.roomJoined(l)
		case "error":
			n.b.log.Warn("linked room refused the bridge; retrying later", "room", l.room.String(), "error", errorCondition(st))
			l.joined = false
		case "unavailable":
			if l.joined {
				n.b.log.Warn("the bridge left a linked room; rejoining later", "room", l.room.String())
			}
			l.joined = false
			for _, o := range l.occupant {
				n.release(l, o)
			}
			clear(l.occupant)
		}
		return
	}
	if nick == "" || l.byNick[nick] != nil || typ == "error" {
		return // an IRC user's own presence
	}
	o := l.occupant[nick]
	switch typ {
	case "":
		if o != nil {
			return
		}
		if a := l.admitting[nick]; a != nil {
			// Admitted by the channel before the room let them in (admit.go).
			delete(l.admitting, nick)
			l.occupant[nick] = a.o
			if a.o.refused != "" {
				n.tell(l, a.o, refusedText(l, a.o.refused))
			}
			return
		}
		o = &occupant{nick: nick, key: userKey{User: from.String(), Network: n.cfg.Name}}
		if item := x.Child("item", ""); x != nil && item != nil {
			if real, err := jid.Parse(item.Attr("jid")); err == nil {
				o.key.User = real.Bare().String()
			}
		}
		l.occupant[nick] = o
		n.connect(l, o)
	case "unavailable":
		if o == nil {
			return
		}
		delete(l.occupant, nick)
		if hasStatus(x, "303") {
			if item := x.Child("item", ""); item != nil && item.Attr("nick") != "" {
				// A nick change: the IRC nick follows (PROTOCOLS §7.4).
				o.nick = item.Attr("nick")
				l.occupant[o.nick] = o
				n.renameUser(o)
				return
			}
		}
		n.release(l, o)
	}
}

// topicToIRC sets the channel's topic to a room's new subject. The room has
// already accepted the change, so the listener (normally the channel's
// operator, which +t requires) sets it; IRC refusing it (482) is logged and
// the room keeps its subject.
func (n *network) topicToIRC(l *link, st *wire.Element, subject string) {
	if _, ok := n.egress(l.clr, st, l.cfg.Room); !ok {
		return
	}
	if err := n.listener.Topic(l.cfg.Channel, format.ToIRC(subject)); err != nil {
		n.b.log.Warn("set IRC topic", "channel", l.cfg.Channel, "err", err)
	}
}

// puppetKicked follows a room moderator kicking (307) or banning (301) an IRC
// user's occupant: the listener, as the channel's operator, KICKs them from
// the channel with the reason; without operator status IRC refuses it (482)
// and the IRC user stays in the channel, only out of the room until they
// speak or join again.
func (n *network) puppetKicked(l *link, p *puppet, x *wire.Element) {
	delete(l.puppets, n.fold(p.nick))
	delete(l.byJID, p.jid)
	delete(l.byNick, p.roomNick)
	reason := "Kicked from " + l.room.String()
	if item := x.Child("item", ""); item != nil {
		if r := item.ChildText("reason", ""); r != "" {
			reason = r
		}
		if a := item.Child("actor", ""); a != nil && a.Attr("nick") != "" {
			reason = a.Attr("nick") + ": " + reason
		}
	}
	if err := n.listener.Kick(l.cfg.Channel, p.nick, format.ToIRC(reason)); err != nil {
		n.b.log.Warn("IRC kick", "channel", l.cfg.Channel, "nick", p.nick, "err", err)
	}
}

// renameUser sends NICK on o's connection for its new MUC nick; the old IRC
// nick stays owned until the server confirms, so neither copy is echoed.
// A refused NICK leaves the old IRC nick, which is not the user's error.
func (n *network) renameUser(o *occupant) {
	if o.conn == nil {
		return
	}
	nickLen := n.is.NickLen
	if nickLen <= 0 {
		nickLen = 9
	}
	nick := irc.NickFromMUC(o.nick, nickLen, o.key.User)
	if n.fold(nick) == n.fold(o.conn.Nick()) {
		return
	}
	if err := o.conn.c.SetNick(nick); err != nil {
		n.b.log.Warn("IRC nick change", "user", o.key.User, "nick", nick, "err", err)
		return
	}
	n.owned[n.fold(nick)] = o.conn
}

// puppetRefused handles a room refusing an IRC user's join: a nick taken by
// an XMPP user meanwhile gets another nick, a few times.
func (n *network) puppetRefused(l *link, p *puppet, st *wire.Element) {
	cond := errorCondition(st)
	delete(l.byNick, p.roomNick)
	if cond == "conflict" && p.tries < 3 {
		p.tries++
		l.byNick[p.roomNick] = p // keep it taken while looking for a free one
		nick := n.freeNick(l, p.nick)
		delete(l.byNick, p.roomNick)
		p.roomNick = nick
		l.byNick[nick] = p
		n.b.send(puppetJoin(p), p.jid, n.occupantJID(l, nick))
		return
	}
	n.b.log.Warn("linked room refused an IRC user", "room", l.room.String(), "nick", p.nick, "error", cond)
	delete(l.puppets, n.fold(p.nick))
	delete(l.byJID, p.jid)
}

// groupchatToIRC relays an XMPP occupant's message to the channel, on their
// own connection or else through the listener.
func (n *network) groupchatToIRC(l *link, st *wire.Element, from jid.JID) {
	nick := from.Resource()
	if l.byNick[nick] != nil {
		if st.Child("body", "") != nil {
			n.roomAcked(l) // the reflection of an IRC message: the room took it
		}
		return // what the bridge itself sent (echo)
	}
	if nick == "" || nick == l.cfg.Channel {
		return // the room
	}
	if st.Child("delay", stanza.NSDelay) != nil {
		return // history
	}
	body := st.ChildText("body", "")
	if body == "" {
		if subj := st.Child("subject", ""); subj != nil && !l.topicAlreadySet(nick, subj.Text()) {
			n.topicToIRC(l, st, subj.Text())
		}
		return // a chat state
	}
	flot, ok := n.egress(l.clr, st, l.cfg.Room)
	if !ok {
		return
	}
	o := l.occupant[nick]
	if o != nil && o.refused != "" {
		n.b.dropped.Inc()
		return
	}
	n.b.toIRC.Inc()
	n.say(l, o, nick, l.cfg.Channel, flot, body)
}

// privateToIRC sends an XMPP occupant's private message to an IRC user.
func (n *network) privateToIRC(l *link, p *puppet, st *wire.Element, from, to jid.JID) {
	body := st.ChildText("body", "")
	if body == "" {
		return
	}
	clr := l.clr
	if g := n.b.cfg.Labels; g != nil && n.cfg.Clearance != "" {
		if c, err := g.Policies().ParseClearance(n.cfg.Clearance); err == nil {
			clr = c
		}
	}
	flot, ok := n.egress(clr, st, "irc:"+n.cfg.Name)
	if !ok {
		// Addressed to the bridge: the sender learns it was refused, sanitised.
		n.b.send(seclabel.Forbidden(st, n.b.domain.String()), to, from)
		return
	}
	n.b.toIRC.Inc()
	n.say(l, l.occupant[from.Resource()], from.Resource(), p.nick, flot, body)
}

// egress decides whether st may go to IRC under clearance clr, auditing and
// counting a refusal, and returns its first-line marking (FLOT, PROTOCOLS
// §7.5): "[MARKING] ", or "" with labels off.
func (n *network) egress(clr *label.Clearance, st *wire.Element, principal string) (string, bool) {
	g := n.b.cfg.Labels
	if g == nil {
		return "", true
	}
	if !g.Allowed(st, clr, nil, seclabel.PointEgress, principal) {
		n.b.denied.Inc()
		return "", false
	}
	mk, err := g.Marking(st)
	if err != nil || mk == nil || mk.Primary == nil {
		if d := g.Default(); d != nil && d.Display().Text != "" {
			return "[" + d.Display().Text + "] ", true
		}
		return "", true
	}
	if t := mk.Primary.Display().Text; t != "" {
		return "[" + t + "] ", true
	}
	return "", true
}

// say sends body from an XMPP occupant of l's room to target (a channel or a
// nick), on their own connection or else through the listener. Channel lines
// are kept across a lost connection (irc.Client.SendKept): sent after the
// reconnect and rejoin, or, past the outbox's bound or age, told to the sender.
func (n *network) say(l *link, o *occupant, nick, target, flot, body string) {
	action := false
	if rest, ok := strings.CutPrefix(body, "/me "); ok {
		body, action = rest, true
	}
	text := flot + format.ToIRC(body)
	channel := n.is.IsChannel(target)
	ref := n.occupantJID(l, nick).String()
	if o != nil && o.conn != nil {
		c := o.conn.c
		var err error
		switch {
		case channel:
			err = c.SendKept(ref, c.TextMessages(target, text, action)...)
		case action:
			err = c.Action(target, text)
		default:
			err = c.Privmsg(target, text)
		}
		if err == nil {
			return
		}
		n.b.log.Warn("send on an XMPP user's connection failed; relaying", "user", o.key.User, "err", err)
	}
	n.relay(l, o, nick, target, text, action, ref)
}

// relay sends an XMPP occupant's text through the listener: with RELAYMSG
// under their own name ("nick/xmpp") when the server offers draft/relaymsg
// and the target is a channel, else as "<nick> text".
func (n *network) relay(l *link, o *occupant, nick, target, text string, action bool, ref string) {
	n.b.relayed.Inc()
	channel := n.is.IsChannel(target)
	var msgs []irc.Message
	var relayed []relayLine
	if sep := n.relaymsgSeparator(); channel && sep != "" {
		key := ""
		if o != nil {
			key = o.key.User
		}
		as := irc.NickFromMUC(nick, max(n.is.NickLen, 16), key) + sep + "xmpp"
		for _, line := range irc.SplitText(text, irc.TextBudget(n.is.LineLen, as, target, action)) {
			raw := line
			if action {
				raw = "\x01ACTION " + line + "\x01"
			}
			relayed = append(relayed, relayLine{ref: ref, nick: nick, target: n.fold(target), raw: raw, text: line, action: action})
			msgs = append(msgs, irc.Message{Command: "RELAYMSG", Params: []string{target, as, raw}})
		}
	} else {
		var lines []string
		for line := range strings.Lines(text) {
			line = strings.TrimRight(line, "\r\n")
			if line == "" {
				continue
			}
			if action {
				lines = append(lines, "* "+nick+" "+line)
			} else {
				lines = append(lines, "<"+nick+"> "+line)
			}
		}
		msgs = n.listener.TextMessages(target, strings.Join(lines, "\n"), false)
	}
	if len(msgs) == 0 {
		return
	}
	var err error
	if channel {
		err = n.listener.SendKept(ref, msgs...)
	} else {
		err = n.listener.Send(msgs...)
	}
	if err != nil {
		n.b.log.Warn("relay to IRC failed", "network", n.cfg.Name, "target", target, "err", err)
		if channel {
			n.b.dropped.Inc()
			n.tellNotSent(l, nick, target, text, "too many lines are waiting for IRC")
		}
		return
	}
	n.relaying.sent(relayed)
}

// relaymsgSeparator is the separator a RELAYMSG nick must contain, from the
// listener's draft/relaymsg capability ("/" if it gives none); "" when the
// server does not offer it or refused it on this connection.
func (n *network) relaymsgSeparator() string {
	if n.relaying.off {
		return ""
	}
	v, ok := n.listener.State().Caps["draft/relaymsg"]
	if !ok {
		return ""
	}
	if v == "" {
		return "/"
	}
	return v[:1]
}

// relayState follows the RELAYMSG lines the listener sent. Each comes back
// either as a PRIVMSG tagged draft/relaymsg=<listener> (Ergo sends it to the
// relayer too), which must not reach the room, or as FAIL RELAYMSG (the
// listener is not a channel operator, say), when the line is sent again as
// "<nick> text" and RELAYMSG is not used until the listener reconnects. A
// FAIL names no line, but the server answers in order: the oldest line
// still waiting is the one refused. Lines kept across a reconnect stay
// waiting (the outbox sends them again); those the outbox gave up are
// forgotten. Owned by the network's goroutine.
type relayState struct {
	waiting []relayLine
	off     bool
}

// relayLine is one RELAYMSG line waiting for its answer.
type relayLine struct {
	ref, nick string
	target    string // folded
	raw       string // as sent: with CTCP ACTION's framing
	text      string
	action    bool
}

// maxRelayWaiting bounds the RELAYMSG lines remembered; beyond, the oldest
// are assumed answered.
const maxRelayWaiting = 256

func (r *relayState) sent(lines []relayLine) {
	r.waiting = append(r.waiting, lines...)
	if over := len(r.waiting) - maxRelayWaiting; over > 0 {
		r.waiting = slices.Delete(r.waiting, 0, over)
	}
}

// oldest takes the line waiting longest.
func (r *relayState) oldest() (relayLine, bool) {
	if len(r.waiting) == 0 {
		return relayLine{}, false
	}
	l := r.waiting[0]
	r.waiting = slices.Delete(r.waiting, 0, 1)
	return l, true
}

// forget drops the first line waiting to target (folded) with raw text.
func (r *relayState) forget(target, raw string) {
	if i := slices.IndexFunc(r.waiting, func(l relayLine) bool { return l.target == target && l.raw == raw }); i >= 0 {
		r.waiting = slices.Delete(r.waiting, i, i+1)
	}
}

// relayEvent handles what comes back from the relay path before the rest of
// the bridge sees it: kept lines that were not sent in time (from the
// listener or a user's connection), and the listener's RELAYMSG echoes and
// refusals. It reports whether it consumed ev.
func (n *network) relayEvent(ev irc.Event, listener bool) bool {
	switch {
	case ev.Kind == irc.Unsent:
		n.unsent(ev)
		return true
	case !listener:
		return false
	}
	if ev.Kind == irc.Connected {
		n.relaying.off = false // a new connection: RELAYMSG may be allowed again
	}
	if ev.Kind != irc.Received {
		return false
	}
	m := &ev.Msg
	switch m.Command {
	case "PRIVMSG", "NOTICE":
		ok, by := m.GetTag("draft/relaymsg")
		if !ok || n.listener == nil || n.fold(by) != n.fold(n.listener.State().Nick) {
			return false
		}
		n.relaying.forget(n.fold(irc.Param(m, 0)), irc.Param(m, 1))
		return true // our RELAYMSG, echoed: the room has it already
	case "FAIL":
		if irc.Param(m, 0) != "RELAYMSG" {
			return false
		}
		n.relaying.off = true
		n.b.log.Warn("IRC refused RELAYMSG; relaying as <nick> text until the listener reconnects",
			"network", n.cfg.Name, "code", irc.Param(m, 1), "reason", irc.LastParam(m))
		line, ok := n.relaying.oldest()
		if !ok {
			return true
		}
		if occ, err := jid.Parse(line.ref); err == nil {
			if l := n.links[occ.Bare()]; l != nil {
				n.relay(l, l.occupant[line.nick], line.nick, line.target, line.text, line.action, line.ref)
			}
		}
		return true
	}
	return false
}

// unsent tells an XMPP occupant that a line they said was not sent to IRC:
// it waited longer than the outbox allows for the connection to come back.
func (n *network) unsent(ev irc.Event) {
	m := &ev.Msg
	text := irc.LastParam(m)
	if m.Command == "RELAYMSG" {
		n.relaying.forget(n.fold(irc.Param(m, 0)), text)
	}
	occ, err := jid.Parse(ev.Ref)
	if err != nil {
		return
	}
	l := n.links[occ.Bare()]
	if l == nil {
		return // the link was removed meanwhile
	}
	n.b.dropped.Inc()
	if rest, ok := strings.CutPrefix(text, "\x01ACTION "); ok {
		text = "/me " + strings.TrimSuffix(rest, "\x01")
	}
	why := "the connection to IRC closed"
	switch {
	case errors.Is(ev.Err, irc.ErrExpired):
		why = "IRC could not be reached for " + time.Since(ev.Time).Round(time.Second).String()
	case ev.Err != nil && !errors.Is(ev.Err, irc.ErrClosed):
		why = ev.Err.Error()
	}
	n.b.log.Warn("an XMPP user's line was not sent to IRC", "room", l.room.String(), "nick", occ.Resource(), "err", ev.Err)
	n.tellNotSent(l, occ.Resource(), irc.Param(m, 0), format.FromIRC(text), why)
}

// tellNotSent sends an XMPP occupant a private message from the bridge's
// occupant: what they said was not sent to target, and why.
func (n *network) tellNotSent(l *link, nick, target, text, why string) {
	s := wire.New("message", "")
	s.SetAttr("type", "chat")
	s.SetAttr("id", n.newID())
	s.AddChild(wire.New("body", "")).AddText("Not sent to " + target + " on IRC (" + why + "): " + text)
	s.AddChild(wire.New("x", nsMUCUser))
	n.b.send(s, n.b.self, n.occupantJID(l, nick))
}

// --- stanza helpers ---

// joinPresence is a MUC join asking for no history.
func joinPresence() *wire.Element {
	p := wire.New("presence", "")
	x := p.AddChild(wire.New("x", nsMUC))
	x.AddChild(wire.New("history", "")).SetAttr("maxstanzas", "0")
	return p
}

// unavailable is a leave with a status text.
func unavailable(status string) *wire.Element {
	p := wire.New("presence", "")
	p.SetAttr("type", "unavailable")
	if status != "" {
		p.AddChild(wire.New("status", "")).AddText(status)
	}
	return p
}

func hasStatus(x *wire.Element, code string) bool {
	if x == nil {
		return false
	}
	for c := range x.Elements() {
		if c.Local() == "status" && c.Attr("code") == code {
			return true
		}
	}
	return false
}

func errorCondition(st *wire.Element) string {
	if e := st.Child("error", ""); e != nil {
		for c := range e.Elements() {
			if c.Space == stanza.NSStanzaErr {
				return c.Local()
			}
		}
	}
	return ""
}

func (n *network) newID() string {
	n.seq++
	return "irc-" + n.cfg.Name + "-" + strconv.Itoa(n.seq)
}

func sortedRooms(links map[jid.JID]*link) []jid.JID {
	return slices.SortedFunc(maps.Keys(links), func(a, b jid.JID) int { return strings.Compare(a.String(), b.String()) })
}

func foldChannel(s string) string { return mapping.FoldChannel(s) }

// networkOf returns the network named in a puppet's localpart "<nick>%<network>".
func networkOf(local string) (string, bool) {
	i := strings.LastIndexByte(local, '%')
	if i < 0 {
		return "", false
	}
	return local[i+1:], true
}
