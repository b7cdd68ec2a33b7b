package muc

import (
	"fmt"
	"testing"
	"time"

	"github.com/aldis-im/aldis/xmppcore/jid"
	"github.com/aldis-im/aldis/xmppcore/stanza"
	"github.com/aldis-im/aldis/xmppcore/wire"
)

func occ(nick string) string { return room1 + "/" + nick }

// TestJoinOrder checks creation and the order of what a joiner receives
// (XEP-0045 §7.2.3): occupants, self-presence, history, subject.
func TestJoinOrder(t *testing.T) {
	e := newEnv(t)
	alice, bob, carol := e.user("alice@example.org/a"), e.user("bob@example.org/b"), e.user("carol@example.org/c")

	// Creation: 201, owner, locked until configured.
	alice.join(occ("Alice"), "")
	alice.expect("self-presence", all(isPres("", occ("Alice")), codes("110", "201"),
		item("affiliation", "owner", "role", "moderator", "jid", "alice@example.org/a")))
	alice.expect("empty subject", all(isMsg("groupchat", room1), func(st *wire.Element) string {
		if s := st.Child("subject", ""); s == nil || s.Text() != "" || st.Child("body", "") != nil {
			return "want an empty subject and no body"
		}
		return ""
	}))
	bob.join(occ("bob"), "")
	bob.expect("locked room", all(isError("presence", stanza.Cancel, "item-not-found"), func(st *wire.Element) string {
		if by := st.Child("error", "").Attr("by"); by != room1 {
			return fmt.Sprintf("error by=%q, want the room", by)
		}
		return ""
	}))
	alice.send(fmt.Sprintf("<iq type='set' id='i1' to='%s'><query xmlns='%s'><x xmlns='jabber:x:data' type='submit'/></query></iq>", room1, NSOwner))
	alice.expect("instant room", isResult("i1"))

	bob.join(occ("bob"), "")
	bob.expect("alice's presence", all(isPres("", occ("Alice")), codes(), item("affiliation", "owner", "role", "moderator", "jid", "-")))
	bob.expect("self-presence last", all(isPres("", occ("bob")), codes("110"), item("affiliation", "none", "role", "participant")))
	bob.expect("subject", isMsg("groupchat", room1))
	// Alice is a moderator: she sees bob's real JID.
	alice.expect("bob arrives", all(isPres("", occ("bob")), codes(), item("role", "participant", "jid", "bob@example.org/b")))

	alice.send(fmt.Sprintf("<message type='groupchat' to='%s' id='m1'><body>one</body></message>", room1))
	alice.send(fmt.Sprintf("<message type='groupchat' to='%s'><subject>Cauldron</subject></message>", room1))
	alice.send(fmt.Sprintf("<message type='groupchat' to='%s' id='m2'><body>two</body></message>", room1))
	alice.sync(room1)
	bob.sync(room1)
	alice.drain()
	bob.drain()

	carol.join(occ("carol"), "")
	carol.expect("alice", isPres("", occ("Alice")))
	carol.expect("bob", isPres("", occ("bob")))
	carol.expect("self", all(isPres("", occ("carol")), codes("110")))
	for _, want := range []string{"one", "two"} {
		carol.expect("history "+want, all(isMsg("groupchat", occ("Alice")), body(want), func(st *wire.Element) string {
			d := st.Child("delay", stanza.NSDelay)
			if d == nil || d.Attr("from") != room1 || d.Attr("stamp") == "" {
				return "want a delay from the room"
			}
			return ""
		}))
	}
	carol.expect("subject last", all(isMsg("groupchat", occ("Alice")), func(st *wire.Element) string {
		if st.ChildText("subject", "") != "Cauldron" || st.Child("delay", stanza.NSDelay) == nil {
			return "want the subject Cauldron with a delay"
		}
		return ""
	}))
	carol.none(room1)
}

func TestNickConflictAndMultiSession(t *testing.T) {
	e := newEnv(t)
	alice, alice2, bob := e.user("alice@example.org/a"), e.user("alice@example.org/phone"), e.user("bob@example.org/b")
	alice.create(room1, "hag")

	// Case is folded: "HAG" is hag's nick too.
	for _, nick := range []string{"hag", "HAG"} {
		bob.join(occ(nick), "")
		bob.expect("conflict", isError("presence", stanza.Cancel, "conflict"))
	}
	// The same user from another resource shares the nick.
	alice2.join(occ("hag"), "")
	alice2.expect("self", all(isPres("", occ("hag")), codes("110")))
	alice2.expect("subject", isMsg("groupchat", room1))
	alice.none(room1) // the occupant did not change, so nobody is told

	bob.enter(room1, "bob")
	bob.send(fmt.Sprintf("<message type='groupchat' to='%s'><body>hi</body></message>", room1))
	bob.expect("own reflection", body("hi"))
	for _, u := range []*user{alice, alice2} {
		for {
			st := u.next()
			if st.Local() == "message" {
				if msg := all(isMsg("groupchat", occ("bob")), body("hi"))(st); msg != "" {
					t.Fatalf("%s: %s", u.jid, msg)
				}
				break
			}
		}
	}
	// One session leaving leaves the occupant in the room.
	alice2.send(fmt.Sprintf("<presence type='unavailable' to='%s'/>", occ("hag")))
	alice2.expect("own exit", all(isPres("unavailable", occ("hag")), codes("110")))
	bob.none(room1)
	alice.send(fmt.Sprintf("<presence type='unavailable' to='%s'/>", occ("hag")))
	bob.expect("hag leaves", all(isPres("unavailable", occ("hag")), item("role", "none")))
}

func TestNickChangeAndLeave(t *testing.T) {
	e := newEnv(t)
	alice, bob, carol := e.user("alice@example.org/a"), e.user("bob@example.org/b"), e.user("carol@example.org/c")
	alice.create(room1, "alice")
	bob.enter(room1, "bob")
	carol.enter(room1, "carol")
	alice.sync(room1)
	alice.drain()
	bob.drain()

	carol.send(fmt.Sprintf("<presence to='%s'/>", occ("bob")))
	carol.expect("conflict", isError("presence", stanza.Cancel, "conflict"))
	carol.send(fmt.Sprintf("<presence to='%s'><show>away</show></presence>", occ("oldhag")))
	for _, u := range []*user{alice, bob, carol} {
		self := []string{}
		if u == carol {
			self = []string{"110"}
		}
		u.expect("old nick leaves", all(isPres("unavailable", occ("carol")), codes(append(self, "303")...), item("nick", "oldhag", "role", "participant")))
		u.expect("new nick arrives", all(isPres("", occ("oldhag")), codes(self...), func(st *wire.Element) string {
			if st.ChildText("show", "") != "away" {
				return "the new presence lost its show"
			}
			return ""
		}))
	}
	// A status change is broadcast, with 110 to the occupant itself.
	bob.send(fmt.Sprintf("<presence to='%s'><status>brewing</status></presence>", occ("bob")))
	alice.expect("bob's status", all(isPres("", occ("bob")), codes()))
	bob.expect("own status", all(isPres("", occ("bob")), codes("110")))
	carol.expect("bob's status", isPres("", occ("bob")))

	carol.send(fmt.Sprintf("<presence type='unavailable' to='%s'><status>bye</status></presence>", occ("oldhag")))
	carol.expect("own exit", all(isPres("unavailable", occ("oldhag")), codes("110"), item("role", "none")))
	bob.expect("carol leaves", all(isPres("unavailable", occ("oldhag")), codes(), item("role", "none"), func(st *wire.Element) string {
		if st.ChildText("status", "") != "bye" {
			return "want the exit status"
		}
		return ""
	}))
	// Unavailable from a non-occupant is ignored.
	carol.send(fmt.Sprintf("<presence type='unavailable' to='%s'/>", occ("oldhag")))
	carol.none(room1)

	// The temporary room goes with its last occupant.
	for _, u := range []*user{alice, bob} {
		u.send(fmt.Sprintf("<presence type='unavailable' to='%s/x'/>", room1))
	}
	alice.send(fmt.Sprintf("<iq type='get' id='d' to='%s'><query xmlns='%s'/></iq>", room1, stanza.NSDiscoInfo))
	for {
		st := alice.next()
		if st.Local() == "iq" {
			if msg := isError("iq", stanza.Cancel, "item-not-found")(st); msg != "" {
				t.Fatalf("disco#info of the emptied room: %s: %s", msg, st)
			}
			break
		}
	}
}

func TestGroupchatAndPrivate(t *testing.T) {
	e := newEnv(t)
	alice, bob, eve := e.user("alice@example.org/a"), e.user("bob@example.org/b"), e.user("eve@example.org/e")
	alice.create(room1, "alice")
	bob.enter(room1, "bob")
	alice.sync(room1)
	alice.drain()

	// Reflected to everyone, the sender included, with the sender's id.
	bob.send(fmt.Sprintf("<message type='groupchat' to='%s' id='b1'><body>hello</body></message>", room1))
	for _, u := range []*user{alice, bob} {
		u.expect("reflection", all(isMsg("groupchat", occ("bob")), body("hello"), func(st *wire.Element) string {
			if st.Attr("id") != "b1" {
				return "id not kept"
			}
			return ""
		}))
	}
	// Without an id, every copy gets the same generated one.
	bob.send(fmt.Sprintf("<message type='groupchat' to='%s'><body>no id</body></message>", room1))
	a, b := alice.next(), bob.next()
	if a.Attr("id") == "" || a.Attr("id") != b.Attr("id") {
		t.Errorf("generated ids %q and %q, want one non-empty id", a.Attr("id"), b.Attr("id"))
	}

	// A sender cannot speak for the room in the muc#user namespace.
	bob.send(fmt.Sprintf("<message type='groupchat' to='%s'><body>fake</body><x xmlns='%s'><status code='110'/></x></message>", room1, NSUser))
	for _, u := range []*user{alice, bob} {
		u.expect("stripped", all(body("fake"), func(st *wire.Element) string {
			if st.Child("x", NSUser) != nil {
				return "the sender's muc#user element was reflected"
			}
			return ""
		}))
	}

	tests := []struct {
		name string
		from *user
		raw  string
		want func(*wire.Element) string
	}{
		{"outsider groupchat", eve, "<message type='groupchat' to='" + room1 + "'><body>x</body></message>",
			isError("message", stanza.Cancel, "not-acceptable")},
		{"groupchat PM", bob, "<message type='groupchat' to='" + occ("alice") + "'><body>x</body></message>",
			isError("message", stanza.Modify, "bad-request")},
		{"PM to nobody", bob, "<message type='chat' to='" + occ("nobody") + "'><body>x</body></message>",
			isError("message", stanza.Cancel, "item-not-found")},
		{"outsider PM", eve, "<message type='chat' to='" + occ("alice") + "'><body>x</body></message>",
			isError("message", stanza.Cancel, "not-acceptable")},
		{"normal message to the room", bob, "<message to='" + room1 + "'><body>x</body></message>",
			isError("message", stanza.Modify, "bad-request")},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.from.send(tc.raw)
			tc.from.expect(tc.name, tc.want)
		})
	}

	bob.send(fmt.Sprintf("<message type='chat' to='%s' id='p1'><body>psst</body></message>", occ("alice")))
	alice.expect("PM", all(isMsg("chat", occ("bob")), body("psst"), func(st *wire.Element) string {
		if st.Child("x", NSUser) == nil {
			return "want the muc#user marker"
		}
		return ""
	}))
	alice.configure(room1, map[string]string{"muc#roomconfig_allowpm": "none"})
	bob.sync(room1)
	bob.drain()
	bob.send(fmt.Sprintf("<message type='chat' to='%s'><body>psst</body></message>", occ("alice")))
	bob.expect("PMs off", isError("message", stanza.Auth, "forbidden"))
}

func TestSubject(t *testing.T) {
	e := newEnv(t)
	alice, bob, carol := e.user("alice@example.org/a"), e.user("bob@example.org/b"), e.user("carol@example.org/c")
	alice.create(room1, "alice")
	bob.enter(room1, "bob")
	alice.sync(room1)
	alice.drain()

	bob.send(fmt.Sprintf("<message type='groupchat' to='%s'><subject>mine</subject></message>", room1))
	bob.expect("participant may not", isError("message", stanza.Auth, "forbidden"))
	// A subject with a body is an ordinary message.
	bob.send(fmt.Sprintf("<message type='groupchat' to='%s'><subject>x</subject><body>b</body></message>", room1))
	bob.expect("ordinary message", all(isMsg("groupchat", occ("bob")), body("b")))
	alice.expect("ordinary message", body("b"))

	alice.send(fmt.Sprintf("<message type='groupchat' to='%s'><subject>Spells</subject></message>", room1))
	for _, u := range []*user{alice, bob} {
		u.expect("subject change", all(isMsg("groupchat", occ("alice")), func(st *wire.Element) string {
			if st.ChildText("subject", "") != "Spells" {
				return "want subject Spells"
			}
			return ""
		}))
	}
	alice.configure(room1, map[string]string{"muc#roomconfig_changesubject": "1"})
	bob.sync(room1)
	bob.drain()
	bob.send(fmt.Sprintf("<message type='groupchat' to='%s'><subject>Potions</subject></message>", room1))
	bob.expect("now allowed", isMsg("groupchat", occ("bob")))

	carol.join(occ("carol"), "<history maxstanzas='0'/>")
	carol.next()
	carol.next()
	carol.next() // alice, bob, self
	carol.expect("subject from its setter", all(isMsg("groupchat", occ("bob")), func(st *wire.Element) string {
		if st.ChildText("subject", "") != "Potions" || st.Child("body", "") != nil {
			return "want subject Potions and no body"
		}
		return ""
	}))
}

func TestKickBan(t *testing.T) {
	e := newEnv(t)
	alice, bob, carol := e.user("alice@example.org/a"), e.user("bob@example.org/b"), e.user("carol@example.org/c")
	alice.create(room1, "alice")
	bob.enter(room1, "bob")
	carol.enter(room1, "carol")
	for _, u := range []*user{alice, bob, carol} {
		u.sync(room1)
		u.drain()
	}
	admin := func(u *user, id, items string) {
		u.send(fmt.Sprintf("<iq type='set' id='%s' to='%s'><query xmlns='%s'>%s</query></iq>", id, room1, NSAdmin, items))
	}

	admin(bob, "k0", "<item nick='carol' role='none'/>")
	bob.expect("participant cannot kick", isError("iq", stanza.Auth, "forbidden"))
	admin(alice, "k1", "<item nick='carol' role='none' affiliation='outcast'/>")
	alice.expect("role and affiliation at once", isError("iq", stanza.Modify, "bad-request"))

	admin(alice, "k2", "<item nick='carol' role='none'><reason>Avaunt</reason></item>")
	carol.expect("kicked", all(isPres("unavailable", occ("carol")), codes("110", "307"),
		item("role", "none"), func(st *wire.Element) string {
			it := st.Child("x", NSUser).Child("item", "")
			if it.Child("actor", "").Attr("nick") != "alice" || it.ChildText("reason", "") != "Avaunt" {
				return "want actor alice and the reason"
			}
			return ""
		}))
	alice.expect("result after the kicked is told", isResult("k2"))
	alice.expect("alice sees the kick", all(isPres("unavailable", occ("carol")), codes("307")))
	bob.expect("bob sees the kick", all(isPres("unavailable", occ("carol")), codes("307")))

	// Ban by bare JID.
	admin(alice, "b1", "<item affiliation='outcast' jid='bob@example.org'><reason>Treason</reason></item>")
	bob.expect("banned", all(isPres("unavailable", occ("bob")), codes("110", "301"), item("affiliation", "outcast", "role", "none")))
	alice.expect("result", isResult("b1"))
	alice.expect("ban seen", all(isPres("unavailable", occ("bob")), codes("301")))
	bob.join(occ("bob"), "")
	bob.expect("banned user may not enter", isError("presence", stanza.Auth, "forbidden"))

	admin(alice, "l1", "<item affiliation='outcast'/>")
	alice.send(fmt.Sprintf("<iq type='get' id='l1' to='%s'><query xmlns='%s'><item affiliation='outcast'/></query></iq>", room1, NSAdmin))
	alice.expect("set without jid", isError("iq", stanza.Modify, "jid-malformed"))
	list := alice.expect("ban list", isResult("l1"))
	it := list.Child("query", NSAdmin).Child("item", "")
	if it == nil || it.Attr("jid") != "bob@example.org" || it.ChildText("reason", "") != "Treason" {
		t.Errorf("ban list %s", list)
	}
}

// TestAdminRules checks who may change what (XEP-0045 §8-§10).
func TestAdminRules(t *testing.T) {
	e := newEnv(t)
	owner, admin, mod, member := e.user("o@example.org/r"), e.user("a@example.org/r"), e.user("m@example.org/r"), e.user("p@example.org/r")
	owner.create(room1, "owner")
	owner.send(fmt.Sprintf("<iq type='set' id='s' to='%s'><query xmlns='%s'>"+
		"<item affiliation='admin' jid='a@example.org'/><item affiliation='member' jid='p@example.org'/></query></iq>", room1, NSAdmin))
	owner.expect("setup", isResult("s"))
	admin.enter(room1, "admin")
	mod.enter(room1, "mod")
	member.enter(room1, "member")
	owner.send(fmt.Sprintf("<iq type='set' id='s2' to='%s'><query xmlns='%s'><item nick='mod' role='moderator'/></query></iq>", room1, NSAdmin))
	for {
		if st := owner.next(); st.Attr("id") == "s2" {
			if msg := isResult("s2")(st); msg != "" {
				t.Fatal(msg, st)
			}
			break
		}
	}
	tests := []struct {
		name      string
		actor     *user
		item      string
		typ, cond string // "" for success
	}{
		{"moderator kicks admin", mod, "<item nick='admin' role='none'/>", stanza.Cancel, "not-allowed"},
		{"admin kicks owner", admin, "<item nick='owner' role='none'/>", stanza.Cancel, "not-allowed"},
		{"moderator grants moderator", mod, "<item nick='member' role='moderator'/>", stanza.Cancel, "not-allowed"},
		{"admin bans owner", admin, "<item affiliation='outcast' jid='o@example.org'/>", stanza.Cancel, "not-allowed"},
		{"admin makes admin", admin, "<item affiliation='admin' jid='x@example.org'/>", stanza.Cancel, "not-allowed"},
		{"member sets affiliation", member, "<item affiliation='member' jid='x@example.org'/>", stanza.Auth, "forbidden"},
		{"last owner steps down", owner, "<item affiliation='member' jid='o@example.org'/>", stanza.Cancel, "conflict"},
		{"unknown role", owner, "<item nick='member' role='king'/>", stanza.Modify, "bad-request"},
		{"absent nick", owner, "<item nick='ghost' role='visitor'/>", stanza.Cancel, "item-not-found"},
		{"moderator revokes voice", mod, "<item nick='member' role='visitor'/>", "", ""},
		{"admin adds member", admin, "<item affiliation='member' jid='x@example.org'/>", "", ""},
		{"owner makes owner", owner, "<item affiliation='owner' jid='a@example.org'/>", "", ""},
		{"second owner steps down", owner, "<item affiliation='none' jid='o@example.org'/>", "", ""},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			u := tc.actor
			id := fmt.Sprintf("r%d", i)
			u.send(fmt.Sprintf("<iq type='set' id='%s' to='%s'><query xmlns='%s'>%s</query></iq>", id, room1, NSAdmin, tc.item))
			for {
				st := u.next()
				if st.Local() != "iq" || st.Attr("id") != id {
					continue
				}
				want := isResult(id)
				if tc.cond != "" {
					want = isError("iq", tc.typ, tc.cond)
				}
				if msg := want(st); msg != "" {
					t.Errorf("%s: %s", msg, st)
				}
				break
			}
		})
	}
}

func TestModeratedAndVoice(t *testing.T) {
	e := newEnv(t)
	alice, bob := e.user("alice@example.org/a"), e.user("bob@example.org/b")
	alice.create(room1, "alice")
	alice.configure(room1, map[string]string{"muc#roomconfig_moderatedroom": "1"})
	bob.join(occ("bob"), "")
	bob.next()
	bob.expect("visitor", all(isPres("", occ("bob")), item("role", "visitor")))
	bob.next()
	alice.sync(room1)
	alice.drain()

	bob.send(fmt.Sprintf("<message type='groupchat' to='%s'><body>may I?</body></message>", room1))
	bob.expect("visitors are silent", isError("message", stanza.Auth, "forbidden"))

	// A voice request reaches the moderators; approving it grants voice.
	bob.send(fmt.Sprintf("<message to='%s'><x xmlns='jabber:x:data' type='submit'>"+
		"<field var='FORM_TYPE'><value>%s</value></field><field var='muc#role'><value>participant</value></field></x></message>", room1, NSRequest))
	req := alice.expect("voice request", isMsg("", room1))
	f := formValues(req.Child("x", NSData))
	if first(f["muc#roomnick"]) != "bob" || first(f["muc#jid"]) != "bob@example.org/b" {
		t.Fatalf("voice request form %v", f)
	}
	alice.send(fmt.Sprintf("<message to='%s'><x xmlns='jabber:x:data' type='submit'>"+
		"<field var='FORM_TYPE'><value>%s</value></field><field var='muc#roomnick'><value>bob</value></field>"+
		"<field var='muc#request_allow'><value>true</value></field></x></message>", room1, NSRequest))
	bob.expect("voice granted", all(isPres("", occ("bob")), codes("110"), item("role", "participant")))
	alice.expect("bob has voice", item("role", "participant"))
	bob.send(fmt.Sprintf("<message type='groupchat' to='%s'><body>thanks</body></message>", room1))
	bob.expect("bob speaks", body("thanks"))

	// Revoked through muc#admin.
	alice.send(fmt.Sprintf("<iq type='set' id='v' to='%s'><query xmlns='%s'><item nick='bob' role='visitor'/></query></iq>", room1, NSAdmin))
	alice.expect("body first", body("thanks"))
	alice.expect("revoked", isResult("v"))
	bob.expect("visitor again", item("role", "visitor"))
}

func TestEntryConditions(t *testing.T) {
	e := newEnv(t)
	alice, bob, carol := e.user("alice@example.org/a"), e.user("bob@example.org/b"), e.user("carol@example.org/c")
	alice.create(room1, "alice")

	alice.configure(room1, map[string]string{"muc#roomconfig_membersonly": "1"})
	bob.join(occ("bob"), "")
	bob.expect("members only", isError("presence", stanza.Auth, "registration-required"))
	alice.send(fmt.Sprintf("<iq type='set' id='m' to='%s'><query xmlns='%s'><item affiliation='member' jid='bob@example.org'/></query></iq>", room1, NSAdmin))
	alice.expect("member added", isResult("m"))
	bob.enter(room1, "bob")
	bob.sync(room1)
	bob.drain()
	// Revoking membership of a members-only room removes the occupant (321).
	alice.send(fmt.Sprintf("<iq type='set' id='m2' to='%s'><query xmlns='%s'><item affiliation='none' jid='bob@example.org'/></query></iq>", room1, NSAdmin))
	bob.expect("removed", all(isPres("unavailable", occ("bob")), codes("110", "321")))

	alice.configure(room1, map[string]string{"muc#roomconfig_membersonly": "0",
		"muc#roomconfig_passwordprotectedroom": "1", "muc#roomconfig_roomsecret": "cauldronburn"})
	for _, pw := range []string{"", "<password>wrong</password>"} {
		bob.join(occ("bob"), pw)
		bob.expect("password "+pw, isError("presence", stanza.Auth, "not-authorized"))
	}
	bob.join(occ("bob"), "<password>cauldronburn</password>")
	bob.expect("alice", isPres("", occ("alice")))

	alice.configure(room1, map[string]string{"muc#roomconfig_passwordprotectedroom": "0", "muc#roomconfig_maxusers": "2"})
	carol.join(occ("carol"), "")
	carol.expect("full", isError("presence", stanza.Wait, "service-unavailable"))

	// A presence without the MUC extension from a non-occupant.
	carol.send(fmt.Sprintf("<presence to='%s'/>", occ("carol")))
	carol.expect("explicit kick", all(isPres("unavailable", occ("carol")), codes("110", "307", "333")))
	carol.send(fmt.Sprintf("<presence to='%s'><x xmlns='%s'/></presence>", room1, NS))
	carol.expect("no nick", isError("presence", stanza.Modify, "jid-malformed"))
}

func TestAnonymity(t *testing.T) {
	e := newEnv(t)
	alice, bob, carol := e.user("alice@example.org/a"), e.user("bob@example.org/b"), e.user("carol@example.org/c")
	alice.create(room1, "alice")
	bob.enter(room1, "bob")
	carol.join(occ("carol"), "")
	carol.expect("semi-anonymous: moderator's JID hidden", all(isPres("", occ("alice")), item("jid", "-")))
	carol.expect("participant's JID hidden", all(isPres("", occ("bob")), item("jid", "-")))
	carol.expect("own JID shown, no 100", all(isPres("", occ("carol")), codes("110"), item("jid", "carol@example.org/c")))
	alice.sync(room1)
	alice.drain()
	bob.drain()

	alice.configure(room1, map[string]string{"muc#roomconfig_whois": "anyone"})
	bob.expect("172 and 104", all(isMsg("groupchat", room1), codes("104", "172")))
	carol.send(fmt.Sprintf("<presence to='%s'><show>dnd</show></presence>", occ("carol")))
	bob.expect("non-anonymous: real JID", all(isPres("", occ("carol")), item("jid", "carol@example.org/c")))
	dave := e.user("dave@example.org/d")
	dave.join(occ("dave"), "")
	for range 3 {
		dave.expect("occupant with its JID", func(st *wire.Element) string {
			if !st.Child("x", NSUser).Child("item", "").HasAttr("jid") {
				return "no jid"
			}
			return ""
		})
	}
	dave.expect("self with 100", all(isPres("", occ("dave")), codes("100", "110")))
}

func TestHistoryLimits(t *testing.T) {
	e := newEnv(t)
	alice := e.user("alice@example.org/a")
	alice.create(room1, "alice")
	for i := range 5 {
		alice.send(fmt.Sprintf("<message type='groupchat' to='%s'><body>m%d</body></message>", room1, i))
		alice.sync(room1) // stamped now, not when the room gets round to it
		e.advance(time.Minute)
	}
	alice.sync(room1)
	// The messages were sent at 12:00 … 12:04, and it is now 12:05.
	tests := []struct {
		name, req string
		want      []string
	}{
		{"no request: all", "", []string{"m0", "m1", "m2", "m3", "m4"}},
		{"maxstanzas 0", "<history maxstanzas='0'/>", nil},
		{"maxstanzas 2", "<history maxstanzas='2'/>", []string{"m3", "m4"}},
		{"maxchars 0", "<history maxchars='0'/>", nil},
		{"maxchars for one", "<history maxchars='120'/>", []string{"m4"}},
		{"seconds", "<history seconds='150'/>", []string{"m3", "m4"}},
		{"since", "<history since='2026-05-01T12:01:30Z'/>", []string{"m2", "m3", "m4"}},
		{"since and maxstanzas", "<history since='2026-05-01T12:01:30Z' maxstanzas='1'/>", []string{"m4"}},
		{"garbage ignored", "<history maxstanzas='lots'/>", []string{"m0", "m1", "m2", "m3", "m4"}},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			u := e.user(fmt.Sprintf("u%d@example.org/r", i))
			u.join(occ(fmt.Sprintf("u%d", i)), tc.req)
			u.next() // alice
			u.next() // self
			var got []string
			for {
				st := u.next()
				if st.Child("subject", "") != nil {
					break
				}
				got = append(got, st.ChildText("body", ""))
			}
			if fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Errorf("history %v, want %v", got, tc.want)
			}
			u.send(fmt.Sprintf("<presence type='unavailable' to='%s'/>", occ(fmt.Sprintf("u%d", i))))
		})
	}
}

func TestHistoryRing(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.History = 3 })
	alice := e.user("alice@example.org/a")
	alice.create(room1, "alice")
	for i := range 7 {
		alice.send(fmt.Sprintf("<message type='groupchat' to='%s'><body>m%d</body></message>", room1, i))
	}
	bob := e.user("bob@example.org/b")
	bob.join(occ("bob"), "")
	bob.next()
	bob.next()
	for _, want := range []string{"m4", "m5", "m6"} {
		bob.expect("history", body(want))
	}
	bob.expect("subject", isMsg("groupchat", room1))
}

func TestDestroy(t *testing.T) {
	e := newEnv(t)
	alice, bob := e.user("alice@example.org/a"), e.user("bob@example.org/b")
	alice.create(room1, "alice")
	alice.configure(room1, map[string]string{"muc#roomconfig_persistentroom": "1"})
	bob.enter(room1, "bob")
	if rooms, _ := e.db.Rooms(t.Context(), domain); len(rooms) != 1 {
		t.Fatalf("persistent room not stored: %v", rooms)
	}
	bob.send(fmt.Sprintf("<iq type='set' id='d0' to='%s'><query xmlns='%s'><destroy/></query></iq>", room1, NSOwner))
	bob.expect("not an owner", isError("iq", stanza.Auth, "forbidden"))
	alice.sync(room1)
	alice.drain()
	alice.send(fmt.Sprintf("<iq type='set' id='d1' to='%s'><query xmlns='%s'>"+
		"<destroy jid='darkcave@%s'><reason>Macbeth doth come.</reason></destroy></query></iq>", room1, NSOwner, domain))
	destroyed := func(st *wire.Element) string {
		d := st.Child("x", NSUser).Child("destroy", "")
		if d == nil || d.Attr("jid") != "darkcave@"+domain || d.ChildText("reason", "") != "Macbeth doth come." {
			return "want the destroy element with venue and reason"
		}
		return ""
	}
	bob.expect("bob told", all(isPres("unavailable", occ("bob")), item("affiliation", "none", "role", "none"), destroyed))
	alice.expect("alice told", all(isPres("unavailable", occ("alice")), destroyed))
	alice.expect("then the result", isResult("d1"))
	if rooms, _ := e.db.Rooms(t.Context(), domain); len(rooms) != 0 {
		t.Errorf("destroyed room still stored: %v", rooms)
	}
	alice.send(fmt.Sprintf("<iq type='get' id='d2' to='%s'><query xmlns='%s'/></iq>", room1, stanza.NSDiscoInfo))
	alice.expect("gone", isError("iq", stanza.Cancel, "item-not-found"))
}

func TestCancelNewRoom(t *testing.T) {
	e := newEnv(t)
	alice := e.user("alice@example.org/a")
	alice.join(occ("alice"), "")
	alice.next()
	alice.next()
	alice.send(fmt.Sprintf("<iq type='set' id='c' to='%s'><query xmlns='%s'><x xmlns='jabber:x:data' type='cancel'/></query></iq>", room1, NSOwner))
	alice.expect("out of the room", isPres("unavailable", occ("alice")))
	alice.expect("cancelled", isResult("c"))
	alice.send(fmt.Sprintf("<iq type='get' id='i' to='%s'><query xmlns='%s'/></iq>", room1, stanza.NSDiscoInfo))
	alice.expect("no room", isError("iq", stanza.Cancel, "item-not-found"))
}

func TestConfigForm(t *testing.T) {
	e := newEnv(t)
	alice, bob := e.user("alice@example.org/a"), e.user("bob@example.org/b")
	alice.create(room1, "alice")
	bob.enter(room1, "bob")
	get := func(u *user) *wire.Element {
		u.send(fmt.Sprintf("<iq type='get' id='g' to='%s'><query xmlns='%s'/></iq>", room1, NSOwner))
		for {
			if st := u.next(); st.Local() == "iq" {
				return st
			}
		}
	}
	if st := get(bob); isError("iq", stanza.Auth, "forbidden")(st) != "" {
		t.Errorf("non-owner got the form: %s", st)
	}
	fields := formValues(get(alice).Child("query", NSOwner).Child("x", NSData))
	for k, want := range map[string]string{
		"FORM_TYPE": NSRoomConfig, "muc#roomconfig_publicroom": "1", "muc#roomconfig_persistentroom": "0",
		"muc#roomconfig_whois": "moderators", "muc#roomconfig_maxusers": "100", "muc#roomconfig_allowpm": "anyone",
	} {
		if got := first(fields[k]); got != want {
			t.Errorf("default %s = %q, want %q", k, got, want)
		}
	}
	set := map[string]string{
		"muc#roomconfig_roomname": "The Coven", "muc#roomconfig_roomdesc": "Witches only",
		"muc#roomconfig_publicroom": "0", "muc#roomconfig_moderatedroom": "1", "muc#roomconfig_maxusers": "30",
		"muc#roomconfig_allowpm": "moderators", "muc#roomconfig_allowinvites": "1", "muc#roomconfig_whois": "anyone",
	}
	if st := alice.configure(room1, set); isResult("cfg")(st) != "" {
		t.Fatalf("submit: %s", st)
	}
	fields = formValues(get(alice).Child("query", NSOwner).Child("x", NSData))
	for k, v := range set {
		if v == "1" || v == "0" {
			v = map[string]string{"1": "1", "0": "0"}[v]
		}
		if got := first(fields[k]); got != v {
			t.Errorf("after submit %s = %q, want %q", k, got, v)
		}
	}
	for _, bad := range []map[string]string{
		{"muc#roomconfig_maxusers": "1000"},
		{"muc#roomconfig_whois": "everybody"},
		{"muc#roomconfig_publicroom": "maybe"},
		{"muc#roomconfig_passwordprotectedroom": "1"},
	} {
		if st := alice.configure(room1, bad); isError("iq", stanza.Modify, "not-acceptable")(st) != "" {
			t.Errorf("submit %v: %s, want not-acceptable", bad, st)
		}
	}
	// The room's disco#info shows the configuration.
	alice.send(fmt.Sprintf("<iq type='get' id='i' to='%s'><query xmlns='%s'/></iq>", room1, stanza.NSDiscoInfo))
	var info *wire.Element
	for info == nil {
		if st := alice.next(); st.Local() == "iq" {
			info = st
		}
	}
	q := info.Child("query", stanza.NSDiscoInfo)
	if id := q.Child("identity", ""); id == nil || id.Attr("name") != "The Coven" || id.Attr("category") != "conference" {
		t.Errorf("room identity in %s", info)
	}
	features := map[string]bool{}
	for f := range q.Elements() {
		if f.Local() == "feature" {
			features[f.Attr("var")] = true
		}
	}
	for _, f := range []string{NS, NSSelfPing, "muc_hidden", "muc_temporary", "muc_moderated", "muc_nonanonymous", "muc_open", "muc_unsecured"} {
		if !features[f] {
			t.Errorf("room disco#info lacks %s: %s", f, info)
		}
	}
	ri := formValues(q.Child("x", NSData))
	if first(ri["FORM_TYPE"]) != NSRoomInfo || first(ri["muc#roominfo_description"]) != "Witches only" || first(ri["muc#roominfo_occupants"]) != "2" {
		t.Errorf("roominfo %v", ri)
	}
}

func TestServiceDisco(t *testing.T) {
	e := newEnv(t)
	alice := e.user("alice@example.org/a")
	alice.create(room1, "alice")
	alice.configure(room1, map[string]string{"muc#roomconfig_roomname": "Coven"})
	hidden := "hidden@" + domain
	alice.create(hidden, "alice")
	alice.configure(hidden, map[string]string{"muc#roomconfig_publicroom": "0"})
	locked := "locked@" + domain
	alice.join(locked+"/alice", "")
	alice.sync(locked)
	alice.drain()

	alice.send("<iq type='get' id='i' to='" + domain + "'><query xmlns='" + stanza.NSDiscoInfo + "'/></iq>")
	info := alice.expect("service info", isResult("i"))
	id := info.Child("query", "").Child("identity", "")
	if id.Attr("category") != "conference" || id.Attr("type") != "text" {
		t.Errorf("service identity %s", info)
	}
	alice.send("<iq type='get' id='it' to='" + domain + "'><query xmlns='" + stanza.NSDiscoItem + "'/></iq>")
	items := alice.expect("service items", isResult("it"))
	var got []string
	for it := range items.Child("query", "").Elements() {
		got = append(got, it.Attr("jid")+"="+it.Attr("name"))
	}
	if fmt.Sprint(got) != fmt.Sprint([]string{room1 + "=Coven"}) {
		t.Errorf("public rooms %v: hidden and locked rooms must not be listed", got)
	}
	alice.send("<iq type='get' id='p' to='" + domain + "'><ping xmlns='urn:xmpp:ping'/></iq>")
	alice.expect("service ping", isResult("p"))
	alice.send("<message to='" + domain + "'><body>hi</body></message>")
	alice.expect("messages to the service", isError("message", stanza.Cancel, "service-unavailable"))
}

// TestSelfPing covers XEP-0410.
func TestSelfPing(t *testing.T) {
	e := newEnv(t)
	alice, bob := e.user("alice@example.org/a"), e.user("bob@example.org/b")
	alice.create(room1, "alice")
	ping := func(u *user, to string) *wire.Element {
		u.send("<iq type='get' id='sp' to='" + to + "'><ping xmlns='urn:xmpp:ping'/></iq>")
		for {
			if st := u.next(); st.Local() == "iq" {
				return st
			}
		}
	}
	if st := ping(alice, occ("alice")); isResult("sp")(st) != "" {
		t.Errorf("joined self-ping: %s", st)
	}
	if st := ping(bob, occ("bob")); isError("iq", stanza.Cancel, "not-acceptable")(st) != "" {
		t.Errorf("self-ping when not joined: %s", st)
	}
	if st := ping(bob, "nowhere@"+domain+"/bob"); isError("iq", stanza.Cancel, "not-acceptable")(st) != "" {
		t.Errorf("self-ping to a missing room: %s", st)
	}
}

func TestIQBetweenOccupants(t *testing.T) {
	e := newEnv(t)
	alice, bob := e.user("alice@example.org/a"), e.user("bob@example.org/b")
	alice.create(room1, "alice")
	bob.enter(room1, "bob")
	alice.sync(room1)
	alice.drain()

	bob.send(fmt.Sprintf("<iq type='get' id='v1' to='%s'><query xmlns='jabber:iq:version'/></iq>", occ("alice")))
	fwd := alice.expect("forwarded", func(st *wire.Element) string {
		if st.Local() != "iq" || st.Attr("from") != occ("bob") || st.Attr("id") == "v1" {
			return "want the iq from bob's occupant JID with a new id"
		}
		return ""
	})
	a := e.user("alice@example.org/a")
	a.send(fmt.Sprintf("<iq type='result' id='%s' to='%s'><query xmlns='jabber:iq:version'><name>x</name></query></iq>", fwd.Attr("id"), occ("bob")))
	bob.expect("answer", all(isResult("v1"), func(st *wire.Element) string {
		if st.Attr("from") != occ("alice") {
			return "want it from alice's occupant JID"
		}
		return ""
	}))
	// A vCard request goes to the account, which the server answers.
	bob.send(fmt.Sprintf("<iq type='get' id='vc' to='%s'><vCard xmlns='vcard-temp'/></iq>", occ("alice")))
	e.user("alice@example.org").expect("vCard request to the account", func(st *wire.Element) string {
		if st.Local() != "iq" || st.Child("vCard", stanza.NSVCard) == nil || st.Attr("from") != occ("bob") {
			return "want the vCard request from bob's occupant JID"
		}
		return ""
	})
}

func TestGhostRemoval(t *testing.T) {
	e := newEnv(t)
	alice, bob := e.user("alice@example.org/a"), e.user("bob@example.org/b")
	alice.create(room1, "alice")
	bob.enter(room1, "bob")
	alice.sync(room1)
	alice.drain()
	// What the router sends back for a groupchat message to a vanished resource.
	bob.send(fmt.Sprintf("<message type='error' to='%s'><error type='cancel'>"+
		"<service-unavailable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></message>", occ("alice")))
	alice.expect("bob is gone", all(isPres("unavailable", occ("bob")), codes("333"), item("role", "none")))
	bob.none(room1)
}

func TestInvitations(t *testing.T) {
	e := newEnv(t)
	alice, bob, carol := e.user("alice@example.org/a"), e.user("bob@example.org/b"), e.user("carol@example.org")
	alice.create(room1, "alice")
	alice.configure(room1, map[string]string{"muc#roomconfig_membersonly": "1"})
	bob.send(fmt.Sprintf("<message to='%s'><x xmlns='%s'><invite to='carol@example.org'/></x></message>", room1, NSUser))
	bob.expect("outsiders may not invite", isError("message", stanza.Cancel, "not-acceptable"))
	alice.send(fmt.Sprintf("<message to='%s'><x xmlns='%s'><invite to='carol@example.org'><reason>Join us</reason></invite></x></message>", room1, NSUser))
	carol.expect("invitation", all(isMsg("", room1), func(st *wire.Element) string {
		inv := st.Child("x", NSUser).Child("invite", "")
		if inv == nil || inv.Attr("from") != "alice@example.org/a" || inv.ChildText("reason", "") != "Join us" {
			return "want an invite from alice with the reason"
		}
		return ""
	}))
	// The invitee of a members-only room becomes a member and may enter.
	c := e.user("carol@example.org/c")
	c.enter(room1, "carol")
	c.send(fmt.Sprintf("<message to='%s'><x xmlns='%s'><decline to='alice@example.org/a'><reason>Busy</reason></decline></x></message>", room1, NSUser))
	for {
		st := alice.next()
		x := st.Child("x", NSUser)
		if st.Local() != "message" || x == nil || x.Child("decline", "") == nil {
			continue
		}
		if d := x.Child("decline", ""); d.Attr("from") != "carol@example.org" || d.ChildText("reason", "") != "Busy" {
			t.Errorf("decline %s", st)
		}
		break
	}
}

func TestCreationRestricted(t *testing.T) {
	e := newEnv(t, func(c *Config) {
		c.AdminsOnly = true
		c.Admins = []jid.JID{jid.MustParse("root@example.org")}
	})
	alice, root, far := e.user("alice@example.org/a"), e.user("root@example.org/r"), e.user("x@elsewhere.net/r")
	alice.join(occ("alice"), "")
	alice.expect("not allowed", isError("presence", stanza.Cancel, "not-allowed"))
	root.create(room1, "root")
	alice.enter(room1, "alice")

	e2 := newEnv(t)
	far2 := e2.user(far.jid.String())
	far2.join(occ("x"), "")
	far2.expect("remote users may not create", isError("presence", stanza.Cancel, "not-allowed"))
}

// TestPersistence restarts the service on the same store.
func TestPersistence(t *testing.T) {
	e := newEnv(t)
	alice, bob := e.user("alice@example.org/a"), e.user("bob@example.org/b")
	alice.create(room1, "alice")
	alice.configure(room1, map[string]string{"muc#roomconfig_persistentroom": "1", "muc#roomconfig_roomname": "Coven",
		"muc#roomconfig_membersonly": "1"})
	alice.send(fmt.Sprintf("<iq type='set' id='m' to='%s'><query xmlns='%s'><item affiliation='member' jid='bob@example.org'/>"+
		"<item affiliation='outcast' jid='eve@example.org'><reason>spy</reason></item></query></iq>", room1, NSAdmin))
	alice.expect("affiliations", isResult("m"))
	alice.send(fmt.Sprintf("<message type='groupchat' to='%s'><subject>Kept</subject></message>", room1))
	alice.expect("subject", isMsg("groupchat", occ("alice")))
	temp := "temp@" + domain
	alice.create(temp, "alice")
	alice.sync(room1)

	if err := e.svc.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	for range 2 { // from both rooms, in either order
		alice.expect("332 on shutdown", all(isPres("unavailable", ""), codes("110", "332")))
	}
	e.start()
	alice, bob = e.user("alice@example.org/a"), e.user("bob@example.org/b")

	bob.join(occ("bob"), "")
	bob.expect("bob is still a member", all(isPres("", occ("bob")), codes("110"), item("affiliation", "member")))
	bob.expect("the subject survived", func(st *wire.Element) string {
		if st.ChildText("subject", "") != "Kept" || st.Attr("from") != occ("alice") {
			return "want subject Kept from alice"
		}
		return ""
	})
	alice.join(occ("alice"), "")
	alice.next()
	alice.expect("alice is still the owner, and the room is not new", all(isPres("", occ("alice")), codes("110"), item("affiliation", "owner")))
	alice.next()
	alice.send(fmt.Sprintf("<iq type='get' id='l' to='%s'><query xmlns='%s'><item affiliation='outcast'/></query></iq>", room1, NSAdmin))
	l := alice.expect("ban list", isResult("l"))
	if it := l.Child("query", "").Child("item", ""); it == nil || it.Attr("jid") != "eve@example.org" || it.ChildText("reason", "") != "spy" {
		t.Errorf("ban list after restart: %s", l)
	}
	alice.send("<iq type='get' id='t' to='" + temp + "'><query xmlns='" + stanza.NSDiscoInfo + "'/></iq>")
	alice.expect("the temporary room is gone", isError("iq", stanza.Cancel, "item-not-found"))
	alice.send("<iq type='get' id='it' to='" + domain + "'><query xmlns='" + stanza.NSDiscoItem + "'/></iq>")
	items := alice.expect("listed", isResult("it"))
	if it := items.Child("query", "").Child("item", ""); it == nil || it.Attr("name") != "Coven" {
		t.Errorf("service items after restart: %s", items)
	}

	// Making it temporary removes it from the store.
	alice.configure(room1, map[string]string{"muc#roomconfig_persistentroom": "0"})
	if rooms, _ := e.db.Rooms(t.Context(), domain); len(rooms) != 0 {
		t.Errorf("a room made temporary is still stored: %v", rooms)
	}
}

// TestQueueBound checks that a room refuses stanzas beyond its queue
// rather than blocking the caller, but always takes departures.
func TestQueueBound(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.QueueLimit = 2 })
	alice := e.user("alice@example.org/a")
	alice.create(room1, "alice")
	e.svc.mu.RLock()
	r := e.svc.rooms[jid.MustParse(room1)]
	e.svc.mu.RUnlock()
	// Once the room's goroutine has finished the creation, hold the room
	// as if it were busy (taking over before would race with it).
	for {
		r.mu.Lock()
		idle := !r.running
		if idle {
			r.running = true
		}
		r.mu.Unlock()
		if idle {
			break
		}
		time.Sleep(time.Millisecond)
	}
	msg := fmt.Sprintf("<message type='groupchat' to='%s'><body>x</body></message>", room1)
	for range 3 {
		alice.send(msg)
	}
	alice.expect("third refused", isError("message", stanza.Wait, "resource-constraint"))
	alice.send(fmt.Sprintf("<presence type='unavailable' to='%s'/>", occ("alice")))
	r.mu.Lock()
	n := len(r.q)
	r.running = false
	r.mu.Unlock()
	if n != 3 {
		t.Errorf("%d queued, want 2 messages and the departure", n)
	}
}

func TestListsAndMembersOnlySwitch(t *testing.T) {
	e := newEnv(t)
	alice, bob, carol := e.user("alice@example.org/a"), e.user("bob@example.org/b"), e.user("carol@example.org/c")
	alice.create(room1, "alice")
	bob.enter(room1, "bob")
	carol.enter(room1, "carol")
	alice.send(fmt.Sprintf("<iq type='set' id='m' to='%s'><query xmlns='%s'><item affiliation='member' jid='bob@example.org'/></query></iq>", room1, NSAdmin))
	for alice.next().Attr("id") != "m" {
	}
	list := func(u *user, item string) *wire.Element {
		u.send(fmt.Sprintf("<iq type='get' id='l' to='%s'><query xmlns='%s'>%s</query></iq>", room1, NSAdmin, item))
		for {
			if st := u.next(); st.Local() == "iq" && st.Attr("id") == "l" {
				return st
			}
		}
	}
	names := func(st *wire.Element, attr string) []string {
		var out []string
		for it := range st.Child("query", NSAdmin).Elements() {
			out = append(out, it.Attr(attr))
		}
		return out
	}
	if got := names(list(alice, "<item role='participant'/>"), "nick"); fmt.Sprint(got) != "[bob carol]" {
		t.Errorf("participants %v", got)
	}
	if got := names(list(alice, "<item affiliation='member'/>"), "jid"); fmt.Sprint(got) != "[bob@example.org]" {
		t.Errorf("members %v", got)
	}
	if got := names(list(alice, "<item affiliation='owner'/>"), "jid"); fmt.Sprint(got) != "[alice@example.org]" {
		t.Errorf("owners %v", got)
	}
	for _, tc := range []struct {
		u         *user
		item      string
		typ, cond string
	}{
		{bob, "<item role='participant'/>", stanza.Auth, "forbidden"},
		{bob, "<item affiliation='member'/>", stanza.Auth, "forbidden"},
		{alice, "<item role='none'/>", stanza.Modify, "bad-request"},
		{alice, "<item/>", stanza.Modify, "bad-request"},
	} {
		if st := list(tc.u, tc.item); isError("iq", tc.typ, tc.cond)(st) != "" {
			t.Errorf("%s lists %s: %s, want %s", tc.u.jid, tc.item, st, tc.cond)
		}
	}
	for _, u := range []*user{bob, carol} {
		u.sync(room1)
		u.drain()
	}
	// Becoming members-only removes those who are not members (322).
	alice.configure(room1, map[string]string{"muc#roomconfig_membersonly": "1"})
	carol.expect("removed", all(isPres("unavailable", occ("carol")), codes("110", "322")))
	bob.expect("carol removed", all(isPres("unavailable", occ("carol")), codes("322")))
	bob.expect("config change", all(isMsg("groupchat", room1), codes("104")))
	bob.none(room1)
}

// TestObservers: an occupant from a trusted observer domain (the IRC
// gateway) sees real JIDs in a semi-anonymous room; another participant
// does not.
func TestObservers(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.Observers = []string{"irc.example.org"} })
	alice := e.user("alice@example.org/a")
	alice.create(room1, "alice")
	gw := e.user("irc.example.org/bridge")
	gw.join(room1+"/#lab", "")
	gw.expect("alice with her JID", all(isPres("", room1+"/alice"), item("jid", "alice@example.org/a")))
	gw.expect("own presence", isPres("", room1+"/#lab"))
	gw.expect("the subject", isMsg("groupchat", room1))
	bob := e.user("bob@example.org/b")
	bob.join(room1+"/bob", "")
	gw.answerJoin("bob", "")
	bob.expect("alice without her JID", all(isPres("", room1+"/alice"), item("jid", "-")))
	gw.expect("bob with his JID", all(isPres("", room1+"/bob"), item("jid", "bob@example.org/b")))
}

// TestGatewayClaims: a trusted gateway's occupant joins with the role its
// presence claims (an IRC channel operator is a moderator), changes it by
// presence, and leaves with the kick (307) or error (333) codes, actor and
// reason it gives; a normal user's presence claiming the same is ignored.
func TestGatewayClaims(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.Observers = []string{"irc.example.org"} })
	alice := e.user("alice@example.org/a")
	alice.create(room1, "alice")
	claim := func(role string) string {
		return fmt.Sprintf("<x xmlns='%s'><item role='%s'/></x>", NSUser, role)
	}
	bob := e.user("bob%net@irc.example.org/1")
	bob.send(fmt.Sprintf("<presence to='%s/bob'><x xmlns='%s'/>%s</presence>", room1, NS, claim("moderator")))
	alice.expect("bob as a moderator", all(isPres("", room1+"/bob"), item("role", "moderator", "affiliation", "none")))
	bob.expect("alice", isPres("", room1+"/alice"))
	bob.expect("own presence", all(isPres("", room1+"/bob"), item("role", "moderator"), codes("110")))
	bob.expect("subject", isMsg("groupchat", room1))

	bob.send(fmt.Sprintf("<presence to='%s/bob'>%s</presence>", room1, claim("visitor")))
	alice.expect("bob devoiced", all(isPres("", room1+"/bob"), item("role", "visitor")))
	bob.expect("own update", all(isPres("", room1+"/bob"), item("role", "visitor")))
	bob.send(fmt.Sprintf("<presence to='%s/bob'>%s</presence>", room1, claim("none")))
	alice.expect("role none is not a claim", all(isPres("", room1+"/bob"), item("role", "visitor")))
	bob.expect("own update", isPres("", room1+"/bob"))

	carol := e.user("carol@example.org/c")
	carol.send(fmt.Sprintf("<presence to='%s/carol'><x xmlns='%s'/>%s</presence>", room1, NS, claim("moderator")))
	alice.expect("carol as a participant", all(isPres("", room1+"/carol"), item("role", "participant")))
	carol.enterDrain(room1)
	bob.expect("carol", isPres("", room1+"/carol"))
	carol.send(fmt.Sprintf("<presence to='%s/carol' type='unavailable'><x xmlns='%s'><status code='307'/><item><actor nick='x'/></item></x></presence>", room1, NSUser))
	alice.expect("carol left, no codes of hers", all(isPres("unavailable", room1+"/carol"), codes(), item("role", "none")))
	bob.expect("carol left", all(isPres("unavailable", room1+"/carol"), codes()))
	carol.expect("own leave", all(isPres("unavailable", room1+"/carol"), codes("110")))

	bob.send(fmt.Sprintf("<presence to='%s/bob' type='unavailable'><status>Kicked by op: spam</status><x xmlns='%s'><status code='307'/><status code='201'/><item><actor nick='op'/><reason>spam</reason></item></x></presence>", room1, NSUser))
	kicked := alice.expect("bob kicked", all(isPres("unavailable", room1+"/bob"), codes("307"), item("role", "none")))
	it := kicked.Child("x", NSUser).Child("item", "")
	if a := it.Child("actor", ""); a == nil || a.Attr("nick") != "op" || it.ChildText("reason", "") != "spam" {
		t.Fatalf("kick without actor op and reason spam: %s", kicked)
	}
	if kicked.ChildText("status", "") != "Kicked by op: spam" {
		t.Fatalf("kick lost its status text: %s", kicked)
	}
	bob.expect("own kick", all(isPres("unavailable", room1+"/bob"), codes("110", "307")))

	erin := e.user("erin%net@irc.example.org/2")
	erin.send(fmt.Sprintf("<presence to='%s/erin'><x xmlns='%s'/></presence>", room1, NS))
	alice.expect("erin with the default role", all(isPres("", room1+"/erin"), item("role", "participant")))
	erin.enterDrain(room1)
	erin.send(fmt.Sprintf("<presence to='%s/erin' type='unavailable'><x xmlns='%s'><status code='333'/></x></presence>", room1, NSUser))
	alice.expect("erin split", all(isPres("unavailable", room1+"/erin"), codes("333")))
}

// answerJoin reads the room's question about nick's join and answers it:
// a result, or an error of condition cond.
func (u *user) answerJoin(nick, cond string) {
	u.e.t.Helper()
	q := u.expect("the room's question", func(st *wire.Element) string {
		if st.Local() != "iq" || st.Attr("type") != "set" || st.Child("join", NSGateway) == nil {
			return "not a gateway join question"
		}
		if got := st.Child("join", NSGateway).Attr("nick"); got != nick {
			return fmt.Sprintf("a question about %q, want %q", got, nick)
		}
		return ""
	})
	if cond == "" {
		u.send(fmt.Sprintf("<iq type='result' id='%s' to='%s'/>", q.Attr("id"), q.Attr("from")))
		return
	}
	u.send(fmt.Sprintf("<iq type='error' id='%s' to='%s'><error type='auth'><%s xmlns='%s'/><text xmlns='%s'>IRC: banned (474)</text></error></iq>",
		q.Attr("id"), q.Attr("from"), cond, stanza.NSStanzaErr, stanza.NSStanzaErr))
}

// TestGatewayJoin: a room with its gateway in it admits a new occupant
// only once the gateway said yes; the gateway's error is the join's error;
// an answer from anyone else does nothing; a gateway that does not answer
// in time does not keep anyone out; the gateway's own users are not asked
// about.
func TestGatewayJoin(t *testing.T) {
	e := newEnv(t, func(c *Config) {
		c.Observers = []string{"irc.example.org"}
		c.GatewayTimeout = 300 * time.Millisecond
	})
	alice := e.user("alice@example.org/a")
	alice.create(room1, "alice")
	gw := e.user("irc.example.org/bridge")
	gw.join(room1+"/#lab", "")
	alice.expect("the gateway", isPres("", room1+"/#lab"))
	gw.enterDrain(room1)

	bob := e.user("bob@example.org/b")
	bob.join(room1+"/bob", "")
	mallory := e.user("mallory@example.org/m")
	q := gw.expect("the question about bob", func(st *wire.Element) string {
		if j := st.Child("join", NSGateway); st.Local() != "iq" || j == nil || j.Attr("nick") != "bob" || j.Attr("jid") != "bob@example.org/b" {
			return "not the question about bob"
		}
		return ""
	})
	mallory.send(fmt.Sprintf("<iq type='result' id='%s' to='%s'/>", q.Attr("id"), room1))
	bob.none(room1)
	alice.none(room1)
	gw.send(fmt.Sprintf("<iq type='result' id='%s' to='%s'/>", q.Attr("id"), room1))
	alice.expect("bob admitted", isPres("", room1+"/bob"))
	bob.enterDrain(room1)
	gw.expect("bob", isPres("", room1+"/bob"))

	carol := e.user("carol@example.org/c")
	carol.join(room1+"/carol", "")
	gw.answerJoin("carol", "forbidden")
	carol.expect("the gateway's refusal", all(isPres("error", room1+"/carol"), isError("presence", "auth", "forbidden")))
	alice.none(room1)

	// The subject changes only once the gateway set the channel's topic.
	subjectQ := func() *wire.Element {
		return gw.expect("the question about the subject", func(st *wire.Element) string {
			if s := st.Child("subject", NSGateway); st.Local() != "iq" || s == nil || s.Attr("nick") != "alice" || s.Text() != "new topic" {
				return "not the subject question"
			}
			return ""
		})
	}
	alice.send(fmt.Sprintf("<message type='groupchat' to='%s' id='s1'><subject>new topic</subject></message>", room1))
	q = subjectQ()
	gw.send(fmt.Sprintf("<iq type='error' id='%s' to='%s'><error type='auth'><forbidden xmlns='%s'/></error></iq>", q.Attr("id"), room1, stanza.NSStanzaErr))
	alice.expect("the refusal", isError("message", "auth", "forbidden"))
	bob.none(room1)
	alice.send(fmt.Sprintf("<message type='groupchat' to='%s' id='s2'><subject>new topic</subject></message>", room1))
	q = subjectQ()
	gw.send(fmt.Sprintf("<iq type='result' id='%s' to='%s'/>", q.Attr("id"), room1))
	bob.expect("the subject", all(isMsg("groupchat", room1+"/alice"), func(st *wire.Element) string {
		if st.ChildText("subject", "") != "new topic" {
			return "not the new subject"
		}
		return ""
	}))
	alice.expect("the subject", isMsg("groupchat", room1+"/alice"))
	gw.expect("the subject", isMsg("groupchat", room1+"/alice"))

	dan := e.user("dan%net@irc.example.org/3")
	dan.join(room1+"/dan", "")
	alice.expect("the gateway's user, not asked about", isPres("", room1+"/dan"))
	gw.expect("dan", isPres("", room1+"/dan"))

	erin := e.user("erin@example.org/e")
	erin.join(room1+"/erin", "")
	gw.expect("the question about erin", func(st *wire.Element) string {
		if st.Child("join", NSGateway) == nil {
			return "no question"
		}
		return ""
	})
	alice.expect("erin admitted when the gateway did not answer", isPres("", room1+"/erin"))
}
