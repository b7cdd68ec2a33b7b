package ircmuc

import (
	"slices"
	"strings"

	"github.com/aldis-im/aldis/irc"
	"github.com/aldis-im/aldis/irc/format"
	"github.com/aldis-im/aldis/xmppcore/wire"
)

// fromListener maps what the listener sees on IRC into the rooms (PROTOCOLS
// §7.4, IRC → MUC).
func (n *network) fromListener(ev irc.Event) {
	switch ev.Kind {
	case irc.Connected:
		st := n.listener.State()
		n.nick, n.is = st.Nick, st.ISupport
		n.b.log.Info("IRC listener connected", "network", n.cfg.Name, "nick", n.nick)
		for _, l := range n.links {
			l.names = map[string]bool{}
		}
		n.listenerUp()
		return
	case irc.Disconnected:
		n.b.log.Warn("IRC listener disconnected", "network", n.cfg.Name, "err", ev.Err)
		n.listenerDown()
		return
	}
	m := ev.Msg
	src := m.Nick()
	chanLink := func(i int) *link { return n.chans[foldChannel(irc.Param(&m, i))] }
	switch m.Command {
	case "353": // RPL_NAMREPLY: me = #chan :names
		l := chanLink(2)
		if l == nil {
			return
		}
		for _, entry := range strings.Fields(irc.Param(&m, 3)) {
			prefixes, nick := n.is.SplitPrefixes(entry)
			n.setModes(l, nick, n.prefixModes(prefixes))
			if l.names != nil {
				l.names[n.fold(nick)] = true
			}
		}
	case "366": // RPL_ENDOFNAMES: me #chan :End
		l := chanLink(1)
		if l == nil || l.names == nil {
			return
		}
		for f, p := range l.puppets {
			if !l.names[f] {
				n.removePuppet(l, p.nick, "Left IRC while the gateway was disconnected", exit{})
			}
		}
		l.names = nil
	case "JOIN":
		l := chanLink(0)
		switch {
		case l == nil:
		case n.fold(src) == n.fold(n.nick):
			// The listener is in: ask for the channel's modes (+m makes visitors).
			_ = n.listener.Send(irc.Message{Command: "MODE", Params: []string{l.cfg.Channel}})
		default:
			n.addPuppet(l, src)
		}
	case "PART":
		if l := chanLink(0); l != nil {
			n.removePuppet(l, src, statusText("Left IRC", irc.Param(&m, 1)), exit{})
		}
	case "QUIT":
		msg := irc.Param(&m, 0)
		for _, l := range n.links {
			n.removePuppet(l, src, statusText("Quit IRC", msg), quitExit(msg))
		}
	case "KICK":
		if l := chanLink(0); l != nil {
			reason := format.Clean(format.FromIRC(irc.Param(&m, 2)))
			n.removePuppet(l, irc.Param(&m, 1), statusText("Kicked by "+src, irc.Param(&m, 2)),
				exit{code: "307", actor: n.kickActor(l, src), reason: reason})
		}
	case "MODE": // MODE #chan +ov-m nick nick
		if l := chanLink(0); l != nil && len(m.Params) > 1 {
			n.applyModes(l, n.is.ChannelModes(m.Params[1], m.Params[2:]))
		}
	case "324": // RPL_CHANNELMODEIS: me #chan +mnt [args]
		if l := chanLink(1); l != nil && len(m.Params) > 2 {
			changes := n.is.ChannelModes(m.Params[2], m.Params[3:])
			if !slices.ContainsFunc(changes, func(c irc.ModeChange) bool { return c.Mode == 'm' }) {
				changes = append(changes, irc.ModeChange{Set: false, Mode: 'm'})
			}
			n.applyModes(l, changes)
		}
	case "NICK":
		nick := irc.Param(&m, 0)
		if n.fold(src) == n.fold(n.nick) {
			n.nick = nick
			return
		}
		for _, l := range n.links {
			n.renamePuppet(l, src, nick)
		}
	case "332": // RPL_TOPIC: me #chan :topic
		if l := chanLink(1); l != nil {
			l.topic = irc.Param(&m, 2)
		}
	case "482": // ERR_CHANOPRIVSNEEDED: me #chan :You're not a channel operator
		if l := chanLink(1); l != nil {
			n.topicAnswered(l, nil, "forbidden")
		}
	case "TOPIC":
		l := chanLink(0)
		if l == nil {
			return
		}
		l.topic = irc.Param(&m, 1)
		if n.fold(src) == n.fold(n.nick) {
			n.topicAnswered(l, nil, "")
		}
		if n.isOwned(src) || !l.joined {
			return
		}
		if p := n.addPuppet(l, src); p != nil {
			s := wire.New("message", "")
			s.SetAttr("type", "groupchat")
			s.AddChild(wire.New("subject", "")).AddText(format.Clean(format.FromIRC(irc.Param(&m, 1))))
			n.b.send(s, p.jid, l.room)
		}
	case "PRIVMSG", "NOTICE":
		target, text := irc.Param(&m, 0), irc.Param(&m, 1)
		if n.isOwned(src) || src == "" {
			return // what we sent, echoed (echo-message) or seen
		}
		l := n.chans[foldChannel(target)]
		if l == nil {
			if m.Command == "PRIVMSG" && n.fold(target) == n.fold(n.nick) && !strings.HasPrefix(text, "\x01") {
				_ = n.listener.Notice(src, "This is the Aldis IRC gateway: write to the XMPP users' nicks directly.")
			}
			return
		}
		p := n.addPuppet(l, src)
		if p == nil || !l.joined {
			return
		}
		body, ok := bodyFromIRC(text)
		if !ok {
			return
		}
		s := wire.New("message", "")
		s.SetAttr("type", "groupchat")
		if ok, id := m.GetTag("msgid"); ok && id != "" {
			s.SetAttr("id", id)
		} else {
			s.SetAttr("id", n.newID())
		}
		s.AddChild(wire.New("body", "")).AddText(body)
		if g := n.b.cfg.Labels; g != nil && l.lab != nil {
			if err := g.Stamp(s, l.lab); err != nil {
				n.b.log.Error("stamp link label", "room", l.cfg.Room, "err", err)
				return
			}
		}
		n.b.fromIRC.Inc()
		n.toRoom(l, s, p.jid)
	}
}

// privateFromIRC passes an IRC user's private message to the XMPP user whose
// connection c received it, as a private message through the first linked
// room both are in.
func (n *network) privateFromIRC(c *userConn, m irc.Message, ev irc.Event) {
	src, text := m.Nick(), irc.Param(&m, 1)
	body, ok := bodyFromIRC(text)
	if !ok {
		return
	}
	for _, room := range sortedRooms(n.links) {
		l := n.links[room]
		p := l.puppets[n.fold(src)]
		if p == nil || !l.joined {
			continue
		}
		for _, o := range l.occupant {
			if o.conn != c {
				continue
			}
			s := wire.New("message", "")
			s.SetAttr("type", "chat")
			s.SetAttr("id", n.newID())
			s.AddChild(wire.New("body", "")).AddText(body)
			s.AddChild(wire.New("x", nsMUCUser))
			if g := n.b.cfg.Labels; g != nil && l.lab != nil {
				if err := g.Stamp(s, l.lab); err != nil {
					return
				}
			}
			n.b.fromIRC.Inc()
			n.b.send(s, p.jid, n.occupantJID(l, o.nick))
			return
		}
	}
	if m.Command == "PRIVMSG" {
		_ = c.c.Notice(src, "Your message was not delivered: join a channel linked to a room this user is in.")
	}
}

// bodyFromIRC is the XMPP body for IRC text: CTCP ACTION becomes "/me",
// other CTCP requests are not passed on, formatting becomes XEP-0393.
func bodyFromIRC(text string) (string, bool) {
	if strings.HasPrefix(text, "\x01") {
		inner := strings.TrimSuffix(text[1:], "\x01")
		rest, ok := strings.CutPrefix(inner, "ACTION ")
		if !ok {
			return "", false
		}
		return "/me " + format.Clean(format.FromIRC(rest)), true
	}
	b := format.Clean(format.FromIRC(text))
	return b, b != ""
}

// statusText is the <status/> of an occupant leaving.
func statusText(what, reason string) string {
	if reason == "" {
		return what
	}
	return what + ": " + format.Clean(format.FromIRC(reason))
}
