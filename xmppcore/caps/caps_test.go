package caps

import (
	"testing"

	"github.com/aldis-im/aldis/xmppcore/wire"
)

// The examples of XEP-0115 §5.2 and §5.3.
const simple = `<query xmlns='http://jabber.org/protocol/disco#info' node='http://code.google.com/p/exodus#QgayPKawpkPSDYmwT/WM94uAlu0='>
<identity category='client' name='Exodus 0.9.1' type='pc'/>
<feature var='http://jabber.org/protocol/caps'/>
<feature var='http://jabber.org/protocol/disco#info'/>
<feature var='http://jabber.org/protocol/disco#items'/>
<feature var='http://jabber.org/protocol/muc'/>
</query>`

const complex = `<query xmlns='http://jabber.org/protocol/disco#info' node='http://psi-im.org#q07IKJEyjvHSyhy//CH0CxmKi8w='>
<identity xml:lang='en' category='client' name='Psi 0.11' type='pc'/>
<identity xml:lang='el' category='client' name='Ψ 0.11' type='pc'/>
<feature var='http://jabber.org/protocol/caps'/>
<feature var='http://jabber.org/protocol/disco#info'/>
<feature var='http://jabber.org/protocol/disco#items'/>
<feature var='http://jabber.org/protocol/muc'/>
<x xmlns='jabber:x:data' type='result'>
<field var='FORM_TYPE' type='hidden'><value>urn:xmpp:dataforms:softwareinfo</value></field>
<field var='ip_version'><value>ipv4</value><value>ipv6</value></field>
<field var='os'><value>Mac</value></field>
<field var='os_version'><value>10.5.1</value></field>
<field var='software'><value>Psi</value></field>
<field var='software_version'><value>0.11</value></field>
</x>
</query>`

func TestVerExamples(t *testing.T) {
	for _, c := range []struct{ xml, want string }{
		{simple, "QgayPKawpkPSDYmwT/WM94uAlu0="},
		{complex, "q07IKJEyjvHSyhy//CH0CxmKi8w="},
	} {
		q, err := wire.ParseElement(c.xml)
		if err != nil {
			t.Fatal(err)
		}
		if got := Ver(q, "sha-1"); got != c.want {
			t.Errorf("Ver = %q, want %q", got, c.want)
		}
	}
}

func TestCacheLearnsOnlyVerified(t *testing.T) {
	q, _ := wire.ParseElement(simple)
	c := NewCache()
	var got map[string]bool
	if !c.Wait("QgayPKawpkPSDYmwT/WM94uAlu0=", func(f map[string]bool) { got = f }) {
		t.Fatal("first waiter not asked to query")
	}
	if c.Wait("QgayPKawpkPSDYmwT/WM94uAlu0=", func(map[string]bool) {}) {
		t.Fatal("second waiter asked to query again")
	}
	// A lying client: its features do not hash to the ver it claims.
	if c.Learn(Caps{Ver: "bogus", Hash: "sha-1"}, q) {
		t.Fatal("unverified caps learnt")
	}
	if !c.Learn(Caps{Ver: "QgayPKawpkPSDYmwT/WM94uAlu0=", Hash: "sha-1"}, q) {
		t.Fatal("verified caps refused")
	}
	if !got["http://jabber.org/protocol/muc"] {
		t.Fatalf("waiter got %v", got)
	}
	if f, ok := c.Features("QgayPKawpkPSDYmwT/WM94uAlu0="); !ok || !f["http://jabber.org/protocol/caps"] {
		t.Fatal("features not cached")
	}
}

func TestFromPresence(t *testing.T) {
	p, _ := wire.ParseElement(`<presence><c xmlns='http://jabber.org/protocol/caps' hash='sha-1' node='n' ver='v'/></presence>`)
	if c, ok := FromPresence(p); !ok || c.Ver != "v" {
		t.Fatalf("FromPresence = %+v %v", c, ok)
	}
	p, _ = wire.ParseElement(`<presence><c xmlns='http://jabber.org/protocol/caps' hash='md5' node='n' ver='v'/></presence>`)
	if _, ok := FromPresence(p); ok {
		t.Fatal("unsupported hash accepted")
	}
}
