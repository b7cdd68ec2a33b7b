package integration

import (
	"fmt"
	"strings"
	"testing"
)

// isMUCError matches a room's error of kind (presence, message or iq) with
// condition from an address starting with from.
func isMUCError(kind, from, condition string) func(*elem) bool {
	return func(e *elem) bool {
		return e.XMLName.Local == kind && e.Attr("type") == "error" && strings.HasPrefix(e.Attr("from"), from) &&
			e.ErrorCondition() == condition
	}
}

// hasStatus matches a presence from occupant carrying every status code.
func hasStatus(typ, occupant string, codes ...string) func(*elem) bool {
	return func(e *elem) bool {
		if !isPresence(typ, occupant)(e) {
			return false
		}
		for _, c := range codes {
			if !mucStatus(e, c) {
				return false
			}
		}
		return true
	}
}

func roomForm(fields map[string]string) string {
	var b strings.Builder
	b.WriteString("<query xmlns='" + nsMUCOwner + "'><x xmlns='jabber:x:data' type='submit'>")
	for k, v := range fields {
		fmt.Fprintf(&b, "<field var='%s'><value>%s</value></field>", k, v)
	}
	b.WriteString("</x></query>")
	return b.String()
}

// TestMUCAdministration drives the XEP-0045 flows an administrator and
// occupants meet, over real client streams: nick conflict and change,
// private messages, subject rules, voice in a moderated room, kick, ban,
// password and members-only rooms, a mediated invitation, registered
// nicknames, and destruction with an alternate venue.
func TestMUCAdministration(t *testing.T) {
	integration(t)
	srv := startServer(t, serverOpts{})
	for _, u := range []string{"alice", "bob", "carol"} {
		srv.AddUser(u, u+"-secret")
	}
	alice := online(t, srv, "alice", "alice-secret", loginOpts{})
	bob := online(t, srv, "bob", "bob-secret", loginOpts{})
	carol := online(t, srv, "carol", "carol-secret", loginOpts{})
	room := "ops@conference." + srv.Domain
	occ := func(n string) string { return room + "/" + n }

	createRoom(alice, room, "alice")
	enterRoom(bob, room, "bob", "")
	alice.Expect("bob arrives", isPresence("", occ("bob")))

	// A nick in use: 409 conflict. A nick change: 303 then the new nick.
	mucJoin(carol, occ("bob"), "")
	carol.Expect("nick conflict", isMUCError("presence", room, "conflict"))
	bob.Send(fmt.Sprintf("<presence to='%s'/>", occ("robert")))
	alice.Expect("303 for the old nick", func(e *elem) bool {
		return hasStatus("unavailable", occ("bob"), "303")(e) && e.Path("x", "item").Attr("nick") == "robert"
	})
	alice.Expect("the new nick", isPresence("", occ("robert")))

	// Private messages between occupants carry the muc#user marker.
	alice.Send(fmt.Sprintf("<message to='%s' type='chat'><body>psst</body><x xmlns='%s'/></message>", occ("robert"), nsMUCUser))
	bob.Expect("a private message", isMessage(occ("alice"), "psst"))

	// Subject: participants may not change it by default; the owner may.
	bob.Send(fmt.Sprintf("<message to='%s' type='groupchat' id='subj'><subject>mine</subject></message>", room))
	bob.Expect("subject refused", isMUCError("message", room, "forbidden"))
	alice.Send(fmt.Sprintf("<message to='%s' type='groupchat'><subject>Ops room</subject></message>", room))
	bob.Expect("the new subject", func(e *elem) bool { return e.ChildText("", "subject") == "Ops room" })

	// Moderated: bob becomes a visitor and may not speak until given voice.
	alice.IQResult("set", room, roomForm(map[string]string{"muc#roomconfig_moderatedroom": "1"}))
	alice.IQResult("set", room, fmt.Sprintf("<query xmlns='%s'><item nick='robert' role='visitor'/></query>", nsMUCAdmin))
	bob.Expect("demoted", func(e *elem) bool {
		return isPresence("", occ("robert"))(e) && e.Path("x", "item").Attr("role") == "visitor"
	})
	bob.Send(fmt.Sprintf("<message to='%s' type='groupchat' id='v'><body>hello?</body></message>", room))
	bob.Expect("a visitor may not speak", isMUCError("message", room, "forbidden"))
	alice.IQResult("set", room, fmt.Sprintf("<query xmlns='%s'><item nick='robert' role='participant'/></query>", nsMUCAdmin))
	bob.Expect("voice granted", func(e *elem) bool {
		return isPresence("", occ("robert"))(e) && e.Path("x", "item").Attr("role") == "participant"
	})
	bob.Send(fmt.Sprintf("<message to='%s' type='groupchat'><body>thanks</body></message>", room))
	alice.Expect("bob speaks", isMessage(occ("robert"), "thanks"))

	// Kick (307), then ban (301): a banned user cannot come back (403).
	alice.IQResult("set", room, fmt.Sprintf("<query xmlns='%s'><item nick='robert' role='none'><reason>cool off</reason></item></query>", nsMUCAdmin))
	bob.Expect("kicked", hasStatus("unavailable", occ("robert"), "110", "307"))
	enterRoom(bob, room, "bob", "")
	alice.IQResult("set", room, fmt.Sprintf("<query xmlns='%s'><item jid='%s' affiliation='outcast'/></query>", nsMUCAdmin, srv.JID("bob")))
	bob.Expect("banned", hasStatus("unavailable", occ("bob"), "110", "301"))
	mucJoin(bob, occ("bob"), "")
	bob.Expect("a banned user is refused", isMUCError("presence", room, "forbidden"))
	alice.IQResult("set", room, fmt.Sprintf("<query xmlns='%s'><item jid='%s' affiliation='none'/></query>", nsMUCAdmin, srv.JID("bob")))

	// Password-protected: 401 without it, in with it.
	alice.IQResult("set", room, roomForm(map[string]string{"muc#roomconfig_passwordprotectedroom": "1", "muc#roomconfig_roomsecret": "s3cret"}))
	mucJoin(carol, occ("carol"), "")
	carol.Expect("a password is required", isMUCError("presence", room, "not-authorized"))
	enterRoom(carol, room, "carol", "<password>s3cret</password>")
	alice.Expect("carol arrives", isPresence("", occ("carol")))

	// Members-only: 407 for a non-member until invited; the invitation
	// makes bob a member and he gets in.
	alice.IQResult("set", room, roomForm(map[string]string{"muc#roomconfig_membersonly": "1", "muc#roomconfig_passwordprotectedroom": "0"}))
	carol.Expect("carol, not a member, is removed (322)", hasStatus("unavailable", occ("carol"), "110", "322"))
	mucJoin(bob, occ("bob"), "")
	bob.Expect("members only", isMUCError("presence", room, "registration-required"))
	alice.Send(fmt.Sprintf("<message to='%s'><x xmlns='%s'><invite to='%s'><reason>join us</reason></invite></x></message>", room, nsMUCUser, srv.JID("bob")))
	inv := bob.Expect("the invitation", func(e *elem) bool { return e.XMLName.Local == "message" && e.Path("x", "invite") != nil })
	if inv.Attr("from") != room || inv.Path("x", "invite").ChildText("", "reason") != "join us" {
		t.Errorf("invitation %v", inv)
	}
	enterRoom(bob, room, "bob", "")

	// Registered nicknames: bob reserves "bobby"; carol may not take it.
	alice.IQResult("set", room, roomForm(map[string]string{"muc#roomconfig_membersonly": "0"}))
	bob.IQResult("set", room, "<query xmlns='jabber:iq:register'><x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE'><value>http://jabber.org/protocol/muc#register</value></field><field var='muc#register_roomnick'><value>bobby</value></field></x></query>")
	mucJoin(carol, occ("bobby"), "")
	carol.Expect("a registered nick", isMUCError("presence", room, "conflict"))

	// Destroy with an alternate venue: occupants learn where to go.
	alice.IQResult("set", room, fmt.Sprintf("<query xmlns='%s'><destroy jid='new@conference.%s'><reason>moved</reason></destroy></query>", nsMUCOwner, srv.Domain))
	gone := bob.Expect("the destruction", func(e *elem) bool {
		return isPresence("unavailable", occ("bob"))(e) && e.Path("x", "destroy") != nil
	})
	if d := gone.Path("x", "destroy"); d == nil || d.Attr("jid") != "new@conference."+srv.Domain || d.ChildText("", "reason") != "moved" {
		t.Errorf("destroy presence %v", gone)
	}
}
