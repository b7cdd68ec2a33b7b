// Package compclient connects an external component to an XMPP server (XEP-0114, jabber:component:accept) and passes stanzas both ways.
//
// Run dials the server, opens the stream to the component's domain, proves
// the shared secret with <handshake>hex(SHA-1(stream id ‖ secret))</handshake>
// and then hands every stanza read to Config.Handle; Deliver queues stanzas
// to write. A lost connection is dialled again with jittered backoff until
// the context ends.
package compclient

import (
	"context"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"sync"
	"time"

	"github.com/aldis-im/aldis/xmppcore/jid"
	"github.com/aldis-im/aldis/xmppcore/stanza"
	"github.com/aldis-im/aldis/xmppcore/wire"
)

// ErrNotAuthorized is returned when the server refuses the handshake.
var ErrNotAuthorized = errors.New("compclient: the server refused the handshake")

// Config configures a Client.
type Config struct {
	Addr   string // the server's component port, host:port
	Domain string // the component's domain
	Secret string
	// Handle receives each stanza from the server, in jabber:client, with its addresses parsed;
	// it runs on the reader goroutine and must not block for long.
	Handle    func(st *wire.Element, from, to jid.JID)
	Queue     int // stanzas waiting to be written; default 4096, beyond it they are dropped
	MaxStanza int // default 256 KiB
	Timeout   time.Duration
	Log       *slog.Logger
	// OnConnect, if set, runs after each successful handshake.
	OnConnect func()
}

// Client is one component connection, redialled when lost.
type Client struct {
	cfg   Config
	log   *slog.Logger
	queue chan *wire.Element

	mu        sync.Mutex
	connected bool
	dropped   int
}

// New returns a client; Run connects it.
func New(cfg Config) *Client {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Queue <= 0 {
		cfg.Queue = 4096
	}
	if cfg.MaxStanza <= 0 {
		cfg.MaxStanza = 256 << 10
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Second
	}
	if cfg.Handle == nil {
		cfg.Handle = func(*wire.Element, jid.JID, jid.JID) {}
	}
	return &Client{cfg: cfg, log: cfg.Log.With("component", cfg.Domain, "server", cfg.Addr), queue: make(chan *wire.Element, cfg.Queue)}
}

// Deliver queues st for the server without blocking; it is dropped (and
// counted) when the queue is full. from and to must already be set on st.
func (c *Client) Deliver(st *wire.Element, _, _ jid.JID) {
	select {
	case c.queue <- st:
	default:
		c.mu.Lock()
		c.dropped++
		c.mu.Unlock()
	}
}

// Queued is how many stanzas wait to be written.
func (c *Client) Queued() int { return len(c.queue) }

// Dropped is how many stanzas Deliver dropped on a full queue.
func (c *Client) Dropped() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.dropped
}

// Connected reports whether the stream is up and authenticated.
func (c *Client) Connected() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.connected
}

// Run keeps the component connected until ctx ends; it returns early only
// when the server refuses the secret.
func (c *Client) Run(ctx context.Context) error {
	for attempt := 0; ; attempt++ {
		began := time.Now()
		err := c.session(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if errors.Is(err, ErrNotAuthorized) {
			return err
		}
		if time.Since(began) > time.Minute {
			attempt = 0
		}
		wait := backoff(attempt)
		c.log.Warn("component connection lost; reconnecting", "err", err, "in", wait)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
	}
}

// backoff is 0.5 s doubling to 30 s, with ±25 % jitter.
func backoff(n int) time.Duration {
	d := 500 * time.Millisecond << min(n, 6)
	d = min(d, 30*time.Second)
	return d*3/4 + rand.N(d/2+1)
}

// Digest is the handshake of XEP-0114: lowercase hex of SHA-1(id ‖ secret).
func Digest(id, secret string) string {
	h := sha1.Sum([]byte(id + secret))
	return hex.EncodeToString(h[:])
}

// session is one connection: dial, handshake, then read and write until it breaks.
func (c *Client) session(ctx context.Context) error {
	d := net.Dialer{Timeout: c.cfg.Timeout}
	raw, err := d.DialContext(ctx, "tcp", c.cfg.Addr)
	if err != nil {
		return fmt.Errorf("compclient: dial %s: %w", c.cfg.Addr, err)
	}
	defer raw.Close()
	stop := context.AfterFunc(ctx, func() { raw.SetDeadline(time.Now()) })
	defer stop()
	dec := wire.NewDecoder(raw, wire.Limits{MaxStanza: c.cfg.MaxStanza})
	if err := c.handshake(raw, dec); err != nil {
		return err
	}
	c.setConnected(true)
	defer c.setConnected(false)
	c.log.Info("component connected")
	if c.cfg.OnConnect != nil {
		c.cfg.OnConnect()
	}
	done := make(chan struct{})
	werr := make(chan error, 1)
	go func() {
		err := c.writeLoop(raw, done)
		if err != nil {
			raw.SetDeadline(time.Now()) // and the reader stops
		}
		werr <- err
	}()
	rerr := c.readLoop(dec)
	close(done)
	raw.SetDeadline(time.Now())
	if err := <-werr; rerr == nil {
		rerr = err
	}
	if ctx.Err() != nil {
		_, _ = raw.Write([]byte("</stream:stream>"))
	}
	return rerr
}

func (c *Client) setConnected(v bool) {
	c.mu.Lock()
	c.connected = v
	c.mu.Unlock()
}

// handshake opens the stream and proves the secret.
func (c *Client) handshake(raw net.Conn, dec *wire.Decoder) error {
	raw.SetDeadline(time.Now().Add(c.cfg.Timeout))
	defer raw.SetDeadline(time.Time{})
	h := wire.New("stream:stream", stanza.NSStream)
	h.SetAttr("xmlns", stanza.NSComponent)
	h.SetAttr("to", c.cfg.Domain)
	if _, err := raw.Write(h.AppendStart([]byte("<?xml version='1.0'?>"))); err != nil {
		return fmt.Errorf("compclient: stream header: %w", err)
	}
	tok, err := dec.Next()
	if err != nil {
		return fmt.Errorf("compclient: reading the stream header: %w", err)
	}
	if tok.Kind != wire.StreamStart {
		return errors.New("compclient: the server sent no stream header")
	}
	id := tok.Elem.Attr("id")
	if id == "" {
		return errors.New("compclient: the stream header has no id")
	}
	hs := wire.New("handshake", "").AddText(Digest(id, c.cfg.Secret))
	if _, err := raw.Write(hs.Append(nil)); err != nil {
		return fmt.Errorf("compclient: handshake: %w", err)
	}
	tok, err = dec.Next()
	if err != nil {
		return fmt.Errorf("compclient: reading the handshake answer: %w", err)
	}
	switch {
	case tok.Kind == wire.Stanza && tok.Elem.Local() == "handshake":
		return nil
	case tok.Kind == wire.Stanza && tok.Elem.Local() == "error" && tok.Elem.Space == stanza.NSStream:
		if streamCondition(tok.Elem) == "not-authorized" {
			return ErrNotAuthorized
		}
		return fmt.Errorf("compclient: stream error %s", streamCondition(tok.Elem))
	}
	return fmt.Errorf("compclient: unexpected answer to the handshake: <%s>", tok.Elem.Local())
}

func streamCondition(e *wire.Element) string {
	for ch := range e.Elements() {
		if ch.Space == stanza.NSStreamErr {
			return ch.Local()
		}
	}
	return "undefined-condition"
}

// readLoop hands stanzas to Handle until the stream ends.
func (c *Client) readLoop(dec *wire.Decoder) error {
	for {
		tok, err := dec.Next()
		if err != nil {
			return fmt.Errorf("compclient: read: %w", err)
		}
		switch tok.Kind {
		case wire.StreamEnd:
			return errors.New("compclient: the server closed the stream")
		case wire.Stanza:
		default:
			continue
		}
		st := tok.Elem
		if st.Space == stanza.NSStream && st.Local() == "error" {
			return fmt.Errorf("compclient: stream error %s", streamCondition(st))
		}
		if st.Space != stanza.NSComponent {
			continue
		}
		switch st.Local() {
		case "message", "presence", "iq":
		default:
			continue
		}
		from, err1 := jid.Parse(st.Attr("from"))
		to, err2 := jid.Parse(st.Attr("to"))
		if err1 != nil || err2 != nil {
			c.log.Debug("stanza with bad addresses dropped", "from", st.Attr("from"), "to", st.Attr("to"))
			continue
		}
		stanza.FromPeer(st, stanza.NSComponent)
		c.cfg.Handle(st, from, to)
	}
}

// writeLoop writes queued stanzas, coalescing what is queued into one write.
func (c *Client) writeLoop(raw net.Conn, done <-chan struct{}) error {
	var buf []byte
	for {
		select {
		case <-done:
			return nil
		case st := <-c.queue:
			buf = stanza.AppendForPeer(buf[:0], st)
			for more := true; more && len(buf) < 16<<10; {
				select {
				case st := <-c.queue:
					buf = stanza.AppendForPeer(buf, st)
				default:
					more = false
				}
			}
			raw.SetWriteDeadline(time.Now().Add(c.cfg.Timeout))
			if _, err := raw.Write(buf); err != nil {
				return fmt.Errorf("compclient: write: %w", err)
			}
		}
	}
}
