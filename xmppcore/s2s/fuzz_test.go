package s2s

import (
	"testing"

	"github.com/aldis-im/aldis/xmppcore/wire"
)

func FuzzParseDialback(f *testing.F) {
	for _, s := range []string{
		`<db:result xmlns:db='jabber:server:dialback' from='a.test' to='b.test'>abc</db:result>`,
		`<db:verify xmlns:db='jabber:server:dialback' from='a.test' to='b.test' id='1' type='valid'/>`,
		`<db:verify xmlns:db='jabber:server:dialback' from='u@a.test' to='b.test'>k</db:verify>`,
		`<result xmlns='jabber:server:dialback' from='a.test' to='b.test' type='bogus'/>`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		el, err := wire.ParseElement(s)
		if err != nil {
			return
		}
		r, err := parseDialback(el)
		if err != nil {
			return
		}
		if r.from == "" || r.to == "" || (r.verify && r.id == "") || (r.typ == "" && r.key == "") {
			t.Fatalf("accepted incomplete %+v from %s", r, s)
		}
	})
}

// Only this server checks its keys, so what matters is that they depend
// on every input and on the secret.
func TestDialbackKey(t *testing.T) {
	k := dialbackKey([]byte("secret"), "example.net", "example.com", "D60000229F")
	if len(k) != 64 || k != dialbackKey([]byte("secret"), "example.net", "example.com", "D60000229F") {
		t.Fatalf("key %q is not a stable SHA-256 hex digest", k)
	}
	for _, other := range []string{
		dialbackKey([]byte("secret2"), "example.net", "example.com", "D60000229F"),
		dialbackKey([]byte("secret"), "example.org", "example.com", "D60000229F"),
		dialbackKey([]byte("secret"), "example.net", "example.org", "D60000229F"),
		dialbackKey([]byte("secret"), "example.net", "example.com", "D60000229E"),
		dialbackKey([]byte("secret"), "example.net example.com", "", "D60000229F"),
	} {
		if other == k {
			t.Fatal("different inputs gave the same key")
		}
	}
}
