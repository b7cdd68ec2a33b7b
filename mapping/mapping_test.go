package mapping

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aldis-im/aldis/core/config"
	"github.com/aldis-im/aldis/core/label/labeltest"
)

func TestExample(t *testing.T) {
	m, err := Load("testdata/example.toml")
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Networks()) != 2 || len(m.Links()) != 3 {
		t.Fatalf("%d networks, %d links", len(m.Networks()), len(m.Links()))
	}
	lib, ok := m.Network("libera")
	if !ok || lib.NoTLS || lib.TLSSkipVerify || lib.MaxConnections != 50 || lib.FloodInterval != 2*time.Second || lib.FloodBurst != 4 {
		t.Fatalf("libera %+v", lib)
	}
	lab, _ := m.Network("lab")
	if !lab.NoTLS || !lab.RelayOnly || lab.Nick != DefaultNick || lab.MaxConnections != DefaultMaxConnections || lab.FloodInterval != DefaultFloodInterval || lab.FloodBurst != DefaultFloodBurst {
		t.Fatalf("lab defaults %+v", lab)
	}
	// Both ways, case-insensitively: JIDs by lower case, channels by rfc1459.
	l, ok := m.ByRoom("dev@Conference.Example.com")
	if !ok || l.Channel != "#Aldis-Dev" || l.Key != "letmein" {
		t.Fatalf("ByRoom: %+v %v", l, ok)
	}
	l, ok = m.ByChannel("libera", "#aldis-dev")
	if !ok || l.Room != "Dev@conference.example.com" {
		t.Fatalf("ByChannel: %+v %v", l, ok)
	}
	if _, ok := m.ByChannel("lab", "#ops"); ok {
		t.Fatal("channel found on the wrong network")
	}
	if got := m.LinksOn("libera"); len(got) != 2 {
		t.Fatalf("LinksOn: %v", got)
	}
	if err := m.CheckLabels(labeltest.Set(t)); err != nil {
		t.Fatalf("labels: %v", err)
	}
}

func TestErrorsHaveLines(t *testing.T) {
	src := `[[network]]
name = "Libera Chat"
servers = ["irc.libera.chat"]
sasl_mechanism = "PLAIN"
max_connections = -1
nickserv_account = "gw"

[[network]]
name = "ok"
servers = ["a:1"]
nick = "9lives"
bogus = true

[[link]]
room = "ops"
network = "ok"
channel = "ops"

[[link]]
room = "a@b"
network = "nope"
channel = "#x"
key = "has space"

[[link]]
room = "A@B"
network = "ok"
channel = "#X"
`
	_, err := Parse("map.toml", []byte(src))
	var errs config.Errors
	if !errors.As(err, &errs) {
		t.Fatalf("got %v", err)
	}
	got := errs.Error()
	for _, want := range []string{
		`map.toml:2: network[0].name: "Libera Chat": use lower-case`,
		`map.toml:3: network[0].servers[0]: "irc.libera.chat" is not host:port`,
		`map.toml:4: network[0].sasl_mechanism: PLAIN needs sasl_login and sasl_password`,
		`map.toml:5: network[0].max_connections: must be between 0 and 100000`,
		`map.toml:6: network[0].nickserv_account: give nickserv_password too`,
		`map.toml:12: network[1].bogus: unknown key`,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("errors lack %q:\n%s", want, got)
		}
	}
	// Decode errors stop before the cross checks; fix them and the rest is reported.
	src = strings.Replace(src, "bogus = true\n", "", 1)
	src = strings.Replace(src, `name = "Libera Chat"`, `name = "libera"`, 1)
	src = strings.Replace(src, `"irc.libera.chat"`, `"irc.libera.chat:6697"`, 1)
	src = strings.Replace(src, "sasl_mechanism = \"PLAIN\"\nmax_connections = -1\nnickserv_account = \"gw\"\n", "", 1)
	_, err = Parse("map.toml", []byte(src))
	got = err.Error()
	for _, want := range []string{
		`map.toml:8: network[1].nick: "9lives" is not an IRC nick`,
		`map.toml:11: link[0].room: "ops" is not a room JID`,
		`map.toml:13: link[0].channel: "ops": a channel starts with #`,
		`map.toml:19: link[1].key: a channel key has no spaces`,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("errors lack %q:\n%s", want, got)
		}
	}
	src = strings.Replace(src, `nick = "9lives"`, `nick = "lives"`, 1)
	src = strings.Replace(src, "room = \"ops\"\nnetwork = \"ok\"\nchannel = \"ops\"", "room = \"ops@x\"\nnetwork = \"ok\"\nchannel = \"#x\"", 1)
	src = strings.Replace(src, `key = "has space"`, "", 1)
	_, err = Parse("map.toml", []byte(src))
	got = err.Error()
	for _, want := range []string{
		`map.toml:17: link[1].network: no network named "nope"`,
		`map.toml:22: link[2].room: room A@B is already linked (map.toml link[1])`,
		`map.toml:24: link[2].channel: #X on ok is already linked to ops@x (map.toml link[0])`,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("errors lack %q:\n%s", want, got)
		}
	}
}

func TestLabelErrors(t *testing.T) {
	src := "[[network]]\nname = \"n\"\nservers = [\"a:1\"]\nclearance = \"SECRET; Bogus: X\"\n[[link]]\nroom = \"a@b\"\nnetwork = \"n\"\nchannel = \"#a\"\nlabel = \"ULTRA\"\n"
	m, err := Parse("l.toml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	err = m.CheckLabels(labeltest.Set(t))
	if err == nil || !strings.Contains(err.Error(), "l.toml:4: network[0].clearance:") || !strings.Contains(err.Error(), "l.toml:9: link[0].label:") {
		t.Fatalf("got %v", err)
	}
}

func TestTwoFilesAndReload(t *testing.T) {
	dir := t.TempDir()
	a := filepath.Join(dir, "a.toml")
	b := filepath.Join(dir, "b.toml")
	write := func(p, s string) {
		if err := os.WriteFile(p, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(a, "[[network]]\nname = \"n\"\nservers = [\"a:1\"]\n[[link]]\nroom = \"one@muc\"\nnetwork = \"n\"\nchannel = \"#one\"\n")
	write(b, "[[link]]\nroom = \"two@muc\"\nnetwork = \"n\"\nchannel = \"#two\"\n[[link]]\nroom = \"three@muc\"\nnetwork = \"n\"\nchannel = \"#three\"\n")
	s, err := Open(a, b)
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Map().Links()) != 3 {
		t.Fatal("links from both files not merged")
	}
	// A duplicate across files names the other file.
	write(b, "[[link]]\nroom = \"ONE@muc\"\nnetwork = \"n\"\nchannel = \"#x\"\n")
	if _, err := s.Reload(); err == nil || !strings.Contains(err.Error(), b+":2: link[0].room: room ONE@muc is already linked ("+a+" link[0])") {
		t.Fatalf("got %v", err)
	}
	if len(s.Map().Links()) != 3 {
		t.Fatal("a failed reload replaced the map")
	}
	// Change one link, remove one, add one, change the network.
	write(a, "[[network]]\nname = \"n\"\nservers = [\"a:2\"]\n[[link]]\nroom = \"one@muc\"\nnetwork = \"n\"\nchannel = \"#one\"\nkey = \"k\"\n")
	write(b, "[[link]]\nroom = \"two@muc\"\nnetwork = \"n\"\nchannel = \"#two\"\n[[link]]\nroom = \"four@muc\"\nnetwork = \"n\"\nchannel = \"#four\"\n")
	ch, err := s.Reload()
	if err != nil {
		t.Fatal(err)
	}
	if len(ch.Changed) != 1 || ch.Changed[0].Room != "one@muc" || ch.Changed[0].Key != "k" ||
		len(ch.Removed) != 1 || ch.Removed[0].Room != "three@muc" ||
		len(ch.Added) != 1 || ch.Added[0].Room != "four@muc" ||
		len(ch.Networks) != 1 || ch.Networks[0] != "n" {
		t.Fatalf("changes %+v", ch)
	}
	if ch, _ := s.Reload(); !ch.Empty() {
		t.Fatalf("reloading the same files changed %+v", ch)
	}
}

func FuzzParse(f *testing.F) {
	ex, err := os.ReadFile("testdata/example.toml")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(string(ex))
	f.Add("[[network]]\nname = \"n\"\nservers = [\"a:1\"]\n[[link]]\nroom = \"a@b\"\nnetwork = \"n\"\nchannel = \"#c\"\n")
	f.Add("[[link]]\nroom = 1\n[network]\n")
	f.Add("network = [{name = \"x\", servers = [\"h:1\"]}]\nlink = [{room = \"r@s\", network = \"x\", channel = \"&c\"}]")
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
		// What was accepted is consistent: every link resolves both ways and to a network.
		for _, l := range m.Links() {
			if _, ok := m.Network(l.Network); !ok {
				t.Fatalf("link to unknown network %q", l.Network)
			}
			if got, ok := m.ByRoom(l.Room); !ok || got != l {
				t.Fatalf("ByRoom(%q)", l.Room)
			}
			if got, ok := m.ByChannel(l.Network, l.Channel); !ok || got != l {
				t.Fatalf("ByChannel(%q)", l.Channel)
			}
		}
		if !Diff(m, m).Empty() {
			t.Fatal("a map differs from itself")
		}
	})
}
