package irc

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"time"

	"github.com/aldis-im/aldis/core/obs"
	"golang.org/x/time/rate"
)

// Config describes one client connection to an IRC server. Addr (or Addrs) and Nick are required.
type Config struct {
	Addr string // host:port
	// Addrs are alternatives to Addr (a network's other servers): each reconnect after a failure
	// tries the next, in turn.
	Addrs    []string
	TLS      *tls.Config // nil: plain TCP. ServerName defaults to Addr's host; verification stays on unless the caller turns it off
	Password string      // server password (PASS), sent before NICK

	Nick     string
	User     string // username; default Nick
	RealName string // default Nick
	// NickTries bounds the alternatives tried when Nick is taken at registration; default MaxNickTries.
	NickTries int

	SASL SASL
	// NickServ is the password for "IDENTIFY" to NickServ after registration, for networks
	// without SASL or when SASL is not configured. NickServAccount, if set, is sent before it
	// (Atheme's "IDENTIFY account password").
	NickServ        string
	NickServAccount string
	// IdentifyTimeout is how long NickServ has to confirm IDENTIFY with 900 RPL_LOGGEDIN before
	// the failure is logged (the connection carries on without an account); default 10s.
	IdentifyTimeout time.Duration

	// Caps are the IRCv3 capabilities requested when the server offers them; nil means DefaultCaps.
	// "sasl" is added when SASL is configured.
	Caps []string

	// Rate and Burst pace what we send once registered, so that the server never sees a flood
	// ("Excess Flood" kills); defaults 1 line per second with a burst of 5. PONG and QUIT
	// skip the queue, and registration is a fixed handful of lines sent at once.
	Rate  rate.Limit
	Burst int

	SendQueue  int // lines waiting to be sent; default 256. A full queue refuses Send (ErrSendQueueFull)
	EventQueue int // events the consumer has not taken yet; default 256
	// Backlog is how many more events are held while EventQueue is full; default 4096. A consumer
	// that falls further behind than that loses the connection (ErrSlowConsumer), and it
	// reconnects: reading must go on regardless, or PINGs go unanswered.
	Backlog int

	// Outbox is how many lines given to SendKept may wait for a connection (and how many written
	// ones are kept until the server confirms them), to be sent after a reconnect; 0 turns it off
	// (SendKept is Send).
	// OutboxAge is how long a line may wait before it is given up and reported in an Unsent
	// event; default 2m.
	Outbox    int
	OutboxAge time.Duration

	ConnectTimeout  time.Duration // TCP+TLS; default 15s
	RegisterTimeout time.Duration // from connect to end of MOTD; default 30s
	PingInterval    time.Duration // silence before we PING; default 60s
	PingTimeout     time.Duration // silence after our PING before giving up; default 30s
	WriteTimeout    time.Duration // one write; default 30s

	// Backoff before reconnect attempt n is a random duration up to min(MaxBackoff, MinBackoff·2ⁿ)
	// ("full jitter"), and at least MinBackoff/2. Defaults 1s and 2m.
	MinBackoff, MaxBackoff time.Duration

	QuitMessage string // default "Aldis"

	// Dial opens the TCP connection; default a net.Dialer.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)

	Log     *slog.Logger // default discard
	Metrics *obs.Metrics // nil: none
	// Network labels metrics and logs, e.g. "libera".
	Network string
}

// SASL is the account a client logs in with during registration.
type SASL struct {
	Mechanism string // "PLAIN" or "EXTERNAL" (the TLS client certificate); "" for none
	Login     string // PLAIN: account name
	Password  string // PLAIN
	// Required makes a failed or unavailable SASL login fatal for the connection (it is retried with
	// backoff) rather than carrying on unauthenticated.
	Required bool
}

// DefaultCaps are the IRCv3 capabilities requested by default: enough to read server time,
// account names and statuses, confirm our own messages, see every prefix of a nick, and relay
// for others under their own names where the server allows it (Ergo's draft/relaymsg, whose value
// is the separators a relayed nick must contain).
var DefaultCaps = []string{
	"server-time", "message-tags", "echo-message", "multi-prefix", "away-notify",
	"account-tag", "labeled-response", "batch", "cap-notify", "draft/relaymsg",
}

// Errors a connection reports in its Disconnected event or from Send.
var (
	ErrNotConnected  = errors.New("irc: not connected")
	ErrSendQueueFull = errors.New("irc: send queue full")
	ErrNickExhausted = errors.New("irc: no nick left to try")
	ErrSASLFailed    = errors.New("irc: SASL login failed")
	ErrPingTimeout   = errors.New("irc: ping timeout")
	ErrClosed        = errors.New("irc: client closed")
	ErrSlowConsumer  = errors.New("irc: events not consumed fast enough")
	ErrOutboxFull    = errors.New("irc: too many lines waiting for the connection")
	ErrExpired       = errors.New("irc: line not sent in time: the connection was down")
)

func (c *Config) defaults() {
	if c.Addr != "" {
		c.Addrs = append([]string{c.Addr}, c.Addrs...)
	}
	if c.User == "" {
		c.User = c.Nick
	}
	if c.RealName == "" {
		c.RealName = c.Nick
	}
	if c.NickTries <= 0 || c.NickTries > MaxNickTries {
		c.NickTries = MaxNickTries
	}
	if c.Caps == nil {
		c.Caps = DefaultCaps
	}
	if c.Rate <= 0 {
		c.Rate = 1
	}
	if c.Burst <= 0 {
		c.Burst = 5
	}
	if c.SendQueue <= 0 {
		c.SendQueue = 256
	}
	if c.EventQueue <= 0 {
		c.EventQueue = 256
	}
	if c.Backlog <= 0 {
		c.Backlog = 4096
	}
	setDur := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	setDur(&c.ConnectTimeout, 15*time.Second)
	setDur(&c.RegisterTimeout, 30*time.Second)
	setDur(&c.PingInterval, 60*time.Second)
	setDur(&c.PingTimeout, 30*time.Second)
	setDur(&c.WriteTimeout, 30*time.Second)
	setDur(&c.IdentifyTimeout, 10*time.Second)
	setDur(&c.OutboxAge, 2*time.Minute)
	setDur(&c.MinBackoff, time.Second)
	setDur(&c.MaxBackoff, 2*time.Minute)
	if c.MaxBackoff < c.MinBackoff {
		c.MaxBackoff = c.MinBackoff
	}
	if c.QuitMessage == "" {
		c.QuitMessage = "Aldis"
	}
	if c.Dial == nil {
		d := &net.Dialer{KeepAlive: 30 * time.Second}
		c.Dial = d.DialContext
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
}
