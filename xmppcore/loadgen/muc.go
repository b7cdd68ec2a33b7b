package loadgen

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// ErrNoMUC is wrapped by RunMUC's error when not a single room could be
// joined: the MUC service is absent, disabled or refuses everyone.
var ErrNoMUC = errors.New("the MUC service does not answer")

const (
	nsMUC      = "http://jabber.org/protocol/muc"
	nsMUCOwner = nsMUC + "#owner"

	// mucAnswerTimeout bounds the wait for the first joins (the rooms'
	// creators) and for the creators' instant configurations: a server
	// without the service is told apart quickly.
	mucAnswerTimeout = 15 * time.Second
	// The other joins may take long in a big room, whose every join is
	// broadcast to every occupant: they are waited for while the server
	// makes progress, and given up after mucJoinStall without any or
	// mucJoinMax in all.
	mucJoinStall = 30 * time.Second
	mucJoinMax   = 10 * time.Minute

	cfgID = "lgcfg" // id of the instant-room configuration request
)

// RoomSet describes a group of rooms RunMUC joined.
type RoomSet struct {
	Name      string // "10 rooms × 20", "big room × 1000"
	Rooms     int
	Occupants int // asked for per room
	Sessions  int // logged-in sessions that tried to join
	Joined    int // sessions whose self-presence (status 110) arrived
	// Created counts rooms whose creator got status 201 (a new room); the
	// generator then submitted an instant configuration, as XEP-0045
	// §10.1.2 asks to unlock a room created locked.
	Created   int
	NotJoined int           // sessions refused or left without an answer
	JoinTime  time.Duration // from the first join sent to the last self-presence
}

// membership is one session's presence in one room. The session's reader
// completes it; the driver waits on done.
type membership struct {
	room   string // bare JID of the room
	prefix []byte // room + "/": what an occupant's JID starts with
	// self is the session's occupant JID as the server reported it in the
	// self-presence (it may rewrite the nick). Written and read by the
	// session's reader only, once the join completed.
	self []byte

	finished atomic.Bool
	done     chan struct{}
	joined   bool   // valid once done is closed
	created  bool   // status 201: this session created the room
	err      string // why the join failed

	cfgOnce sync.Once
	cfgDone chan struct{}
	cfgErr  string // valid once cfgDone is closed
}

func newMembership(room, nick string) *membership {
	return &membership{
		room:    room,
		prefix:  []byte(room + "/"),
		self:    []byte(room + "/" + nick),
		done:    make(chan struct{}),
		cfgDone: make(chan struct{}),
	}
}

// completed reports whether the join completed; joined, created and err
// are valid once it does.
func (m *membership) completed() bool {
	select {
	case <-m.done:
		return true
	default:
		return false
	}
}

func (m *membership) finish(joined, created bool, err string) {
	if m.finished.Swap(true) {
		return
	}
	m.joined, m.created, m.err = joined, created, err
	close(m.done)
}

// isEcho reports whether a received room message is the session's own,
// reflected by the room.
func (m *membership) isEcho(it item) bool {
	return bytes.Equal(attrValue(it.raw[:it.head], "from"), m.self)
}

// onPresence completes a pending join: the self-presence (status 110, or
// from the session's own occupant JID) or an error from the room. Presence
// of other occupants costs two attribute lookups while the join is
// pending and nothing once it completed.
func (r *runner) onPresence(s *session, it item) {
	m := s.muc.Load()
	if m == nil || m.finished.Load() {
		return
	}
	head := it.raw[:it.head]
	from := attrValue(head, "from")
	inRoom := bytes.HasPrefix(from, m.prefix)
	if !inRoom && string(from) != m.room {
		return
	}
	switch string(attrValue(head, "type")) {
	case "error":
		m.finish(false, false, "join refused: "+errorCondition(it.raw))
	case "unavailable":
		if bytes.Equal(from, m.self) || hasStatus(it.raw, "110") {
			m.finish(false, false, "removed while joining: "+string(clip(it.raw, 300)))
		}
	case "":
		if inRoom && (bytes.Equal(from, m.self) || hasStatus(it.raw, "110")) {
			m.self = append(m.self[:0], from...)
			m.finish(true, hasStatus(it.raw, "201"), "")
		}
	}
}

// onIQResponse records the answer to the instant-room configuration.
func (r *runner) onIQResponse(s *session, it item) {
	head := it.raw[:it.head]
	if string(attrValue(head, "id")) != cfgID {
		return
	}
	m := s.muc.Load()
	if m == nil {
		return
	}
	m.cfgOnce.Do(func() {
		if string(attrValue(head, "type")) == "error" {
			m.cfgErr = errorCondition(it.raw)
		}
		close(m.cfgDone)
	})
}

// errorCondition names the defined condition of a stanza error, such as
// "item-not-found", with the error's text when there is one.
func errorCondition(raw []byte) string {
	i := bytes.Index(raw, []byte("<error"))
	if i < 0 {
		return "error without <error/>: " + string(clip(raw, 200))
	}
	b := raw[i:]
	if j := bytes.IndexByte(b, '>'); j < 0 || b[j-1] == '/' {
		return string(clip(b, 200))
	}
	var conds []string
	for {
		j := bytes.IndexByte(b[1:], '<')
		if j < 0 {
			break
		}
		b = b[1+j:]
		if len(b) > 1 && b[1] == '/' {
			if bytes.HasPrefix(b, []byte("</error")) {
				break
			}
			continue
		}
		name := string(localName(b))
		if name == "text" {
			if k, e := bytes.IndexByte(b, '>'), bytes.Index(b, []byte("</")); k >= 0 && e > k {
				conds = append(conds, fmt.Sprintf("%q", b[k+1:e]))
			}
			continue
		}
		if name != "" {
			conds = append(conds, name)
		}
	}
	if len(conds) == 0 {
		return string(clip(raw[i:], 200))
	}
	return strings.Join(conds, " ")
}

// hasStatus reports whether a presence carries <status code='code'/>.
func hasStatus(raw []byte, code string) bool {
	b := raw
	for {
		i := bytes.Index(b, []byte("<status"))
		if i < 0 {
			return false
		}
		b = b[i:]
		j := bytes.IndexByte(b, '>')
		if j < 0 {
			return false
		}
		if string(attrValue(b[:j+1], "code")) == code {
			return true
		}
		b = b[j+1:]
	}
}

func (c *Config) setMUCDefaults() error {
	if c.Rooms < 0 || c.Occupants < 0 || c.MUCRate < 0 || c.BigRoom < 0 || c.BigRoomRate < 0 {
		return errors.New("loadgen: negative room counts or rates")
	}
	if c.Rooms == 0 && c.BigRoom == 0 {
		return errors.New("loadgen: RunMUC needs Rooms or BigRoom")
	}
	if c.Occupants == 0 {
		c.Occupants = 20
	}
	if c.MUCDomain == "" {
		c.MUCDomain = "conference." + c.Domain
	}
	c.MUCDomain = strings.ToLower(c.MUCDomain)
	if c.BigRoomRate == 0 {
		c.BigRoomRate = 2
	}
	return nil
}

// RunMUC measures multi-user chat (XEP-0045). It logs in Rooms × Occupants
// sessions as accounts 0 … Rooms×Occupants−1 (Users is ignored), joins
// Occupants of them to each of Rooms new rooms of MUCDomain (the first
// joiner creates the room and, if it comes back locked with status 201,
// unlocks it with an instant configuration), waits until every occupant
// has its self-presence, and runs a fixed phase offering MUCRate room
// messages/s spread over the rooms and their occupants, and a saturating
// phase with Window messages (default 1) in flight per occupant, each
// refilled when the room echoes it back. Every message is expected at
// every occupant of its room, the sender included: deliveries per second,
// latency and CPU are per delivery.
//
// With BigRoom > 0 it then joins BigRoom sessions (accounts 0 …
// BigRoom−1, logging in those still missing) to one more room and offers
// BigRoomRate messages/s there: the responsiveness of a large room.
//
// Rooms are named after a random per-run tag, so every run creates its
// own. The error wraps ErrNoMUC when no room could be joined at all.
func RunMUC(ctx context.Context, cfg Config) (Result, error) {
	window := cfg.Window
	if err := cfg.setDefaults(); err != nil {
		return Result{}, err
	}
	if err := cfg.setMUCDefaults(); err != nil {
		return Result{}, err
	}
	if window <= 0 {
		cfg.Window = 1 // each message in flight is Occupants deliveries
	}
	r := newRunner(cfg)
	var res Result

	var rss0 int64
	if cfg.ServerPID > 0 {
		v, err := procRSS(cfg.ServerPID)
		if err != nil {
			return res, err
		}
		rss0 = v
	}
	small := cfg.Rooms * cfg.Occupants
	first := small
	if first == 0 {
		first = cfg.BigRoom
	}
	all, _ := r.loginRange(ctx, 0, first, &res) // failures are counted in res
	defer func() { r.closeAll(all) }()
	if err := ctx.Err(); err != nil {
		return res, fmt.Errorf("loadgen: logins: %w", err)
	}
	if len(all) == 0 {
		return res, fmt.Errorf("loadgen: all %d logins failed", first)
	}
	if err := r.settle(ctx, all); err != nil {
		return res, err
	}
	if cfg.ServerPID > 0 {
		rss1, err := procRSS(cfg.ServerPID)
		if err != nil {
			return res, err
		}
		res.MemPerConnKiB = float64(rss1-rss0) / 1024 / float64(len(all))
	}

	if cfg.Rooms > 0 {
		groups := make([][]*session, cfg.Rooms)
		for _, s := range all {
			if s.idx < small {
				groups[s.idx/cfg.Occupants] = append(groups[s.idx/cfg.Occupants], s)
			}
		}
		rooms := make([]string, cfg.Rooms)
		for i := range rooms {
			rooms[i] = fmt.Sprintf("%s-room%d@%s", r.run, i, cfg.MUCDomain)
		}
		set, senders, err := r.joinRooms(ctx, fmt.Sprintf("%d rooms × %d", cfg.Rooms, cfg.Occupants), cfg.Occupants, rooms, groups)
		res.RoomSets = append(res.RoomSets, set)
		if err != nil {
			return res, err
		}
		if err := r.settle(ctx, all); err != nil {
			return res, err
		}
		if cfg.MUCRate > 0 {
			p, err := r.runPhase(ctx, phaseSpec{name: fmt.Sprintf("rooms fixed %d/s", cfg.MUCRate), rooms: set.Name, rate: cfg.MUCRate},
				senders, len(res.Phases)+1)
			if err != nil {
				return res, err
			}
			res.Phases = append(res.Phases, p)
		}
		if cfg.Saturate {
			p, err := r.runPhase(ctx, phaseSpec{name: "rooms saturating", rooms: set.Name, saturate: true}, senders, len(res.Phases)+1)
			if err != nil {
				return res, err
			}
			res.Phases = append(res.Phases, p)
		}
	}

	if cfg.BigRoom > 0 {
		if cfg.BigRoom > first {
			more, _ := r.loginRange(ctx, first, cfg.BigRoom, &res)
			all = append(all, more...)
			if err := ctx.Err(); err != nil {
				return res, fmt.Errorf("loadgen: logins: %w", err)
			}
			if err := r.settle(ctx, more); err != nil {
				return res, err
			}
		}
		var members []*session
		for _, s := range all {
			if s.idx < cfg.BigRoom {
				members = append(members, s)
			}
		}
		room := fmt.Sprintf("%s-big@%s", r.run, cfg.MUCDomain)
		set, senders, err := r.joinRooms(ctx, fmt.Sprintf("big room × %d", cfg.BigRoom), cfg.BigRoom, []string{room}, [][]*session{members})
		res.RoomSets = append(res.RoomSets, set)
		if err != nil {
			return res, err
		}
		if err := r.settle(ctx, members); err != nil {
			return res, err
		}
		p, err := r.runPhase(ctx, phaseSpec{name: fmt.Sprintf("big room fixed %d/s", cfg.BigRoomRate), rooms: set.Name, rate: cfg.BigRoomRate},
			senders, len(res.Phases)+1)
		if err != nil {
			return res, err
		}
		res.Phases = append(res.Phases, p)
	}
	return res, nil
}

// join sends s's join request for room; it completes in s's reader.
func (r *runner) join(s *session, room string) *membership {
	m := newMembership(room, s.user)
	s.muc.Store(m)
	b := make([]byte, 0, 160)
	b = append(b, "<presence to='"...)
	b = append(b, escAttr(room+"/"+s.user)...)
	b = append(b, "'><x xmlns='"+nsMUC+"'><history maxstanzas='0'/></x></presence>"...)
	s.enqueueRaw(b)
	return m
}

// joinRooms joins groups[i] to rooms[i]: first each room's creator, whose
// room is unlocked with an instant configuration when it comes back
// locked, then everybody else at once. It sets each joined session's
// message prefix and fan-out, and returns the joined sessions interleaved
// across rooms, so that round-robin sending spreads over rooms.
func (r *runner) joinRooms(ctx context.Context, name string, occupants int, rooms []string, groups [][]*session) (RoomSet, []*session, error) {
	set := RoomSet{Name: name, Rooms: len(rooms), Occupants: occupants}
	for _, g := range groups {
		set.Sessions += len(g)
	}
	start := time.Now()
	r.logf("%s: joining %d sessions", name, set.Sessions)

	var creators []*session
	for i, g := range groups {
		if len(g) > 0 {
			r.join(g[0], rooms[i])
			creators = append(creators, g[0])
		}
	}
	if err := r.waitJoins(ctx, creators, mucAnswerTimeout, mucAnswerTimeout); err != nil {
		return set, nil, err
	}
	var firstErr string
	ok := 0
	for _, c := range creators {
		m := c.muc.Load()
		if m.completed() && m.joined {
			ok++
		} else if firstErr == "" {
			firstErr = joinErr(m)
		}
	}
	if ok == 0 {
		return set, nil, fmt.Errorf("loadgen: %s: %w at %s: %s", name, ErrNoMUC, r.cfg.MUCDomain, firstErr)
	}

	// Unlock rooms created locked (XEP-0045 §10.1.2: an empty submitted
	// form accepts the default configuration, an "instant room").
	var cfgWait []*membership
	for _, c := range creators {
		m := c.muc.Load()
		if !m.completed() || !m.joined || !m.created {
			continue
		}
		set.Created++
		c.enqueueRaw([]byte("<iq type='set' id='" + cfgID + "' to='" + escAttr(m.room) + "'><query xmlns='" + nsMUCOwner +
			"'><x xmlns='jabber:x:data' type='submit'/></query></iq>"))
		cfgWait = append(cfgWait, m)
	}
	deadline := time.NewTimer(mucAnswerTimeout)
	defer deadline.Stop()
	for _, m := range cfgWait {
		select {
		case <-m.cfgDone:
			if m.cfgErr != "" {
				r.logErr("%s: configuring %s as an instant room: %s", name, m.room, m.cfgErr)
			}
		case <-deadline.C:
			r.logErr("%s: no answer to configuring %s within %v", name, m.room, mucAnswerTimeout)
		case <-ctx.Done():
			return set, nil, ctx.Err()
		}
	}

	var others []*session
	for i, g := range groups {
		if len(g) == 0 {
			continue
		}
		if m := g[0].muc.Load(); !m.completed() || !m.joined {
			continue // the room does not exist: its others count as not joined
		}
		for _, s := range g[1:] {
			r.join(s, rooms[i])
			others = append(others, s)
		}
	}
	if err := r.waitJoins(ctx, others, mucJoinStall, mucJoinMax); err != nil {
		return set, nil, err
	}
	set.JoinTime = time.Since(start)

	// Tally, and make the joined sessions senders to their rooms.
	var joined [][]*session
	for i, g := range groups {
		var in []*session
		for _, s := range g {
			m := s.muc.Load()
			if m != nil && m.room == rooms[i] && m.completed() && m.joined {
				in = append(in, s)
			} else {
				set.NotJoined++
				if m != nil && m.room == rooms[i] {
					r.logErr("%s: %s joining %s: %s", name, s.user, rooms[i], joinErr(m))
				} else {
					r.logErr("%s: %s did not try %s: its creator could not join", name, s.user, rooms[i])
				}
			}
		}
		prefix := []byte("<message type='groupchat' to='" + escAttr(rooms[i]) + "' id='")
		for _, s := range in {
			s.mu.Lock()
			s.prefix = prefix
			s.mu.Unlock()
			s.fanout.Store(int64(len(in)))
		}
		set.Joined += len(in)
		joined = append(joined, in)
	}
	r.logf("%s: %d of %d sessions joined in %v, %d rooms created",
		name, set.Joined, set.Sessions, set.JoinTime.Round(time.Millisecond), set.Created)
	if set.Joined == 0 {
		return set, nil, fmt.Errorf("loadgen: %s: no session joined", name)
	}
	var senders []*session
	for j := 0; ; j++ {
		added := false
		for _, in := range joined {
			if j < len(in) {
				senders = append(senders, in[j])
				added = true
			}
		}
		if !added {
			return set, senders, nil
		}
	}
}

func joinErr(m *membership) string {
	if !m.completed() {
		return "no self-presence (status 110) received"
	}
	return m.err
}

// waitJoins waits until every session's pending join completed (or its
// stream died). It gives up, leaving the rest pending, after stall without
// progress, or after limit. Progress is a completed join, traffic to those
// sessions, or (with ServerPID) the server busy on at least a fifth of a
// core: a single-threaded server may work through a burst of joins to a
// big room for a long time before it writes anything.
func (r *runner) waitJoins(ctx context.Context, sessions []*session, stall, limit time.Duration) error {
	begin := time.Now()
	lastDone, lastIn := -1, int64(-1)
	lastChange := begin
	var lastCPU time.Duration
	lastSample := begin
	if r.cfg.ServerPID > 0 {
		lastCPU, _ = ProcCPU(r.cfg.ServerPID)
	}
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		done := 0
		var in int64
		for _, s := range sessions {
			if s.dead.Load() || s.muc.Load().completed() {
				done++
			}
			in += s.inbound.Load()
		}
		now := time.Now()
		if done == len(sessions) {
			return nil
		}
		if done != lastDone || in != lastIn {
			lastDone, lastIn, lastChange = done, in, now
		}
		if r.cfg.ServerPID > 0 && now.Sub(lastSample) >= time.Second {
			if cpu, err := ProcCPU(r.cfg.ServerPID); err == nil {
				if (cpu-lastCPU)*5 >= now.Sub(lastSample) {
					lastChange = now
				}
				lastCPU = cpu
			}
			lastSample = now
		}
		if now.Sub(lastChange) >= stall || now.Sub(begin) >= limit {
			r.logf("%d of %d joins still unanswered after %v", len(sessions)-done, len(sessions), now.Sub(begin).Round(time.Millisecond))
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("loadgen: joining rooms: %w", ctx.Err())
		case <-tick.C:
		}
	}
}
