// Package mapping reads the operators' bridge maps: TOML files naming IRC networks and the
// channels linked to MUC rooms, validated strictly with file:line errors, looked up both ways,
// and reloaded with a report of what changed.
//
// A map file looks like this:
//
//	[[network]]
//	name = "libera"
//	servers = ["irc.libera.chat:6697"]
//	nick = "aldis"                  # the listener and relay connection
//	sasl_mechanism = "PLAIN"
//	sasl_login = "aldis"
//	sasl_password = "secret"
//	max_connections = 50            # per-user connections; beyond: the relay
//
//	[[link]]
//	room = "ops@conference.example.com"
//	network = "libera"
//	channel = "#ops"
//	label = "UNCLASSIFIED"
//	clearance = "UNCLASSIFIED"
package mapping

import (
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/aldis-im/aldis/core/config"
)

// File is the schema of one map file.
type File struct {
	Networks []Network `toml:"network"`
	Links    []Link    `toml:"link"`
}

// Network is an IRC network and how Aldis connects to it.
type Network struct {
	Name    string   `toml:"name"`
	Servers []string `toml:"servers"` // host:port, tried in order
	// TLS is on, verifying the server's certificate against TLSCAFile if set, else the system
	// roots. NoTLS and TLSSkipVerify turn that off, for test networks: the names say what they cost.
	NoTLS         bool   `toml:"no_tls"`
	TLSSkipVerify bool   `toml:"tls_skip_verify"`
	TLSCAFile     string `toml:"tls_ca_file"`
	// TLSCertFile and TLSKeyFile are the client certificate, for SASL EXTERNAL (CertFP).
	TLSCertFile string `toml:"tls_cert_file"`
	TLSKeyFile  string `toml:"tls_key_file"`
	Password    string `toml:"password"` // server password (PASS)

	// Nick is the gateway's own connection: it reads channel traffic (the listener) and relays for
	// users beyond the connection budget.
	Nick          string `toml:"nick"`
	SASLMechanism string `toml:"sasl_mechanism"` // "", "PLAIN" or "EXTERNAL"
	SASLLogin     string `toml:"sasl_login"`
	SASLPassword  string `toml:"sasl_password"`
	// NickServ is the password to IDENTIFY with to NickServ once connected, for networks without
	// SASL; NickServAccount the account ("IDENTIFY account password"), default the connection's nick.
	NickServ        string `toml:"nickserv_password"`
	NickServAccount string `toml:"nickserv_account"`

	// MaxConnections is the budget of per-user connections (default 100); users beyond it speak
	// through the relay connection as "<nick> text". RelayOnly sends everyone through the relay.
	MaxConnections int  `toml:"max_connections"`
	RelayOnly      bool `toml:"relay_only"`
	// FloodInterval and FloodBurst pace each connection: one line per interval after a burst.
	FloodInterval time.Duration `toml:"flood_interval"`
	FloodBurst    int           `toml:"flood_burst"`
	// Clearance (a clearance expression) is what crosses private messages on this network.
	Clearance string `toml:"clearance"`
}

// Link joins a MUC room and an IRC channel.
type Link struct {
	Room    string `toml:"room"` // bare JID of the room on the gateway's MUC service
	Network string `toml:"network"`
	Channel string `toml:"channel"`
	Key     string `toml:"key"`
	// Label is the label expression given to messages from IRC; Clearance is the clearance
	// expression a message must be granted by to go to IRC. Empty: the network's clearance, and
	// the policy's default label.
	Label     string `toml:"label"`
	Clearance string `toml:"clearance"`
	// ParseFLOT takes a first-line "[MARKING] " prefix from IRC as the message's label when it
	// names exactly one catalog item.
	ParseFLOT bool `toml:"parse_flot"`
}

// Defaults for what a network leaves out.
const (
	DefaultMaxConnections = 100
	DefaultFloodInterval  = time.Second
	DefaultFloodBurst     = 5
	DefaultNick           = "aldis"
)

// Map is the merged, validated content of the map files; it is read-only once built.
type Map struct {
	networks []Network
	links    []Link
	byName   map[string]int // network name → index
	byRoom   map[string]int // folded room JID → link index
	byChan   map[chanKey]int
	Files    []string // the files it was read from
	sources  map[string][]byte
}

type chanKey struct{ network, channel string }

// Limits on what a map may hold, so a bad file can't make the gateway open unbounded connections.
const (
	MaxNetworks = 64
	MaxLinks    = 10000
	MaxFileSize = 4 << 20
)

// Load reads and merges the map files at paths, reporting every problem in all of them.
func Load(paths ...string) (*Map, error) {
	files := make([]source, 0, len(paths))
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("reading bridge map: %w", err)
		}
		files = append(files, source{name: p, data: data})
	}
	return build(files)
}

// Parse is Load from bytes, for one file called name.
func Parse(name string, data []byte) (*Map, error) {
	return build([]source{{name: name, data: data}})
}

type source struct {
	name string
	data []byte
}

func build(files []source) (*Map, error) {
	m := &Map{
		byName:  map[string]int{},
		byRoom:  map[string]int{},
		byChan:  map[chanKey]int{},
		sources: map[string][]byte{},
	}
	var errs config.Errors
	type origin struct {
		file string
		key  string
	}
	var netOrigin, linkOrigin []origin
	decoded := make([]File, len(files))
	for i, f := range files {
		m.Files = append(m.Files, f.name)
		m.sources[f.name] = f.data
		if len(f.data) > MaxFileSize {
			errs = append(errs, &config.Error{File: f.name, Msg: fmt.Sprintf("file is larger than %d bytes", MaxFileSize)})
			continue
		}
		if err := config.DecodeFile(f.name, f.data, &decoded[i]); err != nil {
			if es, ok := err.(config.Errors); ok {
				errs = append(errs, es...)
				continue
			}
			return nil, err
		}
		for j, n := range decoded[i].Networks {
			m.networks = append(m.networks, n.withDefaults())
			netOrigin = append(netOrigin, origin{f.name, fmt.Sprintf("network[%d]", j)})
		}
		for j, l := range decoded[i].Links {
			m.links = append(m.links, l)
			linkOrigin = append(linkOrigin, origin{f.name, fmt.Sprintf("link[%d]", j)})
		}
	}
	if len(errs) > 0 {
		return nil, errs
	}
	// Checks across files: duplicates, references, limits.
	var probs = map[string][]config.Problem{}
	report := func(o origin, field, format string, args ...any) {
		key := o.key
		if field != "" {
			key += "." + field
		}
		probs[o.file] = append(probs[o.file], config.Problem{Key: key, Msg: fmt.Sprintf(format, args...)})
	}
	if len(m.networks) > MaxNetworks {
		errs = append(errs, &config.Error{File: files[0].name, Msg: fmt.Sprintf("more than %d networks", MaxNetworks)})
	}
	if len(m.links) > MaxLinks {
		errs = append(errs, &config.Error{File: files[0].name, Msg: fmt.Sprintf("more than %d links", MaxLinks)})
	}
	for i, n := range m.networks {
		if prev, dup := m.byName[n.Name]; dup && n.Name != "" {
			report(netOrigin[i], "name", "network %q is already defined (%s %s)", n.Name, netOrigin[prev].file, netOrigin[prev].key)
			continue
		}
		m.byName[n.Name] = i
	}
	for i, l := range m.links {
		if l.Room == "" || l.Network == "" || l.Channel == "" {
			continue // reported by Check
		}
		if _, ok := m.byName[l.Network]; !ok {
			report(linkOrigin[i], "network", "no network named %q", l.Network)
		}
		rk := foldRoom(l.Room)
		if prev, dup := m.byRoom[rk]; dup {
			report(linkOrigin[i], "room", "room %s is already linked (%s %s)", l.Room, linkOrigin[prev].file, linkOrigin[prev].key)
		} else {
			m.byRoom[rk] = i
		}
		ck := chanKey{l.Network, FoldChannel(l.Channel)}
		if prev, dup := m.byChan[ck]; dup {
			report(linkOrigin[i], "channel", "%s on %s is already linked to %s (%s %s)", l.Channel, l.Network, m.links[prev].Room, linkOrigin[prev].file, linkOrigin[prev].key)
		} else {
			m.byChan[ck] = i
		}
	}
	for _, f := range files {
		if ps := probs[f.name]; len(ps) > 0 {
			errs = append(errs, config.Locate(f.name, f.data, ps)...)
		}
	}
	if len(errs) > 0 {
		return nil, errs
	}
	return m, nil
}

func (n Network) withDefaults() Network {
	if n.Nick == "" {
		n.Nick = DefaultNick
	}
	if n.FloodInterval == 0 {
		n.FloodInterval = DefaultFloodInterval
	}
	if n.FloodBurst == 0 {
		n.FloodBurst = DefaultFloodBurst
	}
	if n.MaxConnections == 0 {
		n.MaxConnections = DefaultMaxConnections
	}
	return n
}

// Networks returns every network, in file order.
func (m *Map) Networks() []Network { return slices.Clone(m.networks) }

// Links returns every link, in file order.
func (m *Map) Links() []Link { return slices.Clone(m.links) }

// Network returns the network called name.
func (m *Map) Network(name string) (Network, bool) {
	i, ok := m.byName[name]
	if !ok {
		return Network{}, false
	}
	return m.networks[i], true
}

// ByRoom returns the link of the room with bare JID room (compared case-insensitively).
func (m *Map) ByRoom(room string) (Link, bool) {
	i, ok := m.byRoom[foldRoom(room)]
	if !ok {
		return Link{}, false
	}
	return m.links[i], true
}

// ByChannel returns the link of channel on network. Channels compare under rfc1459 case
// folding, the widest casemapping IRC servers use, so one link can't hide behind another's case.
func (m *Map) ByChannel(network, channel string) (Link, bool) {
	i, ok := m.byChan[chanKey{network, FoldChannel(channel)}]
	if !ok {
		return Link{}, false
	}
	return m.links[i], true
}

// LinksOn returns the links of network, in file order.
func (m *Map) LinksOn(network string) []Link {
	var out []Link
	for _, l := range m.links {
		if l.Network == network {
			out = append(out, l)
		}
	}
	return out
}

// Source returns the content a file of the map was read from, for placing later errors (label
// expressions checked against the policy) with config.Locate.
func (m *Map) Source(file string) []byte { return m.sources[file] }

// FoldChannel folds a channel name under rfc1459 casemapping.
func FoldChannel(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= '^' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

// foldRoom folds a room's bare JID for comparison: JIDs compare case-insensitively in their
// local and domain parts (nodeprep and IDNA fold case); full PRECIS is the server's business.
func foldRoom(s string) string { return strings.ToLower(s) }
