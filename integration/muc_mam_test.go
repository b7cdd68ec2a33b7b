package integration

import (
	"fmt"
	"slices"
	"testing"
	"time"
)

const (
	nsMAM = "urn:xmpp:mam:2"
	nsSID = "urn:xmpp:sid:0"
)

// roomStanzaID is the id of the stanza-id by room in e, or "".
func roomStanzaID(e *elem, room string) string {
	for _, c := range e.Children {
		if c.XMLName.Local == "stanza-id" && c.XMLName.Space == nsSID && c.Attr("by") == room {
			return c.Attr("id")
		}
	}
	return ""
}

// roomArchive queries room's archive for its last max messages and returns
// "nick-JID body" of each and the final iq.
func roomArchive(c *client, room string, max int) ([]string, *elem) {
	c.t.Helper()
	qid := nextID("mam")
	r := c.IQ("set", room, fmt.Sprintf("<query xmlns='%s' queryid='%s'><set xmlns='http://jabber.org/protocol/rsm'><max>%d</max><before/></set></query>", nsMAM, qid, max))
	var got []string
	for {
		m, ok := c.wait(func(e *elem) bool {
			return e.XMLName.Local == "message" && e.Child(nsMAM, "result") != nil && e.Child(nsMAM, "result").Attr("queryid") == qid
		}, 10*time.Millisecond)
		if !ok {
			break
		}
		fm := m.Path("result", "forwarded", "message")
		got = append(got, fm.Attr("from")+" "+fm.ChildText("", "body"))
	}
	return got, r
}

// TestMUCArchive: a persistent room keeps an archive (XEP-0313 §5) that
// occupants can query, and its history survives a restart.
func TestMUCArchive(t *testing.T) {
	integration(t)
	srv := startServer(t, serverOpts{})
	srv.AddUser("alice", "alice-secret")
	srv.AddUser("bob", "bob-secret")
	room := "archived@conference." + srv.Domain

	alice := online(t, srv, "alice", "alice-secret", loginOpts{})
	createRoom(alice, room, "alice")
	alice.IQResult("set", room, fmt.Sprintf("<query xmlns='%s'><x xmlns='jabber:x:data' type='submit'>"+
		"<field var='FORM_TYPE'><value>http://jabber.org/protocol/muc#roomconfig</value></field>"+
		"<field var='muc#roomconfig_persistentroom'><value>1</value></field></x></query>", nsMUCOwner))
	var ids, want []string
	for i := range 3 {
		body := fmt.Sprint("kept ", i)
		alice.Send(fmt.Sprintf("<message type='groupchat' to='%s'><body>%s</body></message>", room, body))
		m := alice.Expect("reflection", func(e *elem) bool { return e.XMLName.Local == "message" && e.ChildText("", "body") == body })
		id := roomStanzaID(m, room)
		if id == "" {
			t.Fatalf("reflected message without a stanza-id by the room: %s", m)
		}
		ids = append(ids, id)
		want = append(want, room+"/alice "+body)
	}

	bob := online(t, srv, "bob", "bob-secret", loginOpts{})
	if r := bob.IQ("set", room, "<query xmlns='"+nsMAM+"'/>"); r.ErrorCondition() != "forbidden" {
		t.Errorf("an outsider's archive query: %s, want forbidden", r)
	}
	if got, r := roomArchive(alice, room, 10); !slices.Equal(got, want) || r.Attr("type") != "result" {
		t.Errorf("archive %v, %s; want %v", got, r, want)
	}

	srv.restart()
	bob = online(t, srv, "bob", "bob-secret", loginOpts{})
	mucJoin(bob, room+"/bob", "<history maxstanzas='2'/>")
	bob.Expect("bob's self-presence", isSelfPresence("", room+"/bob"))
	for i := 1; i < 3; i++ {
		m := bob.Expect("history", func(e *elem) bool { return e.XMLName.Local == "message" && e.Child("", "body") != nil })
		if m.ChildText("", "body") != fmt.Sprint("kept ", i) || m.Child(nsDelay, "delay") == nil || roomStanzaID(m, room) != ids[i] {
			t.Errorf("history message %d after the restart: %s", i, m)
		}
	}
	if got, _ := roomArchive(bob, room, 2); !slices.Equal(got, want[1:]) {
		t.Errorf("archive after the restart %v, want %v", got, want[1:])
	}
}
