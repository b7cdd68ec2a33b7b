package relay

import (
	"strings"
	"testing"

	"github.com/aldis-im/aldis/bridges/brass/brlink"
	"github.com/aldis-im/aldis/xmppcore/jid"
	"github.com/aldis-im/aldis/xmppcore/wire"
)

func TestPolicyApply(t *testing.T) {
	const (
		from = `from='alice@ship.example/deck' `
		to   = `to='bob@shore.example'`
	)
	strip := policy{presence: PresenceFold, stripChatStates: true, stripXHTML: true}
	keep := policy{presence: PresenceFold}
	for _, tc := range []struct {
		name    string
		pol     policy
		in      string
		verdict verdict
		class   brlink.Class
		prec    brlink.Precedence
		absent  string // a namespace the stanza must no longer carry
		present string // one it must still carry
	}{
		{"chat", strip, `<message type='chat' ` + from + to + `><body>x</body></message>`, queueIt, brlink.ClassXMPP, brlink.Routine, "", ""},
		{"normal", strip, `<message ` + from + to + `><body>x</body></message>`, queueIt, brlink.ClassXMPP, brlink.Routine, "", ""},
		{"groupchat", strip, `<message type='groupchat' ` + from + to + `><body>x</body></message>`, queueIt, brlink.ClassXMPP, brlink.Priority, "", ""},
		{"iq", strip, `<iq type='get' id='1' ` + from + to + `><ping xmlns='urn:xmpp:ping'/></iq>`, queueIt, brlink.ClassXMPP, brlink.Routine, "", ""},
		{"our precedence wins", strip, `<message type='groupchat' ` + from + to + `><body>x</body><precedence xmlns='urn:x-bridge:precedence:0'>flash</precedence>` +
			`<headers xmlns='http://jabber.org/protocol/shim'><header name='Urgency'>low</header></headers></message>`, queueIt, brlink.ClassXMPP, brlink.Flash, NSPrecedence, NSSHIM},
		{"bad precedence ignored", strip, `<message ` + from + to + `><body>x</body><precedence xmlns='urn:x-bridge:precedence:0'>urgent</precedence></message>`,
			queueIt, brlink.ClassXMPP, brlink.Routine, NSPrecedence, ""},
		{"SHIM high", strip, `<message ` + from + to + `><body>x</body><headers xmlns='http://jabber.org/protocol/shim'><header name='Urgency'>high</header></headers></message>`,
			queueIt, brlink.ClassXMPP, brlink.Immediate, "", NSSHIM},
		{"SHIM medium", strip, `<message ` + from + to + `><body>x</body><headers xmlns='http://jabber.org/protocol/shim'><header name='urgency'>Medium</header></headers></message>`,
			queueIt, brlink.ClassXMPP, brlink.Priority, "", ""},
		{"SHIM low groupchat", strip, `<message type='groupchat' ` + from + to + `><body>x</body><headers xmlns='http://jabber.org/protocol/shim'><header name='Urgency'>low</header></headers></message>`,
			queueIt, brlink.ClassXMPP, brlink.Routine, "", ""},
		{"FMUC", strip, `<message type='groupchat' ` + from + to + `><body>x</body><fmuc xmlns='http://isode.com/protocol/fmuc' from='a@b/c'/></message>`,
			queueIt, brlink.ClassFMUC, brlink.Priority, "", NSFMUC},
		{"chat state alone dropped", strip, `<message type='chat' ` + from + to + `><composing xmlns='http://jabber.org/protocol/chatstates'/></message>`,
			dropIt, brlink.ClassXMPP, brlink.Routine, "", ""},
		{"chat state alone kept", keep, `<message type='chat' ` + from + to + `><composing xmlns='http://jabber.org/protocol/chatstates'/></message>`,
			queueIt, brlink.ClassXMPP, brlink.Routine, "", NSChatStates},
		{"chat state with body stripped", strip, `<message type='chat' ` + from + to + `><body>x</body><active xmlns='http://jabber.org/protocol/chatstates'/></message>`,
			queueIt, brlink.ClassXMPP, brlink.Routine, NSChatStates, ""},
		{"chat state with a receipt kept", strip, `<message type='chat' ` + from + to + `><active xmlns='http://jabber.org/protocol/chatstates'/><received xmlns='urn:xmpp:receipts' id='1'/></message>`,
			queueIt, brlink.ClassXMPP, brlink.Routine, NSChatStates, "urn:xmpp:receipts"},
		{"XHTML-IM stripped", strip, `<message ` + from + to + `><body>x</body><html xmlns='http://jabber.org/protocol/xhtml-im'><body xmlns='http://www.w3.org/1999/xhtml'>x</body></html></message>`,
			queueIt, brlink.ClassXMPP, brlink.Routine, NSXHTMLIM, ""},
		{"XHTML-IM kept", keep, `<message ` + from + to + `><body>x</body><html xmlns='http://jabber.org/protocol/xhtml-im'><body xmlns='http://www.w3.org/1999/xhtml'>x</body></html></message>`,
			queueIt, brlink.ClassXMPP, brlink.Routine, "", NSXHTMLIM},
		{"presence folded", strip, `<presence ` + from + to + `/>`, foldIt, brlink.ClassXMPP, brlink.Deferred, "", ""},
		{"unavailable to a bare JID folded", strip, `<presence type='unavailable' ` + from + to + `/>`, foldIt, brlink.ClassXMPP, brlink.Deferred, "", ""},
		{"probe folded", strip, `<presence type='probe' ` + from + to + `/>`, foldIt, brlink.ClassXMPP, brlink.Deferred, "", ""},
		{"MUC join queued", strip, `<presence ` + from + `to='room@muc.shore.example/al'><x xmlns='http://jabber.org/protocol/muc'/></presence>`,
			queueIt, brlink.ClassXMPP, brlink.Deferred, "", NSMUC},
		{"MUC leave queued", strip, `<presence type='unavailable' ` + from + `to='room@muc.shore.example/al'/>`, queueIt, brlink.ClassXMPP, brlink.Deferred, "", ""},
		{"subscribe queued", strip, `<presence type='subscribe' ` + from + to + `/>`, queueIt, brlink.ClassXMPP, brlink.Deferred, "", ""},
		{"unsubscribed queued", strip, `<presence type='unsubscribed' ` + from + to + `/>`, queueIt, brlink.ClassXMPP, brlink.Deferred, "", ""},
		{"presence stripped", policy{presence: PresenceStrip}, `<presence ` + from + to + `/>`, dropIt, brlink.ClassXMPP, brlink.Deferred, "", ""},
		{"strip keeps joins", policy{presence: PresenceStrip}, `<presence ` + from + `to='room@muc.shore.example/al'><x xmlns='http://jabber.org/protocol/muc'/></presence>`,
			queueIt, brlink.ClassXMPP, brlink.Deferred, "", ""},
		{"pass queues presence", policy{presence: PresencePass}, `<presence ` + from + to + `/>`, queueIt, brlink.ClassXMPP, brlink.Deferred, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st, err := wire.ParseElement(tc.in)
			if err != nil {
				t.Fatal(err)
			}
			d := tc.pol.apply(st)
			if d.verdict != tc.verdict || d.class != tc.class || d.precedence != tc.prec {
				t.Errorf("got verdict %d class %d precedence %v, want %d %d %v", d.verdict, d.class, d.precedence, tc.verdict, tc.class, tc.prec)
			}
			out := st.String()
			if tc.absent != "" && strings.Contains(out, tc.absent) {
				t.Errorf("%s still carries %s", out, tc.absent)
			}
			if tc.present != "" && !strings.Contains(out, tc.present) {
				t.Errorf("%s lost %s", out, tc.present)
			}
		})
	}
}

func TestFoldKey(t *testing.T) {
	key := func(s string) string {
		st, err := wire.ParseElement(s)
		if err != nil {
			t.Fatal(err)
		}
		return foldKey(st)
	}
	same := [][2]string{
		{`<presence from='a@x/1' to='b@y'/>`, `<presence from='a@x/2' to='b@y'><show>away</show></presence>`},
		{`<presence from='a@x/1' to='b@y'/>`, `<presence type='unavailable' from='a@x/1' to='b@y'/>`},
	}
	differ := [][2]string{
		{`<presence from='a@x/1' to='b@y'/>`, `<presence from='a@x/1' to='c@y'/>`},
		{`<presence from='a@x/1' to='b@y'/>`, `<presence type='probe' from='a@x/1' to='b@y'/>`},
		{`<presence from='room@muc.x/al' to='b@y/r'><x xmlns='http://jabber.org/protocol/muc#user'/></presence>`,
			`<presence from='room@muc.x/bo' to='b@y/r'><x xmlns='http://jabber.org/protocol/muc#user'/></presence>`},
	}
	for _, p := range same {
		if key(p[0]) != key(p[1]) {
			t.Errorf("%s and %s should fold together", p[0], p[1])
		}
	}
	for _, p := range differ {
		if key(p[0]) == key(p[1]) {
			t.Errorf("%s and %s must not fold together", p[0], p[1])
		}
	}
}

func TestMailPayload(t *testing.T) {
	env := Envelope{From: "a@x", To: []string{"b@y", "c@z"}}
	msg := []byte("Subject: s\r\n\r\nline\r\n\r\nMAIL FROM:<evil@x>\r\n")
	p, err := appendMail(nil, env, msg)
	if err != nil {
		t.Fatal(err)
	}
	if want := "MAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\nRCPT TO:<c@z>\r\n\r\n"; !strings.HasPrefix(string(p), want) {
		t.Errorf("payload %q, want it to start with %q", p, want)
	}
	env2, msg2, err := parseMail(p)
	if err != nil || env2.From != env.From || strings.Join(env2.To, " ") != "b@y c@z" || string(msg2) != string(msg) {
		t.Errorf("round trip: %+v %q %v", env2, msg2, err)
	}
	if _, _, err := parseMail([]byte("MAIL FROM:<>\r\nRCPT TO:<b@y>\r\n\r\n")); err != nil {
		t.Errorf("a null reverse path (a bounce) must parse: %v", err)
	}
	for _, bad := range []string{
		"",
		"MAIL FROM:<a@x>\r\n\r\nmsg",
		"RCPT TO:<b@y>\r\nMAIL FROM:<a@x>\r\n\r\n",
		"MAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\nDATA\r\n\r\n",
		"MAIL FROM:<a@x>\r\nRCPT TO:<b@y>",
	} {
		if _, _, err := parseMail([]byte(bad)); err == nil {
			t.Errorf("parseMail(%q) accepted it", bad)
		}
	}
	for _, bad := range []Envelope{{From: "a@x"}, {From: "a@x>\r\nRCPT TO:<evil@x", To: []string{"b@y"}}, {From: "a@x", To: []string{""}}} {
		if _, err := appendMail(nil, bad, nil); err == nil {
			t.Errorf("appendMail(%+v) accepted it", bad)
		}
	}
}

func TestNewValidates(t *testing.T) {
	ok := func() Config {
		return Config{Name: "l", LocalDomains: []string{"a.example"}, PeerDomains: []string{"b.example"},
			Bearer: newFakeBearer(), Store: memStore(t),
			Inject: func(*wire.Element, jid.JID, jid.JID) {}, Bounce: func(*wire.Element, jid.JID, jid.JID) {}}
	}
	if _, err := New(ok()); err != nil {
		t.Fatalf("a good configuration: %v", err)
	}
	for _, tc := range []struct {
		name string
		mod  func(*Config)
		want string
	}{
		{"no name", func(c *Config) { c.Name = "" }, "name"},
		{"no local domains", func(c *Config) { c.LocalDomains = nil }, "local domains"},
		{"a JID as peer domain", func(c *Config) { c.PeerDomains = []string{"u@b.example"} }, "peer domains"},
		{"overlap", func(c *Config) { c.PeerDomains = []string{"a.example"} }, "both local and a peer's"},
		{"no bearer", func(c *Config) { c.Bearer = nil }, "no bearer"},
		{"no store", func(c *Config) { c.Store = nil }, "no store"},
		{"no inject", func(c *Config) { c.Inject = nil }, "Inject"},
		{"no bounce", func(c *Config) { c.Bounce = nil }, "Bounce"},
		{"bad presence mode", func(c *Config) { c.Presence = "squash" }, "presence mode"},
		{"negative TTL", func(c *Config) { c.EmailTTL = -1 }, "email TTL"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := ok()
			tc.mod(&c)
			_, err := New(c)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, want an error about %q", err, tc.want)
			}
		})
	}
}
