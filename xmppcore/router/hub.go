package router

import (
	"context"
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aldis-im/aldis/core/store"
	"github.com/aldis-im/aldis/xmppcore/jid"
	"github.com/aldis-im/aldis/xmppcore/wire"
)

// inboxLimit is how many events a hub queues before session readers posting
// to it wait; hubs posting to each other never wait.
const inboxLimit = 512

type evKind uint8

const (
	evBind evKind = iota + 1
	evUnbind
	evFromSession // a stanza one of the user's own sessions sent
	evDeliver     // a stanza addressed to the user (or one of the user's resources)
	evIdle        // the idle timer fired
	evSent        // a session sent a message to someone else: carbon copies
	evCaps        // the features of a caps version were learnt
	evToService   // a session sent a stanza to a service: forwarded in order
	evForward     // a session sent a stanza to a user while its hub was busy
)

type event struct {
	kind    evKind
	binding *Binding
	st      *wire.Element // read-only once posted: receivers copy before changing it
	raw     []byte        // evDeliver: st addressed to to and serialised (DeliverRaw; st has no to), or nil
	from    jid.JID
	to      jid.JID
	done    chan struct{}
	capsVer string          // evCaps
	feats   map[string]bool // evCaps
}

// sess is the hub's view of one bound session.
type sess struct {
	b               *Binding
	available       bool     // has sent initial presence
	interested      bool     // has requested the roster, so receives roster pushes
	blockInterested bool     // has requested the blocklist, so receives blocking pushes
	carbons         bool     // has enabled message carbons (XEP-0280)
	res             resource // entity capabilities, for PEP notifications
	priority        int
	presence        *wire.Element // last presence broadcast, from the full JID
	directed        map[jid.JID]struct{}
}

type blockSet map[jid.JID]struct{}

// hub owns one user's state; only its run goroutine touches the fields below
// the mutex-guarded inbox.
type hub struct {
	r    *Router
	bare jid.JID
	refs atomic.Int32
	// blocked is published for the user's own session readers (outbound checks).
	blocked atomic.Pointer[blockSet]
	// carbonSessions counts sessions with carbons on, so readers post sent
	// copies only when someone wants them.
	carbonSessions atomic.Int32

	mu      sync.Mutex
	q       []event
	spare   []event
	stopped bool
	running bool // a goroutine is handling the inbox
	notFull *sync.Cond

	ctx          context.Context
	loaded       bool
	idleArmed    bool // an evIdle is scheduled
	active       bool // an event other than evIdle arrived since the last one
	exists       bool
	sessions     []*sess
	roster       map[jid.JID]*store.RosterItem
	rosterVer    int64
	rosterLoaded bool
	pep          map[string]*pepNode   // nil until loaded
	contacts     map[jid.JID]*resource // contacts' available resources with caps
}

func newHub(r *Router, bare jid.JID) *hub {
	h := &hub{r: r, bare: bare, ctx: r.ctx}
	h.notFull = sync.NewCond(&h.mu)
	return h
}

// post queues an event and starts the hub's goroutine if it is not running:
// a hub with nothing to do holds no goroutine.
func (h *hub) post(ev event, wait bool) {
	h.mu.Lock()
	for wait && len(h.q) >= inboxLimit && !h.stopped {
		h.notFull.Wait()
	}
	if h.stopped {
		h.mu.Unlock()
		if ev.done != nil {
			close(ev.done)
		}
		return
	}
	h.q = append(h.q, ev)
	start := !h.running
	if start {
		h.running = true
		h.r.wg.Add(1)
	}
	h.mu.Unlock()
	if start {
		go h.run()
	}
}

// postRaw takes a room's broadcast (DeliverRaw). A hub with no goroutine
// and nothing queued is claimed by the caller as if its goroutine had
// started (running), so its state still has one owner at a time and
// nothing posted meanwhile overtakes the delivery; the common case, bytes
// handed to one of the user's sessions, then costs no goroutine per
// occupant. Whatever needs more (a bounce, a label to audit or rewrite, an
// account to look up in the store) goes to the hub's goroutine, ahead of
// what was posted meanwhile, so the room's goroutine never waits for the
// store. A busy hub gets the event posted as usual.
func (h *hub) postRaw(st *wire.Element, raw []byte, from, to jid.JID) {
	if !h.claim() {
		h.postDeliver(st, raw, from, to, false)
		return
	}
	done := h.deliverRaw(st, raw, from, to)
	if done {
		h.active = true
		h.armIdle()
	} else {
		h.postDeliver(st, raw, from, to, true)
	}
	h.unclaim()
}

// claim makes the caller the hub's owner, as its goroutine would be, if
// the hub is idle: no goroutine, nothing queued, its account loaded.
// Drain and Close see a claimed hub as busy; no wait group count is needed
// for work that ends before the claimer returns.
func (h *hub) claim() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.running || h.stopped || len(h.q) > 0 || !h.loaded {
		return false
	}
	h.running = true
	return true
}

// unclaim ends a claim: the hub's goroutine takes over what was posted
// meanwhile, if anything was.
func (h *hub) unclaim() {
	h.mu.Lock()
	if len(h.q) > 0 {
		// Not stopped: stop empties the inbox and refuses posts.
		h.r.wg.Add(1)
		h.mu.Unlock()
		go h.run()
		return
	}
	h.running = false
	h.mu.Unlock()
}

// postDeliver posts a delivery; first, by the hub's claimer, puts it
// ahead of whatever was posted meanwhile. (Building the event here, not in
// postRaw, keeps it off the stack of every delivery on a room's goroutine.)
func (h *hub) postDeliver(st *wire.Element, raw []byte, from, to jid.JID, first bool) {
	ev := event{kind: evDeliver, st: st, raw: raw, from: from, to: to}
	if !first {
		h.post(ev, false)
		return
	}
	h.mu.Lock()
	if !h.stopped {
		h.q = slices.Insert(h.q, 0, ev)
	}
	h.mu.Unlock()
}

func (h *hub) busyOrPending() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.running || len(h.q) > 0
}

func (h *hub) pending() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.q)
}

func (h *hub) blocks(j jid.JID) bool {
	p := h.blocked.Load()
	if p == nil {
		return false
	}
	return matchBlock(*p, j)
}

// matchBlock applies XEP-0191 JID matching: a blocked domain covers all its
// users, a blocked bare JID all its resources.
func matchBlock(s blockSet, j jid.JID) bool {
	if len(s) == 0 {
		return false
	}
	if _, ok := s[j]; ok {
		return true
	}
	if _, ok := s[j.Bare()]; ok {
		return true
	}
	d, _ := jid.New("", j.Domain(), "")
	if _, ok := s[d]; ok {
		return true
	}
	if r := j.Resource(); r != "" {
		if dr, err := jid.New("", j.Domain(), r); err == nil {
			if _, ok := s[dr]; ok {
				return true
			}
		}
	}
	return false
}

// run handles the inbox until it is empty; only one run is active per hub
// at a time, so the state below the inbox has a single owner.
func (h *hub) run() {
	defer h.r.wg.Done()
	if !h.loaded {
		h.load()
		h.loaded = true
	}
	for {
		h.mu.Lock()
		if len(h.q) == 0 {
			h.running = false
			h.mu.Unlock()
			return
		}
		// Swap only a non-empty inbox, so q and spare never share an array.
		batch := h.q
		h.q = h.spare[:0]
		h.notFull.Broadcast()
		h.mu.Unlock()
		for i := range batch {
			h.handle(batch[i])
			batch[i] = event{}
		}
		h.spare = batch[:0]
		h.armIdle()
	}
}

// armIdle schedules the idle check of a hub left without sessions.
func (h *hub) armIdle() {
	if len(h.sessions) == 0 && !h.idleArmed {
		h.idleArmed = true
		time.AfterFunc(h.r.cfg.HubIdle, func() { h.post(event{kind: evIdle}, false) })
	}
}

// idle retires a hub with no sessions that saw nothing for a whole idle
// period; it keeps a hub that was active, re-arming the timer.
func (h *hub) idle() {
	h.idleArmed = false
	if len(h.sessions) > 0 {
		return
	}
	if h.active {
		h.active = false
		h.idleArmed = true
		time.AfterFunc(h.r.cfg.HubIdle, func() { h.post(event{kind: evIdle}, false) })
		return
	}
	if h.r.tryRetire(h) {
		h.stop()
	}
}

// stop refuses further events and releases any waiters.
func (h *hub) stop() {
	h.mu.Lock()
	h.stopped = true
	q := h.q
	h.q = nil
	h.notFull.Broadcast()
	h.mu.Unlock()
	for _, ev := range q {
		if ev.done != nil {
			close(ev.done)
		}
	}
}

// load reads what every event needs: whether the account exists and its blocklist.
func (h *hub) load() {
	ok, err := h.r.cfg.Accounts.Exists(h.ctx, h.bare)
	if err != nil {
		h.r.log.Error("load account", "user", h.bare.String(), "err", err)
	}
	h.exists = ok
	if !ok {
		return
	}
	l, err := h.r.cfg.Store.BlockList(h.ctx, h.bare.String())
	if err != nil {
		h.r.log.Error("load blocklist", "user", h.bare.String(), "err", err)
	}
	h.publishBlocks(l)
}

func (h *hub) publishBlocks(l []string) {
	s := make(blockSet, len(l))
	for _, v := range l {
		if j, err := jid.Parse(v); err == nil {
			s[j] = struct{}{}
		}
	}
	h.blocked.Store(&s)
}

// loadRoster fills the roster cache on first use.
func (h *hub) loadRoster() error {
	if h.rosterLoaded {
		return nil
	}
	items, ver, err := h.r.cfg.Store.Roster(h.ctx, h.bare.String())
	if err != nil {
		return err
	}
	h.roster = make(map[jid.JID]*store.RosterItem, len(items))
	for i := range items {
		j, err := jid.Parse(items[i].Contact)
		if err != nil {
			continue
		}
		h.roster[j] = &items[i]
	}
	h.rosterVer = ver
	h.rosterLoaded = true
	return nil
}

func (h *hub) handle(ev event) {
	if ev.kind == evIdle {
		h.idle()
		return
	}
	h.active = true
	switch ev.kind {
	case evBind:
		h.bind(ev.binding)
		close(ev.done)
	case evUnbind:
		h.unbind(ev.binding)
	case evToService:
		s := h.find(ev.binding)
		if s == nil {
			return
		}
		if ev.st.Local() == "presence" {
			h.outboundPresence(s, ev.st, ev.to)
			return
		}
		h.r.route(ev.st, s.b.jid, ev.to)
	case evForward:
		h.r.route(ev.st, ev.binding.jid, ev.to)
	case evCaps:
		h.capsLearnt(ev.from, ev.capsVer, ev.feats)
	case evSent:
		h.carbonCopies(ev.st, "sent", func(s *sess) bool { return s.b == ev.binding })
	case evFromSession:
		s := h.find(ev.binding)
		if s == nil {
			return // the session was replaced or has gone
		}
		switch ev.st.Local() {
		case "presence":
			h.outboundPresence(s, ev.st, ev.to)
		case "iq":
			h.accountIQ(s, ev.st)
		}
	case evDeliver:
		if !h.exists {
			// The account may have been created since the hub started.
			if ok, err := h.r.cfg.Accounts.Exists(h.ctx, h.bare); err == nil && ok {
				h.load()
			}
		}
		switch ev.st.Local() {
		case "message":
			if ev.raw == nil {
				h.deliverMessage(ev.st, nil, ev.from, ev.to)
			} else if !h.deliverRaw(ev.st, ev.raw, ev.from, ev.to) {
				h.deliverMessage(ev.st.WithAttr("to", ev.to.String()), ev.raw, ev.from, ev.to)
			}
		case "presence":
			h.inboundPresence(ev.st, ev.from, ev.to)
		case "iq":
			h.deliverIQ(ev.st, ev.from, ev.to)
		}
	}
}

func (h *hub) find(b *Binding) *sess {
	for _, s := range h.sessions {
		if s.b == b {
			return s
		}
	}
	return nil
}

func (h *hub) byResource(res string) *sess {
	for _, s := range h.sessions {
		if s.b.jid.Resource() == res {
			return s
		}
	}
	return nil
}

func (h *hub) bind(b *Binding) {
	if old := h.byResource(b.jid.Resource()); old != nil {
		h.removeSession(old)
		old.b.sess.Close("conflict", "replaced by a new session for the same resource")
	}
	h.sessions = append(h.sessions, &sess{b: b})
}

func (h *hub) unbind(b *Binding) {
	if s := h.find(b); s != nil {
		h.removeSession(s)
	}
}

// removeSession drops s, telling contacts it went unavailable.
func (h *hub) removeSession(s *sess) {
	u := wire.New("presence", "")
	u.SetAttr("from", s.b.jid.String())
	u.SetAttr("type", "unavailable")
	if s.available {
		h.broadcastPresence(s, u)
	} else {
		// Rooms joined before initial presence still hear the session go.
		for d := range s.directed {
			h.r.route(withTo(u, d), s.b.jid, d)
		}
	}
	if s.carbons {
		h.carbonSessions.Add(-1)
	}
	for i, x := range h.sessions {
		if x == s {
			h.sessions = append(h.sessions[:i], h.sessions[i+1:]...)
			break
		}
	}
}

// send queues bytes to a session and reports success.
func (h *hub) send(s *sess, b []byte) bool {
	if s.b.sess.Send(b) {
		// Top-level stanzas are serialised unprefixed: b[1] tells the kind.
		switch b[1] {
		case 'm':
			h.r.delivered[0].Inc()
		case 'p':
			h.r.delivered[1].Inc()
		case 'i':
			h.r.delivered[2].Inc()
		}
		return true
	}
	return false
}

func isNotFound(err error) bool { return errors.Is(err, store.ErrNotFound) }
