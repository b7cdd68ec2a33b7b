package loadgen

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/xml"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"time"

	"github.com/xdg-go/scram"
)

const (
	nsTLS     = "urn:ietf:params:xml:ns:xmpp-tls"
	nsSASL    = "urn:ietf:params:xml:ns:xmpp-sasl"
	nsBind    = "urn:ietf:params:xml:ns:xmpp-bind"
	nsSession = "urn:ietf:params:xml:ns:xmpp-session"
	nsPing    = "urn:xmpp:ping"

	readBufSize = 4 << 10 // small: thousands of idle sessions each hold one
	maxStanza   = 1 << 20
)

// features is the part of <stream:features/> the generator acts on.
type features struct {
	StartTLS *struct{} `xml:"urn:ietf:params:xml:ns:xmpp-tls starttls"`
	Mechs    *struct {
		List []string `xml:"mechanism"`
	} `xml:"urn:ietf:params:xml:ns:xmpp-sasl mechanisms"`
	Bind    *struct{} `xml:"urn:ietf:params:xml:ns:xmpp-bind bind"`
	Session *struct {
		Optional *struct{} `xml:"optional"`
	} `xml:"urn:ietf:params:xml:ns:xmpp-session session"`
}

// xconn is a raw client-to-server XMPP connection.
type xconn struct {
	conn   net.Conn // raw TCP, for deadlines
	rw     net.Conn // what stanzas go through: conn or TLS over it
	sc     *scanner
	domain string
	stop   func() bool // detaches the login's context from the conn
}

// dialStream connects, secures the stream as cfg says and returns it with
// the features of the (last) stream header, ready for SASL. ctx bounds
// every read and write until endLogin or abort.
func dialStream(ctx context.Context, cfg *Config) (*xconn, features, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", cfg.Addr)
	if err != nil {
		return nil, features{}, fmt.Errorf("dial %s: %w", cfg.Addr, err)
	}
	if dl, ok := ctx.Deadline(); ok {
		c.SetDeadline(dl)
	}
	// A cancelled ctx must also abort reads blocked on the conn.
	stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Unix(1, 0)) })
	x := &xconn{conn: c, rw: c, domain: cfg.Domain, stop: stop}
	fail := func(err error) (*xconn, features, error) {
		x.abort()
		return nil, features{}, err
	}
	if cfg.TLS == TLSDirect {
		tc := tls.Client(c, cfg.tlsConfig([]string{"xmpp-client"}))
		if err := tc.HandshakeContext(ctx); err != nil {
			return fail(fmt.Errorf("direct TLS handshake: %w", err))
		}
		x.rw = tc
	}
	x.sc = newScanner(x.rw, readBufSize, maxStanza)
	f, err := x.openStream()
	if err != nil {
		return fail(err)
	}
	if cfg.TLS != TLSStartTLS {
		return x, f, nil
	}
	if f.StartTLS == nil {
		return fail(errors.New("server does not offer STARTTLS"))
	}
	if err := x.write("<starttls xmlns='" + nsTLS + "'/>"); err != nil {
		return fail(err)
	}
	it, err := x.nextElement()
	if err != nil {
		return fail(fmt.Errorf("STARTTLS: %w", err))
	}
	if n := string(localName(it.raw)); n != "proceed" {
		return fail(fmt.Errorf("STARTTLS refused: %s", clip(it.raw, 200)))
	}
	if x.sc.buffered() != 0 {
		return fail(errors.New("STARTTLS: data after <proceed/>"))
	}
	tc := tls.Client(c, cfg.tlsConfig(nil))
	if err := tc.HandshakeContext(ctx); err != nil {
		return fail(fmt.Errorf("STARTTLS handshake: %w", err))
	}
	x.rw = tc
	x.sc.reset(tc)
	if f, err = x.openStream(); err != nil {
		return fail(err)
	}
	return x, f, nil
}

func (x *xconn) write(s string) error {
	if _, err := x.rw.Write([]byte(s)); err != nil {
		return fmt.Errorf("write: %w", err)
	}
	return nil
}

// close ends the stream politely (sparing server-side error logs) but
// waits no later than deadline for a server that stopped reading.
func (x *xconn) close(deadline time.Time) {
	x.conn.SetWriteDeadline(deadline)
	x.rw.Write([]byte("</stream:stream>"))
	x.rw.Close()
}

// abort drops a connection whose login failed.
func (x *xconn) abort() {
	x.stop()
	x.conn.Close()
}

// openStream sends a stream header and reads the server's header and features.
func (x *xconn) openStream() (features, error) {
	hdr := "<?xml version='1.0'?><stream:stream to='" + escAttr(x.domain) +
		"' xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' version='1.0' xml:lang='en'>"
	if err := x.write(hdr); err != nil {
		return features{}, err
	}
	it, err := x.sc.next()
	if err != nil {
		return features{}, fmt.Errorf("read stream header: %w", err)
	}
	if it.kind != kindStreamOpen {
		return features{}, fmt.Errorf("expected stream header, got %s", clip(it.raw, 200))
	}
	it, err = x.nextElement()
	if err != nil {
		return features{}, fmt.Errorf("read stream features: %w", err)
	}
	if string(localName(it.raw)) != "features" {
		return features{}, fmt.Errorf("expected stream features, got %s", clip(it.raw, 200))
	}
	var f features
	if err := xml.Unmarshal(it.raw, &f); err != nil {
		return features{}, fmt.Errorf("parse stream features: %w", err)
	}
	return f, nil
}

// nextElement returns the next top-level element, turning stream errors
// and closes into Go errors.
func (x *xconn) nextElement() (item, error) {
	it, err := x.sc.next()
	if err != nil {
		return item{}, err
	}
	switch it.kind {
	case kindStreamClose:
		return item{}, errors.New("server closed the stream")
	case kindStreamOpen:
		return item{}, errors.New("unexpected stream header")
	}
	if string(localName(it.raw)) == "error" && bytes.HasPrefix(it.raw, []byte("<stream:")) {
		return item{}, fmt.Errorf("stream error: %s", clip(it.raw, 300))
	}
	return it, nil
}

// saslMsg is a SASL nonza: challenge, success or failure.
type saslMsg struct {
	XMLName xml.Name
	Text    string `xml:",chardata"`
	Inner   string `xml:",innerxml"`
}

// authenticate runs SASL with cfg.Mech for user, then restarts the stream
// and returns the new features.
func (x *xconn) authenticate(cfg *Config, user string, f features) (features, error) {
	if f.Mechs == nil || !slices.Contains(f.Mechs.List, cfg.Mech) {
		var offered []string
		if f.Mechs != nil {
			offered = f.Mechs.List
		}
		return features{}, fmt.Errorf("server does not offer SASL %s (offers %v)", cfg.Mech, offered)
	}
	var step func(challenge []byte) ([]byte, error)
	var initial []byte
	var conv *scram.ClientConversation
	switch cfg.Mech {
	case "PLAIN":
		initial = []byte("\x00" + user + "\x00" + cfg.Password)
		step = func([]byte) ([]byte, error) { return nil, errors.New("unexpected SASL challenge for PLAIN") }
	case "SCRAM-SHA-1", "SCRAM-SHA-256":
		hash := scram.SHA1
		if cfg.Mech == "SCRAM-SHA-256" {
			hash = scram.SHA256
		}
		client, err := hash.NewClient(user, cfg.Password, "")
		if err != nil {
			return features{}, fmt.Errorf("SCRAM client: %w", err)
		}
		conv = client.NewConversation()
		first, err := conv.Step("")
		if err != nil {
			return features{}, fmt.Errorf("SCRAM first message: %w", err)
		}
		initial = []byte(first)
		step = func(ch []byte) ([]byte, error) {
			if conv.Done() {
				return nil, errors.New("SCRAM: challenge after server-final")
			}
			r, err := conv.Step(string(ch))
			if err != nil {
				return nil, fmt.Errorf("SCRAM: %w", err)
			}
			return []byte(r), nil
		}
	default:
		return features{}, fmt.Errorf("unsupported SASL mechanism %q", cfg.Mech)
	}
	if err := x.write("<auth xmlns='" + nsSASL + "' mechanism='" + cfg.Mech + "'>" + b64(initial) + "</auth>"); err != nil {
		return features{}, err
	}
	if err := x.saslExchange(step, conv); err != nil {
		return features{}, fmt.Errorf("SASL %s as %s: %w", cfg.Mech, user, err)
	}
	x.sc.reset(x.rw)
	nf, err := x.openStream()
	if err != nil {
		return features{}, fmt.Errorf("after SASL: %w", err)
	}
	return nf, nil
}

// saslExchange answers challenges until the server reports success or
// failure; for SCRAM it also verifies the server's signature.
func (x *xconn) saslExchange(step func([]byte) ([]byte, error), conv *scram.ClientConversation) error {
	for {
		it, err := x.nextElement()
		if err != nil {
			return err
		}
		var m saslMsg
		if err := xml.Unmarshal(it.raw, &m); err != nil {
			return fmt.Errorf("parse %s: %w", clip(it.raw, 200), err)
		}
		data, err := unb64(m.Text)
		if err != nil {
			return fmt.Errorf("%s: %w", m.XMLName.Local, err)
		}
		switch m.XMLName.Local {
		case "challenge":
			resp, err := step(data)
			if err != nil {
				return err
			}
			// No data is an empty element; "=" is only for <auth/>.
			msg := "<response xmlns='" + nsSASL + "'/>"
			if len(resp) > 0 {
				msg = "<response xmlns='" + nsSASL + "'>" + b64(resp) + "</response>"
			}
			if err := x.write(msg); err != nil {
				return err
			}
		case "success":
			if conv == nil {
				return nil
			}
			// Server-final may come with success (RFC 6120 §6.3.10).
			if !conv.Done() && len(data) > 0 {
				if _, err := conv.Step(string(data)); err != nil {
					return fmt.Errorf("SCRAM server-final: %w", err)
				}
			}
			if !conv.Valid() {
				return errors.New("SCRAM: server signature not verified")
			}
			return nil
		case "failure":
			return fmt.Errorf("failed: %s", strings.TrimSpace(m.Inner))
		default:
			return fmt.Errorf("unexpected %s", clip(it.raw, 200))
		}
	}
}

// iqResp is an IQ result or error received during login or registration.
type iqResp struct {
	Type  string `xml:"type,attr"`
	JID   string `xml:"bind>jid"`
	Error *struct {
		Inner string `xml:",innerxml"`
	} `xml:"error"`
}

// bindSession binds a resource, opens a legacy session when the server
// requires it, sends initial presence and returns the full JID.
func (x *xconn) bindSession(f features, resource string) (string, error) {
	if f.Bind == nil {
		return "", errors.New("server does not offer resource binding")
	}
	res, err := x.awaitIQ("bind", "<iq type='set' id='bind'><bind xmlns='"+nsBind+"'><resource>"+escText(resource)+"</resource></bind></iq>")
	if err != nil {
		return "", err
	}
	if res.Type != "result" || res.JID == "" {
		return "", fmt.Errorf("bind failed: %s", res.errText())
	}
	if f.Session != nil && f.Session.Optional == nil {
		res, err := x.awaitIQ("sess", "<iq type='set' id='sess'><session xmlns='"+nsSession+"'/></iq>")
		if err != nil {
			return "", err
		}
		if res.Type != "result" {
			return "", fmt.Errorf("session failed: %s", res.errText())
		}
	}
	if err := x.write("<presence/>"); err != nil {
		return "", err
	}
	return res.JID, nil
}

// awaitIQ sends an IQ and returns the response carrying the same id. The
// server's own requests that arrive in between are answered.
func (x *xconn) awaitIQ(id, iq string) (iqResp, error) {
	if err := x.write(iq); err != nil {
		return iqResp{}, err
	}
	for {
		it, err := x.nextElement()
		if err != nil {
			return iqResp{}, fmt.Errorf("iq %s: %w", id, err)
		}
		head := it.raw[:it.head]
		if string(localName(head)) == "iq" && string(attrValue(head, "id")) == id {
			if t := string(attrValue(head, "type")); t == "result" || t == "error" {
				var r iqResp
				if err := xml.Unmarshal(it.raw, &r); err != nil {
					return iqResp{}, fmt.Errorf("iq %s: parse %s: %w", id, clip(it.raw, 200), err)
				}
				return r, nil
			}
		}
		if reply := controlReply(it); reply != nil {
			if _, err := x.rw.Write(reply); err != nil {
				return iqResp{}, fmt.Errorf("iq %s: write: %w", id, err)
			}
		}
	}
}

func (r iqResp) errText() string {
	if r.Error == nil {
		return "type=" + r.Type
	}
	return strings.TrimSpace(r.Error.Inner)
}

// controlReply answers a server request that needs one, so servers that
// check client liveness keep the session: pings and sets (roster pushes in
// practice) get a result, other gets an error.
func controlReply(it item) []byte {
	head := it.raw[:it.head]
	if string(localName(head)) != "iq" {
		return nil
	}
	typ := string(attrValue(head, "type"))
	if typ != "get" && typ != "set" {
		return nil
	}
	b := make([]byte, 0, 160)
	b = append(b, "<iq"...)
	if to := attrValue(head, "from"); to != nil {
		b = appendAttr(b, "to", to)
	}
	b = appendAttr(b, "id", attrValue(head, "id"))
	if typ == "set" || bytes.Contains(it.raw, []byte(nsPing)) {
		return append(b, " type='result'/>"...)
	}
	return append(b, " type='error'><error type='cancel'><service-unavailable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>"...)
}

// appendAttr appends a raw (already escaped) attribute value, quoting with
// whichever quote it cannot contain.
func appendAttr(b []byte, name string, raw []byte) []byte {
	q := byte('\'')
	if bytes.IndexByte(raw, '\'') >= 0 {
		q = '"'
	}
	b = append(b, ' ')
	b = append(b, name...)
	b = append(b, '=', q)
	b = append(b, raw...)
	return append(b, q)
}

func b64(b []byte) string {
	if len(b) == 0 {
		return "="
	}
	return base64.StdEncoding.EncodeToString(b)
}

func unb64(s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	if s == "" || s == "=" {
		return nil, nil
	}
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("bad base64: %w", err)
	}
	return b, nil
}

func escAttr(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", "'", "&apos;", `"`, "&quot;").Replace(s)
}

func escText(s string) string {
	var b strings.Builder
	xml.EscapeText(&b, []byte(s))
	return b.String()
}
