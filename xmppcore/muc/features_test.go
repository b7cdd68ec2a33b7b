package muc

import (
	"fmt"
	"strings"
	"testing"

	"github.com/aldis-im/aldis/xmppcore/wire"
)

// configureMulti submits a form whose fields may have several values.
func (u *user) configureMulti(room string, fields map[string][]string) *wire.Element {
	u.e.t.Helper()
	var b strings.Builder
	for k, vs := range fields {
		fmt.Fprintf(&b, "<field var='%s'>", k)
		for _, v := range vs {
			fmt.Fprintf(&b, "<value>%s</value>", v)
		}
		b.WriteString("</field>")
	}
	u.send(fmt.Sprintf("<iq type='set' id='cfgm' to='%s'><query xmlns='%s'><x xmlns='jabber:x:data' type='submit'>%s</x></query></iq>", room, NSOwner, b.String()))
	for {
		if st := u.next(); st.Local() == "iq" && st.Attr("id") == "cfgm" {
			return st
		}
	}
}

// A logged (archived) room says so on join (170) and when logging is
// turned on or off (170, 171).
func TestLoggingStatusCodes(t *testing.T) {
	e := newEnv(t, withArchive(nil))
	e.start(withArchive(e.newArchive()))
	alice := e.user("alice@example.org/a")
	alice.create(room1, "Alice")
	alice.send(`<iq type='set' id='p' to='` + room1 + `'><query xmlns='` + NSOwner + `'><x xmlns='jabber:x:data' type='submit'><field var='muc#roomconfig_persistentroom'><value>1</value></field></x></query></iq>`)
	alice.expect("result", isResult("p"))
	alice.expect("logging on", all(isMsg("groupchat", room1), codes("104", "170")))
	bob := e.user("bob@example.org/b")
	bob.join(room1+"/Bob", "")
	bob.expect("alice", isPres("", room1+"/Alice"))
	bob.expect("self-presence with 170", all(isPres("", room1+"/Bob"), codes("110", "170")))
	bob.sync(room1)
	bob.drain()
	if res := alice.configure(room1, map[string]string{"muc#roomconfig_enablearchiving": "0"}); res.Attr("type") != "result" {
		t.Fatal(res)
	}
	bob.expect("logging off", all(isMsg("groupchat", room1), codes("104", "171")))
}

// The owner and admin lists of the configuration form change
// affiliations; a user not in the room learns of it (status 101); the
// last owner cannot be dropped.
func TestOwnerAdminListsInForm(t *testing.T) {
	e := newEnv(t)
	alice, bob := e.user("alice@example.org/a"), e.user("bob@example.org/b")
	alice.create(room1, "Alice")
	alice.send(`<iq type='get' id='f' to='` + room1 + `'><query xmlns='` + NSOwner + `'/></iq>`)
	form := alice.expect("form", isResult("f")).String()
	if !strings.Contains(form, "<field var='muc#roomconfig_roomowners' type='jid-multi'") || !strings.Contains(form, "<value>alice@example.org</value>") {
		t.Fatalf("form lacks the owner list: %s", form)
	}
	res := alice.configureMulti(room1, map[string][]string{"muc#roomconfig_persistentroom": {"1"}, "muc#roomconfig_roomadmins": {"bob@example.org"}})
	if res.Attr("type") != "result" {
		t.Fatalf("configure: %s", res)
	}
	e.user("bob@example.org").expect("101 to the bare JID", all(isMsg("", room1), codes("101"), item("affiliation", "admin", "jid", "bob@example.org")))
	if got := e.roomAffs(t); got["bob@example.org"] != "admin" {
		t.Fatalf("stored affiliations %v", got)
	}
	// bob now joins as a moderator.
	bob.join(room1+"/Bob", "")
	bob.expect("alice", isPres("", room1+"/Alice"))
	bob.expect("self-presence", all(isPres("", room1+"/Bob"), item("affiliation", "admin", "role", "moderator")))

	if res := alice.configureMulti(room1, map[string][]string{"muc#roomconfig_roomowners": {""}}); res.Attr("type") != "error" {
		t.Fatalf("the last owner was dropped: %s", res)
	}
	res = alice.configureMulti(room1, map[string][]string{"muc#roomconfig_roomadmins": {}})
	if res.Attr("type") != "result" {
		t.Fatalf("clearing the admin list: %s", res)
	}
	alice.sync(room1)
	bob.sync(room1)
	if got := e.roomAffs(t); got["bob@example.org"] != "" {
		t.Fatalf("bob is still %q", got["bob@example.org"])
	}
}

// Only the roles the room broadcasts are seen.
func TestPresenceBroadcastByRole(t *testing.T) {
	e := newEnv(t)
	alice, bob := e.user("alice@example.org/a"), e.user("bob@example.org/b")
	alice.create(room1, "Alice")
	if res := alice.configureMulti(room1, map[string][]string{
		"muc#roomconfig_moderatedroom":     {"1"},
		"muc#roomconfig_presencebroadcast": {"moderator", "participant"},
	}); res.Attr("type") != "result" {
		t.Fatal(res)
	}
	alice.sync(room1)
	alice.drain()
	bob.join(room1+"/Bob", "") // a visitor in a moderated room
	bob.expect("alice, a moderator, is seen", isPres("", room1+"/Alice"))
	bob.expect("own presence", all(isPres("", room1+"/Bob"), item("role", "visitor")))
	alice.none(room1)
	alice.send(`<iq type='get' id='f' to='` + room1 + `'><query xmlns='` + NSOwner + `'/></iq>`)
	form := alice.expect("form", isResult("f")).String()
	if !strings.Contains(form, "muc#roomconfig_presencebroadcast") || strings.Contains(form, "<value>visitor</value></field>") {
		t.Errorf("form: %s", form)
	}
}

// roomAffs reads room1's stored affiliations.
func (e *env) roomAffs(t *testing.T) map[string]string {
	t.Helper()
	affs, err := e.db.RoomAffiliations(t.Context(), room1)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, a := range affs {
		out[a.JID] = a.Affiliation
	}
	return out
}

func TestRegisteredNicknames(t *testing.T) {
	e := newEnv(t)
	alice, bob := e.user("alice@example.org/a"), e.user("bob@example.org/b")
	alice.create(room1, "Alice")
	alice.configure(room1, map[string]string{"muc#roomconfig_persistentroom": "1"})

	bob.send(`<iq type='get' id='g' to='` + room1 + `'><query xmlns='jabber:iq:register'/></iq>`)
	if form := bob.expect("form", isResult("g")).String(); !strings.Contains(form, "muc#register_roomnick") || !strings.Contains(form, NSRegisterForm) {
		t.Fatalf("registration form: %s", form)
	}
	register := func(u *user, nick string) *wire.Element {
		u.send(`<iq type='set' id='r' to='` + room1 + `'><query xmlns='jabber:iq:register'><x xmlns='jabber:x:data' type='submit'>` +
			`<field var='FORM_TYPE'><value>` + NSRegisterForm + `</value></field><field var='muc#register_roomnick'><value>` + nick + `</value></field></x></query></iq>`)
		for {
			if st := u.next(); st.Local() == "iq" && st.Attr("id") == "r" {
				return st
			}
		}
	}
	if res := register(bob, "Bobby"); res.Attr("type") != "result" {
		t.Fatalf("register: %s", res)
	}
	if got := e.roomAffs(t); got["bob@example.org"] != "member" {
		t.Errorf("registering did not make bob a member: %v", got)
	}
	// Taken: nobody else may register or use it, in any case.
	carol := e.user("carol@example.org/c")
	if res := register(carol, "bobby"); res.Attr("type") != "error" || res.Child("error", "").Child("conflict", "urn:ietf:params:xml:ns:xmpp-stanzas") == nil {
		t.Errorf("a taken nick was registered: %s", res)
	}
	carol.join(room1+"/BOBBY", "")
	carol.expect("refused join", isError("presence", "cancel", "conflict"))
	// bob sees his registration, also through disco (§7.12).
	bob.send(`<iq type='get' id='g2' to='` + room1 + `'><query xmlns='jabber:iq:register'/></iq>`)
	if got := bob.expect("registered", isResult("g2")).String(); !strings.Contains(got, "<registered/>") || !strings.Contains(got, "<username>Bobby</username>") {
		t.Errorf("registration: %s", got)
	}
	bob.send(`<iq type='get' id='d' to='` + room1 + `'><query xmlns='http://jabber.org/protocol/disco#info' node='x-roomuser-item'/></iq>`)
	if got := bob.expect("roomuser", isResult("d")).String(); !strings.Contains(got, "name='Bobby'") {
		t.Errorf("x-roomuser-item: %s", got)
	}
	// The registration survives a restart; bob may use his nick.
	_ = e.svc.Close(t.Context())
	e.start()
	carol.join(room1+"/Bobby", "")
	carol.expect("refused after restart", isError("presence", "cancel", "conflict"))
	bob.enter(room1, "Bobby")
	// Removal frees it.
	bob.send(`<iq type='set' id='rm' to='` + room1 + `'><query xmlns='jabber:iq:register'><remove/></query></iq>`)
	for st := bob.next(); st.Attr("id") != "rm"; st = bob.next() {
	}
	if res := register(carol, "Bobby2"); res.Attr("type") != "result" {
		t.Errorf("register another nick: %s", res)
	}
	// A members-only room does not let outsiders in by registering.
	alice.configure(room1, map[string]string{"muc#roomconfig_membersonly": "1"})
	dave := e.user("dave@example.org/d")
	if res := register(dave, "Dave"); res.Attr("type") != "error" {
		t.Errorf("registration let a non-member into a members-only room: %s", res)
	}
}
