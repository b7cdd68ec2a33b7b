package router

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aldis-im/aldis/core/identity"
	"github.com/aldis-im/aldis/core/label"
	"github.com/aldis-im/aldis/core/label/labeltest"
	"github.com/aldis-im/aldis/core/store/sqlite"
	"github.com/aldis-im/aldis/xmppcore/accounts"
	"github.com/aldis-im/aldis/xmppcore/jid"
	"github.com/aldis-im/aldis/xmppcore/seclabel"
	"github.com/aldis-im/aldis/xmppcore/wire"
)

// syncBuffer is an audit log the test can read while hubs write it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// newLabelEnv is newEnv with the labeltest policy enforced (or in warn
// mode); clearances maps users to clearance expressions.
func newLabelEnv(t *testing.T, mode seclabel.Mode, clearances map[string]string, users ...string) (*env, *identity.Directory, *syncBuffer) {
	t.Helper()
	ctx := context.Background()
	db, err := sqlite.OpenMemory(ctx)
	if err != nil {
		t.Fatal(err)
	}
	acc := accounts.New(db, 4096)
	for _, u := range users {
		if err := acc.Create(ctx, jid.MustParse(u+"@example.org"), "secret-password"); err != nil {
			t.Fatal(err)
		}
	}
	dir := identity.New(labeltest.Set(t), db, nil, time.Millisecond)
	for u, c := range clearances {
		if err := dir.SetUser(ctx, u+"@example.org", c); err != nil {
			t.Fatal(err)
		}
	}
	audit := &syncBuffer{}
	g := seclabel.New(seclabel.Config{Directory: dir, Local: []string{"example.org"}, Mode: mode, Audit: slog.New(slog.NewJSONHandler(audit, nil))})
	r, err := New(Config{Domain: "example.org", Store: db, Accounts: acc, OfflineMax: 10, Version: "test", Labels: g})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close(time.Second); db.Close() })
	return &env{t: t, r: r, db: db}, dir, audit
}

// sanitised asserts an error stanza carries nothing of the original.
func sanitised(t *testing.T, s string) {
	t.Helper()
	for _, leak := range []string{"<body", "<subject", "securitylabel", "esssecuritylabel"} {
		if strings.Contains(s, leak) {
			t.Fatalf("error stanza leaks %s: %s", leak, s)
		}
	}
}

func TestLabelsOneToOne(t *testing.T) {
	e, _, audit := newLabelEnv(t, seclabel.Enforce, map[string]string{"alice": "SECRET"}, "alice", "bob")
	a := e.login("alice", "a")
	b := e.login("bob", "b")
	a.online(t)
	b.online(t)
	secret := labeltest.Element(labeltest.SecretESS)

	// E2: a SECRET message to an UNCLASSIFIED user bounces; nothing leaks.
	a.send(t, `<message to='bob@example.org' type='chat' id='s1'><body>attack at dawn</body><subject>plans</subject>`+secret+`</message>`)
	er := a.expect(t, `id='s1'`, `type='error'`)
	if !strings.Contains(er, `<error type='auth'><forbidden xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>`) || !strings.Contains(er, `from='bob@example.org'`) {
		t.Fatalf("not the E2 error: %s", er)
	}
	sanitised(t, er)
	b.quiet(t, `id='s1'`)

	// An unlabelled message gets the default label, which bob may read.
	a.send(t, `<message to='bob@example.org' type='chat' id='u1'><body>hello</body></message>`)
	got := b.expect(t, `id='u1'`)
	if !strings.Contains(got, `<securitylabel xmlns='urn:xmpp:sec-label:0'>`) || !strings.Contains(got, "NATO UNCLASSIFIED") {
		t.Fatalf("not stamped with the default label: %s", got)
	}
	// An empty <label/> is replaced by the default too.
	a.send(t, `<message to='bob@example.org' type='chat' id='u2'><body>hi</body><securitylabel xmlns='urn:xmpp:sec-label:0'><label/></securitylabel></message>`)
	if got := b.expect(t, `id='u2'`); !strings.Contains(got, "esssecuritylabel") {
		t.Fatalf("empty label not replaced: %s", got)
	}

	// E1: bob may not send what he is not cleared for.
	b.send(t, `<message to='alice@example.org' type='chat' id='s2'><body>x</body>`+secret+`</message>`)
	sanitised(t, b.expect(t, `id='s2'`, `type='error'`, `<forbidden`, `type='auth'`))
	a.quiet(t, `id='s2'`)

	// A SECRET message between SECRET... alice to herself is fine.
	a.send(t, `<message to='alice@example.org/a' type='chat' id='s3'><body>note</body>`+secret+`</message>`)
	a.expect(t, `id='s3'`, `NATO SECRET`)

	// E4: a label on presence is refused and not broadcast.
	b.send(t, `<presence id='p1'>`+secret+`</presence>`)
	sanitised(t, b.expect(t, `id='p1'`, `<presence`, `type='error'`, `<bad-request`, `type='modify'`))
	a.quiet(t, `<presence`)

	// E5: a label on an iq, and two labels on a message.
	b.send(t, `<iq type='get' id='q1' to='alice@example.org'><query xmlns='jabber:iq:version'/>`+secret+`</iq>`)
	sanitised(t, b.expect(t, `id='q1'`, `type='error'`, `<bad-request`))
	b.send(t, `<message to='alice@example.org' id='d1'><body>x</body>`+labeltest.Element(labeltest.ConfidentialESS)+secret+`</message>`)
	sanitised(t, b.expect(t, `id='d1'`, `type='error'`, `<bad-request`))

	// An error stanza carrying a label is discarded, not delivered.
	b.send(t, `<message to='alice@example.org' id='e1' type='error'><error type='cancel'><gone xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error>`+secret+`</message>`)
	a.quiet(t, `id='e1'`)

	// A label inside a forwarded payload does not authorise the outer
	// stanza: it is stamped UNCLASSIFIED and delivered as such.
	b.send(t, `<message to='alice@example.org' id='f1'><body>fwd</body><forwarded xmlns='urn:xmpp:forward:0'><message xmlns='jabber:client'><body>x</body>`+secret+`</message></forwarded></message>`)
	if got := a.expect(t, `id='f1'`); !strings.Contains(got, "NATO UNCLASSIFIED") {
		t.Fatalf("outer stanza not stamped: %s", got)
	}

	// Every refusal is in the audit log, without the message text.
	log := audit.String()
	for _, point := range []string{`"point":"delivery"`, `"point":"ingress"`, `"point":"presence"`, `"point":"iq"`, `"point":"malformed"`, `"point":"error_label"`} {
		if !strings.Contains(log, point) {
			t.Errorf("audit log lacks %s:\n%s", point, log)
		}
	}
	if strings.Contains(log, "attack at dawn") {
		t.Error("audit log holds a message body")
	}
}

func TestLabelsOffline(t *testing.T) {
	e, dir, _ := newLabelEnv(t, seclabel.Enforce, map[string]string{"alice": "SECRET", "carol": "SECRET"}, "alice", "carol")
	a := e.login("alice", "a")
	a.online(t)
	secret := labeltest.Element(labeltest.SecretESS)
	a.send(t, `<message to='carol@example.org' type='chat' id='o1'><body>one</body>`+secret+`</message>`)
	a.send(t, `<message to='carol@example.org' type='chat' id='o2'><body>two</body></message>`)
	a.quiet(t, `type='error'`)
	// Carol's clearance is lowered while the messages wait.
	if err := dir.SetUser(context.Background(), "carol@example.org", "UNCLASSIFIED"); err != nil {
		t.Fatal(err)
	}
	c := e.login("carol", "c")
	c.send(t, `<presence/>`)
	c.expect(t, `id='o2'`)
	c.quiet(t, `id='o1'`)
	sanitised(t, a.expect(t, `id='o1'`, `type='error'`, `<forbidden`))
	// The refused one is gone from storage, not kept for later.
	if n, _ := e.db.CountOffline(context.Background(), "carol@example.org"); n != 0 {
		t.Fatalf("%d messages left in offline storage", n)
	}
}

func TestLabelsWarnMode(t *testing.T) {
	e, _, audit := newLabelEnv(t, seclabel.Warn, nil, "alice", "bob")
	a := e.login("alice", "a")
	b := e.login("bob", "b")
	a.online(t)
	b.online(t)
	a.send(t, `<message to='bob@example.org' id='w1'><body>x</body>`+labeltest.Element(labeltest.SecretESS)+`</message>`)
	b.expect(t, `id='w1'`)
	if log := audit.String(); !strings.Contains(log, `"mode":"warn"`) || !strings.Contains(log, `"point":"ingress"`) || !strings.Contains(log, `"point":"delivery"`) {
		t.Fatalf("warn mode did not audit: %s", log)
	}
}

func TestLabelCatalog(t *testing.T) {
	e, _, _ := newLabelEnv(t, seclabel.Enforce, map[string]string{"alice": "SECRET"}, "alice", "bob")
	a := e.login("alice", "a")
	b := e.login("bob", "b")

	a.send(t, `<iq type='get' id='c1' to='example.org'><catalog xmlns='urn:xmpp:sec-label:catalog:2' to='example.org'/></iq>`)
	got := a.expect(t, `id='c1'`, `type='result'`)
	for _, want := range []string{`selector='Classified|SECRET'`, `selector='UNCLASSIFIED' default='true'`, `<item selector='No label'/>`, `restrict='false'`, `size='4'`} {
		if !strings.Contains(got, want) {
			t.Errorf("alice's catalog lacks %s: %s", want, got)
		}
	}
	b.send(t, `<iq type='get' id='c2' to='example.org'><catalog xmlns='urn:xmpp:sec-label:catalog:2' to='example.org'/></iq>`)
	got = b.expect(t, `id='c2'`, `type='result'`)
	if strings.Contains(got, "SECRET") || strings.Contains(got, "CONFIDENTIAL") || !strings.Contains(got, "UNCLASSIFIED") {
		t.Errorf("bob's catalog is not filtered by his clearance: %s", got)
	}
	// The old flat form, answered in the request's namespace.
	a.send(t, `<iq type='get' id='c3' to='example.org'><catalog xmlns='urn:xmpp:sec-label:catalog:0' to='example.org'/></iq>`)
	got = a.expect(t, `id='c3'`, `type='result'`)
	if !strings.Contains(got, `<catalog xmlns='urn:xmpp:sec-label:catalog:0'`) || strings.Contains(got, "<item") ||
		!strings.Contains(got, `<securitylabel xmlns='urn:xmpp:sec-label:0' selector='UNCLASSIFIED' default='true'>`) {
		t.Errorf("flat catalog: %s", got)
	}
	// No target named: the server's catalog (as slixmpp asks).
	a.send(t, `<iq type='get' id='c4' to='example.org'><catalog xmlns='urn:xmpp:sec-label:catalog:2'/></iq>`)
	a.expect(t, `id='c4'`, `type='result'`, `to='example.org'`, `Classified|SECRET`)
	a.send(t, `<iq type='get' id='c6' to='example.org'><catalog xmlns='urn:xmpp:sec-label:catalog:2' to='@@'/></iq>`)
	a.expect(t, `id='c6'`, `<bad-request`)
	a.send(t, `<iq type='get' id='c5' to='example.org'><catalog xmlns='urn:xmpp:sec-label:catalog:2' to='elsewhere.example'/></iq>`)
	a.expect(t, `id='c5'`, `<item-not-found`)

	// Disco advertises labels and the catalog.
	a.send(t, `<iq type='get' id='d1' to='example.org'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>`)
	a.expect(t, `id='d1'`, `var='urn:xmpp:sec-label:0'`, `var='urn:xmpp:sec-label:catalog:2'`)
}

// Without a policy nothing changes: labels pass untouched, none is stamped,
// and a catalog request says the service is not there.
func TestLabelsOff(t *testing.T) {
	e := newEnv(t, "alice", "bob")
	a := e.login("alice", "a")
	b := e.login("bob", "b")
	a.online(t)
	b.online(t)
	a.send(t, `<message to='bob@example.org' id='n1'><body>x</body></message>`)
	if got := b.expect(t, `id='n1'`); strings.Contains(got, "securitylabel") {
		t.Fatalf("stamped with labels off: %s", got)
	}
	a.send(t, `<iq type='get' id='c1' to='example.org'><catalog xmlns='urn:xmpp:sec-label:catalog:2' to='example.org'/></iq>`)
	a.expect(t, `id='c1'`, `<service-unavailable`)
}

func BenchmarkLabelDecision(b *testing.B) {
	set := labeltest.Set(b)
	g := seclabel.New(seclabel.Config{Directory: identity.New(set, nil, nil, time.Hour)})
	c, _ := set.ParseClearance("SECRET; Releasable To: GBR")
	st, _ := wire.ParseElement(`<message to='bob@example.org' id='x'><body>hi</body>` + labeltest.Element(labeltest.SecretESS) + `</message>`)
	b.ReportAllocs()
	for b.Loop() {
		if !g.Allowed(st, c, nil, seclabel.PointDelivery, "bob@example.org") {
			b.Fatal("denied")
		}
	}
}

// BenchmarkLabelIngress is the ingress work for an unlabelled message:
// stamp the default label and check the sender's clearance.
func BenchmarkLabelIngress(b *testing.B) {
	set := labeltest.Set(b)
	g := seclabel.New(seclabel.Config{Directory: identity.New(set, nil, nil, time.Hour)})
	c, _ := set.ParseClearance("SECRET")
	sender := func() *label.Clearance { return c }
	tmpl, _ := wire.ParseElement(`<message to='bob@example.org' id='x'><body>hi</body></message>`)
	b.ReportAllocs()
	for b.Loop() {
		st := tmpl.Copy() // Ingress stamps it
		if v, _ := g.Ingress(st, sender, nil, "alice@example.org", true); v != seclabel.Pass {
			b.Fatal("refused")
		}
	}
}

// The boundary with a remote server: its clearance bounds what leaves for
// it and what it may send; what it sends unlabelled gets its default label.
func TestLabelsAtThePeerBoundary(t *testing.T) {
	e, dir, _ := newLabelEnv(t, seclabel.Enforce, map[string]string{"alice": "SECRET"}, "alice")
	if err := dir.Register("peer:partner.example", "CONFIDENTIAL", "RESTRICTED"); err != nil {
		t.Fatal(err)
	}
	rm := &fakeRemote{ch: make(chan string, 16)}
	e.r.SetRemote(rm)
	a := e.login("alice", "a")
	a.online(t)

	a.send(t, `<message to='bob@partner.example' id='s1'><body>x</body>`+labeltest.Element(labeltest.SecretESS)+`</message>`)
	sanitised(t, a.expect(t, `id='s1'`, `type='error'`, `<forbidden`))
	a.send(t, `<message to='bob@partner.example' id='c1'><body>x</body>`+labeltest.Element(labeltest.ConfidentialESS)+`</message>`)
	if got := <-rm.ch; !strings.Contains(got, `id='c1'`) {
		t.Fatalf("remote got %s, want c1 only", got)
	}

	from, to := jid.MustParse("bob@partner.example/x"), jid.MustParse("alice@example.org/a")
	inject := func(raw string) {
		st, err := wire.ParseElement(raw)
		if err != nil {
			t.Fatal(err)
		}
		e.r.Inject(st, from, to)
	}
	inject(`<message from='bob@partner.example/x' to='alice@example.org/a' id='p1'><body>plain</body></message>`)
	if got := a.expect(t, `id='p1'`); !strings.Contains(got, "RESTRICTED") {
		t.Fatalf("not stamped with the peer's default label: %s", got)
	}
	inject(`<message from='bob@partner.example/x' to='alice@example.org/a' id='s2'><body>x</body>` + labeltest.Element(labeltest.SecretESS) + `</message>`)
	a.quiet(t, `id='s2'`)
	if got := <-rm.ch; !strings.Contains(got, `id='s2'`) || !strings.Contains(got, `<forbidden`) || strings.Contains(got, "securitylabel") {
		t.Fatalf("the peer got %s, want a sanitised forbidden", got)
	}
	inject(`<presence from='bob@partner.example/x' to='alice@example.org' id='pr'>` + labeltest.Element(labeltest.SecretESS) + `</presence>`)
	if got := <-rm.ch; !strings.Contains(got, `id='pr'`) || !strings.Contains(got, `<bad-request`) {
		t.Fatalf("labelled presence from the peer: %s", got)
	}
	// Catalogs are for local users only.
	st, _ := wire.ParseElement(`<iq type='get' id='cat' from='partner.example' to='example.org'><catalog xmlns='urn:xmpp:sec-label:catalog:2' to='example.org' from='bob@partner.example'/></iq>`)
	e.r.Inject(st, jid.MustParse("partner.example"), jid.MustParse("example.org"))
	if got := <-rm.ch; !strings.Contains(got, `id='cat'`) || !strings.Contains(got, `<not-authorized`) {
		t.Fatalf("catalog from a peer: %s", got)
	}
}

// A recipient cleared under another policy gets the message with the label
// of their policy first and the original kept as an equivalent.
func TestLabelRewrittenForRecipientPolicy(t *testing.T) {
	spec := labeltest.Spec()
	spec.Policies = append(spec.Policies, label.PolicySpec{
		Name: "UK", ID: "2.16.826.0.1.1", DefaultClearance: "OFFICIAL",
		Classifications: []label.ClassSpec{{Name: "OFFICIAL", Value: 1}, {Name: "UK SECRET", Value: 4, Marking: "UK SECRET"}},
	})
	spec.Equivalences = []label.EquivalenceSpec{{From: "NATO", To: "UK", Map: []label.MapSpec{
		{From: "UNCLASSIFIED", To: "OFFICIAL"}, {From: "SECRET", To: "UK SECRET"}}}}
	set, errs := label.Build(spec)
	if errs != nil {
		t.Fatal(errs)
	}
	ctx := context.Background()
	db, err := sqlite.OpenMemory(ctx)
	if err != nil {
		t.Fatal(err)
	}
	acc := accounts.New(db, 4096)
	for _, u := range []string{"alice", "uma"} {
		if err := acc.Create(ctx, jid.MustParse(u+"@example.org"), "secret-password"); err != nil {
			t.Fatal(err)
		}
	}
	dir := identity.New(set, db, nil, time.Millisecond)
	_ = dir.SetUser(ctx, "alice@example.org", "SECRET")
	_ = dir.SetUser(ctx, "uma@example.org", "UK :: UK SECRET")
	g := seclabel.New(seclabel.Config{Directory: dir, Local: []string{"example.org"}})
	r, err := New(Config{Domain: "example.org", Store: db, Accounts: acc, OfflineMax: 10, Labels: g})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close(time.Second); db.Close() })
	e := &env{t: t, r: r, db: db}
	a, u := e.login("alice", "a"), e.login("uma", "u")
	a.online(t)
	u.online(t)
	a.send(t, `<message to='uma@example.org' id='r1'><body>x</body>`+labeltest.Element(labeltest.SecretESS)+`</message>`)
	got := u.expect(t, `id='r1'`)
	el, err := wire.ParseElement(got)
	if err != nil {
		t.Fatal(err)
	}
	sl := el.Child("securitylabel", label.NS)
	if sl == nil || sl.ChildText("displaymarking", label.NS) != "UK SECRET" || sl.Child("equivalentlabel", label.NS) == nil {
		t.Fatalf("not rewritten to the UK label with the NATO one kept: %s", got)
	}
	m, err := g.Marking(el)
	if err != nil || m.Primary.Policy.Name != "UK" || len(m.Equivalents) != 1 || m.Equivalents[0].Policy.Name != "NATO" {
		t.Fatalf("rewritten label reads as %+v, %v", m, err)
	}
	// Alice, under NATO, sees her own label unchanged.
	a.send(t, `<message to='alice@example.org/a' id='r2'><body>x</body>`+labeltest.Element(labeltest.SecretESS)+`</message>`)
	if got := a.expect(t, `id='r2'`); strings.Contains(got, "equivalentlabel") {
		t.Fatalf("rewritten for a recipient of the same policy: %s", got)
	}
}

// Carbons carry only what the user was cleared for: a message refused to
// bob is not copied to his other session, and what he may read is copied
// with its label.
func TestLabelsAndCarbons(t *testing.T) {
	e, _, _ := newLabelEnv(t, seclabel.Enforce, map[string]string{"alice": "SECRET"}, "alice", "bob")
	a := e.login("alice", "a")
	b1, b2 := e.login("bob", "one"), e.login("bob", "two")
	a.online(t)
	for _, c := range []*client{b1, b2} {
		c.online(t)
		c.send(t, `<iq type='set' id='cc'><enable xmlns='urn:xmpp:carbons:2'/></iq>`)
		c.expect(t, `id='cc'`, `type='result'`)
	}
	a.send(t, `<message to='bob@example.org/one' type='chat' id='s1'><body>x</body>`+labeltest.Element(labeltest.SecretESS)+`</message>`)
	a.expect(t, `id='s1'`, `<forbidden`)
	b1.quiet(t, `id='s1'`)
	b2.quiet(t, `id='s1'`)
	a.send(t, `<message to='bob@example.org/one' type='chat' id='u1'><body>y</body></message>`)
	b1.expect(t, `id='u1'`, `NATO UNCLASSIFIED`)
	b2.expect(t, `<received xmlns='urn:xmpp:carbons:2'>`, `id='u1'`, `NATO UNCLASSIFIED`)
}

// TestLabelsDeliverRaw: a room's broadcast that skips building an addressed
// copy per occupant is still checked at delivery, and a refusal is audited
// with the occupant it was for.
func TestLabelsDeliverRaw(t *testing.T) {
	e, _, audit := newLabelEnv(t, seclabel.Enforce, map[string]string{"alice": "SECRET"}, "alice", "bob")
	svc := &echoService{r: e.r, ch: make(chan string, 16)}
	if err := e.r.AddService("rooms.example.org", svc); err != nil {
		t.Fatal(err)
	}
	a := e.login("alice", "a")
	b := e.login("bob", "b")
	a.online(t)
	b.online(t)
	occ := jid.MustParse("room@rooms.example.org/nick")
	m, err := wire.ParseElement(`<message from='room@rooms.example.org/nick' type='groupchat' id='g1'><body>attack at dawn</body>` + labeltest.Element(labeltest.SecretESS) + `</message>`)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := wire.NewTemplate(m, "to")
	e.r.DeliverRaw(m, tmpl.Append(nil, "alice@example.org/a"), occ, jid.MustParse("alice@example.org/a"))
	e.r.DeliverRaw(m, tmpl.Append(nil, "bob@example.org/b"), occ, jid.MustParse("bob@example.org/b"))
	if got := a.expect(t, `id='g1'`); got != string(tmpl.Append(nil, "alice@example.org/a")) {
		t.Fatalf("alice got %s", got)
	}
	b.quiet(t, `id='g1'`)
	if log := audit.String(); !strings.Contains(log, `"to":"bob@example.org/b"`) {
		t.Fatalf("refusal not audited with its recipient: %s", log)
	}
	select {
	case got := <-svc.ch:
		t.Fatalf("the room was told of a refusal it filters itself: %s", got)
	default:
	}
}
