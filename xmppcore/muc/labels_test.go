package muc

import (
	"strings"
	"testing"
	"time"

	"github.com/aldis-im/aldis/core/identity"
	"github.com/aldis-im/aldis/core/label"
	"github.com/aldis-im/aldis/core/label/labeltest"
	"github.com/aldis-im/aldis/xmppcore/seclabel"
	"github.com/aldis-im/aldis/xmppcore/wire"
)

// newLabelEnv is a service enforcing the labeltest policy, with alice and
// dave SECRET, carol CONFIDENTIAL and everyone else UNCLASSIFIED.
func newLabelEnv(t *testing.T) *env {
	t.Helper()
	var dir *identity.Directory
	e := newEnv(t, func(c *Config) {
		dir = identity.New(labeltest.Set(t), c.Store.(identity.Store), nil, time.Millisecond)
		c.Labels = seclabel.New(seclabel.Config{Directory: dir, Local: []string{"example.org"}})
	})
	for u, c := range map[string]string{"alice": "SECRET", "dave": "SECRET", "carol": "CONFIDENTIAL"} {
		if err := dir.SetUser(t.Context(), u+"@example.org", c); err != nil {
			t.Fatal(err)
		}
	}
	return e
}

const confidentialESS = labeltest.ConfidentialESS

func labelled(b64 string) string { return labeltest.Element(b64) }

func hasLabel(marking string) func(*wire.Element) string {
	return func(st *wire.Element) string {
		sl := st.Child("securitylabel", "urn:xmpp:sec-label:0")
		if sl == nil || !strings.Contains(sl.String(), marking) {
			return "want a label marked " + marking + ", got " + st.String()
		}
		return ""
	}
}

func TestLabelledRoom(t *testing.T) {
	e := newLabelEnv(t)
	alice, bob, carol := e.user("alice@example.org/a"), e.user("bob@example.org/b"), e.user("carol@example.org/c")
	alice.create(room1, "Alice")
	bob.enter(room1, "Bob")
	carol.enter(room1, "Carol")
	for _, u := range []*user{alice, bob} {
		u.sync(room1)
		u.drain()
	}

	// SECRET: only alice (its sender, cleared) gets it; no error for the others.
	alice.send(`<message to='` + room1 + `' type='groupchat' id='s1'><body>secret plan</body>` + labelled(labeltest.SecretESS) + `</message>`)
	alice.expect("reflection", all(isMsg("groupchat", room1+"/Alice"), body("secret plan")))
	bob.none(room1)
	carol.none(room1)
	alice.none(room1)

	// Unlabelled: the room label (UNCLASSIFIED) is stamped, everyone gets it.
	alice.send(`<message to='` + room1 + `' type='groupchat' id='u1'><body>lunch?</body></message>`)
	for _, u := range []*user{alice, bob, carol} {
		u.expect("stamped message", all(body("lunch?"), hasLabel("NATO UNCLASSIFIED")))
	}

	// CONFIDENTIAL from carol: alice and carol, not bob.
	carol.send(`<message to='` + room1 + `' type='groupchat' id='c1'><body>conf</body>` + labelled(confidentialESS) + `</message>`)
	alice.expect("confidential", body("conf"))
	carol.expect("confidential", body("conf"))
	bob.none(room1)

	// History is filtered per joiner before maxstanzas counts.
	dave := e.user("dave@example.org/d")
	dave.join(room1+"/Dave", "")
	bob2 := e.user("bob@example.org/other")
	bob2.join(room1+"/Bob", "<history maxstanzas='1'/>")
	histBodies := func(u *user) []string {
		u.sync(room1)
		var out []string
		for _, st := range u.drain() {
			if st.Local() == "message" && st.Child("delay", "urn:xmpp:delay") != nil {
				out = append(out, st.ChildText("body", ""))
			}
		}
		return out
	}
	if got := histBodies(dave); strings.Join(got, ",") != "secret plan,lunch?,conf" {
		t.Errorf("dave's history %v", got)
	}
	if got := histBodies(bob2); strings.Join(got, ",") != "lunch?" {
		t.Errorf("bob's history %v", got)
	}

	for _, u := range []*user{alice, bob} {
		u.sync(room1)
		u.drain()
	}
	// A private message bob may not read: E2 to the sender.
	alice.send(`<message to='` + room1 + `/Bob' type='chat' id='p1'><body>psst</body>` + labelled(labeltest.SecretESS) + `</message>`)
	er := alice.expect("E2", isError("message", "auth", "forbidden"))
	if strings.Contains(er.String(), "psst") || strings.Contains(er.String(), "securitylabel") {
		t.Errorf("error leaks: %s", er)
	}
	bob.none(room1)

	// A subject change carries no label.
	alice.send(`<message to='` + room1 + `' type='groupchat' id='subj'><subject>Ops</subject>` + labelled(labeltest.SecretESS) + `</message>`)
	got := bob.expect("subject", isMsg("groupchat", room1+"/Alice"))
	if got.ChildText("subject", "") != "Ops" || got.Child("securitylabel", "urn:xmpp:sec-label:0") != nil {
		t.Errorf("subject change: %s", got)
	}
}

func TestRoomClearanceAndLabel(t *testing.T) {
	e := newLabelEnv(t)
	alice, bob := e.user("alice@example.org/a"), e.user("bob@example.org/b")
	alice.create(room1, "Alice")

	// The form offers the XEP-0258 fields.
	alice.send(`<iq type='get' id='f' to='` + room1 + `'><query xmlns='` + NSOwner + `'/></iq>`)
	form := alice.expect("form", isResult("f")).String()
	for _, v := range []string{fieldLabel, fieldCustomLabel, fieldClearance, fieldCustomClearance, "Catalog:Classified|SECRET"} {
		if !strings.Contains(form, v) {
			t.Errorf("form lacks %s", v)
		}
	}
	// A room clearance of CONFIDENTIAL: SECRET messages are refused (E3).
	if res := alice.configure(room1, map[string]string{fieldClearance: customOption, fieldCustomClearance: "CONFIDENTIAL"}); res.Attr("type") != "result" {
		t.Fatalf("configure: %s", res)
	}
	alice.send(`<message to='` + room1 + `' type='groupchat' id='s1'><body>x</body>` + labelled(labeltest.SecretESS) + `</message>`)
	er := alice.expect("E3", isError("message", "auth", "forbidden"))
	if er.Child("error", "").Attr("by") != room1 || strings.Contains(er.String(), "<body") {
		t.Errorf("E3: %s", er)
	}
	// A room label the clearance does not admit, or the owner is not
	// cleared for, is refused.
	if res := alice.configure(room1, map[string]string{fieldLabel: "Catalog:Classified|SECRET"}); res.Attr("type") != "error" {
		t.Errorf("room label above the room clearance accepted: %s", res)
	}
	// A CONFIDENTIAL room label keeps UNCLASSIFIED bob out.
	if res := alice.configure(room1, map[string]string{fieldLabel: "Catalog:Classified|CONFIDENTIAL"}); res.Attr("type") != "result" {
		t.Fatalf("configure label: %s", res)
	}
	bob.join(room1+"/Bob", "")
	er = bob.expect("refused join", isError("presence", "auth", "forbidden"))
	if strings.Contains(er.String(), "CONFIDENTIAL") {
		t.Errorf("refusal discloses the room label: %s", er)
	}

	// The service and the room advertise labels; the room's catalog for bob is the
	// intersection of his clearance and the room's.
	alice.send(`<iq type='get' id='sd' to='` + domain + `'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>`)
	if got := alice.expect("service disco", isResult("sd")).String(); !strings.Contains(got, "urn:xmpp:sec-label:0") || !strings.Contains(got, "urn:xmpp:sec-label:catalog:2") {
		t.Errorf("service disco: %s", got)
	}
	alice.send(`<iq type='get' id='d' to='` + room1 + `'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>`)
	if got := alice.expect("disco", isResult("d")).String(); !strings.Contains(got, "urn:xmpp:sec-label:catalog:2") {
		t.Errorf("room disco: %s", got)
	}
	srv := e.user("example.org")
	srv.send(`<iq type='get' id='cat' to='` + room1 + `'><catalog xmlns='urn:xmpp:sec-label:catalog:2' to='` + room1 + `' from='carol@example.org'/></iq>`)
	got := srv.expect("catalog", isResult("cat")).String()
	if !strings.Contains(got, "Classified|CONFIDENTIAL") || strings.Contains(got, "Classified|SECRET") {
		t.Errorf("room catalog for carol: %s", got)
	}
	// A user asking the room directly gets their own catalog, whoever
	// they claim to ask for; only the server asks for someone else.
	bob.send(`<iq type='get' id='cat2' to='` + room1 + `'><catalog xmlns='urn:xmpp:sec-label:catalog:2' to='` + room1 + `' from='alice@example.org'/></iq>`)
	if got := bob.expect("own catalog", isResult("cat2")).String(); strings.Contains(got, "CONFIDENTIAL") || !strings.Contains(got, "UNCLASSIFIED") {
		t.Errorf("bob's catalog: %s", got)
	}
	e.user("other.example").send(`<iq type='get' id='cat3' to='` + room1 + `'><catalog xmlns='urn:xmpp:sec-label:catalog:2' to='` + room1 + `' from='carol@example.org'/></iq>`)
	e.user("other.example").expect("not-authorized", isError("iq", "auth", "not-authorized"))
}

// Persistent rooms keep their label and clearance across a restart.
func TestRoomLabelsSurviveRestart(t *testing.T) {
	e := newLabelEnv(t)
	alice := e.user("alice@example.org/a")
	alice.create(room1, "Alice")
	if res := alice.configure(room1, map[string]string{"muc#roomconfig_persistentroom": "1", fieldClearance: customOption, fieldCustomClearance: "CONFIDENTIAL"}); res.Attr("type") != "result" {
		t.Fatalf("configure: %s", res)
	}
	_ = e.svc.Close(t.Context())
	e.start(func(c *Config) {
		dir := identity.New(labeltest.Set(t), c.Store.(identity.Store), nil, time.Millisecond)
		c.Labels = seclabel.New(seclabel.Config{Directory: dir, Local: []string{"example.org"}})
	})
	alice.enter(room1, "Alice")
	alice.send(`<message to='` + room1 + `' type='groupchat' id='s1'><body>x</body>` + labelled(labeltest.SecretESS) + `</message>`)
	alice.expect("E3 after restart", isError("message", "auth", "forbidden"))
}

// A reloaded policy applies to rooms that exist: here its room clearance.
func TestRoomsFollowPolicyReload(t *testing.T) {
	e := newLabelEnv(t)
	alice := e.user("alice@example.org/a")
	alice.create(room1, "Alice")
	alice.send(`<message to='` + room1 + `' type='groupchat' id='s1'><body>x</body>` + labelled(labeltest.SecretESS) + `</message>`)
	alice.expect("accepted before", body("x"))

	spec := labeltest.Spec()
	spec.Policies[0].RoomClearance = "CONFIDENTIAL"
	set, errs := label.Build(spec)
	if errs != nil {
		t.Fatal(errs)
	}
	if err := e.svc.cfg.Labels.Reload(set, nil); err != nil {
		t.Fatal(err)
	}
	alice.send(`<message to='` + room1 + `' type='groupchat' id='s2'><body>y</body>` + labelled(labeltest.SecretESS) + `</message>`)
	alice.expect("E3 after the reload", isError("message", "auth", "forbidden"))
}
