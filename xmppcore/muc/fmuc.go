package muc

// XEP-0289 Federated MUC (PROTOCOLS.md §3): a room federates with a room on
// another node by joining it as if it were an occupant, once per local
// occupant. The room's goroutine owns the federation state like everything
// else of the room; the service only passes in link state changes (PeerDown,
// PeerUp) and timers as events.
//
// Wire shapes, as the joining node (our room R, the peer room P):
//   - join/presence: from R/nick to P/nick, with <fmuc from='real'/>
//   - groupchat: from R/nick to P, PM: from R/nick to P/target
//
// and as the joined node (our room P, the joining room R):
//   - presence, groupchat: from P/nick to R, with <fmuc from='real'/>
//   - reject, left: from P to R
//
// [D] Echo control: a primary-primary node marks what it forwards with
// <nomirror/> (XEP-0289 v0.1) and the joined node echoes only unmarked
// messages, which a primary-replica node relies on to see its own messages
// in the primary's order.

import (
	"container/list"
	"slices"
	"strings"
	"time"

	"github.com/aldis-im/aldis/xmppcore/jid"
	"github.com/aldis-im/aldis/xmppcore/seclabel"
	"github.com/aldis-im/aldis/xmppcore/stanza"
	"github.com/aldis-im/aldis/xmppcore/wire"
)

// NSFMUC is the namespace Isode and Openfire use on the wire for XEP-0289.
const NSFMUC = "http://isode.com/protocol/fmuc"

// FedMode is how a federated room relates to the room it joins.
type FedMode uint8

const (
	// PrimaryPrimary keeps both rooms working while the link is down;
	// the order of messages may differ between them.
	PrimaryPrimary FedMode = iota
	// PrimaryReplica makes the joined room the primary: local messages
	// are shown once the primary echoes them, and refused while it is
	// unreachable.
	PrimaryReplica
)

func (m FedMode) String() string {
	if m == PrimaryReplica {
		return "primary-replica"
	}
	return "primary-primary"
}

// ParseFedMode reads "primary-primary" or "primary-replica".
func ParseFedMode(s string) (FedMode, bool) {
	switch s {
	case "primary-primary", "":
		return PrimaryPrimary, true
	case "primary-replica":
		return PrimaryReplica, true
	}
	return 0, false
}

// Federation is one local room that joins a remote room (the joining side's
// configuration; the joined side needs only Config.FederationFrom).
type Federation struct {
	Room string  // the local room's node, e.g. "ops"
	With jid.JID // the remote room, bare
	Mode FedMode
	// GhostGrace is how long the remote occupants stay after the link is
	// lost before they are removed with status 333.
	GhostGrace time.Duration
}

// Federation defaults and bounds (PROTOCOLS.md §3.4, §3.5).
const (
	defaultFedJoinTimeout = 30 * time.Second
	defaultFedRetry       = time.Minute
	fedQueueMax           = 1000
	fedQueueBytes         = 1 << 20
	originTTL             = 24 * time.Hour
	originMax             = 100000 // well above the 10 000 the design asks for
	inflightMax           = 256
)

type peerState uint8

const (
	peerIdle    peerState = iota // upstream only: not joined, nobody local
	peerJoining                  // join sent, waiting for the welcome to end (the subject)
	peerJoined
	peerDown
	peerRejected // upstream only: refused until the room empties
)

// fedPeer is a room federated with ours: the one we joined (upstream) or
// one that joined us (downstream).
type fedPeer struct {
	room     jid.JID
	upstream bool
	mode     FedMode
	grace    time.Duration
	state    peerState
	gen      uint64 // bumped at each loss, so timers of an earlier one do nothing
	carrier  bool   // the loss was reported by the carrier: wait for PeerUp rather than retry
	pending  map[string]*pendingJoin
	last     time.Time // stamp of the last message received from the peer
	queue    []queued
	qbytes   int
	inflight map[string]queued // messages sent lately, by id, to requeue on a bounce
	order    []string
}

// queued is a message kept for a peer while the link is down.
type queued struct {
	m  *wire.Element // without a to
	to jid.JID
}

type pendingJoin struct {
	ev       event
	accepted bool // the peer sent the self-presence; the join ends with the subject
}

// fedEvent is a timer or link state change for a room.
type fedEvent struct {
	what   fedWhat
	domain string
	gen    uint64
	peer   jid.JID
	nick   string // folded; a join timeout's
	id     string // a gateway join's question
}

type fedWhat uint8

const (
	fedPeerDown fedWhat = iota
	fedPeerUp
	fedJoinTimeout
	fedGhosts
	fedRetry
	gwAskTimeout
)

// ---- service side ----

func (s *Service) fedSetup() {
	s.feds = map[jid.JID]Federation{}
	for _, f := range s.cfg.Federate {
		j, err := jid.New(f.Room, s.domain.Domain(), "")
		if err != nil {
			s.log.Error("federated room has an invalid name; skipped", "room", f.Room, "err", err)
			continue
		}
		f.With = f.With.Bare()
		s.feds[j] = f
	}
	s.fedFrom = map[string]bool{}
	for _, d := range s.cfg.FederationFrom {
		s.fedFrom[d] = true
	}
	s.linkQueued = map[string]bool{}
	for _, d := range s.cfg.LinkQueued {
		s.linkQueued[d] = true
	}
	s.carrierDown = map[string]bool{}
	if s.cfg.FedJoinTimeout <= 0 {
		s.cfg.FedJoinTimeout = defaultFedJoinTimeout
	}
	if s.cfg.FedRetry <= 0 {
		s.cfg.FedRetry = defaultFedRetry
	}
}

// federating reports whether rooms of this service may federate at all.
func (s *Service) federating() bool { return len(s.feds) > 0 || len(s.fedFrom) > 0 }

// PeerDown tells the rooms federated with rooms of domain (or of its
// subdomains, so that a link to ship.example covers conference.ship.example)
// that the link carrying them is down. The link relay's state callback calls
// it; it never blocks.
func (s *Service) PeerDown(domain string) { s.peerEvent(domain, false) }

// PeerUp tells the rooms federated with rooms of domain that the link is up
// again: joining rooms rejoin and both sides flush what they queued.
func (s *Service) PeerUp(domain string) { s.peerEvent(domain, true) }

func (s *Service) peerEvent(domain string, up bool) {
	s.fedMu.Lock()
	if up {
		delete(s.carrierDown, domain)
	} else {
		s.carrierDown[domain] = true
	}
	s.fedMu.Unlock()
	what := fedPeerDown
	if up {
		what = fedPeerUp
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return
	}
	for _, r := range s.rooms {
		if r.fedActive.Load() {
			r.post(event{kind: evFed, fed: fedEvent{what: what, domain: domain}})
		}
	}
}

// isCarrierDown reports whether the carrier said the link to the domain of
// a peer room is down.
func (s *Service) isCarrierDown(peer jid.JID) bool {
	s.fedMu.Lock()
	defer s.fedMu.Unlock()
	for d := range s.carrierDown {
		if domainIn(peer.Domain(), d) {
			return true
		}
	}
	return false
}

func domainIn(d, of string) bool { return d == of || strings.HasSuffix(d, "."+of) }

// postFed queues a timer's event for a room, if the room still exists.
func (s *Service) postFed(room jid.JID, fe fedEvent) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return
	}
	if r := s.rooms[room]; r != nil {
		r.post(event{kind: evFed, fed: fe})
	}
}

func (r *room) after(d time.Duration, fe fedEvent) {
	time.AfterFunc(d, func() { r.s.postFed(r.jid, fe) })
}

// fedReject refuses a joining room: presence bare to bare (§3.2 3a).
func (s *Service) fedReject(from, to jid.JID, text string) {
	p := wire.New("presence", "")
	p.SetAttr("from", to.Bare().String()).SetAttr("to", from.Bare().String())
	p.AddChild(wire.New("fmuc", NSFMUC)).AddChild(wire.New("reject", "")).AddText(text)
	s.log.Info("federation refused", "room", to.Bare().String(), "peer", from.Bare().String(), "reason", text)
	s.deliver(p, to.Bare(), from.Bare())
}

// ---- room side ----

// fedInit gives a new room its upstream federation, if it is configured.
func (r *room) fedInit() {
	if !r.s.federating() {
		return
	}
	r.seen = newOriginLRU()
	if f, ok := r.s.feds[r.jid]; ok {
		r.up = &fedPeer{room: f.With, upstream: true, mode: f.Mode, grace: f.GhostGrace}
		r.fedActive.Store(true)
	}
}

func (r *room) federated() bool { return r.up != nil || len(r.downs) > 0 }

// peerOf returns the peer room a stanza came from, or nil.
func (r *room) peerOf(from jid.JID) *fedPeer {
	b := from.Bare()
	if r.up != nil && b == r.up.room {
		return r.up
	}
	return r.downs[b]
}

func (r *room) peers() []*fedPeer {
	var ps []*fedPeer
	if r.up != nil {
		ps = append(ps, r.up)
	}
	for _, p := range r.downs {
		ps = append(ps, p)
	}
	return ps
}

func (r *room) localCount() int {
	n := 0
	for _, o := range r.order {
		if o.via == nil {
			n++
		}
	}
	return n
}

func (r *room) peerCount(p *fedPeer) int {
	n := 0
	for _, o := range r.order {
		if o.via == p {
			n++
		}
	}
	return n
}

// handleFed handles a timer or a link state change.
func (r *room) handleFed(fe fedEvent) {
	switch fe.what {
	case fedPeerDown, fedPeerUp:
		for _, p := range r.peers() {
			if !domainIn(p.room.Domain(), fe.domain) {
				continue
			}
			if fe.what == fedPeerDown {
				r.peerLost(p, true)
			} else {
				r.peerBack(p)
			}
		}
	case fedJoinTimeout:
		if p := r.up; p != nil && p.gen == fe.gen && (p.state == peerJoining || p.pending[fe.nick] != nil) {
			r.s.log.Warn("federated room did not answer the join", "room", r.jid.String(), "peer", p.room.String())
			r.peerLost(p, false)
		}
	case fedGhosts:
		if p := r.peerByJID(fe.peer); p != nil && p.gen == fe.gen && p.state == peerDown {
			r.removeGhosts(p)
		}
	case fedRetry:
		if p := r.up; p != nil && p.gen == fe.gen && p.state == peerDown && !p.carrier {
			r.rejoin(p)
		}
	case gwAskTimeout:
		r.gatewayTimeout(fe.id)
	}
}

func (r *room) peerByJID(j jid.JID) *fedPeer {
	if r.up != nil && r.up.room == j {
		return r.up
	}
	return r.downs[j]
}

// fedInbound handles what a peer room sends; false: ev is not federation
// traffic.
func (r *room) fedInbound(ev event) bool {
	st := ev.st
	fm := st.Child("fmuc", NSFMUC)
	if r.seen == nil {
		// A service that federates with no one still says no properly.
		if fm != nil && st.Local() == "presence" && st.Attr("type") == "" && ev.to.Resource() != "" {
			r.s.fedReject(ev.from, ev.to, "Federation from "+ev.from.Domain()+" is not allowed.")
			return true
		}
		return false
	}
	p := r.peerOf(ev.from)
	if p == nil {
		if fm == nil || ev.from.Resource() == "" {
			return false
		}
		// A room joining ours (§3.2 step 2).
		if st.Local() != "presence" || st.Attr("type") != "" {
			return true // from no peer of ours: dropped
		}
		switch {
		case !r.s.fedFrom[ev.from.Domain()]:
			r.s.fedReject(ev.from, ev.to, "Federation from "+ev.from.Domain()+" is not allowed.")
			return true
		case !r.exists || r.destroyed:
			r.s.fedReject(ev.from, ev.to, "No such room.")
			return true
		case fm.Attr("from") == "":
			r.s.fedReject(ev.from, ev.to, "The join carries no real JID.")
			return true
		}
		if r.downs == nil {
			r.downs = map[jid.JID]*fedPeer{}
		}
		p = &fedPeer{room: ev.from.Bare(), state: peerJoined, grace: r.s.cfg.FederationGrace}
		r.downs[p.room] = p
		r.fedActive.Store(true)
		r.s.log.Info("room federated", "room", r.jid.String(), "peer", p.room.String())
	}
	if st.Attr("type") == "error" {
		r.fedError(p, ev)
		return true
	}
	if p.state == peerDown {
		// Traffic again: the link is back, whoever noticed first.
		r.peerBack(p)
	}
	switch st.Local() {
	case "presence":
		if p.upstream {
			r.upPresence(p, ev)
		} else {
			r.downPresence(p, ev)
		}
	case "message":
		switch {
		case ev.to.Resource() != "":
			r.fedPM(p, ev)
		case st.Attr("type") == "groupchat":
			r.fedGroupchat(p, ev)
		}
	case "iq":
		r.refuse(ev, stanza.Cancel, "service-unavailable", "")
	}
	return true
}

// realOf is the real JID a peer stanza carries in <fmuc from>.
func realOf(st *wire.Element) jid.JID {
	if fm := st.Child("fmuc", NSFMUC); fm != nil {
		if j, err := jid.Parse(fm.Attr("from")); err == nil {
			return j
		}
	}
	return jid.JID{}
}

// isLinkLoss reports whether an error that came back from a peer means the
// link to it failed (§3.5.1).
func isLinkLoss(cond string) bool {
	switch cond {
	case "remote-server-not-found", "remote-server-timeout", "service-unavailable":
		return true
	}
	return false
}

// fedError handles an error a peer room sent back.
func (r *room) fedError(p *fedPeer, ev event) {
	cond := errorCondition(ev.st)
	nick := ev.from.Resource()
	if pj := p.pending[fold(nick)]; pj != nil && cond != "" && !isLinkLoss(cond) {
		// The peer refused this user (§3.5.5: conflict → 409).
		delete(p.pending, fold(nick))
		text := "the federated room refused the join"
		if cond == "conflict" {
			text = "the nickname is in use in the federated room"
		}
		typ := ev.st.Child("error", "").Attr("type")
		if typ == "" {
			typ = stanza.Cancel
		}
		r.refuse(pj.ev, typ, cond, text)
		return
	}
	if ev.st.Local() == "presence" && cond == "conflict" && p.upstream {
		if o := r.occupants[fold(nick)]; o != nil && o.via == nil {
			r.kickLocal(o, []string{"307"}, "", "the nickname is in use in the federated room")
		}
		return
	}
	if isLinkLoss(cond) && !(ev.st.Local() == "presence" && cond == "service-unavailable" && ev.st.Child("error", "").Attr("type") == stanza.Wait) {
		if ev.st.Local() == "message" {
			if q, ok := p.inflight[ev.st.Attr("id")]; ok {
				delete(p.inflight, ev.st.Attr("id"))
				r.enqueue(p, q.m, q.to)
			}
		}
		r.peerLost(p, false)
	}
}

// ---- the joining side: local joins and the peer's answers ----

// fedJoin is called for a local join that passed the room's checks: the
// first session of a new occupant of a room that joins another. It reports
// whether the join is held until the peer answers.
func (r *room) fedJoin(ev event) bool {
	p := r.up
	if p == nil || ev.fedOK {
		return false
	}
	switch p.state {
	case peerRejected:
		r.refuse(ev, stanza.Cancel, "not-allowed", "the federated room refused this room")
		return true
	case peerDown:
		if p.mode == PrimaryReplica {
			r.refuse(ev, stanza.Wait, "remote-server-timeout", "the primary room is unreachable")
			return true
		}
		return false // primary-primary: the local copy keeps working
	case peerIdle:
		if r.s.isCarrierDown(p.room) {
			p.state = peerDown
			p.carrier = true
			return r.fedJoin(ev)
		}
		p.state = peerJoining
		p.gen++
	}
	nick := ev.to.Resource()
	if p.pending == nil {
		p.pending = map[string]*pendingJoin{}
	}
	if p.pending[fold(nick)] != nil {
		r.refuse(ev, stanza.Cancel, "conflict", "the nickname is being joined")
		return true
	}
	p.pending[fold(nick)] = &pendingJoin{ev: ev}
	r.after(r.s.cfg.FedJoinTimeout, fedEvent{what: fedJoinTimeout, gen: p.gen, nick: fold(nick)})
	var hist *wire.Element
	if x := ev.st.Child("x", NS); x != nil {
		hist = x.Child("history", "")
	}
	r.sendUpJoin(p, nick, ev.from, ev.st, hist)
	return true
}

// sendUpJoin joins the peer room as one of our occupants (§3.2 step 2).
func (r *room) sendUpJoin(p *fedPeer, nick string, real jid.JID, pres *wire.Element, hist *wire.Element) {
	to, err := p.room.WithResource(nick)
	if err != nil {
		return
	}
	from := r.occJID(nick)
	j := wire.New("presence", "")
	j.SetAttr("from", from.String()).SetAttr("to", to.String())
	if pres != nil {
		for c := range pres.Elements() {
			if c.Space == NS || c.Space == NSUser || c.Space == NSFMUC {
				continue
			}
			j.AddChild(c.Copy())
		}
	}
	j.AddChild(wire.New("fmuc", NSFMUC)).SetAttr("from", real.String())
	x := j.AddChild(wire.New("x", NS))
	if hist != nil {
		x.AddChild(hist.Copy())
	}
	it := j.AddChild(wire.New("x", NSUser)).AddChild(wire.New("item", ""))
	it.SetAttr("affiliation", "none").SetAttr("role", "participant").SetAttr("jid", real.String())
	r.deliver(j, from, to)
}

// upPresence handles presence from the room we joined.
func (r *room) upPresence(p *fedPeer, ev event) {
	st := ev.st
	nick := ev.from.Resource()
	if nick == "" {
		if fm := st.Child("fmuc", NSFMUC); fm != nil {
			if rj := fm.Child("reject", ""); rj != nil {
				r.fedRejected(p, rj.Text())
			} else if fm.Child("left", "") != nil && r.localCount() == 0 {
				p.state = peerIdle
			}
		}
		return
	}
	unavailable := st.Attr("type") == "unavailable"
	codes := statusCodes(st)
	if pj := p.pending[fold(nick)]; pj != nil && r.occupants[fold(nick)] == nil {
		if unavailable {
			return
		}
		if p.state == peerJoining {
			pj.accepted = true // admitted at the end of the welcome
			return
		}
		delete(p.pending, fold(nick))
		r.admit2(pj.ev)
		return
	}
	if o := r.occupants[fold(nick)]; o != nil && o.via == nil {
		// Our own occupant as the peer sees it: only a removal matters.
		if unavailable && (slices.Contains(codes, "307") || slices.Contains(codes, "301") || slices.Contains(codes, "321")) {
			it := st.Child("x", NSUser).Child("item", "")
			var actor, reason string
			if it != nil {
				if a := it.Child("actor", ""); a != nil {
					actor = a.Attr("nick")
				}
				reason = it.ChildText("reason", "")
			}
			var keep []string
			for _, c := range codes {
				if c == "307" || c == "301" || c == "321" {
					keep = append(keep, c)
				}
			}
			r.kickLocal(o, keep, actor, reason)
		}
		return
	}
	r.remotePresence(p, ev, nick)
}

// admit2 completes a local join the peer accepted.
func (r *room) admit2(ev event) {
	ev.fedOK = true
	r.join(ev)
	if o := r.sessions[ev.from]; o != nil {
		o.upJoined = true
	}
}

// fedRejected fails the held joins: the peer refused to federate.
func (r *room) fedRejected(p *fedPeer, text string) {
	if text == "" {
		text = "the federated room refused this room"
	}
	r.s.log.Warn("federation rejected", "room", r.jid.String(), "peer", p.room.String(), "reason", text)
	p.state = peerRejected
	p.gen++
	for k, pj := range p.pending {
		delete(p.pending, k)
		r.refuse(pj.ev, stanza.Cancel, "not-allowed", "Federation refused: "+text)
	}
}

// welcomeDone ends a join or rejoin at the peer's subject: the held joins
// are admitted and what was queued is sent.
func (r *room) welcomeDone(p *fedPeer) {
	if p.state != peerJoining {
		return
	}
	p.state = peerJoined
	for _, o := range slices.Clone(r.order) {
		if o.via == p && o.stale {
			r.dropOccupant(o)
			r.broadcastPresence(o, presOpts{unavailable: true, codes: []string{"333"}}, false)
		}
	}
	for k, pj := range p.pending {
		if pj.accepted {
			delete(p.pending, k)
			r.admit2(pj.ev)
		}
	}
	r.flush(p)
}

// ---- occupants of other nodes ----

// remotePresence handles the presence of an occupant of a peer room: a
// join, an update or a departure, fanned out to our occupants and to the
// other peers.
func (r *room) remotePresence(p *fedPeer, ev event, nick string) {
	st := ev.st
	o := r.occupants[fold(nick)]
	if o != nil && o.via != p {
		return // another node's occupant: the collision was that node's to refuse
	}
	if st.Attr("type") == "unavailable" {
		if o == nil {
			return
		}
		opts := presOpts{unavailable: true, status: st.ChildText("status", "")}
		for _, c := range statusCodes(st) {
			if c != "110" {
				opts.codes = append(opts.codes, c)
			}
		}
		r.dropOccupant(o)
		r.broadcastPresence(o, opts, false)
		return
	}
	real := realOf(st)
	if o == nil {
		rl := roleParticipant
		if it := st.Child("x", NSUser); it != nil {
			if v, ok := parseRole(it.Child("item", "").Attr("role")); ok && v != roleNone {
				rl = v
			}
		}
		o = &occupant{nick: nick, real: real.Bare(), role: rl, via: p}
		r.occupants[fold(nick)] = o
		r.order = append(r.order, o)
		r.s.occupants.Add(1)
		o.setPresence(fedPayload(st), real)
		r.broadcastPresence(o, presOpts{}, false)
		return
	}
	o.stale = false
	o.setPresence(fedPayload(st), real)
	r.broadcastPresence(o, presOpts{}, false)
}

// fedPayload is a peer's stanza without the federation element.
func fedPayload(st *wire.Element) *wire.Element {
	c := st.Copy()
	c.RemoveChildren("fmuc", NSFMUC)
	return c
}

// ---- the joined side ----

// downPresence handles presence from a room that joined ours.
func (r *room) downPresence(p *fedPeer, ev event) {
	st := ev.st
	nick := ev.to.Resource()
	if nick == "" {
		return
	}
	o := r.occupants[fold(nick)]
	if st.Attr("type") == "unavailable" {
		if o == nil || o.via != p {
			return
		}
		r.dropOccupant(o)
		r.broadcastPresence(o, presOpts{unavailable: true, status: st.ChildText("status", "")}, false)
		if r.peerCount(p) == 0 {
			r.peerLeft(p)
		}
		return
	}
	if st.Attr("type") != "" {
		return
	}
	real := realOf(st)
	if real.IsZero() {
		return
	}
	if o != nil && o.via != p {
		r.fedRefuseJoin(p, ev, real, stanza.Cancel, "conflict", "the nickname is in use")
		return
	}
	x := st.Child("x", NS)
	if o != nil {
		o.setPresence(fedPayload(st), real)
		if x != nil {
			// The joining node lost track (a rejoin after an outage it
			// noticed and we did not): it gets everything again.
			r.fedWelcome(p, o, x.Child("history", ""))
			r.flush(p)
			return
		}
		r.broadcastPresence(o, presOpts{}, false)
		return
	}
	aff := r.affiliationOf(real)
	switch {
	case aff == affOutcast:
		r.fedRefuseJoin(p, ev, real, stanza.Auth, "forbidden", "you are banned from this room")
		return
	case r.conf.MembersOnly && aff < affMember:
		r.fedRefuseJoin(p, ev, real, stanza.Auth, "registration-required", "the room is members-only")
		return
	case r.reservedFor(nick, real.Bare()):
		r.fedRefuseJoin(p, ev, real, stanza.Cancel, "conflict", "the nickname is registered to someone else")
		return
	case len(r.order) >= r.conf.MaxUsers && aff < affAdmin:
		r.fedRefuseJoin(p, ev, real, stanza.Wait, "service-unavailable", "the room is full")
		return
	}
	first := r.peerCount(p) == 0
	o = &occupant{nick: nick, real: real.Bare(), role: r.defaultRole(aff), via: p}
	r.occupants[fold(nick)] = o
	r.order = append(r.order, o)
	r.s.occupants.Add(1)
	o.setPresence(fedPayload(st), real)
	r.broadcastPresence(o, presOpts{}, false)
	if first || (x != nil && x.Child("history", "") != nil) {
		var hist *wire.Element
		if x != nil {
			hist = x.Child("history", "")
		}
		r.fedWelcome(p, o, hist)
		r.flush(p)
		return
	}
	r.sendToPeer(p, r.fedPresenceOf(o, presOpts{self: true}), p.presTo(o.nick))
}

// fedRefuseJoin answers a forwarded join with an error from the occupant
// JID, carrying the real JID it was for (§3.5.5).
func (r *room) fedRefuseJoin(p *fedPeer, ev event, real jid.JID, typ, cond, text string) {
	e := errorReply(ev, typ, cond, text)
	e.SetAttr("to", p.room.String())
	e.AddChild(wire.New("fmuc", NSFMUC)).SetAttr("from", real.String())
	r.deliver(e, ev.to, p.room)
	if r.peerCount(p) == 0 {
		delete(r.downs, p.room)
	}
}

// fedWelcome sends a joining room what XEP-0045 §7.2.3 lists, in its order,
// each stanza to the joining room's bare JID with <fmuc from>: the other
// occupants, the joining one, the history (since T on a rejoin), the subject.
func (r *room) fedWelcome(p *fedPeer, self *occupant, hist *wire.Element) {
	for _, o := range r.order {
		if o.via == p || !r.conf.broadcasts(o.role) {
			continue
		}
		r.sendToPeer(p, r.fedPresenceOf(o, presOpts{}), p.presTo(o.nick))
	}
	r.sendToPeer(p, r.fedPresenceOf(self, presOpts{self: true}), p.presTo(self.nick))
	r.loadHistory()
	for _, e := range r.hist.pick(hist, r.now(), nil) {
		m := r.fedCopy(e.m, e.real)
		m.AddChild(r.delay(e.stamp))
		r.sendToPeer(p, m, p.room)
	}
	from := r.jid
	if r.subject.Set && r.subject.By != "" {
		from = r.occJID(r.subject.By)
	}
	m := wire.New("message", "")
	m.SetAttr("from", from.String()).SetAttr("type", "groupchat").SetAttr("id", randomID())
	m.AddChild(wire.New("subject", "")).AddText(r.subject.Text)
	if r.subject.Set {
		m.AddChild(r.delay(r.subject.Stamp))
	}
	r.deliver(m.WithAttr("to", p.room.String()), from, p.room)
}

// peerLeft ends a federation whose joining room has no one left (§3.2 5).
func (r *room) peerLeft(p *fedPeer) {
	delete(r.downs, p.room)
	l := wire.New("presence", "")
	l.SetAttr("from", r.jid.String()).SetAttr("to", p.room.String())
	l.AddChild(wire.New("fmuc", NSFMUC)).AddChild(wire.New("left", ""))
	r.deliver(l, r.jid, p.room)
	r.s.log.Info("federated room left", "room", r.jid.String(), "peer", p.room.String())
}

// ---- fan-out to peers ----

// fedPresenceOf builds o's presence for a peer, from the occupant JID,
// without a to.
func (r *room) fedPresenceOf(o *occupant, opts presOpts) *wire.Element {
	opts.withJID = true
	pr := r.presenceOf(o, opts)
	pr.AddChild(wire.New("fmuc", NSFMUC)).SetAttr("from", o.shownJID.String())
	return pr
}

// sendToPeer sends st (from one of our occupant JIDs or the room, without
// a to) to a peer; see presTo and the groupchat and PM addresses.
func (r *room) sendToPeer(p *fedPeer, st *wire.Element, to jid.JID) {
	from, err := jid.Parse(st.Attr("from"))
	if err != nil {
		return
	}
	r.deliver(st.WithAttr("to", to.String()), from, to)
}

// presTo is where an occupant's presence goes: the occupant JID in the room
// we joined, the bare room that joined us.
func (p *fedPeer) presTo(nick string) jid.JID {
	if p.upstream {
		if j, err := p.room.WithResource(nick); err == nil {
			return j
		}
	}
	return p.room
}

// fanPresence forwards an occupant's presence change to the peers: not back
// to the node the occupant is on, unless this room removed it (a kick or a
// ban, which that node must apply).
func (r *room) fanPresence(o *occupant, opts presOpts) {
	if !r.federated() || opts.self {
		return
	}
	removal := slices.Contains(opts.codes, "307") || slices.Contains(opts.codes, "301") || slices.Contains(opts.codes, "321")
	for _, p := range r.peers() {
		if p.state != peerJoined && p.state != peerJoining {
			continue // presence is not queued: the rejoin carries the latest
		}
		if o.via == p && !removal {
			continue
		}
		if p.upstream {
			if o.via == p {
				continue // the peer removed its own occupant itself
			}
			r.fanUp(p, o, opts)
			continue
		}
		r.sendToPeer(p, r.fedPresenceOf(o, opts), p.presTo(o.nick))
	}
}

// fanUp sends the room we joined a presence of one of our occupants.
func (r *room) fanUp(p *fedPeer, o *occupant, opts presOpts) {
	if opts.noUp {
		return
	}
	switch {
	case opts.unavailable && opts.newNick != "":
		// A nick change is a leave and a join there.
		if o.upJoined {
			r.sendUpLeave(p, o.nick, o.shownJID)
			o.upJoined = false
		}
	case opts.unavailable:
		if o.upJoined {
			r.sendUpLeave(p, o.nick, o.shownJID)
			o.upJoined = false
		}
	case !o.upJoined:
		o.upJoined = true
		pres := wire.New("presence", "")
		pres.Nodes = o.pres
		r.sendUpJoin(p, o.nick, o.shownJID, pres, nil)
	default:
		pr := wire.New("presence", "")
		pr.SetAttr("from", r.occJID(o.nick).String())
		for _, n := range o.pres {
			if n.Elem != nil {
				pr.AddChild(n.Elem)
			}
		}
		pr.AddChild(wire.New("fmuc", NSFMUC)).SetAttr("from", o.shownJID.String())
		r.sendToPeer(p, pr, p.presTo(o.nick))
	}
}

func (r *room) sendUpLeave(p *fedPeer, nick string, real jid.JID) {
	pr := wire.New("presence", "")
	pr.SetAttr("from", r.occJID(nick).String()).SetAttr("type", "unavailable")
	pr.AddChild(wire.New("fmuc", NSFMUC)).SetAttr("from", real.String())
	r.sendToPeer(p, pr, p.presTo(nick))
}

// fedLeft is called when a local occupant has gone: with the last one, the
// room leaves the room it joined (§3.2 step 5) and forgets its occupants.
func (r *room) fedLeft() {
	p := r.up
	if p == nil || r.localCount() > 0 {
		return
	}
	for k, pj := range p.pending {
		if pj.ev.from.IsZero() {
			delete(p.pending, k)
		}
	}
	if len(p.pending) > 0 {
		return
	}
	for _, o := range slices.Clone(r.order) {
		if o.via == p {
			r.dropOccupant(o)
		}
	}
	if p.state != peerDown {
		p.state = peerIdle
	}
	p.gen++
}

// fedCopy is m (as reflected) for a peer: with the sender's real JID and
// without what only concerns this room.
func (r *room) fedCopy(m *wire.Element, real jid.JID) *wire.Element {
	c := m.Copy()
	c.RemoveAttr("to")
	c.RemoveChildren("fmuc", NSFMUC)
	c.RemoveChildren("stanza-id", NSSID)
	c.RemoveChildren("nomirror", NSFMUC)
	if !real.IsZero() {
		c.AddChild(wire.New("fmuc", NSFMUC)).SetAttr("from", real.String())
	}
	return c
}

// ensureOriginID gives a groupchat message of a federating room the
// XEP-0359 origin-id that identifies it on every node (§3.4).
func ensureOriginID(m *wire.Element) string {
	if oi := m.Child("origin-id", NSSID); oi != nil && oi.Attr("id") != "" {
		return oi.Attr("id")
	}
	m.RemoveChildren("origin-id", NSSID)
	id := randomID()
	m.AddChild(wire.New("origin-id", NSSID)).SetAttr("id", id)
	return id
}

func originKey(m *wire.Element, real jid.JID) string {
	oi := m.Child("origin-id", NSSID)
	if oi == nil || oi.Attr("id") == "" {
		return ""
	}
	// With the sender: clients choose origin-ids, and two may choose alike.
	return real.Bare().String() + " " + oi.Attr("id")
}

// fanMessage forwards a groupchat message (as reflected, with an origin-id)
// to every peer but the one it came from; echo also sends it back there.
func (r *room) fanMessage(m *wire.Element, real jid.JID, except *fedPeer, echo bool) {
	for _, p := range r.peers() {
		if p == except && !echo {
			continue
		}
		if p.state == peerIdle || p.state == peerRejected {
			continue
		}
		f := r.fedCopy(m, real)
		if p.upstream && p.mode == PrimaryPrimary {
			f.AddChild(wire.New("nomirror", NSFMUC))
		}
		r.sendOrQueue(p, f, p.room)
	}
}

// sendOrQueue sends a message to a peer, or keeps it while the link is
// down, stamped now so that it keeps its original time (§3.5.2).
func (r *room) sendOrQueue(p *fedPeer, m *wire.Element, to jid.JID) {
	if p.state == peerDown && !r.s.linkQueuedFor(p.room) {
		r.enqueue(p, m, to)
		return
	}
	if id := m.Attr("id"); id != "" {
		// Kept a while, so that one lost in a bounce is queued again.
		if p.inflight == nil {
			p.inflight = map[string]queued{}
		}
		if len(p.order) >= inflightMax {
			delete(p.inflight, p.order[0])
			p.order = p.order[1:]
		}
		p.inflight[id] = queued{m: m, to: to}
		p.order = append(p.order, id)
	}
	r.sendToPeer(p, m, to)
}

func (s *Service) linkQueuedFor(peer jid.JID) bool {
	for d := range s.linkQueued {
		if domainIn(peer.Domain(), d) {
			return true
		}
	}
	return false
}

// enqueue keeps m for a peer that is down; the queue is bounded, and the
// oldest goes first (§3.5.2).
func (r *room) enqueue(p *fedPeer, m *wire.Element, to jid.JID) {
	if m.Child("delay", stanza.NSDelay) == nil {
		m = m.Copy()
		m.AddChild(r.delay(r.now()))
	}
	p.queue = append(p.queue, queued{m: m, to: to})
	p.qbytes += len(m.String())
	for len(p.queue) > fedQueueMax || (p.qbytes > fedQueueBytes && len(p.queue) > 1) {
		p.qbytes -= len(p.queue[0].m.String())
		p.queue[0] = queued{}
		p.queue = p.queue[1:]
		r.s.log.Warn("federation queue full; oldest message dropped", "room", r.jid.String(), "peer", p.room.String())
	}
}

// flush sends what was queued for a peer, in order.
func (r *room) flush(p *fedPeer) {
	q := p.queue
	p.queue, p.qbytes = nil, 0
	for _, e := range q {
		r.sendToPeer(p, e.m, e.to)
	}
}

// localGroupchat is called for a groupchat message of a local occupant
// before it is reflected; false: the room does not reflect it now.
func (r *room) localGroupchat(ev event, o *occupant) bool {
	p := r.up
	if p == nil || p.mode != PrimaryReplica {
		return true
	}
	if p.state != peerJoined {
		r.refuse(ev, stanza.Wait, "remote-server-timeout", "the primary room is unreachable")
		return false
	}
	// The replica shows it when the primary echoes it, in the primary's order.
	m := reflect(ev.st, r.occJID(o.nick))
	ensureOriginID(m)
	r.sendOrQueue(p, r.fedCopy(m, ev.from), p.room)
	return false
}

// fedGroupchat handles a groupchat message a peer forwarded.
func (r *room) fedGroupchat(p *fedPeer, ev event) {
	st := ev.st
	nick := ev.from.Resource()
	real := realOf(st)
	stamp := r.now()
	delayed := false
	if d := st.Child("delay", stanza.NSDelay); d != nil {
		if t, err := time.Parse(time.RFC3339Nano, d.Attr("stamp")); err == nil {
			stamp, delayed = t, true
		}
	}
	if stamp.After(p.last) {
		p.last = stamp
	}
	from := r.jid
	if nick != "" {
		from = r.occJID(nick)
	}
	if subj := st.Child("subject", ""); subj != nil && st.Child("body", "") == nil && st.Child("thread", "") == nil {
		r.subject = subject{Text: subj.Text(), By: nick, Stamp: stamp, Set: true}
		m := fedPayload(st)
		m.RemoveAttr("to")
		m.SetAttr("from", from.String())
		seclabel.Strip(m)
		r.broadcast(m, from)
		r.save()
		for _, q := range r.peers() {
			if q != p && q.state == peerJoined {
				r.sendToPeer(q, r.fedCopy(m, real), q.room)
			}
		}
		r.welcomeDone(p)
		return
	}
	if st.Child("body", "") == nil {
		return
	}
	key := originKey(st, real)
	if key != "" && r.seen.seen(key, r.now()) {
		return // already here: a redelivery after recovery, or an echo
	}
	m := fedPayload(st)
	m.RemoveChildren("nomirror", NSFMUC)
	m.RemoveChildren("delay", stanza.NSDelay)
	m.RemoveChildren("stanza-id", NSSID)
	m.RemoveChildren("x", NSUser)
	m.RemoveAttr("to")
	m.SetAttr("from", from.String())
	if m.Attr("id") == "" {
		m.SetAttr("id", randomID())
	}
	if key == "" {
		ensureOriginID(m)
	}
	if !r.admitRemote(ev, m) {
		return
	}
	if r.archiving() {
		if id := r.s.cfg.Archive.RecordRoom(r.jid, m); id != "" {
			m.AddChild(r.stanzaID(id))
		}
	}
	if delayed {
		// History or queued while the link was down: shown as such.
		d := m.Copy()
		d.AddChild(r.delay(stamp))
		r.broadcast(d, from)
	} else {
		r.broadcast(m, from)
	}
	r.hist.insert(histEntry{m: m, from: from, real: real, stamp: stamp, size: len(m.String())})
	echo := !p.upstream && st.Child("nomirror", NSFMUC) == nil
	r.fanMessage(m, real, p, echo)
}

// admitRemote applies the room clearance to a message from a peer; the
// router already checked the peer's own clearance (PROTOCOLS.md §1.12).
func (r *room) admitRemote(ev event, m *wire.Element) bool {
	g := r.s.cfg.Labels
	if g == nil {
		return true
	}
	mk, err := g.Marking(m)
	if err != nil {
		r.deliver(stanza.Error(ev.st, stanza.Modify, "bad-request", "the security label cannot be read"), ev.to, ev.from)
		return false
	}
	if mk == nil || mk.Element.Label == nil {
		if r.lab == nil {
			r.deliver(seclabel.Forbidden(ev.st, r.jid.String()), ev.to, ev.from)
			return false
		}
		if err := g.Stamp(m, r.lab); err != nil {
			r.s.log.Error("stamp room label", "room", r.jid.String(), "err", err)
			return false
		}
	}
	if !g.Allowed(m, r.clr, r.lab, seclabel.PointRoom, r.jid.String()) {
		r.deliver(seclabel.Forbidden(ev.st, r.jid.String()), ev.to, ev.from)
		return false
	}
	return true
}

// fedPM relays a private message a peer routed to one of our occupants.
func (r *room) fedPM(p *fedPeer, ev event) {
	st := ev.st
	if st.Attr("type") == "groupchat" {
		return
	}
	t := r.occupants[fold(ev.to.Resource())]
	if t == nil {
		r.refuse(ev, stanza.Cancel, "item-not-found", "no such occupant")
		return
	}
	nick := ev.from.Resource()
	from := r.occJID(nick)
	m := fedPayload(st)
	m.RemoveAttr("to")
	m.SetAttr("from", from.String())
	m.RemoveChildren("x", NSUser)
	m.AddChild(wire.New("x", NSUser))
	if !r.admitRemote(ev, m) {
		return
	}
	if t.via != nil {
		if t.via != p {
			r.pmToPeer(m, realOf(st), t)
		}
		return
	}
	if !r.mayReceive(m, t, seclabel.PointDelivery) {
		r.deliver(seclabel.Forbidden(ev.st, ""), ev.to, ev.from)
		return
	}
	for _, sj := range t.sessions {
		r.deliver(m.WithAttr("to", sj.String()), from, sj)
	}
}

// pmToPeer routes a private message (from one of our occupant JIDs) to an
// occupant of another node, with the sender's real JID (§3.3).
func (r *room) pmToPeer(m *wire.Element, real jid.JID, t *occupant) {
	p := t.via
	f := r.fedCopy(m, real)
	to, err := p.room.WithResource(t.nick)
	if err != nil {
		return
	}
	r.sendOrQueue(p, f, to)
}

// ---- link loss and recovery (§3.5) ----

// peerLost marks a peer unreachable: held joins go on locally (or fail, for
// a replica), its occupants go after the grace period, and a loss we
// detected ourselves is retried.
func (r *room) peerLost(p *fedPeer, carrier bool) {
	if p.state == peerIdle || p.state == peerRejected {
		return // nothing federated to lose; a later join asks the service
	}
	if p.state == peerDown {
		p.carrier = p.carrier || carrier
		return
	}
	r.s.log.Warn("federated room unreachable", "room", r.jid.String(), "peer", p.room.String(), "reported", carrier)
	p.state = peerDown
	p.carrier = carrier
	p.gen++
	for k, pj := range p.pending {
		delete(p.pending, k)
		if p.mode == PrimaryReplica {
			r.refuse(pj.ev, stanza.Wait, "remote-server-timeout", "the primary room is unreachable")
			continue
		}
		r.admit2(pj.ev)
	}
	if p.grace <= 0 {
		r.removeGhosts(p)
	} else {
		r.after(p.grace, fedEvent{what: fedGhosts, gen: p.gen, peer: p.room})
	}
	if p.upstream && !carrier {
		r.after(r.s.cfg.FedRetry, fedEvent{what: fedRetry, gen: p.gen})
	}
}

// removeGhosts removes the occupants of an unreachable peer, with 333.
func (r *room) removeGhosts(p *fedPeer) {
	for _, o := range slices.Clone(r.order) {
		if o.via == p {
			r.dropOccupant(o)
			r.broadcastPresence(o, presOpts{unavailable: true, codes: []string{"333"}}, false)
		}
	}
}

// peerBack handles a link that works again.
func (r *room) peerBack(p *fedPeer) {
	if p.state != peerDown {
		return
	}
	p.gen++
	r.s.log.Info("federated room reachable again", "room", r.jid.String(), "peer", p.room.String())
	if !p.upstream {
		p.state = peerJoined
		r.flush(p)
		return
	}
	r.rejoin(p)
}

// rejoin re-runs the join for every local occupant, the first asking for
// the history since the last message received from the peer (§3.5.4).
func (r *room) rejoin(p *fedPeer) {
	if r.localCount() == 0 {
		p.state = peerIdle
		return
	}
	p.state = peerJoining
	p.gen++
	for _, o := range r.order {
		if o.via == p {
			o.stale = true
		}
	}
	var hist *wire.Element
	if !p.last.IsZero() {
		hist = wire.New("history", "")
		hist.SetAttr("since", p.last.UTC().Format("2006-01-02T15:04:05.000Z"))
	}
	for _, o := range r.order {
		if o.via != nil {
			continue
		}
		pres := wire.New("presence", "")
		pres.Nodes = o.pres
		r.sendUpJoin(p, o.nick, o.shownJID, pres, hist)
		o.upJoined = true
		hist = nil
	}
	if !p.carrier {
		r.after(r.s.cfg.FedJoinTimeout, fedEvent{what: fedJoinTimeout, gen: p.gen})
	}
}

// kickLocal removes a local occupant another node removed (§3.3), telling
// it and everyone else.
func (r *room) kickLocal(o *occupant, codes []string, actor, reason string) {
	if r.occupants[fold(o.nick)] != o {
		return
	}
	opts := presOpts{unavailable: true, codes: codes, actor: actor, reason: reason, noUp: true}
	r.dropOccupant(o)
	r.tellSelf(o, opts)
	r.broadcastPresence(o, opts, false)
	o.upJoined = false
}

func statusCodes(st *wire.Element) []string {
	x := st.Child("x", NSUser)
	if x == nil {
		return nil
	}
	var codes []string
	for c := range x.Elements() {
		if c.Local() == "status" {
			codes = append(codes, c.Attr("code"))
		}
	}
	return codes
}

// ---- seen origin-ids ----

// originLRU remembers the origin-ids a room has seen for a day, at most
// originMax of them, so that a message arriving twice is shown once.
type originLRU struct {
	ll *list.List
	m  map[string]*list.Element
}

type originEntry struct {
	key string
	at  time.Time
}

func newOriginLRU() *originLRU { return &originLRU{ll: list.New(), m: map[string]*list.Element{}} }

// seen reports whether key was seen, and records it.
func (l *originLRU) seen(key string, now time.Time) bool {
	if e, ok := l.m[key]; ok {
		l.ll.MoveToFront(e)
		return true
	}
	l.m[key] = l.ll.PushFront(originEntry{key: key, at: now})
	for l.ll.Len() > 0 {
		b := l.ll.Back()
		oe := b.Value.(originEntry)
		if l.ll.Len() <= originMax && now.Sub(oe.at) < originTTL {
			break
		}
		l.ll.Remove(b)
		delete(l.m, oe.key)
	}
	return false
}
