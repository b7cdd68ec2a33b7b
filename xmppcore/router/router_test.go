package router

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aldis-im/aldis/core/store/sqlite"
	"github.com/aldis-im/aldis/xmppcore/accounts"
	"github.com/aldis-im/aldis/xmppcore/jid"
	"github.com/aldis-im/aldis/xmppcore/stanza"
	"github.com/aldis-im/aldis/xmppcore/wire"
)

// fakeSession records what the router sends to one client.
type fakeSession struct {
	ch     chan string
	mu     sync.Mutex
	closed string
}

func newFake() *fakeSession { return &fakeSession{ch: make(chan string, 256)} }

func (f *fakeSession) Send(b []byte) bool {
	select {
	case f.ch <- string(b):
		return true
	default:
		return false
	}
}

func (f *fakeSession) Close(cond, text string) {
	f.mu.Lock()
	f.closed = cond
	f.mu.Unlock()
}

func (f *fakeSession) closedWith() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.closed
}

// expect waits for a stanza containing every one of parts.
func (f *fakeSession) expect(t *testing.T, parts ...string) string {
	t.Helper()
	deadline := time.After(3 * time.Second)
	var seen []string
	for {
		select {
		case s := <-f.ch:
			ok := true
			for _, p := range parts {
				if !strings.Contains(s, p) {
					ok = false
					break
				}
			}
			if ok {
				return s
			}
			seen = append(seen, s)
		case <-deadline:
			t.Fatalf("no stanza with %q; got:\n%s", parts, strings.Join(seen, "\n"))
			return ""
		}
	}
}

// quiet asserts nothing matching parts arrives within a short time.
func (f *fakeSession) quiet(t *testing.T, parts ...string) {
	t.Helper()
	deadline := time.After(300 * time.Millisecond)
	for {
		select {
		case s := <-f.ch:
			match := true
			for _, p := range parts {
				if !strings.Contains(s, p) {
					match = false
				}
			}
			if match {
				t.Fatalf("unexpected stanza: %s", s)
			}
		case <-deadline:
			return
		}
	}
}

type env struct {
	t  *testing.T
	r  *Router
	db *sqlite.DB
}

func newEnv(t *testing.T, users ...string) *env {
	return newEnvIdle(t, 0, users...)
}

func newEnvIdle(t *testing.T, idle time.Duration, users ...string) *env {
	t.Helper()
	ctx := context.Background()
	db, err := sqlite.OpenMemory(ctx)
	if err != nil {
		t.Fatal(err)
	}
	acc := accounts.New(db, 4096)
	for _, u := range users {
		if err := acc.Create(ctx, jid.MustParse(u+"@example.org"), "secret-password"); err != nil {
			t.Fatal(err)
		}
	}
	r, err := New(Config{Domain: "example.org", Store: db, Accounts: acc, OfflineMax: 3, Version: "test", Registration: true, HubIdle: idle})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close(time.Second); db.Close() })
	return &env{t: t, r: r, db: db}
}

type client struct {
	*fakeSession
	b *Binding
}

func (e *env) login(user, res string) *client {
	e.t.Helper()
	f := newFake()
	b, err := e.r.Bind(context.Background(), jid.MustParse(user+"@example.org"), res, f)
	if err != nil {
		e.t.Fatal(err)
	}
	return &client{fakeSession: f, b: b}
}

// send parses raw XML as a jabber:client stanza and submits it.
func (c *client) send(t *testing.T, raw string) {
	t.Helper()
	el, err := wire.ParseElement(raw)
	if err != nil {
		t.Fatalf("parse %s: %v", raw, err)
	}
	el.Space = "jabber:client"
	c.b.Inbound(el)
}

func (c *client) online(t *testing.T) {
	t.Helper()
	c.send(t, `<presence/>`)
	c.expect(t, `<presence`, `from='`+c.b.JID().String()+`'`)
}

func TestMessageRouting(t *testing.T) {
	e := newEnv(t, "alice", "bob")
	a := e.login("alice", "a")
	b1 := e.login("bob", "one")
	b2 := e.login("bob", "two")
	a.online(t)
	b1.send(t, `<presence><priority>5</priority></presence>`)
	b1.expect(t, `<priority>5</priority>`)
	b2.online(t)

	// Bare JID: only the highest-priority resource.
	a.send(t, `<message to='bob@example.org' type='chat' id='m1'><body>hi</body></message>`)
	b1.expect(t, `id='m1'`, `from='alice@example.org/a'`)
	b2.quiet(t, `id='m1'`)

	// Full JID: exactly that resource.
	a.send(t, `<message to='bob@example.org/two' type='chat' id='m2'><body>hi</body></message>`)
	b2.expect(t, `id='m2'`)

	// Unknown resource of an online user: falls back to the bare JID.
	a.send(t, `<message to='bob@example.org/nope' type='chat' id='m3'><body>hi</body></message>`)
	b1.expect(t, `id='m3'`)

	// No such user: service-unavailable back to the sender.
	a.send(t, `<message to='nobody@example.org' type='chat' id='m4'><body>hi</body></message>`)
	a.expect(t, `id='m4'`, `type='error'`, `service-unavailable`)

	// Groupchat to a user: service-unavailable.
	a.send(t, `<message to='bob@example.org' type='groupchat' id='m5'><body>hi</body></message>`)
	a.expect(t, `id='m5'`, `service-unavailable`)

	// Headline goes to every non-negative resource.
	a.send(t, `<message to='bob@example.org' type='headline' id='m6'><body>news</body></message>`)
	b1.expect(t, `id='m6'`)
	b2.expect(t, `id='m6'`)

	// Other domains are unreachable until federation exists.
	a.send(t, `<message to='carol@elsewhere.example' id='m7'><body>hi</body></message>`)
	a.expect(t, `id='m7'`, `remote-server-not-found`)
}

func TestOfflineStorage(t *testing.T) {
	e := newEnv(t, "alice", "bob")
	a := e.login("alice", "a")
	a.online(t)
	for _, id := range []string{"o1", "o2", "o3", "o4"} {
		a.send(t, `<message to='bob@example.org' type='chat' id='`+id+`'><body>while you were away</body></message>`)
	}
	// OfflineMax is 3: the fourth bounces.
	a.expect(t, `id='o4'`, `type='error'`, `service-unavailable`)
	b := e.login("bob", "b")
	b.send(t, `<presence/>`)
	for _, id := range []string{"o1", "o2", "o3"} {
		b.expect(t, `id='`+id+`'`, `<delay xmlns='urn:xmpp:delay'`, `stamp='`)
	}
	// Delivered messages leave the store (just after they are queued).
	var n int
	var err error
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if n, err = e.db.CountOffline(context.Background(), "bob@example.org"); err != nil || n == 0 {
			break
		}
	}
	if err != nil || n != 0 {
		t.Fatalf("offline left after delivery: %d, %v", n, err)
	}
	// Messages for accounts that do not exist bounce instead of being stored.
	a.send(t, `<message to='carol@example.org' type='chat' id='x'><body>x</body></message>`)
	a.expect(t, `id='x'`, `service-unavailable`)
}

func TestSubscriptionLifecycle(t *testing.T) {
	e := newEnv(t, "alice", "bob")
	a := e.login("alice", "a")
	b := e.login("bob", "b")
	a.send(t, `<iq type='get' id='r1'><query xmlns='jabber:iq:roster'/></iq>`)
	a.expect(t, `id='r1'`, `type='result'`)
	b.send(t, `<iq type='get' id='r2'><query xmlns='jabber:iq:roster'/></iq>`)
	b.expect(t, `id='r2'`)
	a.online(t)
	b.online(t)

	a.send(t, `<presence to='bob@example.org' type='subscribe'/>`)
	a.expect(t, `jid='bob@example.org'`, `subscription='none'`, `ask='subscribe'`)
	b.expect(t, `type='subscribe'`, `from='alice@example.org'`)
	b.send(t, `<presence to='alice@example.org' type='subscribed'/>`)
	b.expect(t, `jid='alice@example.org'`, `subscription='from'`)
	a.expect(t, `jid='bob@example.org'`, `subscription='to'`)
	// Bob's available presence reaches Alice once she is subscribed.
	a.expect(t, `<presence`, `from='bob@example.org/b'`)

	b.send(t, `<presence to='alice@example.org' type='subscribe'/>`)
	a.expect(t, `type='subscribe'`, `from='bob@example.org'`)
	a.send(t, `<presence to='bob@example.org' type='subscribed'/>`)
	a.expect(t, `subscription='both'`)
	b.expect(t, `subscription='both'`)

	// Presence updates and disconnects are broadcast to subscribers.
	b.send(t, `<presence><show>away</show></presence>`)
	a.expect(t, `<show>away</show>`, `from='bob@example.org/b'`)
	b.b.Unbind()
	a.expect(t, `type='unavailable'`, `from='bob@example.org/b'`)

	// A new session of Bob probes and learns Alice is online.
	b2 := e.login("bob", "c")
	b2.send(t, `<presence/>`)
	b2.expect(t, `from='alice@example.org/a'`)
	b2.send(t, `<iq type='get' id='r3'><query xmlns='jabber:iq:roster'/></iq>`)
	b2.expect(t, `id='r3'`)

	// Removing the item cancels both directions.
	a.send(t, `<iq type='set' id='rm'><query xmlns='jabber:iq:roster'><item jid='bob@example.org' subscription='remove'/></query></iq>`)
	a.expect(t, `subscription='remove'`)
	a.expect(t, `id='rm'`, `type='result'`)
	b2.expect(t, `type='unavailable'`, `from='alice@example.org/a'`)
	b2.expect(t, `jid='alice@example.org'`, `subscription='none'`)
	it, err := e.db.RosterItem(context.Background(), "bob@example.org", "alice@example.org")
	if err != nil || it.Subscription != "none" {
		t.Fatalf("bob's item after alice removed him: %+v, %v", it, err)
	}
}

func TestPendingSubscriptionDeliveredAtLogin(t *testing.T) {
	e := newEnv(t, "alice", "bob")
	a := e.login("alice", "a")
	a.online(t)
	a.send(t, `<presence to='bob@example.org' type='subscribe'><status>it is alice</status></presence>`)
	b := e.login("bob", "b")
	b.send(t, `<presence/>`)
	b.expect(t, `type='subscribe'`, `it is alice`)
}

func TestRosterSetAndVersioning(t *testing.T) {
	e := newEnv(t, "alice")
	a1 := e.login("alice", "one")
	a2 := e.login("alice", "two")
	a2.send(t, `<iq type='get' id='g'><query xmlns='jabber:iq:roster'/></iq>`)
	res := a2.expect(t, `id='g'`)
	a1.send(t, `<iq type='set' id='s'><query xmlns='jabber:iq:roster'><item jid='nurse@example.com' name='Nurse'><group>Servants</group></item></query></iq>`)
	a1.expect(t, `id='s'`, `type='result'`)
	a2.expect(t, `type='set'`, `jid='nurse@example.com'`, `<group>Servants</group>`)

	el, _ := wire.ParseElement(res)
	ver0 := el.Child("query", "").Attr("ver")
	a2.send(t, `<iq type='get' id='g2'><query xmlns='jabber:iq:roster' ver='`+ver0+`'/></iq>`)
	full := a2.expect(t, `id='g2'`)
	if !strings.Contains(full, "nurse@example.com") {
		t.Errorf("roster changed since ver %s but the full roster was not returned: %s", ver0, full)
	}
	el, _ = wire.ParseElement(full)
	ver1 := el.Child("query", "").Attr("ver")
	a2.send(t, `<iq type='get' id='g3'><query xmlns='jabber:iq:roster' ver='`+ver1+`'/></iq>`)
	if r := a2.expect(t, `id='g3'`); strings.Contains(r, "<query") {
		t.Errorf("unchanged roster returned items: %s", r)
	}
	for _, bad := range []string{
		`<iq type='set' id='b1'><query xmlns='jabber:iq:roster'><item jid='a@x'/><item jid='b@x'/></query></iq>`,
		`<iq type='set' id='b1'><query xmlns='jabber:iq:roster'><item jid='a@x'><group></group></item></query></iq>`,
		`<iq type='set' id='b1'><query xmlns='jabber:iq:roster'><item jid='@@'/></query></iq>`,
	} {
		a1.send(t, bad)
		a1.expect(t, `id='b1'`, `type='error'`)
	}
}

func TestResourceConflict(t *testing.T) {
	e := newEnv(t, "alice")
	old := e.login("alice", "phone")
	_ = e.login("alice", "phone")
	deadline := time.Now().Add(2 * time.Second)
	for old.closedWith() != "conflict" && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if old.closedWith() != "conflict" {
		t.Fatalf("old session closed with %q, want conflict", old.closedWith())
	}
}

func TestBlocking(t *testing.T) {
	e := newEnv(t, "alice", "bob")
	a := e.login("alice", "a")
	b := e.login("bob", "b")
	a.online(t)
	b.online(t)
	a.send(t, `<iq type='get' id='bl'><blocklist xmlns='urn:xmpp:blocking'/></iq>`)
	a.expect(t, `id='bl'`, `<blocklist`)
	a.send(t, `<iq type='set' id='bk'><block xmlns='urn:xmpp:blocking'><item jid='bob@example.org'/></block></iq>`)
	a.expect(t, `id='bk'`, `type='result'`)
	a.expect(t, `<block xmlns='urn:xmpp:blocking'>`, `bob@example.org`) // push

	b.send(t, `<message to='alice@example.org' id='m1' type='chat'><body>hi</body></message>`)
	b.expect(t, `id='m1'`, `service-unavailable`)
	a.quiet(t, `id='m1'`)
	a.send(t, `<message to='bob@example.org' id='m2' type='chat'><body>hi</body></message>`)
	a.expect(t, `id='m2'`, `not-acceptable`, `urn:xmpp:blocking:errors`)

	a.send(t, `<iq type='set' id='ub'><unblock xmlns='urn:xmpp:blocking'/></iq>`)
	a.expect(t, `id='ub'`, `type='result'`)
	b.send(t, `<message to='alice@example.org' id='m3' type='chat'><body>hi</body></message>`)
	a.expect(t, `id='m3'`)
}

func TestServerAndAccountIQs(t *testing.T) {
	e := newEnv(t, "alice", "bob")
	a := e.login("alice", "a")
	b := e.login("bob", "b")
	cases := []struct{ send, want string }{
		{`<iq type='get' id='1' to='example.org'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>`, `urn:xmpp:blocking`},
		{`<iq type='get' id='2' to='example.org'><ping xmlns='urn:xmpp:ping'/></iq>`, `type='result'`},
		{`<iq type='get' id='3' to='example.org'><query xmlns='jabber:iq:version'/></iq>`, `<name>Aldis</name>`},
		{`<iq type='get' id='4' to='example.org'><time xmlns='urn:xmpp:time'/></iq>`, `<utc>`},
		{`<iq type='get' id='5' to='example.org'><unknown xmlns='urn:example:nothing'/></iq>`, `service-unavailable`},
		{`<iq type='set' id='6' to='example.org'><query xmlns='jabber:iq:version'/></iq>`, `feature-not-implemented`},
		{`<iq type='set' id='7'><vCard xmlns='vcard-temp'><FN>Alice</FN></vCard></iq>`, `type='result'`},
		{`<iq type='get' id='8'><vCard xmlns='vcard-temp'/></iq>`, `<FN>Alice</FN>`},
		{`<iq type='set' id='9'><query xmlns='jabber:iq:private'><prefs xmlns='urn:example:prefs'><x>1</x></prefs></query></iq>`, `type='result'`},
		{`<iq type='get' id='10'><query xmlns='jabber:iq:private'><prefs xmlns='urn:example:prefs'/></query></iq>`, `<x>1</x>`},
		{`<iq type='get' id='11'><query xmlns='jabber:iq:private'><x xmlns='jabber:iq:roster'/></query></iq>`, `not-acceptable`},
		{`<iq type='get' id='12' to='alice@example.org'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>`, `category='account'`},
		{`<message id='13' to='example.org'><body>hello server</body></message>`, `service-unavailable`},
	}
	for _, c := range cases {
		a.send(t, c.send)
		el, _ := wire.ParseElement(c.send)
		a.expect(t, `id='`+el.Attr("id")+`'`, c.want)
	}
	// Others may read a vCard, via the server, but not private storage.
	b.send(t, `<iq type='get' id='v' to='alice@example.org'><vCard xmlns='vcard-temp'/></iq>`)
	b.expect(t, `id='v'`, `<FN>Alice</FN>`, `from='alice@example.org'`)
	b.send(t, `<iq type='get' id='p' to='alice@example.org'><query xmlns='jabber:iq:private'><prefs xmlns='urn:example:prefs'/></query></iq>`)
	b.expect(t, `id='p'`, `service-unavailable`)
	// An iq to an unknown resource bounces.
	b.send(t, `<iq type='get' id='q' to='alice@example.org/nope'><ping xmlns='urn:xmpp:ping'/></iq>`)
	b.expect(t, `id='q'`, `service-unavailable`)
	// Password change through XEP-0077.
	a.send(t, `<iq type='set' id='pw' to='example.org'><query xmlns='jabber:iq:register'><username>alice</username><password>a-new-password</password></query></iq>`)
	a.expect(t, `id='pw'`, `type='result'`)
}

func TestDirectedPresence(t *testing.T) {
	e := newEnv(t, "alice", "bob")
	a := e.login("alice", "a")
	b := e.login("bob", "b")
	a.online(t)
	b.online(t)
	a.send(t, `<presence to='bob@example.org/b'><status>psst</status></presence>`)
	b.expect(t, `psst`)
	a.b.Unbind()
	b.expect(t, `type='unavailable'`, `from='alice@example.org/a'`)
}

func TestIdleHubRetiresAndReturns(t *testing.T) {
	e := newEnvIdle(t, 20*time.Millisecond, "alice", "bob")
	a := e.login("alice", "a")
	a.online(t)
	b := e.login("bob", "b")
	b.b.Unbind()
	deadline := time.Now().Add(3 * time.Second)
	for e.r.hubCount.Load() != 1 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := e.r.hubCount.Load(); n != 1 {
		t.Fatalf("%d hubs after bob left, want 1 (alice's)", n)
	}
	// A retired hub comes back for the next event: the message is stored.
	a.send(t, `<message to='bob@example.org' type='chat' id='late'><body>x</body></message>`)
	b2 := e.login("bob", "b")
	b2.send(t, `<presence/>`)
	b2.expect(t, `id='late'`, `urn:xmpp:delay`)
}

// echoService records what it receives and answers messages.
type echoService struct {
	r  *Router
	ch chan string
}

func (s *echoService) Route(st *wire.Element, from, to jid.JID) {
	s.ch <- st.String()
	if st.Local() == "message" && st.Attr("type") != "error" {
		reply := wire.New("message", "")
		reply.SetAttr("from", to.String())
		reply.SetAttr("to", from.String())
		reply.SetAttr("id", "echo")
		s.r.Deliver(reply, to, from)
	}
}

func (s *echoService) Identity() (string, string, string) { return "conference", "text", "Rooms" }

func TestServiceHook(t *testing.T) {
	e := newEnv(t, "alice")
	svc := &echoService{r: e.r, ch: make(chan string, 16)}
	if err := e.r.AddService("rooms.example.org", svc); err != nil {
		t.Fatal(err)
	}
	if err := e.r.AddService("example.org", svc); err == nil {
		t.Fatal("a service took over the server's own domain")
	}
	a := e.login("alice", "a")
	a.online(t)
	a.send(t, `<iq type='get' id='items' to='example.org'><query xmlns='http://jabber.org/protocol/disco#items'/></iq>`)
	a.expect(t, `id='items'`, `jid='rooms.example.org'`, `name='Rooms'`)

	a.send(t, `<message to='room@rooms.example.org' id='m'><body>hi</body></message>`)
	if got := <-svc.ch; !strings.Contains(got, `from='alice@example.org/a'`) {
		t.Errorf("service got %s", got)
	}
	a.expect(t, `id='echo'`, `from='room@rooms.example.org'`)

	// Directed presence to the service is tracked: it hears the session go.
	a.send(t, `<presence to='room@rooms.example.org/nick'/>`)
	<-svc.ch
	a.b.Unbind()
	select {
	case got := <-svc.ch:
		if !strings.Contains(got, `type='unavailable'`) {
			t.Errorf("service got %s, want unavailable", got)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("service never heard the session go away")
	}
}

func TestCarbons(t *testing.T) {
	e := newEnv(t, "alice", "bob")
	a1 := e.login("alice", "one")
	a2 := e.login("alice", "two")
	a3 := e.login("alice", "three") // never enables carbons
	b := e.login("bob", "b")
	for _, c := range []*client{a1, a2, a3, b} {
		c.online(t)
	}
	for _, c := range []*client{a1, a2} {
		c.send(t, `<iq type='set' id='cc'><enable xmlns='urn:xmpp:carbons:2'/></iq>`)
		c.expect(t, `id='cc'`, `type='result'`)
	}
	b.send(t, `<message to='alice@example.org/one' type='chat' id='in'><body>hi alice</body></message>`)
	a1.expect(t, `id='in'`)
	got := a2.expect(t, `<received xmlns='urn:xmpp:carbons:2'>`, `id='in'`)
	if !strings.Contains(got, `to='alice@example.org/two'`) || !strings.Contains(got, `<forwarded xmlns='urn:xmpp:forward:0'>`) {
		t.Errorf("received carbon: %s", got)
	}
	a3.quiet(t, `id='in'`)

	a1.send(t, `<message to='bob@example.org' type='chat' id='out'><body>hi bob</body></message>`)
	b.expect(t, `id='out'`)
	a2.expect(t, `<sent xmlns='urn:xmpp:carbons:2'>`, `id='out'`, `from='alice@example.org/one'`)
	a1.quiet(t, `<sent`)

	// <private/> opts a message out.
	a1.send(t, `<message to='bob@example.org' type='chat' id='priv'><body>x</body><private xmlns='urn:xmpp:carbons:2'/></message>`)
	b.expect(t, `id='priv'`)
	a2.quiet(t, `id='priv'`)

	// A private message through a room (muc#user <x/>) is not copied
	// either way: the other devices are not in the room (XEP-0280 §6).
	a1.send(t, `<message to='bob@example.org/b' type='chat' id='mucpm'><body>x</body><x xmlns='http://jabber.org/protocol/muc#user'/></message>`)
	b.expect(t, `id='mucpm'`)
	a2.quiet(t, `id='mucpm'`)
	b.send(t, `<message to='alice@example.org/one' type='chat' id='mucpm2'><body>x</body><x xmlns='http://jabber.org/protocol/muc#user'/></message>`)
	a1.expect(t, `id='mucpm2'`)
	a2.quiet(t, `id='mucpm2'`)

	a2.send(t, `<iq type='set' id='cd'><disable xmlns='urn:xmpp:carbons:2'/></iq>`)
	a2.expect(t, `id='cd'`, `type='result'`)
	b.send(t, `<message to='alice@example.org/one' type='chat' id='in2'><body>again</body></message>`)
	a1.expect(t, `id='in2'`)
	a2.quiet(t, `id='in2'`)
}

func TestServiceEdgeCases(t *testing.T) {
	e := newEnv(t, "alice")
	svc := &echoService{r: e.r, ch: make(chan string, 16)}
	if err := e.r.AddService("rooms.example.org", svc); err != nil {
		t.Fatal(err)
	}
	a := e.login("alice", "a")
	// A join before initial presence is still tracked.
	a.send(t, `<presence to='room@rooms.example.org/nick'/>`)
	<-svc.ch
	a.b.Unbind()
	if got := <-svc.ch; !strings.Contains(got, `type='unavailable'`) {
		t.Fatalf("service got %s, want unavailable", got)
	}
	// A room's private message to a resource that has gone bounces to the
	// room instead of reaching another resource or offline storage.
	a2 := e.login("alice", "other")
	a2.online(t)
	pm := wire.New("message", "")
	pm.SetAttr("from", "room@rooms.example.org/bob")
	pm.SetAttr("to", "alice@example.org/a")
	pm.SetAttr("type", "chat")
	pm.AddChild(wire.New("body", "")).AddText("psst")
	e.r.Deliver(pm, jid.MustParse("room@rooms.example.org/bob"), jid.MustParse("alice@example.org/a"))
	if got := <-svc.ch; !strings.Contains(got, `type='error'`) || !strings.Contains(got, `service-unavailable`) {
		t.Fatalf("service got %s, want a service-unavailable bounce", got)
	}
	a2.quiet(t, `psst`)
}

// fakeArchive numbers what it records and answers queries with one result.
type fakeArchive struct {
	mu      sync.Mutex
	records []string // "owner|with|outgoing"
}

func (f *fakeArchive) Record(owner, with jid.JID, st *wire.Element, outgoing bool) string {
	if st.Attr("type") != "chat" {
		return ""
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.records = append(f.records, owner.String()+"|"+with.String()+"|"+map[bool]string{true: "out", false: "in"}[outgoing])
	return "arch-" + owner.Local()
}

func (f *fakeArchive) HandleIQ(_ context.Context, owner, requester jid.JID, st *wire.Element, send func(*wire.Element)) {
	res := wire.New("message", "")
	res.SetAttr("to", requester.String())
	res.SetAttr("id", "archived-result")
	send(res)
	send(stanza.Result(st))
}

func (f *fakeArchive) got() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.records...)
}

func TestArchiveHooks(t *testing.T) {
	e := newEnv(t, "alice", "bob")
	arch := &fakeArchive{}
	e.r.cfg.Archive = arch
	a := e.login("alice", "a")
	b := e.login("bob", "b")
	a.online(t)
	b.online(t)
	a.send(t, `<message to='bob@example.org' type='chat' id='m1'><body>hi</body><stanza-id xmlns='urn:xmpp:sid:0' by='bob@example.org' id='forged'/></message>`)
	got := b.expect(t, `id='m1'`)
	if !strings.Contains(got, `<stanza-id xmlns='urn:xmpp:sid:0' by='bob@example.org' id='arch-bob'/>`) || strings.Contains(got, "forged") {
		t.Errorf("delivered: %s", got)
	}
	want := []string{"alice@example.org|bob@example.org|out", "bob@example.org|alice@example.org|in"}
	if r := arch.got(); len(r) != 2 || r[0] != want[0] || r[1] != want[1] {
		t.Errorf("records = %v, want %v", r, want)
	}
	// Groupchat-typed and headline messages are not stamped.
	a.send(t, `<message to='bob@example.org' type='headline' id='m2'><body>news</body></message>`)
	if got := b.expect(t, `id='m2'`); strings.Contains(got, "stanza-id") {
		t.Errorf("headline stamped: %s", got)
	}
	b.send(t, `<iq type='set' id='q'><query xmlns='urn:xmpp:mam:2'/></iq>`)
	b.expect(t, `id='archived-result'`)
	b.expect(t, `id='q'`, `type='result'`)
	b.send(t, `<iq type='get' id='d' to='bob@example.org'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>`)
	b.expect(t, `id='d'`, `urn:xmpp:mam:2`)
}

// TestPresenceThenMessageInOrder: a presence passes through the sender's
// hub and a message need not; the recipient must still get them in the
// order they were sent (RFC 6120 §10.1).
func TestPresenceThenMessageInOrder(t *testing.T) {
	e := newEnv(t, "alice", "bob")
	befriend(t, e, "alice", "bob")
	a := e.login("alice", "a")
	b := e.login("bob", "b")
	b.online(t)
	a.online(t)
	b.expect(t, `<presence`, `from='alice@example.org/a'`)
	// Alice's hub may also answer bob's earlier probe: let that second
	// initial presence arrive before the rounds start.
	for drained := false; !drained; {
		select {
		case st := <-b.ch:
			if !strings.HasPrefix(st, "<presence") || strings.Contains(st, "<status>") {
				t.Fatalf("unexpected %s", st)
			}
		case <-time.After(300 * time.Millisecond):
			drained = true
		}
	}
	for i := range 100 {
		a.send(t, fmt.Sprintf(`<presence><status>s%d</status></presence>`, i))
		a.send(t, fmt.Sprintf(`<message to='bob@example.org/b' type='chat' id='m%d'><body>x</body></message>`, i))
	}
	for i := range 100 {
		p := b.expect(t, `from='alice@example.org/a'`)
		if !strings.Contains(p, fmt.Sprintf("<status>s%d</status>", i)) {
			t.Fatalf("round %d: got %s before the presence", i, p)
		}
		if m := b.expect(t, `from='alice@example.org/a'`); !strings.Contains(m, fmt.Sprintf("id='m%d'", i)) {
			t.Fatalf("round %d: got %s, want message m%d", i, m, i)
		}
	}
}

// TestDeliverRaw covers a room's broadcast: the session gets the bytes the
// room serialised, the shared element is not changed, and a recipient that
// is gone, or that blocks the room, bounces an addressed error to it.
func TestDeliverRaw(t *testing.T) {
	e := newEnv(t, "alice")
	svc := &echoService{r: e.r, ch: make(chan string, 16)}
	if err := e.r.AddService("rooms.example.org", svc); err != nil {
		t.Fatal(err)
	}
	a := e.login("alice", "a")
	a.online(t)
	occ := jid.MustParse("room@rooms.example.org/nick")
	m := wire.New("message", "")
	m.SetAttr("from", occ.String()).SetAttr("type", "groupchat").SetAttr("id", "g1")
	m.AddChild(wire.New("body", "")).AddText("hi all")
	raw := func(to string) []byte { return wire.NewTemplate(m, "to").Append(nil, to) }

	e.r.DeliverRaw(m, raw("alice@example.org/a"), occ, jid.MustParse("alice@example.org/a"))
	if got, want := a.expect(t, `id='g1'`), string(raw("alice@example.org/a")); got != want {
		t.Fatalf("session got %s, want the room's bytes %s", got, want)
	}

	e.r.DeliverRaw(m, raw("alice@example.org/gone"), occ, jid.MustParse("alice@example.org/gone"))
	if got := <-svc.ch; !strings.Contains(got, `type='error'`) || !strings.Contains(got, `service-unavailable`) ||
		!strings.Contains(got, `from='alice@example.org/gone'`) || !strings.Contains(got, `to='room@rooms.example.org/nick'`) {
		t.Fatalf("room got %s, want service-unavailable from the gone resource", got)
	}

	a.send(t, `<iq type='set' id='bk'><block xmlns='urn:xmpp:blocking'><item jid='room@rooms.example.org'/></block></iq>`)
	a.expect(t, `id='bk'`, `type='result'`)
	if got := <-svc.ch; !strings.Contains(got, `type='unavailable'`) {
		t.Fatalf("room got %s, want the unavailable presence blocking sends", got)
	}
	e.r.DeliverRaw(m, raw("alice@example.org/a"), occ, jid.MustParse("alice@example.org/a"))
	if got := <-svc.ch; !strings.Contains(got, `service-unavailable`) || !strings.Contains(got, `from='alice@example.org/a'`) {
		t.Fatalf("room got %s, want service-unavailable for a blocked room", got)
	}
	a.quiet(t, `id='g1'`)
	if m.Attr("to") != "" {
		t.Fatalf("the shared element was addressed: %s", m)
	}
}

// orderSession records the ids of the groupchat messages it is sent.
type orderSession struct {
	mu  sync.Mutex
	ids []string
	n   int // everything sent
}

func (o *orderSession) Send(b []byte) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.n++
	if st, err := wire.ParseElement(string(b)); err == nil && st.Attr("type") == "groupchat" {
		o.ids = append(o.ids, st.Attr("id"))
	}
	return true
}

func (o *orderSession) Close(string, string) {}

// TestDeliverRawOrder: a room's messages reach an occupant in the order
// the room sent them, whether the occupant's hub is idle (delivered on the
// room's goroutine) or busy with other traffic (queued behind it).
func TestDeliverRawOrder(t *testing.T) {
	e := newEnv(t, "alice", "bob")
	sink := &orderSession{}
	if _, err := e.r.Bind(context.Background(), jid.MustParse("alice@example.org"), "a", sink); err != nil {
		t.Fatal(err)
	}
	b := e.login("bob", "b")
	b.online(t)
	occ := jid.MustParse("room@rooms.example.org/nick")
	to := jid.MustParse("alice@example.org/a")
	const n = 2000
	done := make(chan struct{})
	go func() { // keeps alice's hub busy now and then
		defer close(done)
		for i := range n / 4 {
			b.send(t, fmt.Sprintf(`<message to='alice@example.org/a' type='chat' id='c%d'><body>x</body></message>`, i))
		}
	}()
	for i := range n {
		if i%20 == 0 {
			time.Sleep(200 * time.Microsecond) // let the hub go idle now and then
		}
		m := wire.New("message", "")
		m.SetAttr("from", occ.String()).SetAttr("type", "groupchat").SetAttr("id", fmt.Sprint(i))
		e.r.DeliverRaw(m, wire.NewTemplate(m, "to").Append(nil, to.String()), occ, to)
	}
	<-done
	deadline := time.Now().Add(5 * time.Second)
	for {
		sink.mu.Lock()
		got := slices.Clone(sink.ids)
		sink.mu.Unlock()
		if len(got) == n {
			for i, id := range got {
				if id != fmt.Sprint(i) {
					t.Fatalf("message %d arrived as number %s", i, id)
				}
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d messages arrived", len(got), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
