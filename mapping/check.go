package mapping

import (
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/aldis-im/aldis/core/config"
)

// Check validates each network and link on its own (config.Checker); build checks what spans
// them: names, duplicates and references.
func (f *File) Check() []config.Problem {
	var out []config.Problem
	add := func(key, format string, args ...any) {
		out = append(out, config.Problem{Key: key, Msg: fmt.Sprintf(format, args...)})
	}
	for i, n := range f.Networks {
		k := fmt.Sprintf("network[%d]", i)
		if msg := checkName(n.Name); msg != "" {
			add(k+".name", "%s", msg)
		}
		if len(n.Servers) == 0 {
			add(k+".servers", "give at least one server as host:port")
		}
		for j, s := range n.Servers {
			if msg := checkServer(s); msg != "" {
				add(fmt.Sprintf("%s.servers[%d]", k, j), "%s", msg)
			}
		}
		if n.Nick != "" {
			if msg := checkNick(n.Nick); msg != "" {
				add(k+".nick", "%s", msg)
			}
		}
		switch strings.ToUpper(n.SASLMechanism) {
		case "":
		case "PLAIN":
			if n.SASLLogin == "" || n.SASLPassword == "" {
				add(k+".sasl_mechanism", "PLAIN needs sasl_login and sasl_password")
			}
		case "EXTERNAL":
			if n.TLSCertFile == "" || n.TLSKeyFile == "" {
				add(k+".sasl_mechanism", "EXTERNAL needs a client certificate: tls_cert_file and tls_key_file")
			}
			if n.NoTLS {
				add(k+".sasl_mechanism", "EXTERNAL needs TLS; remove no_tls")
			}
		default:
			add(k+".sasl_mechanism", "must be PLAIN or EXTERNAL, not %q", n.SASLMechanism)
		}
		if n.NickServAccount != "" && n.NickServ == "" {
			add(k+".nickserv_account", "give nickserv_password too")
		}
		if strings.ContainsAny(n.NickServAccount+n.NickServ, " \r\n\x00") {
			add(k+".nickserv_password", "the NickServ account and password have no spaces")
		}
		if (n.TLSCertFile == "") != (n.TLSKeyFile == "") {
			add(k+".tls_cert_file", "tls_cert_file and tls_key_file go together")
		}
		if n.NoTLS && (n.TLSSkipVerify || n.TLSCAFile != "" || n.TLSCertFile != "") {
			add(k+".no_tls", "TLS settings are given but no_tls turns TLS off")
		}
		if n.MaxConnections < 0 || n.MaxConnections > 100000 {
			add(k+".max_connections", "must be between 0 and 100000, not %d", n.MaxConnections)
		}
		if n.FloodInterval < 0 || n.FloodInterval > time.Minute {
			add(k+".flood_interval", "must be between 0s and 1m")
		}
		if n.FloodBurst < 0 || n.FloodBurst > 1000 {
			add(k+".flood_burst", "must be between 1 and 1000, not %d", n.FloodBurst)
		}
	}
	for i, l := range f.Links {
		k := fmt.Sprintf("link[%d]", i)
		if msg := checkRoom(l.Room); msg != "" {
			add(k+".room", "%s", msg)
		}
		if l.Network == "" {
			add(k+".network", "name the network the channel is on")
		}
		if msg := checkChannel(l.Channel); msg != "" {
			add(k+".channel", "%s", msg)
		}
		if strings.ContainsAny(l.Key, " ,\x00\r\n") || len(l.Key) > 64 {
			add(k+".key", "a channel key has no spaces or commas and at most 64 bytes")
		}
	}
	return out
}

func checkName(s string) string {
	if s == "" {
		return "give the network a name, such as \"libera\""
	}
	if len(s) > 64 {
		return "at most 64 characters"
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.') {
			return fmt.Sprintf("%q: use lower-case letters, digits, '-', '_' and '.'", s)
		}
	}
	return ""
}

func checkServer(s string) string {
	host, port, err := net.SplitHostPort(s)
	if err != nil || host == "" {
		return fmt.Sprintf("%q is not host:port", s)
	}
	if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
		return fmt.Sprintf("%q: port must be 1 to 65535", s)
	}
	return ""
}

func checkNick(s string) string {
	if len(s) > 30 {
		return "at most 30 characters"
	}
	for i, r := range s {
		ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || strings.ContainsRune("[]\\`_^{|}", r) ||
			i > 0 && (r >= '0' && r <= '9' || r == '-')
		if !ok {
			return fmt.Sprintf("%q is not an IRC nick: letters, digits and []\\`_^{|}-, not starting with a digit or '-'", s)
		}
	}
	return ""
}

// checkRoom checks that s looks like a room's bare JID; full PRECIS checks happen where the
// JID is used.
func checkRoom(s string) string {
	local, domain, ok := strings.Cut(s, "@")
	switch {
	case s == "":
		return "give the room's bare JID, such as ops@conference.example.com"
	case !ok || local == "" || domain == "":
		return fmt.Sprintf("%q is not a room JID (room@service)", s)
	case strings.ContainsAny(s, "/ \"&'<>:") || strings.Contains(domain, "@"):
		return fmt.Sprintf("%q is not a bare JID", s)
	case len(local) > 1023 || len(domain) > 1023:
		return "JID parts are at most 1023 bytes"
	}
	for _, r := range s {
		if unicode.IsControl(r) || unicode.IsSpace(r) {
			return fmt.Sprintf("%q contains a space or control character", s)
		}
	}
	return ""
}

// checkChannel applies RFC 2812's channel rules: a prefix of #, &, + or !; at most 50 bytes;
// no space, comma, BEL or colon.
func checkChannel(s string) string {
	switch {
	case s == "":
		return "give the IRC channel, such as \"#ops\""
	case !strings.ContainsRune("#&+!", rune(s[0])):
		return fmt.Sprintf("%q: a channel starts with #, &, + or !", s)
	case len(s) < 2 || len(s) > 50:
		return fmt.Sprintf("%q: a channel name has 2 to 50 bytes", s)
	case strings.ContainsAny(s, " ,\x07:\x00\r\n"):
		return fmt.Sprintf("%q: no spaces, commas, colons or BEL in a channel name", s)
	}
	return ""
}
