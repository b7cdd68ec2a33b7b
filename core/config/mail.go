package config

import (
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"time"
)

// Mail is the [mail] table: the SMTP ingress, the store-and-forward relay
// and the mail ⇄ XMPP bridge. Mail for the addresses of the Maps goes to
// XMPP users and rooms; mail for RelayDomains is queued and sent on to
// Smarthost (or by MX).
type Mail struct {
	Enabled bool     `toml:"enabled"`
	Listen  []string `toml:"listen"` // SMTP listeners with STARTTLS (the [tls] certificate), host:port
	// Hostname is the name in the SMTP greeting, Received fields, bounces and
	// the loop-detection trace; empty: server.domain. Use Config.MailHostname.
	Hostname string `toml:"hostname"`
	// RequireTLS refuses MAIL before STARTTLS on the listeners.
	RequireTLS     bool `toml:"require_tls"`
	MaxMessageSize int  `toml:"max_message_size"` // bytes; larger mail is refused with 552
	MaxRecipients  int  `toml:"max_recipients"`   // per message
	MaxConnections int  `toml:"max_connections"`
	MaxConnsPerIP  int  `toml:"max_connections_per_ip"`
	MessagesPerMin int  `toml:"messages_per_minute"` // per client IP address
	MaxHops        int  `toml:"max_hops"`            // Received fields; more is a loop
	// RelayDomains are the recipient domains relayed on; others get 550
	// unless the Maps serve them.
	RelayDomains []string `toml:"relay_domains"`
	// Maps are the mail bridge maps (package mapping/mailmap); none leaves
	// the bridge off. Relative paths are relative to the configuration file.
	Maps []string `toml:"maps"`
	// GatewayDomain is the XMPP domain on which users reach any mail
	// address as an escaped JID; empty: "mail." + server.domain. Use
	// Config.MailGatewayDomain.
	GatewayDomain string `toml:"gateway_domain"`
	// TrustedAuthservID is the authserv-id of the relaying MTA whose
	// Authentication-Results header fields the maps' SPF and DKIM
	// requirements trust; empty trusts none.
	TrustedAuthservID string `toml:"trusted_authserv_id"`
	// Smarthost, "host:port", receives all outgoing mail; empty: MX lookup.
	Smarthost         string `toml:"smarthost"`
	SmarthostUser     string `toml:"smarthost_user"`
	SmarthostPassword string `toml:"smarthost_password"`
	// OutboundRequireTLS fails deliveries to servers without STARTTLS or
	// with certificates that do not verify.
	OutboundRequireTLS bool `toml:"outbound_require_tls"`
	// Queue: concurrent deliveries in all and per destination domain, the
	// wait before retries (doubling from retry_min to retry_max, jittered),
	// and how long mail may wait before it is bounced.
	Workers      int           `toml:"workers"`
	PerDomain    int           `toml:"per_domain"`
	RetryMin     time.Duration `toml:"retry_min"`
	RetryMax     time.Duration `toml:"retry_max"`
	MaxQueueTime time.Duration `toml:"max_queue_time"`
}

func defaultMail() Mail {
	return Mail{
		Listen:         []string{"127.0.0.1:2525"},
		MaxMessageSize: 10 << 20,
		MaxRecipients:  100,
		MaxConnections: 100,
		MaxConnsPerIP:  10,
		MessagesPerMin: 60,
		MaxHops:        30,
		RelayDomains:   []string{},
		Maps:           []string{},
		Workers:        8,
		PerDomain:      2,
		RetryMin:       time.Minute,
		RetryMax:       time.Hour,
		MaxQueueTime:   5 * 24 * time.Hour,
	}
}

// LinkMailDomains lists the mail domains reached over [[link]]s: the mail
// relay accepts mail for them as it does for its relay domains.
func (c Config) LinkMailDomains() []string {
	var out []string
	for _, l := range c.Links {
		out = append(out, l.MailDomains...)
	}
	return out
}

// MailHostname returns Mail.Hostname, or the server's domain when it is empty.
func (c Config) MailHostname() string {
	if c.Mail.Hostname != "" {
		return c.Mail.Hostname
	}
	return c.Server.Domain
}

// MailGatewayDomain returns Mail.GatewayDomain, or "mail." + the server's
// domain when it is empty.
func (c Config) MailGatewayDomain() string {
	if c.Mail.GatewayDomain != "" {
		return c.Mail.GatewayDomain
	}
	return "mail." + c.Server.Domain
}

// MailMapPaths resolves mail.maps relative to the configuration file's
// directory, as MapPaths does for irc.maps.
func (c Config) MailMapPaths(configFile string) []string {
	out := make([]string, len(c.Mail.Maps))
	for i, m := range c.Mail.Maps {
		if filepath.IsAbs(m) || configFile == "" {
			out[i] = m
			continue
		}
		out[i] = filepath.Join(filepath.Dir(configFile), m)
	}
	return out
}

// mailProblems checks [mail]; listener records listen addresses against clashes.
func (c Config) mailProblems(ck *checker, listener func(key, addr string)) {
	m := c.Mail
	if m.Enabled {
		for i, a := range m.Listen {
			listener(indexKey("mail.listen", i), a)
		}
		if len(m.RelayDomains) == 0 && len(m.Maps) == 0 && len(c.LinkMailDomains()) == 0 {
			ck.add("and mail.maps are empty, so the enabled mail relay would refuse every recipient", "mail.relay_domains", "mail.enabled")
		}
	}
	if m.Hostname != "" {
		if msg := checkHostname(m.Hostname); msg != "" {
			ck.add(msg, "mail.hostname")
		}
	}
	for i, p := range m.Maps {
		if p == "" {
			ck.add("must not be empty", indexKey("mail.maps", i))
		}
	}
	if m.GatewayDomain != "" {
		if msg := checkHostname(m.GatewayDomain); msg != "" {
			ck.add(msg, "mail.gateway_domain")
		} else if m.GatewayDomain == c.Server.Domain || m.GatewayDomain == c.MUCDomain() {
			ck.add("must differ from the server's and the chat service's domains", "mail.gateway_domain")
		}
	}
	if strings.ContainsAny(m.TrustedAuthservID, " \t\r\n;()\"\x00") {
		ck.add("is not an authserv-id (a host name)", "mail.trusted_authserv_id")
	}
	for i, d := range m.RelayDomains {
		if msg := checkHostname(d); msg != "" {
			ck.add(msg, indexKey("mail.relay_domains", i))
		}
	}
	if m.Smarthost != "" {
		if _, msg := checkListen(m.Smarthost); msg != "" {
			ck.add(msg, "mail.smarthost")
		} else if host, _, _ := net.SplitHostPort(m.Smarthost); host == "" {
			ck.add(fmt.Sprintf("invalid address %q: the host is missing", m.Smarthost), "mail.smarthost")
		}
	}
	if (m.SmarthostUser == "") != (m.SmarthostPassword == "") {
		ck.add("smarthost_user and smarthost_password go together", "mail.smarthost_user", "mail.smarthost_password")
	}
	if m.SmarthostUser != "" && m.Smarthost == "" {
		ck.add("is set but mail.smarthost is not: credentials are only sent to a smarthost", "mail.smarthost_user")
	}
	if strings.ContainsAny(m.SmarthostUser+m.SmarthostPassword, "\r\n\x00") {
		ck.add("must not contain line breaks or NUL", "mail.smarthost_user")
	}
	ck.intRange("mail.max_message_size", m.MaxMessageSize, 1<<10, 1<<30)
	ck.intRange("mail.max_recipients", m.MaxRecipients, 1, 10000)
	ck.intRange("mail.max_connections", m.MaxConnections, 1, maxCount)
	ck.intRange("mail.max_connections_per_ip", m.MaxConnsPerIP, 1, maxCount)
	ck.intRange("mail.messages_per_minute", m.MessagesPerMin, 1, maxCount)
	ck.intRange("mail.max_hops", m.MaxHops, 5, 500)
	ck.intRange("mail.workers", m.Workers, 1, 1000)
	ck.intRange("mail.per_domain", m.PerDomain, 1, 1000)
	ck.durRange("mail.retry_min", m.RetryMin, time.Second, 24*time.Hour)
	ck.durRange("mail.retry_max", m.RetryMax, time.Second, 7*24*time.Hour)
	if m.RetryMax < m.RetryMin {
		ck.add("must not be shorter than mail.retry_min", "mail.retry_max")
	}
	ck.durRange("mail.max_queue_time", m.MaxQueueTime, time.Minute, 30*24*time.Hour)
}
