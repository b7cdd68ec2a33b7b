package muc

import (
	"fmt"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aldis-im/aldis/xmppcore/jid"
	"github.com/aldis-im/aldis/xmppcore/stanza"
	"github.com/aldis-im/aldis/xmppcore/wire"
)

const (
	shipDomain  = "conference.ship.example"
	shoreDomain = "conference.shore.example"
	shipRoom    = "ops@" + shipDomain
	shoreRoom   = "ops@" + shoreDomain
)

// link joins two services as a router would over s2s, and can fail: down
// drops what crosses it, or bounces it with remote-server-not-found, or
// holds it until release.
type link struct {
	mu      sync.Mutex
	svcs    map[string]*Service
	down    bool
	bounce  bool
	hold    bool
	held    []func()
	crossed []*wire.Element // every stanza offered to the link, in order
}

type linkRouter struct {
	*fakeRouter
	l    *link
	self string
}

func (lr *linkRouter) Deliver(st *wire.Element, from, to jid.JID) {
	lr.l.mu.Lock()
	peer := lr.l.svcs[to.Domain()]
	if peer == nil || to.Domain() == lr.self {
		lr.l.mu.Unlock()
		lr.fakeRouter.Deliver(st, from, to)
		return
	}
	el, err := wire.ParseElement(st.String()) // as the wire would carry it
	if err != nil {
		lr.l.mu.Unlock()
		panic(err)
	}
	lr.l.crossed = append(lr.l.crossed, el)
	self := lr.l.svcs[lr.self]
	switch {
	case lr.l.down && lr.l.bounce:
		lr.l.mu.Unlock()
		if st.Attr("type") != "error" {
			e := stanza.Error(el, stanza.Cancel, "remote-server-not-found", "")
			self.Route(e, to, from)
		}
	case lr.l.down:
		lr.l.mu.Unlock()
	case lr.l.hold:
		lr.l.held = append(lr.l.held, func() { peer.Route(el, from, to) })
		lr.l.mu.Unlock()
	default:
		lr.l.mu.Unlock()
		peer.Route(el, from, to)
	}
}

func (l *link) set(f func(l *link)) {
	l.mu.Lock()
	f(l)
	l.mu.Unlock()
}

func (l *link) release() {
	l.mu.Lock()
	h := l.held
	l.held, l.hold = nil, false
	l.mu.Unlock()
	for _, f := range h {
		f()
	}
}

// took returns and forgets what crossed the link.
func (l *link) took() []*wire.Element {
	l.mu.Lock()
	defer l.mu.Unlock()
	c := l.crossed
	l.crossed = nil
	return c
}

// fedWorld is a ship and a shore, each with a chat service.
type fedWorld struct {
	t           *testing.T
	l           *link
	ship, shore *env
	// probes: users that only ping, so that settle can wait for rooms
	shipProbe, shoreProbe *user
}

type fedOpts struct {
	mode     FedMode
	grace    time.Duration
	noAllow  bool // the shore refuses federation
	noFedCfg bool
}

func newFedWorld(t *testing.T, o fedOpts) *fedWorld {
	l := &link{svcs: map[string]*Service{}}
	w := &fedWorld{t: t, l: l}
	w.shore = newEnv(t, func(c *Config) {
		c.Domain, c.ServerDomain = shoreDomain, "shore.example"
		c.Router = &linkRouter{fakeRouter: c.Router.(*fakeRouter), l: l, self: shoreDomain}
		if !o.noAllow {
			c.FederationFrom = []string{shipDomain}
		}
	})
	w.ship = newEnv(t, func(c *Config) {
		c.Domain, c.ServerDomain = shipDomain, "ship.example"
		c.Router = &linkRouter{fakeRouter: c.Router.(*fakeRouter), l: l, self: shipDomain}
		c.Federate = []Federation{{Room: "ops", With: jid.MustParse(shoreRoom), Mode: o.mode, GhostGrace: o.grace}}
		c.FedJoinTimeout = 2 * time.Second
		c.FedRetry = time.Hour
	})
	l.svcs[shoreDomain] = w.shore.svc
	l.svcs[shipDomain] = w.ship.svc
	w.shipProbe = w.ship.user("probe@ship.example/p")
	w.shoreProbe = w.shore.user("probe@shore.example/p")
	return w
}

// settle waits until both rooms have handled what is in flight between
// them: each round lets one side answer the other.
func (w *fedWorld) settle() {
	w.t.Helper()
	for range 4 {
		w.shipProbe.sync(shipRoom)
		w.shoreProbe.sync(shoreRoom)
	}
	w.shipProbe.drain()
	w.shoreProbe.drain()
}

// shoreRoomWith creates the shore room with bob in it, and a message in
// its history.
func (w *fedWorld) shoreRoomWith(bob *user) {
	bob.create(shoreRoom, "bob")
	bob.send(fmt.Sprintf("<message to='%s' type='groupchat'><subject>Shore ops</subject></message>", shoreRoom))
	bob.expect("subject reflected", isMsg("groupchat", shoreRoom+"/bob"))
	bob.send(fmt.Sprintf("<message to='%s' type='groupchat'><body>before</body></message>", shoreRoom))
	bob.expect("reflection", body("before"))
	w.shore.advance(time.Minute)
	w.ship.advance(time.Minute)
}

// joinShip joins the ship room and returns what the user got, up to the subject.
func (u *user) joinAll(roomNick string) []*wire.Element {
	u.e.t.Helper()
	u.join(roomNick, "")
	var got []*wire.Element
	for {
		st := u.next()
		got = append(got, st)
		if st.Attr("type") == "error" || (st.Local() == "message" && st.Child("subject", "") != nil) {
			return got
		}
	}
}

func noFMUC(t *testing.T, who string, q []*wire.Element) {
	t.Helper()
	for _, st := range q {
		if strings.Contains(st.String(), NSFMUC) {
			t.Errorf("%s got a federation element: %s", who, st)
		}
	}
}

var xep82 = regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$`)

func checkDelay(t *testing.T, st *wire.Element) {
	t.Helper()
	d := st.Child("delay", stanza.NSDelay)
	if d == nil {
		t.Errorf("no urn:xmpp:delay in %s", st)
		return
	}
	if !xep82.MatchString(d.Attr("stamp")) {
		t.Errorf("delay stamp %q is not XEP-0082", d.Attr("stamp"))
	}
}

func TestFMUCJoinFlow(t *testing.T) {
	w := newFedWorld(t, fedOpts{})
	bob := w.shore.user("bob@shore.example/pc")
	w.shoreRoomWith(bob)
	w.settle()
	if c := w.l.took(); len(c) != 0 {
		t.Fatalf("traffic while the ship room has nobody:\n%s", dump(c))
	}

	alice := w.ship.user("alice@ship.example/pc")
	got := alice.joinAll(shipRoom + "/alice")
	w.settle()
	// Occupants, then self, then history, then subject.
	want := []func(*wire.Element) string{
		all(isPres("", shipRoom+"/bob"), item("role", "moderator")),
		all(isPres("", shipRoom+"/alice"), codes("110")),
		all(isMsg("groupchat", shipRoom+"/bob"), body("before")),
		all(isMsg("groupchat", shipRoom+"/bob")),
	}
	if len(got) != len(want) {
		t.Fatalf("alice's join: got %d stanzas, want %d:\n%s", len(got), len(want), dump(got))
	}
	for i, c := range want {
		if msg := c(got[i]); msg != "" {
			t.Errorf("stanza %d: %s in %s", i, msg, got[i])
		}
	}
	checkDelay(t, got[2])
	checkDelay(t, got[3])
	if s := got[3].ChildText("subject", ""); s != "Shore ops" {
		t.Errorf("subject %q, want the shore's", s)
	}
	noFMUC(t, "alice", got)

	var joins, back int
	for _, st := range w.l.took() {
		to := jid.MustParse(st.Attr("to"))
		if to.Domain() == shoreDomain {
			if st.Local() != "presence" {
				t.Errorf("echoed to the shore: %s", st)
				continue
			}
			joins++
			fm := st.Child("fmuc", NSFMUC)
			if fm == nil || fm.Attr("from") != "alice@ship.example/pc" || st.Child("x", NS) == nil ||
				st.Child("x", NSUser) == nil || st.Attr("to") != shoreRoom+"/alice" {
				t.Errorf("remote join lacks what §3.2 asks: %s", st)
			}
		} else {
			back++
		}
	}
	if joins != 1 || back != 4 {
		t.Errorf("%d remote joins and %d stanzas back, want 1 and 4", joins, back)
	}
	bob.expect("alice arrives", all(isPres("", shoreRoom+"/alice"), item("jid", "alice@ship.example/pc")))
	bob.none(shoreRoom)

	// A second local occupant: one more remote join, nothing else.
	carol := w.ship.user("carol@ship.example/pc")
	got = carol.joinAll(shipRoom + "/carol")
	w.settle()
	noFMUC(t, "carol", got)
	c := w.l.took()
	if n := countTo(c, shoreDomain, "presence"); n != 1 {
		t.Errorf("%d presences to the shore for carol's join, want 1:\n%s", n, dump(c))
	}
	bob.expect("carol arrives", isPres("", shoreRoom+"/carol"))
	alice.expect("carol arrives", isPres("", shipRoom+"/carol"))
	bob.none(shoreRoom)
	alice.none(shipRoom)
}

func countTo(q []*wire.Element, domain, kind string) int {
	n := 0
	for _, st := range q {
		if jid.MustParse(st.Attr("to")).Domain() == domain && st.Local() == kind {
			n++
		}
	}
	return n
}

func TestFMUCReject(t *testing.T) {
	w := newFedWorld(t, fedOpts{noAllow: true})
	bob := w.shore.user("bob@shore.example/pc")
	bob.create(shoreRoom, "bob")
	alice := w.ship.user("alice@ship.example/pc")
	got := alice.joinAll(shipRoom + "/alice")
	if len(got) != 1 {
		t.Fatalf("want just a join error, got:\n%s", dump(got))
	}
	if msg := isError("presence", stanza.Cancel, "not-allowed")(got[0]); msg != "" {
		t.Fatalf("%s in %s", msg, got[0])
	}
	if txt := got[0].Child("error", "").ChildText("text", stanza.NSStanzaErr); !strings.Contains(txt, "not allowed") {
		t.Errorf("error text %q does not say why", txt)
	}
	w.settle()
	var rejects int
	for _, st := range w.l.took() {
		if st.Child("fmuc", NSFMUC) != nil && st.Child("fmuc", NSFMUC).Child("reject", "") != nil {
			rejects++
			if st.Attr("from") != shoreRoom || st.Attr("to") != shipRoom {
				t.Errorf("reject is not bare to bare: %s", st)
			}
		}
	}
	if rejects != 1 {
		t.Errorf("%d rejects, want 1", rejects)
	}
	bob.none(shoreRoom)
}

// both sets up alice on the ship and bob on the shore in the federated room.
func both(t *testing.T, o fedOpts) (*fedWorld, *user, *user) {
	w := newFedWorld(t, o)
	bob := w.shore.user("bob@shore.example/pc")
	w.shoreRoomWith(bob)
	alice := w.ship.user("alice@ship.example/pc")
	alice.joinAll(shipRoom + "/alice")
	w.settle()
	bob.expect("alice arrives", isPres("", shoreRoom+"/alice"))
	w.l.took()
	return w, alice, bob
}

func (u *user) say(room, text string) {
	u.send(fmt.Sprintf("<message to='%s' type='groupchat' id='%s'><body>%s</body></message>", room, randomID(), text))
}

func TestFMUCGroupchatPrimaryPrimary(t *testing.T) {
	w, alice, bob := both(t, fedOpts{})
	// Local reflection does not wait for the shore.
	w.l.set(func(l *link) { l.hold = true })
	alice.say(shipRoom, "hello shore")
	alice.expect("reflection at once", all(isMsg("groupchat", shipRoom+"/alice"), body("hello shore")))
	w.l.release()
	w.settle()
	got := bob.expect("one copy", all(isMsg("groupchat", shoreRoom+"/alice"), body("hello shore")))
	noFMUC(t, "bob", []*wire.Element{got})
	bob.none(shoreRoom)
	alice.none(shipRoom) // no echo
	c := w.l.took()
	if n := countTo(c, shoreDomain, "message"); n != 1 {
		t.Errorf("forwarded %d times, want once:\n%s", n, dump(c))
	}
	if n := countTo(c, shipDomain, "message"); n != 0 {
		t.Errorf("the shore echoed:\n%s", dump(c))
	}
	for _, st := range c {
		if st.Local() == "message" && (st.Child("origin-id", NSSID) == nil || st.Child("fmuc", NSFMUC) == nil) {
			t.Errorf("forwarded without origin-id or fmuc: %s", st)
		}
	}

	bob.say(shoreRoom, "hello ship")
	bob.expect("reflection", body("hello ship"))
	w.settle()
	alice.expect("one copy", all(isMsg("groupchat", shipRoom+"/bob"), body("hello ship")))
	alice.none(shipRoom)
	bob.none(shoreRoom)
}

func TestFMUCPrimaryReplica(t *testing.T) {
	w, alice, bob := both(t, fedOpts{mode: PrimaryReplica})
	w.l.set(func(l *link) { l.hold = true })
	alice.say(shipRoom, "in order")
	alice.none(shipRoom) // not before the primary's echo
	w.l.release()
	w.settle()
	alice.expect("reflection after the echo", all(isMsg("groupchat", shipRoom+"/alice"), body("in order")))
	alice.none(shipRoom)
	bob.expect("one copy", all(isMsg("groupchat", shoreRoom+"/alice"), body("in order")))
	bob.none(shoreRoom)

	// Outage: the replica refuses.
	w.ship.svc.PeerDown("ship.example")
	w.ship.svc.PeerDown("shore.example")
	w.settle()
	alice.drain()
	alice.say(shipRoom, "lost")
	alice.expect("refused", isError("message", stanza.Wait, "remote-server-timeout"))
}

func TestFMUCPrivateMessages(t *testing.T) {
	w, alice, bob := both(t, fedOpts{})
	alice.send(fmt.Sprintf("<message to='%s/bob' type='chat'><body>psst</body></message>", shipRoom))
	w.settle()
	got := bob.expect("the PM", all(isMsg("chat", shoreRoom+"/alice"), body("psst")))
	if got.Child("x", NSUser) == nil {
		t.Errorf("PM without the muc#user marker: %s", got)
	}
	noFMUC(t, "bob", []*wire.Element{got})
	var saw bool
	for _, st := range w.l.took() {
		if st.Local() == "message" && st.Attr("to") == shoreRoom+"/bob" {
			saw = st.Child("fmuc", NSFMUC).Attr("from") == "alice@ship.example/pc"
		}
	}
	if !saw {
		t.Error("the PM did not cross with <fmuc from>")
	}
	bob.send(fmt.Sprintf("<message to='%s/alice' type='chat'><body>what</body></message>", shoreRoom))
	w.settle()
	alice.expect("the reply", all(isMsg("chat", shipRoom+"/bob"), body("what")))
}

func TestFMUCLeave(t *testing.T) {
	w, alice, bob := both(t, fedOpts{})
	alice.send(fmt.Sprintf("<presence to='%s/alice' type='unavailable'/>", shipRoom))
	alice.expect("left", all(isPres("unavailable", shipRoom+"/alice"), codes("110")))
	w.settle()
	bob.expect("alice leaves", isPres("unavailable", shoreRoom+"/alice"))
	var left int
	for _, st := range w.l.took() {
		if fm := st.Child("fmuc", NSFMUC); fm != nil && fm.Child("left", "") != nil && st.Attr("from") == shoreRoom && st.Attr("to") == shipRoom {
			left++
		}
	}
	if left != 1 {
		t.Errorf("%d <left/>, want 1", left)
	}
	bob.say(shoreRoom, "anyone?")
	w.settle()
	if c := w.l.took(); len(c) != 0 {
		t.Errorf("traffic after the ship left:\n%s", dump(c))
	}
}

func TestFMUCRemoteKick(t *testing.T) {
	w, alice, bob := both(t, fedOpts{})
	carol := w.ship.user("carol@ship.example/pc")
	carol.joinAll(shipRoom + "/carol")
	w.settle()
	bob.drain()
	alice.drain()
	bob.send(fmt.Sprintf("<iq type='set' id='k' to='%s'><query xmlns='%s'><item nick='alice' role='none'><reason>out</reason></item></query></iq>", shoreRoom, NSAdmin))
	bob.expect("kick result", isResult("k"))
	w.settle()
	alice.expect("kicked here too", all(isPres("unavailable", shipRoom+"/alice"), codes("110", "307")))
	carol.expect("sees the kick", all(isPres("unavailable", shipRoom+"/alice"), codes("307")))
	carol.none(shipRoom)
}

func TestFMUCNickCollision(t *testing.T) {
	w := newFedWorld(t, fedOpts{})
	bob := w.shore.user("bob@shore.example/pc")
	w.shoreRoomWith(bob)
	dave := w.ship.user("dave@ship.example/pc")
	got := dave.joinAll(shipRoom + "/bob")
	if msg := isError("presence", stanza.Cancel, "conflict")(got[len(got)-1]); msg != "" || len(got) != 1 {
		t.Fatalf("want a 409 conflict only, got:\n%s", dump(got))
	}
	w.settle()
	bob.none(shoreRoom)
	// The same user may then join under another nick.
	got = dave.joinAll(shipRoom + "/dave")
	if msg := isMsg("groupchat", shipRoom+"/bob")(got[len(got)-1]); msg != "" {
		t.Fatalf("second join did not complete:\n%s", dump(got))
	}
}

func TestFMUCLinkLossAndRecovery(t *testing.T) {
	w, alice, bob := both(t, fedOpts{})
	bob.say(shoreRoom, "last before")
	w.settle()
	alice.expect("last before", body("last before"))
	bob.drain()
	w.l.set(func(l *link) { l.down = true })
	w.ship.svc.PeerDown("shore.example")
	w.shore.svc.PeerDown("ship.example")
	w.settle()
	alice.expect("bob removed", all(isPres("unavailable", shipRoom+"/bob"), codes("333")))
	bob.expect("alice removed", all(isPres("unavailable", shoreRoom+"/alice"), codes("333")))

	w.ship.advance(time.Minute)
	w.shore.advance(time.Minute)
	sent := w.ship.clock().UTC().Format("2006-01-02T15:04:05.000Z")
	alice.say(shipRoom, "during")
	alice.expect("local chat continues", body("during"))
	bob.say(shoreRoom, "meanwhile")
	bob.expect("local chat continues", body("meanwhile"))
	w.settle()
	w.ship.advance(time.Hour)
	w.shore.advance(time.Hour)
	w.l.took()

	w.l.set(func(l *link) { l.down = false })
	w.shore.svc.PeerUp("ship.example")
	w.ship.svc.PeerUp("shore.example")
	w.settle()
	var since string
	for _, st := range w.l.took() {
		if st.Local() == "presence" && st.Attr("to") == shoreRoom+"/alice" {
			if h := st.Child("x", NS).Child("history", ""); h != nil {
				since = h.Attr("since")
			}
		}
	}
	if since == "" || !xep82.MatchString(since) {
		t.Errorf("rejoin without <history since>: %q", since)
	}
	var gotDuring, gotMeanwhile int
	for _, st := range bob.drain() {
		if st.ChildText("body", "") == "during" {
			gotDuring++
			checkDelay(t, st)
			if d := st.Child("delay", stanza.NSDelay); d != nil && d.Attr("stamp") != sent {
				t.Errorf("queued message stamped %s, want its original %s", d.Attr("stamp"), sent)
			}
		}
	}
	for _, st := range alice.drain() {
		if st.ChildText("body", "") == "meanwhile" {
			gotMeanwhile++
		}
		if st.ChildText("body", "") == "last before" || st.ChildText("body", "") == "during" {
			t.Errorf("alice got a duplicate: %s", st)
		}
	}
	if gotDuring != 1 || gotMeanwhile != 1 {
		t.Errorf("after recovery bob got %q %d times and alice %q %d times, want once each", "during", gotDuring, "meanwhile", gotMeanwhile)
	}
	// Occupants are back on both sides.
	bob.say(shoreRoom, "welcome back")
	w.settle()
	alice.expect("live again", body("welcome back"))
}

func TestFMUCLossDetectedByBounce(t *testing.T) {
	w, alice, bob := both(t, fedOpts{})
	w.l.set(func(l *link) { l.down, l.bounce = true, true })
	alice.say(shipRoom, "into the void")
	alice.expect("reflection", body("into the void"))
	w.settle()
	alice.expect("bob removed after the bounce", all(isPres("unavailable", shipRoom+"/bob"), codes("333")))
	w.l.set(func(l *link) { l.down, l.bounce = false, false })
	w.ship.svc.PeerUp("shore.example")
	w.settle()
	var n int
	for _, st := range bob.drain() {
		if st.ChildText("body", "") == "into the void" {
			n++
		}
	}
	if n != 1 {
		t.Errorf("bounced message delivered %d times after recovery, want 1", n)
	}
}

func TestFMUCGhostGrace(t *testing.T) {
	w, alice, _ := both(t, fedOpts{grace: 300 * time.Millisecond})
	w.ship.svc.PeerDown("shore.example")
	w.settle()
	alice.none(shipRoom) // not yet
	time.Sleep(400 * time.Millisecond)
	w.settle()
	alice.expect("removed after the grace", all(isPres("unavailable", shipRoom+"/bob"), codes("333")))
}

func TestFMUCOriginLRU(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	l := newOriginLRU()
	tests := []struct {
		key  string
		at   time.Duration
		seen bool
	}{
		{"a", 0, false},
		{"a", time.Hour, true},
		{"b", time.Hour, false},
	}
	for i, tc := range tests {
		if got := l.seen(tc.key, now.Add(tc.at)); got != tc.seen {
			t.Errorf("step %d: seen(%s)=%v, want %v", i, tc.key, got, tc.seen)
		}
	}
	// A day later both are forgotten as soon as something new arrives.
	l.seen("c", now.Add(25*time.Hour+time.Minute))
	if l.seen("a", now.Add(25*time.Hour+2*time.Minute)) {
		t.Error("an origin-id older than a day is still remembered")
	}
	for i := range originMax + 10 {
		l.seen(fmt.Sprint(i), now.Add(30*time.Hour))
	}
	if l.ll.Len() > originMax {
		t.Errorf("%d entries kept, want at most %d", l.ll.Len(), originMax)
	}
	if !l.seen(fmt.Sprint(originMax), now.Add(30*time.Hour)) {
		t.Error("a recent origin-id was forgotten")
	}
}
