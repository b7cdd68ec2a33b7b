package mam

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aldis-im/aldis/core/store"
	"github.com/aldis-im/aldis/core/store/sqlite"
	"github.com/aldis-im/aldis/xmppcore/jid"
	"github.com/aldis-im/aldis/xmppcore/stanza"
	"github.com/aldis-im/aldis/xmppcore/wire"
)

var (
	alice  = jid.MustParse("alice@example.org")
	phone  = jid.MustParse("alice@example.org/phone")
	bob    = jid.MustParse("bob@example.net/desk")
	carol  = jid.MustParse("carol@example.net")
	t0     = time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	stamp0 = t0.Format(time.RFC3339)
)

// clock is a settable test clock; each reading advances it by step.
type clock struct {
	mu   sync.Mutex
	t    time.Time
	step time.Duration
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := c.t
	c.t = c.t.Add(c.step)
	return t
}

func (c *clock) set(t time.Time) {
	c.mu.Lock()
	c.t = t
	c.mu.Unlock()
}

func newStore(t *testing.T) store.Store {
	t.Helper()
	st, err := sqlite.OpenMemory(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	return st
}

// newArchiver returns an Archiver on a fresh store whose clock starts at t0
// and advances 1s per message.
func newArchiver(t *testing.T, cfg Config) (*Archiver, store.Store, *clock) {
	t.Helper()
	st := newStore(t)
	c := &clock{t: t0, step: time.Second}
	if cfg.now == nil {
		cfg.now = c.now
	}
	a := New(st, cfg)
	t.Cleanup(func() {
		if err := a.Close(context.Background()); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return a, st, c
}

func parse(t testing.TB, s string) *wire.Element {
	t.Helper()
	e, err := wire.ParseElement(s)
	if err != nil {
		t.Fatalf("ParseElement(%q): %v", s, err)
	}
	return e
}

func chat(from, to jid.JID, body string) *wire.Element {
	m := wire.New("message", "")
	m.Space = stanza.NSClient
	m.SetAttr("from", from.String()).SetAttr("to", to.String()).SetAttr("type", "chat")
	m.AddChild(wire.New("body", "")).AddText(body)
	return m
}

func TestEligible(t *testing.T) {
	tests := []struct {
		stanza string
		want   bool
	}{
		{`<message type='chat'><body>hi</body></message>`, true},
		{`<message type='chat'><composing xmlns='http://jabber.org/protocol/chatstates'/></message>`, false}, // no body: not archived
		{`<message><body>hi</body></message>`, true},
		{`<message type='normal'><body>hi</body></message>`, true},
		{`<message type='normal'><subject>s</subject></message>`, false},
		{`<message/>`, false},
		{`<message type='groupchat'><body>hi</body></message>`, false},
		{`<message type='headline'><body>hi</body></message>`, false},
		{`<message type='error'><body>hi</body></message>`, false},
		{`<message type='chat'><body>hi</body><no-store xmlns='urn:xmpp:hints'/></message>`, false},
		{`<message type='chat'><body>hi</body><no-permanent-store xmlns='urn:xmpp:hints'/></message>`, false},
		{`<message type='chat'><body>hi</body><no-copy xmlns='urn:xmpp:hints'/></message>`, true},
		{`<presence/>`, false},
		{`<iq type='get'><body>hi</body></iq>`, false},
	}
	for _, tc := range tests {
		if got := Eligible(parse(t, tc.stanza)); got != tc.want {
			t.Errorf("Eligible(%s) = %v, want %v", tc.stanza, got, tc.want)
		}
	}
	if Eligible(nil) {
		t.Error("Eligible(nil) = true")
	}
}

// page is what one query produced.
type page struct {
	ids, bodies []string
	fin         *wire.Element // <fin/>, nil when the iq was an error
	iq          *wire.Element // the final iq
	results     []*wire.Element
}

func (p page) set(name string) string { return p.fin.Child("set", NSRSM).ChildText(name, NSRSM) }
func (p page) complete() bool         { return p.fin.Attr("complete") == "true" }
func (p page) errCond() string {
	if e := p.iq.Child("error", ""); e != nil {
		for c := range e.Elements() {
			if c.Space == stanza.NSStanzaErr {
				return c.Local()
			}
		}
	}
	return ""
}

// iq sends a mam iq from alice's phone with inner as the payload.
func iq(t *testing.T, a *Archiver, typ, inner string) page {
	t.Helper()
	st := parse(t, `<iq type='`+typ+`' id='q1' from='alice@example.org/phone' to='alice@example.org'>`+inner+`</iq>`)
	var p page
	a.HandleIQ(t.Context(), alice, phone, st, func(e *wire.Element) {
		// Read it back as the client would, with namespaces resolved.
		e = parse(t, e.String())
		if p.iq != nil {
			t.Errorf("sent %s after the iq", e)
		}
		switch e.Local() {
		case "message":
			if e.Attr("to") != phone.String() || e.Attr("from") != alice.String() {
				t.Errorf("result addressed to=%q from=%q", e.Attr("to"), e.Attr("from"))
			}
			r := e.Child("result", NS)
			if r == nil {
				t.Fatalf("message without result: %s", e)
			}
			p.ids = append(p.ids, r.Attr("id"))
			fm := r.Child("forwarded", stanza.NSForward).Child("message", stanza.NSClient)
			p.bodies = append(p.bodies, fm.ChildText("body", stanza.NSClient))
			p.results = append(p.results, e)
		case "iq":
			p.iq = e
			p.fin = e.Child("fin", NS)
		}
	})
	if p.iq == nil {
		t.Fatal("no iq sent")
	}
	if p.iq.Attr("id") != "q1" || p.iq.Attr("to") != phone.String() {
		t.Errorf("iq reply %s: wrong id or to", p.iq)
	}
	return p
}

// query runs a query set with the given form fields and RSM children.
func query(t *testing.T, a *Archiver, fields map[string][]string, rsm string) page {
	t.Helper()
	var b strings.Builder
	b.WriteString(`<query xmlns='urn:xmpp:mam:2' queryid='f27'>`)
	if fields != nil {
		b.WriteString(`<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'><value>urn:xmpp:mam:2</value></field>`)
		for _, k := range slices.Sorted(maps.Keys(fields)) {
			b.WriteString(`<field var='` + k + `'>`)
			for _, v := range fields[k] {
				b.WriteString(`<value>` + v + `</value>`)
			}
			b.WriteString(`</field>`)
		}
		b.WriteString(`</x>`)
	}
	if rsm != "" {
		b.WriteString(`<set xmlns='http://jabber.org/protocol/rsm'>` + rsm + `</set>`)
	}
	b.WriteString(`</query>`)
	return iq(t, a, "set", b.String())
}

// fill records n messages, alternating bob (even, incoming) and carol (odd,
// outgoing), with bodies "0".."n-1", and returns their ids.
func fill(t *testing.T, a *Archiver, n int) []string {
	t.Helper()
	ids := make([]string, n)
	for i := range n {
		var id string
		if i%2 == 0 {
			id = a.Record(alice, bob, chat(bob, alice, strconv.Itoa(i)), false)
		} else {
			id = a.Record(alice, carol, chat(phone, carol, strconv.Itoa(i)), true)
		}
		if id == "" {
			t.Fatalf("Record %d: not archived", i)
		}
		ids[i] = id
	}
	return ids
}

func bodies(lo, hi, step int) []string {
	var out []string
	for i := lo; i < hi; i += step {
		out = append(out, strconv.Itoa(i))
	}
	return out
}

func TestQueryPaging(t *testing.T) {
	a, _, _ := newArchiver(t, Config{MaxPage: 100})
	const n = 333
	ids := fill(t, a, n)
	if !slices.IsSorted(ids) {
		t.Fatal("ids are not in time order")
	}

	// Forward with <after/>, 50 per page.
	var got []string
	after := ""
	for i := 0; ; i++ {
		rsm := "<max>50</max>"
		if after != "" {
			rsm += "<after>" + after + "</after>"
		}
		p := query(t, a, nil, rsm)
		if p.fin == nil {
			t.Fatalf("page %d: %s", i, p.iq)
		}
		if p.set("count") != strconv.Itoa(n) || p.set("first") != p.ids[0] || p.set("last") != p.ids[len(p.ids)-1] {
			t.Errorf("page %d: set = %s", i, p.fin)
		}
		if want := i == 6; p.complete() != want {
			t.Errorf("page %d: complete = %v, want %v", i, p.complete(), want)
		}
		got = append(got, p.bodies...)
		if !slices.Equal(p.ids, ids[50*i:min(n, 50*i+50)]) {
			t.Errorf("page %d ids differ from Record's", i)
		}
		if p.complete() {
			break
		}
		after = p.set("last")
	}
	if !slices.Equal(got, bodies(0, n, 1)) {
		t.Errorf("forward paging got %d messages: %v", len(got), got)
	}

	// Backward with <before/>, 100 per page; each page in order.
	var pages [][]string
	before := ""
	for i := 0; ; i++ {
		p := query(t, a, nil, "<max>100</max><before>"+before+"</before>")
		pages = append(pages, p.bodies)
		if want := i == 3; p.complete() != want {
			t.Errorf("backward page %d: complete = %v, want %v", i, p.complete(), want)
		}
		if p.complete() {
			break
		}
		before = p.set("first")
	}
	want := [][]string{bodies(233, 333, 1), bodies(133, 233, 1), bodies(33, 133, 1), bodies(0, 33, 1)}
	if !slices.EqualFunc(pages, want, slices.Equal) {
		t.Errorf("backward pages = %v", pages)
	}

	stampOf := func(i int) string { return t0.Add(time.Duration(i) * time.Second).Format(time.RFC3339) }
	tests := []struct {
		name     string
		fields   map[string][]string
		rsm      string
		bodies   []string
		count    int
		complete bool
		err      string
	}{
		{name: "default page is MaxPage", bodies: bodies(0, 100, 1), count: n},
		{name: "max over cap", rsm: "<max>1000</max>", bodies: bodies(0, 100, 1), count: n},
		{name: "max 0 counts", rsm: "<max>0</max>", count: n},
		{name: "with bob", fields: map[string][]string{"with": {"bob@example.net"}}, rsm: "<max>10</max><before/>",
			bodies: bodies(312, 333, 2)[1:], count: 167, complete: false},
		{name: "with full jid", fields: map[string][]string{"with": {"carol@example.net/x"}}, rsm: "<max>2</max>",
			bodies: []string{"1", "3"}, count: 166},
		{name: "with nobody", fields: map[string][]string{"with": {"eve@example.net"}}, count: 0, complete: true},
		{name: "start end", fields: map[string][]string{"start": {stampOf(10)}, "end": {stampOf(14)}},
			bodies: bodies(10, 15, 1), count: 5, complete: true},
		{name: "start", fields: map[string][]string{"start": {stampOf(330)}}, bodies: bodies(330, 333, 1), count: 3, complete: true},
		{name: "end", fields: map[string][]string{"end": {stamp0}}, bodies: []string{"0"}, count: 1, complete: true},
		{name: "after-id before-id", fields: map[string][]string{"after-id": {ids[5]}, "before-id": {ids[9]}},
			bodies: bodies(6, 9, 1), count: 3, complete: true},
		{name: "after-id with rsm after", fields: map[string][]string{"after-id": {ids[5]}}, rsm: "<max>2</max><after>" + ids[7] + "</after>",
			bodies: []string{"8", "9"}, count: n - 6},
		{name: "ids", fields: map[string][]string{"ids": {ids[42], ids[7], ids[300]}}, bodies: []string{"7", "42", "300"}, count: 3, complete: true},
		{name: "unknown rsm after", rsm: "<after>nope</after>", err: "item-not-found"},
		{name: "unknown rsm before", rsm: "<before>nope</before>", err: "item-not-found"},
		{name: "unknown after-id", fields: map[string][]string{"after-id": {"nope"}}, err: "item-not-found"},
		{name: "bad start", fields: map[string][]string{"start": {"yesterday"}}, err: "bad-request"},
		{name: "bad with", fields: map[string][]string{"with": {"@"}}, err: "bad-request"},
		{name: "unknown field", fields: map[string][]string{"colour": {"red"}}, err: "bad-request"},
		{name: "bad max", rsm: "<max>-1</max>", err: "bad-request"},
		{name: "index", rsm: "<index>3</index>", err: "feature-not-implemented"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := query(t, a, tc.fields, tc.rsm)
			if tc.err != "" {
				if got := p.errCond(); got != tc.err || len(p.ids) != 0 {
					t.Errorf("error = %q after %d results, want %q", got, len(p.ids), tc.err)
				}
				return
			}
			if p.fin == nil {
				t.Fatalf("no fin: %s", p.iq)
			}
			if !slices.Equal(p.bodies, tc.bodies) {
				t.Errorf("bodies = %v, want %v", p.bodies, tc.bodies)
			}
			if p.set("count") != strconv.Itoa(tc.count) || p.complete() != tc.complete {
				t.Errorf("count %s complete %v, want %d %v", p.set("count"), p.complete(), tc.count, tc.complete)
			}
			if len(p.ids) == 0 && (p.set("first") != "" || p.set("last") != "") {
				t.Errorf("empty page with first/last: %s", p.fin)
			}
		})
	}
}

func TestResultMessage(t *testing.T) {
	a, _, _ := newArchiver(t, Config{})
	id := a.Record(alice, bob, chat(bob, phone, "hello <world>"), false)
	p := query(t, a, nil, "")
	if len(p.results) != 1 {
		t.Fatalf("got %d results", len(p.results))
	}
	want := `<message to='alice@example.org/phone' from='alice@example.org'><result xmlns='urn:xmpp:mam:2' queryid='f27' id='` + id +
		`'><forwarded xmlns='urn:xmpp:forward:0'><delay xmlns='urn:xmpp:delay' stamp='` + stamp0 +
		`'/><message from='bob@example.net/desk' to='alice@example.org/phone' type='chat' xmlns='jabber:client'><body>hello &lt;world&gt;</body></message></forwarded></result></message>`
	if got := p.results[0].String(); strings.ReplaceAll(got, `"`, `'`) != want {
		t.Errorf("result =\n%s\nwant\n%s", got, want)
	}
	if p.iq.Attr("type") != "result" || p.set("first") != id || p.set("last") != id || !p.complete() {
		t.Errorf("iq = %s", p.iq)
	}
}

func TestForgedStanzaID(t *testing.T) {
	a, _, _ := newArchiver(t, Config{})
	in := parse(t, `<message type='chat' from='bob@example.net/desk'><body>b</body>`+
		`<stanza-id xmlns='urn:xmpp:sid:0' by='alice@example.org' id='forged'/>`+
		`<stanza-id xmlns='urn:xmpp:sid:0' by='room@conference.example.net' id='kept'/></message>`)
	before := in.String()
	a.Record(alice, bob, in, false)
	if in.String() != before {
		t.Error("Record modified its input")
	}
	p := query(t, a, nil, "")
	got := p.results[0].String()
	if strings.Contains(got, "forged") || !strings.Contains(got, "kept") {
		t.Errorf("archived %s", got)
	}
}

func TestFormAndErrors(t *testing.T) {
	a, _, _ := newArchiver(t, Config{})
	p := iq(t, a, "get", `<query xmlns='urn:xmpp:mam:2'/>`)
	x := p.iq.Child("query", NS).Child("x", "jabber:x:data")
	var vars []string
	for f := range x.Elements() {
		vars = append(vars, f.Attr("var"))
	}
	if want := []string{"FORM_TYPE", "with", "start", "end", "before-id", "after-id", "ids"}; !slices.Equal(vars, want) {
		t.Errorf("form fields = %v, want %v", vars, want)
	}
	for _, tc := range []struct{ typ, inner, err string }{
		{"set", `<other xmlns='urn:xmpp:mam:2'/>`, "feature-not-implemented"},
		{"set", `<query xmlns='urn:xmpp:mam:1'/>`, "bad-request"},
		{"set", `<query xmlns='urn:xmpp:mam:2'/><query xmlns='urn:xmpp:mam:2'/>`, "bad-request"},
		{"set", `<query xmlns='urn:xmpp:mam:2'><x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE'><value>urn:xmpp:mam:0</value></field></x></query>`, "bad-request"},
		{"set", `<prefs xmlns='urn:xmpp:mam:2' default='sometimes'/>`, "bad-request"},
		{"set", `<prefs xmlns='urn:xmpp:mam:2' default='always'><never><jid>@@</jid></never></prefs>`, "bad-request"},
	} {
		if got := iq(t, a, tc.typ, tc.inner).errCond(); got != tc.err {
			t.Errorf("%s: error %q, want %q", tc.inner, got, tc.err)
		}
	}
	// Another user's session may not read alice's archive.
	var sent *wire.Element
	a.HandleIQ(t.Context(), alice, bob, parse(t, `<iq type='set' id='x' from='bob@example.net/desk'><query xmlns='urn:xmpp:mam:2'/></iq>`),
		func(e *wire.Element) { sent = e })
	if sent == nil || sent.Child("error", "").Child("forbidden", stanza.NSStanzaErr) == nil {
		t.Errorf("foreign query answered %v", sent)
	}
}

func TestPrefs(t *testing.T) {
	a, st, _ := newArchiver(t, Config{})
	p := iq(t, a, "get", `<prefs xmlns='urn:xmpp:mam:2'/>`)
	if got := p.iq.Child("prefs", NS); got == nil || got.Attr("default") != "always" {
		t.Fatalf("default prefs = %s", p.iq)
	}
	dave := jid.MustParse("dave@example.net")
	tests := []struct {
		name  string
		prefs string
		with  map[jid.JID]bool // archived?
	}{
		{"never with always list",
			`<prefs xmlns='urn:xmpp:mam:2' default='never'><always><jid>bob@example.net</jid></always><never/></prefs>`,
			map[jid.JID]bool{bob: true, carol: false}},
		{"always with never list",
			`<prefs xmlns='urn:xmpp:mam:2' default='always'><always/><never><jid>carol@example.net/x</jid></never></prefs>`,
			map[jid.JID]bool{bob: true, carol: false, dave: true}},
		{"roster",
			`<prefs xmlns='urn:xmpp:mam:2' default='roster'><always/><never/></prefs>`,
			map[jid.JID]bool{bob: true, carol: false}},
	}
	if _, err := st.PutRosterItem(t.Context(), alice.String(), store.RosterItem{Contact: "bob@example.net", Subscription: "both"}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := iq(t, a, "set", tc.prefs)
			if p.iq.Attr("type") != "result" || p.iq.Child("prefs", NS) == nil {
				t.Fatalf("prefs set = %s", p.iq)
			}
			for with, want := range tc.with {
				if id := a.Record(alice, with, chat(with, alice, "x"), false); (id != "") != want {
					t.Errorf("Record with %s = %q, want archived %v", with, id, want)
				}
			}
		})
	}
	// The last preferences survive a restart (they are in the store).
	b := New(st, Config{})
	defer b.Close(t.Context())
	if id := b.Record(alice, carol, chat(carol, alice, "x"), false); id != "" {
		t.Errorf("after restart, roster default archived a stranger: %q", id)
	}
	got := iq(t, b, "get", `<prefs xmlns='urn:xmpp:mam:2'/>`).iq.Child("prefs", NS)
	if got.Attr("default") != "roster" {
		t.Errorf("prefs after restart = %s", got)
	}
}

func TestNotArchived(t *testing.T) {
	a, _, _ := newArchiver(t, Config{})
	for _, s := range []string{
		`<message type='groupchat'><body>x</body></message>`,
		`<message type='chat'><body>x</body><no-store xmlns='urn:xmpp:hints'/></message>`,
	} {
		if id := a.Record(alice, bob, parse(t, s), false); id != "" {
			t.Errorf("Record(%s) = %q, want not archived", s, id)
		}
	}
	if id := a.Record(jid.JID{}, bob, chat(bob, alice, "x"), false); id != "" {
		t.Errorf("Record without owner = %q", id)
	}
}

func TestRetention(t *testing.T) {
	a, st, c := newArchiver(t, Config{Retention: time.Hour, pruneEvery: 5 * time.Millisecond})
	fill(t, a, 10)
	c.set(t0.Add(2 * time.Hour))
	fresh := fill(t, a, 3)
	deadline := time.Now().Add(5 * time.Second)
	for {
		if err := a.flush(t.Context()); err != nil {
			t.Fatal(err)
		}
		msgs, _, err := st.QueryArchive(t.Context(), alice.String(), store.ArchiveQuery{Max: 100})
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, m := range msgs {
			got = append(got, m.ID)
		}
		if slices.Equal(got, fresh) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after pruning: %v, want %v", got, fresh)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestCloseFlushes(t *testing.T) {
	for _, ql := range []int{0, 1} { // default queue, and one that is always full
		t.Run(fmt.Sprint("queue ", ql), func(t *testing.T) {
			st := newStore(t)
			a := New(st, Config{queueLen: ql})
			const n = 1000
			for i := range n {
				if a.Record(alice, bob, chat(bob, alice, strconv.Itoa(i)), false) == "" {
					t.Fatal("not archived")
				}
			}
			if err := a.Close(t.Context()); err != nil {
				t.Fatal(err)
			}
			if err := a.Close(t.Context()); err != nil {
				t.Errorf("second Close: %v", err)
			}
			if got, err := st.CountArchive(t.Context(), alice.String(), store.ArchiveQuery{}); err != nil || got != n {
				t.Errorf("after Close: %d messages, %v; want %d", got, err, n)
			}
			// Record after Close still writes, synchronously.
			if a.Record(alice, bob, chat(bob, alice, "late"), false) == "" {
				t.Error("Record after Close: not archived")
			}
		})
	}
}

func TestConcurrent(t *testing.T) {
	a, _, _ := newArchiver(t, Config{now: time.Now, queueLen: 64})
	const writers, per = 8, 200
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		all  []string
		stop = make(chan struct{})
	)
	for w := range writers {
		wg.Go(func() {
			for i := range per {
				with := jid.MustParse(fmt.Sprintf("u%d@example.net", w))
				id := a.Record(alice, with, chat(with, alice, strconv.Itoa(i)), false)
				if id == "" {
					t.Error("not archived")
					return
				}
				mu.Lock()
				all = append(all, id)
				mu.Unlock()
				if i%50 == 0 {
					// A query sees what was recorded before it.
					p := query(t, a, map[string][]string{"ids": {id}}, "")
					if !slices.Equal(p.ids, []string{id}) {
						t.Errorf("query right after Record: %v, want %s", p.ids, id)
					}
				}
			}
		})
	}
	readers := sync.WaitGroup{}
	readers.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			p := query(t, a, nil, "<max>20</max><before/>")
			if !slices.IsSorted(p.ids) {
				t.Errorf("page out of order: %v", p.ids)
			}
		}
	})
	wg.Wait()
	close(stop)
	readers.Wait()
	p := query(t, a, nil, "<max>0</max>")
	if p.set("count") != strconv.Itoa(writers*per) {
		t.Errorf("count = %s, want %d", p.set("count"), writers*per)
	}
	slices.Sort(all)
	if len(slices.Compact(all)) != writers*per {
		t.Error("duplicate ids")
	}
}

func TestIDsMonotonic(t *testing.T) {
	c := &clock{t: t0} // the clock stands still, then steps back
	a := New(newStore(t), Config{now: c.now})
	defer a.Close(t.Context())
	var prev string
	for i := range 1000 {
		if i == 500 {
			c.set(t0.Add(-time.Hour))
		}
		id, _ := a.nextID()
		if len(id) != 32 || id <= prev {
			t.Fatalf("id %d = %q after %q", i, id, prev)
		}
		prev = id
	}
}
