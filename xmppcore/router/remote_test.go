package router

import (
	"strings"
	"testing"
	"time"

	"github.com/aldis-im/aldis/xmppcore/jid"
	"github.com/aldis-im/aldis/xmppcore/wire"
)

// fakeRemote records what the router hands to the s2s side.
type fakeRemote struct{ ch chan string }

func (f *fakeRemote) Send(st *wire.Element, from, to jid.JID) {
	f.ch <- from.String() + " " + to.String() + " " + st.String()
}

func (f *fakeRemote) expect(t *testing.T, parts ...string) {
	t.Helper()
	deadline := time.After(3 * time.Second)
	for {
		select {
		case s := <-f.ch:
			ok := true
			for _, p := range parts {
				ok = ok && strings.Contains(s, p)
			}
			if ok {
				return
			}
		case <-deadline:
			t.Fatalf("nothing sent to the remote side with %q", parts)
		}
	}
}

// inject parses raw as a stanza from a remote server and injects it.
func inject(t *testing.T, r *Router, raw string) {
	t.Helper()
	el, err := wire.ParseElement(raw)
	if err != nil {
		t.Fatal(err)
	}
	r.Inject(el, jid.MustParse(el.Attr("from")), jid.MustParse(el.Attr("to")))
}

func TestRemoteRouting(t *testing.T) {
	e := newEnv(t, "alice")
	rm := &fakeRemote{ch: make(chan string, 64)}
	e.r.SetRemote(rm)
	a := e.login("alice", "a")
	a.online(t)

	// Messages and iqs to other domains go to the remote side.
	a.send(t, `<message to='carol@remote.example' id='m1'><body>hi</body></message>`)
	rm.expect(t, "alice@example.org/a carol@remote.example", "id='m1'")

	// From a remote user: delivered like from a local one.
	inject(t, e.r, `<message from='carol@remote.example/x' to='alice@example.org' type='chat' id='m2'><body>yo</body></message>`)
	a.expect(t, "id='m2'", "from='carol@remote.example/x'")

	// Subscription both ways update the roster, and presence flows.
	a.send(t, `<presence to='carol@remote.example' type='subscribe'/>`)
	rm.expect(t, "type='subscribe'", "from='alice@example.org'")
	inject(t, e.r, `<presence from='carol@remote.example' to='alice@example.org' type='subscribed'/>`)
	a.expect(t, "type='subscribed'")
	inject(t, e.r, `<presence from='carol@remote.example/x' to='alice@example.org'/>`)
	a.expect(t, "<presence", "from='carol@remote.example/x'")

	inject(t, e.r, `<presence from='carol@remote.example' to='alice@example.org' type='subscribe'/>`)
	a.expect(t, "type='subscribe'", "from='carol@remote.example'")
	a.send(t, `<presence to='carol@remote.example' type='subscribed'/>`)
	rm.expect(t, "type='subscribed'")
	rm.expect(t, "<presence", "from='alice@example.org/a'", "to='carol@remote.example'")

	// A probe from the contact is answered.
	inject(t, e.r, `<presence from='carol@remote.example' to='alice@example.org' type='probe'/>`)
	rm.expect(t, "alice@example.org/a carol@remote.example", "<presence")

	// The server answers pings; unknown users bounce back to the remote side.
	inject(t, e.r, `<iq from='remote.example' to='example.org' type='get' id='p1'><ping xmlns='urn:xmpp:ping'/></iq>`)
	rm.expect(t, "example.org remote.example", "type='result'", "id='p1'")
	inject(t, e.r, `<message from='carol@remote.example' to='nobody@example.org' id='m3'><body>?</body></message>`)
	rm.expect(t, "id='m3'", "service-unavailable")
}

// A domain with its own carrier (a constrained link) gets its stanzas
// there; other domains still go to the default remote, and without a
// default they bounce.
func TestRemoteForDomain(t *testing.T) {
	e := newEnv(t, "alice")
	link := &fakeRemote{ch: make(chan string, 64)}
	e.r.SetRemoteFor("ship.example", link)
	a := e.login("alice", "a")
	a.online(t)

	a.send(t, `<message to='bob@ship.example' id='l1'><body>ahoy</body></message>`)
	link.expect(t, "alice@example.org/a bob@ship.example", "id='l1'")
	a.send(t, `<message to='carol@remote.example' id='r1'><body>hi</body></message>`)
	a.expect(t, "id='r1'", "remote-server-not-found")

	def := &fakeRemote{ch: make(chan string, 64)}
	e.r.SetRemote(def)
	a.send(t, `<message to='carol@remote.example' id='r2'><body>hi</body></message>`)
	def.expect(t, "carol@remote.example", "id='r2'")
	a.send(t, `<message to='bob@ship.example' id='l2'><body>again</body></message>`)
	link.expect(t, "bob@ship.example", "id='l2'")
	select {
	case s := <-def.ch:
		t.Fatalf("the link's domain reached the default remote: %s", s)
	default:
	}
}

// A domain behind a slow link gets its own wait for answers to the
// server's queries: shorter here, so the test sees it end.
func TestQueryTimeoutPerDomain(t *testing.T) {
	e := newEnv(t, "alice")
	e.r.SetRemoteFor("ship.example", &fakeRemote{ch: make(chan string, 64)})
	e.r.SetQueryTimeout("ship.example", 50*time.Millisecond)
	got := make(chan *wire.Element, 1)
	e.r.query(e.r.Domain(), jid.MustParse("ship.example"), wire.New("query", "http://jabber.org/protocol/disco#info"),
		func(ans *wire.Element) { got <- ans })
	select {
	case ans := <-got:
		if ans != nil {
			t.Fatalf("answer %s, want the timeout's nil", ans)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the per-domain timeout did not apply (the default is 30 s)")
	}
}
