// Package muc is the XEP-0045 multi-user chat service, with one goroutine per busy room owning its state.
//
// The service receives every stanza for its domain through Route, which
// never blocks: it appends the stanza to the queue of the room it is for
// (starting the room's goroutine if it has none) and returns. A room's
// goroutine handles its queue until it is empty, so only one goroutine at a
// time touches a room's occupants, affiliations, configuration and history,
// and they need no locks. What the room sends goes out through the router's
// Deliver, which never blocks either: a slow occupant never stalls a room.
package muc

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aldis-im/aldis/core/obs"
	"github.com/aldis-im/aldis/core/store"
	"github.com/aldis-im/aldis/xmppcore/jid"
	"github.com/aldis-im/aldis/xmppcore/seclabel"
	"github.com/aldis-im/aldis/xmppcore/stanza"
	"github.com/aldis-im/aldis/xmppcore/wire"
)

// Namespaces of XEP-0045 and the extensions the service implements.
const (
	NS           = "http://jabber.org/protocol/muc"
	NSUser       = NS + "#user"
	NSAdmin      = NS + "#admin"
	NSOwner      = NS + "#owner"
	NSRequest    = NS + "#request"
	NSRoomConfig = NS + "#roomconfig"
	NSRoomInfo   = NS + "#roominfo"
	NSStableID   = NS + "#stable_id"
	NSSelfPing   = NS + "#self-ping-optimization" // XEP-0410 §3.3
	NSData       = "jabber:x:data"
	NSMAM        = "urn:xmpp:mam:2" // XEP-0313 archives of rooms
	NSSID        = "urn:xmpp:sid:0" // XEP-0359 stanza-id
	NSRSM        = "http://jabber.org/protocol/rsm"
)

// Deliverer sends a stanza the service produced to its recipient without
// blocking; *router.Router implements it.
type Deliverer interface {
	Deliver(st *wire.Element, from, to jid.JID)
}

// RawDeliverer is what a Deliverer may also do: take a stanza already
// serialised, so a broadcast is written once per room, not per occupant.
// st has no to and is the same element for every recipient; raw is st
// addressed to to.
type RawDeliverer interface {
	DeliverRaw(st *wire.Element, raw []byte, from, to jid.JID)
}

// Store is the part of store.Store that keeps persistent rooms.
type Store interface {
	PutRoom(ctx context.Context, r store.Room) error
	DeleteRoom(ctx context.Context, room string) error
	Rooms(ctx context.Context, domain string) ([]store.Room, error)
	SetRoomAffiliation(ctx context.Context, room string, a store.RoomAffiliation) error
	RoomAffiliations(ctx context.Context, room string) ([]store.RoomAffiliation, error)
}

// Archive keeps the message archives of rooms (XEP-0313 §5); *mam.Archiver
// implements it.
type Archive interface {
	// RecordRoom archives a groupchat message as reflected (from the
	// occupant JID) and returns its archive id, or "" if it was not archived.
	RecordRoom(room jid.JID, st *wire.Element) string
	// HandleRoomIQ answers a urn:xmpp:mam:2 iq to the room's bare JID that
	// the room has allowed requester to send; it may block on the store.
	HandleRoomIQ(ctx context.Context, room, requester jid.JID, st *wire.Element, send func(*wire.Element))
}

// ArchiveHistory is what an Archive may also do: return the last n messages
// of a room's archive, oldest first, as RecordRoom was given them. With it,
// a persistent room loaded at start fills its history from its archive when
// someone first joins it.
type ArchiveHistory interface {
	RoomHistory(ctx context.Context, room jid.JID, n int) ([]store.ArchivedMessage, error)
}

// ArchiveFlusher is what an Archive may also do: commit what it queued, so
// that deleting a room also deletes its last messages.
type ArchiveFlusher interface {
	Flush(ctx context.Context) error
}

// Config configures a Service.
type Config struct {
	Domain       string // the service's own domain, e.g. conference.example.org
	ServerDomain string // whose users count as local for room creation
	Router       Deliverer
	Store        Store // nil keeps nothing across restarts
	// Archive keeps the archives of persistent rooms whose owners have not
	// turned archiving off (muc#roomconfig_enablearchiving); nil: none.
	// Temporary rooms are never archived.
	Archive      Archive
	Log          *slog.Logger
	Metrics      *obs.Metrics
	MaxRooms     int // 0: 10000
	MaxOccupants int // a new room's occupant limit, and the highest an owner may set; 0: 200
	History      int // messages a room keeps for people who join; 0: none
	// AdminsOnly restricts room creation to Admins; otherwise any local
	// user (and the admins) may create rooms.
	AdminsOnly bool
	Admins     []jid.JID // bare JIDs
	// QueueLimit is how many stanzas a room queues before refusing more
	// with resource-constraint; 0: 1024. Departures are always queued.
	QueueLimit int
	// Now is the clock, for tests; nil is time.Now.
	Now func() time.Time
	// Labels enforces security labels (XEP-0258) in rooms; nil turns them off.
	Labels *seclabel.Guard
	// Federate lists the rooms of this service that join rooms elsewhere
	// (XEP-0289 FMUC, fmuc.go).
	Federate []Federation
	// FederationFrom lists the domains whose rooms may join ours; the
	// others are refused with <reject/>.
	FederationFrom []string
	// FederationGrace is how long the occupants of a room that joined ours
	// stay after the link to it is lost; 0 removes them at once.
	FederationGrace time.Duration
	// LinkQueued lists peer domains whose carrier keeps what it cannot
	// send yet (a constrained link relay): rooms keep sending to them while
	// they are down rather than queue.
	LinkQueued []string
	// FedJoinTimeout bounds the wait for a joined room's answer; 0: 30s.
	// FedRetry is how often a room retries a peer it found unreachable by
	// itself (not told by PeerDown); 0: a minute.
	FedJoinTimeout, FedRetry time.Duration
	// GatewayTimeout bounds the wait for a gateway's answer to a join or a subject change
	// (gateway.go); 0: 20s.
	// A gateway that does not answer in time does not keep anyone out.
	GatewayTimeout time.Duration
	// Observers are domains of trusted local services (the IRC gateway) whose occupants see
	// occupants' real JIDs in semi-anonymous rooms, as moderators do: a gateway keys its
	// per-user connections by real JID.
	Observers []string
}

// Service is the multi-user chat service of one domain.
type Service struct {
	cfg    Config
	domain jid.JID
	log    *slog.Logger
	admins map[jid.JID]bool
	// observers are Config.Observers.
	observers map[string]bool

	ctx    context.Context // cancelled by Close; bounds store calls
	cancel context.CancelFunc

	mu     sync.RWMutex
	rooms  map[jid.JID]*room // by bare room JID
	closed bool
	wg     sync.WaitGroup // room goroutines

	occupants atomic.Int64

	// Federation (fmuc.go): read-only after New, but for carrierDown.
	feds        map[jid.JID]Federation // by local room
	fedFrom     map[string]bool
	linkQueued  map[string]bool
	fedMu       sync.Mutex
	carrierDown map[string]bool // domains PeerDown reported and PeerUp did not clear
}

// New builds the service and loads its persistent rooms from the store.
func New(ctx context.Context, cfg Config) (*Service, error) {
	d, err := jid.New("", cfg.Domain, "")
	if err != nil {
		return nil, fmt.Errorf("muc: domain %q: %w", cfg.Domain, err)
	}
	if cfg.Router == nil {
		return nil, errors.New("muc: no router")
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.MaxRooms <= 0 {
		cfg.MaxRooms = 10000
	}
	if cfg.MaxOccupants <= 0 {
		cfg.MaxOccupants = 200
	}
	if cfg.QueueLimit <= 0 {
		cfg.QueueLimit = 1024
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.GatewayTimeout <= 0 {
		cfg.GatewayTimeout = 20 * time.Second
	}
	sctx, cancel := context.WithCancel(context.Background())
	s := &Service{cfg: cfg, domain: d, log: cfg.Log.With("service", d.String()), admins: map[jid.JID]bool{},
		observers: map[string]bool{},
		ctx:       sctx, cancel: cancel, rooms: map[jid.JID]*room{}}
	for _, a := range cfg.Admins {
		s.admins[a.Bare()] = true
	}
	for _, d := range cfg.Observers {
		s.observers[d] = true
	}
	s.fedSetup()
	if err := s.load(ctx); err != nil {
		cancel()
		return nil, err
	}
	if m := cfg.Metrics; m != nil {
		// One service per virtual host: each has its own series.
		svc := `{service="` + d.String() + `"}`
		m.Gauge("aldis_muc_rooms"+svc, func() float64 {
			s.mu.RLock()
			defer s.mu.RUnlock()
			return float64(len(s.rooms))
		})
		m.Gauge("aldis_muc_occupants"+svc, func() float64 { return float64(s.occupants.Load()) })
	}
	return s, nil
}

// load creates the persistent rooms recorded in the store.
func (s *Service) load(ctx context.Context) error {
	if s.cfg.Store == nil {
		return nil
	}
	rooms, err := s.cfg.Store.Rooms(ctx, s.domain.String())
	if err != nil {
		return fmt.Errorf("muc: load rooms: %w", err)
	}
	for _, sr := range rooms {
		j, err := jid.Parse(sr.JID)
		if err != nil || j.Domain() != s.domain.Domain() || j.Local() == "" || !j.IsBare() {
			s.log.Error("stored room has an invalid JID; skipped", "room", sr.JID, "err", err)
			continue
		}
		affs, err := s.cfg.Store.RoomAffiliations(ctx, sr.JID)
		if err != nil {
			return fmt.Errorf("muc: load room %s: %w", sr.JID, err)
		}
		r := newRoom(s, j)
		if err := r.restore(sr, affs); err != nil {
			s.log.Error("stored room is corrupt; skipped", "room", sr.JID, "err", err)
			continue
		}
		s.rooms[j] = r
	}
	if len(rooms) > 0 {
		s.log.Info("loaded persistent rooms", "count", len(s.rooms))
	}
	return nil
}

// Domain is the service's domain.
func (s *Service) Domain() jid.JID { return s.domain }

// Identity implements router.Service.
func (s *Service) Identity() (category, typ, name string) { return "conference", "text", "Chatrooms" }

// Route implements router.Service: it queues st for its room and returns.
func (s *Service) Route(st *wire.Element, from, to jid.JID) {
	if from.IsZero() {
		return
	}
	if to.Local() == "" {
		s.handleService(st, from, to)
		return
	}
	ev := event{st: st, from: from, to: to}
	bare := to.Bare()
	s.mu.RLock()
	if s.closed {
		s.mu.RUnlock()
		s.refuse(ev, stanza.Cancel, "service-unavailable", "the service is shutting down")
		return
	}
	if r := s.rooms[bare]; r != nil {
		ok := r.post(ev)
		s.mu.RUnlock()
		if !ok {
			s.refuse(ev, stanza.Wait, "resource-constraint", "the room is busy")
		}
		return
	}
	s.mu.RUnlock()
	if st.Local() == "presence" && st.Child("fmuc", NSFMUC) != nil {
		if st.Attr("type") == "" && to.Resource() != "" {
			s.fedReject(from, to, "No such room.")
		}
		return
	}
	if !isJoin(st) || to.Resource() == "" {
		s.noRoom(ev)
		return
	}
	if _, fed := s.feds[bare]; !s.mayCreate(from) && !(fed && from.Domain() == s.cfg.ServerDomain) {
		s.refuse(ev, stanza.Cancel, "not-allowed", "room creation is restricted")
		return
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		s.refuse(ev, stanza.Cancel, "service-unavailable", "the service is shutting down")
		return
	}
	r := s.rooms[bare]
	if r == nil {
		if len(s.rooms) >= s.cfg.MaxRooms {
			s.mu.Unlock()
			s.refuse(ev, stanza.Wait, "resource-constraint", "too many rooms")
			return
		}
		// The room exists once this join has been handled; until then
		// it answers like a room that does not exist.
		r = newRoom(s, bare)
		s.rooms[bare] = r
	}
	ok := r.post(ev)
	s.mu.Unlock()
	if !ok {
		s.refuse(ev, stanza.Wait, "resource-constraint", "the room is busy")
	}
}

// Close sends every occupant an unavailable presence with status 332
// (service shutting down) and waits, until ctx is done, for the rooms to
// finish their queues. Stanzas routed afterwards are refused. Persistent
// rooms need nothing saved: every change was stored when it was made.
func (s *Service) Close(ctx context.Context) error {
	s.mu.Lock()
	if !s.closed {
		s.closed = true
		for _, r := range s.rooms {
			r.post(event{kind: evShutdown})
		}
	}
	s.mu.Unlock()
	done := make(chan struct{})
	go func() {
		s.wg.Wait()
		close(done)
	}()
	var err error
	select {
	case <-done:
	case <-ctx.Done():
		err = fmt.Errorf("muc: close: %w", ctx.Err())
	}
	s.cancel()
	return err
}

// mayCreate reports whether the user may create a room.
func (s *Service) mayCreate(user jid.JID) bool {
	if s.admins[user.Bare()] {
		return true
	}
	return !s.cfg.AdminsOnly && user.Domain() == s.cfg.ServerDomain && user.Local() != ""
}

// retire removes r from the registry if nothing is queued for it; the
// caller owns r's state and has found it empty and disposable.
func (s *Service) retire(r *room) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.q) > 0 {
		return false
	}
	if s.rooms[r.jid] == r {
		delete(s.rooms, r.jid)
	}
	r.gone = true
	r.running = false
	return true
}

// forget removes a destroyed room from the registry at once, so that a
// join queued behind the destruction creates a new room rather than
// reaching the old one; the old room answers what is already queued.
func (s *Service) forget(r *room) {
	s.mu.Lock()
	if s.rooms[r.jid] == r {
		delete(s.rooms, r.jid)
	}
	s.mu.Unlock()
}

func (s *Service) deliver(st *wire.Element, from, to jid.JID) {
	s.cfg.Router.Deliver(st, from, to)
}

// refuse answers a stanza with an error from the address it was sent to;
// errors and results are never answered.
func (s *Service) refuse(ev event, typ, cond, text string) {
	if !answerable(ev.st) {
		return
	}
	e := errorReply(ev, typ, cond, text)
	if ev.st.Local() == "presence" && ev.to.Local() != "" {
		e.Child("error", "").SetAttr("by", ev.to.Bare().String())
	}
	s.deliver(e, ev.to, ev.from)
}

// noRoom answers a stanza for a room that does not exist.
func (s *Service) noRoom(ev event) {
	st := ev.st
	switch st.Local() {
	case "presence":
		switch {
		case st.Attr("type") != "":
		case ev.to.Resource() == "":
			s.refuse(ev, stanza.Modify, "jid-malformed", "a nickname is required")
		default:
			// A presence update without the MUC extension: the sender
			// believes it is in a room it is not in (a restart, say).
			s.deliver(notInRoom(ev), ev.to, ev.from)
		}
	case "iq":
		if isSelfPingShape(st) && ev.to.Resource() != "" {
			s.refuse(ev, stanza.Cancel, "not-acceptable", "not joined")
			return
		}
		s.refuse(ev, stanza.Cancel, "item-not-found", "")
	case "message":
		s.refuse(ev, stanza.Cancel, "item-not-found", "")
	}
}

// handleService answers stanzas addressed to the service's domain itself.
func (s *Service) handleService(st *wire.Element, from, to jid.JID) {
	ev := event{st: st, from: from, to: to}
	if st.Local() != "iq" {
		if st.Local() == "message" {
			s.refuse(ev, stanza.Cancel, "service-unavailable", "")
		}
		return
	}
	typ := st.Attr("type")
	if typ != "get" && typ != "set" {
		return
	}
	p := stanza.Payload(st)
	switch {
	case p == nil:
		s.refuse(ev, stanza.Modify, "bad-request", "an iq get or set carries exactly one child")
	case to.Resource() != "":
		s.refuse(ev, stanza.Cancel, "service-unavailable", "")
	case p.Space == stanza.NSPing:
		s.deliver(reply(ev), to, from)
	case typ != "get":
		s.refuse(ev, stanza.Cancel, "service-unavailable", "")
	case p.Space == stanza.NSDiscoInfo && p.Attr("node") == "":
		res := reply(ev)
		q := res.AddChild(wire.New("query", stanza.NSDiscoInfo))
		cat, t, name := s.Identity()
		id := q.AddChild(wire.New("identity", ""))
		id.SetAttr("category", cat).SetAttr("type", t).SetAttr("name", name)
		feats := []string{stanza.NSDiscoInfo, stanza.NSDiscoItem, NS, NSStableID, NSSelfPing, stanza.NSPing}
		if s.cfg.Labels != nil {
			feats = append(feats, seclabel.Features...)
		}
		for _, f := range feats {
			q.AddChild(wire.New("feature", "")).SetAttr("var", f)
		}
		s.deliver(res, to, from)
	case p.Space == stanza.NSDiscoItem && p.Attr("node") == "":
		rooms, set, err := page(s.publicRooms(), p.Child("set", NSRSM), maxListing)
		if err != nil {
			s.refuse(ev, stanza.Modify, "bad-request", err.Error())
			return
		}
		res := reply(ev)
		q := res.AddChild(wire.New("query", stanza.NSDiscoItem))
		for _, in := range rooms {
			it := q.AddChild(wire.New("item", ""))
			it.SetAttr("jid", in.jid.String())
			if in.name != "" {
				it.SetAttr("name", in.name)
			}
		}
		if set != nil {
			q.AddChild(set)
		}
		s.deliver(res, to, from)
	case p.Space == stanza.NSDiscoInfo || p.Space == stanza.NSDiscoItem:
		s.refuse(ev, stanza.Cancel, "item-not-found", "")
	default:
		s.refuse(ev, stanza.Cancel, "service-unavailable", "")
	}
}

// publicRooms lists the rooms that disco#items shows, sorted by JID.
func (s *Service) publicRooms() []*roomInfo {
	s.mu.RLock()
	rooms := slices.Collect(maps.Values(s.rooms))
	s.mu.RUnlock()
	var out []*roomInfo
	for _, r := range rooms {
		if in := r.info.Load(); in != nil && in.public {
			out = append(out, in)
		}
	}
	slices.SortFunc(out, func(a, b *roomInfo) int { return cmp.Compare(a.jid.String(), b.jid.String()) })
	return out
}

// isJoin reports whether st is an available presence with the MUC
// extension: the only stanza that may create a room.
func isJoin(st *wire.Element) bool {
	return st.Local() == "presence" && st.Attr("type") == "" && st.Child("x", NS) != nil
}

func isSelfPingShape(st *wire.Element) bool {
	if st.Attr("type") != "get" {
		return false
	}
	p := stanza.Payload(st)
	return p != nil && p.Space == stanza.NSPing && p.Local() == "ping"
}

// answerable reports whether st may get an error reply: not an error, and
// for iqs only a get or set.
func answerable(st *wire.Element) bool {
	typ := st.Attr("type")
	if typ == "error" {
		return false
	}
	return st.Local() != "iq" || typ == "get" || typ == "set"
}

// errorReply builds the error for ev from the address it was sent to.
func errorReply(ev event, typ, cond, text string) *wire.Element {
	e := stanza.Error(ev.st, typ, cond, text)
	// The normalised addresses, not the attributes as the client wrote them.
	e.SetAttr("from", ev.to.String())
	e.SetAttr("to", ev.from.String())
	return e
}

// reply builds an empty iq result for ev.
func reply(ev event) *wire.Element {
	res := stanza.Result(ev.st)
	res.SetAttr("from", ev.to.String())
	res.SetAttr("to", ev.from.String())
	return res
}

// notInRoom is the "explicit kick" XEP-0045 §7.2 recommends for presence
// from a non-occupant without the MUC extension: status 110, 307 and 333.
func notInRoom(ev event) *wire.Element {
	p := wire.New("presence", "")
	p.SetAttr("from", ev.to.String())
	p.SetAttr("to", ev.from.String())
	p.SetAttr("type", "unavailable")
	x := p.AddChild(wire.New("x", NSUser))
	it := x.AddChild(wire.New("item", ""))
	it.SetAttr("affiliation", "none").SetAttr("role", "none")
	it.AddChild(wire.New("reason", "")).AddText("You are not in the room.")
	for _, c := range []string{"110", "307", "333"} {
		x.AddChild(wire.New("status", "")).SetAttr("code", c)
	}
	return p
}

func randomID() string {
	var b [9]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
