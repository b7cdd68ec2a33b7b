package c2s

import (
	"strings"
	"testing"
	"time"

	"github.com/aldis-im/aldis/xmppcore/stanza"
	"github.com/aldis-im/aldis/xmppcore/wire"
)

func TestHoldKey(t *testing.T) {
	cases := []struct {
		name, stanza, key string
		held              bool
	}{
		{"available", "<presence from='b@x/r'><show>away</show></presence>", "pb@x/r", true},
		{"unavailable", "<presence from='b@x/r' type='unavailable'/>", "pb@x/r", true},
		{"subscription request", "<presence from='b@x' type='subscribe'/>", "", false},
		{"presence error", "<presence from='b@x' type='error'/>", "", false},
		{"room occupant", "<presence from='room@muc.x/nick'><x xmlns='http://jabber.org/protocol/muc#user'><item role='participant'/></x></presence>", "proom@muc.x/nick", true},
		{"own join", "<presence from='room@muc.x/me'><x xmlns='http://jabber.org/protocol/muc#user'><status code='110'/></x></presence>", "", false},
		{"chat state", "<message from='b@x/r' type='chat'><composing xmlns='http://jabber.org/protocol/chatstates'/></message>", "cb@x/r", true},
		{"chat state with thread and hint", "<message from='b@x/r' type='chat'><thread>t</thread><paused xmlns='http://jabber.org/protocol/chatstates'/><no-store xmlns='urn:xmpp:hints'/></message>", "cb@x/r", true},
		{"message with a body", "<message from='b@x/r' type='chat'><body>hi</body><active xmlns='http://jabber.org/protocol/chatstates'/></message>", "", false},
		{"namespace only in the text", "<message from='b@x/r'><body>http://jabber.org/protocol/chatstates</body></message>", "", false},
		{"error", "<message from='b@x/r' type='error'><composing xmlns='http://jabber.org/protocol/chatstates'/></message>", "", false},
		{"hint only", "<message from='b@x/r'><no-store xmlns='urn:xmpp:hints'/></message>", "", false},
		{"iq", "<iq from='b@x/r' type='get' id='1'><ping xmlns='urn:xmpp:ping'/></iq>", "", false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			key, held := holdKey([]byte(c.stanza))
			if key != c.key || held != c.held {
				t.Errorf("holdKey = %q, %v; want %q, %v", key, held, c.key, c.held)
			}
		})
	}
}

func (s *session) heldNow() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, h := range s.held {
		out = append(out, string(h.b))
	}
	return out
}

func TestCSI(t *testing.T) {
	srv, addr := startTestServer(t, Config{}, "alice", "bob")
	alice, id := online(t, addr, "alice", "phone", true)
	alice.autoAck = true
	bob, _ := online(t, addr, "bob", "b", false)
	s := srv.resumableFor(id)
	inactive := func() {
		alice.send("<inactive xmlns='urn:xmpp:csi:0'/>")
		alice.ping("inactive") // in order: the state applies to what follows
	}
	status := func(e *wire.Element) string { return e.ChildText("status", stanza.NSClient) }

	// Presence and chat states wait, the latest of each sender only.
	inactive()
	for _, st := range []string{"1", "2", "3"} {
		bob.send("<presence to='alice@example.org/phone'><status>" + st + "</status></presence>")
	}
	bob.send("<message to='alice@example.org/phone' type='chat'><composing xmlns='http://jabber.org/protocol/chatstates'/></message>")
	waitFor(t, "presence and chat state held", func() bool {
		h := s.heldNow()
		return len(h) == 2 && strings.Contains(strings.Join(h, ""), "<status>3</status>")
	})
	alice.quiet(100 * time.Millisecond)
	alice.send("<active xmlns='urn:xmpp:csi:0'/>")
	got := alice.ping("active")
	// The two took different ways through the router: either order is right.
	var presence, state int
	for _, e := range got {
		switch {
		case e.Local() == "presence" && status(e) == "3":
			presence++
		case e.Local() == "message" && e.Child("composing", nsChatStates) != nil:
			state++
		}
	}
	if len(got) != 3 || presence != 1 || state != 1 {
		t.Errorf("after <active/>: %s; want the last presence, the chat state and the ping result", dump(got))
	}

	// A message goes out at once, after what was held.
	inactive()
	bob.send("<presence to='alice@example.org/phone'><status>4</status></presence>")
	waitFor(t, "presence held", func() bool { return len(s.heldNow()) == 1 })
	bob.send("<message to='alice@example.org/phone' type='chat' id='m1'><body>hello</body></message>")
	got = alice.until("message", withID("message", "m1"))
	if len(got) != 2 || got[0].Local() != "presence" || status(got[0]) != "4" {
		t.Errorf("inactive: %s; want the held presence, then the message", dump(got))
	}

	// So does a subscription request.
	bob.send("<presence to='alice@example.org' type='subscribe'/>")
	alice.until("subscription request", func(e *wire.Element) bool { return e.Attr("type") == "subscribe" })
}
