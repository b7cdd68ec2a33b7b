package muc

import (
	"context"
	"fmt"
	"slices"
	"testing"

	"github.com/aldis-im/aldis/xmppcore/mam"
	"github.com/aldis-im/aldis/xmppcore/stanza"
	"github.com/aldis-im/aldis/xmppcore/wire"
)

// newArchive starts an archiver on e's store, closed at the end of the test.
func (e *env) newArchive() *mam.Archiver {
	a := mam.New(e.db, mam.Config{})
	e.t.Cleanup(func() { _ = a.Close(context.Background()) })
	return a
}

func withArchive(a Archive) func(*Config) { return func(c *Config) { c.Archive = a } }

// stanzaIDs returns the ids of the stanza-ids by the room in st.
func stanzaIDs(st *wire.Element) []string {
	var ids []string
	for c := range st.Elements() {
		if c.Local() == "stanza-id" && c.Space == NSSID && c.Attr("by") == room1 {
			ids = append(ids, c.Attr("id"))
		}
	}
	return ids
}

// mamQuery sends a MAM query to room1 from u and returns the results'
// (from, body) and the final iq.
func (u *user) mamQuery(id, inner string) (got []string, res *wire.Element) {
	u.e.t.Helper()
	u.send(fmt.Sprintf("<iq type='set' id='%s' to='%s'><query xmlns='%s' queryid='%s'>%s</query></iq>", id, room1, NSMAM, id, inner))
	for {
		st := u.next()
		if st.Local() == "iq" && st.Attr("id") == id {
			return got, st
		}
		r := st.Child("result", NSMAM)
		if st.Local() != "message" || r == nil || r.Attr("queryid") != id {
			u.e.t.Fatalf("%s: unexpected %s", u.jid, st)
		}
		if st.Attr("from") != room1 || st.Attr("to") != u.jid.String() {
			u.e.t.Errorf("result from=%q to=%q", st.Attr("from"), st.Attr("to"))
		}
		m := r.Child("forwarded", stanza.NSForward).Child("message", stanza.NSClient)
		got = append(got, m.Attr("from")+" "+m.ChildText("body", stanza.NSClient))
	}
}

func rsmMax(n int) string {
	return fmt.Sprintf("<set xmlns='http://jabber.org/protocol/rsm'><max>%d</max><before/></set>", n)
}

func withNick(nick string) string {
	return "<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE'><value>urn:xmpp:mam:2</value></field>" +
		"<field var='with'><value>" + occ(nick) + "</value></field></x>"
}

func TestRoomArchive(t *testing.T) {
	e := newEnv(t)
	arch := e.newArchive()
	e.start(withArchive(arch)) // replaces the service without an archive
	alice, bob, eve := e.user("alice@example.org/a"), e.user("bob@example.org/b"), e.user("eve@example.org/e")
	alice.create(room1, "alice")
	alice.configure(room1, map[string]string{"muc#roomconfig_persistentroom": "1"})
	bob.enter(room1, "bob")
	alice.sync(room1)
	alice.drain()

	alice.send("<iq type='get' id='d' to='" + room1 + "'><query xmlns='" + stanza.NSDiscoInfo + "'/></iq>")
	info := alice.expect("disco#info", isResult("d"))
	if !hasFeature(info, NSMAM) {
		t.Errorf("room does not advertise %s: %s", NSMAM, info)
	}

	var sent []string
	for i := range 6 {
		u, nick := alice, "alice"
		if i%2 == 1 {
			u, nick = bob, "bob"
		}
		// A stanza-id claiming to be the room's is the client's forgery.
		u.send(fmt.Sprintf("<message type='groupchat' to='%s'><body>%d</body><stanza-id xmlns='%s' by='%s' id='forged'/></message>", room1, i, NSSID, room1))
		var ids []string
		for _, v := range []*user{alice, bob} {
			m := v.expect("broadcast", all(isMsg("groupchat", occ(nick)), body(fmt.Sprint(i))))
			ids = append(ids, stanzaIDs(m)...)
		}
		if len(ids) != 2 || ids[0] != ids[1] || ids[0] == "forged" || ids[0] == "" {
			t.Fatalf("message %d: stanza-ids by the room %v, want one archive id on each copy", i, ids)
		}
		sent = append(sent, occ(nick)+" "+fmt.Sprint(i))
	}

	// The last page, then the one before it.
	got, res := bob.mamQuery("q1", rsmMax(4))
	fin := res.Child("fin", NSMAM)
	if fin == nil || !slices.Equal(got, sent[2:]) || fin.Attr("complete") != "false" || fin.Child("set", "").ChildText("count", "") != "6" {
		t.Fatalf("last page %v (want %v), %s", got, sent[2:], res)
	}
	first := fin.Child("set", "").ChildText("first", "")
	got, _ = bob.mamQuery("q2", "<set xmlns='http://jabber.org/protocol/rsm'><max>4</max><before>"+first+"</before></set>")
	if !slices.Equal(got, sent[:2]) {
		t.Errorf("previous page %v, want %v", got, sent[:2])
	}
	// with = an occupant JID filters by nick.
	got, _ = alice.mamQuery("q3", withNick("bob"))
	if want := []string{sent[1], sent[3], sent[5]}; !slices.Equal(got, want) {
		t.Errorf("with bob: %v, want %v", got, want)
	}

	// Outsiders may not read it.
	eve.send(fmt.Sprintf("<iq type='set' id='q4' to='%s'><query xmlns='%s'/></iq>", room1, NSMAM))
	eve.expect("outsider", isError("iq", stanza.Auth, "forbidden"))

	// In a members-only room a member who is not there may.
	alice.configure(room1, map[string]string{"muc#roomconfig_membersonly": "1"}) // bob is not a member: he leaves
	alice.sync(room1)
	alice.drain()
	alice.send(fmt.Sprintf("<iq type='set' id='m' to='%s'><query xmlns='%s'><item affiliation='member' jid='eve@example.org'/></query></iq>", room1, NSAdmin))
	alice.expect("member", isResult("m"))
	got, res = eve.mamQuery("q5", rsmMax(1))
	if !slices.Equal(got, sent[5:]) || res.Attr("type") != "result" {
		t.Errorf("member's query %v, %s", got, res)
	}

	// An owner may turn archiving off: no stanza-id, no archive.
	alice.sync(room1)
	alice.drain()
	alice.configure(room1, map[string]string{"muc#roomconfig_enablearchiving": "0"})
	alice.send(fmt.Sprintf("<message type='groupchat' to='%s'><body>off</body></message>", room1))
	if m := alice.expect("broadcast", body("off")); len(stanzaIDs(m)) != 0 {
		t.Errorf("stanza-id while archiving is off: %s", m)
	}
	alice.send(fmt.Sprintf("<iq type='set' id='q6' to='%s'><query xmlns='%s'/></iq>", room1, NSMAM))
	alice.expect("archiving off", isError("iq", stanza.Cancel, "service-unavailable"))
}

func TestTemporaryRoomNotArchived(t *testing.T) {
	e := newEnv(t)
	e.start(withArchive(e.newArchive()))
	alice := e.user("alice@example.org/a")
	alice.create(room1, "alice")
	alice.send(fmt.Sprintf("<message type='groupchat' to='%s'><body>hi</body><stanza-id xmlns='%s' by='%s' id='forged'/></message>", room1, NSSID, room1))
	if m := alice.expect("broadcast", body("hi")); len(stanzaIDs(m)) != 0 {
		t.Errorf("stanza-id in a temporary room: %s", m)
	}
	alice.send("<iq type='get' id='d' to='" + room1 + "'><query xmlns='" + stanza.NSDiscoInfo + "'/></iq>")
	if info := alice.expect("disco#info", isResult("d")); hasFeature(info, NSMAM) {
		t.Errorf("temporary room advertises %s", NSMAM)
	}
	alice.send(fmt.Sprintf("<iq type='set' id='q' to='%s'><query xmlns='%s'/></iq>", room1, NSMAM))
	alice.expect("no archive", isError("iq", stanza.Cancel, "service-unavailable"))
}

// TestHistoryAfterRestart: a persistent room's history comes back from its
// archive after a restart.
func TestHistoryAfterRestart(t *testing.T) {
	e := newEnv(t)
	arch := e.newArchive()
	e.start(withArchive(arch))
	alice := e.user("alice@example.org/a")
	alice.create(room1, "alice")
	alice.configure(room1, map[string]string{"muc#roomconfig_persistentroom": "1"})
	var ids []string
	for i := range 25 { // more than the history of 20
		alice.send(fmt.Sprintf("<message type='groupchat' to='%s'><body>%d</body></message>", room1, i))
		ids = append(ids, stanzaIDs(alice.expect("broadcast", body(fmt.Sprint(i))))...)
	}
	if err := e.svc.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := arch.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	e.start(withArchive(e.newArchive()))
	bob := e.user("bob@example.org/b")
	bob.join(occ("bob"), "<history maxstanzas='3'/>")
	var got, gotIDs []string
	for {
		st := bob.next()
		if st.Child("subject", "") != nil {
			break
		}
		if st.Local() != "message" {
			continue
		}
		if st.Attr("from") != occ("alice") || st.Child("delay", stanza.NSDelay) == nil {
			t.Errorf("history message %s: want from alice with a delay", st)
		}
		got = append(got, st.ChildText("body", ""))
		gotIDs = append(gotIDs, stanzaIDs(st)...)
	}
	if want := []string{"22", "23", "24"}; !slices.Equal(got, want) || !slices.Equal(gotIDs, ids[22:]) {
		t.Errorf("history after restart %v ids %v, want %v ids %v", got, gotIDs, want, ids[22:])
	}
	// The whole history is the last 20.
	carol := e.user("carol@example.org/c")
	carol.join(occ("carol"), "")
	n := 0
	for {
		st := carol.next()
		if st.Child("subject", "") != nil {
			break
		}
		if st.Local() == "message" {
			n++
		}
	}
	if n != 20 {
		t.Errorf("%d history messages, want 20", n)
	}
}

func hasFeature(info *wire.Element, f string) bool {
	q := info.Child("query", stanza.NSDiscoInfo)
	if q == nil {
		return false
	}
	for c := range q.Elements() {
		if c.Local() == "feature" && c.Attr("var") == f {
			return true
		}
	}
	return false
}

// TestDestroyedRoomArchiveGone: a room re-created under the name of a
// destroyed one must not show the old room's messages.
func TestDestroyedRoomArchiveGone(t *testing.T) {
	e := newEnv(t)
	e.start(withArchive(e.newArchive()))
	alice := e.user("alice@example.org/a")
	alice.create(room1, "alice")
	alice.configure(room1, map[string]string{"muc#roomconfig_persistentroom": "1"})
	alice.sync(room1)
	alice.drain()
	for i := range 3 {
		alice.send(fmt.Sprintf("<message type='groupchat' to='%s'><body>secret %d</body></message>", room1, i))
		alice.expect("broadcast", body(fmt.Sprintf("secret %d", i)))
	}
	if got, _ := alice.mamQuery("before", ""); len(got) != 3 {
		t.Fatalf("archive before destroy: %v", got)
	}
	alice.send(fmt.Sprintf("<iq type='set' id='d' to='%s'><query xmlns='%s'><destroy/></query></iq>", room1, NSOwner))
	alice.expect("destroy notice", isPres("unavailable", occ("alice")))
	alice.expect("destroyed", isResult("d"))
	alice.drain()

	alice.create(room1, "alice")
	alice.configure(room1, map[string]string{"muc#roomconfig_persistentroom": "1"})
	alice.sync(room1)
	alice.drain()
	if got, _ := alice.mamQuery("after", ""); len(got) != 0 {
		t.Errorf("the re-created room shows the destroyed room's messages: %v", got)
	}
}
