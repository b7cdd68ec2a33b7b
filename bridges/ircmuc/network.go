package ircmuc

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/aldis-im/aldis/core/label"
	"github.com/aldis-im/aldis/core/pool"
	"github.com/aldis-im/aldis/irc"
	"github.com/aldis-im/aldis/irc/format"
	"github.com/aldis-im/aldis/mapping"
	"github.com/aldis-im/aldis/xmppcore/jid"
	"github.com/aldis-im/aldis/xmppcore/wire"
)

type evKind int

const (
	evXMPP   evKind = iota + 1 // a stanza for the bridge's occupant or a puppet
	evIRC                      // an event on the listener
	evUser                     // an event on a user's connection
	evLease                    // a user's connection is ready (or not)
	evLinks                    // the map changed this network's links
	evRejoin                   // the XMPP side came back: join the rooms again
	evOutage                   // the listener has been disconnected for OutageGrace
)

// netEvent is what a network's goroutine receives.
type netEvent struct {
	kind     evKind
	st       *wire.Element
	from, to jid.JID
	irc      irc.Event
	uc       *userConn
	occ      *occupant
	lease    *pool.Lease[userKey, *userConn]
	err      error
	links    []mapping.Link
	gen      int // evOutage: the outage it is about
}

// network is one IRC network's links and connections, owned by run's goroutine.
type network struct {
	b      *Bridge
	cfg    mapping.Network
	cancel context.CancelFunc
	done   chan struct{}
	events chan netEvent

	listener *irc.Client
	nick     string // the listener's nick
	is       irc.ISupport
	links    map[jid.JID]*link
	chans    map[string]*link // by folded channel
	owned    map[string]*userConn
	seq      int
	// down: the listener is disconnected; outage counts disconnections, so that the grace
	// timer of an outage that ended does not remove anyone.
	down     bool
	outage   int
	relaying relayState // the listener's RELAYMSG lines (fromxmpp.go)
}

// link is one room ⇄ channel and who is in it.
type link struct {
	cfg    mapping.Link
	room   jid.JID
	joined bool
	// moderated: the channel is +m, where IRC users without voice are visitors.
	moderated bool
	lab       *label.Label     // what IRC messages get
	clr       *label.Clearance // what may go to IRC
	puppets   map[string]*puppet
	byJID     map[jid.JID]*puppet
	byNick    map[string]*puppet // by room nick
	occupant  map[string]*occupant
	// admitting: XMPP users the room asked about (admit.go), by room nick, until their presence.
	admitting map[string]*admission
	// topic is the channel's topic as IRC last said; topicAsks the room's questions about
	// subject changes waiting for IRC, in order; topicSet the changes IRC took, whose room
	// broadcast is not sent to IRC again.
	topic     string
	topicAsks []*topicAsk
	topicSet  []topicChange
	// names collects the IRC users of the channel's NAMES after the listener (re)joined it;
	// at its end the puppets not in it leave the room (they left during an outage). nil: no
	// NAMES in progress.
	names map[string]bool
	// Flow control toward the room, whose queue is bounded: at most roomWindow IRC messages
	// delivered and not yet reflected back to the bridge's occupant; the rest wait in backlog
	// (at most roomBacklog), in order.
	inflight int
	backlog  []roomMsg
	lastAck  time.Time
}

// roomMsg is an IRC message waiting for room in the window.
type roomMsg struct {
	st   *wire.Element
	from jid.JID
}

const (
	roomWindow  = 256
	roomBacklog = 8192
	// ackTimeout: a window with no reflection for this long is assumed lost (a message the
	// room dropped without an error) and reopened.
	ackTimeout = 5 * time.Second
)

// toRoom delivers an IRC user's room message within the link's window.
func (n *network) toRoom(l *link, st *wire.Element, from jid.JID) {
	if l.inflight >= roomWindow && time.Since(l.lastAck) > ackTimeout {
		l.inflight = 0
	}
	if l.inflight < roomWindow && len(l.backlog) == 0 {
		l.inflight++
		if l.inflight == 1 {
			l.lastAck = time.Now()
		}
		n.b.send(st, from, l.room)
		return
	}
	if len(l.backlog) >= roomBacklog {
		n.b.dropped.Inc()
		n.b.log.Warn("IRC messages waiting for a room beyond its backlog; dropped", "room", l.room.String())
		return
	}
	l.backlog = append(l.backlog, roomMsg{st, from})
}

// roomAcked follows the room reflecting (or refusing) one of the IRC messages in flight.
func (n *network) roomAcked(l *link) {
	if l.inflight > 0 {
		l.inflight--
	}
	l.lastAck = time.Now()
	n.flushRoom(l)
}

// flushRoom sends what waits while the window has room.
func (n *network) flushRoom(l *link) {
	i := 0
	for ; i < len(l.backlog) && l.inflight < roomWindow; i++ {
		l.inflight++
		n.b.send(l.backlog[i].st, l.backlog[i].from, l.room)
		l.backlog[i] = roomMsg{}
	}
	l.backlog = l.backlog[i:]
	if len(l.backlog) == 0 {
		l.backlog = nil
	}
}

// puppet is an IRC user shown in a room.
type puppet struct {
	nick     string // IRC nick
	roomNick string
	jid      jid.JID
	tries    int
	modes    string // the channel's prefix modes the user holds ("ov")
	role     string // the room role last claimed for the user
}

// occupant is an XMPP occupant of a linked room.
type occupant struct {
	nick  string
	key   userKey
	lease *pool.Lease[userKey, *userConn]
	conn  *userConn // nil: speaks through the listener
	// refused is the IRC numeric with which the channel refused the user's join (banned,
	// invite only...): what they say is not relayed, which would evade the channel's rule.
	refused string
}

func newNetwork(b *Bridge, cfg mapping.Network, cancel context.CancelFunc) *network {
	return &network{b: b, cfg: cfg, cancel: cancel, done: make(chan struct{}),
		events: make(chan netEvent, b.cfg.Queue), links: map[jid.JID]*link{}, chans: map[string]*link{},
		owned: map[string]*userConn{}, is: irc.DefaultISupport()}
}

// post queues ev without waiting; false when the queue is full.
func (n *network) post(ev netEvent) bool {
	select {
	case n.events <- ev:
		return true
	case <-n.done:
		return false
	default:
		n.b.dropped.Inc()
		return false
	}
}

func (n *network) stop() { n.cancel() }

func (n *network) fold(s string) string { return n.is.CaseMapping.Fold(s) }

func (n *network) run(ctx context.Context, links []mapping.Link) {
	defer close(n.done)
	log := n.b.log.With("network", n.cfg.Name)
	nick := n.cfg.Nick
	if nick == "" {
		nick = mapping.DefaultNick
	}
	cfg, err := clientConfig(n.cfg, nick, log)
	if err != nil {
		log.Error("IRC network unusable", "err", err)
		return
	}
	n.listener = irc.New(cfg)
	n.nick = nick
	go func() { _ = n.listener.Run(ctx) }()
	go func() {
		for ev := range n.listener.Events() {
			select {
			case n.events <- netEvent{kind: evIRC, irc: ev}:
			case <-ctx.Done():
			}
		}
	}()
	n.setLinks(links)
	tick := time.NewTicker(n.b.cfg.RejoinInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			n.shutdown()
			return
		case ev := <-n.events:
			n.handle(ev)
		case <-tick.C:
			for _, l := range n.links {
				if !l.joined {
					n.joinRoom(l)
				}
				n.expireAdmissions(l)
				n.expireTopicAsks(l)
				if l.inflight > 0 && time.Since(l.lastAck) > ackTimeout {
					l.inflight = 0
					n.flushRoom(l)
				}
			}
		}
	}
}

func (n *network) handle(ev netEvent) {
	switch ev.kind {
	case evXMPP:
		n.fromXMPP(ev.st, ev.from, ev.to)
	case evIRC:
		if !n.relayEvent(ev.irc, true) {
			n.fromListener(ev.irc)
		}
	case evUser:
		if !n.relayEvent(ev.irc, false) {
			n.fromUser(ev.uc, ev.irc)
		}
	case evLease:
		n.leased(ev)
	case evLinks:
		n.setLinks(ev.links)
	case evRejoin:
		for _, l := range n.links {
			l.joined = false
			n.joinRoom(l)
		}
	case evOutage:
		if n.down && ev.gen == n.outage {
			n.outageExpired()
		}
	}
}

// setLinks makes the network's links those of ls: rooms no longer linked
// are left, new ones joined, and links whose settings changed start again.
func (n *network) setLinks(ls []mapping.Link) {
	want := map[jid.JID]mapping.Link{}
	for _, l := range ls {
		room, err := jid.Parse(l.Room)
		if err != nil {
			continue // the map was validated
		}
		want[room.Bare()] = l
	}
	for room, l := range n.links {
		if nl, ok := want[room]; !ok || nl != l.cfg {
			n.dropLink(l)
		}
	}
	for room, cfg := range want {
		if n.links[room] != nil {
			continue
		}
		lab, clr, err := linkLabels(n.b.cfg.Labels, cfg, n.cfg)
		if err != nil {
			n.b.log.Error("link labels", "room", cfg.Room, "err", err)
			continue
		}
		l := &link{cfg: cfg, room: room, lab: lab, clr: clr, puppets: map[string]*puppet{},
			byJID: map[jid.JID]*puppet{}, byNick: map[string]*puppet{}, occupant: map[string]*occupant{}, admitting: map[string]*admission{}}
		n.links[room] = l
		n.chans[mapping.FoldChannel(cfg.Channel)] = l
		if err := n.listener.Join(cfg.Channel, cfg.Key); err != nil {
			n.b.log.Warn("join IRC channel", "channel", cfg.Channel, "err", err)
		}
		n.joinRoom(l)
	}
}

// dropLink leaves a link's room and channel.
func (n *network) dropLink(l *link) {
	n.leaveRoom(l, "The IRC link was removed")
	_ = n.listener.Part(l.cfg.Channel, "")
	delete(n.links, l.room)
	delete(n.chans, mapping.FoldChannel(l.cfg.Channel))
}

// leaveRoom takes the puppets and the bridge out of the room and lets go of
// the XMPP occupants' connections.
func (n *network) leaveRoom(l *link, status string) {
	if l.joined {
		for _, p := range l.puppets {
			n.b.send(unavailable(status), p.jid, n.occupantJID(l, p.roomNick))
		}
		n.b.send(unavailable(status), n.b.self, n.occupantJID(l, l.cfg.Channel))
	}
	l.joined = false
	l.inflight, l.backlog = 0, nil
	for _, o := range l.occupant {
		n.release(l, o)
	}
	clear(l.occupant)
}

func (n *network) shutdown() {
	for _, l := range n.links {
		n.leaveRoom(l, "The IRC gateway is shutting down")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	_ = n.listener.Quit(ctx, "")
}

// occupantJID is room/nick.
func (n *network) occupantJID(l *link, nick string) jid.JID {
	j, err := l.room.WithResource(nick)
	if err != nil {
		return l.room
	}
	return j
}

// isOwned reports whether nick is the listener or an XMPP user's connection:
// what they say on IRC came from the room and must not come back (echo).
func (n *network) isOwned(nick string) bool {
	f := n.fold(nick)
	return f == n.fold(n.nick) || n.owned[f] != nil
}

// --- IRC users as occupants ---

// addPuppet makes IRC user nick an occupant of l's room.
func (n *network) addPuppet(l *link, nick string) *puppet {
	return n.addPuppetModes(l, nick, "")
}

// addPuppetModes makes IRC user nick, holding the channel's prefix modes, an occupant of l's
// room; an occupant already there keeps the modes it has.
func (n *network) addPuppetModes(l *link, nick, modes string) *puppet {
	if nick == "" || n.isOwned(nick) {
		return nil
	}
	f := n.fold(nick)
	if p := l.puppets[f]; p != nil {
		return p
	}
	n.seq++
	res := strconv.Itoa(n.seq)
	j, err := jid.New(jid.Escape(nick)+"%"+n.cfg.Name, n.b.domain.Domain(), res)
	if err != nil {
		if j, err = jid.New("u"+res+"%"+n.cfg.Name, n.b.domain.Domain(), res); err != nil {
			return nil
		}
	}
	p := &puppet{nick: nick, jid: j, modes: modes}
	p.roomNick = n.freeNick(l, nick)
	p.role = n.roleOf(l, p)
	l.puppets[f] = p
	l.byJID[j] = p
	l.byNick[p.roomNick] = p
	if l.joined {
		n.b.send(puppetJoin(p), p.jid, n.occupantJID(l, p.roomNick))
	}
	return p
}

// freeNick is the room nick for IRC user nick: the nick itself unless an
// XMPP occupant (or another IRC user) has it, else nick[irc], nick[irc]2...
func (n *network) freeNick(l *link, nick string) string {
	taken := func(s string) bool {
		for on := range l.occupant {
			if strings.EqualFold(on, s) {
				return true
			}
		}
		for pn := range l.byNick {
			if strings.EqualFold(pn, s) {
				return true
			}
		}
		return strings.EqualFold(s, l.cfg.Channel)
	}
	if !taken(nick) {
		return nick
	}
	for i := 1; ; i++ {
		s := nick + "[irc]"
		if i > 1 {
			s += strconv.Itoa(i)
		}
		if !taken(s) {
			return s
		}
	}
}

// removePuppet takes IRC user nick out of l's room; ex gives the room the status code (a kick,
// an error) and its actor and reason.
func (n *network) removePuppet(l *link, nick, status string, ex exit) {
	p := l.puppets[n.fold(nick)]
	if p == nil {
		return
	}
	delete(l.puppets, n.fold(nick))
	delete(l.byJID, p.jid)
	delete(l.byNick, p.roomNick)
	if l.joined {
		n.b.send(ex.presence(status), p.jid, n.occupantJID(l, p.roomNick))
	}
}

// renamePuppet follows an IRC nick change: a MUC nick change from the same JID.
func (n *network) renamePuppet(l *link, old, nick string) {
	p := l.puppets[n.fold(old)]
	if p == nil {
		return
	}
	delete(l.puppets, n.fold(old))
	delete(l.byNick, p.roomNick)
	p.nick = nick
	p.roomNick = n.freeNick(l, nick)
	l.puppets[n.fold(nick)] = p
	l.byNick[p.roomNick] = p
	if l.joined {
		n.b.send(puppetJoin(p), p.jid, n.occupantJID(l, p.roomNick))
	}
}

// --- the room ---

// joinRoom sends the bridge's own join to l's room, with no history.
func (n *network) joinRoom(l *link) {
	n.b.send(joinPresence(), n.b.self, n.occupantJID(l, l.cfg.Channel))
}

// joined is called when the room confirmed the bridge's join: the IRC
// users come in.
func (n *network) roomJoined(l *link) {
	if l.joined {
		return
	}
	l.joined = true
	n.b.log.Info("joined linked room", "room", l.room.String(), "channel", l.cfg.Channel)
	for _, p := range l.puppets {
		n.b.send(puppetJoin(p), p.jid, n.occupantJID(l, p.roomNick))
	}
}

// --- XMPP users' connections ---

// connect gets o its IRC connection, from the pool, without waiting.
func (n *network) connect(l *link, o *occupant) {
	if n.cfg.RelayOnly {
		return
	}
	nickLen := n.is.NickLen
	if nickLen <= 0 {
		nickLen = 9
	}
	n.b.hint(o.key, irc.NickFromMUC(o.nick, nickLen, o.key.User))
	go func() {
		ctx, cancel := context.WithTimeout(n.b.ctx, 60*time.Second)
		defer cancel()
		lease, err := n.b.pool.Get(ctx, o.key)
		ev := netEvent{kind: evLease, occ: o, lease: lease, err: err, to: l.room}
		select {
		case n.events <- ev:
		case <-n.done:
			if lease != nil {
				lease.Release()
			}
		}
	}()
}

// leased takes a connection the pool gave an occupant, who may have left meanwhile.
func (n *network) leased(ev netEvent) {
	l := n.links[ev.to]
	o := ev.occ
	var a *admission
	if l != nil {
		a = l.admissionOf(o)
	}
	if l == nil || (l.occupant[o.nick] != o && a == nil) {
		if ev.lease != nil {
			ev.lease.Release()
		}
		return
	}
	if ev.err != nil {
		if errors.Is(ev.err, pool.ErrExhausted) {
			n.b.relayed.Inc()
		}
		n.b.log.Warn("no IRC connection for an XMPP user; relaying", "user", o.key.User, "network", n.cfg.Name, "err", ev.err)
		if a != nil {
			n.admissionLeased(l, a, ev.err)
		}
		return
	}
	o.lease = ev.lease
	o.conn = ev.lease.Conn()
	n.owned[n.fold(o.conn.Nick())] = o.conn
	if a != nil && n.inChannel(o.conn, l.cfg.Channel) {
		n.answerAdmission(a, "", "", "") // no JOIN to wait for: it is there for another nick of theirs
		return
	}
	if err := o.conn.c.Join(l.cfg.Channel, l.cfg.Key); err != nil {
		n.b.log.Warn("join IRC channel for an XMPP user", "user", o.key.User, "err", err)
	}
}

// inChannel reports whether c is in channel, as far as its server said.
func (n *network) inChannel(c *userConn, channel string) bool {
	for _, ch := range c.c.State().Channels {
		if foldChannel(ch) == foldChannel(channel) {
			return true
		}
	}
	return false
}

// release lets go of o's connection in l: PART the channel, and the pool
// closes the connection after its linger once nobody uses it.
func (n *network) release(l *link, o *occupant) {
	if o.conn == nil {
		return
	}
	c := o.conn
	_ = c.c.Part(l.cfg.Channel, "")
	o.lease.Release()
	o.conn, o.lease = nil, nil
	if !n.inUse(c) {
		delete(n.owned, n.fold(c.Nick()))
	}
}

// inUse reports whether an occupant still speaks through c.
func (n *network) inUse(c *userConn) bool {
	for _, l := range n.links {
		for _, o := range l.occupant {
			if o.conn == c {
				return true
			}
		}
	}
	return false
}

// fromUser handles what an XMPP user's connection heard: private messages
// to them, and their own nick changes.
func (n *network) fromUser(c *userConn, ev irc.Event) {
	if ev.Kind != irc.Received {
		return
	}
	m := ev.Msg
	switch m.Command {
	case "NICK":
		if n.fold(m.Nick()) == n.fold(c.Nick()) && n.owned[n.fold(m.Nick())] == c {
			delete(n.owned, n.fold(m.Nick()))
			c.setNick(irc.Param(&m, 0))
			n.owned[n.fold(c.Nick())] = c
		}
	case "PRIVMSG", "NOTICE":
		if n.is.IsChannel(irc.Param(&m, 0)) || n.isOwned(m.Nick()) {
			return // channel traffic is the listener's; our own messages echoed
		}
		n.privateFromIRC(c, m, ev)
	case "JOIN":
		if n.fold(m.Nick()) == n.fold(c.Nick()) {
			n.admittedOnIRC(c, m)
		}
	case "TOPIC":
		if l := n.chans[foldChannel(irc.Param(&m, 0))]; l != nil {
			n.topicAnswered(l, c, "")
		}
	case "482": // ERR_CHANOPRIVSNEEDED: me #chan :You're not a channel operator
		if l := n.chans[foldChannel(irc.Param(&m, 1))]; l != nil {
			n.topicAnswered(l, c, "forbidden")
		}
	case "471", "473", "474", "475":
		if l := n.chans[foldChannel(irc.Param(&m, 1))]; l != nil && n.admissionRefused(l, c, m.Command) {
			return
		}
		n.joinRefused(c, m)
	case "KICK":
		if n.fold(irc.Param(&m, 1)) == n.fold(c.Nick()) {
			n.userKicked(c, m)
		}
	}
}

// joinError is what a channel join error tells the user (PROTOCOLS §7.4).
func joinError(code string) string {
	switch code {
	case "471":
		return "the channel is full"
	case "473":
		return "the channel is invite only"
	case "474":
		return "you are banned from the channel"
	case "475":
		return "the channel needs a key"
	}
	return "refused"
}

// joinRefused follows IRC refusing a user's JOIN of a linked channel. The
// user is already in the room (a MUC join error can only come from the room
// itself), so the bridge tells them in a private message from its occupant
// and no longer passes what they say to the channel.
func (n *network) joinRefused(c *userConn, m irc.Message) {
	l := n.chans[foldChannel(irc.Param(&m, 1))]
	if l == nil {
		return
	}
	n.cutOff(l, c, m.Command, refusedText(l, m.Command))
}

// refusedText tells a user IRC refused their join of l's channel with code.
func refusedText(l *link, code string) string {
	return "IRC refused your join of " + l.cfg.Channel + " (" + code + ": " + joinError(code) +
		"): what you say in this room does not reach IRC."
}

// userKicked follows an IRC operator kicking an XMPP user's connection from a linked channel:
// as with a refused join, what they say no longer reaches IRC until they join the room again.
func (n *network) userKicked(c *userConn, m irc.Message) {
	l := n.chans[foldChannel(irc.Param(&m, 0))]
	if l == nil {
		return
	}
	text := "You were kicked from " + l.cfg.Channel + " on IRC by " + m.Nick()
	if r := format.Clean(format.FromIRC(irc.Param(&m, 2))); r != "" {
		text += " (" + r + ")"
	}
	n.cutOff(l, c, "KICK", text+": what you say in this room no longer reaches IRC. Leave the room and join it again to return.")
}

// cutOff stops relaying for the occupants of l speaking through c, whom the channel refused
// (code), and tells them why.
func (n *network) cutOff(l *link, c *userConn, code, text string) {
	for _, o := range l.occupant {
		if o.conn != c {
			continue
		}
		n.b.log.Warn("IRC refused an XMPP user in a channel", "user", o.key.User, "channel", l.cfg.Channel, "code", code)
		n.release(l, o)
		o.refused = code
		n.tell(l, o, text)
	}
}

// tell sends occupant o a private message from the bridge's occupant.
func (n *network) tell(l *link, o *occupant, text string) {
	s := wire.New("message", "")
	s.SetAttr("type", "chat")
	s.SetAttr("id", n.newID())
	s.AddChild(wire.New("body", "")).AddText(text)
	s.AddChild(wire.New("x", nsMUCUser))
	n.b.send(s, n.b.self, n.occupantJID(l, o.nick))
}
