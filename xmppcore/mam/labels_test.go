package mam

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/aldis-im/aldis/core/identity"
	"github.com/aldis-im/aldis/core/label/labeltest"
	"github.com/aldis-im/aldis/xmppcore/seclabel"
	"github.com/aldis-im/aldis/xmppcore/wire"
)

// A requester gets only what their clearance grants, in order, pages are
// filled from further on, and nothing gives away how many were held back.
func TestQueryFilteredByClearance(t *testing.T) {
	st := newStore(t)
	dir := identity.New(labeltest.Set(t), st, nil, time.Millisecond)
	g := seclabel.New(seclabel.Config{Directory: dir, Local: []string{"example.org"}})
	c := &clock{t: t0, step: time.Second}
	a := New(st, Config{Labels: g, now: c.now})
	t.Cleanup(func() { _ = a.Close(context.Background()) })

	// 30 messages; every third is SECRET, the others unlabelled (the default, UNCLASSIFIED).
	var want []string
	for i := range 30 {
		m := chat(bob, alice, strconv.Itoa(i))
		if i%3 == 0 {
			el, _ := wire.ParseElement(labeltest.Element(labeltest.SecretESS))
			m.AddChild(el)
		} else {
			want = append(want, strconv.Itoa(i))
		}
		a.Record(alice, bob, m, false)
	}
	check := func(p page, bodies []string, complete bool) {
		t.Helper()
		if len(p.bodies) != len(bodies) {
			t.Fatalf("got %v, want %v", p.bodies, bodies)
		}
		for i := range bodies {
			if p.bodies[i] != bodies[i] {
				t.Fatalf("got %v, want %v", p.bodies, bodies)
			}
		}
		if p.complete() != complete {
			t.Fatalf("complete = %v, want %v", p.complete(), complete)
		}
		if p.fin.Child("set", NSRSM).Child("count", "") != nil {
			t.Fatal("count given away with labels on")
		}
	}
	// alice has the default clearance: UNCLASSIFIED.
	p := query(t, a, nil, `<max>7</max>`)
	check(p, want[:7], false)
	p = query(t, a, nil, `<max>7</max><after>`+p.ids[6]+`</after>`)
	check(p, want[7:14], false)
	p = query(t, a, nil, `<max>7</max><after>`+p.ids[6]+`</after>`)
	check(p, want[14:], true)
	// Paging backwards from the end.
	p = query(t, a, nil, `<max>5</max><before/>`)
	check(p, want[len(want)-5:], false)

	// Once cleared for SECRET she sees everything.
	if err := dir.SetUser(t.Context(), "alice@example.org", "SECRET"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Millisecond)
	p = query(t, a, nil, `<max>100</max>`)
	if len(p.bodies) != 30 {
		t.Fatalf("cleared user got %d of 30", len(p.bodies))
	}
}
