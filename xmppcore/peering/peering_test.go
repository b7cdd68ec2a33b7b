package peering

import (
	"testing"
	"time"

	"github.com/aldis-im/aldis/xmppcore/wire"
)

func ptr[T any](v T) *T { return &v }

func testPolicy(t *testing.T) *Policy {
	t.Helper()
	p, err := New(Defaults{Allow: true, RequireTLS: true}, []Spec{
		{Domain: "partner.example", Allow: true, CertificateOnly: ptr(true), Kinds: Message | Presence,
			DenyNamespaces: []string{"http://jabber.org/protocol/si", "urn:xmpp:jingle:apps:file-transfer:5"}},
		{Domain: "*.example.mil", Allow: false},
		{Domain: "*.navy.example.mil", Allow: true, RequireTLS: ptr(false)},
		{Domain: "ops.navy.example.mil", Allow: false},
		{Domain: "legacy.example", Allow: true, Rate: 2, Burst: 3},
	})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLookup(t *testing.T) {
	p := testPolicy(t)
	for _, tc := range []struct {
		domain, rule string
		allow, tls   bool
	}{
		{"partner.example", "partner.example", true, true},
		{"other.example", "", true, true},
		{"army.example.mil", "*.example.mil", false, true},
		{"a.b.example.mil", "*.example.mil", false, true},
		{"example.mil", "", true, true}, // a wildcard covers subdomains only
		{"ship.navy.example.mil", "*.navy.example.mil", true, false},
		{"navy.example.mil", "*.example.mil", false, true},
		{"ops.navy.example.mil", "ops.navy.example.mil", false, true},
		{"", "", true, true},
		{".", "", true, true},
		{"mil", "", true, true},
	} {
		r := p.Lookup(tc.domain)
		if r.Name != tc.rule || r.Allow != tc.allow || r.RequireTLS != tc.tls {
			t.Errorf("Lookup(%q) = %q allow=%v tls=%v, want %q %v %v", tc.domain, r.Name, r.Allow, r.RequireTLS, tc.rule, tc.allow, tc.tls)
		}
	}
	if !p.Lookup("partner.example").CertificateOnly || p.Lookup("other.example").CertificateOnly {
		t.Error("CertificateOnly not applied")
	}
	var none *Policy
	if r := none.Lookup("x.example"); !r.Allow || r.Check(el(t, "<iq type='get'/>")) != OK {
		t.Error("a nil policy must allow everything")
	}
}

func el(t *testing.T, s string) *wire.Element {
	t.Helper()
	e, err := wire.ParseElement(s)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func TestCheck(t *testing.T) {
	p := testPolicy(t)
	partner, mil, other := p.Lookup("partner.example"), p.Lookup("x.example.mil"), p.Lookup("other.example")
	for _, tc := range []struct {
		rule *Rule
		st   string
		want Reason
	}{
		{partner, "<message xmlns='jabber:server'><body>hi</body></message>", OK},
		{partner, "<presence xmlns='jabber:server'/>", OK},
		{partner, "<iq xmlns='jabber:server' type='error'><error type='cancel'/></iq>", OK},
		{partner, "<iq xmlns='jabber:server' type='error'><si xmlns='http://jabber.org/protocol/si'/></iq>", Namespace},
		{partner, "<iq xmlns='jabber:server' type='get'><ping xmlns='urn:xmpp:ping'/></iq>", KindRule},
		{partner, "<message xmlns='jabber:server'><si xmlns='http://jabber.org/protocol/si'/></message>", Namespace},
		{partner, "<message xmlns='jabber:server'><x xmlns='urn:other'><y><description xmlns='urn:xmpp:jingle:apps:file-transfer:5'/></y></x></message>", Namespace},
		{partner, "<message xmlns='jabber:server'><body xmlns='urn:xmpp:jingle:1'/></message>", OK},
		{mil, "<message xmlns='jabber:server'><body>hi</body></message>", Denied},
		{other, "<iq xmlns='jabber:server' type='set'><si xmlns='http://jabber.org/protocol/si'/></iq>", OK},
		{other, "<stream xmlns='jabber:server'/>", KindRule},
	} {
		if got := tc.rule.Check(el(t, tc.st)); got != tc.want {
			t.Errorf("%s: Check(%s) = %q, want %q", tc.rule.Name, tc.st, got, tc.want)
		}
	}
}

func TestTake(t *testing.T) {
	p := testPolicy(t)
	r := p.Lookup("legacy.example")
	now := time.Now()
	n := 0
	for range 10 {
		if r.Take(now) {
			n++
		}
	}
	if n != 3 {
		t.Errorf("%d stanzas passed at once, want the burst of 3", n)
	}
	if !r.Take(now.Add(time.Second)) || !r.Take(now.Add(time.Second)) || r.Take(now.Add(time.Second)) {
		t.Error("the rate of 2 per second does not refill")
	}
	if o := p.Lookup("other.example"); o.Limited() || !o.Take(now) {
		t.Error("a peer without a rate is limited")
	}
}

func TestNewErrors(t *testing.T) {
	for _, specs := range [][]Spec{
		{{Domain: ""}},
		{{Domain: "*."}},
		{{Domain: "a.*.example"}},
		{{Domain: "a.example"}, {Domain: "a.example"}},
		{{Domain: "*.a.example"}, {Domain: "*.a.example"}},
	} {
		if _, err := New(Defaults{}, specs); err == nil {
			t.Errorf("New(%+v) accepted", specs)
		}
	}
	if _, err := New(Defaults{}, []Spec{{Domain: "a.example"}, {Domain: "*.a.example"}}); err != nil {
		t.Errorf("an exact and a wildcard entry for one domain: %v", err)
	}
}

// FuzzCheck: any stanza the wire parser accepts is judged without panicking.
func FuzzCheck(f *testing.F) {
	for _, s := range []string{
		"<message xmlns='jabber:server'><body>hi</body></message>",
		"<iq type='set'><si xmlns='http://jabber.org/protocol/si'><feature/></si></iq>",
		"<presence><x xmlns='urn:a'><y xmlns='urn:xmpp:jingle:1'/></x></presence>",
	} {
		f.Add(s, "partner.example")
	}
	p, err := New(Defaults{Allow: true}, []Spec{
		{Domain: "partner.example", Allow: true, Kinds: Message | IQ, DenyNamespaces: []string{"urn:xmpp:jingle:1"}},
		{Domain: "*.example", Allow: false},
	})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, s, domain string) {
		r := p.Lookup(domain)
		if r == nil {
			t.Fatal("nil rule")
		}
		e, err := wire.ParseElement(s)
		if err != nil {
			return
		}
		if got := r.Check(e); got != OK && got != Denied && got != KindRule && got != Namespace {
			t.Fatalf("Check = %q", got)
		}
	})
}
