package muc

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aldis-im/aldis/core/label"
	"github.com/aldis-im/aldis/core/store"
	"github.com/aldis-im/aldis/xmppcore/jid"
	"github.com/aldis-im/aldis/xmppcore/stanza"
	"github.com/aldis-im/aldis/xmppcore/wire"
)

type evKind uint8

const (
	evStanza evKind = iota
	evShutdown
	evFed // a federation timer or link state change: fed
)

// event is a stanza for a room (st is read-only: copy before changing it).
type event struct {
	kind     evKind
	st       *wire.Element
	from, to jid.JID
	fed      fedEvent
	fedOK    bool // a join the federated room accepted (or could not be asked)
	gwOK     bool // a join the room's gateway accepted (or did not answer)
}

// roomInfo is what a room publishes for the service's disco#items, which
// runs on other goroutines than the room's.
type roomInfo struct {
	jid    jid.JID
	name   string
	public bool
}

// room is one chat room. The fields below the inbox belong to the goroutine
// running the inbox (at most one at a time, see run).
type room struct {
	s   *Service
	jid jid.JID

	mu      sync.Mutex
	q       []event
	spare   []event
	running bool
	gone    bool // out of the registry: nothing more is queued

	info atomic.Pointer[roomInfo]

	exists    bool // false until the creating join is handled
	locked    bool // created and not yet configured (XEP-0045 §10.1.1)
	destroyed bool
	conf      roomConfig
	affs      map[jid.JID]affEntry
	occupants map[string]*occupant  // by folded nick
	order     []*occupant           // the same, in join order: broadcasts go in that order
	sessions  map[jid.JID]*occupant // by the real full JID of each session
	subject   subject
	hist      history
	histLoad  bool                 // loaded from the store: fill hist from the archive at the first join
	iqs       map[string]pendingIQ // iqs forwarded between occupants, by the id we gave them
	gwAsks    map[string]gwAsk     // joins and subject changes waiting for the room's gateway, by question id
	// With security labels on: the room label (the default of unlabelled
	// messages) and the room clearance (the labels it admits); see labels.go.
	lab    *label.Label
	clr    *label.Clearance
	labSet *label.Set // the policies lab and clr were read under
	// Federation (fmuc.go): the room this one joined, the rooms that
	// joined this one, and the origin-ids of messages seen.
	up        *fedPeer
	downs     map[jid.JID]*fedPeer
	seen      *originLRU
	fedActive atomic.Bool // has peers: link state changes concern it
}

type affEntry struct {
	aff    affiliation
	reason string
}

type subject struct {
	Text  string    `json:"text"`
	By    string    `json:"by,omitempty"` // the setter's nick; empty: the room
	Stamp time.Time `json:"stamp"`
	Set   bool      `json:"set"`
}

func newRoom(s *Service, j jid.JID) *room {
	r := &room{s: s, jid: j, affs: map[jid.JID]affEntry{}, occupants: map[string]*occupant{},
		sessions: map[jid.JID]*occupant{}, iqs: map[string]pendingIQ{}}
	r.conf = defaultConfig(s.cfg.MaxOccupants)
	r.hist.max = s.cfg.History
	r.setupLabels()
	r.fedInit()
	return r
}

// post queues ev; false means the queue is full and ev was dropped.
// Shutdown and departures (unavailable presence, errors) are always taken:
// dropping them would leave ghosts in the room. The caller holds s.mu.
func (r *room) post(ev event) bool {
	r.mu.Lock()
	if r.gone {
		r.mu.Unlock()
		return true // a retired room has no one to tell; the stanza is dropped
	}
	if len(r.q) >= r.s.cfg.QueueLimit && ev.kind == evStanza {
		if t := ev.st.Attr("type"); t != "unavailable" && t != "error" {
			r.mu.Unlock()
			return false
		}
	}
	r.q = append(r.q, ev)
	start := !r.running
	if start {
		r.running = true
		r.s.wg.Add(1)
	}
	r.mu.Unlock()
	if start {
		go r.run()
	}
	return true
}

// run handles the inbox until it is empty, then retires the room if it is
// temporary and empty. A room with nothing to do holds no goroutine.
func (r *room) run() {
	defer r.s.wg.Done()
	for {
		r.mu.Lock()
		if len(r.q) == 0 {
			if r.disposable() {
				r.mu.Unlock()
				if r.s.retire(r) {
					return
				}
				continue // something arrived meanwhile
			}
			r.running = false
			r.mu.Unlock()
			return
		}
		batch := r.q
		r.q = r.spare[:0]
		r.mu.Unlock()
		for i := range batch {
			r.handle(batch[i])
			batch[i] = event{}
		}
		r.spare = batch[:0]
	}
}

// disposable reports whether the room can go: never created, destroyed, or
// temporary and empty.
func (r *room) disposable() bool {
	return !r.exists || r.destroyed || (r.empty() && !r.conf.Persistent)
}

// empty reports whether the room has no occupants and no join waiting
// for a federated room's answer.
func (r *room) empty() bool {
	return len(r.occupants) == 0 && (r.up == nil || len(r.up.pending) == 0)
}

func (r *room) handle(ev event) {
	if ev.kind == evShutdown {
		r.shutdown()
		return
	}
	if ev.kind == evFed {
		r.handleFed(ev.fed)
		return
	}
	if r.exists && !r.destroyed && r.empty() && !r.conf.Persistent {
		// A temporary room ends with its last occupant, even if this
		// goroutine has not retired it yet: what follows finds no room,
		// and a join creates a new one.
		r.reset()
	}
	if r.fedInbound(ev) {
		return
	}
	if r.destroyed || (!r.exists && !isJoin(ev.st)) {
		r.s.noRoom(ev)
		return
	}
	if g := r.s.cfg.Labels; g != nil && r.labSet != g.Policies() {
		r.setupLabels() // the policy was reloaded
	}
	switch ev.st.Local() {
	case "presence":
		r.presence(ev)
	case "message":
		r.message(ev)
	case "iq":
		r.iq(ev)
	}
}

// reset makes the room as new, not yet created.
func (r *room) reset() {
	r.exists, r.locked = false, false
	r.conf = defaultConfig(r.s.cfg.MaxOccupants)
	clear(r.affs)
	clear(r.iqs)
	r.subject = subject{}
	r.hist = history{max: r.s.cfg.History}
	r.downs = nil
	r.fedActive.Store(false)
	r.fedInit()
	r.publish()
}

// publish updates the snapshot the service's disco#items reads.
func (r *room) publish() {
	if !r.exists || r.destroyed {
		r.info.Store(nil)
		return
	}
	r.info.Store(&roomInfo{jid: r.jid, name: r.conf.Name, public: r.conf.Public && !r.locked})
}

// occJID is the occupant JID room@service/nick.
func (r *room) occJID(nick string) jid.JID {
	j, err := r.jid.WithResource(nick)
	if err != nil {
		return r.jid // nicks come from parsed JIDs, so this does not happen
	}
	return j
}

func (r *room) deliver(st *wire.Element, from, to jid.JID) { r.s.deliver(st, from, to) }

func (r *room) refuse(ev event, typ, cond, text string) { r.s.refuse(ev, typ, cond, text) }

func (r *room) now() time.Time { return r.s.cfg.Now() }

// affiliationOf returns the affiliation of a user: that of the bare JID, or
// outcast when the user's whole domain is banned.
func (r *room) affiliationOf(user jid.JID) affiliation {
	if e, ok := r.affs[user.Bare()]; ok {
		return e.aff
	}
	if d, err := jid.New("", user.Domain(), ""); err == nil {
		if e, ok := r.affs[d]; ok && e.aff == affOutcast {
			return affOutcast
		}
	}
	return affNone
}

func (r *room) owners() int {
	n := 0
	for _, e := range r.affs {
		if e.aff == affOwner {
			n++
		}
	}
	return n
}

// fold is the key that makes two nicks the same nick: case is ignored, so
// "Hag" cannot pose as "hag".
func fold(nick string) string { return strings.ToLower(nick) }

// --- persistence ---

// save stores the configuration and subject of a persistent room.
func (r *room) save() {
	if !r.conf.Persistent || r.s.cfg.Store == nil || !r.exists || r.destroyed {
		return
	}
	conf, err := json.Marshal(r.conf)
	if err == nil {
		var subj []byte
		subj, err = json.Marshal(r.subject)
		if err == nil {
			err = r.s.cfg.Store.PutRoom(r.s.ctx, store.Room{JID: r.jid.String(), Config: string(conf), Subject: string(subj)})
		}
	}
	if err != nil {
		r.s.log.Error("save room", "room", r.jid.String(), "err", err)
	}
}

// saveAll stores a room that has just become persistent, affiliations included.
func (r *room) saveAll() {
	r.save()
	for j, e := range r.affs {
		r.saveAff(j, e)
	}
}

func (r *room) saveAff(user jid.JID, e affEntry) {
	if !r.conf.Persistent || r.s.cfg.Store == nil || !r.exists || r.destroyed {
		return
	}
	err := r.s.cfg.Store.SetRoomAffiliation(r.s.ctx, r.jid.String(),
		store.RoomAffiliation{JID: user.String(), Affiliation: e.aff.String(), Reason: e.reason})
	if err != nil {
		r.s.log.Error("save room affiliation", "room", r.jid.String(), "jid", user.String(), "err", err)
	}
}

// unsave removes a room from the store.
func (r *room) unsave() {
	if r.s.cfg.Store == nil {
		return
	}
	// The store deletes the room's archive with it; queued messages first.
	if f, ok := r.s.cfg.Archive.(ArchiveFlusher); ok {
		if err := f.Flush(r.s.ctx); err != nil {
			r.s.log.Error("flush room archive", "room", r.jid.String(), "err", err)
		}
	}
	if err := r.s.cfg.Store.DeleteRoom(r.s.ctx, r.jid.String()); err != nil && !errors.Is(err, store.ErrNotFound) {
		r.s.log.Error("delete stored room", "room", r.jid.String(), "err", err)
	}
}

// restore fills a room from its stored form.
func (r *room) restore(sr store.Room, affs []store.RoomAffiliation) error {
	if err := json.Unmarshal([]byte(sr.Config), &r.conf); err != nil {
		return fmt.Errorf("config: %w", err)
	}
	r.conf.Persistent = true
	r.conf.normalise(r.s.cfg.MaxOccupants)
	if sr.Subject != "" {
		if err := json.Unmarshal([]byte(sr.Subject), &r.subject); err != nil {
			return fmt.Errorf("subject: %w", err)
		}
	}
	for _, a := range affs {
		j, err := jid.Parse(a.JID)
		if err != nil {
			r.s.log.Error("stored affiliation has an invalid JID; skipped", "room", sr.JID, "jid", a.JID)
			continue
		}
		aff, ok := parseAffiliation(a.Affiliation)
		if !ok || aff == affNone {
			continue
		}
		r.affs[j] = affEntry{aff: aff, reason: a.Reason}
	}
	r.exists = true
	r.histLoad = true
	r.setupLabels()
	r.publish()
	return nil
}

// shutdown tells every occupant the service is going away (status 332).
func (r *room) shutdown() {
	for _, o := range r.occupants {
		for _, sj := range o.sessions {
			p := r.presenceOf(o, presOpts{unavailable: true, self: true, withJID: true, codes: []string{"332"}})
			r.deliver(p.WithAttr("to", sj.String()), r.occJID(o.nick), sj)
		}
		r.s.occupants.Add(-1)
	}
	clear(r.occupants)
	clear(r.sessions)
}

// errorCondition returns the defined condition of a stanza error, or "".
func errorCondition(st *wire.Element) string {
	er := st.Child("error", "")
	if er == nil {
		return ""
	}
	for c := range er.Elements() {
		if c.Space == stanza.NSStanzaErr && c.Local() != "text" {
			return c.Local()
		}
	}
	return ""
}
