// Package config loads the server's TOML configuration, decoding it strictly and validating every value.
package config

import (
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// Config is the whole server configuration. The zero value is not useful: start from Default.
//
// Every field carries a `toml` tag naming its key; the decoder uses those tags as the schema, so a
// field added here is accepted in the file with no other change (it still needs a check in Validate,
// an entry in Default and a commented line in aldis.toml).
type Config struct {
	Server  Server  `toml:"server"`
	Log     Log     `toml:"log"`
	TLS     TLS     `toml:"tls"`
	C2S     C2S     `toml:"c2s"`
	Auth    Auth    `toml:"auth"`
	Storage Storage `toml:"storage"`
	Offline Offline `toml:"offline"`
	Admin   Admin   `toml:"admin"`
	MUC     MUC     `toml:"muc"`
	Archive Archive `toml:"archive"`
	// Federation and components (federation.go).
	S2S        S2S        `toml:"s2s"`
	Components Components `toml:"components"`
	Labels     Labels     `toml:"labels"`
	Mail       Mail       `toml:"mail"`
	IRC        IRC        `toml:"irc"`    // the IRC gateway (irc.go)
	Upload     Upload     `toml:"upload"` // HTTP file upload (upload.go)
	// Gateway is where `aldis gateway irc` attaches the IRC gateway as a component (irc.go).
	Gateway Gateway `toml:"gateway"`
	// Links are constrained links to far-side servers (link.go).
	Links []Link `toml:"link"`
}

// Server is the [server] table.
type Server struct {
	// Domain is the primary XMPP domain served: the one the CLI assumes and the server's
	// own name. Use Config.Domains for every domain served.
	Domain string `toml:"domain"`
	// Domains are further XMPP domains served by the same process (virtual hosts), each
	// with its own accounts and its own MUC service on "conference." + the domain.
	Domains         []string      `toml:"domains"`
	DataDir         string        `toml:"data_dir"`
	ShutdownTimeout time.Duration `toml:"shutdown_timeout"`
}

// Log is the [log] table.
type Log struct {
	Level  string `toml:"level"`  // debug, info, warn or error
	Format string `toml:"format"` // text or json
}

// TLS is the [tls] table. Both files empty means a self-signed certificate generated into the data directory.
type TLS struct {
	CertFile string `toml:"cert_file"`
	KeyFile  string `toml:"key_file"`
	// Hosts give virtual hosts certificates of their own; a domain without one uses
	// CertFile/KeyFile.
	Hosts []TLSHost `toml:"host"`
}

// TLSHost is one [[tls.host]]: the certificate of one domain served.
type TLSHost struct {
	Domain   string `toml:"domain"`
	CertFile string `toml:"cert_file"`
	KeyFile  string `toml:"key_file"`
}

// C2S is the [c2s] table: client-to-server listeners and per-connection limits.
type C2S struct {
	Listen               []string      `toml:"listen"`     // STARTTLS listeners, host:port
	ListenTLS            []string      `toml:"listen_tls"` // direct TLS listeners (XEP-0368), host:port
	RequireTLS           bool          `toml:"require_tls"`
	AllowPlainWithoutTLS bool          `toml:"allow_plain_without_tls"`
	MaxStanzaSize        int           `toml:"max_stanza_size"` // bytes
	HandshakeTimeout     time.Duration `toml:"handshake_timeout"`
	IdleTimeout          time.Duration `toml:"idle_timeout"`
	SendQueue            int           `toml:"send_queue"`     // stanzas
	ResumeTimeout        time.Duration `toml:"resume_timeout"` // XEP-0198 resumption window; 0 disables resumption
	RateBytes            int           `toml:"rate_bytes"`     // bytes per second; 0 = unlimited
	RateBurst            int           `toml:"rate_burst"`     // bytes
}

// Auth is the [auth] table.
type Auth struct {
	SCRAMIterations       int           `toml:"scram_iterations"`
	MaxFailuresPerIP      int           `toml:"max_failures_per_ip"`
	MaxFailuresPerAccount int           `toml:"max_failures_per_account"`
	FailureWindow         time.Duration `toml:"failure_window"`
	Registration          bool          `toml:"registration"`
}

// Storage is the [storage] table.
type Storage struct {
	Driver string `toml:"driver"`
	Path   string `toml:"path"` // empty = <data_dir>/aldis.db; use Config.StoragePath
}

// Offline is the [offline] table.
type Offline struct {
	MaxPerUser int `toml:"max_per_user"` // 0 disables offline storage
}

// Admin is the [admin] table.
type Admin struct {
	Listen string `toml:"listen"` // empty disables the admin HTTP server
}

// MUC is the [muc] table: the multi-user chat service (XEP-0045).
type MUC struct {
	Enabled bool   `toml:"enabled"`
	Domain  string `toml:"domain"` // empty = "conference." + server.domain; use Config.MUCDomain
	// MaxRooms bounds the rooms that exist at once, persistent ones included.
	MaxRooms int `toml:"max_rooms"`
	// MaxOccupants is the occupant limit of a new room, and the most a room's owner may set.
	MaxOccupants int `toml:"max_occupants"`
	// History is how many recent messages a room keeps for people who join.
	History int `toml:"history"`
	// Creators is who may create rooms: "local" (any user of server.domain) or "admins".
	Creators string `toml:"creators"`
	// Admins are bare JIDs of service administrators: they may always create rooms.
	Admins []string `toml:"admins"`
	// Federate lists local rooms that join remote rooms (XEP-0289 FMUC, see fmuc.go).
	Federate []MUCFederation `toml:"federate"`
	// FederationFrom lists the domains whose rooms may join ours; the others are refused.
	FederationFrom []string `toml:"federation_from"`
	// FederationGrace is how long the occupants of a room that joined ours stay after the link
	// to it is lost.
	FederationGrace time.Duration `toml:"federation_ghost_grace"`
}

// Archive is the [archive] table: the server-side message archive (XEP-0313).
type Archive struct {
	Enabled bool `toml:"enabled"`
	// Retention is how long archived messages are kept; 0 keeps them forever.
	Retention time.Duration `toml:"retention"`
	// MaxPage caps the messages a client gets per query page.
	MaxPage int `toml:"max_page"`
}

// Labels is the [labels] table: security labels (XEP-0258) and clearances.
type Labels struct {
	// PolicyFile is the security policy file; empty turns labels off.
	PolicyFile string `toml:"policy_file"`
	// Mode is "enforce" (refuse what a clearance does not grant) or "warn"
	// (log and count it, deliver anyway: for rollout).
	Mode string `toml:"mode"`
	// AuditLog is a file that receives one JSON line per label decision
	// refused (or, in warn mode, that would have been); empty writes them
	// to the main log.
	AuditLog string `toml:"audit_log"`
}

// Default returns the configuration used when there is no file, and the base that a file's values overlay.
func Default() Config {
	return Config{
		Server: Server{
			Domain:          "localhost",
			Domains:         []string{},
			DataDir:         "./aldis-data",
			ShutdownTimeout: 10 * time.Second,
		},
		Log: Log{Level: "info", Format: "text"},
		TLS: TLS{Hosts: []TLSHost{}},
		C2S: C2S{
			Listen:           []string{"127.0.0.1:5222", "[::1]:5222"},
			ListenTLS:        []string{"127.0.0.1:5223", "[::1]:5223"},
			RequireTLS:       true,
			MaxStanzaSize:    256 << 10,
			HandshakeTimeout: 30 * time.Second,
			IdleTimeout:      10 * time.Minute,
			SendQueue:        1024,
			ResumeTimeout:    5 * time.Minute,
			RateBytes:        128 << 10,
			RateBurst:        512 << 10,
		},
		Auth: Auth{
			SCRAMIterations:       4096,
			MaxFailuresPerIP:      10,
			MaxFailuresPerAccount: 10,
			FailureWindow:         5 * time.Minute,
		},
		Storage: Storage{Driver: "sqlite"},
		Offline: Offline{MaxPerUser: 1000},
		Admin:   Admin{Listen: "127.0.0.1:5280"},
		MUC: MUC{
			Enabled:        true,
			MaxRooms:       10000,
			MaxOccupants:   200,
			History:        20,
			Creators:       "local",
			Admins:         []string{},
			Federate:       []MUCFederation{},
			FederationFrom: []string{},
		},
		Archive:    Archive{Enabled: true, MaxPage: 100},
		S2S:        defaultS2S(),
		Components: defaultComponents(),
		Labels:     Labels{Mode: "enforce"},
		Upload:     defaultUpload(),
		Links:      []Link{},
		Mail:       defaultMail(),
		IRC:        IRC{Maps: []string{}, Linger: 60 * time.Second, RejoinInterval: 30 * time.Second, OutageGrace: 120 * time.Second},
	}
}

// MUCDomain returns the domain of the primary domain's multi-user chat service:
// MUC.Domain, or "conference." + the server's domain when it is empty.
func (c Config) MUCDomain() string { return c.MUCDomainOf(c.Server.Domain) }

// MUCDomainOf returns the domain of the multi-user chat service of a domain
// served: "conference." + host, or MUC.Domain for the primary domain when set.
func (c Config) MUCDomainOf(host string) string {
	if host == c.Server.Domain && c.MUC.Domain != "" {
		return c.MUC.Domain
	}
	return "conference." + host
}

// Domains returns the XMPP domains served: Server.Domain, then Server.Domains.
func (c Config) Domains() []string {
	return append([]string{c.Server.Domain}, c.Server.Domains...)
}

// StoragePath returns the database path: Storage.Path, or aldis.db inside the data directory when it is empty.
func (c Config) StoragePath() string {
	if c.Storage.Path != "" {
		return c.Storage.Path
	}
	return filepath.Join(c.Server.DataDir, "aldis.db")
}

// Load reads the file at path and returns Default overlaid with its values, validated.
// Configuration problems are returned as Errors naming path, line and key.
func Load(path string) (Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("reading configuration: %w", err)
	}
	return Parse(path, data)
}

// Parse is Load from bytes; name is the file name used in error messages.
// Every problem found is reported, as Errors sorted by line.
func Parse(name string, data []byte) (Config, error) {
	raw, err := parseTOML(name, data)
	if err != nil {
		return Config{}, err
	}
	c := Default()
	d := decoder{}
	d.table("", raw, &c)
	probs := d.probs
	for _, p := range c.problems() {
		// A key that failed to decode kept its default; don't report a second problem against it.
		if !d.failed[p.keys[0]] {
			probs = append(probs, p)
		}
	}
	if len(probs) == 0 {
		return c, nil
	}
	return Config{}, locate(name, data, probs)
}

// Validate reports every problem with c as Errors, or returns nil.
// Errors from a Config built in code name keys but no file or line.
func (c Config) Validate() error {
	probs := c.problems()
	if len(probs) == 0 {
		return nil
	}
	errs := make(Errors, len(probs))
	for i, p := range probs {
		errs[i] = &Error{Key: p.keys[0], Msg: p.msg}
	}
	return errs
}
