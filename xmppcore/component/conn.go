package component

import (
	"errors"
	"io"
	"net"
	"sync"
	"time"

	"github.com/aldis-im/aldis/xmppcore/jid"
	"github.com/aldis-im/aldis/xmppcore/stanza"
	"github.com/aldis-im/aldis/xmppcore/wire"
)

// streamErr is a stream error to send before closing.
type streamErr struct{ cond, text string }

func (e *streamErr) Error() string { return e.cond + ": " + e.text }

// conn is one component connection: a reader goroutine (serve) and, once
// authenticated, a writer goroutine draining queue.
type conn struct {
	s      *Server
	raw    net.Conn
	dec    *wire.Decoder
	domain string
	id     string
	queue  chan *wire.Element
	quit   chan struct{}
	once   sync.Once
	wmu    sync.Mutex
}

func (c *conn) stop() {
	c.once.Do(func() { close(c.quit) })
	c.raw.SetReadDeadline(time.Now())
}

func (c *conn) enqueue(st *wire.Element) bool {
	select {
	case c.queue <- st:
		return true
	default:
		return false // a component that does not read loses stanzas, not the server's memory
	}
}

func (c *conn) write(b []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.raw.SetWriteDeadline(time.Now().Add(c.s.cfg.HandshakeTimeout))
	_, err := c.raw.Write(b)
	return err
}

func (c *conn) serve() {
	defer c.s.forget(c)
	err := c.run()
	var final []byte
	var se *streamErr
	var we *wire.Error
	switch {
	case errors.As(err, &se):
		c.s.log.Info("component stream closed", "domain", c.domain, "err", se)
		final = stanza.StreamError(se.cond, se.text)
	case errors.As(err, &we):
		final = stanza.StreamError(we.Condition, we.Text)
	case err == nil || errors.Is(err, io.EOF):
		final = []byte("</stream:stream>")
	default:
		select {
		case <-c.quit:
			final = stanza.StreamError("system-shutdown", "")
		default:
		}
	}
	if final != nil {
		c.write(final)
	}
	c.raw.Close()
	// What is still queued cannot reach the component: bounce it.
	for {
		select {
		case st := <-c.queue:
			from, _ := jid.Parse(st.Attr("from"))
			to, _ := jid.Parse(st.Attr("to"))
			c.s.bounce(st, from, to)
		default:
			return
		}
	}
}

func (c *conn) run() error {
	c.raw.SetReadDeadline(time.Now().Add(c.s.cfg.HandshakeTimeout))
	c.dec = wire.NewDecoder(c.raw, wire.Limits{MaxStanza: c.s.cfg.MaxStanza})
	if err := c.open(); err != nil {
		return err
	}
	tok, err := c.dec.Next()
	if err != nil {
		return err
	}
	if tok.Kind != wire.Stanza || !checkHandshake(tok.Elem, c.id, c.s.cfg.Secrets[c.domain]) {
		return &streamErr{"not-authorized", "wrong handshake"}
	}
	if !c.s.register(c) {
		return &streamErr{"conflict", c.domain + " is already connected"}
	}
	if err := c.write([]byte("<handshake/>")); err != nil {
		return err
	}
	c.s.log.Info("component connected", "domain", c.domain, "remote", c.raw.RemoteAddr().String())
	done := make(chan struct{})
	defer close(done)
	go c.writeLoop(done)
	c.raw.SetReadDeadline(time.Time{})
	dom, _ := jid.New("", c.domain, "")
	for {
		tok, err := c.dec.Next()
		if err != nil {
			return err
		}
		switch tok.Kind {
		case wire.StreamEnd:
			return nil
		case wire.StreamStart:
			return &streamErr{"not-well-formed", "unexpected stream header"}
		}
		st := tok.Elem
		if st.Space != stanza.NSComponent {
			return &streamErr{"invalid-namespace", "stanzas must be in " + stanza.NSComponent}
		}
		switch st.Local() {
		case "message", "presence", "iq":
		default:
			return &streamErr{"unsupported-stanza-type", "unknown element " + st.Local()}
		}
		from, err1 := jid.Parse(st.Attr("from"))
		to, err2 := jid.Parse(st.Attr("to"))
		if err1 != nil || from.Domain() != dom.Domain() {
			return &streamErr{"invalid-from", "from must be at " + c.domain}
		}
		if err2 != nil {
			return &streamErr{"improper-addressing", "a stanza needs a valid to"}
		}
		stanza.FromPeer(st, stanza.NSComponent)
		c.s.cfg.Router.Inject(st, from, to)
	}
}

// open reads the component's stream header and answers it.
func (c *conn) open() error {
	tok, err := c.dec.Next()
	if err != nil {
		return err
	}
	c.id = randomID()
	header := func(from string) error {
		h := wire.New("stream:stream", stanza.NSStream)
		h.SetAttr("xmlns", stanza.NSComponent)
		if from != "" {
			h.SetAttr("from", from)
		}
		h.SetAttr("id", c.id)
		return c.write(h.AppendStart([]byte("<?xml version='1.0'?>")))
	}
	if tok.Kind != wire.StreamStart {
		header("")
		return &streamErr{"not-well-formed", "expected a stream header"}
	}
	h := tok.Elem
	d, err := jid.Parse(h.Attr("to"))
	if err != nil || d.Local() != "" || d.Resource() != "" {
		header("")
		return &streamErr{"host-unknown", "no component is configured for " + h.Attr("to")}
	}
	if _, ok := c.s.cfg.Secrets[d.Domain()]; !ok {
		header("")
		return &streamErr{"host-unknown", "no component is configured for " + d.Domain()}
	}
	c.domain = d.Domain()
	if err := header(c.domain); err != nil {
		return err
	}
	if h.Attr("xmlns") != stanza.NSComponent {
		return &streamErr{"invalid-namespace", "the content namespace must be " + stanza.NSComponent}
	}
	c.s.mu.Lock()
	taken := c.s.active[c.domain] != nil
	c.s.mu.Unlock()
	if taken {
		return &streamErr{"conflict", c.domain + " is already connected"}
	}
	return nil
}

// writeLoop writes queued stanzas until the reader ends or the server stops.
func (c *conn) writeLoop(done chan struct{}) {
	var buf []byte
	for {
		select {
		case st := <-c.queue:
			buf = stanza.AppendForPeer(buf[:0], st)
			// Coalesce what else is queued into one write.
			for more := true; more && len(buf) < 16<<10; {
				select {
				case st := <-c.queue:
					buf = stanza.AppendForPeer(buf, st)
				default:
					more = false
				}
			}
			if err := c.write(buf); err != nil {
				c.raw.Close()
				return
			}
		case <-done:
			return
		case <-c.quit:
			return
		}
	}
}
