package muc

import (
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aldis-im/aldis/core/store/sqlite"
	"github.com/aldis-im/aldis/xmppcore/accounts"
	"github.com/aldis-im/aldis/xmppcore/jid"
	"github.com/aldis-im/aldis/xmppcore/router"
	"github.com/aldis-im/aldis/xmppcore/wire"
)

// countSession is a bound session that counts what it is sent.
type countSession struct{ n *atomic.Int64 }

func (c countSession) Send([]byte) bool     { c.n.Add(1); return true }
func (c countSession) Close(string, string) {}

// BenchmarkRoomBroadcast measures one groupchat message in a room of 20
// occupants through the real router: from the sender's binding through
// the room's goroutine and each recipient's hub to the serialised bytes
// handed to each session (no sockets). ns/delivery is the figure to
// compare with the server's CPU per delivery.
func BenchmarkRoomBroadcast(b *testing.B) {
	const occupants = 20
	ctx := b.Context()
	db, err := sqlite.OpenMemory(ctx)
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	acc := accounts.New(db, 4096)
	rt, err := router.New(router.Config{Domain: "example.org", Store: db, Accounts: acc})
	if err != nil {
		b.Fatal(err)
	}
	defer rt.Close(time.Second)
	svc, err := New(ctx, Config{Domain: domain, ServerDomain: "example.org", Router: rt, Store: db, History: 20, MaxOccupants: 100})
	if err != nil {
		b.Fatal(err)
	}
	defer svc.Close(ctx)
	if err := rt.AddService(domain, svc); err != nil {
		b.Fatal(err)
	}
	var got atomic.Int64
	waitFor := func(n int64) {
		deadline := time.Now().Add(10 * time.Second)
		for got.Load() < n {
			if time.Now().After(deadline) {
				b.Fatalf("%d stanzas delivered, want %d", got.Load(), n)
			}
			time.Sleep(10 * time.Microsecond)
		}
	}
	parse := func(s string) *wire.Element {
		el, err := wire.ParseElement(s)
		if err != nil {
			b.Fatal(err)
		}
		return el
	}
	var users []*router.Binding
	for i := range occupants {
		u := jid.MustParse(fmt.Sprintf("user%d@example.org", i))
		if err := acc.Create(ctx, u, "secret-password"); err != nil {
			b.Fatal(err)
		}
		bd, err := rt.Bind(ctx, u, "r", countSession{&got})
		if err != nil {
			b.Fatal(err)
		}
		users = append(users, bd)
	}
	settle := func() { // until nothing more arrives for a while
		for n := int64(-1); n != got.Load(); {
			n = got.Load()
			time.Sleep(20 * time.Millisecond)
		}
	}
	for i, u := range users {
		// The first joins a new room and opens it (an instant room).
		u.Inbound(parse(fmt.Sprintf(`<presence to='%s/nick%d'><x xmlns='%s'><history maxstanzas='0'/></x></presence>`, room1, i, NS)))
		settle()
		if i == 0 {
			u.Inbound(parse(`<iq type='set' id='cfg' to='` + room1 + `'><query xmlns='` + NSOwner + `'><x xmlns='jabber:x:data' type='submit'/></query></iq>`))
			settle()
		}
	}
	msg := parse(`<message to='` + room1 + `' type='groupchat' id='a3f9c2d1'><body>Hello everyone, the status report for the northern sector is ready for review.</body></message>`)
	base := got.Load()
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		// A window of messages in flight, well below the room's queue limit.
		if i >= 64 {
			waitFor(base + int64(i-64)*occupants)
		}
		users[i%occupants].Inbound(msg.Copy())
	}
	waitFor(base + int64(b.N)*occupants)
	b.StopTimer()
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*occupants), "ns/delivery")
}
