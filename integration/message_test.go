package integration

import (
	"encoding/xml"
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestMessages routes one-to-one messages under RFC 6121 §8.5.
func TestMessages(t *testing.T) {
	integration(t)
	srv := startServer(t, serverOpts{})
	srv.AddUser("alice", "alice-secret")
	srv.AddUser("bob", "bob-secret")
	bobJID := srv.JID("bob")

	alice := online(t, srv, "alice", "alice-secret", loginOpts{Resource: "home"})
	bob := online(t, srv, "bob", "bob-secret", loginOpts{Resource: "laptop"})

	tests := []struct {
		name string
		to   string
	}{
		{"BareJID", bobJID},
		{"FullJID", bobJID + "/laptop"},
		// A resource that is not online: chat messages fall back to the
		// bare JID and reach bob's online resource (RFC 6121 §8.5.3.2.1).
		{"UnknownResource", bobJID + "/gone"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			alice, bob := alice.With(t), bob.With(t)
			body := "hello via " + tt.name
			alice.Send(fmt.Sprintf("<message to='%s' type='chat' id='m-%s'><body>%s</body></message>", tt.to, tt.name, body))
			m := bob.Expect("alice's message", isMessage(alice.JID.String(), body))
			// The server stamps the sender's full JID (RFC 6120 §8.1.2.1).
			if from := m.Attr("from"); from != alice.JID.String() {
				t.Errorf("message from %q, want alice's full JID %s", from, alice.JID)
			}
			if id := m.Attr("id"); id != "m-"+tt.name {
				t.Errorf("message id %q, want the sender's m-%s", id, tt.name)
			}
			alice.ExpectNone("error for a delivered message", func(e *elem) bool {
				return e.XMLName.Local == "message" && e.Attr("type") == "error"
			}, 50*time.Millisecond)
		})
	}

	t.Run("NoSuchUser", func(t *testing.T) {
		alice := alice.With(t)
		to := srv.JID("nobody")
		alice.Send(fmt.Sprintf("<message to='%s' type='chat' id='m-nobody'><body>anyone?</body></message>", to))
		e := alice.Expect("error for a message to a non-existent user", func(e *elem) bool {
			return e.XMLName.Local == "message" && e.Attr("type") == "error" && e.Attr("id") == "m-nobody"
		})
		if e.ErrorCondition() != "service-unavailable" || e.Attr("from") != to {
			t.Errorf("got %s, want a service-unavailable error from %s (RFC 6121 §8.5.2.2.1)", e, to)
		}
	})

	// IQs between users go to the full JID given; an unknown resource is
	// answered by the server (RFC 6121 §8.5.3.1, RFC 6120 §8.2.3).
	t.Run("IQToFullJID", func(t *testing.T) {
		alice, bob := alice.With(t), bob.With(t)
		res := alice.IQ("get", bob.JID.String(), "<query xmlns='jabber:iq:version'/>")
		// bob's client has no version handler; mellium answers service-unavailable.
		bob.Expect("alice's iq", func(e *elem) bool {
			return e.XMLName.Local == "iq" && e.Attr("type") == "get" && e.Attr("from") == alice.JID.String()
		})
		if res.Attr("type") != "error" || res.Attr("from") != bob.JID.String() || res.ErrorCondition() != "service-unavailable" {
			t.Errorf("reply %s, want bob's client's service-unavailable error from %s", res, bob.JID)
		}
	})
	t.Run("IQToUnknownResource", func(t *testing.T) {
		alice := alice.With(t)
		res := alice.IQ("get", bobJID+"/gone", "<query xmlns='jabber:iq:version'/>")
		if res.Attr("type") != "error" || res.ErrorCondition() != "service-unavailable" {
			t.Errorf("reply %s, want service-unavailable", res)
		}
	})
	t.Run("OtherDomain", func(t *testing.T) {
		alice := alice.With(t)
		alice.Send("<message to='someone@elsewhere.example' type='chat' id='m-remote'><body>hi</body></message>")
		e := alice.Expect("error for a message to another domain", func(e *elem) bool {
			return e.XMLName.Local == "message" && e.Attr("id") == "m-remote"
		})
		if e.Attr("type") != "error" || e.ErrorCondition() != "remote-server-not-found" {
			t.Errorf("got %s, want remote-server-not-found (no federation)", e)
		}
	})

	// Text survives the round trip exactly: escapes, non-ASCII, astral
	// characters, whitespace.
	t.Run("Text", func(t *testing.T) {
		alice, bob := alice.With(t), bob.With(t)
		const body = "Grüße, 你好 🎉 <b>bold</b> & 'single' \"double\"\n\tsecond line"
		var esc strings.Builder
		xml.EscapeText(&esc, []byte(body))
		alice.Send(fmt.Sprintf("<message to='%s' type='chat'><body>%s</body></message>", bobJID, esc.String()))
		bob.Expect("the message, unchanged", isMessage(alice.JID.String(), body))
	})

	// A large message (100 KiB, under the default 256 KiB limit) is delivered whole.
	t.Run("Large", func(t *testing.T) {
		alice, bob := alice.With(t), bob.With(t)
		body := strings.Repeat("0123456789abcdef", 100<<10/16)
		alice.Send(fmt.Sprintf("<message to='%s' type='chat'><body>%s</body></message>", bobJID, body))
		bob.Expect("the 100 KiB message", isMessage(alice.JID.String(), body))
	})

	// Stanzas from one sender arrive in the order sent (RFC 6120 §10.1).
	t.Run("Order", func(t *testing.T) {
		alice, bob := alice.With(t), bob.With(t)
		const n = 300
		for i := range n {
			alice.Send(fmt.Sprintf("<message to='%s' type='chat'><body>burst %d</body></message>", bobJID, i))
		}
		for i := range n {
			want := fmt.Sprintf("burst %d", i)
			m := bob.Expect("message "+want, func(e *elem) bool {
				return e.XMLName.Local == "message" && strings.HasPrefix(e.ChildText("", "body"), "burst ")
			})
			if got := m.ChildText("", "body"); got != want {
				t.Fatalf("message %d of the burst is %q, want %q", i, got, want)
			}
		}
	})

	t.Run("Reply", func(t *testing.T) {
		alice, bob := alice.With(t), bob.With(t)
		bob.Send(fmt.Sprintf("<message to='%s' type='chat'><body>hi alice</body></message>", alice.JID))
		alice.Expect("bob's reply", isMessage(bob.JID.String(), "hi alice"))
	})
}

// TestOfflineMessages stores a message for a user who is offline and
// delivers it, with the time it was sent, at the next login, even across a
// server restart (RFC 6121 §8.5.2.1.1, XEP-0160, XEP-0203).
func TestOfflineMessages(t *testing.T) {
	integration(t)
	srv := startServer(t, serverOpts{})
	srv.AddUser("alice", "alice-secret")
	srv.AddUser("bob", "bob-secret")

	alice := srv.login(t, "alice", "alice-secret")
	sent := time.Now().UTC().Truncate(time.Second)
	alice.Send(fmt.Sprintf("<message to='%s' type='chat' id='off-1'><body>while you were out</body></message>", srv.JID("bob")))
	alice.Send(fmt.Sprintf("<message to='%s' id='off-2'><body>second one</body></message>", srv.JID("bob")))
	alice.ExpectNone("error for a message to an offline user", func(e *elem) bool {
		return e.XMLName.Local == "message" && e.Attr("type") == "error"
	}, 200*time.Millisecond)

	// A restart must not lose what the server accepted.
	srv.restart()
	if cond := alice.StreamError(); cond != "system-shutdown" {
		t.Errorf("alice's session ended with %q during the restart, want system-shutdown", cond)
	}

	// Logging in is not enough: offline messages come with available presence.
	bob := srv.login(t, "bob", "bob-secret")
	bob.ExpectNone("offline message before initial presence", isMessage("", "while you were out"), 200*time.Millisecond)
	bob.Send("<presence/>")
	for _, body := range []string{"while you were out", "second one"} {
		m := bob.Expect("offline message "+body, isMessage(srv.JID("alice"), body))
		d := m.Child(nsDelay, "delay")
		if d == nil {
			t.Errorf("offline message %s has no <delay xmlns='urn:xmpp:delay'/>", m)
			continue
		}
		stamp, err := time.Parse(time.RFC3339, d.Attr("stamp"))
		if err != nil {
			t.Errorf("delay stamp %q is not an XEP-0082 date-time: %v", d.Attr("stamp"), err)
		} else if stamp.Before(sent.Add(-time.Second)) || stamp.After(time.Now().Add(time.Second)) {
			t.Errorf("delay stamp %s, want the time the message was sent (%s)", stamp, sent)
		}
		if from := d.Attr("from"); from != srv.Domain {
			t.Errorf("delay from %q, want the server %s", from, srv.Domain)
		}
	}
	bob.Close()

	// Delivered messages are gone from storage.
	bob = online(t, srv, "bob", "bob-secret", loginOpts{})
	bob.ExpectNone("an offline message delivered twice", isMessage("", "while you were out"), 300*time.Millisecond)
}

// TestOfflineLimits: a full offline store, or none at all, bounces messages
// to the sender instead of losing them silently (aldis.toml [offline],
// XEP-0160 §2, RFC 6121 §8.5.2.2.1).
func TestOfflineLimits(t *testing.T) {
	integration(t)
	tests := []struct {
		name   string
		max    int
		stored int // messages bob finds at login, out of three
	}{
		{"Quota", 2, 2},
		{"Disabled", noOffline, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := startServer(t, serverOpts{OfflineMax: tt.max})
			srv.AddUser("alice", "alice-secret")
			srv.AddUser("bob", "bob-secret")
			alice := srv.login(t, "alice", "alice-secret")
			for i := 1; i <= 3; i++ {
				alice.Send(fmt.Sprintf("<message to='%s' type='chat' id='q-%d'><body>note %d</body></message>", srv.JID("bob"), i, i))
			}
			for i := tt.stored + 1; i <= 3; i++ {
				id := fmt.Sprintf("q-%d", i)
				e := alice.Expect("bounce of "+id, func(e *elem) bool {
					return e.XMLName.Local == "message" && e.Attr("id") == id
				})
				if e.Attr("type") != "error" || e.ErrorCondition() != "service-unavailable" {
					t.Errorf("message %s beyond the offline limit came back as %s, want a service-unavailable error", id, e)
				}
			}
			alice.ExpectNone("a bounce for a stored message", func(e *elem) bool {
				return e.XMLName.Local == "message" && e.Attr("type") == "error"
			}, 200*time.Millisecond)

			bob := online(t, srv, "bob", "bob-secret", loginOpts{})
			for i := 1; i <= 3; i++ {
				body := fmt.Sprintf("note %d", i)
				if i <= tt.stored {
					bob.Expect("stored "+body, isMessage("", body))
				} else {
					bob.ExpectNone("bounced "+body, isMessage("", body), 100*time.Millisecond)
				}
			}
		})
	}
}
