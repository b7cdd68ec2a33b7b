package ircmuc

import (
	"maps"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/aldis-im/aldis/irc"
	"github.com/aldis-im/aldis/xmppcore/wire"
)

// IRC users' standing in the room (PROTOCOLS §7.4): channel modes become
// room roles, and kicks, netsplits and outages become the status codes of
// their departure. The room trusts the gateway's domain to claim these in
// muc#user (xmppcore/muc, gateway.go); another server's MUC ignores them and
// shows everyone as a participant.

// roleOf is IRC user p's room role: moderator with channel operator status
// or higher (a half-operator too: it can kick); in a moderated (+m)
// channel participant with voice and visitor without; participant otherwise.
func (n *network) roleOf(l *link, p *puppet) string {
	modes := n.is.PrefixModes
	top := strings.IndexByte(modes, 'h')
	if top < 0 {
		top = max(strings.IndexByte(modes, 'o'), 0)
	}
	for i := range len(p.modes) {
		if r := strings.IndexByte(modes, p.modes[i]); r >= 0 && r <= top {
			return "moderator"
		}
	}
	if l.moderated && p.modes == "" {
		return "visitor"
	}
	return "participant"
}

// puppetJoin is p's join of the room, claiming its role.
func puppetJoin(p *puppet) *wire.Element {
	st := joinPresence()
	st.AddChild(wire.New("x", nsMUCUser)).AddChild(wire.New("item", "")).SetAttr("role", p.role)
	return st
}

// updateRole tells the room when p's role changed.
func (n *network) updateRole(l *link, p *puppet) {
	r := n.roleOf(l, p)
	if r == p.role {
		return
	}
	p.role = r
	if l.joined {
		st := wire.New("presence", "")
		st.AddChild(wire.New("x", nsMUCUser)).AddChild(wire.New("item", "")).SetAttr("role", r)
		n.b.send(st, p.jid, n.occupantJID(l, p.roomNick))
	}
}

// setModes records the prefix modes an IRC user holds (from NAMES), adding them to the room
// if they are new.
func (n *network) setModes(l *link, nick, modes string) {
	p := l.puppets[n.fold(nick)]
	if p == nil {
		n.addPuppetModes(l, nick, modes)
		return
	}
	p.modes = modes
	n.updateRole(l, p)
}

// applyModes follows a channel's MODE changes (or its modes in RPL_CHANNELMODEIS): prefix modes
// of IRC users and +m change their roles.
func (n *network) applyModes(l *link, changes []irc.ModeChange) {
	all := false
	var touched []*puppet
	for _, c := range changes {
		switch {
		case c.Mode == 'm':
			all = all || l.moderated != c.Set
			l.moderated = c.Set
		case strings.IndexByte(n.is.PrefixModes, c.Mode) >= 0:
			p := l.puppets[n.fold(c.Arg)]
			if p == nil {
				continue
			}
			has := strings.IndexByte(p.modes, c.Mode) >= 0
			switch {
			case c.Set && !has:
				p.modes += string(c.Mode)
			case !c.Set && has:
				p.modes = strings.ReplaceAll(p.modes, string(c.Mode), "")
			}
			touched = append(touched, p)
		}
	}
	if all {
		for _, p := range sortedPuppets(l) {
			n.updateRole(l, p)
		}
		return
	}
	for _, p := range touched {
		n.updateRole(l, p)
	}
}

// prefixModes is the modes of a NAMES entry's prefixes ("@+" → "ov").
func (n *network) prefixModes(prefixes string) string {
	var b strings.Builder
	for i := range len(prefixes) {
		if m := n.is.ModeForPrefix(prefixes[i]); m != 0 {
			b.WriteByte(m)
		}
	}
	return b.String()
}

// exit is how an IRC user left, for the room: a status code (307 kicked, 333 an error or a
// netsplit) with the kick's actor and reason.
type exit struct {
	code          string
	actor, reason string
}

// presence is the unavailable presence of the exit, with a status text.
func (ex exit) presence(status string) *wire.Element {
	st := unavailable(status)
	if ex.code == "" {
		return st
	}
	x := st.AddChild(wire.New("x", nsMUCUser))
	x.AddChild(wire.New("status", "")).SetAttr("code", ex.code)
	if ex.actor != "" || ex.reason != "" {
		it := x.AddChild(wire.New("item", ""))
		if ex.actor != "" {
			it.AddChild(wire.New("actor", "")).SetAttr("nick", ex.actor)
		}
		if ex.reason != "" {
			it.AddChild(wire.New("reason", "")).AddText(ex.reason)
		}
	}
	return st
}

// netsplit is a QUIT message naming the two servers that split ("hub.example.net
// leaf.example.net"), or what servers hide them behind ("*.net *.split").
var netsplit = regexp.MustCompile(`^[^\s.]+(\.[^\s.]+)+ [^\s.]+(\.[^\s.]+)+$`)

// quitErrors start the QUIT messages servers give a connection that failed (as opposed to
// "Quit: ..." of a user who left).
var quitErrors = []string{"Ping timeout", "Read error", "Write error", "Connection reset", "Connection closed",
	"Connection timed out", "Broken pipe", "Remote host closed", "Excess Flood", "Max SendQ exceeded",
	"SendQ exceeded", "RecvQ exceeded", "EOF from client"}

// quitExit is the exit of a QUIT: 333 for a netsplit or a connection error.
func quitExit(msg string) exit {
	if netsplit.MatchString(msg) {
		return exit{code: "333"}
	}
	for _, e := range quitErrors {
		if strings.HasPrefix(msg, e) {
			return exit{code: "333"}
		}
	}
	return exit{}
}

// kickActor is the room nick of who kicked on IRC: the IRC user's occupant, the XMPP
// occupant whose connection it was, or the IRC nick.
func (n *network) kickActor(l *link, src string) string {
	if p := l.puppets[n.fold(src)]; p != nil {
		return p.roomNick
	}
	if c := n.owned[n.fold(src)]; c != nil {
		for _, o := range l.occupant {
			if o.conn == c {
				return o.nick
			}
		}
	}
	return src
}

// listenerDown starts the grace period of an outage: the IRC users stay in the rooms for
// OutageGrace, as a netsplit usually heals.
func (n *network) listenerDown() {
	if n.down {
		return
	}
	n.down = true
	n.outage++
	ev := netEvent{kind: evOutage, gen: n.outage}
	go func() {
		t := time.NewTimer(n.b.cfg.OutageGrace)
		defer t.Stop()
		select {
		case <-t.C:
		case <-n.done:
			return
		}
		select {
		case n.events <- ev:
		case <-n.done:
		}
	}()
}

// listenerUp ends an outage; the NAMES that follow the rejoin bring back the IRC users.
func (n *network) listenerUp() {
	n.down = false
	n.outage++
}

// outageExpired removes every IRC user from the rooms with status 333.
func (n *network) outageExpired() {
	n.b.log.Warn("IRC network unreachable beyond the grace period; its users leave the rooms",
		"network", n.cfg.Name, "grace", n.b.cfg.OutageGrace)
	for _, l := range n.links {
		for _, p := range sortedPuppets(l) {
			n.removePuppet(l, p.nick, "The IRC network is unreachable", exit{code: "333"})
		}
	}
}

// sortedPuppets is l's IRC users by nick, for a stable order of presences.
func sortedPuppets(l *link) []*puppet {
	ps := slices.Collect(maps.Values(l.puppets))
	slices.SortFunc(ps, func(a, b *puppet) int { return strings.Compare(a.roomNick, b.roomNick) })
	return ps
}
