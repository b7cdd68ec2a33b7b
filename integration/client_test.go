package integration

import (
	"context"
	"crypto/tls"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"mellium.im/sasl"
	"mellium.im/xmlstream"
	"mellium.im/xmpp"
	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/stream"
)

// Namespaces the tests look for.
const (
	nsClient   = "jabber:client"
	nsBind     = "urn:ietf:params:xml:ns:xmpp-bind"
	nsStanzas  = "urn:ietf:params:xml:ns:xmpp-stanzas"
	nsStreams  = "urn:ietf:params:xml:ns:xmpp-streams"
	nsStream   = "http://etherx.jabber.org/streams"
	nsRoster   = "jabber:iq:roster"
	nsDelay    = "urn:xmpp:delay"
	nsBlocking = "urn:xmpp:blocking"
)

const pingPayload = "<ping xmlns='urn:xmpp:ping'/>"

// waitTimeout bounds every wait for a stanza the server should send.
const waitTimeout = 10 * time.Second

// elem is a received XML element, kept whole so tests can look anywhere in it.
type elem struct {
	XMLName  xml.Name
	Attrs    []xml.Attr `xml:",any,attr"`
	Children []*elem    `xml:",any"`
	Text     string     `xml:",chardata"`
}

// Attr returns the value of the unqualified attribute name.
func (e *elem) Attr(name string) string {
	for _, a := range e.Attrs {
		if a.Name.Local == name && a.Name.Space == "" {
			return a.Value
		}
	}
	return ""
}

// Child returns the first child called local in namespace ns ("" matches
// any namespace), or nil.
func (e *elem) Child(ns, local string) *elem {
	if e == nil {
		return nil
	}
	for _, c := range e.Children {
		if c.XMLName.Local == local && (ns == "" || c.XMLName.Space == ns) {
			return c
		}
	}
	return nil
}

// Path follows Child through local names, ignoring namespaces.
func (e *elem) Path(locals ...string) *elem {
	for _, l := range locals {
		e = e.Child("", l)
	}
	return e
}

// ChildText is the text of Child(ns, local), or "".
func (e *elem) ChildText(ns, local string) string {
	if c := e.Child(ns, local); c != nil {
		return c.Text
	}
	return ""
}

// ErrorCondition is the defined condition of a stanza error, or "".
func (e *elem) ErrorCondition() string {
	er := e.Child("", "error")
	if er == nil {
		return ""
	}
	for _, c := range er.Children {
		if c.XMLName.Space == nsStanzas && c.XMLName.Local != "text" {
			return c.XMLName.Local
		}
	}
	return ""
}

func (e *elem) String() string {
	if e == nil {
		return "<nil>"
	}
	// encoding/xml writes the namespace from XMLName; a kept xmlns
	// attribute would print it twice.
	var strip func(*elem) *elem
	strip = func(e *elem) *elem {
		c := &elem{XMLName: e.XMLName, Text: e.Text}
		for _, a := range e.Attrs {
			if a.Name.Local != "xmlns" && a.Name.Space != "xmlns" {
				c.Attrs = append(c.Attrs, a)
			}
		}
		for _, ch := range e.Children {
			c.Children = append(c.Children, strip(ch))
		}
		return c
	}
	b, err := xml.Marshal(strip(e))
	if err != nil {
		return fmt.Sprintf("%+v", *e)
	}
	return string(b)
}

// loginOpts selects how a client connects; the zero value is STARTTLS with
// SCRAM-SHA-256 and a resource chosen by the server.
type loginOpts struct {
	Mech      sasl.Mechanism
	DirectTLS bool   // XEP-0368 port instead of STARTTLS
	Resource  string // requested resource; "" lets the server choose
	LocalIP   string // source address (any 127/8 address works on loopback)
}

// client is a logged-in mellium session whose incoming stanzas collect in an
// inbox that tests wait on. Its methods report failures to t; a subtest
// uses the session through With(t).
type client struct {
	t *testing.T
	*session
}

type session struct {
	name string
	s    *xmpp.Session
	JID  jid.JID     // the bound full JID
	wire *syncBuffer // everything sent and received, for failure messages
	// cancel ends the negotiation context (see connect).
	cancel context.CancelFunc

	mu    sync.Mutex
	inbox []*elem
	wake  chan struct{} // signalled on every arrival and at the end
	done  chan struct{} // closed when Serve returns
	err   error         // what Serve returned
}

// With returns the same session reporting to t (t.Fatal must be called
// from t's own goroutine).
func (c *client) With(t *testing.T) *client { return &client{t: t, session: c.session} }

var idSeq atomic.Int64

func nextID(prefix string) string { return fmt.Sprintf("%s-%d", prefix, idSeq.Add(1)) }

// connect dials the server and negotiates TLS, SASL and bind with mellium.
// The session is dropped when the test ends.
func (s *server) connect(t *testing.T, user, password string, o loginOpts) (*client, error) {
	// mellium.im/xmpp v0.23.0 races here: when the context is done by the
	// time negotiation returns, a leftover goroutine may still set the
	// connection's deadline into the past, failing the next read or write.
	// So this context stays live until the session is dropped.
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	ok := false
	defer func() {
		if !ok {
			cancel()
		}
	}()
	if o.Mech.Name == "" {
		o.Mech = sasl.ScramSha256
	}
	d := &net.Dialer{Timeout: 10 * time.Second}
	if o.LocalIP != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(o.LocalIP)}
	}
	// user is a localpart of the server's domain, or a bare JID of one of
	// its virtual hosts.
	addr := s.JID(user)
	if strings.Contains(user, "@") {
		addr = user
	}
	origin, err := jid.Parse(addr)
	if err != nil {
		return nil, err
	}
	// The server's certificate is self-signed: tests check behaviour, not PKI.
	tlsCfg := &tls.Config{ServerName: origin.Domain().String(), InsecureSkipVerify: true}
	var (
		conn     net.Conn
		features []xmpp.StreamFeature
	)
	if o.DirectTLS {
		cfg := tlsCfg.Clone()
		cfg.NextProtos = []string{"xmpp-client"}
		conn, err = (&tls.Dialer{NetDialer: d, Config: cfg}).DialContext(ctx, "tcp", s.TLSAddr)
	} else {
		conn, err = d.DialContext(ctx, "tcp", s.Addr)
		features = append(features, xmpp.StartTLS(tlsCfg))
	}
	if err != nil {
		return nil, err
	}
	features = append(features, xmpp.SASL("", password, o.Mech), bindFeature(o.Resource))
	wire := &syncBuffer{}
	sess, err := xmpp.NewSession(ctx, origin.Domain(), origin, conn, 0,
		xmpp.NewNegotiator(func(*xmpp.Session, *xmpp.StreamConfig) xmpp.StreamConfig {
			return xmpp.StreamConfig{Features: features, TeeIn: tagged{wire, "\n<< "}, TeeOut: tagged{wire, "\n>> "}}
		}))
	if err != nil {
		conn.Close()
		return nil, &loginError{err: err, wire: wire.String()}
	}
	ok = true
	c := &client{t: t, session: &session{name: user, s: sess, JID: sess.LocalAddr(), wire: wire,
		cancel: cancel, wake: make(chan struct{}, 1), done: make(chan struct{})}}
	go func() {
		err := sess.Serve(xmpp.HandlerFunc(c.handle))
		c.mu.Lock()
		c.err = err
		c.mu.Unlock()
		close(c.done)
		c.signal()
	}()
	t.Cleanup(c.drop)
	return c, nil
}

// login is connect that fails the test on error and closes the session
// when the test ends.
func (s *server) login(t *testing.T, user, password string, opts ...loginOpts) *client {
	t.Helper()
	var o loginOpts
	if len(opts) > 0 {
		o = opts[0]
	}
	c, err := s.connect(t, user, password, o)
	if err != nil {
		t.Fatalf("login as %s (mechanism %s, direct TLS %t, resource %q): %v", user, o.Mech.Name, o.DirectTLS, o.Resource, err)
	}
	return c
}

// online logs in, fetches the roster (to get pushes) and sends initial
// presence, as an IM client does.
func online(t *testing.T, srv *server, user, password string, o loginOpts) *client {
	t.Helper()
	c := srv.login(t, user, password, o)
	c.IQResult("get", "", "<query xmlns='jabber:iq:roster'/>")
	c.Send("<presence/>")
	// The server reflects initial presence to the sender (RFC 6121 §4.2.2).
	c.Expect("own initial presence", isPresence("", c.JID.String()))
	return c
}

// handle runs on mellium's Serve goroutine for every incoming stanza.
func (c *client) handle(t xmlstream.TokenReadEncoder, start *xml.StartElement) error {
	e := new(elem)
	// The decoder must see the start element, which Serve already consumed.
	if err := xml.NewTokenDecoder(xmlstream.MultiReader(xmlstream.Token(*start), t)).Decode(e); err != nil {
		return err
	}
	// A well-behaved client acknowledges roster and blocklist pushes
	// (RFC 6121 §2.1.6); everything else unanswered gets mellium's default
	// service-unavailable.
	if e.XMLName.Local == "iq" && e.Attr("type") == "set" && e.Attr("from") == "" &&
		(e.Child(nsRoster, "query") != nil || e.Child(nsBlocking, "block") != nil || e.Child(nsBlocking, "unblock") != nil) {
		res := xml.StartElement{Name: xml.Name{Local: "iq"}, Attr: []xml.Attr{
			{Name: xml.Name{Local: "type"}, Value: "result"},
			{Name: xml.Name{Local: "id"}, Value: e.Attr("id")},
		}}
		if err := t.EncodeToken(res); err != nil {
			return err
		}
		if err := t.EncodeToken(res.End()); err != nil {
			return err
		}
	}
	c.mu.Lock()
	c.inbox = append(c.inbox, e)
	c.mu.Unlock()
	c.signal()
	return nil
}

func (c *client) signal() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// Send writes one element given as XML text; stanzas without a namespace
// are in jabber:client.
func (c *client) Send(raw string) {
	c.t.Helper()
	// A deadline on the connection rather than a context: mellium's
	// per-send context watcher can push the deadline of the *next* write
	// into the past (the same race as in connect).
	conn := c.s.Conn()
	conn.SetWriteDeadline(time.Now().Add(waitTimeout))
	// Cleared afterwards, or mellium's own later writes (its automatic iq
	// replies) would fail once it passed.
	defer conn.SetWriteDeadline(time.Time{})
	if err := c.s.Send(context.Background(), xml.NewDecoder(strings.NewReader(raw))); err != nil {
		c.t.Fatalf("%s: send %s: %v", c.name, raw, err)
	}
}

// WriteRaw writes bytes to the stream as they are, bypassing mellium's
// encoder (which would fix them up).
func (c *client) WriteRaw(raw string) {
	c.t.Helper()
	w := c.s.TokenWriter() // holds the output lock so writes don't interleave
	defer w.Close()
	conn := c.s.Conn()
	conn.SetWriteDeadline(time.Now().Add(waitTimeout))
	defer conn.SetWriteDeadline(time.Time{})
	if _, err := io.WriteString(conn, raw); err != nil {
		c.t.Fatalf("%s: write %q: %v", c.name, raw, err)
	}
}

// IQ sends an iq of type typ to to ("" for the account itself) with payload
// and waits for its result or error.
func (c *client) IQ(typ, to, payload string) *elem {
	c.t.Helper()
	id := nextID("iq")
	toAttr := ""
	if to != "" {
		toAttr = fmt.Sprintf(" to='%s'", to)
	}
	c.Send(fmt.Sprintf("<iq type='%s' id='%s'%s>%s</iq>", typ, id, toAttr, payload))
	return c.Expect("reply to iq "+id, func(e *elem) bool {
		t := e.Attr("type")
		return e.XMLName.Local == "iq" && e.Attr("id") == id && (t == "result" || t == "error")
	})
}

// IQResult is IQ that fails the test unless the reply is a result.
func (c *client) IQResult(typ, to, payload string) *elem {
	c.t.Helper()
	r := c.IQ(typ, to, payload)
	if r.Attr("type") != "result" {
		c.t.Fatalf("%s: iq %s to %q with %s: got %s, want a result", c.name, typ, to, payload, r)
	}
	return r
}

// Expect waits for a stanza matching match, removes it from the inbox and
// returns it; earlier non-matching stanzas stay for later Expects.
func (c *client) Expect(what string, match func(*elem) bool) *elem {
	c.t.Helper()
	e, ok := c.wait(match, waitTimeout)
	if !ok {
		c.t.Fatalf("%s: no %s within %v; session ended: %v; inbox:\n%s\nXML exchanged:%s", c.name, what, waitTimeout, c.ended(), c.dump(), c.wire)
	}
	return e
}

// ExpectNone fails the test if a stanza matching match arrives within d.
func (c *client) ExpectNone(what string, match func(*elem) bool, d time.Duration) {
	c.t.Helper()
	if e, ok := c.wait(match, d); ok {
		c.t.Errorf("%s: got %s, want no %s", c.name, e, what)
	}
}

func (c *client) wait(match func(*elem) bool, d time.Duration) (*elem, bool) {
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	for {
		c.mu.Lock()
		for i, e := range c.inbox {
			if match(e) {
				c.inbox = append(c.inbox[:i], c.inbox[i+1:]...)
				c.mu.Unlock()
				return e, true
			}
		}
		c.mu.Unlock()
		select {
		case <-c.wake:
		case <-c.done:
			// Drain what arrived before the end, then give up.
			c.mu.Lock()
			for i, e := range c.inbox {
				if match(e) {
					c.inbox = append(c.inbox[:i], c.inbox[i+1:]...)
					c.mu.Unlock()
					return e, true
				}
			}
			c.mu.Unlock()
			return nil, false
		case <-deadline.C:
			return nil, false
		}
	}
}

func (c *client) dump() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var b strings.Builder
	for _, e := range c.inbox {
		b.WriteString("  ")
		b.WriteString(e.String())
		b.WriteByte('\n')
	}
	return b.String()
}

// ended reports how the session ended, or "no" while it runs.
func (c *client) ended() string {
	select {
	case <-c.done:
		c.mu.Lock()
		defer c.mu.Unlock()
		return fmt.Sprintf("yes (%v)", c.err)
	default:
		return "no"
	}
}

// StreamError waits for the server to end the stream and returns the
// stream error condition it sent ("" for a clean close).
func (c *client) StreamError() string {
	c.t.Helper()
	select {
	case <-c.done:
	case <-time.After(waitTimeout):
		c.t.Fatalf("%s: stream still open after %v", c.name, waitTimeout)
	}
	c.mu.Lock()
	err := c.err
	c.mu.Unlock()
	var se stream.Error
	if errors.As(err, &se) {
		return se.Err
	}
	if err != nil {
		c.t.Fatalf("%s: stream ended with %v, want a stream error", c.name, err)
	}
	return ""
}

// Close ends the stream politely and waits for the server to close its side.
func (c *client) Close() {
	c.t.Helper()
	_ = c.s.Close()
	select {
	case <-c.done:
	case <-time.After(waitTimeout):
		c.t.Errorf("%s: server did not close its stream after ours", c.name)
	}
	c.s.Conn().Close()
}

// drop cuts the TCP connection without closing the stream, as a client
// that loses its network does.
func (c *client) drop() {
	defer c.cancel()
	c.s.Conn().Close()
	select {
	case <-c.done:
	case <-time.After(waitTimeout):
		c.t.Errorf("%s: session still running %v after its connection was closed", c.name, waitTimeout)
	}
}

// loginError is a failed login with the XML exchanged until then.
type loginError struct {
	err  error
	wire string
}

func (e *loginError) Error() string { return fmt.Sprintf("%v\nXML exchanged:%s", e.err, e.wire) }

var saslFailureRE = regexp.MustCompile(`<failure[^>]*urn:ietf:params:xml:ns:xmpp-sasl[^>]*>\s*<([a-z-]+)`)

// saslCondition is the condition of the SASL <failure/> the server sent
// during a failed login, or "".
func saslCondition(err error) string {
	var le *loginError
	if !errors.As(err, &le) {
		return ""
	}
	m := saslFailureRE.FindStringSubmatch(le.wire)
	if m == nil {
		return ""
	}
	return m[1]
}

// tagged writes every chunk to w after a direction tag (an XML console).
type tagged struct {
	w   *syncBuffer
	tag string
}

func (t tagged) Write(p []byte) (int, error) {
	t.w.mu.Lock()
	defer t.w.mu.Unlock()
	t.w.b.WriteString(t.tag)
	return t.w.b.Write(p)
}

// bindFeature binds resource, or lets the server generate one when it is
// "". mellium's own BindResource sends an empty <resource/> whatever is
// asked (see LIBRARIES.md §1.2 item 13), so tests that need a particular
// resource bind with this.
func bindFeature(resource string) xmpp.StreamFeature {
	return xmpp.StreamFeature{
		Name:       xml.Name{Space: nsBind, Local: "bind"},
		Necessary:  xmpp.Authn,
		Prohibited: xmpp.Ready,
		Parse: func(_ context.Context, d *xml.Decoder, start *xml.StartElement) (bool, any, error) {
			return true, nil, d.Skip()
		},
		Negotiate: func(ctx context.Context, s *xmpp.Session, _ any) (xmpp.SessionState, io.ReadWriter, error) {
			w := s.TokenWriter()
			defer w.Close()
			r := s.TokenReader()
			defer r.Close()

			// Tokens, not text: during negotiation mellium's raw encoder would
			// repeat an xmlns attribute that also is the name's space.
			iq := xml.StartElement{Name: xml.Name{Space: nsClient, Local: "iq"}, Attr: []xml.Attr{
				{Name: xml.Name{Local: "type"}, Value: "set"}, {Name: xml.Name{Local: "id"}, Value: "bind-1"}}}
			bind := xml.StartElement{Name: xml.Name{Space: nsBind, Local: "bind"}}
			toks := []xml.Token{iq, bind}
			if resource != "" {
				res := xml.StartElement{Name: xml.Name{Local: "resource"}}
				toks = append(toks, res, xml.CharData(resource), res.End())
			}
			toks = append(toks, bind.End(), iq.End())
			for _, tok := range toks {
				if err := w.EncodeToken(tok); err != nil {
					return 0, nil, err
				}
			}
			if err := w.Flush(); err != nil {
				return 0, nil, err
			}
			d := xml.NewTokenDecoder(r)
			var resp elem
			for {
				tok, err := d.Token()
				if err != nil {
					return 0, nil, err
				}
				if start, ok := tok.(xml.StartElement); ok {
					if err := d.DecodeElement(&resp, &start); err != nil {
						return 0, nil, err
					}
					break
				}
			}
			if resp.Attr("type") != "result" || resp.Attr("id") != "bind-1" {
				return 0, nil, fmt.Errorf("bind: got %s", resp.String())
			}
			j, err := jid.Parse(resp.Child(nsBind, "bind").ChildText(nsBind, "jid"))
			if err != nil {
				return 0, nil, fmt.Errorf("bind: %v in %s", err, resp.String())
			}
			s.UpdateAddr(j)
			return xmpp.Ready, nil, nil
		},
	}
}

// Stanza predicates for Expect.

// isMessage matches a message from from (a bare or full JID string; "" for
// any sender) whose body is body.
func isMessage(from, body string) func(*elem) bool {
	return func(e *elem) bool {
		return e.XMLName.Local == "message" && fromMatches(e, from) && e.ChildText("", "body") == body
	}
}

// isPresence matches a presence of type typ ("" is available) from from.
func isPresence(typ, from string) func(*elem) bool {
	return func(e *elem) bool {
		return e.XMLName.Local == "presence" && e.Attr("type") == typ && fromMatches(e, from)
	}
}

// isRosterPush matches a roster push about contact.
func isRosterPush(contact string) func(*elem) bool {
	return func(e *elem) bool {
		it := e.Child(nsRoster, "query").Child(nsRoster, "item")
		return e.XMLName.Local == "iq" && e.Attr("type") == "set" && it != nil && it.Attr("jid") == contact
	}
}

// fromMatches compares from with the sender: a bare JID matches any of its
// resources.
func fromMatches(e *elem, from string) bool {
	f := e.Attr("from")
	return from == "" || f == from || (!strings.Contains(from, "/") && strings.HasPrefix(f, from+"/"))
}
