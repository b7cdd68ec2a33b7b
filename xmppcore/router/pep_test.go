package router

import (
	"context"
	"strings"
	"testing"

	"github.com/aldis-im/aldis/core/store"
	"github.com/aldis-im/aldis/xmppcore/caps"
	"github.com/aldis-im/aldis/xmppcore/wire"
)

// discoResult is what a client that wants avatar notifications answers to
// a caps query.
const discoResult = `<query xmlns='http://jabber.org/protocol/disco#info'>` +
	`<identity category='client' type='pc' name='Test'/>` +
	`<feature var='http://jabber.org/protocol/disco#info'/>` +
	`<feature var='urn:xmpp:avatar:metadata+notify'/>` +
	`<feature var='urn:xmpp:bookmarks:1+notify'/></query>`

// capsOnline sends presence with caps and answers the server's disco#info
// query the first time a version is seen.
func (c *client) capsOnline(t *testing.T, ver string, answer bool) {
	t.Helper()
	c.send(t, `<presence><c xmlns='http://jabber.org/protocol/caps' hash='sha-1' node='https://test.example' ver='`+ver+`'/></presence>`)
	if !answer {
		return
	}
	q := c.expect(t, `<iq`, `type='get'`, `http://jabber.org/protocol/disco#info`, `node='https://test.example#`+ver+`'`)
	el, _ := wire.ParseElement(q)
	c.send(t, `<iq type='result' id='`+el.Attr("id")+`' to='example.org'>`+discoResult+`</iq>`)
}

func befriend(t *testing.T, e *env, a, b string) {
	t.Helper()
	ctx := context.Background()
	for _, p := range [][2]string{{a, b}, {b, a}} {
		if _, err := e.db.PutRosterItem(ctx, p[0]+"@example.org", store.RosterItem{Contact: p[1] + "@example.org", Subscription: "both"}); err != nil {
			t.Fatal(err)
		}
	}
}

func TestPEP(t *testing.T) {
	q, _ := wire.ParseElement(discoResult)
	ver := caps.Ver(q, "sha-1")
	e := newEnv(t, "alice", "bob", "carol")
	befriend(t, e, "alice", "bob")
	a := e.login("alice", "a")
	a2 := e.login("alice", "a2")
	b := e.login("bob", "b")
	c := e.login("carol", "c")
	a.online(t)
	a2.capsOnline(t, ver, true)
	b.capsOnline(t, ver, false) // same client: the server already knows this version
	c.capsOnline(t, ver, false)

	publish := `<iq type='set' id='pub'><pubsub xmlns='http://jabber.org/protocol/pubsub'><publish node='urn:xmpp:avatar:metadata'><item id='abc'><metadata xmlns='urn:xmpp:avatar:metadata'><info id='abc' bytes='1' type='image/png'/></metadata></item></publish></pubsub></iq>`
	a.send(t, publish)
	a.expect(t, `id='pub'`, `type='result'`, `<item id='abc'/>`)
	b.expect(t, `<event xmlns='http://jabber.org/protocol/pubsub#event'>`, `node='urn:xmpp:avatar:metadata'`, `from='alice@example.org'`)
	a2.expect(t, `<event`, `<item id='abc'>`) // the owner's other resource asked too
	c.quiet(t, `<event`)                      // not a contact: presence access model

	// Retrieval: contacts may, strangers may not.
	b.send(t, `<iq type='get' id='get' to='alice@example.org'><pubsub xmlns='http://jabber.org/protocol/pubsub'><items node='urn:xmpp:avatar:metadata'/></pubsub></iq>`)
	b.expect(t, `id='get'`, `type='result'`, `<item id='abc'>`)
	c.send(t, `<iq type='get' id='get2' to='alice@example.org'><pubsub xmlns='http://jabber.org/protocol/pubsub'><items node='urn:xmpp:avatar:metadata'/></pubsub></iq>`)
	c.expect(t, `id='get2'`, `presence-subscription-required`)
	c.send(t, `<iq type='set' id='pub2' to='alice@example.org'>`+strings.TrimPrefix(publish, `<iq type='set' id='pub'>`))
	c.expect(t, `id='pub2'`, `forbidden`)

	// A resource coming online later gets the last item at once.
	b2 := e.login("bob", "b2")
	b2.capsOnline(t, ver, false)
	b2.expect(t, `<event`, `<item id='abc'>`)

	// Bookmarks: whitelist through publish-options; only the owner sees them.
	a.send(t, `<iq type='set' id='bm'><pubsub xmlns='http://jabber.org/protocol/pubsub'><publish node='urn:xmpp:bookmarks:1'><item id='room@conference.example.org'><conference xmlns='urn:xmpp:bookmarks:1' autojoin='true'/></item></publish><publish-options><x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'><value>http://jabber.org/protocol/pubsub#publish-options</value></field><field var='pubsub#access_model'><value>whitelist</value></field><field var='pubsub#max_items'><value>max</value></field></x></publish-options></pubsub></iq>`)
	a.expect(t, `id='bm'`, `type='result'`)
	a2.expect(t, `<event`, `urn:xmpp:bookmarks:1`)
	b.quiet(t, `urn:xmpp:bookmarks:1`)
	b.send(t, `<iq type='get' id='bmget' to='alice@example.org'><pubsub xmlns='http://jabber.org/protocol/pubsub'><items node='urn:xmpp:bookmarks:1'/></pubsub></iq>`)
	b.expect(t, `id='bmget'`, `closed-node`)

	// On an existing node publish options are preconditions (XEP-0060
	// §7.1.5): a mismatch is refused, the client reconfigures and retries.
	openOpts := `<publish-options><x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'><value>http://jabber.org/protocol/pubsub#publish-options</value></field><field var='pubsub#access_model'><value>open</value></field></x></publish-options>`
	a.send(t, `<iq type='set' id='bm2'><pubsub xmlns='http://jabber.org/protocol/pubsub'><publish node='urn:xmpp:bookmarks:1'><item id='x@conference.example.org'><conference xmlns='urn:xmpp:bookmarks:1'/></item></publish>`+openOpts+`</pubsub></iq>`)
	a.expect(t, `id='bm2'`, `type='error'`, `<conflict`, `<precondition-not-met`)
	b.quiet(t, `x@conference.example.org`)
	a.send(t, `<iq type='set' id='cfg'><pubsub xmlns='http://jabber.org/protocol/pubsub#owner'><configure node='urn:xmpp:bookmarks:1'><x xmlns='jabber:x:data' type='submit'><field var='pubsub#access_model'><value>open</value></field></x></configure></pubsub></iq>`)
	a.expect(t, `id='cfg'`, `type='result'`)
	a.send(t, `<iq type='set' id='bm3'><pubsub xmlns='http://jabber.org/protocol/pubsub'><publish node='urn:xmpp:bookmarks:1'><item id='x@conference.example.org'><conference xmlns='urn:xmpp:bookmarks:1'/></item></publish>`+openOpts+`</pubsub></iq>`)
	a.expect(t, `id='bm3'`, `type='result'`)
	a.send(t, `<iq type='set' id='cfg2'><pubsub xmlns='http://jabber.org/protocol/pubsub#owner'><configure node='urn:xmpp:bookmarks:1'><x xmlns='jabber:x:data' type='submit'><field var='pubsub#access_model'><value>whitelist</value></field></x></configure></pubsub></iq>`)
	a.expect(t, `id='cfg2'`, `type='result'`)

	// Retract with notify.
	a.send(t, `<iq type='set' id='rt'><pubsub xmlns='http://jabber.org/protocol/pubsub'><retract node='urn:xmpp:bookmarks:1' notify='true'><item id='room@conference.example.org'/></retract></pubsub></iq>`)
	a.expect(t, `id='rt'`, `type='result'`)
	a2.expect(t, `<retract id='room@conference.example.org'/>`)

	// Items are stored: a fresh hub (after a restart) still has them.
	r2, err := New(Config{Domain: "example.org", Store: e.db, Accounts: e.r.cfg.Accounts, OfflineMax: 3})
	if err != nil {
		t.Fatal(err)
	}
	defer r2.Close(0)
	f := newFake()
	bb, err := r2.Bind(context.Background(), b.b.JID().Bare(), "fresh", f)
	if err != nil {
		t.Fatal(err)
	}
	get, _ := wire.ParseElement(`<iq type='get' id='after' to='alice@example.org'><pubsub xmlns='http://jabber.org/protocol/pubsub'><items node='urn:xmpp:avatar:metadata'/></pubsub></iq>`)
	get.Space = "jabber:client"
	bb.Inbound(get)
	(&client{fakeSession: f, b: bb}).expect(t, `id='after'`, `<item id='abc'>`)
}

func TestCapsQueryAnsweredOnlyByTheQueried(t *testing.T) {
	e := newEnv(t, "alice", "mallory")
	a := e.login("alice", "a")
	m := e.login("mallory", "m")
	m.online(t)
	a.send(t, `<presence><c xmlns='http://jabber.org/protocol/caps' hash='sha-1' node='n' ver='v1'/></presence>`)
	q := a.expect(t, `<iq`, `node='n#v1'`)
	el, _ := wire.ParseElement(q)
	// Mallory guesses the id and answers in Alice's place: ignored.
	m.send(t, `<iq type='result' id='`+el.Attr("id")+`' to='example.org'>`+discoResult+`</iq>`)
	if _, ok := e.r.caps.Features("v1"); ok {
		t.Fatal("a third party fed the caps cache")
	}
}
