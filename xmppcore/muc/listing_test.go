package muc

import (
	"fmt"
	"strings"
	"testing"

	"github.com/aldis-im/aldis/xmppcore/jid"
	"github.com/aldis-im/aldis/xmppcore/wire"
)

func TestRoomListPaging(t *testing.T) {
	var rooms []*roomInfo
	for i := range 12 {
		rooms = append(rooms, &roomInfo{jid: jid.MustParse(fmt.Sprintf("r%02d@conference.example.org", i)), public: true})
	}
	rsm := func(inner string) *wire.Element {
		if inner == "-" {
			return nil
		}
		el, err := wire.ParseElement("<set xmlns='http://jabber.org/protocol/rsm'>" + inner + "</set>")
		if err != nil {
			t.Fatal(err)
		}
		return el
	}
	names := func(rs []*roomInfo) string {
		var out []string
		for _, r := range rs {
			out = append(out, r.jid.Local())
		}
		return strings.Join(out, ",")
	}
	cases := []struct {
		rq, want, first, count string
		limit                  int
	}{
		{"-", "r00,r01,r02,r03,r04,r05,r06,r07,r08,r09,r10,r11", "", "", 500},
		{"-", "r00,r01,r02", "r00@conference.example.org", "12", 3}, // more than a page: a set says so
		{"<max>4</max>", "r00,r01,r02,r03", "r00@conference.example.org", "12", 500},
		{"<max>4</max><after>r03@conference.example.org</after>", "r04,r05,r06,r07", "r04@conference.example.org", "12", 500},
		{"<max>4</max><after>r10@conference.example.org</after>", "r11", "r11@conference.example.org", "12", 500},
		{"<max>3</max><before/>", "r09,r10,r11", "r09@conference.example.org", "12", 500},
		{"<max>3</max><before>r09@conference.example.org</before>", "r06,r07,r08", "r06@conference.example.org", "12", 500},
		{"<max>0</max>", "", "", "12", 500},
	}
	for _, c := range cases {
		got, set, err := page(rooms, rsm(c.rq), c.limit)
		if err != nil {
			t.Fatalf("%s: %v", c.rq, err)
		}
		if names(got) != c.want {
			t.Errorf("%s: %s, want %s", c.rq, names(got), c.want)
		}
		if (set == nil) != (c.count == "") {
			t.Errorf("%s: set %v", c.rq, set)
			continue
		}
		if set != nil && (set.ChildText("first", "") != c.first || set.ChildText("count", "") != c.count) {
			t.Errorf("%s: set %s", c.rq, set)
		}
	}
	for _, bad := range []string{"<max>x</max>", "<index>3</index>", "<max>-1</max>"} {
		if _, _, err := page(rooms, rsm(bad), 500); err == nil {
			t.Errorf("%s accepted", bad)
		}
	}
}

// A room lists its occupants to an occupant who sees real JIDs, and to no
// one else.
func TestRoomDiscoItems(t *testing.T) {
	e := newEnv(t)
	alice, bob, eve := e.user("alice@example.org/a"), e.user("bob@example.org/b"), e.user("eve@example.org/e")
	alice.create(room1, "Alice")
	bob.enter(room1, "Bob")
	items := func(u *user) string {
		u.sync(room1)
		u.drain()
		u.send(`<iq type='get' id='di' to='` + room1 + `'><query xmlns='http://jabber.org/protocol/disco#items'/></iq>`)
		return u.expect("items", isResult("di")).String()
	}
	if got := items(alice); !strings.Contains(got, room1+"/Bob") || !strings.Contains(got, room1+"/Alice") {
		t.Errorf("the moderator's list: %s", got)
	}
	if got := items(bob); strings.Contains(got, "<item") {
		t.Errorf("a participant of a semi-anonymous room sees %s", got)
	}
	if got := items(eve); strings.Contains(got, "<item") {
		t.Errorf("an outsider sees %s", got)
	}
}
