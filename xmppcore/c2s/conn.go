package c2s

import (
	"crypto/tls"
	"encoding/base64"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/aldis-im/aldis/xmppcore/jid"
	"github.com/aldis-im/aldis/xmppcore/sasl"
	"github.com/aldis-im/aldis/xmppcore/stanza"
	"github.com/aldis-im/aldis/xmppcore/wire"
)

// maxAuthAttempts is how many failed SASL exchanges one stream may make
// before it is closed (RFC 6120 §6.4.5 suggests two to five). Five lets a
// client that tries every SCRAM variant with a channel binding we do not
// offer (tls-unique under TLS 1.3) still reach PLAIN.
const maxAuthAttempts = 5

// streamErr is a stream error to send before closing.
type streamErr struct{ cond, text string }

func (e *streamErr) Error() string { return e.cond + ": " + e.text }

var (
	// errBroken ends the reader of a connection whose socket failed.
	errBroken = errors.New("c2s: connection broken")
	// errGone refuses a resumption of a session that ended meanwhile.
	errGone = errors.New("c2s: session ended")
)

// conn is one client connection. The reader goroutine (serve) negotiates the
// stream, then reads stanzas; after bind a writer goroutine drains the queue.
// The bound session (sess) is what the router sees; a resumed session
// moves from one conn to the next (XEP-0198).
type conn struct {
	srv       *Server
	raw       net.Conn
	sock      *sock    // raw as written to: never blocking once bound
	c         net.Conn // sock, or the TLS connection over it
	w         *writer  // writes the queue when no flush goroutine runs
	tlsState  *tls.ConnectionState
	directTLS bool
	rd        *connReader
	dec       *wire.Decoder
	ip        string

	user     jid.JID  // authenticated bare JID
	domain   string   // the domain the client connected to: the stream's to
	sess     *session // set by bind or resumption, on the reader goroutine
	smIn     bool     // stream management enabled here: count the client's stanzas
	streamID string
	lang     string
	stopped  chan struct{} // closed when the reader has stopped reading

	mu       sync.Mutex
	queue    [][]byte
	spare    [][]byte
	closing  bool
	broken   bool          // the socket failed
	final    []byte        // stream error (or close tag) written last
	writable bool          // bound: stanzas may be queued and written
	writing  bool          // the writer has the connection, or a flush goroutine runs
	wdl      time.Time     // the write deadline set last; only the running flush uses it
	done     chan struct{} // closed when the final bytes are written
	doneOnce sync.Once
}

func newConn(s *Server, c net.Conn, directTLS bool) *conn {
	ip, _, _ := net.SplitHostPort(c.RemoteAddr().String())
	sk := newSock(c)
	cn := &conn{srv: s, raw: c, sock: sk, c: sk, w: s.pickWriter(), directTLS: directTLS, ip: ip,
		done: make(chan struct{}), stopped: make(chan struct{})}
	sk.onPending = cn.pendingWrite
	cn.rd = &connReader{c: c, handshake: time.Now().Add(s.cfg.HandshakeTimeout), idle: s.cfg.IdleTimeout, onIdle: cn.idlePing}
	if s.cfg.RateBytes > 0 {
		burst := max(s.cfg.RateBurst, s.cfg.RateBytes, s.cfg.MaxStanza)
		cn.rd.lim = rate.NewLimiter(rate.Limit(s.cfg.RateBytes), burst)
		cn.rd.ctx = s.ctx
	}
	return cn
}

// serve negotiates the stream, then hands the bound session to a fresh
// goroutine: TLS and SCRAM grew this one's stack, and an idle session
// should not keep that memory.
func (c *conn) serve() {
	if err := c.protect(c.negotiate); err != nil {
		close(c.stopped)
		c.finish(err)
		return
	}
	go func() {
		err := c.protect(c.readLoop)
		close(c.stopped)
		c.finish(err)
	}()
}

// protect runs f, turning a panic into an error so one connection's bug
// cannot take the server down.
func (c *conn) protect(f func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			c.srv.log.Error("c2s connection panic", "panic", r, "remote", c.ip)
			err = &streamErr{"internal-server-error", ""}
		}
	}()
	return f()
}

// finish ends the stream according to err, and the session with it
// unless the connection was lost and the client may resume the session.
func (c *conn) finish(err error) {
	defer c.srv.forget(c)
	var se *streamErr
	var we *wire.Error
	var he *handledCountErr
	var final []byte
	lost := false // the transport failed, rather than either side ending the stream
	switch {
	case errors.As(err, &we):
		c.srv.m.streamErrors.Inc()
		final = stanza.StreamError(we.Condition, we.Text)
	case errors.As(err, &se):
		c.srv.m.streamErrors.Inc()
		final = stanza.StreamError(se.cond, se.text)
	case errors.As(err, &he):
		c.srv.m.streamErrors.Inc()
		final = he.bytes()
	case err == nil:
		final = []byte("</stream:stream>")
	case errors.Is(err, io.EOF):
		// Closed without </stream:stream>: XEP-0198 lets the client resume.
		lost = true
		final = []byte("</stream:stream>")
	default:
		lost = true
		c.srv.log.Debug("c2s connection ended", "remote", c.ip, "err", err)
	}
	if c.sess != nil {
		c.sess.leave(c, lost)
	}
	c.closeWith(final)
}

// closeWith ends the connection: the queue drains, final is written, then
// the socket closes.
func (c *conn) closeWith(final []byte) {
	c.mu.Lock()
	if !c.closing {
		c.closing = true
		c.final = final
	}
	writable := c.writable
	start := c.kick()
	final = c.final
	c.mu.Unlock()
	if writable {
		if start {
			go c.flush()
		}
		select {
		case <-c.done:
		case <-time.After(5 * time.Second):
		}
	} else if final != nil {
		c.c.SetWriteDeadline(time.Now().Add(5 * time.Second))
		c.c.Write(final)
	}
	c.raw.Close()
}

// setWritable lets stanzas be queued and written, once the stream is
// bound: from now on writers and flush goroutines write to the socket,
// and never block but in flush (sock).
func (c *conn) setWritable() {
	c.sock.buffer()
	c.mu.Lock()
	c.writable = true
	c.mu.Unlock()
}

// enqueueResult says what became of bytes given to enqueue.
type enqueueResult uint8

const (
	queued     enqueueResult = iota
	closed                   // the connection is closing: dropped
	overflowed               // the queue is full: dropped, and the connection closes
)

// enqueue queues bytes for the client; force skips the queue bound, for
// bytes bounded elsewhere.
func (c *conn) enqueue(b []byte, force bool) enqueueResult {
	c.mu.Lock()
	if c.closing {
		c.mu.Unlock()
		return closed
	}
	if len(c.queue) >= c.srv.cfg.SendQueue && !force {
		// A client that does not read must not hold the server's memory.
		c.closing = true
		c.final = stanza.StreamError("policy-violation", "too many stanzas waiting for this client")
		start := c.kick()
		c.mu.Unlock()
		c.srv.m.overflows.Inc()
		if start {
			go c.flush()
		}
		c.raw.SetReadDeadline(time.Now())
		return overflowed
	}
	c.queue = append(c.queue, b)
	start := c.kick()
	c.mu.Unlock()
	c.srv.queued.Add(1)
	if start {
		c.w.add(c)
	}
	return queued
}

// Close ends the connection with a stream error.
func (c *conn) Close(condition, text string) {
	c.mu.Lock()
	if !c.closing {
		c.closing = true
		c.final = stanza.StreamError(condition, text)
	}
	start := c.kick()
	c.mu.Unlock()
	if start {
		go c.flush()
	}
	// Unblock the reader; it unbinds and finishes.
	c.raw.SetReadDeadline(time.Now())
}

// kick reports whether the caller must hand the connection to its writer
// or start a flush goroutine: neither has it, and the session may be
// written to. Called with c.mu held.
func (c *conn) kick() bool {
	if !c.writable || c.writing {
		return false
	}
	c.writing = true
	return true
}

// flushChunk is how many bytes of queued stanzas go into one socket write.
const flushChunk = 16 << 10

// flush drains the send queue into the socket and exits when it is empty:
// an idle session has no writer goroutine and holds no write buffer. After
// closing it writes the final bytes and signals done. It is the one place
// that waits for the client to read: it also writes out what the socket
// did not take from the connection's writer or from the TLS layer (sock).
func (c *conn) flush() {
	bp := c.srv.bufs.Get().(*[]byte)
	buf := (*bp)[:0]
	defer func() {
		*bp = buf[:0]
		c.srv.bufs.Put(bp)
	}()
	for {
		c.mu.Lock()
		q := c.queue
		if len(q) == 0 && !c.sock.hasPending() {
			closing, final := c.closing, c.final
			if !closing {
				c.writing = false
			}
			c.mu.Unlock()
			if closing {
				// writing stays true: no flush starts after the final bytes.
				if final != nil {
					c.c.SetWriteDeadline(time.Now().Add(5 * time.Second))
					c.send(final)
				}
				c.doneOnce.Do(func() { close(c.done) })
			}
			return
		}
		// Swap only a non-empty queue: swapping an empty one would leave
		// queue and spare sharing one array, and Send would overwrite
		// stanzas still being written.
		if len(q) > 0 {
			c.queue = c.spare[:0]
		}
		c.mu.Unlock()

		// Moving the deadline costs a timer update per write; keeping it
		// between half the idle timeout and the whole of it is as good.
		if now := time.Now(); c.wdl.Sub(now) < c.srv.cfg.IdleTimeout/2 {
			c.wdl = now.Add(c.srv.cfg.IdleTimeout)
			c.c.SetWriteDeadline(c.wdl)
		}
		// First what the socket did not take before: it was written first.
		err := c.sock.drain()
		for i, b := range q {
			if err != nil {
				break
			}
			if len(buf)+len(b) > flushChunk && len(buf) > 0 {
				if err = c.send(buf); err != nil {
					break
				}
				buf = buf[:0]
			}
			if len(b) >= flushChunk {
				err = c.send(b)
			} else {
				buf = append(buf, b...)
			}
			q[i] = nil
		}
		if err == nil && len(buf) > 0 {
			err = c.send(buf)
			buf = buf[:0]
		}
		if err != nil {
			c.fail()
			return
		}
		if len(q) == 0 {
			continue
		}
		c.srv.queued.Add(-int64(len(q)))
		c.srv.m.out.AddInt64(int64(len(q)))
		c.mu.Lock()
		c.spare = q[:0]
		c.mu.Unlock()
	}
}

// send writes b and waits until the socket has taken it, within the
// write deadline. Only flush calls it.
func (c *conn) send(b []byte) error {
	if _, err := c.c.Write(b); err != nil {
		return err
	}
	return c.sock.drain()
}

// writeTurn writes what c has queued, on its writer's goroutine, as far as
// the socket takes it at once. Bytes the socket did not take, more than
// one write carries and the final bytes of a closing stream are left to a
// flush goroutine of c's own; stanzas queued meanwhile, to the writer's
// next round. c.writing is set on entry.
func (c *conn) writeTurn() {
	c.mu.Lock()
	q := c.queue
	size := 0
	for _, b := range q {
		size += len(b)
	}
	if len(q) == 0 || size > flushChunk || c.closing || c.sock.rc == nil {
		c.mu.Unlock()
		go c.flush()
		return
	}
	c.queue = c.spare[:0]
	c.mu.Unlock()

	var err error
	if len(q) == 1 {
		_, err = c.c.Write(q[0])
	} else {
		bp := c.srv.bufs.Get().(*[]byte)
		buf := (*bp)[:0]
		for _, b := range q {
			buf = append(buf, b...)
		}
		_, err = c.c.Write(buf)
		*bp = buf[:0]
		c.srv.bufs.Put(bp)
	}
	clear(q)
	if err != nil {
		c.fail()
		return
	}
	c.srv.queued.Add(-int64(len(q)))
	c.srv.m.out.AddInt64(int64(len(q)))
	c.mu.Lock()
	c.spare = q[:0]
	switch {
	case c.closing || c.sock.hasPending():
		c.mu.Unlock()
		go c.flush()
	case len(c.queue) > 0:
		// More came meanwhile: the writer's next round takes it.
		c.mu.Unlock()
		c.w.add(c)
	default:
		c.writing = false
		c.mu.Unlock()
	}
}

// pendingWrite is called when the socket did not take all that was
// written to it (sock.onPending): the writer or flush goroutine that has
// the connection writes the rest, and otherwise (a TLS key update the
// reader answered) a flush goroutine starts for it.
func (c *conn) pendingWrite() {
	c.mu.Lock()
	start := c.kick()
	c.mu.Unlock()
	if start {
		go c.flush()
	}
}

// fail drops a connection whose socket no longer takes writes.
func (c *conn) fail() {
	c.mu.Lock()
	c.closing = true
	c.broken = true
	n := len(c.queue)
	c.queue = nil
	c.mu.Unlock()
	c.srv.queued.Add(-int64(n))
	c.raw.Close()
	c.doneOnce.Do(func() { close(c.done) })
}

// write sends bytes synchronously during negotiation, before the writer runs.
func (c *conn) write(b []byte) error {
	c.c.SetWriteDeadline(time.Now().Add(c.srv.cfg.HandshakeTimeout))
	_, err := c.c.Write(b)
	return err
}

func (c *conn) writeEl(e *wire.Element) error { return c.write(e.Append(nil)) }

// replace ends a connection whose session a resumption takes over: what
// it still had queued is retransmitted on the new stream instead.
func (c *conn) replace() {
	c.mu.Lock()
	if !c.closing {
		c.closing = true
		c.final = stanza.StreamError("conflict", "replaced by a resumed stream")
	}
	n := len(c.queue)
	c.queue = nil
	start := c.kick()
	c.mu.Unlock()
	c.srv.queued.Add(-int64(n))
	if start {
		go c.flush()
	}
	c.raw.SetReadDeadline(time.Now())
}

// closedErr is what the reader returns once the connection is closing:
// nil when the server ended the stream, errBroken when the socket failed.
func (c *conn) closedErr() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.broken {
		return errBroken
	}
	return nil
}

// idlePing asks an idle client to prove it is there (XEP-0199).
func (c *conn) idlePing() bool {
	if c.sess == nil || c.isClosing() {
		return false
	}
	iq := wire.New("iq", "")
	iq.SetAttr("type", "get")
	iq.SetAttr("id", "idle-ping")
	iq.SetAttr("from", c.domain)
	iq.SetAttr("to", c.sess.binding.JID().String())
	iq.AddChild(wire.New("ping", stanza.NSPing))
	return c.sess.Send(iq.Append(nil))
}

// negotiate runs the stream from the first header to a bound resource.
func (c *conn) negotiate() error {
	if c.directTLS {
		if err := c.startTLS(); err != nil {
			return err
		}
	}
	c.dec = wire.NewDecoder(c.rd, wire.Limits{MaxStanza: c.srv.cfg.MaxStanza})
	failures := 0
	for {
		if err := c.openStream(); err != nil {
			return err
		}
	features:
		for {
			tok, err := c.dec.Next()
			if err != nil {
				return err
			}
			if tok.Kind == wire.StreamEnd {
				return io.EOF
			}
			el := tok.Elem
			switch {
			case el.Local() == "starttls" && el.Space == stanza.NSTLS:
				if c.tlsState != nil || c.srv.cfg.TLS == nil || c.user != (jid.JID{}) {
					return &streamErr{"policy-violation", "STARTTLS is not available now"}
				}
				if c.dec.PendingData() {
					// Bytes sent before <proceed/> could be injected plaintext.
					return &streamErr{"policy-violation", "data pipelined after STARTTLS"}
				}
				if err := c.write([]byte("<proceed xmlns='" + stanza.NSTLS + "'/>")); err != nil {
					return err
				}
				if err := c.startTLS(); err != nil {
					return err
				}
				c.dec.Reset(c.rd)
				break features
			case el.Local() == "auth" && el.Space == stanza.NSSASL:
				if c.user != (jid.JID{}) {
					return &streamErr{"policy-violation", "already authenticated"}
				}
				if c.srv.cfg.RequireTLS && c.tlsState == nil {
					return &streamErr{"policy-violation", "TLS is required before authentication"}
				}
				ok, err := c.authenticate(el)
				if err != nil {
					return err
				}
				if ok {
					c.dec.Reset(c.rd)
					break features
				}
				failures++
				if failures >= maxAuthAttempts {
					return &streamErr{"policy-violation", "too many failed authentication attempts"}
				}
			case el.Local() == "iq" && c.user == (jid.JID{}):
				if err := c.preAuthIQ(el); err != nil {
					return err
				}
			case el.Local() == "iq" && c.user != (jid.JID{}):
				done, err := c.bindIQ(el)
				if err != nil {
					return err
				}
				if done {
					return nil
				}
			case el.Space == nsSM && c.user != (jid.JID{}):
				switch el.Local() {
				case "resume":
					done, err := c.resume(el)
					if err != nil {
						return err
					}
					if done {
						return nil
					}
				case "enable":
					// XEP-0198 §3: stream management is enabled after bind.
					if err := c.write(smFailed("unexpected-request")); err != nil {
						return err
					}
				}
			case el.Space == nsCSI && c.user != (jid.JID{}):
				// A state before bind has no session to apply to; a new
				// session starts active.
			default:
				if c.user == (jid.JID{}) {
					return &streamErr{"not-authorized", "authenticate first"}
				}
				return &streamErr{"not-authorized", "bind a resource first"}
			}
		}
	}
}

func (c *conn) startTLS() error {
	if c.srv.cfg.TLS == nil {
		return &streamErr{"policy-violation", "TLS is not configured"}
	}
	t := tls.Server(c.sock, c.srv.cfg.TLS)
	// A socket deadline bounds the handshake without a context per connection.
	c.raw.SetDeadline(c.rd.handshake)
	if err := t.Handshake(); err != nil {
		return err // no stream to send an error on
	}
	st := t.ConnectionState()
	c.tlsState = &st
	c.c = t
	c.rd.c = t
	return nil
}

// openStream reads the client's stream header and answers with ours and the
// features for the current stage.
func (c *conn) openStream() error {
	tok, err := c.dec.Next()
	if err != nil {
		var we *wire.Error
		if errors.As(err, &we) {
			c.writeHeader("")
		}
		return err
	}
	if tok.Kind != wire.StreamStart {
		c.writeHeader("")
		return &streamErr{"not-well-formed", "expected a stream header"}
	}
	h := tok.Elem
	c.streamID = randomID()
	// The domain is the stream's to (virtual hosts); a stream restarted
	// after TLS or authentication must keep it.
	domain, known := c.srv.cfg.Domain, true
	if to := h.Attr("to"); to != "" {
		d, err := jid.Parse(to)
		known = err == nil && c.srv.serves(d.Domain()) && d.Local() == "" && d.Resource() == "" &&
			(c.domain == "" || d.Domain() == c.domain)
		if known {
			domain = d.Domain()
		}
	}
	if c.domain == "" {
		c.domain = domain
	}
	if err := c.writeHeader(h.Attr("from")); err != nil {
		return err
	}
	if ns := h.Attr("xmlns"); ns != stanza.NSClient {
		return &streamErr{"invalid-namespace", "the content namespace must be jabber:client"}
	}
	if v := h.Attr("version"); v == "" || !strings.HasPrefix(v, "1.") {
		return &streamErr{"unsupported-version", "XMPP 1.0 is required"}
	}
	if !known {
		return &streamErr{"host-unknown", "this server does not serve " + h.Attr("to")}
	}
	if l := h.Attr("xml:lang"); l != "" && len(l) < 36 {
		c.lang = l
	}
	return c.writeEl(c.features())
}

func (c *conn) writeHeader(to string) error {
	h := wire.New("stream:stream", stanza.NSStream)
	h.SetAttr("xmlns", stanza.NSClient)
	h.SetAttr("id", c.streamID)
	h.SetAttr("from", c.domain)
	if to != "" {
		if j, err := jid.Parse(to); err == nil {
			h.SetAttr("to", j.String())
		}
	}
	h.SetAttr("version", "1.0")
	h.SetAttr("xml:lang", "en")
	return c.write(h.AppendStart([]byte("<?xml version='1.0'?>")))
}

func (c *conn) saslConfig() sasl.Config {
	return sasl.Config{
		TLS:        c.tlsState,
		AllowPlain: c.srv.cfg.AllowPlainWithoutTLS,
		Lookup:     c.srv.cfg.Accounts.Lookup(c.domain),
	}
}

func (c *conn) features() *wire.Element {
	f := wire.New("stream:features", "")
	switch {
	case c.user == (jid.JID{}):
		if c.tlsState == nil && c.srv.cfg.TLS != nil {
			st := f.AddChild(wire.New("starttls", stanza.NSTLS))
			if c.srv.cfg.RequireTLS {
				st.AddChild(wire.New("required", ""))
				return f
			}
		}
		m := f.AddChild(wire.New("mechanisms", stanza.NSSASL))
		for _, name := range sasl.Mechanisms(c.saslConfig()) {
			m.AddChild(wire.New("mechanism", "")).AddText(name)
		}
		if cb := sasl.ChannelBindingTypes(c.saslConfig()); len(cb) > 0 {
			x := f.AddChild(wire.New("sasl-channel-binding", stanza.NSSASLCB))
			for _, t := range cb {
				x.AddChild(wire.New("channel-binding", "")).SetAttr("type", t)
			}
		}
		if c.srv.cfg.Registration {
			f.AddChild(wire.New("register", stanza.NSRegFeat))
		}
	default:
		f.AddChild(wire.New("bind", stanza.NSBind))
		f.AddChild(wire.New("session", stanza.NSSession)).AddChild(wire.New("optional", ""))
		f.AddChild(wire.New("ver", stanza.NSRosterVer))
		f.AddChild(wire.New("sm", nsSM))
		f.AddChild(wire.New("csi", nsCSI))
		// The server's capabilities (XEP-0115 §6.3), so clients can skip
		// asking for disco#info when they know this version.
		node, ver := c.srv.cfg.Router.ServerCaps()
		cp := f.AddChild(wire.New("c", "http://jabber.org/protocol/caps"))
		cp.SetAttr("hash", "sha-1")
		cp.SetAttr("node", node)
		cp.SetAttr("ver", ver)
	}
	return f
}

func saslFailure(cond, text string) *wire.Element {
	f := wire.New("failure", stanza.NSSASL)
	f.AddChild(wire.New(cond, ""))
	if text != "" {
		f.AddChild(wire.New("text", "")).AddText(text)
	}
	return f
}

// authenticate runs one SASL exchange; it reports success, or an error that
// ends the stream.
func (c *conn) authenticate(auth *wire.Element) (bool, error) {
	lim := c.srv.cfg.Limiter
	if lim.Blocked(c.ip, "") {
		c.srv.m.authFail.Inc()
		return false, c.writeEl(saslFailure("temporary-auth-failure", "too many failed attempts; try again later"))
	}
	srv, err := sasl.NewServer(auth.Attr("mechanism"), c.saslConfig())
	if err != nil {
		return false, c.saslFail(err, "")
	}
	in, err := decode64(auth.Text())
	if err != nil {
		return false, c.saslFail(err, "")
	}
	for {
		out, done, err := srv.Step(c.srv.ctx, in)
		if err != nil {
			return false, c.saslFail(err, srv.Attempted())
		}
		if done {
			user, err := jid.New(srv.Username(), c.domain, "")
			if err != nil {
				return false, c.saslFail(&sasl.Failure{Condition: "not-authorized"}, "")
			}
			if az := srv.Authzid(); az != "" && az != user.String() {
				return false, c.saslFail(&sasl.Failure{Condition: "invalid-authzid"}, "")
			}
			if lim.Blocked("", user.String()) {
				// Refuse even a right password while the account is under attack.
				return false, c.saslFail(&sasl.Failure{Condition: "temporary-auth-failure", Text: "too many failed attempts; try again later"}, user.String())
			}
			succ := wire.New("success", stanza.NSSASL)
			if len(out) > 0 {
				succ.AddText(base64.StdEncoding.EncodeToString(out))
			}
			if err := c.writeEl(succ); err != nil {
				return false, err
			}
			c.user = user
			c.srv.m.authOK.Inc()
			return true, nil
		}
		ch := wire.New("challenge", stanza.NSSASL)
		ch.AddText(base64.StdEncoding.EncodeToString(out))
		if err := c.writeEl(ch); err != nil {
			return false, err
		}
		tok, err := c.dec.Next()
		if err != nil {
			return false, err
		}
		if tok.Kind != wire.Stanza {
			return false, io.EOF
		}
		switch r := tok.Elem; {
		case r.Local() == "abort" && r.Space == stanza.NSSASL:
			return false, c.saslFail(&sasl.Failure{Condition: "aborted"}, "")
		case r.Local() == "response" && r.Space == stanza.NSSASL:
			if in, err = decode64(r.Text()); err != nil {
				return false, c.saslFail(err, srv.Attempted())
			}
		default:
			return false, &streamErr{"not-authorized", "expected a SASL response"}
		}
	}
}

// saslFail sends the failure; the attempt counts against the IP and account.
func (c *conn) saslFail(err error, username string) error {
	var f *sasl.Failure
	if !errors.As(err, &f) {
		f = &sasl.Failure{Condition: "malformed-request"}
	}
	acct := ""
	if username != "" {
		if u, err := jid.New(username, c.domain, ""); err == nil {
			acct = u.String()
		}
	}
	// Only password guesses count against the IP and account.
	if f.Condition != "aborted" && f.Condition != "invalid-mechanism" && !errors.Is(f, sasl.ErrChannelBinding) {
		c.srv.cfg.Limiter.Fail(c.ip, acct)
	}
	c.srv.m.authFail.Inc()
	c.srv.log.Info("authentication failed", "remote", c.ip, "account", acct, "condition", f.Condition)
	return c.writeEl(saslFailure(f.Condition, f.Text))
}

func decode64(s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, nil
	}
	if s == "=" {
		return []byte{}, nil
	}
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return nil, &sasl.Failure{Condition: "incorrect-encoding"}
	}
	return b, nil
}
