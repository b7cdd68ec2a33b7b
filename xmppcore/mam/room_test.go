package mam

import (
	"slices"
	"strconv"
	"testing"

	"github.com/aldis-im/aldis/xmppcore/jid"
	"github.com/aldis-im/aldis/xmppcore/stanza"
	"github.com/aldis-im/aldis/xmppcore/wire"
)

var (
	coven = jid.MustParse("coven@conference.example.org")
	hag   = jid.MustParse("coven@conference.example.org/hag")
	crone = jid.MustParse("coven@conference.example.org/crone")
)

func groupchat(from jid.JID, body string) *wire.Element {
	m := wire.New("message", "")
	m.Space = stanza.NSClient
	m.SetAttr("from", from.String()).SetAttr("type", "groupchat").SetAttr("id", "m"+body)
	m.AddChild(wire.New("body", "")).AddText(body)
	return m
}

// roomIQ sends a mam iq to the room from bob, who the room has let in.
func roomIQ(t *testing.T, a *Archiver, inner string) page {
	t.Helper()
	st := parse(t, `<iq type='set' id='q1' from='bob@example.net/desk' to='coven@conference.example.org'>`+inner+`</iq>`)
	var p page
	a.HandleRoomIQ(t.Context(), coven, bob, st, func(e *wire.Element) {
		e = parse(t, e.String())
		switch e.Local() {
		case "message":
			if e.Attr("to") != bob.String() || e.Attr("from") != coven.String() {
				t.Errorf("result addressed to=%q from=%q", e.Attr("to"), e.Attr("from"))
			}
			fm := e.Child("result", NS).Child("forwarded", stanza.NSForward).Child("message", stanza.NSClient)
			p.ids = append(p.ids, e.Child("result", NS).Attr("id"))
			p.bodies = append(p.bodies, fm.Attr("from")+":"+fm.ChildText("body", stanza.NSClient))
		case "iq":
			p.iq = e
			p.fin = e.Child("fin", NS)
		}
	})
	if p.iq == nil {
		t.Fatal("no iq sent")
	}
	return p
}

func TestRecordRoom(t *testing.T) {
	a, _, _ := newArchiver(t, Config{})
	for _, tc := range []struct {
		st   string
		want bool
	}{
		{`<message type='groupchat' from='coven@conference.example.org/hag'><body>hi</body></message>`, true},
		{`<message type='groupchat' from='coven@conference.example.org/hag'><subject>s</subject></message>`, false},
		{`<message type='chat' from='coven@conference.example.org/hag'><body>hi</body></message>`, false},
		{`<message type='groupchat' from='coven@conference.example.org'><body>hi</body></message>`, false},
		{`<message type='groupchat' from='other@conference.example.org/hag'><body>hi</body></message>`, false},
		{`<message type='groupchat' from='coven@conference.example.org/hag'><body>hi</body><no-store xmlns='urn:xmpp:hints'/></message>`, false},
	} {
		if got := a.RecordRoom(coven, parse(t, tc.st)) != ""; got != tc.want {
			t.Errorf("RecordRoom(%s) archived = %v, want %v", tc.st, got, tc.want)
		}
	}
	// A user archive's Record still refuses groupchat.
	if id := a.Record(alice, coven, groupchat(hag, "x"), false); id != "" {
		t.Error("Record archived a groupchat message")
	}
}

func TestRoomQuery(t *testing.T) {
	a, _, _ := newArchiver(t, Config{})
	var ids []string
	for i := range 10 {
		from := hag
		if i%2 == 1 {
			from = crone
		}
		// A stanza-id claiming to be the room's is not kept.
		m := groupchat(from, strconv.Itoa(i))
		m.AddChild(wire.New("stanza-id", NSSID)).SetAttr("by", coven.String()).SetAttr("id", "forged")
		id := a.RecordRoom(coven, m)
		if id == "" {
			t.Fatalf("RecordRoom %d: not archived", i)
		}
		ids = append(ids, id)
	}
	// Paging from the end, 3 at a time.
	p := roomIQ(t, a, `<query xmlns='urn:xmpp:mam:2'><set xmlns='http://jabber.org/protocol/rsm'><max>3</max><before/></set></query>`)
	if !slices.Equal(p.ids, ids[7:]) || p.complete() || p.set("count") != "10" {
		t.Fatalf("last page: ids %v (want %v), fin %s", p.ids, ids[7:], p.fin)
	}
	p = roomIQ(t, a, `<query xmlns='urn:xmpp:mam:2'><set xmlns='http://jabber.org/protocol/rsm'><max>3</max><before>`+ids[7]+`</before></set></query>`)
	if !slices.Equal(p.ids, ids[4:7]) {
		t.Fatalf("previous page: ids %v, want %v", p.ids, ids[4:7])
	}
	// with = an occupant JID selects that nick's messages.
	p = roomIQ(t, a, `<query xmlns='urn:xmpp:mam:2'><x xmlns='jabber:x:data' type='submit'>`+
		`<field var='FORM_TYPE'><value>urn:xmpp:mam:2</value></field><field var='with'><value>coven@conference.example.org/crone</value></field></x></query>`)
	want := []string{}
	for i := 1; i < 10; i += 2 {
		want = append(want, crone.String()+":"+strconv.Itoa(i))
	}
	if !slices.Equal(p.bodies, want) || !p.complete() || p.set("count") != "5" {
		t.Fatalf("with crone: %v, want %v; fin %s", p.bodies, want, p.fin)
	}
	// The forged stanza-id is gone from what was stored.
	hist, err := a.RoomHistory(t.Context(), coven, 2)
	if err != nil {
		t.Fatal(err)
	}
	if len(hist) != 2 || hist[0].ID != ids[8] || hist[1].ID != ids[9] {
		t.Fatalf("RoomHistory: %+v", hist)
	}
	for _, m := range hist {
		if st := parse(t, m.Stanza); st.Child("stanza-id", NSSID) != nil || st.Attr("from") == "" {
			t.Errorf("stored %s", m.Stanza)
		}
	}
	// Room archives have no preferences, and a room archive is not a user's.
	if p := roomIQ(t, a, `<prefs xmlns='urn:xmpp:mam:2'/>`); p.errCond() != "feature-not-implemented" {
		t.Errorf("prefs on a room: %s", p.iq)
	}
	if p := query(t, a, nil, ""); len(p.ids) != 0 {
		t.Errorf("alice's archive has the room's messages: %v", p.ids)
	}
}
