package mailmap

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aldis-im/aldis/core/config"
	"github.com/aldis-im/aldis/core/label/labeltest"
)

func TestExample(t *testing.T) {
	m, err := Load("testdata/example.toml")
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Users()) != 2 || len(m.Rooms()) != 1 || len(m.Domains()) != 3 || m.Gateway().Clearance != "SECRET" {
		t.Fatalf("%+v", m)
	}
	u, ok := m.UserByAddress("BOB@mail.example.org")
	if !ok || u.JID != "bob@example.org" {
		t.Fatalf("UserByAddress: %+v %v", u, ok)
	}
	if u, ok := m.UserByJID("Alice@Example.org"); !ok || u.Address != "alice@mail.example.org" {
		t.Fatalf("UserByJID: %+v %v", u, ok)
	}
	r, ok := m.RoomByAddress("ops@MAIL.example.org")
	if !ok || r.Room != "ops@conference.example.org" || r.Nick != DefaultNick || len(r.SendTo) != 2 {
		t.Fatalf("RoomByAddress: %+v %v", r, ok)
	}
	if _, ok := m.UserByAddress("ops@mail.example.org"); ok {
		t.Fatal("a room address found as a user")
	}
	if r, ok := m.RoomByJID("OPS@conference.example.org"); !ok || r.Address != "ops@mail.example.org" {
		t.Fatalf("RoomByJID: %+v %v", r, ok)
	}
	if got := m.LocalDomains(); len(got) != 1 || got[0] != "mail.example.org" || !m.IsLocalDomain("Mail.Example.Org.") {
		t.Fatalf("LocalDomains: %v", got)
	}
	if d, ok := m.Domain("EXAMPLE.com"); !ok || !d.RequireSPF || !d.RequireDKIM || Principal(d) != "mail:example.com" {
		t.Fatalf("Domain: %+v", d)
	}
	if d, ok := m.Domain("elsewhere.test"); !ok || d.Name != "*" || Principal(d) != "mail:*" {
		t.Fatalf("catch-all: %+v", d)
	}
	if err := m.CheckLabels(labeltest.Set(t)); err != nil {
		t.Fatalf("labels: %v", err)
	}
}

func TestNoCatchAll(t *testing.T) {
	m, err := Parse("m.toml", []byte("[[domain]]\nname = \"a.example\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := m.Domain("b.example"); ok {
		t.Fatal("a domain without an entry was found")
	}
}

func TestErrorsHaveLines(t *testing.T) {
	src := `[[user]]
address = "Alice <alice@mail.example.org>"
jid = "alice"

[[user]]
address = "bob@mail.example.org"
jid = "bob@example.org"
bogus = 1

[[room]]
address = "bob@mail.example.org"
room = "ops@conference.example.org"
send_to = ["x@y.example", "not an address"]
nick = " lead"

[[domain]]
name = "bad_domain!"

[[domain]]
name = "*"
[[domain]]
name = "*"
`
	_, err := Parse("map.toml", []byte(src))
	var errs config.Errors
	if !errors.As(err, &errs) {
		t.Fatalf("got %v", err)
	}
	got := errs.Error()
	for _, want := range []string{
		"map.toml:2: user[0].address:", "map.toml:3: user[0].jid:", "map.toml:8:", "bogus",
		"map.toml:13: room[0].send_to[1]:", "map.toml:14: room[0].nick:", "map.toml:17: domain[0].name:",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("errors lack %q:\n%s", want, got)
		}
	}
	// Cross-entry problems show once the entries themselves are valid.
	src = "[[user]]\naddress = \"bob@mail.example.org\"\njid = \"bob@example.org\"\n" +
		"[[room]]\naddress = \"BOB@mail.example.org\"\nroom = \"ops@conference.example.org\"\n" +
		"[[domain]]\nname = \"*\"\n[[domain]]\nname = \"*\"\n"
	_, err = Parse("m.toml", []byte(src))
	if err == nil || !strings.Contains(err.Error(), "m.toml:5: room[0].address: BOB@mail.example.org is already mapped") ||
		!strings.Contains(err.Error(), "m.toml:10: domain[1].name:") {
		t.Fatalf("got %v", err)
	}
}

func TestLabelErrors(t *testing.T) {
	m, err := Parse("l.toml", []byte("[[domain]]\nname = \"a.example\"\nclearance = \"BOGUS\"\nlabel = \"NOPE\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	err = m.CheckLabels(labeltest.Set(t))
	if err == nil || !strings.Contains(err.Error(), "l.toml:3: domain[0].clearance:") || !strings.Contains(err.Error(), "l.toml:4: domain[0].label:") {
		t.Fatalf("got %v", err)
	}
}

func TestTwoFiles(t *testing.T) {
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a.toml"), filepath.Join(dir, "b.toml")
	os.WriteFile(a, []byte("[gateway]\nclearance = \"SECRET\"\n[[user]]\naddress = \"a@m.example\"\njid = \"a@x.example\"\n"), 0o600)
	os.WriteFile(b, []byte("[gateway]\nclearance = \"UNCLASSIFIED\"\n[[user]]\naddress = \"a@m.example\"\njid = \"b@x.example\"\n"), 0o600)
	_, err := Load(a, b)
	if err == nil || !strings.Contains(err.Error(), "b.toml:2: gateway.clearance:") || !strings.Contains(err.Error(), "b.toml:4: user[0].address:") {
		t.Fatalf("got %v", err)
	}
}

func FuzzParse(f *testing.F) {
	ex, err := os.ReadFile("testdata/example.toml")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(string(ex))
	f.Add("[[user]]\naddress = \"a@b.c\"\njid = \"a@b\"\n[[room]]\naddress = \"a@b.c\"\n")
	f.Add("user = [{address = \"x@y.z\", jid = \"x@y\"}]\ndomain = [{name = \"*\"}]")
	f.Fuzz(func(t *testing.T, src string) {
		if len(src) > 64<<10 {
			return
		}
		m, err := Parse("f.toml", []byte(src))
		if err != nil {
			var errs config.Errors
			if !errors.As(err, &errs) || len(errs) == 0 {
				t.Fatalf("error %v is not config.Errors", err)
			}
			return
		}
		// What was accepted resolves both ways.
		for _, u := range m.Users() {
			if got, ok := m.UserByAddress(u.Address); !ok || got != u {
				t.Fatalf("UserByAddress(%q)", u.Address)
			}
			if got, ok := m.UserByJID(u.JID); !ok || got != u {
				t.Fatalf("UserByJID(%q)", u.JID)
			}
			if !m.IsLocalDomain(DomainOf(u.Address)) {
				t.Fatalf("%q's domain is not local", u.Address)
			}
		}
		for _, r := range m.Rooms() {
			if got, ok := m.RoomByAddress(r.Address); !ok || got.Room != r.Room {
				t.Fatalf("RoomByAddress(%q)", r.Address)
			}
		}
	})
}
