package accounts

import (
	"context"
	"errors"
	"testing"

	"github.com/aldis-im/aldis/core/store"
	"github.com/aldis-im/aldis/core/store/sqlite"
	"github.com/aldis-im/aldis/xmppcore/jid"
	"github.com/aldis-im/aldis/xmppcore/sasl"
)

func TestAccountLifecycle(t *testing.T) {
	ctx := context.Background()
	db, err := sqlite.OpenMemory(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	m := New(db, 4096)
	alice := jid.MustParse("alice@example.org")

	if err := m.Create(ctx, alice, "short"); !errors.Is(err, ErrWeakPassword) {
		t.Fatalf("weak password: %v", err)
	}
	if err := m.Create(ctx, jid.MustParse("example.org"), "long enough"); err == nil {
		t.Fatal("account without a localpart created")
	}
	if err := m.Create(ctx, alice, "first password"); err != nil {
		t.Fatal(err)
	}
	if err := m.Create(ctx, alice, "first password"); !errors.Is(err, store.ErrExists) {
		t.Fatalf("duplicate: %v", err)
	}
	lookup := m.Lookup("example.org")
	creds, err := lookup(ctx, "alice")
	if err != nil || !creds.VerifyPlain("first password") || creds.VerifyPlain("wrong") {
		t.Fatalf("lookup after create: %v", err)
	}
	if err := m.SetPassword(ctx, alice, "second password"); err != nil {
		t.Fatal(err)
	}
	if creds, _ = lookup(ctx, "alice"); !creds.VerifyPlain("second password") || creds.VerifyPlain("first password") {
		t.Fatal("password not changed")
	}
	if l, err := m.List(ctx, "example.org"); err != nil || len(l) != 1 || l[0] != "alice@example.org" {
		t.Fatalf("List = %v, %v", l, err)
	}
	if err := m.Delete(ctx, alice); err != nil {
		t.Fatal(err)
	}
	if ok, err := m.Exists(ctx, alice); ok || err != nil {
		t.Fatalf("Exists after delete = %v, %v", ok, err)
	}
	if _, err := lookup(ctx, "alice"); !errors.Is(err, sasl.ErrNoSuchUser) {
		t.Fatalf("lookup after delete: %v", err)
	}
	if err := m.SetPassword(ctx, alice, "third password"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("SetPassword of a deleted account: %v", err)
	}
}
