package router

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aldis-im/aldis/core/store/sqlite"
	"github.com/aldis-im/aldis/xmppcore/accounts"
	"github.com/aldis-im/aldis/xmppcore/jid"
	"github.com/aldis-im/aldis/xmppcore/wire"
)

// countSession counts what it is sent and discards it.
type countSession struct{ n atomic.Int64 }

func (c *countSession) Send([]byte) bool     { c.n.Add(1); return true }
func (c *countSession) Close(string, string) {}

// BenchmarkRouteMessage measures routing one 1:1 chat message to a full JID:
// from the sender's binding through the recipient's hub to serialised bytes
// handed to the recipient's session.
func BenchmarkRouteMessage(b *testing.B) {
	ctx := context.Background()
	db, err := sqlite.OpenMemory(ctx)
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	acc := accounts.New(db, 4096)
	for _, u := range []string{"alice", "bob"} {
		if err := acc.Create(ctx, jid.MustParse(u+"@example.org"), "secret-password"); err != nil {
			b.Fatal(err)
		}
	}
	r, err := New(Config{Domain: "example.org", Store: db, Accounts: acc, OfflineMax: 10})
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close(time.Second)
	alice, _ := r.Bind(ctx, jid.MustParse("alice@example.org"), "a", &countSession{})
	sink := &countSession{}
	bob, _ := r.Bind(ctx, jid.MustParse("bob@example.org"), "b", sink)
	bob.Inbound(mustParse(b, `<presence/>`))
	msg := mustParse(b, `<message to='bob@example.org/b' type='chat' id='a3f9c2d1' xml:lang='en'><body>Hello Bob, the status report for the northern sector is ready for review.</body><active xmlns='http://jabber.org/protocol/chatstates'/></message>`)
	for sink.n.Load() < 1 {
		time.Sleep(time.Millisecond)
	}
	base := sink.n.Load()
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		alice.Inbound(msg.Copy())
	}
	for sink.n.Load() < base+int64(b.N) {
		time.Sleep(10 * time.Microsecond)
	}
}

func mustParse(tb testing.TB, s string) *wire.Element {
	tb.Helper()
	el, err := wire.ParseElement(s)
	if err != nil {
		tb.Fatal(err)
	}
	return el
}
