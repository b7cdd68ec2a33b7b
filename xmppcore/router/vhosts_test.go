package router

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/aldis-im/aldis/core/store/sqlite"
	"github.com/aldis-im/aldis/xmppcore/accounts"
	"github.com/aldis-im/aldis/xmppcore/jid"
)

// Two virtual hosts in one router: their users are local to each other,
// each host answers for itself, and lists only its own services.
func TestVirtualHosts(t *testing.T) {
	ctx := context.Background()
	db, err := sqlite.OpenMemory(ctx)
	if err != nil {
		t.Fatal(err)
	}
	acc := accounts.New(db, 4096)
	for _, u := range []string{"alice@example.org", "bob@example.net"} {
		if err := acc.Create(ctx, jid.MustParse(u), "secret-password"); err != nil {
			t.Fatal(err)
		}
	}
	r, err := New(Config{Domain: "example.org", Domains: []string{"example.net"}, Store: db, Accounts: acc, OfflineMax: 3, Version: "test"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close(time.Second); db.Close() })
	if err := r.AddService("example.net", &echoService{r: r}); err == nil {
		t.Fatal("a service took over a virtual host's domain")
	}
	for _, d := range []string{"rooms.example.org", "rooms.example.net"} {
		if err := r.AddService(d, &echoService{r: r, ch: make(chan string, 16)}); err != nil {
			t.Fatal(err)
		}
	}
	e := &env{t: t, r: r, db: db}
	login := func(user, res string) *client {
		f := newFake()
		b, err := e.r.Bind(ctx, jid.MustParse(user), res, f)
		if err != nil {
			t.Fatal(err)
		}
		return &client{fakeSession: f, b: b}
	}
	a, b := login("alice@example.org", "a"), login("bob@example.net", "b")
	a.online(t)
	b.online(t)

	// No federation configured, yet the other host is reachable: it is local.
	a.send(t, `<message to='bob@example.net' type='chat' id='m1'><body>hi</body></message>`)
	b.expect(t, `id='m1'`, `from='alice@example.org/a'`)
	b.send(t, `<message to='nobody@example.net' type='chat' id='m2'><body>hi</body></message>`)
	b.expect(t, `id='m2'`, `service-unavailable`)

	// Subscriptions across hosts.
	a.send(t, `<presence to='bob@example.net' type='subscribe'/>`)
	b.expect(t, `type='subscribe'`, `from='alice@example.org'`)

	// Each host answers for itself and lists its own services.
	b.send(t, `<iq type='get' id='p' to='example.net'><ping xmlns='urn:xmpp:ping'/></iq>`)
	b.expect(t, `id='p'`, `type='result'`, `from='example.net'`)
	b.send(t, `<iq type='get' id='items' to='example.net'><query xmlns='http://jabber.org/protocol/disco#items'/></iq>`)
	got := b.expect(t, `id='items'`, `jid='rooms.example.net'`)
	if strings.Contains(got, "rooms.example.org") {
		t.Errorf("example.net lists another host's service: %s", got)
	}
	a.send(t, `<iq type='get' id='items2' to='example.org'><query xmlns='http://jabber.org/protocol/disco#items'/></iq>`)
	got = a.expect(t, `id='items2'`, `jid='rooms.example.org'`)
	if strings.Contains(got, "rooms.example.net") {
		t.Errorf("example.org lists another host's service: %s", got)
	}

	// Offline storage is stamped by the recipient's host.
	b.send(t, `<presence type='unavailable'/>`)
	b.b.Unbind()
	a.send(t, `<message to='bob@example.net' type='chat' id='m3'><body>later</body></message>`)
	time.Sleep(100 * time.Millisecond)
	b = login("bob@example.net", "b2")
	b.send(t, `<presence/>`)
	b.expect(t, `id='m3'`, `from='example.net'`, `Offline storage`)

	if r.hostOf("rooms.example.net").Domain() != "example.net" || r.hostOf("elsewhere.example").Domain() != "example.org" {
		t.Error("hostOf picks the wrong host")
	}
}
