// Package mailmap reads the mail bridge maps: TOML files that tie mail addresses to XMPP users and rooms and give each mail domain its clearance, default label and sender checks, validated strictly with file:line errors.
//
// A map file looks like this:
//
//	[gateway]
//	clearance = "SECRET"            # the bridge as an occupant of the rooms below
//
//	[[user]]
//	address = "alice@mail.example.org"  # mail to it reaches alice; her mail goes out from it
//	jid = "alice@example.org"
//
//	[[room]]
//	address = "ops@mail.example.org"
//	room = "ops@conference.example.org"
//	send_to = ["ops-list@example.com"]  # the room's messages are mailed here
//	clearance = "UNCLASSIFIED"          # what may cross between the room and mail
//
//	[[domain]]
//	name = "example.com"               # or "*": every other domain
//	clearance = "UNCLASSIFIED"
//	label = "UNCLASSIFIED"             # the label of its unlabelled mail
//	require_spf = true                 # Authentication-Results must say spf=pass
//	require_dkim = true                # ... and dkim=pass for the From domain
package mailmap

import (
	"fmt"
	"net/mail"
	"os"
	"slices"
	"strings"
	"unicode"

	"github.com/aldis-im/aldis/core/config"
	"github.com/aldis-im/aldis/core/label"
)

// File is the schema of one map file.
type File struct {
	Gateway Gateway  `toml:"gateway"`
	Users   []User   `toml:"user"`
	Rooms   []Room   `toml:"room"`
	Domains []Domain `toml:"domain"`
}

// Gateway holds settings of the bridge itself.
type Gateway struct {
	// Clearance (an expression) is the bridge's own as an occupant of the
	// mapped rooms; empty: the policy default.
	Clearance string `toml:"clearance"`
}

// User ties a mail address to a local XMPP account.
type User struct {
	Address string `toml:"address"`
	JID     string `toml:"jid"` // bare JID
}

// Room ties a mail address to a MUC room.
type Room struct {
	Address string   `toml:"address"`
	Room    string   `toml:"room"`    // bare JID of the room
	SendTo  []string `toml:"send_to"` // addresses the room's messages are mailed to
	Nick    string   `toml:"nick"`    // the bridge's nickname in the room (default "mail")
	// Clearance (an expression) is what may cross between the room and
	// mail, both ways; empty: the mail domain's clearance alone.
	Clearance string `toml:"clearance"`
}

// Domain is what a mail domain is cleared for and how its senders are
// checked. Name "*" applies to every domain without an entry of its own.
type Domain struct {
	Name        string `toml:"name"`
	Clearance   string `toml:"clearance"` // expression; empty: the policy default
	Label       string `toml:"label"`     // the label of unlabelled mail; empty: the policy default
	RequireSPF  bool   `toml:"require_spf"`
	RequireDKIM bool   `toml:"require_dkim"`
	// AttachFiles turns links to files of this server's upload service in
	// messages to the domain (XEP-0066) into mail attachments.
	AttachFiles bool `toml:"attach_files"`
}

// DefaultNick is a room's bridge nickname when the map gives none.
const DefaultNick = "mail"

// Limits on what a map may hold.
const (
	MaxEntries  = 100000
	MaxSendTo   = 100
	MaxFileSize = 4 << 20
)

// Map is the merged, validated content of the map files; read-only once built.
type Map struct {
	gateway  Gateway
	users    []User
	rooms    []Room
	domains  []Domain
	byAddr   map[string]target // folded address
	byJID    map[string]int    // folded bare JID → user index
	byRoom   map[string]int    // folded room JID → room index
	byDomain map[string]int    // folded domain name → domain index
	local    map[string]bool   // domains of mapped addresses
	Files    []string
	sources  map[string][]byte
}

type target struct {
	room bool
	i    int
}

// Load reads and merges the map files at paths, reporting every problem in all of them.
func Load(paths ...string) (*Map, error) {
	files := make([]source, 0, len(paths))
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("reading mail map: %w", err)
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
		byAddr: map[string]target{}, byJID: map[string]int{}, byRoom: map[string]int{},
		byDomain: map[string]int{}, local: map[string]bool{}, sources: map[string][]byte{},
	}
	var errs config.Errors
	type origin struct{ file, key string }
	var userOrigin, roomOrigin, domOrigin []origin
	var gwOrigin *origin
	probs := map[string][]config.Problem{}
	report := func(o origin, field, format string, args ...any) {
		probs[o.file] = append(probs[o.file], config.Problem{Key: o.key + "." + field, Msg: fmt.Sprintf(format, args...)})
	}
	for _, f := range files {
		m.Files = append(m.Files, f.name)
		m.sources[f.name] = f.data
		if len(f.data) > MaxFileSize {
			errs = append(errs, &config.Error{File: f.name, Msg: fmt.Sprintf("file is larger than %d bytes", MaxFileSize)})
			continue
		}
		var d File
		if err := config.DecodeFile(f.name, f.data, &d); err != nil {
			if es, ok := err.(config.Errors); ok {
				errs = append(errs, es...)
				continue
			}
			return nil, err
		}
		if d.Gateway != (Gateway{}) {
			o := origin{f.name, "gateway"}
			if gwOrigin != nil {
				report(o, "clearance", "[gateway] is already set in %s", gwOrigin.file)
			} else {
				gwOrigin, m.gateway = &o, d.Gateway
			}
		}
		for j, u := range d.Users {
			m.users = append(m.users, u)
			userOrigin = append(userOrigin, origin{f.name, fmt.Sprintf("user[%d]", j)})
		}
		for j, r := range d.Rooms {
			if r.Nick == "" {
				r.Nick = DefaultNick
			}
			m.rooms = append(m.rooms, r)
			roomOrigin = append(roomOrigin, origin{f.name, fmt.Sprintf("room[%d]", j)})
		}
		for j, dom := range d.Domains {
			m.domains = append(m.domains, dom)
			domOrigin = append(domOrigin, origin{f.name, fmt.Sprintf("domain[%d]", j)})
		}
	}
	if len(errs) > 0 {
		return nil, errs
	}
	if n := len(m.users) + len(m.rooms) + len(m.domains); n > MaxEntries {
		return nil, config.Errors{&config.Error{File: files[0].name, Msg: fmt.Sprintf("more than %d entries", MaxEntries)}}
	}
	addAddr := func(o origin, addr string, t target) {
		if addr == "" || checkAddress(addr) != "" {
			return // reported by Check
		}
		k := Fold(addr)
		if prev, dup := m.byAddr[k]; dup {
			po := userOrigin
			if prev.room {
				po = roomOrigin
			}
			report(o, "address", "%s is already mapped (%s %s)", addr, po[prev.i].file, po[prev.i].key)
			return
		}
		m.byAddr[k] = t
		m.local[DomainOf(k)] = true
	}
	for i, u := range m.users {
		addAddr(userOrigin[i], u.Address, target{i: i})
		if u.JID == "" {
			continue
		}
		k := Fold(u.JID)
		if prev, dup := m.byJID[k]; dup {
			report(userOrigin[i], "jid", "%s already has an address (%s %s)", u.JID, userOrigin[prev].file, userOrigin[prev].key)
			continue
		}
		m.byJID[k] = i
	}
	for i, r := range m.rooms {
		addAddr(roomOrigin[i], r.Address, target{room: true, i: i})
		if r.Room == "" {
			continue
		}
		k := Fold(r.Room)
		if prev, dup := m.byRoom[k]; dup {
			report(roomOrigin[i], "room", "%s already has an address (%s %s)", r.Room, roomOrigin[prev].file, roomOrigin[prev].key)
			continue
		}
		m.byRoom[k] = i
	}
	for i, d := range m.domains {
		k := Fold(d.Name)
		if prev, dup := m.byDomain[k]; dup && k != "" {
			report(domOrigin[i], "name", "domain %s already has an entry (%s %s)", d.Name, domOrigin[prev].file, domOrigin[prev].key)
			continue
		}
		m.byDomain[k] = i
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

// Check validates each entry on its own (config.Checker); build checks what spans them.
func (f *File) Check() []config.Problem {
	var out []config.Problem
	add := func(key, format string, args ...any) {
		out = append(out, config.Problem{Key: key, Msg: fmt.Sprintf(format, args...)})
	}
	for i, u := range f.Users {
		k := fmt.Sprintf("user[%d]", i)
		if msg := checkAddress(u.Address); msg != "" {
			add(k+".address", "%s", msg)
		}
		if msg := checkBareJID(u.JID, "the user's bare JID, such as alice@example.org"); msg != "" {
			add(k+".jid", "%s", msg)
		}
	}
	for i, r := range f.Rooms {
		k := fmt.Sprintf("room[%d]", i)
		if msg := checkAddress(r.Address); msg != "" {
			add(k+".address", "%s", msg)
		}
		if msg := checkBareJID(r.Room, "the room's bare JID, such as ops@conference.example.org"); msg != "" {
			add(k+".room", "%s", msg)
		}
		if len(r.SendTo) > MaxSendTo {
			add(k+".send_to", "at most %d addresses", MaxSendTo)
		}
		for j, a := range r.SendTo {
			if msg := checkAddress(a); msg != "" {
				add(fmt.Sprintf("%s.send_to[%d]", k, j), "%s", msg)
			}
		}
		if r.Nick != "" && (len(r.Nick) > 64 || strings.ContainsFunc(r.Nick, unicode.IsControl) || strings.TrimSpace(r.Nick) != r.Nick) {
			add(k+".nick", "a nickname has at most 64 bytes, no control characters and no leading or trailing spaces")
		}
	}
	for i, d := range f.Domains {
		k := fmt.Sprintf("domain[%d]", i)
		if d.Name != "*" {
			if msg := checkDomain(d.Name); msg != "" {
				add(k+".name", "%s", msg)
			}
		}
	}
	return out
}

// checkAddress accepts a plain addr-spec: local@domain, no display name,
// no comments, nothing that could break a header.
func checkAddress(s string) string {
	if s == "" {
		return "give a mail address, such as ops@mail.example.org"
	}
	if len(s) > 254 || strings.ContainsAny(s, " \t\r\n<>,;\"()\\") {
		return fmt.Sprintf("%q is not a plain mail address", s)
	}
	a, err := mail.ParseAddress(s)
	if err != nil || a.Address != s || a.Name != "" {
		return fmt.Sprintf("%q is not a plain mail address", s)
	}
	if msg := checkDomain(DomainOf(s)); msg != "" {
		return fmt.Sprintf("%q: %s", s, msg)
	}
	return ""
}

func checkDomain(s string) string {
	if s == "" || len(s) > 253 {
		return "give a domain name, such as example.com"
	}
	for _, l := range strings.Split(s, ".") {
		if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return fmt.Sprintf("%q is not a domain name", s)
		}
		for _, c := range l {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c >= 0x80 && unicode.IsLetter(c)) {
				return fmt.Sprintf("%q is not a domain name", s)
			}
		}
	}
	return ""
}

func checkBareJID(s, hint string) string {
	local, domain, ok := strings.Cut(s, "@")
	switch {
	case s == "":
		return "give " + hint
	case !ok || local == "" || domain == "":
		return fmt.Sprintf("%q is not a bare JID (local@domain)", s)
	case strings.ContainsAny(s, "/ \"&'<>:") || strings.Contains(domain, "@"):
		return fmt.Sprintf("%q is not a bare JID", s)
	case len(local) > 1023 || len(domain) > 1023:
		return "JID parts are at most 1023 bytes"
	}
	if strings.ContainsFunc(s, func(r rune) bool { return unicode.IsControl(r) || unicode.IsSpace(r) }) {
		return fmt.Sprintf("%q contains a space or control character", s)
	}
	return ""
}

// Fold folds an address, JID or domain for comparison: ASCII lower case.
// (Mail local parts are case-sensitive in theory and never in practice.)
func Fold(s string) string { return strings.ToLower(strings.TrimSuffix(s, ".")) }

// DomainOf returns the part after the last @, folded.
func DomainOf(addr string) string {
	if at := strings.LastIndexByte(addr, '@'); at >= 0 {
		return Fold(addr[at+1:])
	}
	return ""
}

// Users returns every user entry, in file order.
func (m *Map) Users() []User { return slices.Clone(m.users) }

// Rooms returns every room entry, in file order.
func (m *Map) Rooms() []Room { return slices.Clone(m.rooms) }

// Domains returns every domain entry, in file order.
func (m *Map) Domains() []Domain { return slices.Clone(m.domains) }

// Gateway returns the [gateway] settings.
func (m *Map) Gateway() Gateway { return m.gateway }

// LocalDomains returns the domains of the mapped addresses: mail for them
// is delivered to XMPP, and an unmapped address there is unknown.
func (m *Map) LocalDomains() []string {
	out := make([]string, 0, len(m.local))
	for d := range m.local {
		out = append(out, d)
	}
	slices.Sort(out)
	return out
}

// IsLocalDomain reports whether domain is one of LocalDomains.
func (m *Map) IsLocalDomain(domain string) bool { return m.local[Fold(domain)] }

// UserByAddress returns the user mapped to addr.
func (m *Map) UserByAddress(addr string) (User, bool) {
	t, ok := m.byAddr[Fold(addr)]
	if !ok || t.room {
		return User{}, false
	}
	return m.users[t.i], true
}

// RoomByAddress returns the room mapped to addr.
func (m *Map) RoomByAddress(addr string) (Room, bool) {
	t, ok := m.byAddr[Fold(addr)]
	if !ok || !t.room {
		return Room{}, false
	}
	return m.rooms[t.i], true
}

// UserByJID returns the entry of the user with bare JID j.
func (m *Map) UserByJID(j string) (User, bool) {
	i, ok := m.byJID[Fold(j)]
	if !ok {
		return User{}, false
	}
	return m.users[i], true
}

// RoomByJID returns the entry of the room with bare JID j.
func (m *Map) RoomByJID(j string) (Room, bool) {
	i, ok := m.byRoom[Fold(j)]
	if !ok {
		return Room{}, false
	}
	return m.rooms[i], true
}

// Domain returns the entry for a mail domain: its own, else "*"; ok is
// false when neither exists (mail from or to it is refused).
func (m *Map) Domain(name string) (Domain, bool) {
	if i, ok := m.byDomain[Fold(name)]; ok {
		return m.domains[i], true
	}
	if i, ok := m.byDomain["*"]; ok {
		d := m.domains[i]
		return d, true
	}
	return Domain{}, false
}

// Principal is the label principal of a mail domain entry, as the
// identity directory knows it: "mail:<name>" ("mail:*" for the catch-all).
func Principal(d Domain) string { return "mail:" + Fold(d.Name) }

// Source returns the content a file of the map was read from.
func (m *Map) Source(file string) []byte { return m.sources[file] }

// CheckLabels checks every label and clearance expression against the
// policy set, with file:line errors.
func (m *Map) CheckLabels(set *label.Set) error {
	var errs config.Errors
	for _, file := range m.Files {
		var f File
		if err := config.DecodeFile(file, m.sources[file], &f); err != nil {
			return err // can't happen: the map was built from these bytes
		}
		var probs []config.Problem
		check := func(key, expr string, clearance bool) {
			if expr == "" {
				return
			}
			var err error
			if clearance {
				_, err = set.ParseClearance(expr)
			} else {
				_, err = set.ParseLabel(expr)
			}
			if err != nil {
				probs = append(probs, config.Problem{Key: key, Msg: err.Error()})
			}
		}
		check("gateway.clearance", f.Gateway.Clearance, true)
		for i, r := range f.Rooms {
			check(fmt.Sprintf("room[%d].clearance", i), r.Clearance, true)
		}
		for i, d := range f.Domains {
			check(fmt.Sprintf("domain[%d].clearance", i), d.Clearance, true)
			check(fmt.Sprintf("domain[%d].label", i), d.Label, false)
		}
		if len(probs) > 0 {
			errs = append(errs, config.Locate(file, m.sources[file], probs)...)
		}
	}
	if len(errs) > 0 {
		return errs
	}
	return nil
}
