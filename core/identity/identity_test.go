package identity

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/aldis-im/aldis/core/label"
	"github.com/aldis-im/aldis/core/store"
)

type memStore struct {
	m    map[string]string
	fail error
	gets int
}

func (s *memStore) Clearance(_ context.Context, p string) (string, error) {
	s.gets++
	if s.fail != nil {
		return "", s.fail
	}
	e, ok := s.m[p]
	if !ok {
		return "", store.ErrNotFound
	}
	return e, nil
}

func (s *memStore) SetClearance(_ context.Context, p, e string) error {
	if e == "" {
		delete(s.m, p)
	} else {
		s.m[p] = e
	}
	return nil
}

func testSet(t *testing.T) *label.Set {
	t.Helper()
	set, errs := label.Build(label.FileSpec{Policies: []label.PolicySpec{{
		Name: "P", ID: "1.2.3", DefaultClearance: "U",
		Classifications: []label.ClassSpec{{Name: "U", Value: 1}, {Name: "C", Value: 3}, {Name: "S", Value: 4}},
	}}})
	if errs != nil {
		t.Fatal(errs)
	}
	return set
}

func TestUserClearance(t *testing.T) {
	set := testSet(t)
	st := &memStore{m: map[string]string{}}
	d := New(set, st, nil, time.Hour)
	ctx := t.Context()
	s, _ := set.ParseLabel("S")
	u, _ := set.ParseLabel("U")

	if c := d.User(ctx, "bob@x"); !label.Decide(c, u) || label.Decide(c, s) {
		t.Fatal("default clearance not applied")
	}
	if err := d.SetUser(ctx, "alice@x", "S"); err != nil {
		t.Fatal(err)
	}
	if c := d.User(ctx, "alice@x"); !label.Decide(c, s) {
		t.Fatal("stored clearance not used")
	}
	if err := d.SetUser(ctx, "alice@x", "TOP"); err == nil {
		t.Fatal("an invalid expression was stored")
	}
	// Cached: the store is not read again within the TTL.
	n := st.gets
	d.User(ctx, "alice@x")
	if st.gets != n {
		t.Fatal("cache not used")
	}
	// A bad stored expression fails closed.
	st.m["carol@x"] = "NOPE"
	if c := d.User(ctx, "carol@x"); c != nil {
		t.Fatal("unparsable stored clearance was not nil")
	}
	// A store error fails closed and is not cached.
	st.fail = errors.New("disk on fire")
	if c := d.User(ctx, "dave@x"); c != nil {
		t.Fatal("store error gave a clearance")
	}
	st.fail = nil
	if c := d.User(ctx, "dave@x"); c == nil {
		t.Fatal("store error was cached")
	}
}

func TestRegister(t *testing.T) {
	set := testSet(t)
	d := New(set, &memStore{m: map[string]string{}}, nil, time.Second)
	if err := d.Register("peer:example.net", "C", "C"); err != nil {
		t.Fatal(err)
	}
	p := d.Lookup("peer:example.net")
	s, _ := set.ParseLabel("S")
	if label.Decide(p.Clearance, s) || !label.Decide(p.Clearance, p.Label) {
		t.Fatal("registered principal decides wrongly")
	}
	if p := d.Lookup("peer:other.net"); p.Clearance != set.Governing.DefaultClearance || p.Label != nil {
		t.Fatal("unregistered principal does not get the default")
	}
	if err := d.Register("peer:bad", "X", ""); err == nil {
		t.Fatal("bad clearance registered")
	}
}

func TestReplace(t *testing.T) {
	set := testSet(t)
	st := &memStore{m: map[string]string{"alice@x": "C"}}
	d := New(set, st, nil, time.Hour)
	ctx := t.Context()
	if err := d.Register("peer:a.example", "C", ""); err != nil {
		t.Fatal(err)
	}
	old := d.User(ctx, "alice@x")

	// A set whose expressions do not fit changes nothing.
	next, errs := label.Build(label.FileSpec{Policies: []label.PolicySpec{{
		Name: "Q", ID: "1.2.4", Classifications: []label.ClassSpec{{Name: "LOW", Value: 1}, {Name: "C", Value: 3}},
	}}})
	if errs != nil {
		t.Fatal(errs)
	}
	if err := d.Replace(next, map[string]Spec{"peer:a.example": {Clearance: "NOPE"}}); err == nil {
		t.Fatal("a bad principal was accepted")
	}
	if d.Policies() != set || d.User(ctx, "alice@x") != old {
		t.Fatal("a failed Replace changed the directory")
	}
	if err := d.Replace(next, map[string]Spec{"peer:b.example": {Clearance: "LOW"}}); err != nil {
		t.Fatal(err)
	}
	if d.Policies() != next {
		t.Fatal("set not replaced")
	}
	// Cached clearances are read again under the new policies.
	if c := d.User(ctx, "alice@x"); c == nil || c.Policy.Name != "Q" {
		t.Fatalf("alice's clearance %v not re-read under Q", c)
	}
	if p := d.Lookup("peer:a.example"); p.Clearance != nil {
		t.Fatal("a principal left out of Replace kept its clearance")
	}
	if p := d.Lookup("peer:b.example"); p.Clearance == nil || p.Clearance.Policy != next.Governing {
		t.Fatal("new principal not registered")
	}
}

func TestRegisterWildcard(t *testing.T) {
	set := testSet(t)
	d := New(set, &memStore{m: map[string]string{}}, nil, time.Second)
	for _, r := range [][3]string{
		{"peer:*.example.mil", "C", "C"},
		{"peer:*.navy.example.mil", "S", "S"},
		{"peer:ops.navy.example.mil", "U", "U"},
	} {
		if err := d.Register(r[0], r[1], r[2]); err != nil {
			t.Fatal(err)
		}
	}
	s, _ := set.ParseLabel("S")
	for _, tc := range []struct {
		name   string
		secret bool // cleared for S
		dflt   bool // has the governing default
	}{
		{"peer:army.example.mil", false, false},
		{"peer:a.b.example.mil", false, false},
		{"peer:ship.navy.example.mil", true, false},
		{"peer:ops.navy.example.mil", false, false},
		{"peer:example.mil", false, true}, // a wildcard covers subdomains only
		{"peer:example.org", false, true},
	} {
		p := d.Lookup(tc.name)
		if got := label.Decide(p.Clearance, s); got != tc.secret {
			t.Errorf("%s cleared for S: %v, want %v", tc.name, got, tc.secret)
		}
		if got := p.Clearance == set.Governing.DefaultClearance && p.Label == nil; got != tc.dflt {
			t.Errorf("%s has the default: %v, want %v", tc.name, got, tc.dflt)
		}
	}
}
