package muc

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aldis-im/aldis/core/store/sqlite"
	"github.com/aldis-im/aldis/xmppcore/jid"
	"github.com/aldis-im/aldis/xmppcore/stanza"
	"github.com/aldis-im/aldis/xmppcore/wire"
)

const (
	domain  = "conference.example.org"
	room1   = "coven@conference.example.org"
	timeout = 3 * time.Second
)

// fakeRouter records what the service delivers, per recipient, in order.
type fakeRouter struct {
	mu    sync.Mutex
	inbox map[jid.JID][]*wire.Element
	errs  []string
	wake  chan struct{}
}

func (f *fakeRouter) Deliver(st *wire.Element, from, to jid.JID) {
	f.mu.Lock()
	defer f.mu.Unlock()
	// The stanza must say what the router is told, or the hub would
	// deliver something else than what was routed.
	if st.Attr("to") != to.String() || st.Attr("from") != from.String() {
		f.errs = append(f.errs, fmt.Sprintf("Deliver(from=%s, to=%s) of %s", from, to, st))
	}
	// Serialise now: a later change to a shared element would show here.
	el, err := wire.ParseElement(st.String())
	if err != nil {
		f.errs = append(f.errs, fmt.Sprintf("undecodable stanza %s: %v", st, err))
		return
	}
	f.inbox[to] = append(f.inbox[to], el)
	select {
	case f.wake <- struct{}{}:
	default:
	}
}

// DeliverRaw records what the room serialised itself, after checking that
// it says the same as st addressed to to (attributes in any order).
func (f *fakeRouter) DeliverRaw(st *wire.Element, raw []byte, from, to jid.JID) {
	if st.Attr("to") != "" {
		f.mu.Lock()
		f.errs = append(f.errs, fmt.Sprintf("DeliverRaw of %s, which has a to", st))
		f.mu.Unlock()
	}
	st = st.WithAttr("to", to.String())
	el, err := wire.ParseElement(string(raw))
	f.mu.Lock()
	switch {
	case err != nil:
		f.errs = append(f.errs, fmt.Sprintf("undecodable raw stanza %s: %v", raw, err))
	case len(el.Attrs) != len(st.Attrs):
		f.errs = append(f.errs, fmt.Sprintf("raw %s differs from %s", raw, st))
	default:
		for _, a := range st.Attrs {
			if el.Attr(a.Name) != a.Value {
				f.errs = append(f.errs, fmt.Sprintf("raw %s differs from %s in %s", raw, st, a.Name))
			}
		}
		var x, y []byte
		for _, n := range el.Nodes {
			x = append(x, (&wire.Element{Nodes: []wire.Node{n}}).Append(nil)...)
		}
		for _, n := range st.Nodes {
			y = append(y, (&wire.Element{Nodes: []wire.Node{n}}).Append(nil)...)
		}
		if string(x) != string(y) {
			f.errs = append(f.errs, fmt.Sprintf("raw %s differs from %s in content", raw, st))
		}
	}
	f.mu.Unlock()
	f.Deliver(st, from, to)
}

// env is a service with a fake router and an in-memory store.
type env struct {
	t   *testing.T
	svc *Service
	rt  *fakeRouter
	db  *sqlite.DB
	now time.Time
	nmu sync.Mutex
}

func newEnv(t *testing.T, mod ...func(*Config)) *env {
	t.Helper()
	db, err := sqlite.OpenMemory(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	e := &env{t: t, db: db, now: time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)}
	e.start(mod...)
	return e
}

// start (re)creates the service on the same store, as a restart does.
func (e *env) start(mod ...func(*Config)) {
	e.t.Helper()
	e.rt = &fakeRouter{inbox: map[jid.JID][]*wire.Element{}, wake: make(chan struct{}, 1)}
	cfg := Config{Domain: domain, ServerDomain: "example.org", Router: e.rt, Store: e.db, History: 20,
		MaxOccupants: 100, Now: e.clock}
	for _, m := range mod {
		m(&cfg)
	}
	svc, err := New(e.t.Context(), cfg)
	if err != nil {
		e.t.Fatal(err)
	}
	e.svc = svc
	e.t.Cleanup(func() {
		_ = svc.Close(e.t.Context())
		e.rt.mu.Lock()
		defer e.rt.mu.Unlock()
		for _, s := range e.rt.errs {
			e.t.Error(s)
		}
	})
}

func (e *env) clock() time.Time {
	e.nmu.Lock()
	defer e.nmu.Unlock()
	return e.now
}

func (e *env) advance(d time.Duration) {
	e.nmu.Lock()
	e.now = e.now.Add(d)
	e.nmu.Unlock()
}

// user is one client session.
type user struct {
	e   *env
	jid jid.JID
}

func (e *env) user(full string) *user { return &user{e: e, jid: jid.MustParse(full)} }

// send routes raw XML from u, as the router would after stamping from.
func (u *user) send(raw string) {
	u.e.t.Helper()
	st, err := wire.ParseElement(raw)
	if err != nil {
		u.e.t.Fatalf("bad test stanza %q: %v", raw, err)
	}
	st.SetAttr("from", u.jid.String())
	to, err := jid.Parse(st.Attr("to"))
	if err != nil {
		u.e.t.Fatalf("bad to in %q: %v", raw, err)
	}
	u.e.svc.Route(st, u.jid, to)
}

// next waits for the next stanza delivered to u.
func (u *user) next() *wire.Element {
	u.e.t.Helper()
	deadline := time.After(timeout)
	for {
		u.e.rt.mu.Lock()
		if q := u.e.rt.inbox[u.jid]; len(q) > 0 {
			u.e.rt.inbox[u.jid] = q[1:]
			u.e.rt.mu.Unlock()
			return q[0]
		}
		u.e.rt.mu.Unlock()
		select {
		case <-u.e.rt.wake:
		case <-time.After(10 * time.Millisecond):
		case <-deadline:
			u.e.t.Fatalf("%s: nothing delivered within %v", u.jid, timeout)
		}
	}
}

// sync waits until the room has handled everything u sent before: the
// room answers a ping in order.
func (u *user) sync(room string) {
	u.e.t.Helper()
	id := fmt.Sprintf("sync-%d", time.Now().UnixNano())
	u.send(fmt.Sprintf("<iq type='get' id='%s' to='%s'><ping xmlns='urn:xmpp:ping'/></iq>", id, room))
	var kept []*wire.Element
	for {
		st := u.next()
		if st.Local() == "iq" && st.Attr("id") == id {
			break
		}
		kept = append(kept, st)
	}
	u.e.rt.mu.Lock()
	u.e.rt.inbox[u.jid] = append(kept, u.e.rt.inbox[u.jid]...)
	u.e.rt.mu.Unlock()
}

// drain returns everything delivered to u so far (after a sync).
func (u *user) drain() []*wire.Element {
	u.e.rt.mu.Lock()
	defer u.e.rt.mu.Unlock()
	q := u.e.rt.inbox[u.jid]
	delete(u.e.rt.inbox, u.jid)
	return q
}

// none checks that nothing more arrived for u once room has caught up.
func (u *user) none(room string) {
	u.e.t.Helper()
	u.sync(room)
	if q := u.drain(); len(q) > 0 {
		u.e.t.Errorf("%s got unexpected stanzas:\n%s", u.jid, dump(q))
	}
}

func dump(q []*wire.Element) string {
	var b strings.Builder
	for _, st := range q {
		b.WriteString("  " + st.String() + "\n")
	}
	return b.String()
}

// expect waits for the next stanza to u and checks it with want.
func (u *user) expect(what string, want func(*wire.Element) string) *wire.Element {
	u.e.t.Helper()
	st := u.next()
	if msg := want(st); msg != "" {
		u.e.t.Fatalf("%s: %s: %s in %s", u.jid, what, msg, st)
	}
	return st
}

// join sends a join presence to room/nick with extra inside the muc <x/>.
func (u *user) join(roomNick, extra string) {
	u.send(fmt.Sprintf("<presence to='%s'><x xmlns='%s'>%s</x></presence>", roomNick, NS, extra))
}

// Stanza checks: each returns "" or what is wrong.

func all(checks ...func(*wire.Element) string) func(*wire.Element) string {
	return func(st *wire.Element) string {
		for _, c := range checks {
			if msg := c(st); msg != "" {
				return msg
			}
		}
		return ""
	}
}

func isPres(typ, from string) func(*wire.Element) string {
	return func(st *wire.Element) string {
		if st.Local() != "presence" || st.Attr("type") != typ || (from != "" && st.Attr("from") != from) {
			return fmt.Sprintf("want presence type=%q from %s", typ, from)
		}
		return ""
	}
}

func isMsg(typ, from string) func(*wire.Element) string {
	return func(st *wire.Element) string {
		if st.Local() != "message" || st.Attr("type") != typ || st.Attr("from") != from {
			return fmt.Sprintf("want message type=%q from %s", typ, from)
		}
		return ""
	}
}

func isResult(id string) func(*wire.Element) string {
	return func(st *wire.Element) string {
		if st.Local() != "iq" || st.Attr("type") != "result" || (id != "" && st.Attr("id") != id) {
			return fmt.Sprintf("want iq result id=%q", id)
		}
		return ""
	}
}

// isError checks a stanza error's kind, type and condition.
func isError(kind, typ, cond string) func(*wire.Element) string {
	return func(st *wire.Element) string {
		er := st.Child("error", "")
		if st.Local() != kind || st.Attr("type") != "error" || er == nil || er.Attr("type") != typ ||
			er.Child(cond, stanza.NSStanzaErr) == nil {
			return fmt.Sprintf("want %s error %s/%s", kind, typ, cond)
		}
		return ""
	}
}

// codes checks the muc#user status codes, in any order.
func codes(want ...string) func(*wire.Element) string {
	return func(st *wire.Element) string {
		var got []string
		if x := st.Child("x", NSUser); x != nil {
			for c := range x.Elements() {
				if c.Local() == "status" {
					got = append(got, c.Attr("code"))
				}
			}
		}
		slices.Sort(got)
		w := slices.Clone(want)
		slices.Sort(w)
		if !slices.Equal(got, w) {
			return fmt.Sprintf("status codes %v, want %v", got, w)
		}
		return ""
	}
}

// item checks the muc#user item's attributes; "-" means absent.
func item(attrs ...string) func(*wire.Element) string {
	return func(st *wire.Element) string {
		x := st.Child("x", NSUser)
		if x == nil || x.Child("item", "") == nil {
			return "no muc#user item"
		}
		it := x.Child("item", "")
		for i := 0; i+1 < len(attrs); i += 2 {
			name, want := attrs[i], attrs[i+1]
			if want == "-" {
				if it.HasAttr(name) {
					return fmt.Sprintf("item has %s=%q, want none", name, it.Attr(name))
				}
				continue
			}
			if got := it.Attr(name); got != want {
				return fmt.Sprintf("item %s=%q, want %q", name, got, want)
			}
		}
		return ""
	}
}

func body(want string) func(*wire.Element) string {
	return func(st *wire.Element) string {
		if got := st.ChildText("body", ""); got != want {
			return fmt.Sprintf("body %q, want %q", got, want)
		}
		return ""
	}
}

// create makes an instant room owned by u with nick, and drains u.
func (u *user) create(room, nick string) {
	u.e.t.Helper()
	u.join(room+"/"+nick, "")
	u.expect("creator's self-presence", all(isPres("", room+"/"+nick), codes("110", "201"), item("affiliation", "owner", "role", "moderator")))
	u.expect("empty subject", isMsg("groupchat", room))
	u.send(fmt.Sprintf("<iq type='set' id='inst' to='%s'><query xmlns='%s'><x xmlns='jabber:x:data' type='submit'/></query></iq>", room, NSOwner))
	u.expect("instant room result", isResult("inst"))
}

// enter joins an existing room and drains what the join sends.
func (u *user) enter(room, nick string) {
	u.e.t.Helper()
	u.join(room+"/"+nick, "<history maxstanzas='0'/>")
	u.enterDrain(room)
}

// configure submits fields to the room's configuration form.
func (u *user) configure(room string, fields map[string]string) *wire.Element {
	u.e.t.Helper()
	var b strings.Builder
	for k, v := range fields {
		fmt.Fprintf(&b, "<field var='%s'><value>%s</value></field>", k, v)
	}
	u.send(fmt.Sprintf("<iq type='set' id='cfg' to='%s'><query xmlns='%s'><x xmlns='jabber:x:data' type='submit'>"+
		"<field var='FORM_TYPE'><value>%s</value></field>%s</x></query></iq>", room, NSOwner, NSRoomConfig, b.String()))
	var res *wire.Element
	for res == nil {
		if st := u.next(); st.Local() == "iq" && st.Attr("id") == "cfg" {
			res = st
		}
	}
	// Drop the configuration change notice (status 104) that follows.
	u.sync(room)
	u.e.rt.mu.Lock()
	var kept []*wire.Element
	for _, st := range u.e.rt.inbox[u.jid] {
		if st.Local() == "message" && st.Attr("from") == room && st.Child("x", NSUser) != nil {
			continue
		}
		kept = append(kept, st)
	}
	u.e.rt.inbox[u.jid] = kept
	u.e.rt.mu.Unlock()
	return res
}

// enterDrain reads what a join u already sent brings, up to the subject.
func (u *user) enterDrain(room string) {
	u.e.t.Helper()
	for {
		st := u.next()
		if st.Local() == "message" && st.Child("subject", "") != nil {
			return
		}
		if st.Attr("type") == "error" {
			u.e.t.Fatalf("%s could not enter %s: %s", u.jid, room, st)
		}
	}
}
