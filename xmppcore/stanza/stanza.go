// Package stanza holds XMPP namespaces and builders for stanza and stream errors.
package stanza

import (
	"github.com/aldis-im/aldis/xmppcore/wire"
)

// Namespaces used across the server.
const (
	NSClient    = "jabber:client"
	NSServer    = "jabber:server"
	NSStream    = "http://etherx.jabber.org/streams"
	NSStreamErr = "urn:ietf:params:xml:ns:xmpp-streams"
	NSStanzaErr = "urn:ietf:params:xml:ns:xmpp-stanzas"
	NSTLS       = "urn:ietf:params:xml:ns:xmpp-tls"
	NSSASL      = "urn:ietf:params:xml:ns:xmpp-sasl"
	NSBind      = "urn:ietf:params:xml:ns:xmpp-bind"
	NSSession   = "urn:ietf:params:xml:ns:xmpp-session"
	NSRoster    = "jabber:iq:roster"
	NSRosterVer = "urn:xmpp:features:rosterver"
	NSDelay     = "urn:xmpp:delay"
	NSDiscoInfo = "http://jabber.org/protocol/disco#info"
	NSDiscoItem = "http://jabber.org/protocol/disco#items"
	NSPing      = "urn:xmpp:ping"
	NSVersion   = "jabber:iq:version"
	NSTime      = "urn:xmpp:time"
	NSVCard     = "vcard-temp"
	NSPrivate   = "jabber:iq:private"
	NSBlocking  = "urn:xmpp:blocking"
	NSBlockErr  = "urn:xmpp:blocking:errors"
	NSRegister  = "jabber:iq:register"
	NSRegFeat   = "http://jabber.org/features/iq-register"
	NSSASLCB    = "urn:xmpp:sasl-cb:0"
	NSOffline   = "msgoffline"
	NSCarbons   = "urn:xmpp:carbons:2"
	NSForward   = "urn:xmpp:forward:0"
	NSHints     = "urn:xmpp:hints"
)

// Error types (RFC 6120 §8.3.2).
const (
	Auth     = "auth"
	Cancel   = "cancel"
	Continue = "continue"
	Modify   = "modify"
	Wait     = "wait"
)

// Error builds the reply to st carrying a stanza error: addresses swapped,
// type "error", the same id. The original payload is not echoed back, so an
// error never leaks what the sender was refused.
func Error(st *wire.Element, typ, condition, text string) *wire.Element {
	e := wire.New(st.Local(), "")
	e.Space = st.Space
	if id := st.Attr("id"); id != "" {
		e.SetAttr("id", id)
	}
	if to := st.Attr("to"); to != "" {
		e.SetAttr("from", to)
	}
	if from := st.Attr("from"); from != "" {
		e.SetAttr("to", from)
	}
	e.SetAttr("type", "error")
	e.AddChild(ErrorElement(typ, condition, text))
	return e
}

// ErrorElement builds the <error/> child itself.
func ErrorElement(typ, condition, text string) *wire.Element {
	er := wire.New("error", "")
	er.SetAttr("type", typ)
	er.AddChild(wire.New(condition, NSStanzaErr))
	if text != "" {
		er.AddChild(wire.New("text", NSStanzaErr)).AddText(text)
	}
	return er
}

// StreamError serialises a stream error followed by the stream close tag.
func StreamError(condition, text string) []byte {
	e := wire.New("stream:error", "")
	e.AddChild(wire.New(condition, NSStreamErr))
	if text != "" {
		e.AddChild(wire.New("text", NSStreamErr)).AddText(text)
	}
	return append(e.Append(nil), "</stream:stream>"...)
}

// Result builds an empty iq result for the iq st.
func Result(st *wire.Element) *wire.Element {
	e := wire.New("iq", "")
	e.Space = st.Space
	e.SetAttr("type", "result")
	e.SetAttr("id", st.Attr("id"))
	if to := st.Attr("to"); to != "" {
		e.SetAttr("from", to)
	}
	if from := st.Attr("from"); from != "" {
		e.SetAttr("to", from)
	}
	return e
}

// Payload returns the single child element of an iq get/set, or nil when
// there is not exactly one (RFC 6120 §8.2.3 makes that a bad-request).
func Payload(iq *wire.Element) *wire.Element {
	var p *wire.Element
	n := 0
	for c := range iq.Elements() {
		p = c
		n++
	}
	if n != 1 {
		return nil
	}
	return p
}
