package config

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestDefaultValidates(t *testing.T) {
	if err := Default().Validate(); err != nil {
		t.Fatalf("Default().Validate() = %v", err)
	}
}

func TestDefaultIsFresh(t *testing.T) {
	a := Default()
	a.C2S.Listen[0] = "changed"
	if b := Default(); b.C2S.Listen[0] == "changed" {
		t.Fatal("Default shares slices between calls")
	}
}

func TestParseEmpty(t *testing.T) {
	for _, src := range []string{"", "# nothing\n\n", "[server]\n[c2s]\n"} {
		c, err := Parse("aldis.toml", []byte(src))
		if err != nil {
			t.Fatalf("Parse(%q) = %v", src, err)
		}
		if !reflect.DeepEqual(c, Default()) {
			t.Errorf("Parse(%q) = %+v, want Default()", src, c)
		}
	}
}

// The example file must document the defaults truthfully and mention every key.
func TestExampleFile(t *testing.T) {
	const path = "../../aldis.toml"
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	c, err := Load(path)
	if err != nil {
		t.Fatalf("Load(%s) = %v", path, err)
	}
	if !reflect.DeepEqual(c, Default()) {
		t.Errorf("example differs from Default():\n got %+v\nwant %+v", c, Default())
	}
	lines := keyLines(string(data))
	for _, key := range schemaKeys(reflect.TypeFor[Config](), "") {
		if _, ok := lines[key]; !ok {
			t.Errorf("example does not set %s", key)
		}
	}
}

// schemaKeys lists the full key of every setting in the struct type t.
func schemaKeys(t reflect.Type, prefix string) []string {
	var keys []string
	for f := range t.Fields() {
		key := joinKey(prefix, f.Tag.Get("toml"))
		if f.Type.Kind() == reflect.Struct && f.Type != durationType {
			keys = append(keys, schemaKeys(f.Type, key)...)
		} else {
			keys = append(keys, key)
		}
	}
	return keys
}

func TestLoadMissingFile(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "nope.toml"))
	if !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Load(missing) = %v, want fs.ErrNotExist", err)
	}
}

func TestParseOverlay(t *testing.T) {
	// A dotted key under [server] belongs to [server]: this is server.c2s.require_tls.
	src := `
[server]
domain = "example.com"

c2s.require_tls = false
`
	_, err := Parse("aldis.toml", []byte(src))
	assertErrors(t, err, "aldis.toml:5: server.c2s: unknown key")

	src = `
storage.path = "/var/lib/aldis/db.sqlite"
auth = { registration = true, failure_window = "1h" }

[server]
domain = "example.com"
shutdown_timeout = "1m30s"

[c2s]
listen = [
  "0.0.0.0:5222",
]
listen_tls = []
require_tls = false
allow_plain_without_tls = true
`
	c, err := Parse("aldis.toml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	want := Default()
	want.Server.Domain = "example.com"
	want.Server.ShutdownTimeout = 90 * time.Second
	want.C2S.RequireTLS = false
	want.C2S.AllowPlainWithoutTLS = true
	want.C2S.Listen = []string{"0.0.0.0:5222"}
	want.C2S.ListenTLS = []string{}
	want.Auth.Registration = true
	want.Auth.FailureWindow = time.Hour
	want.Storage.Path = "/var/lib/aldis/db.sqlite"
	if !reflect.DeepEqual(c, want) {
		t.Errorf("got  %+v\nwant %+v", c, want)
	}
	if got := c.StoragePath(); got != "/var/lib/aldis/db.sqlite" {
		t.Errorf("StoragePath() = %q", got)
	}
	if got := c.Domains(); !reflect.DeepEqual(got, []string{"example.com"}) {
		t.Errorf("Domains() = %q", got)
	}
}

func TestStoragePathDefault(t *testing.T) {
	c := Default()
	c.Server.DataDir = "/srv/aldis"
	if got, want := c.StoragePath(), filepath.Join("/srv/aldis", "aldis.db"); got != want {
		t.Errorf("StoragePath() = %q, want %q", got, want)
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name string
		src  string
		want []string
	}{
		{"unknown key", "[c2s]\nlisten = []\nlisen = 1\n",
			[]string{"aldis.toml:3: c2s.lisen: unknown key"}},
		{"unknown table reported once", "# x\n[serve]\ndomain = \"x\"\nport = 1\n",
			[]string{"aldis.toml:2: serve: unknown key"}},
		{"unknown top-level key", "\ndomain = \"example.com\"\n",
			[]string{"aldis.toml:2: domain: unknown key"}},
		{"key case matters", "[server]\nDomain = \"example.com\"\n",
			[]string{"aldis.toml:2: server.Domain: unknown key"}},
		{"unknown dotted key", "[log]\nlevel = \"info\"\nc2s.lisen = 1\n",
			[]string{"aldis.toml:3: log.c2s: unknown key"}},
		{"unknown key in inline table", "\nc2s = { listen = [],\n  lisen = 1 }\n",
			[]string{"aldis.toml:3: c2s.lisen: unknown key"}},
		{"quoted unknown key", "[c2s]\n\"lis en\" = 1\n",
			[]string{`aldis.toml:2: c2s."lis en": unknown key`}},
		{"unknown key under array of tables", "[server]\n[[c2s]]\n",
			[]string{"aldis.toml:2: c2s: must be a table, not an array of tables"}},

		{"string for integer", "[c2s]\nmax_stanza_size = \"big\"\n",
			[]string{"aldis.toml:2: c2s.max_stanza_size: must be an integer, not a string"}},
		{"float for integer", "[offline]\nmax_per_user = 1.5\n",
			[]string{"aldis.toml:2: offline.max_per_user: must be an integer, not a float"}},
		{"string for boolean", "[c2s]\nrequire_tls = \"yes\"\n",
			[]string{"aldis.toml:2: c2s.require_tls: must be true or false, not a string"}},
		{"integer for string", "[server]\ndomain = 1\n",
			[]string{"aldis.toml:2: server.domain: must be a string, not an integer"}},
		{"string for array", "[c2s]\nlisten = \"127.0.0.1:5222\"\n",
			[]string{"aldis.toml:2: c2s.listen: must be an array of strings, not a string"}},
		{"bad array element", "[c2s]\nlisten = [\n  \"127.0.0.1:5222\",\n  5222,\n]\n",
			[]string{"aldis.toml:4: c2s.listen[1]: must be a string, not an integer"}},
		{"table is a value", "c2s = 5\n",
			[]string{"aldis.toml:1: c2s: must be a table, not an integer"}},
		{"date for string", "[server]\ndata_dir = 1979-05-27\n",
			[]string{"aldis.toml:2: server.data_dir: must be a string, not a date-time"}},

		{"out of range", "[c2s]\nrate_burst = 1048576\nmax_stanza_size = 100\n",
			[]string{"aldis.toml:3: c2s.max_stanza_size: must be between 1024 and 16777216"}},
		{"negative", "[offline]\nmax_per_user = -1\n",
			[]string{"aldis.toml:2: offline.max_per_user: must be between 0 and 1000000"}},
		{"iterations too low", "[auth]\nscram_iterations = 1000\n",
			[]string{"aldis.toml:2: auth.scram_iterations: must be between 4096 and 1000000"}},

		{"duration without unit", "[server]\nshutdown_timeout = \"10\"\n",
			[]string{`aldis.toml:2: server.shutdown_timeout: invalid duration "10": want a number with a unit, such as "30s" or "5m"`}},
		{"duration as integer", "[c2s]\nidle_timeout = 600\n",
			[]string{`aldis.toml:2: c2s.idle_timeout: must be a duration string such as "30s" or "5m", not an integer`}},
		{"duration out of range", "[c2s]\nhandshake_timeout = \"0s\"\nidle_timeout = \"48h\"\n",
			[]string{
				"aldis.toml:2: c2s.handshake_timeout: must be between 1s and 10m",
				"aldis.toml:3: c2s.idle_timeout: must be between 10s and 24h",
			}},

		{"listen without port", "[c2s]\nlisten = [\"localhost\"]\n",
			[]string{`aldis.toml:2: c2s.listen[0]: invalid address "localhost": want host:port, such as "127.0.0.1:5222" or "[::1]:5222"`}},
		{"listen bad port", "[c2s]\nlisten_tls = [\"[::1]:5223\", \"127.0.0.1:99999\"]\n",
			[]string{`aldis.toml:2: c2s.listen_tls[1]: invalid address "127.0.0.1:99999": port must be a number from 0 to 65535`}},
		{"listen bad host", "[admin]\nlisten = \"bad_host:5280\"\n",
			[]string{`aldis.toml:2: admin.listen: invalid address "bad_host:5280": host "bad_host" must be a hostname: invalid character '_' (write internationalized names in xn-- form)`}},
		{"listen empty", "[c2s]\nlisten = [\"\"]\n",
			[]string{`aldis.toml:2: c2s.listen[0]: must not be empty`}},
		{"listen duplicate in file", "[c2s]\nlisten = [\"127.0.0.1:5222\"]\nlisten_tls = [\"127.0.0.1:5222\"]\n",
			[]string{"aldis.toml:3: c2s.listen_tls[0]: address 127.0.0.1:5222 is used by both c2s.listen[0] and c2s.listen_tls[0]"}},
		{"listen duplicates a default", "[c2s]\nlisten = [\"127.0.0.1:5280\"]\n",
			[]string{"aldis.toml:2: c2s.listen[0]: address 127.0.0.1:5280 is used by both c2s.listen[0] and admin.listen"}},
		{"listen duplicate after normalization", "[admin]\nlisten = \"[::1]:5222\"\n[c2s]\nlisten = [\"[0:0::1]:5222\"]\n",
			[]string{"aldis.toml:2: admin.listen: address [::1]:5222 is used by both c2s.listen[0] and admin.listen"}},
		{"port 0 may repeat", "[c2s]\nlisten = [\"127.0.0.1:0\"]\nlisten_tls = [\"127.0.0.1:0\"]\n[admin]\nlisten = \"127.0.0.1:0\"\n", nil},

		{"unknown log level", "[log]\nlevel = \"verbose\"\nformat = \"xml\"\n",
			[]string{
				`aldis.toml:2: log.level: "verbose" is not one of debug, info, warn, error`,
				`aldis.toml:3: log.format: "xml" is not one of text, json`,
			}},

		{"domain with space", "[server]\ndomain = \"exa mple.com\"\n",
			[]string{`aldis.toml:2: server.domain: "exa mple.com" must be a hostname: invalid character ' ' (write internationalized names in xn-- form)`}},
		{"domain uppercase", "[server]\ndomain = \"Example.com\"\n",
			[]string{`aldis.toml:2: server.domain: "Example.com" must be lowercase`}},
		{"domain IP", "[server]\ndomain = \"192.0.2.1\"\n",
			[]string{`aldis.toml:2: server.domain: "192.0.2.1" must be a hostname, not an IP address`}},
		{"domain hyphen", "[server]\ndomain = \"-x.example\"\n",
			[]string{`aldis.toml:2: server.domain: "-x.example" must be a hostname: label starts or ends with a hyphen`}},
		{"domain empty label", "[server]\ndomain = \"a..b\"\n",
			[]string{`aldis.toml:2: server.domain: "a..b" must be a hostname: empty label`}},
		{"domain trailing dot", "[server]\ndomain = \"example.com.\"\n",
			[]string{`aldis.toml:2: server.domain: "example.com." must be a hostname without a trailing dot`}},
		{"domain empty", "[server]\ndomain = \"\"\ndata_dir = \"\"\n",
			[]string{
				"aldis.toml:2: server.domain: must not be empty",
				"aldis.toml:3: server.data_dir: must not be empty",
			}},

		{"plain with require_tls", "[c2s]\nallow_plain_without_tls = true\n",
			[]string{"aldis.toml:2: c2s.allow_plain_without_tls: requires c2s.require_tls = false"}},
		{"cert without key", "[tls]\ncert_file = \"/etc/aldis/cert.pem\"\n",
			[]string{"aldis.toml:2: tls.cert_file: is set but tls.key_file is empty; set both, or neither for a self-signed certificate"}},
		{"key without cert", "[tls]\ncert_file = \"\"\nkey_file = \"/etc/aldis/key.pem\"\n",
			[]string{"aldis.toml:3: tls.key_file: is set but tls.cert_file is empty; set both, or neither for a self-signed certificate"}},
		{"other storage driver", "[storage]\ndriver = \"postgres\"\n",
			[]string{`aldis.toml:2: storage.driver: unsupported driver "postgres": only "sqlite" is available`}},
		{"registration without TLS", "[c2s]\nrequire_tls = false\n[auth]\nregistration = true\n",
			[]string{"aldis.toml:4: auth.registration: requires c2s.require_tls = true, because in-band registration sends the password (for tests, c2s.allow_plain_without_tls = true permits it without TLS)"}},
		{"registration without TLS, opted in", "[c2s]\nrequire_tls = false\nallow_plain_without_tls = true\n[auth]\nregistration = true\n", nil},
		{"burst below stanza size", "[c2s]\nmax_stanza_size = 1048576\n",
			[]string{"aldis.toml:2: c2s.max_stanza_size: c2s.rate_burst (524288) must be at least c2s.max_stanza_size (1048576) while c2s.rate_bytes limits the rate"}},
		{"burst below stanza size, unlimited rate", "[c2s]\nmax_stanza_size = 1048576\nrate_bytes = 0\n", nil},

		{"all problems, sorted by line", "[log]\nlevel = \"loud\"\n[c2s]\nlisen = 1\nsend_queue = 0\n[server]\ndomain = 5\n",
			[]string{
				`aldis.toml:2: log.level: "loud" is not one of debug, info, warn, error`,
				"aldis.toml:4: c2s.lisen: unknown key",
				"aldis.toml:5: c2s.send_queue: must be between 1 and 1048576",
				"aldis.toml:7: server.domain: must be a string, not an integer",
			}},
		{"CRLF line endings", "[c2s]\r\n\r\nlisen = 1\r\n",
			[]string{"aldis.toml:3: c2s.lisen: unknown key"}},
		{"multi-line string does not shift lines", "[server]\ndata_dir = '''\n[c2s]\nlisen = 1\n'''\nlisen = 2\n",
			[]string{"aldis.toml:6: server.lisen: unknown key"}},

		{"syntax error", "[server]\ndomain = \"x\"\n[c2s\n",
			[]string{`aldis.toml:3: expected '.' or ']' to end table name, but got '\n' instead`}},
		{"syntax error after a byte-order mark", "\ufeff[server]\n\n=\n",
			[]string{"aldis.toml:3: unexpected '=': key name appears blank"}},
		{"byte-order mark", "\ufeff[c2s]\nlisen = 1\n",
			[]string{"aldis.toml:2: c2s.lisen: unknown key"}},
		{"duplicate key", "[server]\ndomain = \"a\"\ndomain = \"b\"\n",
			[]string{"aldis.toml:3: Key 'server.domain' has already been defined."}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("aldis.toml", []byte(tt.src))
			assertErrors(t, err, tt.want...)
		})
	}
}

func assertErrors(t *testing.T, err error, want ...string) {
	t.Helper()
	if len(want) == 0 {
		if err != nil {
			t.Fatalf("unexpected error:\n%v", err)
		}
		return
	}
	var errs Errors
	if !errors.As(err, &errs) {
		t.Fatalf("error %v (%T) is not Errors", err, err)
	}
	got := strings.Split(errs.Error(), "\n")
	if !reflect.DeepEqual(got, want) {
		t.Errorf("errors:\n got %q\nwant %q", got, want)
	}
}

func TestValidateInCode(t *testing.T) {
	c := Default()
	c.C2S.MaxStanzaSize = 100
	c.C2S.ListenTLS = []string{"[::1]:5222"}
	c.TLS.KeyFile = "key.pem"
	c.Log.Format = "logfmt"
	err := c.Validate()
	var errs Errors
	if !errors.As(err, &errs) {
		t.Fatalf("Validate() = %v (%T), want Errors", err, err)
	}
	want := []string{
		`log.format: "logfmt" is not one of text, json`,
		"tls.key_file: is set but tls.cert_file is empty; set both, or neither for a self-signed certificate",
		"c2s.listen_tls[0]: address [::1]:5222 is used by both c2s.listen[1] and c2s.listen_tls[0]",
		"c2s.max_stanza_size: must be between 1024 and 16777216",
	}
	if got := strings.Split(err.Error(), "\n"); !reflect.DeepEqual(got, want) {
		t.Errorf("Validate():\n got %q\nwant %q", got, want)
	}
	for _, e := range errs {
		if e.File != "" || e.Line != 0 {
			t.Errorf("error from code has a position: %+v", e)
		}
	}
	var one *Error
	if !errors.As(err, &one) || one.Key != "log.format" {
		t.Errorf("errors.As(*Error) = %+v", one)
	}
}

func TestErrorFormat(t *testing.T) {
	tests := []struct {
		e    Error
		want string
	}{
		{Error{File: "aldis.toml", Line: 12, Key: "c2s.max_stanza_size", Msg: "must be between 1024 and 16777216"},
			"aldis.toml:12: c2s.max_stanza_size: must be between 1024 and 16777216"},
		{Error{File: "aldis.toml", Key: "k", Msg: "m"}, "aldis.toml: k: m"},
		{Error{File: "aldis.toml", Line: 3, Msg: "syntax"}, "aldis.toml:3: syntax"},
		{Error{Key: "k", Msg: "m"}, "k: m"},
	}
	for _, tt := range tests {
		if got := tt.e.Error(); got != tt.want {
			t.Errorf("Error() = %q, want %q", got, tt.want)
		}
	}
}

func TestMUC(t *testing.T) {
	tests := []struct {
		name   string
		src    string
		domain string // MUCDomain() after a successful parse
		errs   []string
	}{
		{"default", ``, "conference.localhost", nil},
		{"derived", "[server]\ndomain = \"example.com\"\n", "conference.example.com", nil},
		{"explicit", "[muc]\ndomain = \"chat.example.com\"\n", "chat.example.com", nil},
		{"same as server", "[server]\ndomain = \"example.com\"\n[muc]\ndomain = \"example.com\"\n", "",
			[]string{"aldis.toml:4: muc.domain: must differ from server.domain: the service needs a domain of its own"}},
		{"bad domain", "[muc]\ndomain = \"Chat\"\n", "", []string{`aldis.toml:2: muc.domain: "Chat" must be lowercase`}},
		{"admins only", "[muc]\ncreators = \"admins\"\nadmins = [\"root@localhost\"]\n", "conference.localhost", nil},
		{"admins only, none", "[muc]\ncreators = \"admins\"\n", "",
			[]string{`aldis.toml:2: muc.creators: is "admins" but muc.admins is empty, so nobody could create a room`}},
		{"bad creators", "[muc]\ncreators = \"everyone\"\n", "",
			[]string{`aldis.toml:2: muc.creators: "everyone" is not one of local, admins`}},
		{"bad admin", "[muc]\nadmins = [\"root\", \"a@b/c\"]\n", "", []string{
			`aldis.toml:2: muc.admins[0]: "root" must be a bare JID such as "alice@example.com"`,
			`aldis.toml:2: muc.admins[1]: "a@b/c" must be a bare JID: no resource, no spaces`}},
		{"limits", "[muc]\nmax_rooms = 0\nmax_occupants = -1\nhistory = 10001\n", "", []string{
			"aldis.toml:2: muc.max_rooms: must be between 1 and 1000000",
			"aldis.toml:3: muc.max_occupants: must be between 1 and 1000000",
			"aldis.toml:4: muc.history: must be between 0 and 10000"}},
		{"disabled", "[muc]\nenabled = false\nhistory = 0\n", "conference.localhost", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Parse("aldis.toml", []byte(tc.src))
			if tc.errs != nil {
				assertErrors(t, err, tc.errs...)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := c.MUCDomain(); got != tc.domain {
				t.Errorf("MUCDomain() = %q, want %q", got, tc.domain)
			}
		})
	}
}

func TestArchive(t *testing.T) {
	tests := []struct {
		name string
		src  string
		want Archive
		errs []string
	}{
		{"default", "", Archive{Enabled: true, MaxPage: 100}, nil},
		{"set", "[archive]\nenabled = false\nretention = \"720h\"\nmax_page = 50\n",
			Archive{Retention: 720 * time.Hour, MaxPage: 50}, nil},
		{"forever", "[archive]\nretention = \"0s\"\n", Archive{Enabled: true, MaxPage: 100}, nil},
		{"retention too short", "[archive]\nretention = \"10m\"\n", Archive{},
			[]string{"aldis.toml:2: archive.retention: must be between 1h and 876000h"}},
		{"negative retention", "[archive]\nretention = \"-1h\"\n", Archive{},
			[]string{"aldis.toml:2: archive.retention: must be between 1h and 876000h"}},
		{"page zero", "[archive]\nmax_page = 0\n", Archive{},
			[]string{"aldis.toml:2: archive.max_page: must be between 1 and 10000"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Parse("aldis.toml", []byte(tc.src))
			if tc.errs == nil {
				if err != nil {
					t.Fatalf("Parse: %v", err)
				}
				if c.Archive != tc.want {
					t.Errorf("Archive = %+v, want %+v", c.Archive, tc.want)
				}
				return
			}
			var errs Errors
			if !errors.As(err, &errs) {
				t.Fatalf("Parse error = %v, want Errors", err)
			}
			var got []string
			for _, e := range errs {
				got = append(got, e.Error())
			}
			if !reflect.DeepEqual(got, tc.errs) {
				t.Errorf("errors = %q, want %q", got, tc.errs)
			}
		})
	}
}
