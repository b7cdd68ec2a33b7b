package config

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// Accepted ranges. They are wide: they exist to catch typos and unit mistakes, not to tune the server.
const (
	minStanzaSize = 1 << 10
	maxStanzaSize = 16 << 20
	maxQueue      = 1 << 20
	maxRate       = 1 << 30
	minIterations = 4096    // RFC 7677's floor for SCRAM
	maxIterations = 1000000 // beyond this a login costs seconds of CPU
	maxCount      = 1000000
	maxRetention  = 100 * 365 * 24 * time.Hour
)

// checker accumulates problems.
type checker struct{ probs []problem }

// add records a problem reported under keys[0], or under the first of the other keys present in the file.
func (ck *checker) add(msg string, keys ...string) {
	ck.probs = append(ck.probs, problem{keys: keys, msg: msg})
}

func (ck *checker) intRange(key string, v, lo, hi int) {
	if v < lo || v > hi {
		ck.add(fmt.Sprintf("must be between %d and %d", lo, hi), key)
	}
}

func (ck *checker) durRange(key string, v, lo, hi time.Duration) {
	if v < lo || v > hi {
		ck.add(fmt.Sprintf("must be between %s and %s", fmtDur(lo), fmtDur(hi)), key)
	}
}

func (ck *checker) oneOf(key, v string, allowed ...string) {
	for _, a := range allowed {
		if v == a {
			return
		}
	}
	ck.add(fmt.Sprintf("%q is not one of %s", v, strings.Join(allowed, ", ")), key)
}

// problems returns every problem with c, in field order.
func (c Config) problems() []problem {
	var ck checker

	if msg := checkHostname(c.Server.Domain); msg != "" {
		ck.add(msg, "server.domain")
	}
	hosts := map[string]bool{c.Server.Domain: true}
	fresh := map[int]bool{} // entries of server.domains that are valid and new
	for i, d := range c.Server.Domains {
		key := indexKey("server.domains", i)
		switch msg := checkHostname(d); {
		case msg != "":
			ck.add(msg, key, "server.domains")
		case hosts[d]:
			ck.add(fmt.Sprintf("%q is served already (server.domain or earlier in this list)", d), key, "server.domains")
		default:
			fresh[i] = true
		}
		hosts[d] = true
	}
	if c.MUC.Enabled {
		chat := map[string]string{} // chat service domain → its host
		for _, d := range c.Domains() {
			chat[c.MUCDomainOf(d)] = d
		}
		for i, d := range c.Server.Domains {
			if owner, ok := chat[d]; ok && fresh[i] {
				ck.add(fmt.Sprintf("%q is the chat service of %s", d, owner), indexKey("server.domains", i), "server.domains")
			}
		}
	}
	tlsHosts := map[string]bool{}
	for i, h := range c.TLS.Hosts {
		key := indexKey("tls.host", i)
		switch {
		case !hosts[h.Domain]:
			ck.add(fmt.Sprintf("%q is not served: it must be server.domain or in server.domains", h.Domain), key+".domain", key)
		case tlsHosts[h.Domain]:
			ck.add(fmt.Sprintf("%q has another [[tls.host]] already", h.Domain), key+".domain", key)
		}
		tlsHosts[h.Domain] = true
		if h.CertFile == "" || h.KeyFile == "" {
			ck.add("needs both cert_file and key_file", key+".cert_file", key+".key_file", key)
		}
	}
	if c.Server.DataDir == "" {
		ck.add("must not be empty", "server.data_dir")
	}
	ck.durRange("server.shutdown_timeout", c.Server.ShutdownTimeout, time.Second, time.Hour)

	ck.oneOf("log.level", c.Log.Level, "debug", "info", "warn", "error")
	ck.oneOf("log.format", c.Log.Format, "text", "json")

	// Report the half that is set: it is the one written in the file.
	switch {
	case c.TLS.CertFile != "" && c.TLS.KeyFile == "":
		ck.add("is set but tls.key_file is empty; set both, or neither for a self-signed certificate", "tls.cert_file")
	case c.TLS.KeyFile != "" && c.TLS.CertFile == "":
		ck.add("is set but tls.cert_file is empty; set both, or neither for a self-signed certificate", "tls.key_file")
	}

	// Two listeners on one address would fail at startup with a less helpful bind error.
	seen := map[string]string{} // normalized address → key
	listener := func(key, addr string) {
		norm, msg := checkListen(addr)
		if msg != "" {
			ck.add(msg, key)
			return
		}
		if strings.HasSuffix(norm, ":0") { // ephemeral ports never clash
			return
		}
		if prev, ok := seen[norm]; ok {
			ck.add(fmt.Sprintf("address %s is used by both %s and %s", addr, prev, key), key, prev)
			return
		}
		seen[norm] = key
	}
	for i, a := range c.C2S.Listen {
		listener(indexKey("c2s.listen", i), a)
	}
	for i, a := range c.C2S.ListenTLS {
		listener(indexKey("c2s.listen_tls", i), a)
	}
	if c.C2S.AllowPlainWithoutTLS && c.C2S.RequireTLS {
		ck.add("requires c2s.require_tls = false", "c2s.allow_plain_without_tls")
	}
	ck.intRange("c2s.max_stanza_size", c.C2S.MaxStanzaSize, minStanzaSize, maxStanzaSize)
	ck.durRange("c2s.handshake_timeout", c.C2S.HandshakeTimeout, time.Second, 10*time.Minute)
	ck.durRange("c2s.idle_timeout", c.C2S.IdleTimeout, 10*time.Second, 24*time.Hour)
	ck.intRange("c2s.send_queue", c.C2S.SendQueue, 1, maxQueue)
	ck.durRange("c2s.resume_timeout", c.C2S.ResumeTimeout, 0, time.Hour)
	ck.intRange("c2s.rate_bytes", c.C2S.RateBytes, 0, maxRate)
	ck.intRange("c2s.rate_burst", c.C2S.RateBurst, 0, maxRate)
	if c.C2S.RateBytes > 0 && c.C2S.RateBurst < c.C2S.MaxStanzaSize &&
		c.C2S.MaxStanzaSize >= minStanzaSize && c.C2S.RateBurst >= 0 { // out-of-range values are reported above
		// The token bucket could never hold a maximum-size stanza, so such a stanza would stall the stream.
		ck.add(fmt.Sprintf("c2s.rate_burst (%d) must be at least c2s.max_stanza_size (%d) while c2s.rate_bytes limits the rate",
			c.C2S.RateBurst, c.C2S.MaxStanzaSize), "c2s.rate_burst", "c2s.max_stanza_size", "c2s.rate_bytes")
	}

	ck.intRange("auth.scram_iterations", c.Auth.SCRAMIterations, minIterations, maxIterations)
	ck.intRange("auth.max_failures_per_ip", c.Auth.MaxFailuresPerIP, 1, maxCount)
	ck.intRange("auth.max_failures_per_account", c.Auth.MaxFailuresPerAccount, 1, maxCount)
	ck.durRange("auth.failure_window", c.Auth.FailureWindow, time.Second, 24*time.Hour)
	if c.Auth.Registration && !c.C2S.RequireTLS && !c.C2S.AllowPlainWithoutTLS {
		// The same opt-in as SASL PLAIN: registration carries the password in the clear.
		ck.add("requires c2s.require_tls = true, because in-band registration sends the password "+
			"(for tests, c2s.allow_plain_without_tls = true permits it without TLS)",
			"auth.registration", "c2s.require_tls")
	}

	if c.Storage.Driver != "sqlite" {
		ck.add(fmt.Sprintf(`unsupported driver %q: only "sqlite" is available`, c.Storage.Driver), "storage.driver")
	}

	ck.intRange("offline.max_per_user", c.Offline.MaxPerUser, 0, maxCount)

	if c.Admin.Listen != "" {
		listener("admin.listen", c.Admin.Listen)
	}

	if c.MUC.Domain != "" {
		if msg := checkHostname(c.MUC.Domain); msg != "" {
			ck.add(msg, "muc.domain")
		} else if c.MUC.Domain == c.Server.Domain {
			ck.add("must differ from server.domain: the service needs a domain of its own", "muc.domain")
		}
	} else if c.MUC.Enabled && checkHostname(c.Server.Domain) == "" {
		if msg := checkHostname(c.MUCDomain()); msg != "" {
			ck.add(fmt.Sprintf("is empty, and the default %s", msg), "muc.domain")
		}
	}
	ck.intRange("muc.max_rooms", c.MUC.MaxRooms, 1, maxCount)
	ck.intRange("muc.max_occupants", c.MUC.MaxOccupants, 1, maxCount)
	ck.intRange("muc.history", c.MUC.History, 0, 10000)
	ck.oneOf("muc.creators", c.MUC.Creators, "local", "admins")
	for i, a := range c.MUC.Admins {
		if msg := checkBareJID(a); msg != "" {
			ck.add(msg, indexKey("muc.admins", i))
		}
	}
	if c.MUC.Enabled && c.MUC.Creators == "admins" && len(c.MUC.Admins) == 0 {
		ck.add(`is "admins" but muc.admins is empty, so nobody could create a room`, "muc.creators", "muc.admins")
	}
	c.mucFederationProblems(&ck)

	// 0 keeps messages forever; anything shorter than the hourly pruning is a unit mistake.
	if c.Archive.Retention != 0 {
		ck.durRange("archive.retention", c.Archive.Retention, time.Hour, maxRetention)
	}
	ck.intRange("archive.max_page", c.Archive.MaxPage, 1, 10000)
	c.federationProblems(&ck, listener)
	c.uploadProblems(&ck, listener)
	c.mailProblems(&ck, listener)
	c.linkProblems(&ck, listener)

	ck.oneOf("labels.mode", c.Labels.Mode, "enforce", "warn")
	c.ircProblems(&ck)
	return ck.probs
}

// checkListen checks a host:port listen address and returns it normalized, or a message saying what is wrong.
// Port 0 (any free port) is allowed, for tests.
func checkListen(addr string) (norm, msg string) {
	if addr == "" {
		return "", "must not be empty"
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", fmt.Sprintf(`invalid address %q: want host:port, such as "127.0.0.1:5222" or "[::1]:5222"`, addr)
	}
	if p, err := strconv.ParseUint(port, 10, 16); err != nil || strconv.FormatUint(p, 10) != port {
		return "", fmt.Sprintf("invalid address %q: port must be a number from 0 to 65535", addr)
	}
	if host != "" {
		if ip, err := netip.ParseAddr(host); err == nil {
			host = ip.String()
		} else if m := checkHostname(host); m != "" {
			return "", fmt.Sprintf("invalid address %q: host %s", addr, m)
		}
	}
	return net.JoinHostPort(host, port), ""
}

// checkHostname returns why name is not a valid DNS hostname (RFC 1123 letters, digits and hyphens), or "".
// Internationalized names must be written in their ASCII (xn--) form.
func checkHostname(name string) string {
	switch {
	case name == "":
		return "must not be empty"
	case len(name) > 253:
		return "must be a hostname of at most 253 characters"
	case strings.HasSuffix(name, "."):
		return fmt.Sprintf("%q must be a hostname without a trailing dot", name)
	}
	if _, err := netip.ParseAddr(name); err == nil {
		return fmt.Sprintf("%q must be a hostname, not an IP address", name)
	}
	for label := range strings.SplitSeq(name, ".") {
		switch {
		case label == "":
			return fmt.Sprintf("%q must be a hostname: empty label", name)
		case len(label) > 63:
			return fmt.Sprintf("%q must be a hostname: label longer than 63 characters", name)
		case label[0] == '-' || label[len(label)-1] == '-':
			return fmt.Sprintf("%q must be a hostname: label starts or ends with a hyphen", name)
		}
		for _, r := range label {
			switch {
			case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '-':
			case r >= 'A' && r <= 'Z':
				return fmt.Sprintf("%q must be lowercase", name)
			default:
				return fmt.Sprintf("%q must be a hostname: invalid character %q (write internationalized names in xn-- form)", name, r)
			}
		}
	}
	return ""
}

// checkBareJID returns why s is not a plausible bare JID (local@domain), or "". The XMPP rules
// proper (stringprep, PRECIS) are applied by the server, which refuses to start on a JID they reject.
func checkBareJID(s string) string {
	local, domain, ok := strings.Cut(s, "@")
	switch {
	case s == "":
		return "must not be empty"
	case !ok || local == "" || domain == "":
		return fmt.Sprintf("%q must be a bare JID such as \"alice@example.com\"", s)
	case strings.ContainsAny(s, "/ "):
		return fmt.Sprintf("%q must be a bare JID: no resource, no spaces", s)
	}
	return ""
}

// fmtDur prints a duration without zero trailing units: "1h" rather than "1h0m0s".
func fmtDur(d time.Duration) string {
	s := d.String()
	if t, ok := strings.CutSuffix(s, "m0s"); ok {
		s = t + "m"
	}
	if t, ok := strings.CutSuffix(s, "h0m"); ok {
		s = t + "h"
	}
	return s
}
