package c2s

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net"
	"strings"
	"time"

	"golang.org/x/time/rate"

	"github.com/aldis-im/aldis/core/store"
	"github.com/aldis-im/aldis/xmppcore/accounts"
	"github.com/aldis-im/aldis/xmppcore/jid"
	"github.com/aldis-im/aldis/xmppcore/stanza"
	"github.com/aldis-im/aldis/xmppcore/wire"
)

// bindIQ handles iqs between authentication and bind; it reports whether a
// resource is now bound.
func (c *conn) bindIQ(iq *wire.Element) (bool, error) {
	p := stanza.Payload(iq)
	if iq.Attr("type") != "set" || p == nil || p.Local() != "bind" || p.Space != stanza.NSBind {
		if iq.Attr("type") == "get" || iq.Attr("type") == "set" {
			return false, c.writeEl(stanza.Error(iq, stanza.Cancel, "not-allowed", "bind a resource first"))
		}
		return false, nil
	}
	res := strings.TrimSpace(p.ChildText("resource", ""))
	if res != "" {
		if _, err := c.user.WithResource(res); err != nil {
			return false, c.writeEl(stanza.Error(iq, stanza.Modify, "bad-request", "invalid resource"))
		}
	}
	ctx, cancel := context.WithTimeout(c.srv.ctx, c.srv.cfg.HandshakeTimeout)
	defer cancel()
	// The session must be writable before the router can send to it.
	c.setWritable()
	s := &session{srv: c.srv, user: c.user, c: c}
	b, err := c.srv.cfg.Router.Bind(ctx, c.user, res, s)
	if err != nil {
		c.srv.log.Error("bind", "user", c.user.String(), "err", err)
		c.enqueue(stanza.Error(iq, stanza.Wait, "internal-server-error", "").Append(nil), false)
		return false, &streamErr{"internal-server-error", "could not bind"}
	}
	s.mu.Lock()
	s.binding = b
	s.mu.Unlock()
	c.sess = s
	r := stanza.Result(iq)
	r.RemoveAttr("from")
	r.RemoveAttr("to")
	r.AddChild(wire.New("bind", stanza.NSBind)).AddChild(wire.New("jid", "")).AddText(b.JID().String())
	s.Send(r.Append(nil))
	c.rd.bound()
	c.srv.log.Debug("session bound", "jid", b.JID().String(), "remote", c.ip)
	return true, nil
}

// preAuthIQ handles the iqs allowed before authentication: XEP-0077
// in-band registration when enabled.
func (c *conn) preAuthIQ(iq *wire.Element) error {
	typ := iq.Attr("type")
	if typ != "get" && typ != "set" {
		return nil
	}
	p := stanza.Payload(iq)
	if !c.srv.cfg.Registration || p == nil || p.Space != stanza.NSRegister {
		return &streamErr{"not-authorized", "authenticate first"}
	}
	if c.srv.cfg.RequireTLS && c.tlsState == nil {
		return &streamErr{"policy-violation", "TLS is required before registration"}
	}
	iq.RemoveAttr("to")
	if typ == "get" {
		r := stanza.Result(iq)
		q := r.AddChild(wire.New("query", stanza.NSRegister))
		q.AddChild(wire.New("instructions", "")).AddText("Choose a username and password for use with this service.")
		q.AddChild(wire.New("username", ""))
		q.AddChild(wire.New("password", ""))
		return c.writeEl(r)
	}
	if c.srv.cfg.Limiter.Blocked(c.ip, "") {
		return c.writeEl(stanza.Error(iq, stanza.Wait, "resource-constraint", "too many registrations from this address"))
	}
	user, err := jid.New(p.ChildText("username", ""), c.domain, "")
	if err != nil || user.Local() == "" {
		return c.writeEl(stanza.Error(iq, stanza.Modify, "not-acceptable", "invalid username"))
	}
	err = c.srv.cfg.Accounts.Create(c.srv.ctx, user, p.ChildText("password", ""))
	switch {
	case errors.Is(err, store.ErrExists):
		return c.writeEl(stanza.Error(iq, stanza.Cancel, "conflict", "the username is taken"))
	case errors.Is(err, accounts.ErrWeakPassword):
		return c.writeEl(stanza.Error(iq, stanza.Modify, "not-acceptable", err.Error()))
	case err != nil:
		c.srv.log.Error("register", "user", user.String(), "err", err)
		return c.writeEl(stanza.Error(iq, stanza.Wait, "internal-server-error", ""))
	}
	// Registrations count against the address like failures, so one client
	// cannot create accounts without bound.
	c.srv.cfg.Limiter.Fail(c.ip, "")
	c.srv.log.Info("account registered", "user", user.String(), "remote", c.ip)
	return c.writeEl(stanza.Result(iq))
}

// readLoop moves stanzas from the bound client to the router.
func (c *conn) readLoop() error {
	s := c.sess
	for {
		tok, err := c.dec.Next()
		if err != nil {
			if c.isClosing() {
				return c.closedErr() // the server, the router or a resumption ended the stream
			}
			return err
		}
		switch tok.Kind {
		case wire.StreamEnd:
			return nil
		case wire.StreamStart:
			return &streamErr{"not-well-formed", "unexpected stream header"}
		}
		st := tok.Elem
		switch st.Space {
		case stanza.NSClient:
		case nsSM:
			if err := c.smElement(st); err != nil {
				return err
			}
			continue
		case nsCSI:
			switch st.Local() {
			case "active", "inactive":
				s.setInactive(st.Local() == "inactive")
				continue
			}
			return &streamErr{"unsupported-stanza-type", "unknown element " + st.Local()}
		default:
			return &streamErr{"invalid-namespace", "stanzas must be in jabber:client"}
		}
		route := true
		switch st.Local() {
		case "message":
			c.srv.m.inMessage.Inc()
		case "presence":
			c.srv.m.inPresence.Inc()
		case "iq":
			c.srv.m.inIQ.Inc()
			route = c.checkIQ(st)
		default:
			return &streamErr{"unsupported-stanza-type", "unknown element " + st.Local()}
		}
		if route {
			s.binding.Inbound(st)
		}
		if c.smIn {
			s.handled()
		}
	}
}

// smElement handles an XEP-0198 element after bind.
func (c *conn) smElement(el *wire.Element) error {
	s := c.sess
	switch el.Local() {
	case "enable":
		if s.enable(c, el) {
			c.smIn = true
		}
	case "r":
		if c.smIn {
			s.answer(c)
		}
	case "a":
		if c.smIn {
			return s.acked(el)
		}
	case "resume":
		c.enqueue(smFailed("unexpected-request"), false) // only instead of bind
	default:
		return &streamErr{"unsupported-stanza-type", "unknown element " + el.Local()}
	}
	return nil
}

// checkIQ enforces RFC 6120 §8.2.3 and answers the legacy session iq; it
// reports whether the iq should be routed.
func (c *conn) checkIQ(iq *wire.Element) bool {
	typ := iq.Attr("type")
	switch typ {
	case "get", "set":
		p := stanza.Payload(iq)
		if iq.Attr("id") == "" || p == nil {
			c.sess.Send(stanza.Error(iq, stanza.Modify, "bad-request", "an iq get or set needs an id and exactly one child").Append(nil))
			return false
		}
		if typ == "set" && p.Space == stanza.NSSession && (iq.Attr("to") == "" || iq.Attr("to") == c.domain) {
			r := stanza.Result(iq)
			r.RemoveAttr("to")
			r.RemoveAttr("from")
			c.sess.Send(r.Append(nil))
			return false
		}
		if p.Space == stanza.NSBind {
			c.sess.Send(stanza.Error(iq, stanza.Cancel, "not-allowed", "a resource is already bound").Append(nil))
			return false
		}
	case "result", "error":
		if iq.Attr("id") == "" {
			return false
		}
	default:
		c.sess.Send(stanza.Error(iq, stanza.Modify, "bad-request", "unknown iq type").Append(nil))
		return false
	}
	return true
}

func (c *conn) isClosing() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closing
}

// connReader applies deadlines, the idle ping and the byte rate to reads.
type connReader struct {
	c         net.Conn
	handshake time.Time // deadline until bound; zero afterwards
	idle      time.Duration
	onIdle    func() bool // sends a ping; false when the connection is closing
	pinged    bool
	lim       *rate.Limiter
	ctx       context.Context
}

func (r *connReader) bound() { r.handshake = time.Time{} }

func (r *connReader) Read(p []byte) (int, error) {
	for {
		if !r.handshake.IsZero() {
			r.c.SetReadDeadline(r.handshake)
		} else if r.pinged {
			r.c.SetReadDeadline(time.Now().Add(30 * time.Second))
		} else {
			r.c.SetReadDeadline(time.Now().Add(r.idle))
		}
		n, err := r.c.Read(p)
		if n > 0 {
			r.pinged = false
			r.throttle(n)
			return n, nil
		}
		var ne net.Error
		if err != nil && errors.As(err, &ne) && ne.Timeout() && r.handshake.IsZero() && !r.pinged && r.onIdle != nil && r.onIdle() {
			r.pinged = true
			continue
		}
		return n, err
	}
}

// throttle slows reading so a connection cannot exceed its byte rate; TCP
// flow control then pushes back on the client.
func (r *connReader) throttle(n int) {
	if r.lim == nil {
		return
	}
	res := r.lim.ReserveN(time.Now(), min(n, r.lim.Burst()))
	if d := res.Delay(); d > 0 {
		t := time.NewTimer(d)
		select {
		case <-t.C:
		case <-r.ctx.Done():
			t.Stop()
		}
	}
}

func randomID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
