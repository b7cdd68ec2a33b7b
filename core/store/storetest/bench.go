package storetest

import (
	"fmt"
	"testing"

	"github.com/aldis-im/aldis/core/store"
)

// benchUsers spreads writes over many users so each user's backlog stays
// small, as on a real server, instead of growing with b.N.
const benchUsers = 1000

// RunBenchmarks runs the hot-path benchmarks. open must return a new, empty
// store; RunBenchmarks closes it.
func RunBenchmarks(b *testing.B, open func(b *testing.B) store.Store) {
	users := make([]string, benchUsers)
	for i := range users {
		users[i] = fmt.Sprintf("user%d@example.org", i)
	}
	newStore := func(b *testing.B) store.Store {
		s := open(b)
		b.Cleanup(func() { _ = s.Close() })
		return s
	}
	withAccounts := func(b *testing.B) store.Store {
		s := newStore(b)
		for _, u := range users {
			if err := s.CreateAccount(b.Context(), account(u)); err != nil {
				b.Fatal(err)
			}
		}
		return s
	}
	const stanza = `<message from='alice@example.com/phone-1a2b' to='bob@example.net' type='chat' id='a1b2c3d4' xml:lang='en'>` +
		`<body>Hello, are you there? This is a typical short chat message.</body>` +
		`<active xmlns='http://jabber.org/protocol/chatstates'/></message>`

	b.Run("StoreOffline", func(b *testing.B) {
		s := newStore(b)
		ctx := b.Context()
		i := 0
		for b.Loop() {
			if _, err := s.StoreOffline(ctx, users[i%benchUsers], stanza, 1<<30); err != nil {
				b.Fatal(err)
			}
			i++
		}
	})
	b.Run("GetAccount", func(b *testing.B) {
		s := withAccounts(b)
		ctx := b.Context()
		i := 0
		for b.Loop() {
			if _, err := s.GetAccount(ctx, users[i%benchUsers]); err != nil {
				b.Fatal(err)
			}
			i++
		}
	})
	b.Run("GetAccountParallel", func(b *testing.B) {
		s := withAccounts(b)
		ctx := b.Context()
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			i := 0
			for pb.Next() {
				if _, err := s.GetAccount(ctx, users[i%benchUsers]); err != nil {
					b.Error(err)
					return
				}
				i++
			}
		})
	})
	b.Run("Roster50", func(b *testing.B) {
		s := newStore(b)
		ctx := b.Context()
		for i := range 50 {
			it := store.RosterItem{Contact: users[i], Name: "Contact", Subscription: "both", Groups: []string{"Friends"}}
			if _, err := s.PutRosterItem(ctx, users[0], it); err != nil {
				b.Fatal(err)
			}
		}
		for b.Loop() {
			if items, _, err := s.Roster(ctx, users[0]); err != nil || len(items) != 50 {
				b.Fatal(len(items), err)
			}
		}
	})
}
